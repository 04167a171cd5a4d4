"""The notebook 13 checkers pass the reference solutions and fail wrong ones with their hints."""

from __future__ import annotations

import math
from collections.abc import Callable
from statistics import NormalDist

import pytest

from asynclab.checks import ExerciseFailed, lesson13

# -- fanout_p99 --------------------------------------------------------------------------------


def quantile(median: float, sigma: float, level: float) -> float:
    return median * math.exp(sigma * NormalDist().inv_cdf(level))


def fanout_p99(median: float, sigma: float, n: int) -> float:
    """The reference solution (as in the solutions notebook)."""
    return quantile(median, sigma, 0.99 ** (1 / n))


async def test_fanout_p99_passes_the_reference(fast: float, capsys: pytest.CaptureFixture[str]) -> None:
    await lesson13.check_fanout_p99(fanout_p99)
    out = capsys.readouterr().out
    assert "✅ fanout_p99: n = 1: predicted 2.03 s" in out and "n = 20: predicted 2.98 s" in out


async def test_fanout_p99_passes_the_rule_of_thumb_and_an_async_def(fast: float) -> None:
    async def rule_of_thumb(median: float, sigma: float, n: int) -> float:
        return quantile(median, sigma, 1 - 0.01 / n)  # within 0.1 % of the exact level

    await lesson13.check_fanout_p99(rule_of_thumb)


WRONG_FANOUTS: dict[str, tuple[Callable[[float, float, int], float], str]] = {
    "ignores n": (lambda m, s, n: quantile(m, s, 0.99), "it is ONE call's p99"),
    "mean of one call": (lambda m, s, n: m * math.exp(s * s / 2), "that is the MEAN of one call"),
    "n calls one after another": (lambda m, s, n: m * n, "n × the median is the time of n calls one after another"),
    "the request's median": (lambda m, s, n: quantile(m, s, 0.5 ** (1 / n)), r"request's MEDIAN \(p50\)"),
    "0.99 to the n": (lambda m, s, n: quantile(m, s, 0.99**n), "you raised 0.99 to the n-th power"),
    "normal, not lognormal": (lambda m, s, n: m * (1 + s * NormalDist().inv_cdf(0.99 ** (1 / n))),
                              r"not median·\(1 \+ σ·z\)"),
    "n × one call's p99": (lambda m, s, n: n * quantile(m, s, 0.99), "n × one call's p99 is far too slow"),
}


@pytest.mark.parametrize("mistake", list(WRONG_FANOUTS))
async def test_fanout_p99_names_each_wrong_formula(fast: float, mistake: str) -> None:
    answer, hint = WRONG_FANOUTS[mistake]

    def wrong(median: float, sigma: float, n: int) -> float:
        return answer(median, sigma, n)

    with pytest.raises(ExerciseFailed, match=hint):
        await lesson13.check_fanout_p99(wrong)


async def test_fanout_p99_shows_the_measurement_when_the_prediction_misses_it(fast: float) -> None:
    with pytest.raises(ExerciseFailed, match=r"for n = 1 you predicted a p99 of 0\.87 s; 150 requests measured"):
        await lesson13.check_fanout_p99(WRONG_FANOUTS["mean of one call"][0])


async def test_fanout_p99_checks_the_law_where_a_p99_of_150_requests_cannot_tell(fast: float) -> None:
    # One call's p99 at n = 20 is 0.68 × the request's: a p99 of 150 requests may not reject it,
    # the widths checked with the formula do.
    with pytest.raises(ExerciseFailed, match=r"(?s)(for n = 20 you predicted|order statistics give).*ONE call's p99"):
        await lesson13.check_fanout_p99(WRONG_FANOUTS["ignores n"][0])


async def test_fanout_p99_catches_a_fixed_percentile_that_fits_the_measurement_but_not_the_law(fast: float) -> None:
    def p99_9_of_one_call(median: float, sigma: float, n: int) -> float:
        return quantile(median, sigma, 0.999)  # close to the right answer at n = 20, wrong elsewhere

    with pytest.raises(ExerciseFailed, match=r"for n = 1 you predicted|order statistics give"):
        await lesson13.check_fanout_p99(p99_9_of_one_call)


async def test_fanout_p99_says_when_the_exercise_is_not_done() -> None:
    def stub(median: float, sigma: float, n: int) -> float:
        raise NotImplementedError

    with pytest.raises(ExerciseFailed, match="not done yet"):
        await lesson13.check_fanout_p99(stub)


@pytest.mark.parametrize(("value", "hint"), [("3.1", "return a number"), (None, "return a number"),
                                             (-1.0, "finite number of seconds > 0"),
                                             (math.inf, "finite number of seconds > 0")])
async def test_fanout_p99_wants_a_positive_number_of_seconds(value: object, hint: str) -> None:
    with pytest.raises(ExerciseFailed, match=hint):
        await lesson13.check_fanout_p99(lambda median, sigma, n: value)


async def test_fanout_p99_explains_an_error_and_a_call_instead_of_the_function() -> None:
    def broken(median: float, sigma: float, n: int) -> float:
        return median / 0

    with pytest.raises(ExerciseFailed, match=r"raised ZeroDivisionError"):
        await lesson13.check_fanout_p99(broken)
    with pytest.raises(ExerciseFailed, match="pass your function itself"):
        await lesson13.check_fanout_p99(fanout_p99(0.8, 0.4, 20))  # type: ignore[arg-type]


# -- capacity_for ------------------------------------------------------------------------------


def capacity_for(n: int, seconds: float, target: float) -> int:
    """The reference solution (as in the solutions notebook)."""
    waves = math.floor(target / seconds)
    if waves < 1:
        raise ValueError(f"target {target} s is shorter than one call ({seconds} s)")
    return math.ceil(math.ceil(0.95 * n) / waves)


async def test_capacity_for_passes_the_reference(fast: float, capsys: pytest.CaptureFixture[str]) -> None:
    await lesson13.check_capacity_for(capacity_for)
    out = capsys.readouterr().out
    assert "✅ capacity_for: 32 slots" in out and "with 31 slots" in out


async def test_capacity_for_passes_a_search_over_simulated_schedules(fast: float) -> None:
    def by_search(n: int, seconds: float, target: float) -> int:
        for c in range(1, n + 1):
            ends = sorted(math.ceil(k / c) * seconds for k in range(1, n + 1))
            if ends[math.ceil(0.95 * n) - 1] <= target:
                return c
        raise ValueError("no capacity meets the target")

    await lesson13.check_capacity_for(by_search)


def _with_check(formula: Callable[[int, float, float], int]) -> Callable[[int, float, float], int]:
    def answer(n: int, seconds: float, target: float) -> int:
        if target < seconds:
            raise ValueError("impossible")
        return formula(n, seconds, target)

    return answer


WRONG_CAPACITIES: dict[str, tuple[Callable[[int, float, float], int], str]] = {
    "rounded down": (lambda n, s, t: math.ceil(0.95 * n) // math.floor(t / s),
                     r"(?s)with capacity 31, 95 % of the 100 .*\(measured\).*rounded the number of slots down"),
    "all documents": (lambda n, s, t: math.ceil(n / math.floor(t / s)),
                      r"(?s)capacity 34 meets the target, but so does 33.*ALL n documents"),
    "fractional waves": (lambda n, s, t: math.ceil(math.ceil(0.95 * n) / (t / s)), "a fraction of waves"),
    "waves rounded up": (lambda n, s, t: math.ceil(math.ceil(0.95 * n) / math.ceil(t / s)),
                         "rounded the number of waves UP"),
    "0.95 n rounded down": (lambda n, s, t: math.ceil(math.floor(0.95 * n) / math.floor(t / s)),
                            r"(?s)right for \(100, 1.0, 3.9\), but for n=7.*rounded 0.95·n down"),
    "one too many": (lambda n, s, t: capacity_for(n, s, t) + 1, "one slot too many"),
    "one too few": (lambda n, s, t: max(capacity_for(n, s, t) - 1, 1), "one slot too few"),
}


@pytest.mark.parametrize("mistake", list(WRONG_CAPACITIES))
async def test_capacity_for_names_each_wrong_formula(fast: float, mistake: str) -> None:
    formula, hint = WRONG_CAPACITIES[mistake]
    with pytest.raises(ExerciseFailed, match=hint):
        await lesson13.check_capacity_for(_with_check(formula))


async def test_capacity_for_wants_a_value_error_for_an_impossible_target(fast: float) -> None:
    def never_raises(n: int, seconds: float, target: float) -> int:
        return capacity_for(n, seconds, target) if target >= seconds else 10**6

    with pytest.raises(ExerciseFailed, match=r"returned 1000000, but a target of 0.8 s is shorter than one call"):
        await lesson13.check_capacity_for(never_raises)


@pytest.mark.parametrize(("value", "hint"), [(31.67, "whole number of slots"), (True, "whole number of slots"),
                                             (0, "at least 1 slot"), (5000, "more slots than documents")])
async def test_capacity_for_wants_a_sensible_whole_number(value: object, hint: str) -> None:
    with pytest.raises(ExerciseFailed, match=hint):
        await lesson13.check_capacity_for(lambda n, seconds, target: value)


async def test_capacity_for_says_when_the_exercise_is_not_done() -> None:
    def stub(n: int, seconds: float, target: float) -> int:
        raise NotImplementedError

    with pytest.raises(ExerciseFailed, match="not done yet"):
        await lesson13.check_capacity_for(stub)
