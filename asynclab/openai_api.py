"""An OpenAI-compatible API under ``/v1``, so the official ``openai`` SDK runs offline against the course.

    client = AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused")   # any key is accepted
    reply = await client.chat.completions.create(model="assistant", messages=messages, tools=TOOL_SCHEMAS)
    stream = await client.chat.completions.create(model="assistant", messages=messages, stream=True)

| endpoint                      | service call                     | errors              |
| ----------------------------- | -------------------------------- | ------------------- |
| ``POST /v1/chat/completions`` | ``llm.chat`` (``stream: true``: SSE chunks, then ``data: [DONE]``) | 400 404 429 503 |
| ``POST /v1/embeddings``       | ``embeddings.embed`` / ``embed_batch`` | 400 404 429 503 |
| ``GET /v1/models``, ``/v1/models/{id}`` | the course's models    | 404                 |

The wire format is OpenAI's chat-completions format (``chat.completion`` objects and
``chat.completion.chunk`` deltas, tool calls streamed by index, ``usage`` on request with
``stream_options.include_usage``). Errors use OpenAI's body ``{"error": {"message", "type",
"param", "code"}}``: 400 for a bad request (``param`` names the field), 404 for an unknown model,
429 with ``Retry-After`` and the ``x-ratelimit-*`` headers (``type`` says which budget,
``requests`` or ``tokens``), 413 for a request larger than a whole token window, 503 for an
injected fault. A fault
after the first chunk arrives as a ``data: {"error": …}`` event, which the SDK raises as
``openai.APIError``. The ``Authorization`` header is ignored: any API key works, none is needed.

Models: ``assistant`` (chat with tools), ``summarizer``, ``sentiment``, ``classifier`` (chat),
``embeddings`` (vectors). Sampling options (temperature, max_tokens, seed, …) are accepted and
ignored: the simulated model is deterministic. Introduced in notebook 07.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Annotated, Any, Literal, cast

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field

from asynclab import text
from asynclab.chat import ChatChunk, ChatReply, InvalidRequest
from asynclab.faults import RateLimited, ServiceError
from asynclab.services import LLM, MODELS, Embeddings

__all__ = [
    "CHAT_MODELS",
    "EMBEDDING_MODELS",
    "ChatCompletionRequest",
    "EmbeddingRequest",
    "ErrorResponse",
    "error_body",
    "router",
    "service_error_body",
]

CHAT_MODELS = MODELS
EMBEDDING_MODELS = ("embeddings",)
#: Most texts one embeddings request may carry (OpenAI's own limit).
MAX_INPUTS = 2048
_CREATED = 1735689600  # 2025-01-01: when the course's models were "trained"


# -- request bodies ---------------------------------------------------------------------------------


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """The body of ``POST /v1/chat/completions``; messages, tools and tool_choice are checked by the chat model."""

    model_config = ConfigDict(extra="allow")  # other OpenAI options are accepted and ignored

    model: str = Field(examples=["assistant"])
    messages: list[Any] = Field(examples=[[{"role": "user", "content": "What's the weather in Paris and Tokyo?"}]])
    tools: list[Any] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    n: int | None = Field(default=None, ge=1, le=1, description="only 1 choice is supported")


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(examples=["embeddings"])
    input: str | list[str] = Field(examples=["How do I stream tokens?"], description="one text or a list of texts")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)


# -- errors -----------------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    message: str
    type: str = Field(description="invalid_request_error, requests or tokens (a 429), server_error")
    param: str | None = Field(default=None, description="the field at fault, e.g. messages[1].tool_call_id")
    code: str | None = Field(default=None, description="e.g. rate_limit_exceeded, model_not_found")


class ErrorResponse(BaseModel):
    """OpenAI's error body, for every /v1 error."""

    error: ErrorDetail


_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorResponse} for code in (400, 404, 413, 429, 503)}


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """OpenAI's error body: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def service_error_body(exc: ServiceError) -> dict[str, Any]:
    """The error body of a service failure: a 503 fault, a 413 request too large, a 404."""
    codes = {503: "service_unavailable", 413: "request_too_large", 404: "not_found"}
    kind = "invalid_request_error" if 400 <= exc.status < 500 else "server_error"
    return error_body(str(exc), kind, None, codes.get(exc.status))


class ModelNotFound(LookupError):
    def __init__(self, model: str, allowed: tuple[str, ...], param: str = "model") -> None:
        super().__init__(f"The model {model!r} does not exist here; the models are {', '.join(allowed)}")
        self.param = param


def _field(loc: Sequence[Any]) -> str:
    """A pydantic location as a field path: ("body", "messages", 0, "role") -> "messages[0].role"."""
    path = ""
    for part in loc[1:] if loc and loc[0] in ("body", "query", "path") else loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "body"


def _error_response(exc: Exception) -> JSONResponse:
    if isinstance(exc, RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": str(exc)}
        param = _field(first.get("loc", ()))
        problems = "; ".join(f"{_field(e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()[:5])
        return JSONResponse(error_body(problems, "invalid_request_error", param), status_code=400)
    if isinstance(exc, ModelNotFound):
        return JSONResponse(error_body(str(exc), "invalid_request_error", exc.param, "model_not_found"), 404)
    if isinstance(exc, RateLimited):
        body = error_body(str(exc), getattr(exc, "kind", "requests"), None, "rate_limit_exceeded")
        return JSONResponse(body, status_code=429, headers=exc.headers())
    if isinstance(exc, ServiceError):
        return JSONResponse(service_error_body(exc), status_code=exc.status)
    assert isinstance(exc, InvalidRequest)  # the chat model's checks: param names the field
    return JSONResponse(error_body(str(exc), "invalid_request_error", exc.param), 400)


class OpenAIRoute(APIRoute):
    """A route whose errors come back in OpenAI's shape (the rest of the app keeps its own)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except (RequestValidationError, ModelNotFound, ServiceError, InvalidRequest) as exc:
                return _error_response(exc)  # anything else is the server's own fault: the app's 500

        return route


router = APIRouter(prefix="/v1", route_class=OpenAIRoute, tags=["OpenAI-compatible API"])


# Async, so FastAPI calls them on the loop: a plain ``def`` dependency costs a thread hop per request.
async def _llm(request: Request) -> LLM:
    return cast(LLM, request.app.state.services.llm)


async def _embeddings(request: Request) -> Embeddings:
    return cast(Embeddings, request.app.state.services.embeddings)


# -- chat completions -------------------------------------------------------------------------------


def _message(reply: ChatReply) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.content, "refusal": None}
    if reply.tool_calls:
        message["tool_calls"] = [call.to_dict() for call in reply.tool_calls]
    return message


def _delta(chunk: ChatChunk, first: bool) -> dict[str, Any]:
    delta: dict[str, Any] = {"role": "assistant"} if first else {}
    if chunk.tool_calls:
        if first:
            delta["content"] = None
        delta["tool_calls"] = [
            {"index": d.index, "id": d.id, "type": "function", "function": {"name": d.name, "arguments": d.arguments}}
            if d.id is not None else {"index": d.index, "function": {"arguments": d.arguments}}
            for d in chunk.tool_calls
        ]
    elif chunk.content is not None:
        delta["content"] = chunk.content
    return delta


async def _events(
    first: ChatChunk, chunks: AsyncIterator[ChatChunk], head: dict[str, Any], include_usage: bool
) -> AsyncIterator[bytes]:
    """The SSE body: one ``data:`` line per chunk, the finish reason, usage if asked, then ``[DONE]``."""

    def event(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> bytes:
        body = {**head, "choices": choices}
        if include_usage:
            body["usage"] = usage  # null on every chunk but the last, as OpenAI sends it
        return b"data: " + json.dumps(body, ensure_ascii=False).encode() + b"\n\n"

    chunk: ChatChunk | None = first
    is_first = True
    try:
        while chunk is not None:
            if chunk.finish_reason is not None:
                yield event([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": chunk.finish_reason}])
                if include_usage and chunk.usage is not None:
                    yield event([], chunk.usage.to_dict())
            else:
                yield event([{"index": 0, "delta": _delta(chunk, is_first), "logprobs": None, "finish_reason": None}])
                is_first = False
            chunk = await anext(chunks, None)
    except ServiceError as exc:  # the status line is sent: the failure becomes an error event
        yield b"data: " + json.dumps(service_error_body(exc)).encode() + b"\n\n"
        return
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]  # an async generator: a disconnect stops it
    yield b"data: [DONE]\n\n"


def _check_chat_model(model: str) -> str:
    if model not in CHAT_MODELS:
        raise ModelNotFound(model, CHAT_MODELS)
    return model


@router.post("/chat/completions", responses=_ERRORS)
async def chat_completions(body: ChatCompletionRequest, llm: Annotated[LLM, Depends(_llm)]) -> Response:
    """A chat completion, with tool calls; ``stream: true`` sends ``chat.completion.chunk`` events.

    A stream starts once its first token is ready, so a rate limit or a fault before it is a real
    429/503. A client that disconnects cancels the producer: the LLM's span ends ``"cancelled"``.
    """
    model = _check_chat_model(body.model)
    options: dict[str, Any] = {
        "tools": body.tools, "tool_choice": body.tool_choice or "auto", "model": model,
        "parallel_tool_calls": True if body.parallel_tool_calls is None else body.parallel_tool_calls,
    }
    head = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": model}
    if not body.stream:
        reply = await llm.chat(body.messages, **options)
        return JSONResponse({
            **head, "object": "chat.completion",
            "choices": [
                {"index": 0, "message": _message(reply), "logprobs": None, "finish_reason": reply.finish_reason}],
            "usage": reply.usage.to_dict(),
        })
    chunks = await llm.chat(body.messages, stream=True, **options)
    try:
        first = await anext(chunks)
    except BaseException:
        await chunks.aclose()  # type: ignore[attr-defined]
        raise
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return StreamingResponse(
        _events(first, chunks, head, include_usage),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


# -- embeddings and models --------------------------------------------------------------------------


def _encode(vector: np.ndarray[Any, Any], encoding: str) -> list[float] | str:
    if encoding == "base64":  # what the SDK asks for by default in some versions: little-endian float32
        return base64.b64encode(vector.astype("<f4").tobytes()).decode()
    return cast(list[float], vector.tolist())


@router.post("/embeddings", responses=_ERRORS)
async def embeddings(body: EmbeddingRequest, service: Annotated[Embeddings, Depends(_embeddings)]) -> Response:
    """Vectors for one text or a batch (one service call either way: batching pays)."""
    if body.model not in EMBEDDING_MODELS:
        raise ModelNotFound(body.model, EMBEDDING_MODELS)
    if body.dimensions is not None and body.dimensions != service.dim:
        raise InvalidRequest("dimensions", f"must be {service.dim} (this model's size) or left out, "
                                           f"got {body.dimensions}")
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not texts or len(texts) > MAX_INPUTS:
        raise InvalidRequest("input", f"must hold 1 to {MAX_INPUTS} texts, got {len(texts)}")
    for i, item in enumerate(texts):
        if not item.strip():
            raise InvalidRequest("input" if isinstance(body.input, str) else f"input[{i}]",
                                 "must be a non-empty text, got an empty string")
    vectors = [await service.embed(texts[0])] if isinstance(body.input, str) else await service.embed_batch(texts)
    tokens = sum(len(text.tokenize(t)) for t in texts)
    return JSONResponse({
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": _encode(v, body.encoding_format)}
                 for i, v in enumerate(vectors)],
        "model": body.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })


def _model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": _CREATED, "owned_by": "asynclab"}


@router.get("/models")
async def models() -> dict[str, Any]:
    """The course's models: four chat models and one embedding model."""
    return {"object": "list", "data": [_model(m) for m in (*CHAT_MODELS, *EMBEDDING_MODELS)]}


@router.get("/models/{model}", responses={404: {"model": ErrorResponse}})
async def model(model: str) -> dict[str, Any]:
    """One model, or 404."""
    names = (*CHAT_MODELS, *EMBEDDING_MODELS)
    if model not in names:
        raise ModelNotFound(model, names)
    return _model(model)
