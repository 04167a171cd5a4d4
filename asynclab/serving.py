"""A real uvicorn server in a background thread: start it, get its URL, stop it cleanly.

    with BackgroundServer(create_app()) as server:           # 127.0.0.1, a free port
        async with ServiceClient(base_url=server.url) as client:
            async for token in client.stream("Why stream tokens?"):
                print(token, end="")

Why a thread: in a notebook the kernel's event loop is already running, so the server gets its
own thread and its own loop, and the notebook's ``await``s stay free. The thread shares the
process's asynclab clock, so :func:`~asynclab.clock.set_speed` speeds up the server too.

Why we bind the socket ourselves: a busy port fails here, at once, with an error naming it,
and ``port=0`` lets the OS pick a free port with no race between picking and binding.

Introduced in notebook 08.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import math
import socket
import threading
import time
from types import TracebackType
from typing import Any

import anyio
import uvicorn

from asynclab.client import ASGIApp

__all__ = ["BackgroundServer", "bind", "check_host", "check_port", "is_loopback", "server_config"]

#: Wall seconds a stopping server lets running requests finish before it cancels them.
GRACEFUL_SHUTDOWN = 1


class _ClientLeftFilter(logging.Filter):
    """Drop uvicorn's "Exception in ASGI application" when all it holds is a client that left.

    FastAPI's native SSE (0.135-0.165 at least) lets ``anyio.BrokenResourceError`` escape its
    keep-alive task when the client disconnects mid-stream, and uvicorn logs a full traceback:
    in a notebook, red text under a cell whose server did the right thing. Any other exception
    is still logged.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().strip() != "Exception in ASGI application" or not record.exc_info:
            return True
        return not _only_client_left(record.exc_info[1])


def _only_client_left(exc: BaseException | None) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_client_left(inner) for inner in exc.exceptions)
    return isinstance(exc, (anyio.BrokenResourceError, anyio.ClosedResourceError))


_client_left = _ClientLeftFilter()
if not any(isinstance(f, _ClientLeftFilter) for f in logging.getLogger("uvicorn.error").filters):
    logging.getLogger("uvicorn.error").addFilter(_client_left)


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.1, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_HOSTS = (
    "an IP address: '127.0.0.1' or '::1' (this machine only), '0.0.0.0' or '::' (every interface,"
    " reachable from other machines) or one interface's address; or 'localhost'"
)


def check_host(host: object) -> str:
    """Validate an address to listen on: an IP address or ``localhost``, never ``""``.

    An empty host would bind every interface without saying so (and make the URL ``http://:PORT``):
    listening beyond this machine takes an explicit address such as ``0.0.0.0``.
    """
    if not isinstance(host, str):
        raise TypeError(f"host must be a str, {_HOSTS}; got {type(host).__name__} {host!r:.60}")
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"host must be {_HOSTS}; got {host!r:.60}") from None
    return host


def check_port(port: object) -> int:
    """Validate a TCP port: an int from 0 (any free port) to 65535."""
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"port must be an int from 0 (any free port) to 65535, got {type(port).__name__} {port!r:.60}")
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be an int from 0 (any free port) to 65535, got {port!r}")
    return port


def bind(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A TCP socket bound to ``host:port`` (``port=0``: a free one), ready for uvicorn.

        sock = bind("127.0.0.1", 0)
        sock.getsockname()[1]          # the port the OS picked

    host: see :func:`check_host`. Raises ``OSError`` naming the port when it is already in use.
    """
    check_host(host)
    check_port(port)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and
    # without it Nagle + delayed ACKs add ~40 ms to every request on a kept-alive connection.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    # Like uvicorn: a port left in TIME_WAIT by a server that just stopped can be bound again
    # at once. It does not let two servers listen on one port.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise OSError(
                exc.errno,
                f"port {port} on {host} is already in use: stop the server using it, or pass port=0 "
                "for a free port",
            ) from None
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    return sock


#: The event loop and HTTP parser of every asynclab server (``BackgroundServer`` and
#: ``python -m asynclab serve``), named rather than left to uvicorn's "auto". httptools, a C
#: parser, costs the server ~0.1 ms less CPU per request than h11 (0.78 -> 0.67 ms for a chat
#: completion, measured with 100 concurrent SDK calls; issue 9). The loop stays asyncio's even
#: where uvloop is installed: uvloop's timers have millisecond resolution and fire the course's
#: simulated latencies early (a 0.98 s ``llm.chat`` took 0.969 s at speed 20, asyncio 0.989 s),
#: which :data:`asynclab.clock.TIMER_LEAD` was not measured for, for ~0.04 ms of server CPU less.
LOOP = "asyncio"
HTTP = "httptools"


def server_config(app: ASGIApp, *, access_log: bool = False, **options: Any) -> uvicorn.Config:
    """uvicorn's configuration for an asynclab server: :data:`LOOP`, :data:`HTTP`, no access log.

        uvicorn.Server(server_config(create_app(), log_level="info")).run(sockets=[bind()])

    access_log: one log line per request. Off unless asked: at 100 concurrent calls the access
    log cost the server ~0.12 ms of CPU per request (0.90 -> 0.78 ms), and it says nothing a
    learner needs. options: any other ``uvicorn.Config`` argument.
    """
    return uvicorn.Config(app, loop=LOOP, http=HTTP, access_log=access_log, **options)


def _check_startup_timeout(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"startup_timeout must be a number of wall seconds > 0, got {type(value).__name__} {value!r:.60}"
        )
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"startup_timeout must be a finite number of wall seconds > 0, got {value!r}")
    return float(value)


class BackgroundServer:
    """Serve an ASGI app with uvicorn in a background thread (its own event loop).

        server = BackgroundServer(create_app()).start()     # or: with / async with
        await ServiceClient(base_url=server.url).complete("hi")
        server.stop()

    app: the ASGI app (default: ``create_app()``). host: ``127.0.0.1`` unless you explicitly ask
    for another address (:func:`check_host`; never ``""``). port: 0 picks a free port.
    startup_timeout: wall seconds (> 0) to wait for the server to accept connections. All are
    checked here, before any thread starts.
    """

    __slots__ = ("_error", "_server", "_socket", "_thread", "app", "host", "port", "startup_timeout")

    def __init__(
        self,
        app: ASGIApp | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        startup_timeout: float = 10.0,
    ) -> None:
        self.host = check_host(host)
        self.port = check_port(port)
        self.startup_timeout = _check_startup_timeout(startup_timeout)
        if app is None:
            from asynclab.server import create_app

            app = create_app()
        elif not callable(app):
            raise TypeError(f"app must be an ASGI app such as create_app(), got {type(app).__name__} {app!r:.60}")
        self.app = app
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._error: BaseException | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def url(self) -> str:
        """The base URL clients use, e.g. ``http://127.0.0.1:54321``."""
        if not self.running:
            raise RuntimeError("the server is not running: call start() or use `with BackgroundServer(app) as s:`")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # -- start ------------------------------------------------------------------------------

    def _launch(self) -> None:
        if self.running:
            raise RuntimeError(f"the server is already running at {self.url}")
        self._socket = bind(self.host, self.port)
        self.port = self._socket.getsockname()[1]
        config = server_config(
            self.app,
            log_config=None,  # leave the notebook's logging alone
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN,
        )
        self._server = uvicorn.Server(config)
        self._error = None
        self._thread = threading.Thread(target=self._run, name=f"asynclab-server:{self.port}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self._server is not None and self._socket is not None
        try:
            # Not the main thread, so uvicorn installs no signal handlers: Ctrl-C stays the kernel's.
            self._server.run(sockets=[self._socket])
        except BaseException as exc:  # SystemExit on a failed startup too: report it in start()
            self._error = exc

    def _ready(self) -> bool:
        assert self._server is not None and self._thread is not None
        if self._server.started:
            return True
        if not self._thread.is_alive():
            self._cleanup()
            raise RuntimeError(f"the server on {self.host}:{self.port} failed to start") from self._error
        return False

    def _timed_out(self) -> RuntimeError:
        return RuntimeError(f"the server on {self.host}:{self.port} did not start within {self.startup_timeout} s")

    def start(self) -> BackgroundServer:
        """Start serving and wait (blocking, usually ~10 ms) until connections are accepted."""
        deadline = time.monotonic() + _check_startup_timeout(self.startup_timeout)  # before the thread
        self._launch()
        while not self._ready():
            if time.monotonic() > deadline:
                error = self._timed_out()
                self._request_exit(force=True)
                self._join()
                raise error
            time.sleep(0.002)
        return self

    async def astart(self) -> BackgroundServer:
        """Like :meth:`start`, but waits without blocking the caller's event loop."""
        deadline = time.monotonic() + _check_startup_timeout(self.startup_timeout)  # before the thread
        self._launch()
        while not self._ready():
            if time.monotonic() > deadline:
                error = self._timed_out()
                self._request_exit(force=True)
                await self._ajoin()
                raise error
            await asyncio.sleep(0.002)
        return self

    # -- stop -------------------------------------------------------------------------------

    def _request_exit(self, force: bool = False) -> None:
        if self._server is not None:
            self._server.should_exit = True  # uvicorn checks it every 0.1 s, then shuts down
            self._server.force_exit = self._server.force_exit or force

    def _cleanup(self) -> None:
        if self._socket is not None:
            self._socket.close()  # uvicorn closed it already; this covers a failed start
        self._server = self._thread = self._socket = None

    def _join(self) -> None:
        if self._thread is not None:
            self._thread.join(timeout=GRACEFUL_SHUTDOWN + 5)
            if self._thread.is_alive():
                raise RuntimeError(f"the server thread {self._thread.name} did not stop")
        self._cleanup()

    async def _ajoin(self) -> None:
        deadline = time.monotonic() + GRACEFUL_SHUTDOWN + 5
        while self._thread is not None and self._thread.is_alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        self._join()

    def stop(self) -> None:
        """Stop accepting, let running requests finish (1 s at most), close the port, join the thread."""
        self._request_exit()
        self._join()

    async def astop(self) -> None:
        """Like :meth:`stop`, but waits without blocking the caller's event loop."""
        self._request_exit()
        await self._ajoin()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> BackgroundServer:
        return await self.astart()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.astop()

    def __repr__(self) -> str:
        state = f"running at {self.url}" if self.running else "stopped"
        return f"<BackgroundServer {state}>"
