"""The notebook 14 checkers pass the reference solutions and fail wrong ones with their hints."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from asynclab.checks import ExerciseFailed, lesson14
from asynclab.inference import ContinuousBatcher, Request, simulate

# -- the dynamic batcher's policy --------------------------------------------------------------


def decide(now: float, arrivals: Sequence[float], max_batch_size: int, max_queue_delay: float) -> int:
    """The reference solution (as in the solutions notebook)."""
    if len(arrivals) >= max_batch_size:
        return max_batch_size
    if now >= arrivals[0] + max_queue_delay:
        return len(arrivals)
    return 0


async def test_the_reference_policy_passes(capsys: pytest.CaptureFixture[str]) -> None:
    await lesson14.check_dynamic_policy(decide)
    assert "✅ decide: a lone request waits 0.1 s, a burst of 20 goes as [8, 8, 4]" in capsys.readouterr().out


async def test_a_policy_with_the_waiting_time_in_a_variable_passes_too() -> None:
    def waited_long_enough(now: float, arrivals: Sequence[float], max_batch_size: int, max_queue_delay: float) -> int:
        oldest_waited = now - min(arrivals)
        full = len(arrivals) >= max_batch_size
        return min(len(arrivals), max_batch_size) if full or oldest_waited >= max_queue_delay else 0

    await lesson14.check_dynamic_policy(waited_long_enough)


Policy = Callable[[float, Sequence[float], int, float], object]

WRONG_POLICIES: dict[str, tuple[Policy, str]] = {
    "sends at once": (lambda now, a, size, delay: min(len(a), size), "at once, without waiting"),
    "only full batches": (lambda now, a, size, delay: size if len(a) >= size else 0, "only sends full batches"),
    "ignores the limit": (
        lambda now, a, size, delay: len(a) if len(a) >= size or now >= a[0] + delay else 0,
        "that breaks the limit, max_batch_size=8",
    ),
    "times from the newest": (
        lambda now, a, size, delay: size if len(a) >= size else len(a) if now >= a[-1] + delay else 0,
        "Time the delay from the OLDEST",
    ),
    "returns a bool": (lambda now, a, size, delay: len(a) >= size or now >= a[0] + delay, "return an int"),
    "one at a time": (lambda now, a, size, delay: 1 if now >= a[0] + delay else 0, "your first batch had 1"),
    "sends too many": (lambda now, a, size, delay: len(a) + 1, "it can send 0 to 1"),
}


@pytest.mark.parametrize("mistake", list(WRONG_POLICIES))
async def test_a_wrong_policy_fails_with_its_own_hint(mistake: str) -> None:
    policy, hint = WRONG_POLICIES[mistake]
    with pytest.raises(ExerciseFailed, match=hint):
        await lesson14.check_dynamic_policy(policy)  # type: ignore[arg-type]


async def test_an_async_policy_and_an_unfinished_one_get_their_hints() -> None:
    async def in_a_hurry(now: float, arrivals: Sequence[float], max_batch_size: int, max_queue_delay: float) -> int:
        return 0

    def unfinished(now: float, arrivals: Sequence[float], max_batch_size: int, max_queue_delay: float) -> int:
        raise NotImplementedError

    with pytest.raises(ExerciseFailed, match="is `async def`"):
        await lesson14.check_dynamic_policy(in_a_hurry)  # type: ignore[arg-type]
    with pytest.raises(ExerciseFailed, match="not done yet"):
        await lesson14.check_dynamic_policy(unfinished)


# -- picking max_num_seqs ----------------------------------------------------------------------


def smallest(requests: list[Request], target: float) -> int:
    """The reference solution (as in the solutions notebook)."""
    for size in range(1, 33):
        if simulate(requests, ContinuousBatcher(max_num_seqs=size)).ttft(0.99) <= target:
            return size
    raise ValueError(f"no max_num_seqs meets a p99 TTFT of {target} s")


async def test_the_smallest_size_that_meets_the_target_passes(capsys: pytest.CaptureFixture[str]) -> None:
    await lesson14.check_max_num_seqs(smallest)
    out = capsys.readouterr().out
    assert "✅ smallest: 21 for a p99 TTFT ≤ 1.0 s" in out and "an impossible target raises ValueError" in out


def largest(requests: list[Request], target: float) -> int:
    for size in range(32, 0, -1):
        if simulate(requests, ContinuousBatcher(max_num_seqs=size)).ttft(0.99) <= target:
            return size
    raise ValueError("none")


def by_the_median(requests: list[Request], target: float) -> int:
    for size in range(1, 33):
        if simulate(requests, ContinuousBatcher(max_num_seqs=size)).ttft(0.5) <= target:
            return size
    raise ValueError("none")


def never_gives_up(requests: list[Request], target: float) -> int:
    try:
        return smallest(requests, target)
    except ValueError:
        return 32


WRONG_PICKS: dict[str, tuple[Callable[[list[Request], float], object], str]] = {
    "the largest": (largest, "Return the SMALLEST"),
    "the median, not the p99": (by_the_median, "over the target"),
    "the impossible target": (never_gives_up, "raise ValueError when none meets the target"),
    "a float": (lambda requests, target: 21.0, "max_num_seqs is a whole number"),
    "out of range": (lambda requests, target: 64, "from 1 to the GPU's 32"),
}


@pytest.mark.parametrize("mistake", list(WRONG_PICKS))
async def test_a_wrong_pick_fails_with_its_own_hint(mistake: str) -> None:
    pick, hint = WRONG_PICKS[mistake]
    with pytest.raises(ExerciseFailed, match=hint):
        await lesson14.check_max_num_seqs(pick)  # type: ignore[arg-type]
