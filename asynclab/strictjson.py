"""JSON request bodies held to the JSON standard: what Python's ``json`` lets through is refused.

    app.add_middleware(StrictJSON)      # create_app() does this
    # POST {"k": NaN}        → 422, loc ["body", "k"]: "JSON has no NaN or Infinity"
    # POST {"prompt": "\\xff"} → 422, loc ["body", "prompt"]: "invalid UTF-8"

Python's ``json`` reads ``NaN``, ``Infinity``, ``1e999`` (as inf) and numbers of any length;
none of them is JSON, and a NaN that reaches a handler, or the 422 that echoes it, fails later
with a confusing message. Bytes that are not UTF-8 made FastAPI answer a bare 400. This
middleware reads each JSON body once, before FastAPI does, and answers those cases with a 422
in FastAPI's own format, naming the field (``loc``), so a client handles every bad body alike.
Under ``/v1/`` (the OpenAI-compatible API) the answer is OpenAI's: a 400 with
``{"error": {"message", "type": "invalid_request_error", "param", "code"}}``.

Introduced in notebook 08.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["StrictJSON", "body_problem"]

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]

#: Digits Python turns into an int at most (``sys.get_int_max_str_digits``); JSON parsers in
#: other languages stop at 64 bits, so anything near this long is a mistake or an attack.
_MAX_DIGITS = 4300


class _Bad:
    """A placeholder the parser leaves where a value is not JSON; the walk reports its place."""

    __slots__ = ("kind", "message", "text")

    def __init__(self, text: str, kind: str, message: str) -> None:
        self.text, self.kind, self.message = text, kind, message


def _constant(text: str) -> _Bad:
    return _Bad(text, "finite_number", f"Input should be a finite number: JSON has no {text}")


def _float(text: str) -> float | _Bad:
    value = float(text)
    if math.isinf(value):
        return _Bad(text[:40], "finite_number", "Input should be a finite number: this one overflows a float")
    return value


def _int(text: str) -> int | _Bad:
    if len(text) > _MAX_DIGITS:
        return _Bad(text[:40] + "…", "int_too_long", f"Input should have at most {_MAX_DIGITS} digits")
    return int(text)


def _is_surrogate(char: str) -> bool:
    return "\ud800" <= char <= "\udfff"


def _invalid_text(text: str) -> bool:
    # Undecodable bytes became lone surrogates (surrogateescape); a JSON escape such as
    # "\udc80" makes them too. Neither is text: pydantic and every encoder refuse them.
    return any(map(_is_surrogate, text))


def _shown(text: str) -> str:
    return "".join("\ufffd" if _is_surrogate(char) else char for char in text[:80])


def _find(value: Any, path: tuple[str | int, ...]) -> dict[str, Any] | None:
    """The first value that is not JSON, as a FastAPI error item; None if there is none."""
    if isinstance(value, _Bad):
        return {"type": value.kind, "loc": ["body", *path], "msg": value.message, "input": value.text}
    if isinstance(value, str) and _invalid_text(value):
        return {"type": "string_unicode", "loc": ["body", *path],
                "msg": "Input should be valid UTF-8 text", "input": _shown(value)}
    if isinstance(value, dict):
        for key, item in value.items():
            if _invalid_text(key):
                return {"type": "string_unicode", "loc": ["body", *path],
                        "msg": "Keys should be valid UTF-8 text", "input": _shown(key)}
            found = _find(item, (*path, key))
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _find(item, (*path, index))
            if found is not None:
                return found
    return None


def body_problem(body: bytes) -> dict[str, Any] | None:
    """Why a JSON body is not standard JSON, as a FastAPI error item (None if it is, or if it is
    not JSON at all: FastAPI reports a syntax error itself)."""
    encoding = json.detect_encoding(body)
    if encoding not in ("utf-8", "utf-8-sig"):
        return None  # UTF-16/32: json decodes it strictly, FastAPI reports a failure itself
    text = body.decode("utf-8", "surrogateescape").removeprefix("\ufeff")
    try:
        value = json.loads(text, parse_constant=_constant, parse_float=_float, parse_int=_int)
    except json.JSONDecodeError:
        if not _invalid_text(text):
            return None  # a plain syntax error: FastAPI's own 422 names its position
        position = next(i for i, char in enumerate(text) if _is_surrogate(char))
        return {"type": "string_unicode", "loc": ["body", len(text[:position].encode("utf-8", "surrogateescape"))],
                "msg": "The body should be valid UTF-8", "input": None}
    except RecursionError:
        return {"type": "json_invalid", "loc": ["body"], "msg": "JSON nested too deeply", "input": None}
    return _find(value, ())


def _param(loc: list[Any]) -> str:
    """A location as OpenAI names a parameter: ["body", "messages", 0, "content"] -> "messages[0].content"."""
    path = ""
    for part in loc[1:]:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "body"


def _answer(problem: dict[str, Any], path: str) -> tuple[int, dict[str, Any]]:
    """The status and body of the refusal, in the dialect of the API the path belongs to."""
    if path.startswith("/v1/"):
        param = _param(problem["loc"])
        message = f"{param}: {problem['msg']}"
        return 400, {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": None}}
    return 422, {"detail": [problem]}


def _is_json(scope: MutableMapping[str, Any]) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            kind: bytes = value.split(b";", 1)[0].strip().lower()
            return kind == b"application/json" or (kind.startswith(b"application/") and kind.endswith(b"+json"))
    return False


class StrictJSON:
    """ASGI middleware: a JSON request body with NaN, Infinity, a huge number or bytes that are
    not UTF-8 gets a 422 naming the field (under ``/v1/``: OpenAI's 400), before the app sees it.

        app.add_middleware(StrictJSON)

    Other requests pass untouched; the body is read once and handed on as it came.
    """

    __slots__ = ("app",)

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left before sending it all
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        problem = body_problem(body) if body else None
        if problem is not None:
            status, answer = _answer(problem, scope.get("path", ""))
            payload = json.dumps(answer).encode()
            await send({"type": "http.response.start", "status": status,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(payload)).encode())]})
            await send({"type": "http.response.body", "body": payload})
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # then the real channel: a streaming response hears a disconnect

        await self.app(scope, replay, send)
