"""An embedded Postgres with pgvector, started in a temporary folder, reached on a Unix socket only.

    with EmbeddedPostgres() as postgres:                 # about 1 s to start
        pool = await asyncpg.create_pool(postgres.dsn, max_size=4)
        ...
        await pool.close()
    # stopped; its folder is deleted

The server is the one the ``pgserver`` package bundles (Postgres and the pgvector extension,
no Docker, no root). It listens on no TCP port at all: only on a Unix socket inside its
temporary folder, so nothing on the network can reach it. Starting and stopping block for a
moment (a process starts, the data folder is created): from async code use ``async with``,
which does both in a worker thread so the event loop keeps running.

Introduced in notebook 15.
"""

from __future__ import annotations

import asyncio
import atexit
import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

from asynclab.backends.extras import need

__all__ = ["EmbeddedPostgres"]


class EmbeddedPostgres:
    """One Postgres server with pgvector in a temporary folder; :meth:`stop` removes both.

    ``dsn`` is what asyncpg (or psycopg) connects with; ``pid`` the postmaster's process id.
    """

    __slots__ = ("_server", "folder")

    def __init__(self) -> None:
        self.folder: Path | None = None
        self._server: Any = None

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def dsn(self) -> str:
        """The connection string: database ``postgres`` over the Unix socket."""
        return str(self._live().get_uri())

    @property
    def pid(self) -> int:
        """The postmaster's process id."""
        return int(self._live().get_pid())

    def _live(self) -> Any:
        if self._server is None:
            raise RuntimeError("this EmbeddedPostgres is not running: call start() or use `with EmbeddedPostgres()`")
        return self._server

    def start(self) -> EmbeddedPostgres:
        """Create the folder, start the server, enable pgvector. Blocks about a second."""
        if self._server is not None:
            raise RuntimeError(f"this EmbeddedPostgres is already running in {self.folder}")
        pgserver = need("pgserver")
        self.folder = Path(tempfile.mkdtemp(prefix="asynclab-pg-"))
        try:
            # cleanup_mode="delete": the last handle's cleanup stops the server and deletes the folder.
            self._server = pgserver.get_server(self.folder, cleanup_mode="delete")
            self._server.psql("CREATE EXTENSION IF NOT EXISTS vector;")
        except BaseException:
            self.stop()
            raise
        atexit.register(self.stop)  # a kernel that exits (or restarts) before stop() still stops it
        return self

    def stop(self) -> None:
        """Stop the server and delete its folder (safe to call twice)."""
        atexit.unregister(self.stop)
        server, self._server = self._server, None
        if server is not None:
            server.cleanup()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    async def __aenter__(self) -> EmbeddedPostgres:
        return await asyncio.to_thread(self.start)  # a second of process start: not on the loop

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)

    def __repr__(self) -> str:
        if self._server is None:
            return "<EmbeddedPostgres stopped>"
        return f"<EmbeddedPostgres pid={self.pid} socket in {self.folder}>"
