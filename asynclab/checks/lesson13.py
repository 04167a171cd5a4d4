"""Checkers for notebook 13 · The queueing view.

    from asynclab.checks import lesson13
    await lesson13.check_fanout_p99(fanout_p99)        # a prediction, graded against a measurement
    await lesson13.check_capacity_for(capacity_for)    # the smallest capacity that meets a p95 target

Both exercises are predictions written as plain functions (``def``, no ``await``). Each checker
asks the learner's function first, then measures the same thing on fresh services, then checks
the function on more cases with the formula, and names the mistake when it recognises one.

Introduced in notebook 13.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections.abc import Callable, Sequence
from statistics import NormalDist
from typing import Any

from asynclab.checks import describe_error, expect, fail, passed
from asynclab.clock import WALL_SLACK, at_speed, get_speed, stopwatch
from asynclab.latency import Fixed, Jittered
from asynclab.queueing import offer_load, percentile, percentile_band
from asynclab.services import LLM
from asynclab.tracing import trace

__all__ = [
    "CAPACITY_CASE",
    "CAPACITY_FORMULA_CASES",
    "FANOUT_CASES",
    "FANOUT_MEASURED",
    "capacity_reference",
    "check_capacity_for",
    "check_fanout_p99",
    "fanout_reference",
]

# -- shared ------------------------------------------------------------------------------------

#: The slowest speed the checkers measure at: at the JupyterLab speed (1) a measurement of a few
#: hundred requests would take many seconds of wall time for nothing.
MIN_SPEED = 20.0


async def _ask(function: Callable[..., Any], *args: Any) -> Any:
    """The learner's answer for ``args``; a hint instead of a traceback when it raises."""
    __tracebackhide__ = True
    name = getattr(function, "__name__", "your function")
    try:
        value = function(*args)
        if inspect.isawaitable(value):  # an `async def` answer works too
            value = await value
    except NotImplementedError:
        fail("not done yet: replace `raise NotImplementedError` in the exercise cell with your code")
    except Exception as exc:  # the learner's bug, shown as a hint
        fail(f"{name}{args} raised {describe_error(exc)}")
    return value


def _require_function(function: object) -> str:
    __tracebackhide__ = True
    if inspect.iscoroutine(function):
        function.close()
        fail("pass your function itself, e.g. check(fanout_p99), not a call of it.")
    if not callable(function):
        fail(f"pass your function itself, e.g. check(fanout_p99), not {type(function).__name__}")
    return str(getattr(function, "__name__", "your function"))


def _diagnose(
    answers: dict[Any, Any],
    reference: Callable[..., Any],
    mistakes: Sequence[tuple[Callable[..., Any], str]],
    same: Callable[[Any, Any], bool],
) -> str:
    """The hint of the mistake whose formula gives the most of the learner's WRONG answers ('' if none).

    Only the cases the learner got wrong count: a mistake that agrees with the right answer on
    some case (rounding down when the division comes out whole) says nothing there.
    """
    wrong = [case for case, answer in answers.items() if not same(answer, reference(*case))]
    best, hint = 0, ""
    for formula, text in mistakes:
        hits = sum(same(answers[case], formula(*case)) for case in wrong)
        if hits > best:
            best, hint = hits, text
    return hint


# -- exercise 1: a fan-out's p99 ---------------------------------------------------------------

#: The service check_fanout_p99 measures: Jittered(FAN_MEDIAN, sigma=FAN_SIGMA), no tail.
FAN_MEDIAN, FAN_SIGMA, FAN_SEED = 0.8, 0.4, 1313
#: Requests measured per width, and the widths measured.
FAN_TRIALS = 150
FANOUT_MEASURED = ((FAN_MEDIAN, FAN_SIGMA, 1), (FAN_MEDIAN, FAN_SIGMA, 20))
#: Cases checked with the formula only: other latencies, and widths too large to measure.
FANOUT_CASES = ((1.2, 0.3, 5), (0.5, 0.8, 100), (FAN_MEDIAN, FAN_SIGMA, 1000))
#: Simulated seconds between two measured requests (interleaved widths): 300 requests over 9 s,
#: so the event loop never has thousands of calls to start at once.
FAN_GAP = 0.03
#: How close a formula case must be: 2 % (floats and normal-quantile approximations agree far
#: better; a p99.9 instead of the order statistic is 5-20 % off at these widths).
FORMULA_REL = 0.02


def _lognormal_quantile(median: float, sigma: float, level: float) -> float:
    """One Jittered(median, sigma) call's quantile at ``level``: median·exp(σ·z)."""
    return median * math.exp(sigma * NormalDist().inv_cdf(level))


def fanout_reference(median: float, sigma: float, n: int) -> float:
    """The p99 of a request that makes ``n`` Jittered(median, sigma) calls at once: F⁻¹(0.99^(1/n))."""
    return _lognormal_quantile(median, sigma, 0.99 ** (1 / n))


#: Wrong answers the checker recognises, each with what it is and what to do instead.
_FANOUT_MISTAKES: tuple[tuple[Callable[[float, float, int], float], str], ...] = (
    (lambda m, s, n: _lognormal_quantile(m, s, 0.99),
     "your prediction does not change with n: it is ONE call's p99. A request waits for the slowest of its n "
     "calls, and P(slowest ≤ t) = F(t)^n, so the request's p99 is F⁻¹(0.99^(1/n)): a level much closer to 1."),
    (lambda m, s, n: m * math.exp(s * s / 2),
     "that is the MEAN of one call, median·e^(σ²/2): the tail of a request sits far above a typical call. "
     "Use the order statistics: the request's p99 is F⁻¹(0.99^(1/n))."),
    (lambda m, s, n: m * math.exp(s * s / 2) * n,
     "that is n × the mean of one call: the time of n calls one after another. Concurrent calls overlap, "
     "so the request takes the slowest of them: F⁻¹(0.99^(1/n))."),
    (lambda m, s, n: m * n,
     "n × the median is the time of n calls one after another. Concurrent calls overlap, so the request "
     "takes the slowest of them: its p99 is F⁻¹(0.99^(1/n))."),
    (lambda m, s, n: _lognormal_quantile(m, s, 0.5 ** (1 / n)),
     "that is the request's MEDIAN (p50), F⁻¹(0.5^(1/n)). For the p99 use 0.99^(1/n)."),
    (lambda m, s, n: _lognormal_quantile(m, s, 0.99 ** n),
     "you raised 0.99 to the n-th power, which makes a wide request FASTER than one call. "
     "F(t)^n = 0.99 gives F(t) = 0.99^(1/n): take the n-th root."),
    (lambda m, s, n: m * (1 + s * NormalDist().inv_cdf(0.99 ** (1 / n))),
     "the level 0.99^(1/n) is right, but the latency is lognormal: its quantile is median·exp(σ·z), "
     "not median·(1 + σ·z), with z = NormalDist().inv_cdf(level)."),
    (lambda m, s, n: n * _lognormal_quantile(m, s, 0.99),
     "n × one call's p99 is far too slow: the calls overlap, and a request is rarely unlucky in more than "
     "one of them. The request's p99 is F⁻¹(0.99^(1/n))."),
)


def _close(value: float, expected: float, rel: float = FORMULA_REL) -> bool:
    return abs(value - expected) <= rel * abs(expected)


def _fanout_mistake(answers: dict[tuple[float, float, int], float]) -> str:
    """The hint of the wrong formula that explains most of the learner's wrong answers."""
    return _diagnose(answers, fanout_reference, _FANOUT_MISTAKES, _close)


async def _measure_fanouts(cases: Sequence[tuple[float, float, int]]) -> dict[tuple[float, float, int], float]:
    """The measured p99 of FAN_TRIALS requests per case, each request its n calls at once."""
    llms = {case: LLM(latency=Jittered(case[0], sigma=case[1], seed=FAN_SEED)) for case in cases}
    plan = [case for _ in range(FAN_TRIALS) for case in cases]

    async def request(i: int) -> float:
        case = plan[i]
        with stopwatch() as sw:
            async with asyncio.TaskGroup() as group:
                for call in range(case[2]):
                    group.create_task(llms[case].complete(f"check {i}-{call}", model="sentiment"))
        return sw.elapsed

    elapsed = await offer_load(request, [FAN_GAP * i for i in range(len(plan))])
    return {case: percentile([t for c, t in zip(plan, elapsed, strict=True) if c == case], 0.99) for case in cases}


async def check_fanout_p99(fanout_p99: Callable[[float, float, int], float]) -> None:
    """``fanout_p99(median, sigma, n)``: the p99 of a request making n Jittered(median, sigma) calls at once."""
    __tracebackhide__ = True
    name = _require_function(fanout_p99)
    answers: dict[tuple[float, float, int], float] = {}
    for case in (*FANOUT_MEASURED, *FANOUT_CASES):  # predict first, measure after
        value = await _ask(fanout_p99, *case)
        expect(isinstance(value, (int, float)) and not isinstance(value, bool),
               f"{name}{case} returned {type(value).__name__} {value!r:.60}: return a number of simulated seconds")
        expect(math.isfinite(value) and value > 0,
               f"{name}{case} returned {value!r}: a p99 is a finite number of seconds > 0")
        answers[case] = float(value)
    with at_speed(max(get_speed(), MIN_SPEED)) as speed:
        measured = await _measure_fanouts(FANOUT_MEASURED)
    # A p99 of 150 requests is itself random: if the request's true p99 were the learner's value
    # (and its distribution the same lognormal, scaled), 99.9 % of measurements would land within
    # this band of it (the binomial band of asynclab.queueing.percentile_band). Plus twice the
    # course's timer slack: the slowest call's timer, and starting 20 calls, may be a few ms late.
    low, high = percentile_band(0.99, FAN_TRIALS, confidence=0.999)
    slack = 2 * WALL_SLACK * speed
    for case in FANOUT_MEASURED:
        median, sigma, width = case
        scale = answers[case] / fanout_reference(*case)  # the band of a p99 that is the learner's
        lowest = _lognormal_quantile(median, sigma, low ** (1 / width))
        highest = _lognormal_quantile(median, sigma, high ** (1 / width))
        if not (lowest * scale - slack <= measured[case] <= highest * scale + slack):
            mistake = _fanout_mistake(answers)
            fail(f"for n = {case[2]} you predicted a p99 of {answers[case]:.2f} s; {FAN_TRIALS} requests measured "
                 f"{measured[case]:.2f} s. If your prediction were right, the measurement would land between "
                 f"{lowest * scale:.2f} and {highest * scale:.2f} s.\n"
                 + (mistake or "The request's p99 is the level 0.99^(1/n) of one call's latency: "
                    "F⁻¹(0.99^(1/n)) = median·exp(σ·z), z = NormalDist().inv_cdf(0.99 ** (1 / n))."))
    for case in FANOUT_CASES:
        expected = fanout_reference(*case)
        if not _close(answers[case], expected):
            mistake = _fanout_mistake(answers)
            fail(f"your predictions are within the noise of the measurements (a p99 of {FAN_TRIALS} requests is "
                 f"noisy), but for median={case[0]}, sigma={case[1]}, "
                 f"n={case[2]} you predicted {answers[case]:.3f} s and the order statistics give {expected:.3f} s.\n"
                 + (mistake or "Use the exact level 0.99^(1/n), with the median and sigma you are given, "
                    "not a fixed percentile."))
    one, wide = FANOUT_MEASURED
    passed(f"{name}: n = {one[2]}: predicted {answers[one]:.2f} s, measured {measured[one]:.2f} s; "
           f"n = {wide[2]}: predicted {answers[wide]:.2f} s, measured {measured[wide]:.2f} s "
           f"(p99 of {FAN_TRIALS} requests each); n = 1000: {answers[FANOUT_CASES[-1]]:.2f} s.")


# -- exercise 2: the capacity for a p95 target ---------------------------------------------------

#: The measured burst: 100 documents at once, 1 s per call, 95 % of them back within 3.9 s. Timers
#: only ever make a wave end later (each hand-over, a slot released and the next call started, costs
#: a few ms of wall time: up to ~0.1 s per wave at speed 20 on a busy machine), so the target sits
#: just before the 4th wave's end (4 s) and 0.9 s after the 3rd's: neither side can flip by noise.
CAPACITY_CASE = (100, 1.0, 3.9)
#: More cases, checked with the formula: (n, seconds, target). No target lies on a wave boundary.
CAPACITY_FORMULA_CASES = ((40, 0.5, 1.2), (7, 1.0, 3.5), (1000, 0.25, 0.9), (1, 2.0, 2.5), (20, 0.3, 0.5))
#: A target shorter than one call: no capacity meets it.
CAPACITY_IMPOSSIBLE = (10, 1.0, 0.8)


def capacity_reference(n: int, seconds: float, target: float) -> int:
    """The smallest capacity c with p95 ≤ target for a burst of n calls of ``seconds`` each.

    The k-th call served ends after ⌈k/c⌉ waves; the p95 (nearest rank) is call m = ⌈0.95·n⌉;
    w = ⌊target/seconds⌋ whole waves fit in the target, so c = ⌈m/w⌉.
    """
    waves = math.floor(target / seconds)
    if waves < 1:
        raise ValueError(f"target {target} s is shorter than one call ({seconds} s): no capacity meets it")
    return math.ceil(math.ceil(0.95 * n) / waves)


_CAPACITY_MISTAKES: tuple[tuple[Callable[[int, float, float], float], str], ...] = (
    (lambda n, s, t: math.ceil(n / math.floor(t / s)),
     "you sized the capacity for ALL n documents (the p100). The target is for 95 % of them: only the "
     "⌈0.95·n⌉-th document must be back in time, so fewer slots do."),
    (lambda n, s, t: math.ceil(0.95 * n) // math.floor(t / s),
     "you rounded the number of slots down (integer division). m/w slots rarely come out whole: "
     "round UP, c = ⌈m / w⌉, or the last documents need one more wave."),
    (lambda n, s, t: math.ceil(math.ceil(0.95 * n) / (t / s)),
     "you divided by target/seconds, a fraction of waves. A call finishes only at the end of its wave: "
     "w = ⌊target / seconds⌋ whole waves fit in the target, then c = ⌈m / w⌉."),
    (lambda n, s, t: math.ceil(math.ceil(0.95 * n) / math.ceil(t / s)),
     "you rounded the number of waves UP: the last of those waves would end after the target. "
     "w = ⌊target / seconds⌋ whole waves fit in it."),
    (lambda n, s, t: math.ceil(math.floor(0.95 * n) / math.floor(t / s)),
     "you rounded 0.95·n down: the nearest-rank p95 is the ⌈0.95·n⌉-th smallest latency."),
    (lambda n, s, t: capacity_reference(n, s, t) + 1,
     "one slot too many: the smallest capacity is the first c with ⌈m/c⌉ ≤ w (m = ⌈0.95·n⌉, "
     "w = ⌊target/seconds⌋). Check your loop's stop condition or your rounding."),
    (lambda n, s, t: capacity_reference(n, s, t) - 1,
     "one slot too few: with it the 95th-percentile document needs one more wave. "
     "The smallest capacity is c = ⌈m / w⌉ (m = ⌈0.95·n⌉, w = ⌊target/seconds⌋)."),
)


def _capacity_mistake(answers: dict[tuple[int, float, float], Any]) -> str:
    """The hint of the wrong formula that explains most of the learner's wrong answers."""
    return _diagnose(answers, capacity_reference, _CAPACITY_MISTAKES, lambda a, b: a == b)


async def _burst_p95(n: int, seconds: float, capacity: int) -> float:
    """The measured p95 latency of n calls sent at once to a service with ``capacity`` slots."""
    service = LLM(name="summarizer", latency=Fixed(seconds), capacity=capacity)
    with trace() as recorded:
        async with asyncio.TaskGroup() as group:
            for i in range(n):
                group.create_task(service.complete(f"document {i}", model="sentiment"))
    return percentile([span.end - recorded.start for span in recorded.spans if span.end is not None], 0.95)


async def check_capacity_for(capacity_for: Callable[[int, float, float], int]) -> None:
    """``capacity_for(n, seconds, target)``: the smallest capacity whose burst p95 is within target."""
    __tracebackhide__ = True
    name = _require_function(capacity_for)
    n, seconds, target = CAPACITY_CASE
    answers: dict[tuple[int, float, float], Any] = {}
    for case in (CAPACITY_CASE, *CAPACITY_FORMULA_CASES):
        value = await _ask(capacity_for, *case)
        expect(isinstance(value, int) and not isinstance(value, bool),
               f"{name}{case} returned {type(value).__name__} {value!r:.60}: a capacity is a whole number of "
               "slots (an int; math.ceil returns one)")
        answers[case] = value
    c = answers[CAPACITY_CASE]
    expect(c >= 1, f"{name}{CAPACITY_CASE} returned {c}: a service needs at least 1 slot")
    expect(c <= 10 * n, f"{name}{CAPACITY_CASE} returned {c} slots for {n} documents: more slots than "
                        "documents never helps")
    # One burst after the other, not both at once: each wave's hand-over (slots released, the next
    # calls started) costs CPU per call, and twice the calls per wave would double that lateness.
    p95: dict[int, float] = {}
    with at_speed(max(get_speed(), MIN_SPEED)):
        for capacity in (c, c - 1) if c > 1 else (c,):
            p95[capacity] = await _burst_p95(n, seconds, capacity)
    if p95[c] > target:
        fail(f"with capacity {c}, 95 % of the {n} documents were back after {p95[c]:.2f} s (measured), "
             f"but the target is {target} s.\n" + (_capacity_mistake(answers) or
             "Count the waves: the p95 document is the ⌈0.95·n⌉-th, and it finishes in wave ⌈m/c⌉."))
    if c > 1 and p95[c - 1] <= target:
        fail(f"capacity {c} meets the target, but so does {c - 1}: 95 % back after {p95[c - 1]:.2f} s (measured) "
             f"≤ {target} s. Return the SMALLEST capacity that meets it.\n" + _capacity_mistake(answers))
    for case in CAPACITY_FORMULA_CASES:
        expected = capacity_reference(*case)
        if answers[case] != expected:
            fail(f"right for {CAPACITY_CASE}, but for n={case[0]}, seconds={case[1]}, target={case[2]} you "
                 f"returned {answers[case]} and the smallest capacity is {expected}.\n"
                 + (_capacity_mistake(answers) or "m = ⌈0.95·n⌉ documents in w = ⌊target/seconds⌋ waves: "
                    "c = ⌈m / w⌉."))
    impossible = CAPACITY_IMPOSSIBLE
    try:
        value = capacity_for(*impossible)
        if inspect.isawaitable(value):
            value = await value
    except ValueError:
        pass
    except Exception as exc:  # the learner's bug, shown as a hint
        fail(f"{name}{impossible} raised {describe_error(exc)}: raise ValueError when no capacity can meet the target")
    else:
        fail(f"{name}{impossible} returned {value!r}, but a target of {impossible[2]} s is shorter than one call "
             f"({impossible[1]} s): no capacity meets it. Raise ValueError saying so.")
    passed(f"{name}: {c} slots: 95 % of {n} documents back after {p95[c]:.2f} s ≤ {target} s (measured); "
           f"with {c - 1} slots {p95[c - 1]:.2f} s. All {len(CAPACITY_FORMULA_CASES)} other cases right, "
           "and an impossible target refused.")
