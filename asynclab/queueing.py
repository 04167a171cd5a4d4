"""The queueing view: load that arrives over time, and what queueing theory predicts for it.

    arrivals = poisson_arrivals(rate=6.0, duration=60.0, seed=1)   # simulated seconds
    llm = LLM(latency=Exponential(0.5, seed=2), capacity=4)        # M/M/4: 4 slots, 0.5 s on average
    await offer_load(lambda i: llm.complete(f"ticket {i}", model="classifier"), arrivals)
    erlang_c(servers=4, offered=6.0 * 0.5)     # 0.51: the share of calls that wait for a slot

Percentiles of a few trials are themselves random: :func:`percentile` is the nearest-rank
percentile of a sample and :func:`percentile_band` says where it lands, whatever the
distribution, so a measured p99 can be compared with a prediction honestly.

Introduced in notebook 13.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from asynclab.clock import now, sleep_until
from asynclab.latency import check_count, check_seconds, seeded_random

__all__ = [
    "Exponential",
    "erlang_c",
    "offer_load",
    "percentile",
    "percentile_band",
    "poisson_arrivals",
]

T = TypeVar("T")

#: The most trials :func:`percentile_band` takes: it sums a binomial over them at each of its
#: 120 bisection steps, about 0.1 s at this size.
MAX_TRIALS = 10_000


def _check_fraction(value: object, name: str, *, closed: bool) -> float:
    """A probability: 0 < value < 1, or 0 < value <= 1 when ``closed``."""
    allowed = "a number with 0 < p <= 1" if closed else "a number with 0 < p < 1"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be {allowed}, got {type(value).__name__} {value!r}")
    if not (0.0 < value <= 1.0 if closed else 0.0 < value < 1.0):  # NaN fails both
        raise ValueError(f"{name} must be {allowed} (0.99 is the 99th percentile), got {value!r}")
    return float(value)


def _check_rate(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{name} must be a number of calls per simulated second > 0, got {type(value).__name__} {value!r}"
        )
    if not (0.0 < value < math.inf):
        raise ValueError(f"{name} must be a finite number of calls per simulated second > 0, got {value!r}")
    return float(value)


class Exponential:
    """Exponential service times around a mean, seeded by the request: the "M" of M/M/c.

        LLM(latency=Exponential(0.5, seed=2), capacity=4)

    Most calls are short, a few are long (the standard deviation equals the mean), and a call
    remembers nothing of how long it has run: the service times queueing formulas such as
    Erlang C assume. Like :class:`~asynclab.Jittered`, a request's duration comes from its key
    and the seed, never from call order.
    """

    __slots__ = ("mean", "seed")

    def __init__(self, mean: float, *, seed: int = 0) -> None:
        self.mean = check_seconds(mean, "mean")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {type(seed).__name__} {seed!r}")
        self.seed = seed

    def seconds(self, key: str = "", n: int = 1) -> float:
        # 1 - random() lies in (0, 1], so the log is finite: at most 37 means (2**-53).
        return -self.mean * math.log(1.0 - seeded_random("exponential", self.seed, key).random())

    def __repr__(self) -> str:
        return f"Exponential(mean={self.mean:g})"


def poisson_arrivals(rate: float, duration: float, *, seed: int = 0) -> list[float]:
    """Arrival times of a Poisson process: ``rate`` calls per simulated second for ``duration`` seconds.

        poisson_arrivals(6.0, 60.0, seed=1)     # about 360 times in [0, 60), gaps exponential

    Each gap is exponential with mean 1/rate, drawn from a generator seeded by ``seed``: many
    users acting independently of each other, the same times on every run.
    """
    rate = _check_rate(rate, "rate")
    duration = check_seconds(duration, "duration")
    if rate * duration > 10_000_000:
        raise ValueError(f"rate × duration must be at most 10,000,000 arrivals, got {rate * duration:,.0f}")
    rng = seeded_random("arrivals", seed)
    times: list[float] = []
    moment = rng.expovariate(rate)
    while moment < duration:
        times.append(moment)
        moment += rng.expovariate(rate)
    return times


async def offer_load(call: Callable[[int], Awaitable[T]], arrivals: Sequence[float]) -> list[T]:
    """Start ``call(i)`` at each arrival time, without waiting for earlier calls: an open loop.

        results = await offer_load(lambda i: llm.complete(f"ticket {i}"), poisson_arrivals(6, 60))

    arrivals: simulated seconds after the start, in increasing order. Each call runs in its own
    task of one ``TaskGroup``, so the arrivals keep coming however slow the answers are (users
    do not wait for each other), an error cancels the rest, and nothing is left running.
    Returns the results in arrival order. Each arrival is scheduled against the start time, so
    a late wake-up does not delay the arrivals after it.
    """
    if not callable(call):
        raise TypeError(f"call must be a function of the arrival's index, got {type(call).__name__}")
    times = [check_seconds(at, f"arrivals[{i}]") for i, at in enumerate(arrivals)]
    for i in range(1, len(times)):
        if times[i] < times[i - 1]:
            raise ValueError(f"arrivals must be in increasing order, got arrivals[{i - 1}]={times[i - 1]!r} "
                             f"then arrivals[{i}]={times[i]!r}")
    start = now()
    tasks: list[asyncio.Task[T]] = []
    async with asyncio.TaskGroup() as group:
        for i, at in enumerate(times):
            await sleep_until(start + at)
            tasks.append(group.create_task(_awaited(call, i)))
    return [task.result() for task in tasks]


async def _awaited(call: Callable[[int], Awaitable[T]], i: int) -> T:
    return await call(i)


def erlang_c(servers: int, offered: float) -> float:
    """The probability that a call has to wait in an M/M/c queue (Erlang's C formula).

        erlang_c(4, 3.0)      # 0.51: with 4 slots and 3 Erlangs of load, half the calls queue

    servers: c, the calls served at once. offered: a = λ·S in Erlangs (arrival rate × mean
    service time), which must stay below ``servers``: at a ≥ c the queue grows without bound.
    Computed through Erlang B's recursion, which stays finite for any c (the textbook sum of
    a^k / k! overflows a float past c ≈ 170).
    """
    c = check_count(servers, "servers")
    a = check_seconds(offered, "offered")
    if a >= c:
        raise ValueError(f"offered load must be below servers (a = λ·S < c), got offered={offered!r} with "
                         f"servers={servers!r}: the queue would grow without bound")
    blocked = 1.0  # Erlang B with 0 servers
    for k in range(1, c + 1):
        blocked = a * blocked / (k + a * blocked)
    return c * blocked / (c - a * (1.0 - blocked))


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank percentile: the ⌈p·N⌉-th smallest of N values (p = 0.99 for the p99).

        percentile([0.9, 1.2, 1.0, 3.4], 0.5)      # 1.0

    Always one of the measured values, never interpolated between two.
    """
    p = _check_fraction(p, "p", closed=True)
    ordered = sorted(values)
    if not ordered:
        raise ValueError("values must hold at least one measurement")
    return ordered[max(math.ceil(p * len(ordered) - 1e-9), 1) - 1]  # 1e-9: 0.99·100 is 99.00000000000001


def percentile_band(p: float, trials: int, confidence: float = 0.99) -> tuple[float, float]:
    """Where a :func:`percentile` of ``trials`` measurements lands, as levels of the true distribution.

        percentile_band(0.99, 150)      # (0.951, 0.9995): the p99 of 150 trials is, 99 % of the
                                        # time, between the true p95.1 and p99.95

    The ⌈p·N⌉-th smallest of N independent draws from any continuous distribution F satisfies
    F(x) ≤ u exactly when at least ⌈p·N⌉ of the N draws are ≤ F⁻¹(u): a binomial count. The band
    (low, high) holds ``confidence`` of that probability, half the rest on each side, so a
    prediction G for the measured percentile is right, at that confidence, when
    G⁻¹(low) ≤ measured ≤ G⁻¹(high).
    """
    p = _check_fraction(p, "p", closed=True)
    n = check_count(trials, "trials")
    if n > MAX_TRIALS:
        raise ValueError(f"trials must be at most {MAX_TRIALS:,}, got {n:,}")
    confidence = _check_fraction(confidence, "confidence", closed=False)
    rank = max(math.ceil(p * n - 1e-9), 1)
    tail = (1.0 - confidence) / 2

    # log C(n, j) for the j that count: at least `rank` of the n draws at or below the level.
    log_choose = [math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1) for j in range(rank, n + 1)]

    def below(u: float) -> float:
        """P(the rank-th smallest of n draws has F(x) <= u) = P(Binomial(n, u) >= rank)."""
        if u <= 0.0:
            return 0.0
        if u >= 1.0:
            return 1.0
        log_u, log_v = math.log(u), math.log1p(-u)
        total = sum(math.exp(c + j * log_u + (n - j) * log_v) for j, c in enumerate(log_choose, start=rank))
        return min(1.0, total)

    def level(target: float) -> float:
        low, high = 0.0, 1.0
        for _ in range(60):  # 2**-60: far below any difference a percentile can show
            middle = (low + high) / 2
            if below(middle) < target:
                low = middle
            else:
                high = middle
        return (low + high) / 2

    return level(tail), level(1.0 - tail)
