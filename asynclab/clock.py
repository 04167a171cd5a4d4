"""Simulated time: one speed factor maps simulated seconds to wall seconds.

Every latency in asynclab is given in *simulated* seconds. The speed factor says how many
simulated seconds pass per wall second, so ``wall = simulated / speed``. Stopwatches and
traces report simulated seconds, so a lesson prints "sync 2.1 s, async 1.2 s" at any speed
while CI runs it many times faster (``ASYNCLAB_SPEED=50``).

    with stopwatch() as sw:
        await sleep(1.2)        # 1.2 simulated seconds, 0.024 s of wall time at speed 50
    print(sw.elapsed)           # ~1.2

Introduced in notebook 00.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType

__all__ = [
    "Stopwatch",
    "about",
    "at_speed",
    "get_speed",
    "now",
    "set_speed",
    "sleep",
    "sleep_blocking",
    "sleep_until",
    "stopwatch",
    "wall_until",
]

#: Wall seconds of scheduling noise we forgive in :func:`about`: a busy 2-core machine
#: wakes a timer up to a few milliseconds late, and that lateness is multiplied by the
#: speed when it is read back in simulated seconds.
WALL_SLACK = 0.004


#: Wall seconds by which :func:`sleep` aims early. asyncio's epoll selector rounds each
#: timeout up to whole milliseconds (sometimes twice, through float error), so a timer fires
#: 0.3-2 ms late, 0.9 ms on average (measured on the course machine). At speed 50 that would
#: add ~0.05 simulated seconds to every await; aiming 0.8 ms early brings the mean error to
#: about zero, with single calls within about ±1.3 ms of wall time.
TIMER_LEAD = 0.0008


def _check_speed(value: object, name: str = "speed") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number > 0, got {type(value).__name__} {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _speed_from_env() -> float:
    raw = os.environ.get("ASYNCLAB_SPEED", "1")
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(
            f"ASYNCLAB_SPEED must be a number > 0 (simulated seconds per wall second), got {raw!r}"
        ) from None
    return _check_speed(value, "ASYNCLAB_SPEED")


class _Clock:
    """Simulated time that stays continuous when the speed changes."""

    __slots__ = ("_sim0", "_wall0", "speed")

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self._wall0 = time.perf_counter()
        self._sim0 = 0.0

    def now(self) -> float:
        return self._sim0 + (time.perf_counter() - self._wall0) * self.speed

    def set_speed(self, speed: float) -> None:
        # Re-anchor so simulated time does not jump when the speed changes.
        self._sim0 = self.now()
        self._wall0 = time.perf_counter()
        self.speed = speed


_clock = _Clock(_speed_from_env())


def get_speed() -> float:
    """The current speed factor: simulated seconds per wall second."""
    return _clock.speed


def set_speed(speed: float) -> None:
    """Set the speed factor for the whole process.

        set_speed(50)           # 50 simulated seconds pass per wall second

    speed: a finite number > 0. ``ASYNCLAB_SPEED`` gives the default (1).
    """
    _clock.set_speed(_check_speed(speed))


@contextmanager
def at_speed(speed: float) -> Iterator[float]:
    """Run a block at another speed, then restore the previous one.

        with at_speed(100):
            await llm.complete("hi")
    """
    previous = _clock.speed
    _clock.set_speed(_check_speed(speed))
    try:
        yield _clock.speed
    finally:
        _clock.set_speed(previous)


def now() -> float:
    """Simulated seconds since the module was imported."""
    return _clock.now()


def _check_seconds(seconds: object) -> float:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(
            f"seconds must be a number >= 0 (simulated seconds), got {type(seconds).__name__}"
            f" {seconds!r}"
        )
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"seconds must be a finite number >= 0 (simulated seconds), got {seconds!r}")
    return float(seconds)


async def sleep(seconds: float) -> None:
    """Wait ``seconds`` simulated seconds without blocking the event loop.

        await sleep(0.6)        # what a vector search costs

    The wall-time sleep is aimed :data:`TIMER_LEAD` early to cancel asyncio's average timer
    lateness, so measured durations match the latency model on average at any speed.
    """
    wall = _check_seconds(seconds) / _clock.speed
    await asyncio.sleep(wall - TIMER_LEAD if wall > TIMER_LEAD else wall)


def wall_until(deadline: float) -> float:
    """Wall seconds to pass to ``asyncio.sleep`` to wake at the simulated time ``deadline``.

    Aimed :data:`TIMER_LEAD` early, like :func:`sleep`; 0 when the deadline has passed.
    """
    wall = (deadline - _clock.now()) / _clock.speed
    return wall - TIMER_LEAD if wall > TIMER_LEAD else max(wall, 0.0)


async def sleep_until(deadline: float) -> None:
    """Wait until the simulated time ``deadline`` (from :func:`now`); at once if it has passed.

    A series of steps scheduled against deadlines (a token stream) does not accumulate timer
    lateness: a late step makes the next wait shorter.
    """
    await asyncio.sleep(wall_until(deadline))


def sleep_blocking(seconds: float) -> None:
    """Block the whole thread for ``seconds`` simulated seconds, like ``time.sleep``.

    This is the blocking-call pitfall made real: inside ``async def`` it freezes the event loop.
    Introduced in notebook 01.
    """
    time.sleep(_check_seconds(seconds) / _clock.speed)


class Stopwatch:
    """Measures a block in simulated seconds.

        with stopwatch() as sw:
            await asyncio.gather(llm.complete(a), llm.complete(b))
        print(f"{sw.elapsed:.2f} s")

    ``elapsed`` reads the running time while the block runs, the final time after it.
    """

    __slots__ = ("end", "start")

    def __init__(self) -> None:
        self.start = now()
        self.end: float | None = None

    def __enter__(self) -> Stopwatch:
        self.start = now()
        self.end = None
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.end = now()

    @property
    def elapsed(self) -> float:
        """Simulated seconds from the start to the end (or to now, while running)."""
        return (now() if self.end is None else self.end) - self.start

    def __repr__(self) -> str:
        state = "running" if self.end is None else "stopped"
        return f"<Stopwatch {state} elapsed={self.elapsed:.3f} s (simulated)>"


def stopwatch() -> Stopwatch:
    """A :class:`Stopwatch`; use it as ``with stopwatch() as sw:``."""
    return Stopwatch()


def about(measured: float, expected: float, rel: float = 0.05) -> bool:
    """True when a measured simulated time is within ``rel`` of the expected one.

        assert about(sw.elapsed, 1.2)   # async took the longest call, not the sum

    Besides the relative tolerance it forgives :data:`WALL_SLACK` wall seconds (times the
    speed, in simulated seconds) of timer lateness, so a check holds at any speed.
    """
    for name, value in (("measured", measured), ("expected", expected), ("rel", rel)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    if rel < 0:
        raise ValueError(f"rel must be >= 0, got {rel!r}")
    return abs(measured - expected) <= rel * abs(expected) + WALL_SLACK * _clock.speed
