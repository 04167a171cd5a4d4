"""aiolimiter's leaky bucket on the course's simulated clock.

    limiter = SimulatedLimiter(10, 2.0)     # at most 10 at once, then 10 per 2 *simulated* seconds
    async with limiter:
        await llm.complete(prompt)
    await limiter.acquire(180)              # a weighted acquire: 180 tokens of a tokens-per-window budget

``aiolimiter.AsyncLimiter(max_rate, time_period)`` reads the event loop's clock, ``loop.time()``:
wall seconds. The course's services count their rate limits in simulated seconds, so at speed
20 a plain ``AsyncLimiter(10, 2.0)`` lets 10 calls through per 2 *wall* seconds, 40 simulated
seconds: twenty times too slow. :class:`SimulatedLimiter` is the same class, unchanged, given a
view of the running loop whose ``time()`` is :func:`asynclab.now` and whose ``call_at`` wakes at
a simulated moment. Against a real provider use ``AsyncLimiter`` itself.

It relies on aiolimiter (1.2 and later) reading the loop through its ``_loop`` property; a
test (``tests/test_limiter.py``) measures its rate so that a change there cannot go unnoticed.

Introduced in notebook 12.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiolimiter import AsyncLimiter

from asynclab.clock import get_speed, now, wall_until

__all__ = ["SimulatedLimiter"]


class _SimulatedLoopClock:
    """The running loop, with its clock read and set in simulated seconds (everything else as is)."""

    __slots__ = ("_loop",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def time(self) -> float:
        return now()

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> asyncio.TimerHandle:
        # ``when`` is a simulated moment: wake at the wall moment that reaches it, aimed a little
        # early like asynclab.sleep. Woken early, aiolimiter finds the bucket not yet drained and
        # asks again for the rest: that wait is not aimed early, so the loop never spins on it.
        delay = wall_until(when)
        if delay == 0.0 and when > now():
            delay = (when - now()) / get_speed()
        return self._loop.call_at(self._loop.time() + delay, callback, *args)

    def __getattr__(self, name: str) -> Any:  # create_future, call_soon, is_closed: the real loop's
        return getattr(self._loop, name)

    def __eq__(self, other: object) -> bool:  # aiolimiter compares a future's loop with this one
        return other is self._loop or (isinstance(other, _SimulatedLoopClock) and other._loop is self._loop)

    def __hash__(self) -> int:
        return hash(self._loop)


class SimulatedLimiter(AsyncLimiter):
    """``aiolimiter.AsyncLimiter`` counting simulated seconds: ``max_rate`` per ``time_period``.

        limiter = SimulatedLimiter(1, 0.2)      # one call per 0.2 simulated seconds, no burst
        async with limiter:
            ...

    max_rate: the bucket's size, the most acquisitions at once after a quiet spell (a burst).
    time_period: simulated seconds in which a full bucket drains; the steady rate is
    ``max_rate / time_period`` per simulated second. Both are checked by aiolimiter's rules
    (``acquire(amount)`` refuses more than ``max_rate``).
    """

    def __init__(self, max_rate: float, time_period: float = 60) -> None:
        for name, value in (("max_rate", max_rate), ("time_period", time_period)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a number > 0, got {type(value).__name__} {value!r}")
            if not 0 < value < float("inf"):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        super().__init__(max_rate, time_period)

    @property
    def _loop(self) -> asyncio.AbstractEventLoop:
        # aiolimiter asks for the loop each time it reads the clock or sets a timer.
        return _SimulatedLoopClock(asyncio.get_running_loop())  # type: ignore[return-value]

    def __repr__(self) -> str:
        limits = f"max_rate={self.max_rate!r}, time_period={self.time_period!r}"
        return f"<SimulatedLimiter({limits}) level {self._level:.2f} of {self.max_rate!r}>"
