"""asynclab.pipeline: a Step takes its time and is traced; run_pipeline flows, bounds, reports and ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from asynclab import LLM, Step, about, now, run_pipeline, sleep, trace
from asynclab.pipeline import stage_name


def shout(text: str) -> str:
    return text.upper()


def refuse_empty(text: str) -> str:
    if not text:
        raise ValueError("no text")
    return text


async def test_a_step_returns_its_function_result_after_its_latency_as_a_traced_call(fast: float) -> None:
    step = Step(shout, latency=0.5)
    with trace() as t:
        assert await step("hello") == "HELLO"
    # 10 % on top of about()'s timer slack: one timer wake-up on a shared machine.
    assert about(t.elapsed, 0.5, rel=0.1), t.elapsed
    [span] = t.spans
    assert (span.name, span.key, span.outcome) == ("shout.run", "hello", "ok")


async def test_a_step_raises_its_function_error_at_once_and_the_span_says_so(fast: float) -> None:
    step = Step(refuse_empty, name="clean", latency=0.5)
    with trace() as t, pytest.raises(ValueError, match="no text"):
        await step("")
    assert t.elapsed < 0.1 and t.spans[0].outcome == "ValueError" and t.spans[0].key == "''"


def test_a_step_refuses_an_async_function_or_something_not_callable() -> None:
    async def already_async(text: str) -> str:
        return text

    with pytest.raises(TypeError, match=r"must be a plain \(synchronous\) function"):
        Step(already_async)
    with pytest.raises(TypeError, match="function must be a function of one value, got str"):
        Step("shout")  # type: ignore[arg-type]
    assert Step(lambda text: text).name == "step" and Step(shout, name="loud").name == "loud"


def test_stages_are_named_by_their_service_or_function() -> None:
    async def summarize(text: str) -> str:
        return text

    assert stage_name(Step(shout, name="clean")) == "clean" and stage_name(summarize) == "summarize"


async def test_run_pipeline_passes_every_item_through_every_stage_in_input_order(fast: float) -> None:
    async def exclaim(text: str) -> str:
        await sleep(0.05)
        return text + "!"

    outcomes = await run_pipeline(["a", "b", "c", "d"], [Step(shout, latency=0.1), exclaim], workers=[2, 3])
    assert [o.value for o in outcomes] == ["A!", "B!", "C!", "D!"]
    assert [o.index for o in outcomes] == [0, 1, 2, 3] and all(o.ok and o.stage is None for o in outcomes)


async def test_the_slowest_stage_sets_the_throughput(fast: float) -> None:
    fast_step, slow_step = Step(shout, name="fast", latency=0.05), Step(shout, name="slow", latency=0.4)
    items = [f"item {i}" for i in range(21)]
    with trace() as t:
        outcomes = await run_pipeline(items, [fast_step, slow_step], workers=[1, 4])
    done = sorted(o.left for o in outcomes)
    throughput = (len(done) - 1) / (done[-1] - done[0])
    # min(1 / 0.05, 4 / 0.4) = 10 items/s. 10 %: the rate is read between two timer wake-ups.
    assert about(throughput, 10.0, rel=0.1), throughput
    assert t.max_concurrency() <= 1 + 4


async def test_a_bounded_first_queue_reads_the_source_only_as_fast_as_the_pipeline_works(fast: float) -> None:
    taken: list[float] = []

    async def source() -> AsyncIterator[str]:
        for i in range(12):
            taken.append(now())
            yield f"item {i}"

    start = now()
    outcomes = await run_pipeline(source(), [Step(shout, latency=0.2)], workers=1, maxsize=2)
    assert len(outcomes) == 12
    # Item 6 can be read only when the worker has taken item 3 (2 wait in the queue, 1 in the
    # producer's hand): after 3 calls of 0.2 s. Unbounded, all 12 would be read at once.
    assert taken[6] - start >= 3 * 0.2 * 0.9, taken


async def test_an_error_in_one_item_is_reported_and_the_others_flow(fast: float) -> None:
    llm = LLM(latency=0.1)

    async def summarize(text: str) -> str:
        return await llm.complete(text, model="summarizer")

    before = asyncio.all_tasks()
    outcomes = await run_pipeline(["Good text.", "", "More text."], [Step(refuse_empty, name="clean", latency=0.05),
                                                                     summarize], workers=[1, 2], maxsize=1)
    assert [o.ok for o in outcomes] == [True, False, True]
    failed = outcomes[1]
    assert failed.stage == "clean" and isinstance(failed.error, ValueError) and failed.value is None
    assert outcomes[2].value == "More text." and failed.latency >= 0
    assert asyncio.all_tasks() == before  # every worker took its sentinel and stopped


async def test_cancelling_run_pipeline_stops_every_worker(fast: float) -> None:
    before = asyncio.all_tasks()
    task = asyncio.create_task(run_pipeline(range(100), [Step(repr, latency=0.5)], workers=3, maxsize=2))
    await sleep(0.6)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert asyncio.all_tasks() == before


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"stages": []}, ValueError, "stages must hold at least one async function"),
        ({"stages": [shout]}, TypeError, r"stages\[0\] must be an async function of one value"),
        ({"workers": [1, 2]}, ValueError, r"one count per stage \(1\), got 2"),
        ({"workers": 0}, ValueError, "workers must be ints >= 1, got 0"),
        ({"maxsize": -1}, ValueError, r"maxsize must be an int >= 0 \(0: unbounded queues\), got -1"),
        ({"items": "abc"}, TypeError, "items must be a list .or any iterable. or an async iterable"),
    ],
)
async def test_run_pipeline_refuses_bad_arguments_naming_them(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    arguments: dict[str, object] = {"items": ["a"], "stages": [Step(shout, latency=0)], "workers": 1, "maxsize": 0}
    arguments.update(kwargs)
    with pytest.raises(error, match=message):
        await run_pipeline(**arguments)  # type: ignore[arg-type]
