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
import gc
import inspect
import math
import os
import threading
import time
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import TypeVar

__all__ = [
    "MAX_SPEED",
    "MIN_SPEED",
    "Stopwatch",
    "Timeout",
    "about",
    "at_speed",
    "check_speed",
    "get_speed",
    "now",
    "set_speed",
    "sleep",
    "sleep_blocking",
    "sleep_until",
    "speed_error",
    "stopwatch",
    "timeout",
    "wait_for",
    "wall_until",
]

T = TypeVar("T")

#: The slowest speed: at 0.001 a 1.2 s LLM call takes 20 minutes of wall time.
MIN_SPEED = 1e-3
#: The fastest speed: at a million, one microsecond of wall time (about what a timer or a
#: ``perf_counter`` reading costs) is a whole simulated second, so faster only adds noise. A
#: bound also keeps the clock exact: it adds wall time × speed to a float, which at 1e18 would
#: jump by whole hours per step and stay that coarse after the speed is set back.
MAX_SPEED = 1e6

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


_ALLOWED_SPEED = f"a number from {MIN_SPEED:g} to {MAX_SPEED:,.0f} (simulated seconds per wall second)"


def check_speed(value: object, name: str = "speed") -> float:
    """Validate a speed factor: a number from :data:`MIN_SPEED` to :data:`MAX_SPEED`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be {_ALLOWED_SPEED}, got {type(value).__name__} {value!r}")
    if not MIN_SPEED <= value <= MAX_SPEED:  # also refuses NaN: every comparison with it is False
        raise ValueError(f"{name} must be {_ALLOWED_SPEED}, got {value!r}")
    return float(value)


def _speed_from_env() -> float:
    """``ASYNCLAB_SPEED`` (1 when it is unset or empty), checked like :func:`set_speed`'s argument."""
    raw = os.environ.get("ASYNCLAB_SPEED", "").strip() or "1"
    try:
        return check_speed(float(raw), "ASYNCLAB_SPEED")
    except ValueError:  # not a number, or out of range: show what was written
        raise ValueError(f"ASYNCLAB_SPEED must be {_ALLOWED_SPEED}, got {raw!r}") from None


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


class _UnsetClock:
    """The clock while ``ASYNCLAB_SPEED`` is invalid: reading it raises the error, until set_speed().

    The error waits for the first reading instead of failing ``import asynclab``, so that
    ``python -m asynclab`` can report it in one line (the package is imported before ``main``).
    """

    __slots__ = ("error",)

    def __init__(self, error: str) -> None:
        self.error = error

    @property
    def speed(self) -> float:
        raise ValueError(f"{self.error}, or call asynclab.set_speed()")

    def now(self) -> float:
        raise ValueError(f"{self.error}, or call asynclab.set_speed()")


def _initial_clock() -> _Clock | _UnsetClock:
    try:
        return _Clock(_speed_from_env())
    except ValueError as exc:
        return _UnsetClock(f"{exc}: fix it or unset it")


_clock = _initial_clock()


def speed_error() -> str | None:
    """Why ``ASYNCLAB_SPEED`` could not be used (None when it could, or once a speed was set)."""
    return _clock.error if isinstance(_clock, _UnsetClock) else None


def get_speed() -> float:
    """The current speed factor: simulated seconds per wall second."""
    return _clock.speed


def set_speed(speed: float) -> None:
    """Set the speed factor for the whole process; simulated time goes on from where it was.

        set_speed(50)           # 50 simulated seconds pass per wall second

    speed: a number from :data:`MIN_SPEED` (0.001) to :data:`MAX_SPEED` (1,000,000).
    ``ASYNCLAB_SPEED`` gives the default (1).
    """
    global _clock
    value = check_speed(speed)
    if isinstance(_clock, _UnsetClock):
        _clock = _Clock(value)
    else:
        _clock.set_speed(value)


@contextmanager
def at_speed(speed: float) -> Iterator[float]:
    """Run a block at another speed, then restore the previous one.

        with at_speed(100):
            await llm.complete("hi")

    speed: as for :func:`set_speed`.
    """
    global _clock
    value = check_speed(speed)
    clock = _clock
    if isinstance(clock, _UnsetClock):  # no valid speed to come back to: restore the error
        _clock = _Clock(value)
        try:
            yield value
        finally:
            _clock = clock
        return
    previous = clock.speed
    clock.set_speed(value)
    try:
        yield value
    finally:
        clock.set_speed(previous)


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


#: The longest single ``time.sleep``: it overflows near 2**63 ns (292 years), so a longer
#: blocking wait (a latency of 1e18 s) is slept a day at a time instead of raising OverflowError.
_LONGEST_BLOCK = 86_400.0


def sleep_blocking(seconds: float) -> None:
    """Block the whole thread for ``seconds`` simulated seconds, like ``time.sleep``.

    This is the blocking-call pitfall made real: inside ``async def`` it freezes the event loop.
    Introduced in notebook 01.
    """
    wall = _check_seconds(seconds) / _clock.speed
    if wall <= _LONGEST_BLOCK:
        time.sleep(wall)
        return
    end = time.monotonic() + wall
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(left, _LONGEST_BLOCK))


def _check_timeout(seconds: object) -> float | None:
    if seconds is None:
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(
            f"seconds must be a number of simulated seconds >= 0, or None for no timeout; got "
            f"{type(seconds).__name__} {seconds!r}"
        )
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(
            f"seconds must be a finite number of simulated seconds >= 0, or None for no timeout; got {seconds!r}"
        )
    return float(seconds)


def _loop_deadline(deadline: float | None) -> float | None:
    """The running loop's time at which the simulated time ``deadline`` comes (aimed like sleep)."""
    return None if deadline is None else asyncio.get_running_loop().time() + wall_until(deadline)


class Timeout:
    """``asyncio.Timeout`` in simulated seconds: what :func:`timeout` returns.

        async with timeout(2.0) as cm:
            await llm.complete(q)
            cm.reschedule(now() + 1.0)      # one more simulated second from now
        cm.expired()                        # True if the block was cut short

    ``when()`` and ``reschedule(when)`` use :func:`now`'s clock (simulated seconds); None means
    no deadline. The deadline becomes wall time when it is set: a speed change inside the block
    does not move it.
    """

    __slots__ = ("_deadline", "_exited", "_inner")

    def __init__(self, deadline: float | None) -> None:
        self._deadline = deadline
        self._inner: asyncio.Timeout | None = None
        self._exited = False

    def when(self) -> float | None:
        """The simulated deadline (a :func:`now` reading), or None."""
        return self._deadline

    def reschedule(self, when: float | None) -> None:
        """Move the deadline to the simulated time ``when`` (from :func:`now`); None removes it."""
        if when is not None and (isinstance(when, bool) or not isinstance(when, (int, float))):
            raise TypeError(f"when must be a simulated time from now(), or None; got {type(when).__name__} {when!r}")
        if when is not None and not math.isfinite(when):
            raise ValueError(f"when must be a finite simulated time from now(), or None; got {when!r}")
        deadline = None if when is None else float(when)
        if self._inner is not None:
            self._inner.reschedule(_loop_deadline(deadline))  # RuntimeError once the block is over
        self._deadline = deadline

    def expired(self) -> bool:
        """True once the deadline has cancelled the block."""
        return self._inner is not None and self._inner.expired()

    async def __aenter__(self) -> Timeout:
        if self._inner is not None:
            raise RuntimeError("this timeout has already been entered: make a new one with timeout(seconds)")
        self._inner = asyncio.timeout_at(_loop_deadline(self._deadline))
        await self._inner.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._inner is not None
        self._exited = True
        await self._inner.__aexit__(exc_type, exc, tb)  # turns its own cancellation into TimeoutError

    def __repr__(self) -> str:
        if self._inner is None:
            state = "created"
        else:
            state = "expired" if self.expired() else "finished" if self._exited else "active"
        when = "none" if self._deadline is None else f"{self._deadline:.3f}"
        return f"<Timeout {state} when={when} (simulated)>"


def timeout(seconds: float | None) -> Timeout:
    """Cancel a block that runs longer than ``seconds`` simulated seconds: ``asyncio.timeout``, simulated.

        async with timeout(1.5):
            answer = await llm.complete(q)      # TimeoutError after 1.5 simulated seconds

    seconds: a finite number of simulated seconds >= 0 (0: at the block's first await), or None
    for no timeout. Raises the builtin ``TimeoutError`` outside the block, like ``asyncio.timeout``.
    """
    limit = _check_timeout(seconds)
    return Timeout(None if limit is None else now() + limit)


async def wait_for(aw: Awaitable[T], seconds: float | None) -> T:
    """Await ``aw`` for at most ``seconds`` simulated seconds: ``asyncio.wait_for``, simulated.

        hits = await wait_for(store.search(q), 0.5)   # TimeoutError if it takes longer

    aw: a coroutine, task or future (a task or future is cancelled on timeout). seconds: as for
    :func:`timeout`. Raises the builtin ``TimeoutError``.
    """
    if not inspect.isawaitable(aw):
        raise TypeError(f"aw must be awaitable (a coroutine, task or future), got {type(aw).__name__} {aw!r}")
    try:
        cm = timeout(seconds)
    except (TypeError, ValueError):
        if inspect.iscoroutine(aw):
            aw.close()  # it will never run: no "coroutine was never awaited" warning on top
        raise
    async with cm:
        return await aw


class _CollectorPause:
    """Python's full garbage collections wait while a measurement runs (a trace, a stopwatch).

    In a notebook kernel with matplotlib, FastAPI and numpy loaded, a full collection stops the
    event loop for about 0.12 s (measured in lesson 12's kernel). At speed 20 that reads as 2.4
    simulated seconds inside whatever was being timed: lesson 12's aiolimiter measured 7.5 calls/s
    instead of 9.6 whenever a full collection fell inside it, in 4 of 5 JupyterLab Run Alls (where
    the collector's turn came at another moment than cell by cell). So while a measurement is
    open the oldest generation's threshold is out of reach: the young collections, about a
    millisecond each, still run and free the short-lived cycles; reference counting frees the
    rest; a full collection comes after the last open measurement ends, when it is due.
    Measurements may overlap (tasks, threads): the threshold comes back when the last one ends.
    The exercise checkers go further around a learner's answer (``asynclab.checks.attempt``).
    """

    __slots__ = ("_lock", "_open", "_saved")

    #: A threshold for the oldest generation that a measurement never reaches.
    NEVER = 2**30

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open = 0
        self._saved: tuple[int, int, int] | None = None

    def enter(self) -> None:
        with self._lock:
            if self._open == 0:
                self._saved = gc.get_threshold()
                young, middle, _ = self._saved
                gc.set_threshold(young, middle, self.NEVER)
            self._open += 1

    def exit(self) -> None:
        with self._lock:
            self._open = max(self._open - 1, 0)
            if self._open == 0 and self._saved is not None:
                gc.set_threshold(*self._saved)
                self._saved = None


#: The one pause shared by every trace and stopwatch of this process.
collector_pause = _CollectorPause()


class Stopwatch:
    """Measures a block in simulated seconds.

        with stopwatch() as sw:
            await asyncio.gather(llm.complete(a), llm.complete(b))
        print(f"{sw.elapsed:.2f} s")

    ``elapsed`` reads the running time while the block runs, the final time after it. While the
    block runs, Python's full garbage collections wait (see :class:`_CollectorPause`).
    """

    __slots__ = ("_pausing", "end", "start")

    def __init__(self) -> None:
        self.start = now()
        self.end: float | None = None
        self._pausing = False

    def __enter__(self) -> Stopwatch:
        if not self._pausing:
            collector_pause.enter()
            self._pausing = True
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
        if self._pausing:
            self._pausing = False
            collector_pause.exit()

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
            raise TypeError(f"{name} must be a finite number, got {type(value).__name__} {value!r}")
        # inf would make any measurement "about" right (or none), NaN never: both hide a bug.
        if not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    if rel < 0:
        raise ValueError(f"rel must be a finite number >= 0 (0.05 is 5 %), got {rel!r}")
    return abs(measured - expected) <= rel * abs(expected) + WALL_SLACK * _clock.speed
