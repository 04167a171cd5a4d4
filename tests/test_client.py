"""ServiceClient (in process and over a real uvicorn server) and BackgroundServer.

The real-server tests run a uvicorn server on 127.0.0.1 in a thread of this process: client and
server share one clock, so token arrival times are measured in simulated seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from asynclab import (
    LLM,
    Embeddings,
    Faults,
    MetadataStore,
    NotFound,
    PineconeStore,
    RateLimit,
    RateLimited,
    ServiceError,
    ServiceUnavailable,
    Span,
    Streamed,
    Tools,
    about,
    at_speed,
    now,
    stopwatch,
    trace,
)
from asynclab.__main__ import main as cli
from asynclab.client import ServiceClient
from asynclab.server import create_app
from asynclab.serving import BackgroundServer

QUESTION = "How do retries with backoff work?"


@pytest.fixture(autouse=True)
def no_gc() -> Iterator[None]:
    """Pause the cyclic collector: a generation-2 pause (~0.2 s wall) would land in timed blocks."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class WatchedLLM(LLM):
    """An LLM that keeps the spans of its calls: the server's side of a request, seen from the test."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.spans: list[Span] = []

    def _open(self, operation: str, key: str, items: int = 1) -> Span:
        span = super()._open(operation, key, items)
        self.spans.append(span)
        return span


def _server_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("asynclab-server")]


# -- in process (ASGITransport) -------------------------------------------------------------


@pytest.fixture
async def client() -> AsyncIterator[ServiceClient]:
    with at_speed(50):
        async with ServiceClient(app=create_app()) as c:
            yield c


async def test_client_calls_return_what_the_services_return(client: ServiceClient) -> None:
    tools = Tools()
    assert await client.complete(QUESTION, model="classifier") == await LLM().complete(QUESTION, model="classifier")
    assert np.allclose(await client.embed(QUESTION), await Embeddings().embed(QUESTION))
    assert len(await client.embed_batch([QUESTION, "hi"])) == 2
    assert await client.search("pinecone", QUESTION, k=2) == await PineconeStore().search(QUESTION, k=2)
    assert await client.metadata("doc-002") == await MetadataStore().get("doc-002")
    assert await client.weather("Oslo") == await tools.weather("Oslo")
    assert await client.news("GPUs", limit=2) == await tools.news("GPUs", limit=2)
    assert await client.stock_price("NVDA") == await tools.stock_price("NVDA")
    assert "".join([t async for t in client.stream(QUESTION)]) == await LLM().complete(QUESTION)
    reply = await client.agent(QUESTION, city="Oslo")
    assert reply.answer and reply.weather is not None and reply.news is None


async def test_each_http_call_is_a_span_in_the_current_trace(client: ServiceClient) -> None:
    with trace() as t:
        await asyncio.gather(client.complete(QUESTION), client.metadata("doc-001"))
        with contextlib.suppress(NotFound):
            await client.metadata("doc-404")
    http = {span.key: span for span in t.by_service("http")}
    assert http["/llm/complete"].name == "http.POST /llm/complete"
    assert http["/metadata/doc-001"].operation == "GET /metadata/{doc_id}"
    assert http["/metadata/doc-404"].outcome == "NotFound"
    assert http["/llm/complete"].outcome == "ok"
    # In process the app runs in the caller's task, so the service's own span is there too.
    assert about(t.by_service("llm")[0].duration, 1.2) and http["/llm/complete"].duration >= 1.2


async def test_http_errors_come_back_as_the_asynclab_error_types() -> None:
    limited = Faults(rate_limit=RateLimit(1, per=10))
    app = create_app(llm=LLM(faults=limited), tools=Tools(faults=Faults(error_rate=1.0)))
    with at_speed(50):
        async with ServiceClient(app=app) as client:
            await client.complete(QUESTION)
            with pytest.raises(RateLimited, match="rate limited") as limit:
                await client.complete(QUESTION)
            with pytest.raises(ServiceUnavailable, match="injected fault") as fault:
                await client.weather("Oslo")
            with pytest.raises(NotFound, match="no document 'doc-999'"):
                await client.metadata("doc-999")
            with pytest.raises(ValueError, match=r"model: Input should be .*'summarizer'.* \(got 'gpt'\)"):
                await client.complete(QUESTION, model="gpt")
            with pytest.raises(ValueError, match="symbol must be 1 to 5 capital letters"):
                await client.stock_price("nvda")
    # Simulated seconds left in the 10 s window, which opened when the first call (1.2 s) began;
    # the floor of 5 leaves room for a loaded machine (1 ms of wall time is 0.05 s at speed 50).
    assert 5 < limit.value.retry_after <= 10 - 1.2
    assert f"retry after {limit.value.retry_after:.2f} s" in str(limit.value)  # the body's exact value
    assert limit.value.service == "llm" and fault.value.service == "tools"


async def test_a_stream_that_breaks_mid_answer_raises_after_its_first_tokens() -> None:
    tokens: list[str] = []
    with at_speed(50):
        async with ServiceClient(app=create_app(llm=LLM(faults=Faults(error_rate=1.0)))) as client:
            with pytest.raises(ServiceUnavailable, match="stream broke mid-answer"):
                async for token in client.stream(QUESTION):
                    tokens.append(token)
    assert tokens


def test_the_client_needs_exactly_one_of_base_url_and_app() -> None:
    with pytest.raises(ValueError, match=r"exactly one of base_url= .* or app= .*got base_url=None and app=None"):
        ServiceClient()
    with pytest.raises(ValueError, match="exactly one of base_url="):
        ServiceClient("http://127.0.0.1:1", app=create_app())


# -- over a real server -----------------------------------------------------------------------

#: A slow, steady stream: 0.5 s to the first token, then 0.05 s per token (20 tokens/s).
STREAM = Streamed(first_token=0.5, per_token=0.05)


async def test_tokens_arrive_over_a_real_server_as_they_are_produced() -> None:
    llm = WatchedLLM(stream_latency=STREAM)
    with at_speed(10):
        async with BackgroundServer(create_app(llm=llm)) as server, ServiceClient(base_url=server.url) as client:
            # Warm up: the first stream pays for connecting, first-use code paths and computing the
            # answer (cached after), ~40 ms of wall time that is no part of the latency model.
            assert [t async for t in client.stream(QUESTION)]
            start = now()
            arrivals = [now() - start async for _ in client.stream(QUESTION)]
    produced = llm.spans[-1]
    # Token i leaves the server at its deadline: the span's start + first_token + i × per_token.
    due = [produced.start - start + STREAM.first_token + STREAM.per_token * i for i in range(len(arrivals))]
    lateness = [arrived - deadline for arrived, deadline in zip(arrivals, due, strict=True)]
    assert len(arrivals) > 10 and produced.outcome == "ok"
    # A token reaches the client within 0.15 simulated s (15 ms of wall time at speed 10) of
    # leaving: one event's trip through uvicorn, loopback and httpx measures 1-5 ms here. A busy
    # machine can stall a thread for tens of ms now and then, so we check nine tokens in ten.
    # A buffered response would make every token but the last over 1 s late.
    assert sorted(lateness)[int(0.9 * len(lateness))] < 0.15, lateness
    assert min(lateness) > -0.02  # never early: the timer's aim (TIMER_LEAD) is under 1 ms
    assert arrivals[0] < STREAM.first_token + 0.25  # request overhead included


async def test_in_process_transport_delivers_the_first_token_with_the_last() -> None:
    # Why streaming lessons need a real server (DESIGN decision 8): ASGITransport buffers.
    with at_speed(20):
        async with ServiceClient(app=create_app(llm=LLM(stream_latency=STREAM))) as client:
            start = now()
            arrivals = [now() - start async for _ in client.stream(QUESTION)]
    assert arrivals[0] > STREAM.first_token + STREAM.per_token * (len(arrivals) - 2)
    assert arrivals[-1] - arrivals[0] < 0.1


async def test_closing_a_stream_early_makes_the_server_stop_producing() -> None:
    llm = WatchedLLM(stream_latency=STREAM)
    with at_speed(20):
        async with BackgroundServer(create_app(llm=llm)) as server, ServiceClient(base_url=server.url) as client:
            received = []
            with trace() as t:
                async with contextlib.aclosing(client.stream(QUESTION)) as tokens:
                    async for token in tokens:
                        received.append(token)
                        if len(received) == 3:
                            break
            hung_up = now()
            produced = llm.spans[-1]
            for _ in range(200):  # the server notices the disconnect on its own loop
                if produced.end is not None:
                    break
                await asyncio.sleep(0.005)
    full_answer = STREAM.first_token + STREAM.per_token * (produced.items - 1)
    assert produced.outcome == "cancelled" and llm.in_flight == 0  # the generator's finally ran
    assert t.spans[0].outcome == "cancelled" and t.spans[0].items == 3
    # It stopped within a token or two of the hang-up, well before the answer would have ended.
    assert produced.end is not None and produced.end - hung_up < 0.15
    assert produced.end - produced.start < full_answer - 0.3


async def test_a_hundred_concurrent_agent_requests_take_about_as_long_as_one() -> None:
    with at_speed(4):
        async with BackgroundServer() as server, ServiceClient(base_url=server.url) as client:
            await client.agent(QUESTION, city="Oslo")  # warm up: connections, caches
            with stopwatch() as one:
                await client.agent(QUESTION, city="Oslo")
            with stopwatch() as hundred:
                replies = await asyncio.gather(*(client.agent(QUESTION, city="Oslo") for _ in range(100)))
    assert len({r.answer for r in replies}) == 1
    assert about(one.elapsed, 0.6 + 1.2, rel=0.1)
    # One after another they would take 100 × 1.8 = 180 s. Concurrently they take one request's
    # 1.8 s plus the CPU time of 100 HTTP round trips: client and server share this process and
    # its GIL, ~5 ms of wall time each (JSON, validation, routing, six service calls), which is
    # 2 simulated seconds at speed 4 (measured total ≈ 2.5 × one). 5 × one leaves room for a
    # machine twice as slow and still fails anything near sequential or connection-starved.
    assert hundred.elapsed < 5 * one.elapsed


async def test_a_stopped_server_leaves_no_thread_and_frees_its_port() -> None:
    before = set(asyncio.all_tasks())
    async with BackgroundServer(create_app()) as server:
        port = server.port
        assert server.url == f"http://127.0.0.1:{port}"
        assert _server_threads()
        async with ServiceClient(base_url=server.url) as client:
            assert (await client._http.get("/health")).json()["status"] == "ok"
    assert not server.running and _server_threads() == []
    assert set(asyncio.all_tasks()) == before
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    with socket.socket() as again:  # the port can be bound and listened on again
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))
        again.listen()


def test_a_server_starts_and_stops_with_a_plain_with_and_with_start_stop() -> None:
    with BackgroundServer(create_app()) as server:
        assert httpx.get(server.url + "/health").status_code == 200
    assert _server_threads() == []
    server = BackgroundServer(create_app()).start()
    assert httpx.get(server.url + "/docs").status_code == 200
    server.stop()
    server.stop()  # stopping twice is harmless
    assert _server_threads() == []
    with pytest.raises(RuntimeError, match="not running"):
        server.url  # noqa: B018


def test_a_port_already_in_use_gives_an_error_naming_it() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"port {port} on 127.0.0.1 is already in use"):
            BackgroundServer(create_app(), port=port).start()
        assert cli(["serve", "--port", str(port)]) == 1
    assert _server_threads() == []


def test_python_m_asynclab_serve_serves_the_openapi_docs() -> None:
    command = [sys.executable, "-m", "asynclab", "serve", "--port", "0", "--speed", "50"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()  # "asynclab services on http://127.0.0.1:PORT (docs: ...)"
        url = banner.split(" on ", 1)[1].split()[0]
        for _ in range(100):
            try:
                docs = httpx.get(url + "/docs")
                break
            except httpx.ConnectError:
                time.sleep(0.05)
        assert docs.status_code == 200 and "swagger" in docs.text.lower()
        assert httpx.get(url + "/health").json() == {"status": "ok", "speed": 50.0}
    finally:
        process.terminate()
        process.wait(timeout=10)


def _serve_and_get_health(*options: str) -> str:
    """``python -m asynclab serve`` with ``options``: one GET /health, then Ctrl-C; all it printed."""
    command = [sys.executable, "-m", "asynclab", "serve", "--port", "0", "--speed", "50", *options]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        url = banner.split(" on ", 1)[1].split()[0]
        for _ in range(100):
            try:
                assert httpx.get(url + "/health").status_code == 200
                break
            except httpx.ConnectError:
                time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGINT)  # uvicorn shuts down gracefully and flushes its log
        output, _ = process.communicate(timeout=10)
    return banner + output


def test_python_m_asynclab_serve_logs_each_request_only_with_access_log() -> None:
    # Off by default: at 100 concurrent calls the access log cost the server ~0.12 ms of CPU a request.
    quiet = _serve_and_get_health()
    assert "Application startup complete" in quiet  # the server's own log still shows
    assert "GET /health" not in quiet
    logged = _serve_and_get_health("--access-log")
    assert '"GET /health HTTP/1.1" 200' in logged


async def test_a_server_parses_http_with_httptools_on_asyncio_s_own_loop() -> None:
    # Named, not uvicorn's "auto": uvloop, where installed, would fire the simulated latencies early.
    async with BackgroundServer(create_app()) as server:
        assert server._server is not None
        assert server._server.config.http_protocol_class.__name__ == "HttpToolsProtocol"
        loop = server._server.servers[0].get_loop()
        assert isinstance(loop, asyncio.BaseEventLoop) and loop is not asyncio.get_running_loop()


# -- bad input, refused by the client and the server ---------------------------------------


async def test_path_parameters_are_escaped_so_an_id_never_becomes_another(client: ServiceClient) -> None:
    # Unescaped, "doc-001#x" was sent as /metadata/doc-001#x: the fragment was dropped, doc-001 came back.
    with pytest.raises(NotFound, match=r"no document 'doc-001#x'"):
        await client.metadata("doc-001#x")
    with pytest.raises(NotFound, match=r"no document 'doc-001\?x=1'"):
        await client.metadata("doc-001?x=1")
    with pytest.raises(NotFound, match=r"no document '\.\.'"):  # not resolved to "/"
        await client.metadata("..")
    with pytest.raises(NotFound):  # %2F is decoded by the router: no route, never another document
        await client.metadata("doc-001/../doc-002")
    # "redis#x" searched redis; escaped, it is a store name the server does not know.
    with pytest.raises(ValueError, match=r"store: Input should be 'redis', 'pgvector' or 'pinecone' \(got 'redis#x'\)"):
        await client.search("redis#x", QUESTION)
    with pytest.raises(ValueError, match="doc_id must be a non-empty str"):
        await client.metadata("")
    with pytest.raises(TypeError, match="store must be a str, got int 3"):
        await client.search(3, QUESTION)  # type: ignore[arg-type]


async def test_embed_batch_refuses_a_str_before_sending_anything(client: ServiceClient) -> None:
    with trace() as t, pytest.raises(TypeError, match=r"texts must be a list of str, got str 'abc' \(use embed"):
        await client.embed_batch("abc")
    assert t.spans == []  # refused here: no request went out


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"base_url": ""}, ValueError, r"base_url must be an http:// or https:// URL with a host.*got ''$"),
        ({"base_url": "localhost:8000"}, ValueError, r"base_url must be an http:// or https:// URL.*'localhost:8000'"),
        ({"base_url": "ftp://example.com"}, ValueError, r"base_url must be an http:// or https://"),
        ({"base_url": b"http://x"}, TypeError, r"base_url must be a str such as 'http://127.0.0.1:8000', got bytes"),
        ({"app": 0}, TypeError, r"app must be an ASGI app such as create_app\(\), got int 0"),
        ({"base_url": "http://127.0.0.1:1", "limits": 10}, TypeError,
         r"limits must be an httpx.Limits, e.g. httpx.Limits\(max_connections=10\), or None; got int 10"),
        ({"base_url": "http://127.0.0.1:1", "timeout": -1}, ValueError,
         r"timeout must be a finite number of wall seconds > 0 \(or None: no timeout\), got -1"),
        ({"base_url": "http://127.0.0.1:1", "timeout": "30"}, TypeError, r"timeout must be wall seconds"),
    ],
)
def test_the_client_refuses_a_bad_url_app_pool_or_timeout_when_made(
    options: dict[str, Any], error: type, message: str
) -> None:
    # base_url="" silently became another host; limits=10 failed later, in repr.
    with pytest.raises(error, match=message):
        ServiceClient(**options)


def test_a_good_client_shows_its_url_and_pool() -> None:
    client = ServiceClient("https://example.com/api", limits=httpx.Limits(max_connections=7), timeout=5)
    assert repr(client) == "<ServiceClient https://example.com/api max_connections=7>"


class _FaultyLLM(LLM):
    async def complete(self, prompt: str, *, model: str = "assistant") -> str:
        raise ValueError("a bug in the server")


async def test_a_server_fault_comes_back_as_a_500_service_error_in_process_and_over_http() -> None:
    app = create_app(llm=_FaultyLLM())
    async with ServiceClient(app=app) as client:
        with pytest.raises(ServiceError, match="internal server error: ValueError: a bug in the server") as local:
            await client.complete(QUESTION)
    async with BackgroundServer(app) as server, ServiceClient(base_url=server.url) as client:
        with pytest.raises(ServiceError, match="internal server error: ValueError: a bug") as remote:
            await client.complete(QUESTION)
    assert local.value.status == remote.value.status == 500
    assert not isinstance(local.value, ValueError)  # not the client's bad input


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"host": ""}, ValueError, r"host must be an IP address: '127.0.0.1' or '::1' \(this machine only\), "
                                   r"'0.0.0.0' or '::' \(every interface.*got ''$"),
        ({"host": "my laptop"}, ValueError, r"host must be an IP address.*got 'my laptop'"),
        ({"host": None}, TypeError, r"host must be a str"),
        ({"port": 70000}, ValueError, r"port must be an int from 0 \(any free port\) to 65535, got 70000"),
        ({"port": "80"}, TypeError, r"port must be an int from 0 .*got str '80'"),
        ({"startup_timeout": "10"}, TypeError, r"startup_timeout must be a number of wall seconds > 0, got str '10'"),
        ({"startup_timeout": 0}, ValueError, r"startup_timeout must be a finite number of wall seconds > 0, got 0"),
        ({"startup_timeout": float("nan")}, ValueError, r"startup_timeout must be a finite number .*got nan"),
        ({"app": 0}, TypeError, r"app must be an ASGI app such as create_app\(\), got int 0"),
    ],
)
def test_background_server_refuses_bad_arguments_before_any_thread_starts(
    options: dict[str, Any], error: type, message: str
) -> None:
    # host="" bound every interface and reported http://:PORT; app=0 started and answered 500;
    # a startup_timeout of the wrong type left the server thread running.
    with pytest.raises(error, match=message):
        BackgroundServer(**options)
    assert _server_threads() == []


def test_a_startup_timeout_spoilt_after_construction_fails_before_the_thread_starts() -> None:
    server = BackgroundServer(create_app())
    server.startup_timeout = "soon"  # type: ignore[assignment]
    with pytest.raises(TypeError, match="startup_timeout must be a number"):
        server.start()
    assert not server.running and _server_threads() == []


def test_an_explicit_address_for_every_interface_is_allowed() -> None:
    with BackgroundServer(create_app(), host="0.0.0.0") as server:
        assert server.url.startswith("http://0.0.0.0:")
        assert httpx.get(f"http://127.0.0.1:{server.port}/health").status_code == 200
    assert _server_threads() == []
