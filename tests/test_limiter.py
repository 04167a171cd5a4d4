"""SimulatedLimiter: aiolimiter's leaky bucket on the simulated clock."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from asynclab import SimulatedLimiter, at_speed, now

#: These tests measure rates: at speed 5 a stall of the loaded machine (10-20 ms of wall time) is
#: 0.05-0.1 simulated seconds, not 0.2-0.4 as at speed 20. Each test takes under half a wall second.
SPEED = 5.0


@pytest.fixture
def slow() -> Iterator[float]:
    with at_speed(SPEED) as speed:
        yield speed


async def test_a_bucket_of_one_paces_calls_at_its_rate_in_simulated_seconds(slow: float) -> None:
    limiter = SimulatedLimiter(1, 0.2)
    times = []
    for _ in range(11):
        async with limiter:
            times.append(now())
    # 10 gaps of 0.2 simulated seconds, never shorter; each may end up to ~1.5 ms of wall time late
    # (aiolimiter asks for a second timer when the first, aimed early, wakes it before the bucket drained),
    # 0.03 simulated seconds at speed 20: 15 % at most.
    assert 2.0 <= times[-1] - times[0] <= 2.3, times


async def test_a_full_bucket_lets_a_burst_through_then_the_rate(slow: float) -> None:
    limiter = SimulatedLimiter(5, 1.0)
    times: list[float] = []

    async def one() -> None:
        async with limiter:
            times.append(now())

    start = now()
    await asyncio.gather(*(one() for _ in range(10)))
    # The first 5 at once; the next 5 at 5 per simulated second (0.2 s apart): the 10th at ~1.0 s.
    assert max(times[:5]) - start < 0.1
    assert 0.95 <= times[-1] - start <= 1.2, [round(t - start, 3) for t in times]  # late wake-ups, as above


async def test_a_weighted_acquire_waits_for_its_share(slow: float) -> None:
    limiter = SimulatedLimiter(100, 1.0)  # 100 tokens per simulated second, 100 at most at once
    start = now()
    await limiter.acquire(100)
    await limiter.acquire(50)  # the bucket is full: 50 must drain first, 0.5 s
    assert 0.45 <= now() - start <= 0.6


@pytest.mark.parametrize(("max_rate", "time_period", "error"),
                         [(0, 1.0, ValueError), (1, -1.0, ValueError), ("5", 1.0, TypeError), (1, True, TypeError)])
def test_bad_arguments_are_refused_with_their_name(max_rate: object, time_period: object,
                                                   error: type[Exception]) -> None:
    with pytest.raises(error, match=r"max_rate|time_period"):
        SimulatedLimiter(max_rate, time_period)  # type: ignore[arg-type]
