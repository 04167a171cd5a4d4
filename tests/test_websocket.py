"""/ws/chat over a real uvicorn server with a real WebSocket client (the ``websockets`` package)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from asynclab import LLM, Faults, RateLimit, Span, Streamed, at_speed, now
from asynclab.server import create_app
from asynclab.serving import BackgroundServer

QUESTION = "What is backpressure?"
STREAM = Streamed(first_token=0.5, per_token=0.1)
#: Speed 10: a WebSocket frame each way and a timer on a busy 2-core VM cost ~5-10 ms of wall
#: time, which stays under 0.1 simulated seconds (one token) at this speed.
SPEED = 10


class WatchedLLM(LLM):
    """An LLM that keeps the spans of its calls: the server's side of a request, seen from the test."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.spans: list[Span] = []

    def _open(self, operation: str, key: str, items: int = 1) -> Span:
        span = super()._open(operation, key, items)
        self.spans.append(span)
        return span


async def socket_for(llm: LLM) -> AsyncIterator[ClientConnection]:
    with at_speed(SPEED):
        async with BackgroundServer(create_app(llm=llm)) as server, \
                connect(server.url.replace("http://", "ws://") + "/ws/chat") as ws:
            yield ws


def ask(content: str, **extra: Any) -> str:
    return json.dumps({"type": "chat", "messages": [{"role": "user", "content": content}], **extra})


async def receive(ws: ClientConnection) -> dict[str, Any]:
    return dict(json.loads(await asyncio.wait_for(ws.recv(), timeout=5)))


async def until_end(ws: ClientConnection) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    events = []
    while (event := await receive(ws))["type"] not in ("done", "stopped", "error"):
        events.append(event)
    return events, event


async def wait_for_end(span: Span) -> None:
    for _ in range(200):  # the server's loop notices on its own thread
        if span.end is not None:
            return
        await asyncio.sleep(0.005)


async def test_an_answer_streams_as_token_messages_then_done() -> None:
    async for ws in socket_for(LLM(stream_latency=STREAM)):
        start = now()
        await ws.send(ask(QUESTION))
        arrivals, tokens = [], []
        while (event := await receive(ws))["type"] == "token":
            arrivals.append(now() - start)
            tokens.append(event["content"])
    expected = await LLM().chat([{"role": "user", "content": QUESTION}])
    assert "".join(tokens) == expected.content
    assert event == {"type": "done", "finish_reason": "stop", "usage": expected.usage.to_dict()}
    # Token by token: the first at the time to first token (0.5 s; 0.2 s allowed for a late timer
    # and the frame, 20 ms of wall time), then one every 0.1 s.
    assert arrivals[0] < STREAM.first_token + 0.2
    assert arrivals[-1] - arrivals[0] > STREAM.per_token * (len(arrivals) - 1) - 0.2


async def test_a_stop_message_cancels_the_producer_and_the_socket_stays_open() -> None:
    llm = WatchedLLM(stream_latency=STREAM)
    async for ws in socket_for(llm):
        await ws.send(ask(QUESTION))
        seen = [await receive(ws) for _ in range(3)]
        await ws.send(json.dumps({"type": "stop"}))
        stopped_at = now()
        late, end = await until_end(ws)  # a token already on the wire may still arrive
        produced = llm.spans[-1]
        await wait_for_end(produced)
        assert llm.in_flight == 0
        await ws.send(ask("What is time to first token?"))  # the connection serves the next question
        _, after = await until_end(ws)
    assert [e["type"] for e in seen] == ["token"] * 3 and all(e["type"] == "token" for e in late)
    assert end["type"] == "stopped" and end["tokens"] == 3 + len(late) and end["was_running"]
    assert produced.outcome == "cancelled" and produced.end is not None
    full = STREAM.first_token + STREAM.per_token * (produced.items - 1)
    assert produced.end - stopped_at < 0.2  # within about one token of the stop (0.1 s per token)
    assert produced.end - produced.start < full - 0.5  # far from the whole answer
    assert after["type"] == "done"


async def test_leaving_mid_answer_stops_the_producer() -> None:
    llm = WatchedLLM(stream_latency=STREAM)
    with at_speed(SPEED):
        async with BackgroundServer(create_app(llm=llm)) as server:
            async with connect(server.url.replace("http://", "ws://") + "/ws/chat") as ws:
                await ws.send(ask(QUESTION))
                await receive(ws)
            await wait_for_end(llm.spans[-1])
            assert llm.in_flight == 0
    assert llm.spans[-1].outcome == "cancelled"


@pytest.mark.parametrize(("message", "param", "words"), [
    (ask("hi", model="gpt-4o"), None, ("model must be one of",)),
    (json.dumps({"type": "chat", "messages": [{"role": "bot", "content": "hi"}]}), "messages[0].role", ("'bot'",)),
    (json.dumps({"type": "chat"}), "messages", ("list",)),
    (json.dumps({"type": "shout"}), "type", ("'chat' or 'stop'",)),
    ("not json", None, ("JSON",)),
])
async def test_a_bad_message_gets_an_error_naming_the_field_and_the_socket_stays_open(
    message: str, param: str | None, words: tuple[str, ...]
) -> None:
    async for ws in socket_for(LLM(stream_latency=Streamed(0.1, 0.01))):
        await ws.send(message)
        error = await receive(ws)
        await ws.send(ask(QUESTION))
        _, done = await until_end(ws)
    assert error["type"] == "error" and error["error"]["param"] == param
    assert all(w in error["error"]["message"] for w in words), error
    assert done["type"] == "done"


async def test_a_second_question_while_streaming_is_refused() -> None:
    async for ws in socket_for(LLM(stream_latency=STREAM)):
        await ws.send(ask(QUESTION))
        await receive(ws)
        await ws.send(ask("another"))
        _, end = await until_end(ws)
        while end["type"] == "error":  # the refusal, between tokens; then the first answer goes on
            refused = end
            _, end = await until_end(ws)
    assert "still streaming" in refused["error"]["message"] and end["type"] == "done"


async def test_a_rate_limited_question_gets_an_error_with_retry_after() -> None:
    llm = LLM(faults=Faults(rate_limit=RateLimit(1, per=30.0)), stream_latency=Streamed(0.1, 0.01))
    async for ws in socket_for(llm):
        await ws.send(ask(QUESTION))
        _, first = await until_end(ws)
        await ws.send(ask(QUESTION))
        _, second = await until_end(ws)
    assert first["type"] == "done"
    assert second["type"] == "error" and second["error"]["code"] == "rate_limit_exceeded"
    assert 0 < second["retry_after"] <= 30
