"""The shared service mechanics: latency, Σ vs max, capacity, determinism, blocking."""

from __future__ import annotations

import asyncio
import gc
import random

import pytest

from asynclab import LLM, BlockingLLM, Faults, Jittered, MetadataStore, Service, at_speed, stopwatch, trace

# Timing tolerance: 5 % relative (the bar) plus an absolute allowance for timer
# lateness. asyncio wakes a timer ~0.1-2 ms late on a busy 2-core machine; at speed 50 that is
# up to 0.1 simulated seconds for one await, and a sequential run pays it once per call.
REL = 0.05
ABS_PER_AWAIT = 0.1


@pytest.mark.parametrize("n", [3, 10, 50])
async def test_sequential_calls_take_the_sum_and_concurrent_calls_the_longest(n: int) -> None:
    with at_speed(50):
        await _sum_then_max(n)


async def _sum_then_max(n: int) -> None:
    gc.collect()  # no generation-2 pause inside the timed blocks
    llm = LLM(latency=Jittered(0.5, sigma=0.4, seed=n))
    prompts = [f"question {i}" for i in range(n)]
    durations = [llm.latency.seconds(f"assistant:{p}") for p in prompts]

    with stopwatch() as sequential:
        for p in prompts:
            await llm.complete(p)
    with stopwatch() as concurrent:
        await asyncio.gather(*(llm.complete(p) for p in prompts))

    # 5 % of the prediction *plus* (pytest.approx takes the larger of the two, not the sum):
    # sequentially, each await carries up to ~1 ms of timer jitter after TIMER_LEAD (0.05
    # simulated s at speed 50) and there are n of them; concurrently, the loop starts n tasks
    # one after another, ~60 µs of wall time each on a loaded 2-core machine (0.003 s each).
    assert abs(sequential.elapsed - sum(durations)) <= REL * sum(durations) + 0.05 * n
    assert abs(concurrent.elapsed - max(durations)) <= REL * max(durations) + ABS_PER_AWAIT + 0.003 * n


async def test_calls_beyond_capacity_queue_inside_the_service(fast: float) -> None:
    meta = MetadataStore(latency=0.3, capacity=2)
    with trace() as t:
        await asyncio.gather(*(meta.get("doc-001") for _ in range(6)))
    # 6 calls through 2 slots: three waves of 0.3 s.
    assert t.elapsed == pytest.approx(0.9, rel=REL, abs=2 * ABS_PER_AWAIT)
    assert t.max_concurrency() == 2
    waits = sorted(round(s.wait, 1) for s in t.spans)
    assert waits == pytest.approx([0, 0, 0.3, 0.3, 0.6, 0.6], abs=ABS_PER_AWAIT)
    assert meta.in_flight == 0
    assert "in_flight=0/2" in repr(meta)


async def test_a_call_cancelled_while_queued_frees_nothing_it_did_not_take(fast: float) -> None:
    meta = MetadataStore(latency=0.3, capacity=1)
    with trace() as t:
        first = asyncio.create_task(meta.get("doc-001"))
        second = asyncio.create_task(meta.get("doc-002"))
        await asyncio.sleep(0.05 / fast)
        second.cancel()
        await first
        with pytest.raises(asyncio.CancelledError):
            await second
        await meta.get("doc-003")  # the slot is free again
    assert [s.outcome for s in t.spans] == ["ok", "cancelled", "ok"]
    assert meta.in_flight == 0


async def test_results_and_latencies_do_not_depend_on_how_tasks_interleave() -> None:
    async def run(order: list[int]) -> dict[int, tuple[str, float]]:
        llm = LLM(latency=Jittered(0.3, sigma=0.5, seed=3), faults=Faults(error_rate=0.2, seed=5))
        with trace() as t:
            answers = await asyncio.gather(
                *(llm.complete(f"Summarize item {i}: async calls overlap their waiting.", model="summarizer")
                  for i in order),
                return_exceptions=True,
            )
        latency = {s.key: s.duration for s in t.spans}
        return {
            i: (repr(a), latency[f"summarizer:Summarize item {i}: async calls overlap their waiting."])
            for i, a in zip(order, answers, strict=True)
        }

    order = list(range(12))
    shuffled = order[:]
    random.Random(1).shuffle(shuffled)
    # Speed 10, not 50: some jittered calls last ~0.08 simulated s, under 2 ms of wall time at
    # speed 50, where the loop's 1 ms timer granularity and the first (uncached) summaries'
    # CPU time would decide the measured duration. At speed 10, 0.1 s of allowance is 10 ms.
    with at_speed(10):
        a, b = await run(order), await run(shuffled)
    assert {i: r for i, (r, _) in a.items()} == {i: r for i, (r, _) in b.items()}
    for i in order:
        assert a[i][1] == pytest.approx(b[i][1], rel=REL, abs=ABS_PER_AWAIT)


async def test_a_blocking_client_freezes_the_event_loop() -> None:
    # Speed 10, not 50: starting the thread pool costs a few ms of wall time, which must not
    # read as simulated seconds. At speed 10 the 0.1 s allowance is 10 ms of wall time.
    slow = at_speed(10)
    slow.__enter__()
    try:
        await _blocking_vs_to_thread()
    finally:
        slow.__exit__(None, None, None)


async def _blocking_vs_to_thread() -> None:
    blocking = BlockingLLM(latency=0.5)

    async def blocking_call(p: str) -> str:
        return blocking.complete(p)  # no await: the thread sleeps, the loop stops

    with trace() as t:
        await asyncio.gather(*(blocking_call(f"q{i}") for i in range(3)))
    assert t.elapsed == pytest.approx(1.5, rel=REL, abs=3 * ABS_PER_AWAIT)
    assert t.max_concurrency() == 1

    with trace() as t:
        await asyncio.gather(*(asyncio.to_thread(blocking.complete, f"q{i}") for i in range(3)))
    assert t.elapsed == pytest.approx(0.5, rel=REL, abs=2 * ABS_PER_AWAIT)
    assert t.max_concurrency() == 3


def test_a_blocking_hang_ends_with_an_error_after_a_long_block() -> None:
    from asynclab import ServiceUnavailable

    with at_speed(3000):
        blocking = BlockingLLM(latency=0.1, faults=Faults(hang_rate=1.0))
        with pytest.raises(ServiceUnavailable, match="hung for 30 s"):
            blocking.complete("hello")


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: Service(latency=-0.5), ValueError, "latency must be a finite number of simulated seconds >= 0"),
        (lambda: Service(latency="fast"), TypeError, "latency must be a number of simulated seconds or a latency"),
        (lambda: Service(capacity=0), ValueError, "capacity must be an int >= 1, got 0"),
        (lambda: Service(capacity=2.5), TypeError, "capacity must be an int >= 1, got float"),
        (lambda: Service(name=""), ValueError, "name must be a non-empty str"),
    ],
)
def test_bad_service_settings_are_refused(build: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        build()  # type: ignore[operator]


def test_repr_shows_latency_load_and_faults() -> None:
    llm = LLM(capacity=4, faults=Faults(error_rate=0.1))
    text = repr(llm)
    for part in ("LLM", "'llm'", "Fixed(1.2)", "in_flight=0/4", "calls=0", "error_rate=0.1"):
        assert part in text
