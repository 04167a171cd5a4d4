"""The /v1 wire format, read as raw HTTP: OpenAI's objects, SSE chunks, error bodies and headers.

JSON calls go in process through httpx.ASGITransport; streams go over a real uvicorn server
(ASGITransport buffers a whole response).
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pytest

from asynclab import LLM, Embeddings, Faults, RateLimit, Streamed, at_speed, text
from asynclab.chat import TOOL_SCHEMAS
from asynclab.server import create_app
from asynclab.serving import BackgroundServer

THREE = "What's the weather in Paris and Tokyo, and NVDA's stock price?"
QUESTION = "What is backpressure?"


def chat(content: str, **extra: Any) -> dict[str, Any]:
    return {"model": "assistant", "messages": [{"role": "user", "content": content}], **extra}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    with at_speed(50):
        app = create_app(llm=LLM(stream_latency=Streamed(0.2, 0.01)))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://asynclab") as c:
            yield c


def sse_events(body: str) -> list[str]:
    """The data of each event of an SSE body (every event here is one ``data:`` line)."""
    events = [block for block in body.split("\n\n") if block.strip()]
    assert all(block.startswith("data: ") and "\n" not in block for block in events), events[:3]
    return [block.removeprefix("data: ") for block in events]


async def test_a_chat_completion_is_an_openai_chat_completion_object(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions", json=chat(QUESTION))
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-") and body["model"] == "assistant"
    assert isinstance(body["created"], int)
    (choice,) = body["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant" and "backpressure" in choice["message"]["content"].lower()
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0


async def test_tool_calls_come_back_in_one_message_with_json_arguments(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions", json=chat(THREE, tools=TOOL_SCHEMAS))
    (choice,) = response.json()["choices"]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    calls = choice["message"]["tool_calls"]
    assert [(c["type"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] == [
        ("function", "get_weather", {"city": "Paris"}), ("function", "get_weather", {"city": "Tokyo"}),
        ("function", "get_stock_price", {"symbol": "NVDA"}),
    ]


async def test_a_stream_is_openai_chunks_then_done() -> None:
    with at_speed(50):
        async with BackgroundServer(create_app(llm=LLM(stream_latency=Streamed(0.2, 0.01)))) as server, \
                httpx.AsyncClient(base_url=server.url) as http:
            plain = (await http.post("/v1/chat/completions", json=chat(QUESTION))).json()
            response = await http.post("/v1/chat/completions", json=chat(
                QUESTION, stream=True, stream_options={"include_usage": True}))
            tools = await http.post("/v1/chat/completions", json=chat(THREE, stream=True, tools=TOOL_SCHEMAS))
    assert response.headers["content-type"].startswith("text/event-stream")
    *data, done = sse_events(response.text)
    assert done == "[DONE]"
    chunks = [json.loads(d) for d in data]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"} and len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text_chunks, finish, usage = chunks[:-2], chunks[-2], chunks[-1]
    streamed = "".join(c["choices"][0]["delta"]["content"] for c in text_chunks)
    assert streamed == plain["choices"][0]["message"]["content"]
    assert all(c["usage"] is None for c in chunks[:-1])  # usage only on the last chunk, as asked
    assert finish["choices"] == [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]
    assert usage["choices"] == [] and usage["usage"] == plain["usage"]

    *data, done = sse_events(tools.text)
    chunks = [json.loads(d) for d in data]
    assert done == "[DONE]" and "usage" not in chunks[0]  # not asked for
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks[:-1]:
        for delta in chunk["choices"][0]["delta"]["tool_calls"]:
            call = calls.setdefault(delta["index"], {"name": "", "arguments": ""})
            call["name"] += delta.get("function", {}).get("name") or ""
            call["arguments"] += delta["function"]["arguments"]
            assert ("id" in delta) == (delta["function"].get("name") is not None)  # id and name once, first
    assert [(c["name"], json.loads(c["arguments"])) for c in calls.values()] == [
        ("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Tokyo"}), ("get_stock_price", {"symbol": "NVDA"})]


async def test_a_fault_after_the_first_chunk_arrives_as_an_error_event() -> None:
    with at_speed(50):
        llm = LLM(faults=Faults(error_rate=1.0), stream_latency=Streamed(0.1, 0.01))
        async with BackgroundServer(create_app(llm=llm)) as server, httpx.AsyncClient(base_url=server.url) as http:
            response = await http.post("/v1/chat/completions", json=chat(QUESTION, stream=True))
    assert response.status_code == 200
    *tokens, last = sse_events(response.text)
    assert tokens and json.loads(last)["error"]["type"] == "server_error"  # no [DONE]: the stream broke


@pytest.mark.parametrize(("body", "status", "param", "words"), [
    (chat(QUESTION) | {"model": "gpt-4o"}, 404, "model", ("gpt-4o", "assistant")),
    ({"messages": [{"role": "user", "content": "hi"}]}, 400, "model", ("Field required",)),
    (chat(QUESTION) | {"messages": []}, 400, "messages", ("at least one message",)),
    (chat(QUESTION) | {"messages": [{"role": "bot", "content": "hi"}]}, 400, "messages[0].role", ("'bot'",)),
    (chat(QUESTION) | {"messages": "hi"}, 400, "messages", ("list",)),
    (chat(QUESTION, tools=TOOL_SCHEMAS, tool_choice="always"), 400, "tool_choice", ("'required'",)),
    (chat(QUESTION, tools=[{"type": "function", "function": {"name": "a b"}}]), 400, "tools[0].function.name", ()),
    (chat(QUESTION, n=2), 400, "n", ("less than or equal to 1",)),
    (chat(QUESTION, stream="often"), 400, "stream", ("boolean",)),
    ({"model": "embeddings", "input": ""}, 400, "input", ("non-empty",)),
    ({"model": "embeddings", "input": ["ok", " "]}, 400, "input[1]", ("non-empty",)),
    ({"model": "embeddings", "input": "hi", "dimensions": 3}, 400, "dimensions", ("256",)),
    ({"model": "assistant", "input": "hi"}, 404, "model", ("embeddings",)),
])
async def test_bad_requests_get_an_openai_error_body_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], status: int, param: str, words: tuple[str, ...]
) -> None:
    path = "/v1/embeddings" if "input" in body else "/v1/chat/completions"
    response = await client.post(path, json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert all(w in error["message"] for w in words), error["message"]


async def test_a_rate_limit_is_a_429_with_retry_after_and_rate_limit_headers() -> None:
    with at_speed(50):
        app = create_app(llm=LLM(faults=Faults(rate_limit=RateLimit(1, per=30.0))))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://asynclab") as http:
            assert (await http.post("/v1/chat/completions", json=chat(QUESTION))).status_code == 200
            limited = await http.post("/v1/chat/completions", json=chat(QUESTION))
            streamed = await http.post("/v1/chat/completions", json=chat(QUESTION, stream=True))
    for response in (limited, streamed):  # a stream is refused before it starts: a real status
        assert response.status_code == 429
        assert 1 <= int(response.headers["retry-after"]) <= 30
        for header in ("x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests"):
            assert header in response.headers, header
        assert response.headers["x-ratelimit-limit-requests"] == "1"
        assert response.headers["x-ratelimit-remaining-requests"] == "0"
        error = response.json()["error"]
        assert error["code"] == "rate_limit_exceeded" and error["type"] == "requests"


async def test_a_token_rate_limit_is_a_429_with_the_token_headers() -> None:
    with at_speed(50):
        app = create_app(llm=LLM(faults=Faults(rate_limit=RateLimit(tokens=40, per=30.0))))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://asynclab") as http:
            assert (await http.post("/v1/chat/completions", json=chat(QUESTION))).status_code == 200  # 28 tokens
            limited = await http.post("/v1/chat/completions", json=chat(QUESTION))
    assert limited.status_code == 429 and limited.json()["error"]["type"] == "tokens"
    assert limited.headers["x-ratelimit-limit-tokens"] == "40"
    assert int(limited.headers["x-ratelimit-remaining-tokens"]) < 28
    assert "x-ratelimit-reset-tokens" in limited.headers


async def test_a_request_larger_than_the_token_window_is_a_413() -> None:
    with at_speed(50):
        app = create_app(llm=LLM(faults=Faults(rate_limit=RateLimit(tokens=10, per=30.0))))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://asynclab") as http:
            response = await http.post("/v1/chat/completions", json=chat(QUESTION))  # 28 tokens
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert response.json()["error"]["code"] == "request_too_large"


async def test_embeddings_come_as_float_lists_or_base64(client: httpx.AsyncClient) -> None:
    texts = ["How do I stream tokens?", "Token streaming with SSE", "Postgres vacuum settings"]
    batch = (await client.post("/v1/embeddings", json={"model": "embeddings", "input": texts})).json()
    assert batch["object"] == "list" and batch["model"] == "embeddings"
    assert [d["index"] for d in batch["data"]] == [0, 1, 2] and {d["object"] for d in batch["data"]} == {"embedding"}
    vectors = np.array([d["embedding"] for d in batch["data"]])
    assert vectors.shape == (3, 256) and np.allclose(vectors, [text.embed(t) for t in texts])
    assert batch["usage"]["prompt_tokens"] == sum(len(text.tokenize(t)) for t in texts)
    one = (await client.post("/v1/embeddings", json={"model": "embeddings", "input": texts[0],
                                                     "encoding_format": "base64"})).json()
    decoded = np.frombuffer(base64.b64decode(one["data"][0]["embedding"]), dtype="<f4")
    assert np.allclose(decoded, vectors[0], atol=1e-6)


async def test_a_batch_of_embeddings_is_one_service_call() -> None:
    embeddings = Embeddings()
    with at_speed(50):
        app = create_app(embeddings=embeddings)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://asynclab") as http:
            await http.post("/v1/embeddings", json={"model": "embeddings", "input": ["a", "b", "c", "d"]})
    assert embeddings.calls == 1


async def test_models_lists_the_course_models(client: httpx.AsyncClient) -> None:
    listed = (await client.get("/v1/models")).json()
    assert listed["object"] == "list"
    assert [m["id"] for m in listed["data"]] == ["assistant", "summarizer", "sentiment", "classifier", "embeddings"]
    assert all(m["object"] == "model" and m["owned_by"] == "asynclab" for m in listed["data"])
    assert (await client.get("/v1/models/assistant")).json()["id"] == "assistant"
    missing = await client.get("/v1/models/gpt-4o")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"


async def test_any_api_key_is_accepted(client: httpx.AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Bearer sk-anything"}, {"Authorization": "nonsense"}):
        assert (await client.post("/v1/chat/completions", json=chat(QUESTION), headers=headers)).status_code == 200
