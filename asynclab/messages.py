"""The chat format: messages, tool calls, replies and stream chunks, checked as the OpenAI API checks them.

    check_messages([{"role": "user", "content": "Hi"}])        # plain dicts, or InvalidRequest
    reply.message          # {"role": "assistant", "content": None, "tool_calls": [...]}: append it
    call.args()            # {"city": "Paris"}: the JSON arguments as a dict

A bad request raises :class:`InvalidRequest` (a ``ValueError``) whose ``param`` names the field,
e.g. ``messages[3].tool_call_id``: the server answers it with a 400 naming that field. The
model that fills these in is :mod:`asynclab.chat`. Introduced in notebook 06.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from asynclab import intents

__all__ = [
    "ROLES",
    "ChatChunk",
    "ChatReply",
    "FunctionTool",
    "InvalidRequest",
    "ToolCall",
    "ToolCallDelta",
    "Usage",
    "check_messages",
    "check_tool_choice",
    "check_tools",
]

ROLES = ("system", "developer", "user", "assistant", "tool")
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


class InvalidRequest(ValueError):
    """A chat request that breaks the format; ``param`` names the field, e.g. ``messages[2].tool_call_id``."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param} {message}")
        self.param = param


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One function call the model asks for; ``arguments`` is JSON text, as the API sends it."""

    id: str
    name: str
    arguments: str

    def args(self) -> dict[str, Any]:
        """The arguments as a dict: ``await tools.weather(**call.args())``."""
        value = json.loads(self.arguments)
        return value if isinstance(value, dict) else {}

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens a reply counted: the prompt (messages and tool schemas) and the completion."""

    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.total_tokens}


@dataclass(frozen=True, slots=True)
class ChatReply:
    """The assistant's turn: text (``finish_reason="stop"``) or tool calls (``"tool_calls"``)."""

    content: str | None
    tool_calls: tuple[ToolCall, ...]
    finish_reason: str
    usage: Usage
    model: str = "assistant"

    @property
    def message(self) -> dict[str, Any]:
        """The assistant message to append to the conversation before the tool results."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = [call.to_dict() for call in self.tool_calls]
        return message


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of tool call ``index``: the first piece has its id and name, the rest add arguments."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class ChatChunk:
    """One piece of a streamed reply: a text token, a tool-call piece, or (last) the finish reason and usage."""

    content: str | None = None
    tool_calls: tuple[ToolCallDelta, ...] = ()
    finish_reason: str | None = None
    usage: Usage | None = None


# -- checking the request -------------------------------------------------------------------------


def _plain(message: object, where: str) -> Mapping[str, Any]:
    if isinstance(message, ChatReply):
        return message.message
    dump = getattr(message, "model_dump", None)  # an openai SDK message object
    if callable(dump):
        message = dump(exclude_none=True)
    if not isinstance(message, Mapping):
        raise InvalidRequest(where, f"must be a message dict like {{'role': 'user', 'content': '…'}}, "
                                    f"got {type(message).__name__} {message!r:.80}")
    return message


def _content(value: object, where: str, required: bool) -> str | None:
    if value is None:
        if required:
            raise InvalidRequest(where, "is required for this role: a str or a list of text parts")
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, Sequence):
        parts = []
        for i, part in enumerate(value):
            if not isinstance(part, Mapping) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise InvalidRequest(f"{where}[{i}]", f"must be a text part {{'type': 'text', 'text': '…'}}; "
                                                      f"only text is supported, got {part!r:.80}")
            parts.append(part["text"])
        return "\n".join(parts)
    raise InvalidRequest(where, f"must be a str or a list of text parts, got {type(value).__name__} {value!r:.80}")


def _tool_calls(value: object, where: str) -> list[dict[str, Any]]:
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise InvalidRequest(where, f"must be a list of tool calls, got {type(value).__name__}")
    calls = []
    for i, call in enumerate(value):
        at = f"{where}[{i}]"
        call = _plain(call, at)
        function = call.get("function")
        if not isinstance(call.get("id"), str) or not call["id"]:
            raise InvalidRequest(f"{at}.id", f"must be a non-empty str, got {call.get('id')!r}")
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
            raise InvalidRequest(f"{at}.function", f"must be {{'name': str, 'arguments': str}}, got {function!r:.80}")
        if not isinstance(function.get("arguments"), str):
            raise InvalidRequest(f"{at}.function.arguments", "must be JSON text (a str: use json.dumps), got "
                                                             f"{type(function.get('arguments')).__name__}")
        calls.append({"id": call["id"], "name": function["name"], "arguments": function["arguments"]})
    return calls


def check_messages(messages: object) -> list[dict[str, Any]]:
    """The conversation as plain dicts, checked like the OpenAI API checks it (tool results answer calls)."""
    if isinstance(messages, (str, Mapping)) or not isinstance(messages, Sequence):
        raise InvalidRequest("messages", f"must be a list of message dicts, got {type(messages).__name__}")
    if not messages:
        raise InvalidRequest("messages", "must hold at least one message, got an empty list")
    checked: list[dict[str, Any]] = []
    pending: dict[str, str] = {}  # tool call id -> where it was made, until a tool message answers it
    for i, raw in enumerate(messages):
        where = f"messages[{i}]"
        message = _plain(raw, where)
        role = message.get("role")
        if role not in ROLES:
            raise InvalidRequest(f"{where}.role", f"must be one of {', '.join(map(repr, ROLES))}; got {role!r}")
        if role != "tool" and pending:
            raise InvalidRequest(where, "follows an assistant message with tool_calls whose results are missing: "
                                        f"add a tool message for each of {sorted(pending)} first")
        item: dict[str, Any] = {"role": role}
        if role == "assistant":
            calls = _tool_calls(message["tool_calls"], f"{where}.tool_calls") if message.get("tool_calls") else []
            item["content"] = _content(message.get("content"), f"{where}.content", required=not calls)
            item["tool_calls"] = calls
            pending = {call["id"]: where for call in calls}
        elif role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in pending:
                raise InvalidRequest(f"{where}.tool_call_id", f"must answer a tool call of the assistant message "
                                     f"just before it (append reply.message first); got {call_id!r}")
            del pending[call_id]
            item["tool_call_id"] = call_id
            item["content"] = _content(message.get("content"), f"{where}.content", required=True)
        else:
            item["content"] = _content(message.get("content"), f"{where}.content", required=True)
        checked.append(item)
    if pending:
        raise InvalidRequest("messages", f"end before the results of tool calls {sorted(pending)}: "
                                         "add a tool message for each")
    return checked


@dataclass(frozen=True, slots=True)
class FunctionTool:
    """A checked tool: its name, description, JSON-schema parameters and the kind the model sees in it."""

    name: str
    description: str
    parameters: dict[str, Any]
    kind: str | None


def check_tools(tools: object) -> list[FunctionTool]:
    """The tools (None: none) checked: each ``{"type": "function", "function": {"name", ...}}``, names unique."""
    if tools is None:
        return []
    if isinstance(tools, (str, Mapping)) or not isinstance(tools, Sequence):
        raise InvalidRequest("tools", f"must be a list of function tools, got {type(tools).__name__}")
    checked: list[FunctionTool] = []
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        function = tool.get("function") if isinstance(tool, Mapping) else None
        if not isinstance(tool, Mapping) or tool.get("type") != "function" or not isinstance(function, Mapping):
            raise InvalidRequest(where, "must be {'type': 'function', 'function': {'name': …, 'parameters': …}}, "
                                        f"got {tool!r:.80}")
        name = function.get("name")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise InvalidRequest(f"{where}.function.name", f"must be 1 to 64 letters, digits, _ or -, got {name!r}")
        if any(t.name == name for t in checked):
            raise InvalidRequest(f"{where}.function.name", f"must be unique, {name!r} is there twice")
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        if not isinstance(parameters, Mapping) or parameters.get("type", "object") != "object":
            raise InvalidRequest(f"{where}.function.parameters",
                                 f"must be a JSON schema of type object, got {parameters!r:.80}")
        description = str(function.get("description") or "")
        checked.append(FunctionTool(name, description, dict(parameters), intents.tool_kind(name, description)))
    return checked


def check_tool_choice(tool_choice: object, tools: list[FunctionTool]) -> str | None:
    """None for "auto"/"none"/"required" as given, else the forced tool's name."""
    if tool_choice in ("auto", "none"):
        return None
    if tool_choice == "required" and tools:
        return None
    if isinstance(tool_choice, Mapping) and tools:
        name = (tool_choice.get("function") or {}).get("name")
        if tool_choice.get("type") == "function" and name in [t.name for t in tools]:
            return str(name)
        names = [t.name for t in tools]
        raise InvalidRequest("tool_choice", f"must name one of the tools {names}, got {tool_choice!r:.80}")
    if tool_choice == "required" or isinstance(tool_choice, Mapping):
        raise InvalidRequest("tool_choice", f"{tool_choice!r:.60} needs tools: pass tools=[…]")
    raise InvalidRequest("tool_choice", "must be 'auto', 'none', 'required' or {'type': 'function', 'function': "
                                        f"{{'name': …}}}}, got {tool_choice!r:.80}")
