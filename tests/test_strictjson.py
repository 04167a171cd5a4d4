"""StrictJSON: JSON bodies held to the JSON standard, on a small app of its own."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request

from asynclab.strictjson import StrictJSON, body_problem


def _app() -> FastAPI:
    app = FastAPI()

    @app.post("/echo")
    async def echo(request: Request) -> Any:
        return {"got": (await request.body()).decode("utf-8", "replace")}

    @app.post("/v1/echo")
    async def echo_v1(request: Request) -> Any:
        return {"got": (await request.body()).decode("utf-8", "replace")}

    app.add_middleware(StrictJSON)
    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app()), base_url="http://test") as c:
        yield c


JSON = {"content-type": "application/json"}


async def test_a_standard_body_reaches_the_app_byte_for_byte(client: httpx.AsyncClient) -> None:
    body = '{"a": [1, 2.5, -3e10, "é ✓", null, true], "b": {"c": ""}}'.encode()
    response = await client.post("/echo", content=body, headers=JSON)
    assert response.status_code == 200
    assert response.json()["got"] == body.decode()


async def test_a_body_sent_in_chunks_is_checked_whole_and_handed_on_whole(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"a": "one", '
        yield b'"b": NaN}'

    refused = await client.post("/echo", content=chunks(), headers=JSON)
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", "b"]

    async def good() -> AsyncIterator[bytes]:
        yield b'{"a": "one", '
        yield b'"b": 2}'

    passed = await client.post("/echo", content=good(), headers=JSON)
    assert passed.json() == {"got": '{"a": "one", "b": 2}'}


@pytest.mark.parametrize("content_type", ["text/plain", "application/octet-stream", None])
async def test_other_bodies_pass_untouched(client: httpx.AsyncClient, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = await client.post("/echo", content=b"NaN \xff", headers=headers)
    assert response.status_code == 200


async def test_a_json_suffix_type_is_checked_too(client: httpx.AsyncClient) -> None:
    headers = {"content-type": "application/vnd.x+json"}
    response = await client.post("/echo", content=b'{"x": Infinity}', headers=headers)
    assert response.status_code == 422


async def test_under_v1_the_refusal_speaks_openais_error_format(client: httpx.AsyncClient) -> None:
    body = b'{"model": "assistant", "messages": [{"role": "user", "content": "caf\xe9"}], "temperature": 0.5}'
    response = await client.post("/v1/echo", content=body, headers=JSON)
    assert response.status_code == 400
    assert response.json() == {"error": {
        "message": "messages[0].content: Input should be valid UTF-8 text",
        "type": "invalid_request_error", "param": "messages[0].content", "code": None,
    }}
    nan = await client.post("/v1/echo", content=b'{"temperature": NaN}', headers=JSON)
    assert nan.status_code == 400 and nan.json()["error"]["param"] == "temperature"


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b'{"a": 1}', None),
        (b'{"a": ', None),  # a syntax error: FastAPI's own 422 reports it
        ('{"a": 1}'.encode("utf-16"), None),  # not UTF-8 at all: left to the app
        (b'\xef\xbb\xbf{"a": NaN}', ["body", "a"]),  # a UTF-8 byte order mark is skipped
        (b'[1, [2, {"deep": [NaN]}]]', ["body", 1, 1, "deep", 0]),
        (b'{"\xff": 1}', ["body"]),
    ],
)
def test_body_problem_finds_the_first_value_that_is_no_json(body: bytes, problem: list[Any] | None) -> None:
    found = body_problem(body)
    assert (found and found["loc"]) == problem
    if found is not None:
        json.dumps(found, allow_nan=False)  # the answer itself is standard JSON
