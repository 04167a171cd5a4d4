"""What every embedded server of the course does the same way: guard, stop, clean up.

    class EmbeddedRedis(EmbeddedServer):
        def start(self): ...; self._guard(pid, signal.SIGTERM); return self
        def _stop_process(self): ...

A server started by a notebook must never outlive it: :meth:`EmbeddedServer._guard` registers
``stop`` to run at interpreter exit and starts a :class:`~asynclab.backends.watchdog.Watchdog`
for a parent that is killed; :meth:`EmbeddedServer.stop` dismisses both, stops the process and
deletes the server's temporary folder. ``with`` and ``async with`` (start and stop in a thread,
off the event loop) come with it.

Introduced in notebook 15.
"""

from __future__ import annotations

import asyncio
import atexit
import shutil
import signal
from pathlib import Path
from types import TracebackType
from typing import Self

from asynclab.backends.watchdog import Watchdog

__all__ = ["EmbeddedServer"]


class EmbeddedServer:
    """Base of the embedded servers: a subclass writes ``start()`` and ``_stop_process()``."""

    __slots__ = ("_watchdog", "folder")

    def __init__(self) -> None:
        self.folder: Path | None = None
        self._watchdog: Watchdog | None = None

    def start(self) -> Self:
        raise NotImplementedError

    def _stop_process(self) -> None:
        """Stop the server process (called once per stop, also after a failed start)."""
        raise NotImplementedError

    def _guard(self, pid: int, stop_signal: signal.Signals) -> None:
        """Make sure the server at ``pid`` stops with this Python: at exit, and if Python is killed."""
        assert self.folder is not None
        atexit.register(self.stop)  # a kernel that exits (or restarts) before stop() still stops it
        self._watchdog = Watchdog(pid, stop_signal, self.folder)  # ... and one that is killed

    def stop(self) -> None:
        """Stop the server and delete its folder (safe to call twice)."""
        atexit.unregister(self.stop)
        if self._watchdog is not None:
            self._watchdog.dismiss()
            self._watchdog = None
        self._stop_process()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await asyncio.to_thread(self.start)  # starting a process takes up to a second: not on the loop

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)
