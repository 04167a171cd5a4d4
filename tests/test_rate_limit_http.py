"""Rate limits over HTTP: both kinds (requests, tokens) answer 429 with Retry-After and OpenAI's
``x-ratelimit-*`` headers; a request no window can hold answers 413."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx

from asynclab import LLM, Faults, RateLimit, now
from asynclab.faults import parse_duration
from asynclab.server import create_app
from asynclab.services.llm import token_usage

FIRST, SECOND = "What is backpressure?", "Why stream tokens?"


def _between(value: float, admitted: tuple[float, float], refused: tuple[float, float], per: float) -> bool:
    """Is ``value`` a reset or wait of ``per`` seconds from a call admitted during ``admitted``,
    read during ``refused`` (each a (start, end) pair of clock readings around a request)?

    Bounds instead of a tolerance: the exact moments inside each request are not observable.
    The 1 ms is the headers' rounding up.
    """
    return admitted[0] + per - refused[1] <= value <= admitted[1] + per - refused[0] + 0.001


async def _client(llm: LLM) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(llm=llm))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def test_too_many_requests_answers_429_with_retry_after_and_x_ratelimit_headers(fast: float) -> None:
    llm = LLM(latency=0.05, faults=Faults(rate_limit=RateLimit(calls=1, per=30, tokens=10_000)))
    async for client in _client(llm):
        start = now()
        assert (await client.post("/llm/complete", json={"prompt": FIRST})).status_code == 200
        admitted, start = (start, now()), now()
        response = await client.post("/llm/complete", json={"prompt": SECOND})
        refused = (start, now())
    assert response.status_code == 429, response.text
    body = response.json()
    assert body["error"] == "RateLimited" and "rate limited (requests)" in body["detail"]
    headers = response.headers
    assert headers["Retry-After"] == "30"  # 29.9… simulated seconds, rounded up
    assert _between(body["retry_after"], admitted, refused, per=30)
    assert headers["x-ratelimit-limit-requests"] == "1"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert _between(parse_duration(headers["x-ratelimit-reset-requests"]), admitted, refused, per=30)
    # The token budget is reported too: the first call's prompt and answer are counted.
    assert headers["x-ratelimit-limit-tokens"] == "10000"
    assert headers["x-ratelimit-remaining-tokens"] == str(10_000 - token_usage("assistant", FIRST))


async def test_too_many_tokens_answers_429_with_the_token_headers(fast: float) -> None:
    limit = token_usage("assistant", FIRST) + token_usage("assistant", SECOND) - 1
    llm = LLM(latency=0.05, faults=Faults(rate_limit=RateLimit(tokens=limit, per=60)))
    async for client in _client(llm):
        start = now()
        assert (await client.post("/llm/complete", json={"prompt": FIRST})).status_code == 200
        admitted, start = (start, now()), now()
        response = await client.post("/llm/complete", json={"prompt": SECOND})
        refused = (start, now())
        stream = await client.post("/llm/stream", json={"prompt": SECOND})
    assert response.status_code == 429, response.text
    assert "rate limited (tokens)" in response.json()["detail"]
    headers = response.headers
    assert headers["Retry-After"] == "60"
    assert headers["x-ratelimit-limit-tokens"] == str(limit)
    assert headers["x-ratelimit-remaining-tokens"] == str(limit - token_usage("assistant", FIRST))
    assert _between(parse_duration(headers["x-ratelimit-reset-tokens"]), admitted, refused, per=60)
    assert "x-ratelimit-limit-requests" not in headers  # this budget counts tokens only
    # A stream is refused before its first token, so it gets the real status and headers too.
    assert stream.status_code == 429, stream.text
    assert stream.headers["x-ratelimit-remaining-tokens"] == headers["x-ratelimit-remaining-tokens"]


async def test_a_request_larger_than_the_token_window_answers_413_not_429(fast: float) -> None:
    llm = LLM(latency=0.05, faults=Faults(rate_limit=RateLimit(tokens=5, per=60)))
    async for client in _client(llm):
        response = await client.post("/llm/complete", json={"prompt": FIRST})
    assert response.status_code == 413, response.text
    body = json.loads(response.text)
    assert body["error"] == "RequestTooLarge" and "can never be admitted" in body["detail"]
    assert "Retry-After" not in response.headers  # waiting cannot help
