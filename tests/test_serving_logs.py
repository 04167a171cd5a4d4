"""A client that leaves a stream is not an error in the server's log; a real error still is."""

from __future__ import annotations

import logging
import sys

import anyio
import httpx
import pytest
from httpx_sse import aconnect_sse

from asynclab import LLM
from asynclab.server import create_app
from asynclab.serving import BackgroundServer, _ClientLeftFilter


def _record(exc: BaseException) -> logging.LogRecord:
    try:
        raise exc
    except BaseException:
        info = sys.exc_info()
    return logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1, "Exception in ASGI application", None, info)


def test_the_filter_drops_only_a_client_that_left() -> None:
    left = ExceptionGroup("unhandled errors in a TaskGroup", [anyio.BrokenResourceError()])
    assert not _ClientLeftFilter().filter(_record(left))
    assert _ClientLeftFilter().filter(_record(ExceptionGroup("x", [anyio.BrokenResourceError(), ValueError("bug")])))
    assert _ClientLeftFilter().filter(_record(ValueError("a bug in a handler")))


async def test_leaving_a_stream_stops_the_producer_and_logs_no_error(
    fast: float, caplog: pytest.LogCaptureFixture
) -> None:
    llm = LLM()
    with caplog.at_level(logging.ERROR, logger="uvicorn.error"):
        async with BackgroundServer(create_app(llm=llm)) as server, httpx.AsyncClient(base_url=server.url) as client:
            for _ in range(5):
                async with aconnect_sse(client, "POST", "/llm/stream", json={"prompt": "Why stream tokens?"}) as src:
                    seen = 0
                    async for _event in src.aiter_sse():
                        seen += 1
                        if seen == 5:
                            break  # the client leaves mid-stream
                for _ in range(200):  # up to 1 s of wall time for the server to notice
                    if not llm.in_flight:
                        break
                    await anyio.sleep(0.005)
                assert llm.in_flight == 0
    logged = [r for r in caplog.records if "Exception in ASGI application" in r.getMessage()]
    assert not logged, [repr(r.exc_info[1]) for r in logged if r.exc_info]
