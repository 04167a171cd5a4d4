"""The simulated services over HTTP: a FastAPI app with JSON endpoints and SSE token streaming.

    app = create_app(llm=LLM(faults=Faults(error_rate=0.2)))     # inject services to test with
    async with ServiceClient(app=app) as client:                  # in process, or over a real server
        answer = await client.complete("What is backpressure?")

| endpoint                              | service call                      | errors          |
| ------------------------------------- | --------------------------------- | --------------- |
| ``POST /llm/complete``                | ``llm.complete``                  | 422 429 503     |
| ``POST /llm/stream`` (SSE)            | ``llm.stream``: ``token`` events, then ``done`` (or ``error``) | 422 429 503 |
| ``POST /embeddings``, ``/embeddings/batch`` | ``embed``, ``embed_batch``  | 422 429 503     |
| ``POST /search/{store}``              | ``redis`` / ``pgvector`` / ``pinecone`` ``.search`` | 422 429 503 |
| ``GET /metadata/{doc_id}``            | ``metadata.get``                  | 404 422 429 503 |
| ``GET /tools/weather``, ``news``, ``stock`` | the three tools             | 422 429 503     |
| ``POST /agent``                       | 3 searches + tools at once, then the LLM | 422 429 503 |
| ``POST /v1/chat/completions`` …       | the OpenAI-compatible API, see :mod:`asynclab.openai_api` | 400 404 429 503 |
| ``WS /ws/chat``, ``GET /``            | chat over a WebSocket and the chat page (:mod:`asynclab.chat_socket`) | |

Every handler is ``async`` and only awaits the services, so one event loop serves many
requests at once. Errors are JSON (:class:`~asynclab.schemas.ErrorBody`): bad input → 422,
:class:`RateLimited` → 429 with ``Retry-After`` in whole *simulated* seconds (rounded up)
and OpenAI's ``x-ratelimit-*`` headers, :class:`RequestTooLarge` (more tokens than a whole
rate-limit window allows) → 413, :class:`ServiceUnavailable` → 503, :class:`NotFound` → 404.
Only request validation is a 422 (the schemas check all the services would refuse; a JSON
body with NaN, Infinity or bytes that are not UTF-8 too, see :mod:`asynclab.strictjson`): any
other exception, a ValueError included, is the server's own fault, a 500 with an ErrorBody
(and its traceback in the server's log).

A stream starts once its first token is ready, so a rate limit or a fault before the first
token is a real 429/503; a fault after it arrives as an ``error`` event (the status is already
sent). Introduced in notebook 08.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar, cast

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent

from asynclab import chat_socket, openai_api
from asynclab.clock import get_speed
from asynclab.faults import RateLimited, ServiceError
from asynclab.fusion import rrf
from asynclab.schemas import (
    AgentRequest,
    AgentResponse,
    CompleteRequest,
    CompleteResponse,
    DocId,
    EmbedBatchRequest,
    EmbedBatchResponse,
    EmbedRequest,
    EmbedResponse,
    ErrorBody,
    HitModel,
    Metadata,
    News,
    PlaceName,
    SearchRequest,
    SearchResponse,
    SpanTiming,
    StockQuote,
    StoreName,
    StreamDone,
    Ticker,
    Topic,
    Weather,
)
from asynclab.services import LLM, STORES, Embeddings, Hit, MetadataStore, Service, Tools, VectorStore
from asynclab.strictjson import StrictJSON
from asynclab.tracing import trace

__all__ = ["Services", "create_app"]


@dataclass(frozen=True, slots=True)
class Services:
    """The service objects one app serves (tests inject their own, with faults or limits)."""

    llm: LLM
    embeddings: Embeddings
    stores: Mapping[str, VectorStore]
    metadata: MetadataStore
    tools: Tools


def create_app(
    *,
    llm: LLM | None = None,
    embeddings: Embeddings | None = None,
    stores: Mapping[str, VectorStore] | None = None,
    metadata: MetadataStore | None = None,
    tools: Tools | None = None,
) -> FastAPI:
    """A FastAPI app over the simulated services; any service not given gets its default.

        app = create_app(llm=LLM(faults=Faults(rate_limit=RateLimit(5))))
        with BackgroundServer(app) as server:
            print(server.url + "/docs")

    llm, embeddings, metadata, tools: the async clients (``LLM``, ``Embeddings``, ...), checked here:
    a blocking client or anything else is a TypeError now, not a failing request later.
    stores: replaces some of the three stores by name, e.g. ``{"pinecone": PineconeStore(latency=2)}``.
    A service with ``capacity=`` has that many slots in each event loop that calls it: the
    server's loop, and a notebook's loop calling the same object directly, each get their own.
    """
    if stores is not None and not isinstance(stores, Mapping):
        raise TypeError(
            f"stores must be a mapping of store names to stores, like {{'redis': RedisStore()}};"
            f" got {type(stores).__name__} {stores!r:.80}"
        )
    unknown = set(stores or {}) - set(STORES)
    if unknown:
        raise ValueError(f"stores keys must be among {sorted(STORES)}; got {sorted(unknown, key=repr)}")
    given = dict(stores or {})
    services = Services(
        llm=_service("llm", llm, LLM),
        embeddings=_service("embeddings", embeddings, Embeddings),
        stores={
            name: _service(f"stores[{name!r}]", given.get(name), VectorStore, kind) for name, kind in STORES.items()
        },
        metadata=_service("metadata", metadata, MetadataStore),
        tools=_service("tools", tools, Tools),
    )
    app = FastAPI(
        title="asynclab services",
        summary="Simulated-latency AI services over HTTP. Times are simulated seconds.",
        version="0.1.0",
        responses={code: {"model": ErrorBody} for code in (422, 429, 503)},
    )
    app.state.services = services
    app.include_router(router)
    app.include_router(openai_api.router)  # /v1: the OpenAI-compatible API, OpenAI-shaped errors
    app.include_router(chat_socket.router)  # /ws/chat and the chat page at /
    app.add_middleware(StrictJSON)
    app.add_exception_handler(RateLimited, _on_service_error)
    app.add_exception_handler(ServiceError, _on_service_error)
    app.add_exception_handler(RequestValidationError, _on_invalid_request)
    app.add_exception_handler(Exception, _on_server_fault)
    return app


S = TypeVar("S", bound=Service)


def _service(name: str, value: object, kind: type[S], default: type[S] | None = None) -> S:
    """The service given for ``name`` if it is a ``kind``, else a clear TypeError; None: the default."""
    if value is None:
        return (default or kind)()
    if not isinstance(value, kind):
        got = type(value).__name__ if isinstance(value, Service) else f"{type(value).__name__} {value!r:.60}"
        if type(value).__name__.startswith("Blocking"):
            got += f", a blocking client: it would freeze the server's event loop (use {kind.__name__}())"
        raise TypeError(f"{name} must be an asynclab {kind.__name__} (or None for the default), got {got}")
    return value


# -- errors -----------------------------------------------------------------------------------


async def _on_service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    body = ErrorBody(detail=str(exc), error=type(exc).__name__, service=exc.service)
    headers = {}
    if isinstance(exc, RateLimited):
        body.retry_after = round(exc.retry_after, 3)
        # Retry-After in whole simulated seconds, rounded up so a client that waits that long is
        # never early, and OpenAI's x-ratelimit-{limit,remaining,reset}-{requests,tokens}.
        headers = exc.headers()
    return JSONResponse(body.model_dump(), status_code=exc.status, headers=headers)


def _json_safe(value: Any) -> Any:
    """The value with NaN and ±inf as strings: a 422 echoes the input, and JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value


async def _on_invalid_request(request: Request, exc: Exception) -> JSONResponse:
    # FastAPI's own 422 format ({"detail": [{"loc", "msg", "input", ...}]}), safe to serialise:
    # a validator's exception in "ctx" becomes its message (jsonable_encoder would make it {}).
    assert isinstance(exc, RequestValidationError)
    errors = [
        {**error, "ctx": {key: str(value) if isinstance(value, BaseException) else value
                          for key, value in error["ctx"].items()}} if isinstance(error.get("ctx"), dict) else error
        for error in exc.errors()
    ]
    return JSONResponse({"detail": _json_safe(jsonable_encoder(errors))}, status_code=422)


async def _on_server_fault(request: Request, exc: Exception) -> JSONResponse:
    # Anything else that escaped a handler is the server's fault, not the client's: a 500 with a
    # JSON body. Starlette raises the exception again after this answer, so the server logs it.
    body = ErrorBody(detail=f"internal server error: {type(exc).__name__}: {exc}", error=type(exc).__name__)
    return JSONResponse(body.model_dump(), status_code=500)


def _error_event(exc: ServiceError) -> ServerSentEvent:
    body = ErrorBody(detail=str(exc), error=type(exc).__name__, service=exc.service)
    return ServerSentEvent(event="error", data=body)


def _first_error(group: BaseExceptionGroup[Any]) -> BaseException:
    """The first leaf of a TaskGroup's error: it decides the status (the siblings were cancelled)."""
    first = group.exceptions[0]
    return _first_error(first) if isinstance(first, BaseExceptionGroup) else first


# -- endpoints --------------------------------------------------------------------------------

router = APIRouter()


async def _services(request: Request) -> Services:
    return cast(Services, request.app.state.services)


Svc = Annotated[Services, Depends(_services)]


@router.get("/health")
async def health() -> dict[str, float | str]:
    """The server is up; ``speed`` is its simulated seconds per wall second."""
    return {"status": "ok", "speed": get_speed()}


@router.post("/llm/complete")
async def complete(body: CompleteRequest, svc: Svc) -> CompleteResponse:
    """The whole completion after the LLM's latency (1.2 s by default)."""
    text = await svc.llm.complete(body.prompt, model=body.model)
    return CompleteResponse(model=body.model, text=text)


@dataclass(slots=True)
class _StartedStream:
    first: str | None
    rest: AsyncIterator[str]


async def _start_stream(body: CompleteRequest, svc: Svc) -> AsyncIterator[_StartedStream]:
    # A dependency, so it runs before the response starts: a 429 or 503 before the first token
    # is a real HTTP status, not an event inside a 200. Its cleanup runs after the stream ends.
    tokens = svc.llm.stream(body.prompt, model=body.model)
    try:
        first = await anext(tokens, None)
        yield _StartedStream(first, tokens)
    finally:
        await tokens.aclose()  # type: ignore[attr-defined]  # an async generator


@router.post("/llm/stream", response_class=EventSourceResponse)
async def stream(started: Annotated[_StartedStream, Depends(_start_stream)]) -> AsyncIterator[ServerSentEvent]:
    """The completion as Server-Sent Events: one ``token`` event per token, then ``done``.

    A client that disconnects cancels the producer: the LLM's span ends ``"cancelled"``.
    """
    count = 0
    try:
        if started.first is not None:
            yield ServerSentEvent(event="token", data=started.first)
            count = 1
        async for token in started.rest:
            yield ServerSentEvent(event="token", data=token)
            count += 1
    except ServiceError as exc:  # the status line is gone: the failure becomes an event
        yield _error_event(exc)
        return
    yield ServerSentEvent(event="done", data=StreamDone(tokens=count))


@router.post("/embeddings")
async def embed(body: EmbedRequest, svc: Svc) -> EmbedResponse:
    """The unit vector of one text (0.105 s)."""
    vector = await svc.embeddings.embed(body.text)
    return EmbedResponse(dim=len(vector), vector=vector.tolist())


@router.post("/embeddings/batch")
async def embed_batch(body: EmbedBatchRequest, svc: Svc) -> EmbedBatchResponse:
    """Vectors for many texts in one call (0.1 s + 0.005 s per text)."""
    vectors = await svc.embeddings.embed_batch(body.texts)
    return EmbedBatchResponse(dim=svc.embeddings.dim, vectors=[v.tolist() for v in vectors])


def _hit(hit: Hit) -> HitModel:
    return HitModel(id=hit.id, title=hit.title, text=hit.text, topic=hit.topic, score=hit.score, store=hit.store)


@router.post("/search/{store}")
async def search(store: StoreName, body: SearchRequest, svc: Svc) -> SearchResponse:
    """Cosine top-k on one vector store: ``redis`` (0.2 s), ``pgvector`` (0.4 s), ``pinecone`` (0.6 s)."""
    hits = await svc.stores[store].search(body.query, k=body.k)
    return SearchResponse(store=store, hits=[_hit(h) for h in hits])


@router.get("/metadata/{doc_id}", responses={404: {"model": ErrorBody}})
async def metadata(doc_id: DocId, svc: Svc) -> Metadata:
    """The metadata of one document, e.g. ``doc-001`` (0.3 s); 404 for an unknown id."""
    return Metadata.model_validate(await svc.metadata.get(doc_id))


@router.get("/tools/weather")
async def weather(city: Annotated[PlaceName, Query()], svc: Svc) -> Weather:
    """Current weather for a city (0.5 s)."""
    return Weather.model_validate(await svc.tools.weather(city))


@router.get("/tools/news")
async def news(topic: Annotated[Topic, Query()], svc: Svc, limit: Annotated[int, Query(ge=1, le=10)] = 3) -> News:
    """The latest headlines about a topic (0.8 s)."""
    return News(topic=topic, headlines=await svc.tools.news(topic, limit))


@router.get("/tools/stock")
async def stock(symbol: Annotated[Ticker, Query()], svc: Svc) -> StockQuote:
    """The last price of a ticker symbol such as ``NVDA`` (0.3 s)."""
    return StockQuote.model_validate(await svc.tools.stock_price(symbol))


@router.post("/agent")
async def agent(body: AgentRequest, svc: Svc) -> AgentResponse:
    """Answer a question: search the three stores and call the asked tools at once, then the LLM.

    Takes about max(searches, tools) + the LLM: 0.6 + 1.2 = 1.8 s, or 2.0 s with news.
    """
    with trace() as t:
        try:
            async with asyncio.TaskGroup() as tg:  # the first failure cancels the other calls
                searches = [tg.create_task(s.search(body.question, k=body.k)) for s in svc.stores.values()]
                city = tg.create_task(svc.tools.weather(body.city)) if body.city else None
                topic = tg.create_task(svc.tools.news(body.news_topic)) if body.news_topic else None
                symbol = tg.create_task(svc.tools.stock_price(body.symbol)) if body.symbol else None
        except BaseExceptionGroup as group:
            raise _first_error(group) from None
        # Fused by rank: each store scores with its own model, so their cosines do not compare.
        found = [task.result() for task in searches]
        first: dict[str, Hit] = {}
        for hit in (hit for hits in found for hit in hits):
            first.setdefault(hit.id, hit)
        sources = [first[doc_id] for doc_id, _ in rrf([[h.id for h in hits] for hits in found])[: body.k]]
        reply = AgentResponse(
            answer="",
            sources=[_hit(h) for h in sources],
            weather=Weather.model_validate(city.result()) if city else None,
            news=News(topic=body.news_topic or "", headlines=topic.result()) if topic else None,
            stock=StockQuote.model_validate(symbol.result()) if symbol else None,
            timings=[],
            elapsed=0.0,
        )
        reply.answer = await svc.llm.complete(_agent_prompt(body.question, reply))
    reply.timings = [
        SpanTiming(name=s.name, start=s.start - t.start, end=(s.end or t.end or s.start) - t.start, outcome=s.outcome)
        for s in t.spans
    ]
    reply.elapsed = t.elapsed
    return reply


def _agent_prompt(question: str, reply: AgentResponse) -> str:
    lines = [f"{h.title}. {h.text}" for h in reply.sources]
    if reply.weather:
        w = reply.weather
        lines.append(f"The weather in {w.city} is {w.condition}, {w.temperature_c} °C.")
    if reply.news:
        lines.extend(f"News: {headline}." for headline in reply.news.headlines)
    if reply.stock:
        lines.append(f"{reply.stock.symbol} trades at {reply.stock.price} {reply.stock.currency}.")
    return "Context:\n" + "\n".join(lines) + f"\nQuestion: {question}"
