"""An async HTTP client for the asynclab server: the services' own calls, made over HTTP.

    async with ServiceClient(base_url=server.url) as client:       # a real server (streams live)
        answer = await client.complete("What is backpressure?")
    async with ServiceClient(app=create_app()) as client:          # in process, no socket
        hits = await client.search("redis", "how do retries work?")

The methods mirror the services (``complete``, ``stream``, ``embed``, ``search``, ...), so code
written against ``LLM()`` runs against the server unchanged. HTTP errors come back as the
asynclab error types: 429 → :class:`RateLimited` (with ``retry_after``), 503 →
:class:`ServiceUnavailable`, 404 → :class:`NotFound`, 422 → ``ValueError`` with the server's
message. Every request is recorded in the current trace as an ``http`` span.

In-process (``app=``) responses are buffered whole by httpx's ``ASGITransport``: a stream's first
token arrives with its last. Streaming lessons use a real server (DESIGN decision 8).
Introduced in notebook 08.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from types import TracebackType
from typing import Any, Literal
from urllib.parse import quote

import httpx
import numpy as np
from httpx_sse import EventSource

from asynclab.clock import now
from asynclab.faults import NotFound, RateLimited, ServiceError, ServiceUnavailable
from asynclab.schemas import (
    AgentResponse,
    CompleteResponse,
    EmbedBatchResponse,
    EmbedResponse,
    Metadata,
    News,
    SearchResponse,
    StockQuote,
    Weather,
)
from asynclab.services import Hit
from asynclab.services.base import check_text
from asynclab.services.embeddings import Vector, check_texts
from asynclab.tracing import Span, record

__all__ = ["ASGIApp", "ServiceClient"]

ASGIApp = Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]

#: httpx's timer runs in wall seconds; the default leaves room for slow services at speed 1.
DEFAULT_TIMEOUT = httpx.Timeout(30.0)


def _message(body: Any, fallback: str) -> str:
    """The server's explanation: our ErrorBody's detail, or FastAPI's list of field errors."""
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        parts = []
        for error in detail:
            where = ".".join(str(p) for p in error.get("loc", ()))
            parts.append(f"{where}: {error.get('msg', 'invalid')} (got {error.get('input')!r})")
        return "; ".join(parts)
    return fallback


def _error(status: int, body: Any, operation: str, retry_header: str | None = None) -> Exception:
    """The asynclab error an HTTP error status (or a stream's ``error`` event) stands for."""
    text = _message(body, f"HTTP {status} from {operation}: {body!r:.200}")
    service = (body.get("service") if isinstance(body, dict) else None) or "http"
    if status in (400, 422):
        return ValueError(text)
    if status == 429:
        retry_after = body.get("retry_after") if isinstance(body, dict) else None
        if not isinstance(retry_after, (int, float)):  # not our server: its header, whole seconds
            retry_after = float(retry_header or 1)
        return RateLimited(text, retry_after=float(retry_after), service=service, operation=operation)
    if status == 503:
        return ServiceUnavailable(text, service=service, operation=operation)
    if status == 404:
        return NotFound(text, service=service, operation=operation)
    error = ServiceError(text, service=service, operation=operation)
    error.status = status
    return error


def _response_error(response: httpx.Response, operation: str) -> Exception:
    try:
        body = response.json()
    except ValueError:
        body = response.text
    return _error(response.status_code, body, operation, response.headers.get("Retry-After"))


def _segment(value: object, name: str) -> str:
    """One path parameter, escaped: ``doc-001#x`` stays one id instead of becoming ``doc-001``."""
    text = check_text(value, name)
    if text in (".", ".."):  # a dot segment would be resolved away: /metadata/.. is /
        return text.replace(".", "%2E")
    return quote(text, safe="")


def _check_base_url(base_url: object) -> str:
    if not isinstance(base_url, str):
        raise TypeError(f"base_url must be a str such as 'http://127.0.0.1:8000', got {type(base_url).__name__}")
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"base_url must be an http:// or https:// URL, got {base_url!r}: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(
            f"base_url must be an http:// or https:// URL with a host, such as 'http://127.0.0.1:8000'"
            f" (a server's .url), got {base_url!r}"
        )
    return base_url


def _check_timeout(timeout: object) -> float | httpx.Timeout | None:
    if timeout is None or isinstance(timeout, httpx.Timeout):
        return timeout
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(
            f"timeout must be wall seconds (a number > 0), an httpx.Timeout or None; got {type(timeout).__name__}"
            f" {timeout!r:.60}"
        )
    if not (timeout > 0 and math.isfinite(timeout)):
        raise ValueError(f"timeout must be a finite number of wall seconds > 0 (or None: no timeout), got {timeout!r}")
    return float(timeout)


#: The status each error type of an ``error`` event stands for.
_STATUS = {"RateLimited": 429, "NotFound": 404, "ServiceUnavailable": 503, "ValueError": 422}


def _outcome(exc: BaseException) -> str:
    return "cancelled" if isinstance(exc, asyncio.CancelledError) else type(exc).__name__


class ServiceClient:
    """An httpx-based async client for the asynclab server (a URL, or an app in process).

        async with ServiceClient(base_url="http://127.0.0.1:8000") as client:
            async for token in client.stream("What is time to first token?"):
                print(token, end="")

    base_url: a running server's URL (``http://`` or ``https://`` and a host). app: an ASGI app
    (``create_app()``) served in process by ``httpx.ASGITransport`` instead; give exactly one of
    the two. In process, a server fault is a 500 answer too, as over a socket. timeout: an httpx
    timeout in *wall* seconds (httpx knows nothing of simulated time; default 30 s). limits: an
    ``httpx.Limits`` for the connection pool, ``httpx.Limits(max_connections=100)`` by default:
    more concurrent calls than connections wait for one.
    """

    __slots__ = ("_http", "base_url", "limits")

    def __init__(
        self,
        base_url: str | None = None,
        *,
        app: ASGIApp | None = None,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
        limits: httpx.Limits | None = None,
    ) -> None:
        if (base_url is None) == (app is None):
            raise ValueError(
                f"give exactly one of base_url= (a running server) or app= (in process); "
                f"got base_url={base_url!r} and app={app!r:.60}"
            )
        if app is not None and not callable(app):
            raise TypeError(f"app must be an ASGI app such as create_app(), got {type(app).__name__} {app!r:.60}")
        if limits is not None and not isinstance(limits, httpx.Limits):
            raise TypeError(
                f"limits must be an httpx.Limits, e.g. httpx.Limits(max_connections=10), or None;"
                f" got {type(limits).__name__} {limits!r:.60}"
            )
        checked_timeout = _check_timeout(timeout)
        self.limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
        # raise_app_exceptions=False: an app's crash comes back as its 500 answer, as over a socket.
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False) if app is not None else None
        self.base_url = "http://asynclab.local" if base_url is None else _check_base_url(base_url)
        self._http = httpx.AsyncClient(
            base_url=self.base_url, transport=transport, timeout=checked_timeout, limits=self.limits
        )

    async def __aenter__(self) -> ServiceClient:
        await self._http.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._http.__aexit__(exc_type, exc, tb)

    async def aclose(self) -> None:
        """Close the connection pool (``async with`` does it for you)."""
        await self._http.aclose()

    async def _call(
        self, method: Literal["GET", "POST"], route: str, path: str | None = None, **kwargs: Any
    ) -> Any:
        """One request recorded as a span; the JSON body, or the mapped asynclab error."""
        span = Span("http", f"{method} {route}", key=path or route)
        record(span)
        try:
            response = await self._http.request(method, path or route, **kwargs)
            if response.is_error:
                raise _response_error(response, route)
            body = response.json()
        except BaseException as exc:
            span.finish(_outcome(exc))
            raise
        span.finish()
        return body

    async def complete(self, prompt: str, *, model: str = "assistant") -> str:
        """The model's whole answer (``POST /llm/complete``)."""
        body = await self._call("POST", "/llm/complete", json={"prompt": prompt, "model": model})
        return CompleteResponse.model_validate(body).text

    async def stream(self, prompt: str, *, model: str = "assistant") -> AsyncIterator[str]:
        """The answer token by token, as the server's SSE events arrive (``POST /llm/stream``).

            async with contextlib.aclosing(client.stream(q)) as tokens:
                async for token in tokens: ...     # leaving early closes the connection

        Closing the stream early disconnects, and the server stops producing.
        """
        route = "/llm/stream"
        span = Span("http", f"POST {route}", key=route)
        record(span)
        span.items = 0
        try:
            json = {"prompt": prompt, "model": model}
            headers = {"Accept": "text/event-stream"}
            async with self._http.stream("POST", route, json=json, headers=headers) as response:
                if response.is_error:
                    await response.aread()
                    raise _response_error(response, route)
                async for event in EventSource(response).aiter_sse():
                    if event.event == "token":
                        if span.first_token is None:
                            span.first_token = now()
                        span.items += 1
                        yield str(event.json())
                    elif event.event == "error":
                        body = event.json()  # an ErrorBody: the stream broke after it began
                        status = _STATUS.get(body.get("error", ""), 503) if isinstance(body, dict) else 503
                        raise _error(status, body, route)
                    elif event.event == "done":
                        break
        except BaseException as exc:
            # GeneratorExit: the consumer stopped early (break, aclose) and we hung up.
            span.finish("cancelled" if isinstance(exc, GeneratorExit) else _outcome(exc))
            raise
        span.finish()

    async def embed(self, text: str) -> Vector:
        """The unit vector of one text (``POST /embeddings``)."""
        body = await self._call("POST", "/embeddings", json={"text": text})
        return np.asarray(EmbedResponse.model_validate(body).vector, dtype=np.float64)

    async def embed_batch(self, texts: Sequence[str]) -> list[Vector]:
        """Vectors for many texts in one request (``POST /embeddings/batch``); a str is refused."""
        body = await self._call("POST", "/embeddings/batch", json={"texts": check_texts(texts)})
        return [np.asarray(v, dtype=np.float64) for v in EmbedBatchResponse.model_validate(body).vectors]

    async def search(self, store: str, query: str, k: int = 3) -> list[Hit]:
        """Top-``k`` documents from one store: ``redis``, ``pgvector`` or ``pinecone``."""
        path = f"/search/{_segment(store, 'store')}"
        body = await self._call("POST", "/search/{store}", path, json={"query": query, "k": k})
        return [Hit(**hit.model_dump()) for hit in SearchResponse.model_validate(body).hits]

    async def metadata(self, doc_id: str) -> dict[str, str | int]:
        """The metadata of one document; :class:`NotFound` for an unknown id."""
        body = await self._call("GET", "/metadata/{doc_id}", f"/metadata/{_segment(doc_id, 'doc_id')}")
        return Metadata.model_validate(body).model_dump()

    async def weather(self, city: str) -> dict[str, str | float | int]:
        """Current weather for a city (``GET /tools/weather?city=``)."""
        body = await self._call("GET", "/tools/weather", params={"city": city})
        return Weather.model_validate(body).model_dump()

    async def news(self, topic: str, limit: int = 3) -> list[str]:
        """The latest ``limit`` headlines about a topic (``GET /tools/news?topic=``)."""
        body = await self._call("GET", "/tools/news", params={"topic": topic, "limit": limit})
        return News.model_validate(body).headlines

    async def stock_price(self, symbol: str) -> dict[str, str | float]:
        """The last price of a ticker symbol (``GET /tools/stock?symbol=``)."""
        body = await self._call("GET", "/tools/stock", params={"symbol": symbol})
        return StockQuote.model_validate(body).model_dump()

    async def agent(
        self,
        question: str,
        *,
        k: int = 3,
        city: str | None = None,
        news_topic: str | None = None,
        symbol: str | None = None,
    ) -> AgentResponse:
        """The server's agent: retrieval and the asked tools at once, then the LLM (``POST /agent``)."""
        request = {"question": question, "k": k, "city": city, "news_topic": news_topic, "symbol": symbol}
        return AgentResponse.model_validate(await self._call("POST", "/agent", json=request))

    def __repr__(self) -> str:
        return f"<ServiceClient {self.base_url} max_connections={self.limits.max_connections}>"
