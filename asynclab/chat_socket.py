"""Chat over a WebSocket (``/ws/chat``), and the chat page that uses it (``GET /``).

    async with websockets.connect(f"ws://{host}:{port}/ws/chat") as ws:
        await ws.send(json.dumps({"type": "chat", "messages": [{"role": "user", "content": "Why stream?"}]}))
        async for raw in ws:
            event = json.loads(raw)          # {"type": "token", "content": " Streaming"} …
            if event["type"] in ("done", "stopped", "error"):
                break

The client sends JSON messages:

- ``{"type": "chat", "messages": [...], "model": "assistant", "tools": [...]}``: start an answer
  (``model`` and ``tools`` optional, as in ``llm.chat``);
- ``{"type": "stop"}``: stop the answer being produced. The producer is cancelled, so the LLM's
  span ends ``"cancelled"`` and no more tokens are made (not just no more sent).

The server sends ``{"type": "token", "content": …}`` per token (``{"type": "tool_call", "index",
"id", "name", "arguments"}`` for tool-call pieces), then ``{"type": "done", "finish_reason",
"usage"}``; after a stop ``{"type": "stopped", "tokens": n}``; on a bad message, a rate limit or
a fault ``{"type": "error", "error": {"message", "type", "param", "code"}}`` (a rate limit adds
``retry_after`` in simulated seconds). One answer at a time per connection; the connection stays
open for the next question. Unlike SSE, the client can talk while the server streams: that is
what the stop message needs. Introduced in notebook 08.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from importlib import resources
from typing import Any, cast

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse

from asynclab.faults import RateLimited, ServiceError
from asynclab.openai_api import error_body, service_error_body
from asynclab.services import LLM

__all__ = ["router"]

router = APIRouter(tags=["chat page and WebSocket"])


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def chat_page() -> HTMLResponse:
    """A small chat page: ask a question, watch the answer arrive token by token, stop it."""
    page = resources.files("asynclab.data").joinpath("chat.html").read_text(encoding="utf-8")
    return HTMLResponse(page, headers={"Cache-Control": "no-cache"})


class _Conversation:
    """One WebSocket connection: a receiver loop, and at most one producer task at a time."""

    def __init__(self, websocket: WebSocket, llm: LLM) -> None:
        self.websocket = websocket
        self.llm = llm
        self.producer: asyncio.Task[None] | None = None
        self.tokens = 0
        self._send = asyncio.Lock()  # the producer and the receiver both send: one frame at a time

    async def send(self, event: dict[str, Any]) -> None:
        async with self._send:
            await self.websocket.send_text(json.dumps(event, ensure_ascii=False))

    async def error(
        self, message: str, type_: str, param: str | None = None, code: str | None = None, **extra: Any
    ) -> None:
        await self.send({"type": "error", **error_body(message, type_, param, code), **extra})

    async def produce(self, request: dict[str, Any]) -> None:
        self.tokens = 0
        try:
            chunks = await self.llm.chat(
                request.get("messages"), tools=request.get("tools"), model=request.get("model", "assistant"),
                stream=True,
            )
            async with contextlib.aclosing(chunks):  # type: ignore[type-var]  # an async generator
                async for chunk in chunks:
                    if chunk.finish_reason is not None:
                        usage = chunk.usage.to_dict() if chunk.usage else None
                        await self.send({"type": "done", "finish_reason": chunk.finish_reason, "usage": usage})
                        continue
                    self.tokens += 1
                    for delta in chunk.tool_calls:
                        await self.send({"type": "tool_call", "index": delta.index, "id": delta.id,
                                         "name": delta.name, "arguments": delta.arguments})
                    if chunk.content is not None and not chunk.tool_calls:
                        await self.send({"type": "token", "content": chunk.content})
        except RateLimited as exc:
            await self.error(str(exc), getattr(exc, "kind", "requests"), None, "rate_limit_exceeded",
                             retry_after=round(exc.retry_after, 3))
        except ServiceError as exc:
            await self.send({"type": "error", **service_error_body(exc)})
        except (ValueError, TypeError) as exc:  # a bad request: the message names the field
            await self.error(str(exc), "invalid_request_error", getattr(exc, "param", None))

    async def stop(self) -> None:
        producer, self.producer = self.producer, None
        if producer is not None and not producer.done():
            producer.cancel()  # CancelledError reaches the LLM's generator: its span ends "cancelled"
        if producer is not None:
            # A client that left mid-answer makes the producer's next send fail: that is expected.
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, OSError, RuntimeError):
                await producer

    async def serve(self) -> None:
        while True:
            raw = await self.websocket.receive_text()
            try:
                request = json.loads(raw)
            except ValueError:
                await self.error(f"messages must be JSON objects, got {raw[:80]!r}", "invalid_request_error")
                continue
            kind = request.get("type") if isinstance(request, dict) else None
            if kind == "stop":
                running = self.producer is not None and not self.producer.done()
                await self.stop()
                await self.send({"type": "stopped", "tokens": self.tokens, "was_running": running})
            elif kind == "chat":
                if self.producer is not None and not self.producer.done():
                    await self.error("an answer is still streaming: send {\"type\": \"stop\"} first, or wait for"
                                     " \"done\"", "invalid_request_error", "type")
                    continue
                self.producer = asyncio.create_task(self.produce(request))
            else:
                await self.error(f"type must be 'chat' or 'stop', got {kind!r}", "invalid_request_error", "type")


@router.websocket("/ws/chat")
async def chat_socket(websocket: WebSocket) -> None:
    """Stream chat answers as JSON messages; a ``{"type": "stop"}`` message stops the producer."""
    await websocket.accept()
    conversation = _Conversation(websocket, cast(LLM, websocket.app.state.services.llm))
    try:
        await conversation.serve()
    except WebSocketDisconnect:
        pass
    finally:
        await conversation.stop()  # a client that leaves mid-answer stops the producer too
