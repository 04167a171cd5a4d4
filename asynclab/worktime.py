"""Where and when a piece of work ran: which process and thread, from when to when, how much CPU.

    ran = await loop.run_in_executor(pool, timed, rerank, question, hits)
    ran.value                  # what rerank returned
    ran.pid, ran.thread        # a worker process of the pool, its main thread
    ran.wall, ran.cpu          # 0.05 s from start to end, 0.05 s of it on a CPU: it had a core

Wrap a function in :func:`timed` to compare the event loop, a thread pool and a process pool on
the same work. ``start`` and ``end`` are ``time.perf_counter()`` readings: on Linux (and macOS)
that clock is the machine's monotonic clock, the same in every process, so runs in different
worker processes can be drawn on one time axis. ``cpu`` is the CPU time of the thread that ran
the work (``time.thread_time()``): less than ``wall`` when the thread waited, for the GIL or
for a core.

:func:`timed` is a plain module function, so a process pool can send it to its workers by name
(and ``function`` with it, which must be importable in the worker too).

Introduced in notebook 16.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = ["Timed", "timed"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Timed(Generic[T]):
    """A function's result, and where and when it was computed (wall seconds of ``perf_counter``)."""

    value: T
    start: float
    end: float
    cpu: float
    pid: int
    thread: str

    @property
    def wall(self) -> float:
        """Wall seconds from start to end."""
        return self.end - self.start

    @property
    def share(self) -> float:
        """The part of its wall time the work had a CPU: about 1 alone on a core, 1/n among n threads."""
        return self.cpu / self.wall if self.wall > 0 else 1.0

    def __repr__(self) -> str:
        return (f"<Timed pid={self.pid} thread={self.thread!r} wall={self.wall * 1000:.1f} ms "
                f"cpu={self.cpu * 1000:.1f} ms>")


def timed(function: Callable[..., T], /, *args: Any, **kwargs: Any) -> Timed[T]:
    """Call ``function(*args, **kwargs)`` and return its value with where and when it ran."""
    if not callable(function):
        raise TypeError(f"function must be callable, got {type(function).__name__} {function!r:.60}")
    cpu, start = time.thread_time(), time.perf_counter()
    value = function(*args, **kwargs)
    end, cpu = time.perf_counter(), time.thread_time() - cpu
    return Timed(value, start, end, cpu, os.getpid(), threading.current_thread().name)
