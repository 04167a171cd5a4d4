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

import signal
import tempfile
import warnings
from pathlib import Path
from typing import Any

from asynclab.backends.extras import need
from asynclab.backends.lifecycle import EmbeddedServer

__all__ = ["EmbeddedPostgres"]


def _initdb_without_fsync(module: Any) -> None:
    """Make pgserver's initdb skip its final fsync (``--no-sync``), once per process.

    initdb writes ~40 MB and then syncs it to disk: 0.5 s on a quiet machine, up to 8 s on a
    busy disk (measured on the course's 2-core VM). The folder is thrown away at stop(), so
    durability buys nothing here. pgserver has no option for it, so its initdb is wrapped.
    """
    original = getattr(module, "initdb", None)
    if not callable(original) or getattr(original, "asynclab_no_sync", False):
        return

    def initdb(args: list[str], *more: Any, **options: Any) -> Any:
        return original(["--no-sync", *args], *more, **options)

    initdb.asynclab_no_sync = True  # type: ignore[attr-defined]
    module.initdb = initdb


class EmbeddedPostgres(EmbeddedServer):
    """One Postgres server with pgvector in a temporary folder; :meth:`stop` removes both.

    ``dsn`` is what asyncpg (or psycopg) connects with; ``pid`` the postmaster's process id.
    """

    __slots__ = ("_server",)

    def __init__(self) -> None:
        super().__init__()
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
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset (a container)
            warnings.simplefilter("ignore")
            pgserver = need("pgserver")
        _initdb_without_fsync(need("pgserver.postgres_server"))
        self.folder = Path(tempfile.mkdtemp(prefix="asynclab-pg-"))
        try:
            # cleanup_mode="delete": the last handle's cleanup stops the server and deletes the folder.
            self._server = pgserver.get_server(self.folder, cleanup_mode="delete")
            self._server.psql("CREATE EXTENSION IF NOT EXISTS vector;")
        except BaseException:
            self.stop()
            raise
        self._guard(self.pid, signal.SIGINT)  # SIGINT is Postgres's "fast shutdown"
        return self

    def _stop_process(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.cleanup()

    def __repr__(self) -> str:
        if self._server is None:
            return "<EmbeddedPostgres stopped>"
        return f"<EmbeddedPostgres pid={self.pid} socket in {self.folder}>"
