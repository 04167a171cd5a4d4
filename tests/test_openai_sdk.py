"""The official openai SDK against the course server: a real uvicorn server, the real package.

    client = AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused")

What a learner writes at work runs here unchanged: plain and streamed completions, parallel
tool calls and the final answer, embeddings, models, and the SDK's own retries on 429 and 503.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import openai
import pytest
from openai import AsyncOpenAI

from asynclab import LLM, Faults, RateLimit, Span, Streamed, Tools, at_speed, now, text
from asynclab.chat import TOOL_SCHEMAS
from asynclab.server import create_app
from asynclab.serving import BackgroundServer

SPEED = 20.0
THREE = "What's the weather in Paris and Tokyo, and NVDA's stock price?"
QUESTION = "What is backpressure?"
STREAM = Streamed(first_token=1.0, per_token=0.05)


class WatchedLLM(LLM):
    """An LLM that keeps the spans of its calls: the server's side of a request, seen from the test."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.spans: list[Span] = []

    def _open(self, operation: str, key: str, items: int = 1) -> Span:
        span = super()._open(operation, key, items)
        self.spans.append(span)
        return span


async def serve(llm: LLM, speed: float = SPEED, **options: Any) -> AsyncIterator[AsyncOpenAI]:
    with at_speed(speed):
        async with BackgroundServer(create_app(llm=llm)) as server, \
                AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused", **options) as client:
            yield client


@pytest.fixture
async def client() -> AsyncIterator[AsyncOpenAI]:
    async for c in serve(LLM(stream_latency=STREAM)):
        yield c


def user(content: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": content}]


async def test_a_plain_completion_is_the_models_answer(client: AsyncOpenAI) -> None:
    reply = await client.chat.completions.create(model="assistant", messages=user(QUESTION))  # type: ignore[arg-type]
    direct = await LLM().chat(user(QUESTION))
    assert reply.choices[0].message.content == direct.content
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.completion_tokens == direct.usage.completion_tokens


async def test_a_streamed_completion_arrives_token_by_token_from_the_first_token() -> None:
    # Speed 5, not 20: one SDK request costs 5-30 ms of wall time on this shared 2-core VM (the
    # SDK, httpx and the server share one process), 0.1-0.6 simulated seconds at speed 20.
    async for client in serve(LLM(stream_latency=STREAM), speed=5):
        stream = await client.chat.completions.create(model="assistant", messages=user("warm up"), stream=True)  # type: ignore[arg-type]
        [_ async for _ in stream]  # warm up: the connection and the SDK's chunk models
        start = now()
        stream = await client.chat.completions.create(
            model="assistant", messages=user(QUESTION), stream=True,  # type: ignore[arg-type]
            stream_options={"include_usage": True},
        )
        arrivals, pieces, usage = [], [], None
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                arrivals.append(now() - start)
                pieces.append(chunk.choices[0].delta.content)
            usage = chunk.usage or usage
    assert "".join(pieces) == (await LLM().chat(user(QUESTION))).content
    # The first chunk at about the time to first token (1 s), allowing 0.25 s (50 ms of wall time)
    # for the request and a late timer; the whole answer would take 1 + 0.05 × 16 = 1.8 s.
    assert STREAM.first_token - 0.02 < arrivals[0] < STREAM.first_token + 0.25, arrivals[0]
    # Then incrementally, one every 0.05 s: a buffered response would deliver them all at once.
    spread = arrivals[-1] - arrivals[0]
    assert abs(spread - STREAM.per_token * (len(arrivals) - 1)) < 0.25, (spread, len(arrivals))
    assert usage is not None and usage.completion_tokens == len(pieces)


async def test_three_parallel_tool_calls_then_a_final_answer(client: AsyncOpenAI) -> None:
    tools = Tools()
    functions = {"get_weather": tools.weather, "get_news": tools.news, "get_stock_price": tools.stock_price}
    messages: list[Any] = user(THREE)
    first = await client.chat.completions.create(model="assistant", messages=messages, tools=TOOL_SCHEMAS)  # type: ignore[arg-type]
    message = first.choices[0].message
    calls = message.tool_calls or []
    assert first.choices[0].finish_reason == "tool_calls" and len(calls) == 3
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [  # type: ignore[union-attr]
        ("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Tokyo"}), ("get_stock_price", {"symbol": "NVDA"})]
    messages.append(message)  # the SDK's own message object goes back as it is
    results = await asyncio.gather(*(functions[c.function.name](**json.loads(c.function.arguments)) for c in calls))  # type: ignore[union-attr]
    messages += [{"role": "tool", "tool_call_id": c.id, "content": json.dumps(r)}
                 for c, r in zip(calls, results, strict=True)]
    final = await client.chat.completions.create(model="assistant", messages=messages, tools=TOOL_SCHEMAS)  # type: ignore[arg-type]
    answer = final.choices[0].message.content or ""
    assert final.choices[0].finish_reason == "stop"
    assert f"Tokyo: {results[1]['condition']}" in answer and f"NVDA trades at {results[2]['price']}" in answer


async def test_streamed_tool_calls_add_up_by_index(client: AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="assistant", messages=user(THREE), tools=TOOL_SCHEMAS, stream=True)  # type: ignore[arg-type]
    calls: dict[int, dict[str, str]] = {}
    finish = None
    async for chunk in stream:
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        for delta in choice.delta.tool_calls or []:
            call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += delta.id or ""
            call["name"] += (delta.function and delta.function.name) or ""
            call["arguments"] += (delta.function and delta.function.arguments) or ""
    assert finish == "tool_calls"
    assert [(c["name"], json.loads(c["arguments"])) for c in calls.values()] == [
        ("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Tokyo"}), ("get_stock_price", {"symbol": "NVDA"})]
    assert all(c["id"].startswith("call_") for c in calls.values())


async def test_embeddings_and_models_through_the_sdk(client: AsyncOpenAI) -> None:
    texts = ["How do I stream tokens?", "Postgres vacuum settings"]
    batch = await client.embeddings.create(model="embeddings", input=texts)
    assert np.allclose([d.embedding for d in batch.data], [text.embed(t) for t in texts])
    one = await client.embeddings.create(model="embeddings", input=texts[0], encoding_format="base64")
    packed = one.data[0].embedding  # asked for explicitly, base64 comes back as it is: float32 bytes
    assert isinstance(packed, str)
    assert np.allclose(np.frombuffer(base64.b64decode(packed), dtype="<f4"), text.embed(texts[0]), atol=1e-6)
    assert [m.id async for m in client.models.list()] == ["assistant", "summarizer", "sentiment", "classifier",
                                                          "embeddings"]


async def test_an_unknown_model_and_a_bad_message_raise_the_sdks_errors(client: AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match="gpt-4o"):
        await client.chat.completions.create(model="gpt-4o", messages=user(QUESTION))  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(
            model="assistant", messages=[*user(THREE), {"role": "tool", "tool_call_id": "call_x", "content": "{}"}])  # type: ignore[list-item]
    assert caught.value.param == "messages[1].tool_call_id"


async def test_the_sdk_retry_waits_for_the_servers_retry_after() -> None:
    # A quick LLM (0.06 s a call), so the second call comes well inside the 1 s window.
    llm = WatchedLLM(faults=Faults(rate_limit=RateLimit(1, per=1.0)), stream_latency=Streamed(0.05, 0.001))
    async for client in serve(llm):
        await client.chat.completions.create(model="assistant", messages=user(QUESTION))  # type: ignore[arg-type]
        started = time.perf_counter()
        reply = await client.chat.completions.create(model="assistant", messages=user(QUESTION))  # type: ignore[arg-type]
        waited = time.perf_counter() - started
    assert reply.choices[0].message.content
    assert [s.outcome for s in llm.spans] == ["ok", "RateLimited", "ok"]
    # Retry-After says 1 (whole seconds, rounded up): the SDK slept that long, not its own 0.5 s backoff.
    assert 1.0 <= waited < 2.0, waited


async def test_without_retries_a_rate_limit_raises_the_sdks_rate_limit_error() -> None:
    llm = WatchedLLM(faults=Faults(rate_limit=RateLimit(1, per=30.0)))
    async for client in serve(llm, max_retries=0):
        await client.chat.completions.create(model="assistant", messages=user(QUESTION))  # type: ignore[arg-type]
        with pytest.raises(openai.RateLimitError) as caught:
            await client.chat.completions.create(model="assistant", messages=user(QUESTION))  # type: ignore[arg-type]
    assert caught.value.status_code == 429 and caught.value.code == "rate_limit_exceeded"
    assert int(caught.value.response.headers["retry-after"]) >= 1
    assert caught.value.response.headers["x-ratelimit-remaining-requests"] == "0"
    assert [s.outcome for s in llm.spans] == ["ok", "RateLimited"]


async def test_the_sdk_retries_an_injected_fault_by_itself() -> None:
    llm = WatchedLLM(faults=Faults(fail_first=1), stream_latency=Streamed(0.2, 0.01))
    async for client in serve(llm):
        reply = await client.chat.completions.create(model="assistant", messages=user(QUESTION))  # type: ignore[arg-type]
    assert reply.choices[0].message.content
    assert [(s.attempt, s.outcome) for s in llm.spans] == [(1, "ServiceUnavailable"), (2, "ok")]
