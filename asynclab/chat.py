"""Chat with tools: the messages, the tool schemas, and how the simulated model decides.

    reply = await llm.chat([{"role": "user", "content": "Weather in Paris and Tokyo, and NVDA's price?"}],
                           tools=TOOL_SCHEMAS)
    reply.tool_calls     # three calls at once: get_weather Paris, get_weather Tokyo, get_stock_price NVDA
    messages += [reply.message, *tool_messages]                 # run them, append the results
    (await llm.chat(messages, tools=TOOL_SCHEMAS)).content      # "The weather in Paris: snow, 7.2 °C. …"

Messages and tools are OpenAI chat-completions dicts (``{"role": ..., "content": ...}``;
``{"type": "function", "function": {"name", "description", "parameters"}}``), so the same
conversation works with ``llm.chat`` and through the ``openai`` SDK against the course server.

**How the model decides** (deterministic: the same conversation gives the same reply):

1. It reads the *last user message* (the question); tool calls and tool results after it
   belong to this question. Each question stands alone: earlier turns are not reread.
2. It knows four kinds of tool, recognised by words in the tool's name, else its description:
   weather (``weather``, ``forecast``, ``temperature``), stock (``stock``, ``ticker``, ``quote``,
   ``share price``), news (``news``, ``headline``), search (``search``, ``retriev``,
   ``knowledge``, ``document``, ``docs``, ``lookup``). Other tools are called only when forced.
3. What the question needs (:func:`asynclab.intents.needs`), in this order:
   - **weather** when it says "weather" or "forecast" (or rain, sunny, snow, humid, windy,
     degrees, temperature *with* a city): one call per city. Cities are capitalised names right
     after "in", "for" or "at", listed with commas, "and", "or": "in Paris, Tokyo and New York"
     (after "weather" or "forecast", lowercase names count too, capitalised: "in paris and
     tokyo" → "Paris", "Tokyo"; not "today" or "general").
   - **stock** when it says stock(s), shares, ticker, share price, or a ``$TICKER`` (or price,
     quote, trading *with* a symbol): one call per symbol. Symbols are 1–5 capital letters
     (not AI, API, LLM, GPU, USD, …) or a known company name (Nvidia, Apple, Microsoft, Google,
     Alphabet, Amazon, Tesla, Meta, Intel, IBM, Netflix, Oracle, AMD).
   - **news** when it says news or headline(s): the topic after "news about/on/for/of …" up to
     a comma, "and" or the end, or the words just before "news": "the latest AI chips news".
   - **search**, only when none of the above and a search tool is offered, for a question of
     three words or more with a content word (not "hi there"): the question itself.
4. A needed call whose kind has an offered tool is made, with the value in the tool's main
   parameter (``city``/``location``, ``symbol``/``ticker``, ``topic``/``query``, …, else its
   first required string; an ``array`` parameter gets all values in one call). Other required
   parameters get their ``default``, their first ``enum`` value, or 1/false/"". The arguments
   are valid against the tool's JSON schema.
5. With ``parallel_tool_calls=True`` (the default) every needed call comes in **one** assistant
   message; with False one call per turn, the next once its result is in. Calls already made
   after the question (same name and arguments) are not made again; a failed call is not retried.
6. When every needed call has a result, it answers in text from the results, one sentence per
   call: "The weather in Paris: snow, 7.2 °C. NVDA trades at 212.74 USD (-0.91 % today)." A result
   that is ``{"error": ...}`` or text starting with "Error", "failed" or an exception name
   (``ServiceUnavailable: …``, ``TimeoutError()``) is acknowledged: "I couldn't get the weather
   for Tokyo: the get_weather tool reported an error (…)."
7. A question that needs no tool is answered directly, like ``llm.complete``: from a
   ``Context:`` section in the user or system message, else from the knowledge base. A weather,
   stock or news question without a city, symbol or topic gets a question back ("Which city…?").
8. ``tool_choice``: ``"auto"`` (default) as above; ``"none"`` never calls; ``"required"`` and
   ``{"type": "function", "function": {"name": …}}`` always call (the named tool only); with
   nothing to extract the value is the question's key words. Like a real model, a forced choice
   calls again on every turn: switch back to ``"auto"`` for the final answer.
9. Models other than ``assistant`` (summarizer, sentiment, classifier) ignore tools and answer
   the question as ``llm.complete`` does.

Usage: prompt tokens count every message (4 each, plus its content and tool calls) and the tool
schemas; completion tokens are the answer's tokens, or per tool call 1 for its name plus the
pieces of its arguments. They are the tokens a stream delivers, one per
``Streamed.per_token``. Introduced in notebook 06 (direct), 07 (the SDK), 08 (over HTTP).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from asynclab import intents, text
from asynclab.messages import (
    ChatChunk,
    ChatReply,
    FunctionTool,
    InvalidRequest,
    ToolCall,
    ToolCallDelta,
    Usage,
    check_messages,
    check_tool_choice,
    check_tools,
)

__all__ = [
    "TOOL_SCHEMAS",
    "ChatChunk",
    "ChatReply",
    "InvalidRequest",
    "Prepared",
    "ToolCall",
    "ToolCallDelta",
    "Usage",
    "prepare",
]

#: The course's three tools (:class:`asynclab.Tools`) as OpenAI function schemas; the parameter
#: names are the methods' own, so ``tools.weather(**call.args())`` runs a call.
TOOL_SCHEMAS: list[dict[str, Any]] = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Current weather for a city.",
        "parameters": {"type": "object", "additionalProperties": False, "required": ["city"], "properties": {
            "city": {"type": "string", "description": "A city name such as 'Lisbon'."}}}}},
    {"type": "function", "function": {
        "name": "get_news", "description": "The latest news headlines about a topic.",
        "parameters": {"type": "object", "additionalProperties": False, "required": ["topic"], "properties": {
            "topic": {"type": "string", "description": "What the news should be about, e.g. 'AI chips'."},
            "limit": {"type": "integer", "minimum": 1, "maximum": 10, "default": 3}}}}},
    {"type": "function", "function": {
        "name": "get_stock_price", "description": "The last price of a stock, by its ticker symbol.",
        "parameters": {"type": "object", "additionalProperties": False, "required": ["symbol"], "properties": {
            "symbol": {"type": "string", "pattern": "^[A-Z]{1,5}$", "description": "A ticker such as 'NVDA'."}}}}},
]

#: How tool-call arguments are cut into tokens: words, and runs of punctuation like '{"' or '":'.
#: Lossless: "".join(pieces) == the arguments.
_PIECE = re.compile(r"\s*\w+|\s*[^\w\s]+|\s+")


@dataclass(frozen=True, slots=True)
class Prepared:
    """A decided reply, its stream pieces (one per completion token) and a key naming the request."""

    reply: ChatReply
    pieces: list[ChatChunk] = field(repr=False)
    key: str


# -- deciding ------------------------------------------------------------------------------------


def _filler(schema: Mapping[str, Any]) -> Any:
    """A valid value for a required parameter the question says nothing about."""
    if "default" in schema:
        return schema["default"]
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type", "string")
    kind = kind[0] if isinstance(kind, list) and kind else kind
    return {"integer": max(1, int(schema.get("minimum", 1))), "number": float(schema.get("minimum", 1)),
            "boolean": False, "array": [], "object": {}, "null": None}.get(str(kind), "")


def _arguments(tool: FunctionTool, values: list[str]) -> dict[str, Any] | None:
    """Arguments for ``tool`` carrying ``values`` (one, or all for an array parameter); None: no place for them."""
    main = intents.main_parameter(tool.kind, tool.parameters)
    if main is None:
        return None
    properties = tool.parameters.get("properties") or {}
    schema = properties.get(main) or {}
    args: dict[str, Any] = {}
    if schema.get("type") == "array":
        args[main] = list(values)
    else:
        value = values[0]
        if "maxLength" in schema:
            value = value[: int(schema["maxLength"])]
        if schema.get("enum"):  # only a value the schema allows: the one that matches, any case
            value = next((e for e in schema["enum"] if str(e).lower() == value.lower()), schema["enum"][0])
        args[main] = value
    for name in tool.parameters.get("required") or ():
        if name not in args and name in properties:
            args[name] = _filler(properties[name] or {})
    return args


def _plan(
    question: str, tools: list[FunctionTool], forced: str | None, required: bool
) -> list[tuple[FunctionTool, dict[str, Any]]]:
    """Every call this question needs, with its arguments (before looking at what was already called)."""
    allowed = [t for t in tools if forced is None or t.name == forced]
    found = intents.needs(question)
    if not found and any(t.kind == "search" for t in allowed) and intents.is_question(question):
        found = [intents.Need("search", question.strip())]
    plan: list[tuple[FunctionTool, dict[str, Any]]] = []
    by_tool: dict[str, list[str]] = {}
    for need in found:
        tool = next((t for t in allowed if t.kind == need.kind), None)
        if tool is not None and need.value:
            by_tool.setdefault(tool.name, []).append(need.value)
    for name, values in by_tool.items():
        tool = next(t for t in allowed if t.name == name)
        is_array = ((tool.parameters.get("properties") or {}).get(
            intents.main_parameter(tool.kind, tool.parameters) or "") or {}).get("type") == "array"
        for group in [values] if is_array else [[v] for v in values]:
            args = _arguments(tool, group)
            if args is not None:
                plan.append((tool, args))
    if not plan and (required or forced) and allowed:
        tool = allowed[0]
        plan.append((tool, _arguments(tool, [intents.key_phrase(question)]) or {}))
    return plan


def _question(messages: list[dict[str, Any]]) -> tuple[int, str]:
    for i in range(len(messages) - 1, -1, -1):
        if messages[i]["role"] == "user":
            return i, messages[i]["content"] or ""
    return -1, ""


def _direct_prompt(messages: list[dict[str, Any]], question: str) -> str:
    # A Context: section in a system message answers the question too, as in a RAG prompt.
    if "context:" not in question.lower():
        for message in messages:
            if message["role"] in ("system", "developer") and "context:" in (message["content"] or "").lower():
                return f"{message['content']}\nQuestion: {question}"
    return question


_ASK = {"weather": "Which city would you like the weather for?",
        "stock": "Which ticker symbol would you like the price of?",
        "news": "Which topic would you like the news about?"}


def _decide(
    messages: list[dict[str, Any]], tools: list[FunctionTool], tool_choice: object, parallel: bool, model: str,
    answer: Callable[[str, str], str],
) -> tuple[str | None, list[tuple[str, str]]]:
    """Text, or tool calls as (name, JSON arguments)."""
    start, question = _question(messages)
    if model != "assistant":
        return answer(model, question or "Hello"), []
    made: list[dict[str, Any]] = []
    results: dict[str, str] = {}
    for message in messages[start + 1 :]:
        made += message.get("tool_calls") or []
        if message["role"] == "tool":
            results[message["tool_call_id"]] = message["content"] or ""
    if tool_choice != "none" and tools:
        forced = check_tool_choice(tool_choice, tools)
        plan = _plan(question, tools, forced, tool_choice == "required")
        done = {(call["name"], _canonical(call["arguments"])) for call in made}
        remaining = [(t.name, json.dumps(a, ensure_ascii=False)) for t, a in plan
                     if (t.name, _canonical(json.dumps(a))) not in done]
        if not remaining and (forced or tool_choice == "required"):
            remaining = [(t.name, json.dumps(a, ensure_ascii=False)) for t, a in plan[:1]]
        if remaining:
            return None, remaining if parallel else remaining[:1]
    if made:
        kinds = {t.name: t.kind for t in tools}
        sentences = []
        for call in made:
            try:
                args = json.loads(call["arguments"])
            except ValueError:
                args = {}
            kind = kinds.get(call["name"]) or intents.tool_kind(call["name"])
            sentences.append(intents.describe_result(
                kind, call["name"], args if isinstance(args, dict) else {}, results.get(call["id"], ""), question))
        return " ".join(sentences), []
    if not question.strip():
        return "What would you like to know?", []
    offered = {t.kind for t in tools} if tool_choice != "none" else set()
    for need in intents.needs(question):
        if not need.value and need.kind in offered:
            return _ASK[need.kind], []
    return answer("assistant", _direct_prompt(messages, question)), []


def _canonical(arguments: str) -> str:
    try:
        return json.dumps(json.loads(arguments), sort_keys=True)
    except ValueError:
        return arguments


def _count(value: str) -> int:
    return len(text.tokenize(value)) if value else 0


def prepare(
    messages: object,
    *,
    tools: object = None,
    tool_choice: object = "auto",
    parallel_tool_calls: object = True,
    model: str = "assistant",
    answer: Callable[[str, str], str],
) -> Prepared:
    """Check the request, decide the reply, and cut it into stream pieces (one per completion token).

    answer(model, prompt): what the LLM answers without tools (``asynclab.services.llm.run_model``).
    """
    checked = check_messages(messages)
    offered = check_tools(tools)
    check_tool_choice(tool_choice, offered)
    if not isinstance(parallel_tool_calls, bool):
        raise InvalidRequest("parallel_tool_calls", f"must be True or False, got {parallel_tool_calls!r}")
    request = json.dumps([checked, tools, tool_choice, parallel_tool_calls, model], sort_keys=True, default=str)
    return _prepare(request, answer)


@lru_cache(maxsize=1024)
def _prepare(request: str, answer: Callable[[str, str], str]) -> Prepared:
    # Cached by the whole (checked) request: a fan-out of the same question, or a server under a
    # benchmark, decides once. Everything in a Prepared is immutable, so sharing it is safe.
    checked, tools, tool_choice, parallel_tool_calls, model = json.loads(request)
    offered = check_tools(tools)
    content, calls = _decide(checked, offered, tool_choice, parallel_tool_calls, model, answer)
    digest = hashlib.blake2b(request.encode(), digest_size=12).hexdigest()
    tool_calls = tuple(
        ToolCall(f"call_{hashlib.blake2b(f'{digest}:{i}'.encode(), digest_size=12).hexdigest()}", name, arguments)
        for i, (name, arguments) in enumerate(calls)
    )
    pieces: list[ChatChunk] = []  # one per completion token (a tuple would do; a list reads better)
    if tool_calls:
        for index, call in enumerate(tool_calls):
            pieces.append(ChatChunk(tool_calls=(ToolCallDelta(index, call.id, call.name, ""),)))
            pieces += [ChatChunk(tool_calls=(ToolCallDelta(index, arguments=piece),))
                       for piece in _PIECE.findall(call.arguments)]
    else:
        pieces = [ChatChunk(content=token) for token in text.tokenize(content or "")] or [ChatChunk(content="")]
    prompt_tokens = 3 + sum(
        4 + _count(m["content"] or "") + sum(1 + _count(c["arguments"]) for c in m.get("tool_calls") or ())
        for m in checked
    ) + (_count(json.dumps(tools)) if offered else 0)
    usage = Usage(prompt_tokens, len(pieces))
    reply = ChatReply(None if tool_calls else content, tool_calls, "tool_calls" if tool_calls else "stop", usage, model)
    _, question = _question(checked)
    return Prepared(reply, pieces, f"{model}:{question[:60]}#{digest[:8]}")
