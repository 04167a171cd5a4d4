"""The shared checker machinery: attempts, leaks, concurrency and limit checks."""

from __future__ import annotations

import asyncio

import pytest

from asynclab import LLM
from asynclab.checks import (
    ExerciseFailed,
    attempt,
    expect_concurrent,
    expect_max_concurrency,
    expect_no_leaks,
)


async def test_an_unfinished_exercise_says_so(fast: float) -> None:
    async def stub() -> None:
        raise NotImplementedError

    with pytest.raises(ExerciseFailed, match="not done yet: replace `raise NotImplementedError`"):
        await attempt(stub)


async def test_a_plain_function_is_refused_with_a_hint() -> None:
    def not_async() -> int:
        return 1

    with pytest.raises(ExerciseFailed, match="must be an `async def` function"):
        await attempt(not_async)


async def test_an_error_in_the_answer_is_reported_by_name(fast: float) -> None:
    async def broken() -> None:
        raise KeyError("doc-7")

    with pytest.raises(ExerciseFailed, match="your function raised KeyError: 'doc-7'"):
        await attempt(broken)


async def test_a_stuck_answer_times_out_with_a_hint(fast: float) -> None:
    async def stuck() -> None:
        await asyncio.Event().wait()

    with pytest.raises(ExerciseFailed, match="still running after 2 simulated seconds"):
        await attempt(stuck, timeout=2)


async def test_leaked_tasks_are_cancelled_and_reported(fast: float) -> None:
    llm = LLM(latency=1.0)

    async def leaky() -> None:
        asyncio.create_task(llm.complete("fire and forget"))  # noqa: RUF006 - the leak under test
        await asyncio.sleep(0)

    result = await attempt(leaky)
    assert len(result.leaked) == 1 and result.leaked[0].cancelled()
    with pytest.raises(ExerciseFailed, match=r"returned while 1 task\(s\) it started were still running"):
        expect_no_leaks(result)


async def test_sequential_calls_fail_the_concurrency_check_with_the_sum(fast: float) -> None:
    llm = LLM(latency=0.5)

    async def sequential() -> None:
        for i in range(3):
            await llm.complete(f"q{i}")

    async def concurrent() -> None:
        await asyncio.gather(*(llm.complete(f"q{i}") for i in range(3)))

    with pytest.raises(ExerciseFailed, match=r"your 3 calls ran one after another: 1\.\d\d s, the sum \(1.50 s\)"):
        expect_concurrent(await attempt(sequential), calls=3, longest=0.5, total=1.5)
    expect_concurrent(await attempt(concurrent), calls=3, longest=0.5, total=1.5)


async def test_a_broken_limit_is_caught(fast: float) -> None:
    llm = LLM(latency=0.2)
    limit = asyncio.Semaphore(2)

    async def unlimited() -> None:
        await asyncio.gather(*(llm.complete(f"q{i}") for i in range(5)))

    async def limited() -> None:
        async def one(i: int) -> str:
            async with limit:
                return await llm.complete(f"q{i}")

        await asyncio.gather(*(one(i) for i in range(5)))

    with pytest.raises(ExerciseFailed, match="5 calls were in flight at once, but the limit is 2"):
        expect_max_concurrency(await attempt(unlimited), 2)
    expect_max_concurrency(await attempt(limited), 2)
