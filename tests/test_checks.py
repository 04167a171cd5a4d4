"""The shared checker machinery: attempts, leaks, concurrency and limit checks."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import logging
import sys
import time
import warnings
from typing import Any

import pytest

from asynclab import LLM, BlockingLLM, Faults, PgVectorStore, RedisStore, checks
from asynclab.checks import (
    ExerciseFailed,
    attempt,
    expect_concurrent,
    expect_max_concurrency,
    expect_no_leaks,
    fail,
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


# -- whose tasks: JupyterLab's Run All runs the kernel's own tasks on the same loop ----------


async def test_tasks_the_kernel_starts_during_an_attempt_are_never_touched(fast: float) -> None:
    """Issue 7: under Run All, ipykernel creates tasks while a check runs; they are not the learner's."""
    llm = LLM(latency=0.3)
    kernel_tasks: list[asyncio.Task[None]] = []
    stop = asyncio.Event()

    async def kernel() -> None:  # stands in for ipykernel's shell/IOPub handlers
        for _ in range(5):
            kernel_tasks.append(asyncio.create_task(stop.wait()))
            await asyncio.sleep(0.001)

    async def answer() -> list[str]:
        return list(await asyncio.gather(llm.complete("a"), llm.complete("b")))

    # The "kernel" runs in a context of its own, as ipykernel's tasks do.
    running_kernel = asyncio.get_running_loop().create_task(kernel(), context=contextvars.Context())
    result = await attempt(answer)
    await running_kernel
    assert result.leaked == [] and result.running_at_return == 0
    assert len(kernel_tasks) == 5 and not any(task.done() for task in kernel_tasks)
    stop.set()
    await asyncio.gather(*kernel_tasks)


async def test_a_task_started_by_the_learners_task_is_the_learners(fast: float) -> None:
    llm = LLM(latency=1.0)

    async def starts_a_starter() -> None:
        async def starter() -> None:
            asyncio.create_task(llm.complete("grandchild"))  # noqa: RUF006 - the leak under test
            await asyncio.sleep(0)

        await asyncio.create_task(starter())

    result = await attempt(starts_a_starter)
    assert [task.get_coro().__qualname__ for task in result.leaked] == ["LLM.complete"]  # type: ignore[union-attr]
    assert result.leaked[0].cancelled()


async def test_a_task_from_an_earlier_cell_still_running_is_left_alone(fast: float) -> None:
    earlier = asyncio.create_task(asyncio.sleep(10))  # like an `await` of a previous cell, still going

    async def answer() -> int:
        await asyncio.sleep(0.001)
        return 1

    result = await attempt(answer)
    assert result.result == 1 and not earlier.done()
    earlier.cancel()


async def test_a_task_factory_already_on_the_loop_is_kept_and_restored(fast: float) -> None:
    loop = asyncio.get_running_loop()
    made: list[str] = []

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        made.append(coro.__qualname__)
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(factory)
    try:
        async def answer() -> None:
            await asyncio.create_task(asyncio.sleep(0))

        await attempt(answer)
        assert loop.get_task_factory() is factory and "sleep" in made
    finally:
        loop.set_task_factory(None)


# -- calls from threads --------------------------------------------------------------------


async def test_calls_through_run_in_executor_land_in_the_attempts_trace(fast: float) -> None:
    llm = BlockingLLM(latency=0.4)

    async def answer() -> list[str]:
        loop = asyncio.get_running_loop()
        return list(await asyncio.gather(*(loop.run_in_executor(None, llm.complete, f"q{i}") for i in range(3))))

    result = await attempt(answer)
    assert len(result.trace.spans) == 3 and result.trace.max_concurrency() == 3


# -- a frozen loop is named first -----------------------------------------------------------


async def test_time_sleep_inside_async_def_gets_the_blocking_hint_not_a_timing_hint(fast: float) -> None:
    llm = LLM(latency=0.2)

    async def sleepy() -> list[str]:
        time.sleep(0.3)  # wall seconds, as a learner would write it
        return list(await asyncio.gather(llm.complete("a"), llm.complete("b")))

    with pytest.raises(ExerciseFailed, match=r"^the event loop was frozen for \d+\.\d\d s \(0\.[23]\d\d s of wall"):
        await attempt(sleepy)


async def test_a_blocking_client_inside_async_def_is_named_in_the_hint(fast: float) -> None:
    llm = BlockingLLM(latency=0.2)

    async def blocking() -> str:
        return llm.complete("hi")

    with pytest.raises(ExerciseFailed, match=r"a blocking call ran on it \(llm\.complete of a blocking client"):
        await attempt(blocking)


# -- errors, named -------------------------------------------------------------------------


async def test_an_error_inside_a_taskgroup_is_named_with_its_service(fast: float) -> None:
    broken = PgVectorStore(faults=Faults(error_rate=1.0))
    fine = RedisStore()

    async def answer() -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(broken.search("retries"))
            tg.create_task(fine.search("retries"))

    with pytest.raises(ExerciseFailed) as caught:
        await attempt(answer)
    assert "ExceptionGroup" not in caught.value.hint
    assert caught.value.hint.startswith(
        "your function raised 1 error(s) inside a TaskGroup: ServiceUnavailable from pgvector.search:")


async def test_a_checkers_own_hint_is_not_wrapped_as_an_error_of_the_learner(fast: float) -> None:
    async def step() -> None:
        fail("put a timeout on each store")

    with pytest.raises(ExerciseFailed, match=r"^put a timeout on each store$"):
        await attempt(step)


async def test_a_call_instead_of_the_function_is_refused_and_closed_without_a_warning(fast: float) -> None:
    async def answer() -> int:
        return 1

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "coroutine ... was never awaited" would be an error here
        with pytest.raises(ExerciseFailed, match=r"pass your function itself, e\.g\. check\(.*answer\), not a call"):
            await attempt(answer())  # type: ignore[arg-type]
        gc.collect()


async def test_a_failed_task_nobody_awaited_is_reported_and_never_printed(
    fast: float, caplog: pytest.LogCaptureFixture
) -> None:
    broken = LLM(latency=0.1, faults=Faults(error_rate=1.0))

    async def forgets() -> str:
        asyncio.create_task(broken.complete("lost"))  # noqa: RUF006 - the lost error under test
        await asyncio.sleep(0.01)  # 0.2 simulated s: the task has failed by now
        return "done"

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        with pytest.raises(ExerciseFailed, match=r"a task your function started failed with ServiceUnavailable from "
                                                 r"llm\.complete.*nothing awaited it"):
            await attempt(forgets)
        gc.collect()
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


async def test_gather_abandoned_on_a_timeout_prints_nothing_later(
    fast: float, caplog: pytest.LogCaptureFixture
) -> None:
    broken = LLM(latency=0.2, faults=Faults(error_rate=1.0))
    slow = LLM(latency=5.0)

    async def abandons() -> str:
        pending = asyncio.gather(broken.complete("a"), slow.complete("b"))
        await asyncio.wait([pending], timeout=0.02)  # 0.4 simulated s, then walks away
        return "partial"

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        with contextlib.suppress(ExerciseFailed):
            await attempt(abandons)
        gc.collect()
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


async def test_an_answer_that_swallows_cancellation_is_told_so(fast: float) -> None:
    async def stubborn() -> None:
        swallowed = False
        while True:
            try:
                await asyncio.sleep(0.5)
            except asyncio.CancelledError:
                if swallowed:  # the second request stops it, so the test leaves nothing behind
                    raise
                swallowed = True  # the mistake under test

    with pytest.raises(ExerciseFailed, match="ignored cancellation"):
        await attempt(stubborn, timeout=1)


# -- how a failed check looks in a notebook --------------------------------------------------


def test_a_failed_check_renders_as_the_exercise_and_the_hint() -> None:
    async def check_example() -> None:
        fail("your calls ran one after another")

    check_example.__module__ = "asynclab.checks.lesson99"
    try:
        asyncio.run(check_example())
    except ExerciseFailed as exc:
        lines = exc._render_traceback_()
    assert isinstance(ExerciseFailed("x"), AssertionError)
    assert lines == ["\x1b[1;31m❌ Not yet\x1b[0m", "your calls ran one after another"]


async def test_a_stall_while_the_thread_waited_for_a_cpu_is_not_blamed_on_the_answer(
    fast: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a loaded machine the loop's thread can wait 0.3 s for a CPU; that is not a blocking call."""
    readings = iter([0.0, 0.0])
    monkeypatch.setattr(checks, "_waited_for_cpu", lambda: next(readings, 0.35))  # 0.35 s in the run queue
    llm = LLM(latency=0.2)

    async def descheduled() -> list[str]:
        time.sleep(0.3)  # stands in for 0.3 s without a CPU
        return list(await asyncio.gather(llm.complete("a"), llm.complete("b")))

    result = await attempt(descheduled)
    assert result.froze == 0.0


def test_the_run_queue_wait_is_read_on_linux() -> None:
    waited = checks._waited_for_cpu()
    assert waited >= 0.0
    if sys.platform == "linux":
        assert waited > 0.0  # any thread that ever ran has waited a little for a CPU


# -- an answer that stops making progress (shared by lessons 10 and 12) --------------------------


async def test_awaiting_names_the_queue_operation_a_task_waits_in(fast: float) -> None:
    queue: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
    queue.put_nowait(0)
    empty: asyncio.Queue[int] = asyncio.Queue()

    async def producer() -> None:
        await put_one()

    async def put_one() -> None:
        await queue.put(1)  # full: waits

    async def worker() -> None:
        await empty.get()  # empty: waits

    tasks = [asyncio.create_task(producer()), asyncio.create_task(worker())]
    await asyncio.sleep(0)
    chains = [checks.awaiting(task) for task in tasks]
    assert [name.rsplit(".", 1)[-1] for name in chains[0][:2]] == ["producer", "put_one"]
    assert chains[0][-1] == "Queue.put" and chains[1][-1] == "Queue.get"
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_watch_progress_fails_a_stalled_answer_with_the_checkers_hint(fast: float) -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()

    async def deadlocked() -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(queue.get())  # nobody ever puts

    def stuck(tasks: list[asyncio.Task[Any]]) -> str:
        return "stuck in " + ", ".join(sorted({checks.awaiting(task)[-1] for task in tasks if not task.done()}))

    with pytest.raises(ExerciseFailed, match=r"^stuck in .*Queue\.get"):
        await attempt(checks.watch_progress, deadlocked, stuck=stuck, quiet=0.5, poll=0.05)


async def test_watch_progress_lets_a_slow_answer_that_keeps_moving_finish(fast: float) -> None:
    llm = LLM(latency=0.3)

    async def slow() -> int:
        for i in range(4):  # 1.2 s in all, longer than quiet=0.5, but a call is always running
            await llm.complete(f"q{i}")
        return 4

    result = await attempt(checks.watch_progress, slow, stuck=lambda tasks: "stuck", quiet=0.5, poll=0.05)
    assert result.result == 4
