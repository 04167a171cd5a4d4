"""The HTTP contract of asynclab.server, in process through httpx.ASGITransport.

Every endpoint gets a happy path, bad input (422 with a message), a rate limit (429 with
Retry-After) and an injected fault (503, or an ``error`` event once a stream has started).
"""

from __future__ import annotations

import gc
import json
import math
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, get_args

import httpx
import pytest

from asynclab import (
    LLM,
    BlockingEmbeddings,
    BlockingLLM,
    Embeddings,
    Faults,
    MetadataStore,
    PgVectorStore,
    PineconeStore,
    RateLimit,
    RedisStore,
    Tools,
    about,
    at_speed,
)
from asynclab.schemas import ModelName, StoreName
from asynclab.server import create_app
from asynclab.services import MODELS, STORES


@pytest.fixture(autouse=True)
def fast_and_no_gc() -> Iterator[None]:
    """Speed 50, with the cyclic garbage collector paused for the test.

    Not conftest's ``fast``: its full collection costs ~0.3 s per test once FastAPI is loaded.
    Pausing the collector keeps a generation-2 pause (up to ~0.2 s wall, 10 simulated seconds at
    speed 50) out of the timed blocks just as well.
    """
    gc.disable()
    try:
        with at_speed(50):
            yield
    finally:
        gc.enable()

QUESTION = "How do retries with backoff work?"

#: (method, path, request options) for one valid call of every endpoint.
ENDPOINTS: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/llm/complete", {"json": {"prompt": QUESTION}}),
    ("POST", "/llm/stream", {"json": {"prompt": QUESTION}}),
    ("POST", "/embeddings", {"json": {"text": QUESTION}}),
    ("POST", "/embeddings/batch", {"json": {"texts": [QUESTION, "What is a token?"]}}),
    ("POST", "/search/redis", {"json": {"query": QUESTION}}),
    ("POST", "/search/pgvector", {"json": {"query": QUESTION}}),
    ("POST", "/search/pinecone", {"json": {"query": QUESTION}}),
    ("GET", "/metadata/doc-001", {}),
    ("GET", "/tools/weather", {"params": {"city": "Lisbon"}}),
    ("GET", "/tools/news", {"params": {"topic": "AI chips"}}),
    ("GET", "/tools/stock", {"params": {"symbol": "NVDA"}}),
    ("POST", "/agent", {"json": {"question": QUESTION, "city": "Lisbon"}}),
]

#: (method, path, request options, words the 422 message must contain) for bad input.
BAD_INPUT: list[tuple[str, str, dict[str, Any], tuple[str, ...]]] = [
    ("POST", "/llm/complete", {"json": {"prompt": ""}}, ("prompt", "at least 1 character")),
    ("POST", "/llm/complete", {"json": {"prompt": "hi", "model": "gpt"}}, ("model", "'summarizer'", "gpt")),
    ("POST", "/llm/stream", {"json": {"prompt": "hi", "model": "gpt"}}, ("model", "'assistant'")),
    ("POST", "/embeddings", {"json": {"text": ""}}, ("text", "at least 1 character")),
    ("POST", "/embeddings", {"json": {"text": "   "}}, ("text must be a non-empty str",)),
    ("POST", "/embeddings/batch", {"json": {"texts": []}}, ("texts", "at least 1 item")),
    ("POST", "/search/mongo", {"json": {"query": QUESTION}}, ("store", "'redis'", "'pgvector'", "'pinecone'")),
    ("POST", "/search/redis", {"json": {"query": QUESTION, "k": 0}}, ("k", "greater than or equal to 1")),
    ("GET", "/metadata/%20", {}, ("doc_id must be a non-empty str",)),
    ("GET", "/tools/weather", {}, ("city", "Field required")),
    ("GET", "/tools/weather", {"params": {"city": "12"}}, ("city must be a place name", "'12'")),
    ("GET", "/tools/news", {"params": {"topic": "AI", "limit": 11}}, ("limit", "less than or equal to 10")),
    ("GET", "/tools/stock", {"params": {"symbol": "nvda"}}, ("symbol must be 1 to 5 capital letters", "'nvda'")),
    ("POST", "/agent", {"json": {"question": ""}}, ("question", "at least 1 character")),
    ("POST", "/agent", {"json": {"question": QUESTION, "city": "12"}}, ("city must be a place name",)),
]


def _ids(cases: list[Any]) -> list[str]:
    return [f"{case[0]} {case[1]}" for case in cases]


def _every_service(faults: Callable[[], Faults]) -> dict[str, Any]:
    """Services that each get their own fault plan (one RateLimit instance is one shared budget)."""
    return {
        "llm": LLM(faults=faults()),
        "embeddings": Embeddings(faults=faults()),
        "stores": {name: kind(faults=faults()) for name, kind in STORES.items()},
        "metadata": MetadataStore(faults=faults()),
        "tools": Tools(faults=faults()),
    }


async def _client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        yield client


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async for c in _client(create_app()):
        yield c


def _message(body: dict[str, Any]) -> str:
    """Our ErrorBody's detail, or FastAPI's list of field errors, as one string."""
    return body["detail"] if isinstance(body["detail"], str) else json.dumps(body["detail"])


def _events(text: str) -> list[tuple[str, Any]]:
    """(event, data) pairs of an SSE body."""
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        events.append((fields.get("event", "message"), json.loads(fields["data"])))
    return events


# -- every endpoint -----------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "options"), ENDPOINTS, ids=_ids(ENDPOINTS))
async def test_every_endpoint_answers_a_valid_request_with_200(
    client: httpx.AsyncClient, method: str, path: str, options: dict[str, Any]
) -> None:
    response = await client.request(method, path, **options)
    assert response.status_code == 200, response.text
    assert response.content


@pytest.mark.parametrize(("method", "path", "options", "words"), BAD_INPUT, ids=_ids(BAD_INPUT))
async def test_bad_input_gets_422_with_a_message_saying_what_was_wrong(
    client: httpx.AsyncClient, method: str, path: str, options: dict[str, Any], words: tuple[str, ...]
) -> None:
    response = await client.request(method, path, **options)
    assert response.status_code == 422, response.text
    message = _message(response.json())
    for word in words:
        assert word in message


@pytest.mark.parametrize(("method", "path", "options"), ENDPOINTS, ids=_ids(ENDPOINTS))
async def test_a_rate_limit_answers_429_with_retry_after_in_whole_simulated_seconds(
    method: str, path: str, options: dict[str, Any]
) -> None:
    # One call per 30 simulated seconds for every service: the second request is refused.
    async for client in _client(create_app(**_every_service(lambda: Faults(rate_limit=RateLimit(1, per=30))))):
        assert (await client.request(method, path, **options)).status_code == 200
        response = await client.request(method, path, **options)
    assert response.status_code == 429, response.text
    body = response.json()
    assert body["error"] == "RateLimited" and "rate limited" in body["detail"]
    # The window opened when the first call was accepted; that call took its latency (≤ 2 s).
    assert 27 < body["retry_after"] <= 30
    assert response.headers["Retry-After"] == str(math.ceil(body["retry_after"]))  # rounded up


#: A stream's fault comes after its first token, as an event: see the stream tests below.
NOT_STREAMING = [endpoint for endpoint in ENDPOINTS if endpoint[1] != "/llm/stream"]


@pytest.mark.parametrize(("method", "path", "options"), NOT_STREAMING, ids=_ids(NOT_STREAMING))
async def test_an_injected_fault_answers_503_with_a_json_body(method: str, path: str, options: dict[str, Any]) -> None:
    async for client in _client(create_app(**_every_service(lambda: Faults(error_rate=1.0)))):
        response = await client.request(method, path, **options)
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["error"] == "ServiceUnavailable"
    assert "injected fault" in body["detail"] and body["service"]


# -- what each endpoint answers -----------------------------------------------------------


async def test_complete_returns_what_the_llm_service_answers(client: httpx.AsyncClient) -> None:
    response = await client.post("/llm/complete", json={"prompt": "I love this course!", "model": "sentiment"})
    expected = await LLM().complete("I love this course!", model="sentiment")
    assert response.json() == {"model": "sentiment", "text": expected}


async def test_stream_sends_one_token_event_per_token_then_done(client: httpx.AsyncClient) -> None:
    response = await client.post("/llm/stream", json={"prompt": QUESTION})
    assert response.headers["content-type"].startswith("text/event-stream")
    events = _events(response.text)
    tokens = [data for kind, data in events if kind == "token"]
    assert "".join(tokens) == await LLM().complete(QUESTION)
    assert events[-1] == ("done", {"tokens": len(tokens)})
    assert len(events) == len(tokens) + 1


async def test_a_fault_mid_stream_becomes_an_error_event_after_the_first_tokens() -> None:
    async for client in _client(create_app(llm=LLM(faults=Faults(error_rate=1.0)))):
        response = await client.post("/llm/stream", json={"prompt": QUESTION})
    assert response.status_code == 200  # the status line left with the first token
    events = _events(response.text)
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "token" and kinds[-1] == "error" and "done" not in kinds
    assert events[-1][1]["error"] == "ServiceUnavailable"
    assert "stream broke mid-answer" in events[-1][1]["detail"]


async def test_embeddings_return_the_services_unit_vectors(client: httpx.AsyncClient) -> None:
    one = (await client.post("/embeddings", json={"text": QUESTION})).json()
    batch = (await client.post("/embeddings/batch", json={"texts": [QUESTION, "What is a token?"]})).json()
    direct = await Embeddings().embed(QUESTION)
    assert one["dim"] == batch["dim"] == len(one["vector"]) == 256
    assert one["vector"] == pytest.approx(direct.tolist())
    assert batch["vectors"][0] == pytest.approx(direct.tolist())
    assert len(batch["vectors"]) == 2


@pytest.mark.parametrize("store", sorted(STORES))
async def test_search_returns_the_stores_top_k(client: httpx.AsyncClient, store: str) -> None:
    body = (await client.post(f"/search/{store}", json={"query": QUESTION, "k": 4})).json()
    direct = await STORES[store]().search(QUESTION, k=4)
    assert body["store"] == store
    assert [hit["id"] for hit in body["hits"]] == [hit.id for hit in direct]
    assert {hit["store"] for hit in body["hits"]} == {store}


async def test_metadata_answers_404_with_a_message_for_an_unknown_document(client: httpx.AsyncClient) -> None:
    found = await client.get("/metadata/doc-001")
    missing = await client.get("/metadata/doc-999")
    assert found.json()["id"] == "doc-001" and found.json()["url"].startswith("https://")
    assert missing.status_code == 404
    assert missing.json()["error"] == "NotFound"
    assert "doc-999" in missing.json()["detail"] and "doc-001" in missing.json()["detail"]


async def test_tools_return_the_tools_data(client: httpx.AsyncClient) -> None:
    tools = Tools()
    weather = (await client.get("/tools/weather", params={"city": "Lisbon"})).json()
    news = (await client.get("/tools/news", params={"topic": "AI chips", "limit": 2})).json()
    stock = (await client.get("/tools/stock", params={"symbol": "NVDA"})).json()
    assert weather == await tools.weather("Lisbon")
    assert news == {"topic": "AI chips", "headlines": await tools.news("AI chips", 2)}
    assert stock == await tools.stock_price("NVDA")


async def test_agent_searches_and_calls_tools_at_once_then_asks_the_llm(client: httpx.AsyncClient) -> None:
    request = {"question": QUESTION, "k": 2, "city": "Lisbon", "news_topic": "retries", "symbol": "NVDA"}
    # At speed 20 a millisecond of HTTP and routing overhead is 0.02 simulated s, not 0.05.
    with at_speed(20):
        body = (await client.post("/agent", json=request)).json()
    assert body["answer"]
    assert len(body["sources"]) == 2
    assert body["sources"][0]["score"] >= body["sources"][1]["score"]
    assert body["weather"]["city"] == "Lisbon" and body["stock"]["symbol"] == "NVDA"
    assert len(body["news"]["headlines"]) == 3
    timings = {t["name"]: t for t in body["timings"]}
    fan_out = [timings[n] for n in ("redis.search", "pgvector.search", "pinecone.search", "tools.weather",
                                    "tools.news", "tools.stock_price")]
    # All six calls start together; the LLM starts after the slowest (news, 0.8 s).
    assert all(t["start"] < 0.1 for t in fan_out)
    assert about(timings["llm.complete"]["start"], max(t["end"] for t in fan_out))
    assert about(body["elapsed"], 0.8 + 1.2)


async def test_agent_calls_only_the_tools_it_is_asked_for(client: httpx.AsyncClient) -> None:
    with at_speed(20):
        body = (await client.post("/agent", json={"question": QUESTION})).json()
    assert body["weather"] is body["news"] is body["stock"] is None
    assert {t["name"] for t in body["timings"]} == {"redis.search", "pgvector.search", "pinecone.search",
                                                    "llm.complete"}
    assert about(body["elapsed"], 0.6 + 1.2)


async def test_a_failing_store_fails_the_agent_and_cancels_its_other_calls() -> None:
    slow_tools = Tools(latency={"news": 5.0})
    app = create_app(stores={"redis": RedisStore(faults=Faults(error_rate=1.0))}, tools=slow_tools)
    async for client in _client(app):
        response = await client.post("/agent", json={"question": QUESTION, "news_topic": "AI"})
    assert response.status_code == 503
    assert response.json()["service"] == "redis"
    assert slow_tools.in_flight == 0  # news (5 s) was cancelled when redis failed at 0.2 s


async def test_the_openapi_docs_list_every_endpoint(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert {path for _, path, _ in ENDPOINTS if not path.startswith(("/search/", "/metadata/"))} < set(paths)
    assert {"/search/{store}", "/metadata/{doc_id}"} < set(paths)
    assert (await client.get("/docs")).status_code == 200


def test_the_wire_names_match_the_services_models_and_stores() -> None:
    assert get_args(ModelName) == MODELS
    assert set(get_args(StoreName)) == set(STORES)


def test_create_app_refuses_an_unknown_store_name() -> None:
    allowed = r"stores keys must be among \['pgvector', 'pinecone', 'redis'\]; got \['mongo'\]"
    with pytest.raises(ValueError, match=allowed):
        create_app(stores={"mongo": PineconeStore()})


def test_create_app_serves_the_stores_it_is_given() -> None:
    fast_store = PgVectorStore(latency=0.01)
    app = create_app(stores={"pgvector": fast_store})
    assert app.state.services.stores["pgvector"] is fast_store
    assert isinstance(app.state.services.stores["redis"], RedisStore)


# -- only request validation is a 422 ------------------------------------------------------


class _NaNLatency:
    """A latency model with a bug: the server's own fault, not the client's."""

    def seconds(self, key: str = "", n: int = 1) -> float:
        return math.nan

    def __repr__(self) -> str:
        return "NaNLatency()"


class _BrokenTools(Tools):
    async def weather(self, city: str) -> dict[str, str | float | int]:
        raise TypeError("unsupported operand type(s) for +: 'int' and 'str'")  # a bug in the server's code


async def _raw_client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    # As over a socket: an exception in the app comes back as its 500 answer, not raised here.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def test_a_value_error_in_the_servers_own_code_is_a_500_with_a_json_body() -> None:
    app = create_app(llm=LLM(latency=_NaNLatency()), tools=_BrokenTools())
    async for client in _raw_client(app):
        complete = await client.post("/llm/complete", json={"prompt": QUESTION})
        weather = await client.get("/tools/weather", params={"city": "Lisbon"})
    assert complete.status_code == 500, complete.text
    assert complete.json()["error"] == "ValueError"
    assert complete.json()["detail"].startswith("internal server error: ValueError: latency model NaNLatency()")
    assert weather.status_code == 500
    assert weather.json() == {"detail": "internal server error: TypeError: unsupported operand type(s) for +: "
                                        "'int' and 'str'", "error": "TypeError", "service": "", "retry_after": None}


async def test_a_server_fault_is_also_raised_for_the_server_log() -> None:
    # Starlette answers 500 and raises the exception again, so uvicorn logs its traceback; an
    # in-process client that asks for app exceptions sees it.
    async for client in _client(create_app(llm=LLM(latency=_NaNLatency()))):
        with pytest.raises(ValueError, match="latency model NaNLatency"):
            await client.post("/llm/complete", json={"prompt": QUESTION})


#: JSON that Python's json module reads but that is no JSON, and where it sits.
NOT_JSON: list[tuple[str, bytes, list[Any], str]] = [
    ("/search/redis", b'{"query": "retries", "k": NaN}', ["body", "k"], "JSON has no NaN"),
    ("/search/redis", b'{"query": "retries", "k": Infinity}', ["body", "k"], "JSON has no Infinity"),
    ("/search/redis", b'{"query": "retries", "k": -Infinity}', ["body", "k"], "JSON has no -Infinity"),
    ("/search/redis", b'{"query": "retries", "k": 1e999}', ["body", "k"], "overflows a float"),
    ("/search/redis", b'{"query": "retries", "k": 1' + b"0" * 5000 + b"}", ["body", "k"], "at most 4300 digits"),
    ("/embeddings/batch", b'{"texts": ["ok", NaN]}', ["body", "texts", 1], "JSON has no NaN"),
    ("/llm/complete", b'{"prompt": "caf\xe9 au lait"}', ["body", "prompt"], "valid UTF-8 text"),
    ("/embeddings/batch", b'{"texts": ["ok", "\xff\xfe"]}', ["body", "texts", 1], "valid UTF-8 text"),
    ("/llm/complete", b'{"prompt": "\\udc80 escaped"}', ["body", "prompt"], "valid UTF-8 text"),
    ("/llm/complete", b'{"prompt" \xff: "hi"}', ["body", 10], "The body should be valid UTF-8"),
]


@pytest.mark.parametrize(("path", "body", "loc", "words"), NOT_JSON, ids=[case[1][:30].decode("latin-1")
                                                                          for case in NOT_JSON])
@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8"])
async def test_nan_infinity_and_bytes_that_are_not_utf8_get_a_422_naming_the_field(
    client: httpx.AsyncClient, path: str, body: bytes, loc: list[Any], words: str, content_type: str
) -> None:
    # Before: NaN gave "Out of range float values are not JSON compliant", bad UTF-8 a bare 400.
    response = await client.post(path, content=body, headers={"content-type": content_type})
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"] == loc
    assert words in error["msg"]


async def test_a_body_that_is_fine_passes_the_strict_json_check_untouched(client: httpx.AsyncClient) -> None:
    body = '{"prompt": "café au lait — ½ price ✓", "model": "summarizer"}'.encode()
    response = await client.post("/llm/complete", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    assert response.json()["text"] == await LLM().complete("café au lait — ½ price ✓", model="summarizer")


async def test_a_json_syntax_error_keeps_fastapis_own_422(client: httpx.AsyncClient) -> None:
    headers = {"content-type": "application/json"}
    response = await client.post("/llm/complete", content=b'{"prompt": "hi"', headers=headers)
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/search/redis", {"query": QUESTION, "k": True}),
        ("/search/redis", {"query": QUESTION, "k": 2.0}),
        ("/search/redis", {"query": QUESTION, "k": "2"}),
        ("/agent", {"question": QUESTION, "k": True}),
    ],
)
async def test_k_must_be_a_json_integer_as_in_python(
    client: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> None:
    # store.search(q, k=True) is a TypeError in Python; over HTTP k=true was read as 1.
    response = await client.post(path, json=body)
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "k"] and error["msg"] == "Input should be a valid integer"


@pytest.mark.parametrize(
    ("method", "path", "options", "message"),
    [
        ("POST", "/llm/complete", {"json": {"prompt": " \n "}}, "prompt must be a non-empty str"),
        ("POST", "/search/pgvector", {"json": {"query": "   "}}, "query must be a non-empty str"),
        ("POST", "/embeddings/batch", {"json": {"texts": ["ok", "  "]}}, "texts must be a non-empty str"),
        ("GET", "/tools/news", {"params": {"topic": "  "}}, "topic must be a non-empty str"),
        ("GET", "/tools/stock", {"params": {"symbol": "TOOLONG"}}, "symbol must be 1 to 5 capital letters"),
        ("POST", "/agent", {"json": {"question": QUESTION, "symbol": "nvda"}}, "symbol must be 1 to 5 capital"),
        ("POST", "/agent", {"json": {"question": QUESTION, "news_topic": " "}}, "news_topic must be a non-empty str"),
    ],
)
async def test_what_a_service_would_refuse_is_refused_by_request_validation(
    client: httpx.AsyncClient, method: str, path: str, options: dict[str, Any], message: str
) -> None:
    response = await client.request(method, path, **options)
    assert response.status_code == 422, response.text
    assert message in _message(response.json())


PLACES = ["Lisbon", "São Paulo", "St. John's", "Winston-Salem", "  Oslo  ", "12", "1st Street", "_x", "-", "Köln"]
TICKERS = ["NVDA", "A", "ABCDE", "ABCDEF", "nvda", "NV1", "", "BRK.B"]


@pytest.mark.parametrize("city", PLACES)
async def test_the_servers_place_names_are_exactly_the_weather_tools(client: httpx.AsyncClient, city: str) -> None:
    # The schema mirrors Tools.weather's rule; if one changes without the other, this fails.
    try:
        await Tools(latency=0).weather(city)
        tool_accepts = True
    except ValueError:
        tool_accepts = False
    response = await client.get("/tools/weather", params={"city": city})
    assert (response.status_code == 200) == tool_accepts, response.text


@pytest.mark.parametrize("symbol", TICKERS)
async def test_the_servers_tickers_are_exactly_the_stock_tools(client: httpx.AsyncClient, symbol: str) -> None:
    try:
        await Tools(latency=0).stock_price(symbol)
        tool_accepts = True
    except ValueError:
        tool_accepts = False
    response = await client.get("/tools/stock", params={"symbol": symbol})
    assert (response.status_code == 200) == tool_accepts, response.text


# -- services checked when the app is made -------------------------------------------------


@pytest.mark.parametrize(
    ("services", "error", "message"),
    [
        ({"llm": "gpt-4"}, TypeError, r"^llm must be an asynclab LLM \(or None for the default\), got str 'gpt-4'$"),
        ({"llm": 1}, TypeError, r"llm must be an asynclab LLM .*got int 1$"),
        ({"llm": BlockingLLM()}, TypeError,
         r"llm must be an asynclab LLM .*got BlockingLLM, a blocking client: it would freeze the server's event "
         r"loop \(use LLM\(\)\)"),
        ({"embeddings": BlockingEmbeddings()}, TypeError,
         r"embeddings must be an asynclab Embeddings .*use Embeddings"),
        ({"embeddings": LLM()}, TypeError, r"embeddings must be an asynclab Embeddings .*got LLM$"),
        ({"metadata": True}, TypeError, r"metadata must be an asynclab MetadataStore .*got bool True"),
        ({"tools": object()}, TypeError, r"tools must be an asynclab Tools"),
        ({"stores": {"redis": LLM()}}, TypeError, r"stores\['redis'\] must be an asynclab VectorStore .*got LLM$"),
        ({"stores": [RedisStore()]}, TypeError, r"stores must be a mapping of store names to stores"),
        ({"stores": {"mongo": RedisStore()}}, ValueError, r"stores keys must be among"),
    ],
)
def test_create_app_refuses_what_is_not_an_async_service_of_the_right_kind(
    services: dict[str, Any], error: type, message: str
) -> None:
    # Before, create_app(llm=<anything truthy>) started and answered 500, and
    # create_app(llm=BlockingLLM()) answered 422 "object str can't be used in 'await' expression".
    with pytest.raises(error, match=message):
        create_app(**services)
