"""The shared service mechanics: latency, Σ vs max, capacity, determinism, blocking."""

from __future__ import annotations

import asyncio
import gc
import random
import threading

import pytest

from asynclab import (
    LLM,
    BlockingLLM,
    Faults,
    Fixed,
    Jittered,
    MetadataStore,
    NotFound,
    Service,
    Trace,
    at_speed,
    now,
    stopwatch,
    trace,
)
from asynclab.client import ServiceClient
from asynclab.server import create_app
from asynclab.serving import BackgroundServer

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


# -- capacity per event loop ------------------------------------------------------------------


async def test_capacity_holds_in_each_event_loop_that_calls_the_service(fast: float) -> None:
    # One service, two loops at once: this test's loop and a thread running its own. Before
    # capacity was per loop, the second loop to queue got "bound to a different event loop".
    meta = MetadataStore(latency=0.3, capacity=1)
    queued = threading.Event()
    theirs = Trace()

    def other_loop() -> None:
        async def calls() -> None:
            with trace() as t:
                tasks = [asyncio.create_task(meta.get(f"doc-00{i}")) for i in (1, 2, 3)]
                await asyncio.sleep(0)  # all three have arrived: one served, two queued
                queued.set()
                await asyncio.gather(*tasks)
            theirs.spans.extend(t.spans)

        asyncio.run(calls())

    thread = threading.Thread(target=other_loop)
    thread.start()
    try:
        assert await asyncio.to_thread(queued.wait, 5)
        with trace() as mine:
            await asyncio.gather(*(meta.get(f"doc-00{i}") for i in (4, 5, 6)))
    finally:
        await asyncio.to_thread(thread.join, 5)
    assert [s.outcome for s in theirs.spans] == ["ok"] * 3
    # In each loop the limit holds: one call at a time, three waves of 0.3 s...
    assert mine.max_concurrency() == 1 and theirs.max_concurrency() == 1
    assert mine.elapsed == pytest.approx(0.9, rel=REL, abs=2 * ABS_PER_AWAIT)
    # ...and the loops do not wait for each other: two calls in service at once, one per loop.
    both = Trace()
    both.spans = theirs.spans + mine.spans
    assert both.max_concurrency() == 2
    assert meta.in_flight == 0


async def test_a_service_with_capacity_serves_the_kernel_and_a_background_server_at_once(fast: float) -> None:
    meta = MetadataStore(latency=0.3, capacity=1)
    async with BackgroundServer(create_app(metadata=meta)) as server, ServiceClient(base_url=server.url) as client:
        await client.metadata("doc-009")  # the connection is open before the clock starts
        with stopwatch() as sw, trace() as t:
            results = await asyncio.gather(
                *(meta.get(f"doc-00{i}") for i in (1, 2, 3)),  # in this loop
                *(client.metadata(f"doc-00{i}") for i in (4, 5, 6)),  # in the server's loop
            )
    assert [r["id"] for r in results] == [f"doc-00{i}" for i in range(1, 7)]
    direct = Trace()
    direct.spans = t.by_service("metadata")  # the trace also holds the client's HTTP spans
    assert len(direct.spans) == 3 and direct.max_concurrency() == 1  # this loop: one at a time
    # Each loop serves its three calls in three waves of 0.3 s, both loops at once: 0.9 s, not
    # the 1.8 s of one shared slot. The allowance is the HTTP round trips (a few ms of wall time).
    assert sw.elapsed == pytest.approx(0.9, abs=0.4)


def test_blocking_calls_share_one_set_of_slots_across_threads() -> None:
    llm = BlockingLLM(latency=0.3, capacity=2)

    async def four_threads() -> Trace:
        # Start the pool's threads first: a few ms of wall time that must not count.
        await asyncio.gather(*(asyncio.to_thread(int) for _ in range(4)))
        with trace() as t:
            await asyncio.gather(*(asyncio.to_thread(llm.complete, f"q{i}") for i in range(4)))
        return t

    with at_speed(10):
        t = asyncio.run(four_threads())
    assert t.max_concurrency() == 2
    # Two waves of 0.3 s; 0.3 would be no limit, 1.2 one slot. The allowance is 25 ms of wall
    # time at speed 10 for four threads waking up on a loaded 2-core machine.
    assert t.elapsed == pytest.approx(0.6, abs=0.25)


# -- the wait itself --------------------------------------------------------------------------


# A plain call (no capacity, limit or fault plan) is a future the loop resolves at its deadline;
# a call with capacity goes through a coroutine that waits for a slot. Both must behave alike.
PATHS = pytest.mark.parametrize("capacity", [None, 1], ids=["plain", "with-capacity"])


@PATHS
async def test_a_call_cancelled_while_it_waits_ends_at_once_and_frees_its_slot(
    fast: float, capacity: int | None
) -> None:
    meta = MetadataStore(latency=5.0, capacity=capacity)
    with trace() as t:
        call = asyncio.create_task(meta.get("doc-001"))
        await asyncio.sleep(0.1 / fast)
        cancelled_at = now()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
    span = t.spans[0]
    assert span.outcome == "cancelled" and span.end == pytest.approx(cancelled_at, abs=ABS_PER_AWAIT)
    assert meta.in_flight == 0
    meta.latency = Fixed(0.05)
    with stopwatch() as sw:
        await meta.get("doc-002")  # would wait for ever if the cancelled call had kept its slot
    assert sw.elapsed == pytest.approx(0.05, abs=ABS_PER_AWAIT)


@PATHS
async def test_a_timeout_cancels_the_call_it_cuts_short(fast: float, capacity: int | None) -> None:
    meta = MetadataStore(latency=2.0, capacity=capacity)
    with trace() as t, pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3 / fast):
            await meta.get("doc-001")
    assert t.spans[0].outcome == "cancelled"
    assert t.spans[0].duration == pytest.approx(0.3, abs=ABS_PER_AWAIT)
    assert meta.in_flight == 0


@PATHS
async def test_a_bug_in_a_services_own_code_fails_the_call_at_once(fast: float, capacity: int | None) -> None:
    class Buggy(Service):
        async def lookup(self, key: str) -> int:
            return await self._serve("lookup", key, int, key)  # int("x") raises ValueError

    buggy = Buggy(latency=1.0, capacity=capacity)
    with trace() as t, stopwatch() as sw, pytest.raises(ValueError, match="invalid literal for int"):
        await buggy.lookup("x")
    assert sw.elapsed < 0.5  # not a service's answer: no latency
    assert t.spans[0].outcome == "ValueError" and buggy.in_flight == 0
    assert await buggy.lookup("42") == 42


@PATHS
async def test_a_not_found_takes_its_latency_too(fast: float, capacity: int | None) -> None:
    meta = MetadataStore(latency=0.4, capacity=capacity)
    with trace() as t, stopwatch() as sw, pytest.raises(NotFound, match="no document 'doc-999'"):
        await meta.get("doc-999")
    assert sw.elapsed == pytest.approx(0.4, rel=REL, abs=ABS_PER_AWAIT)
    with trace() as again:
        await meta.get("doc-001")
        with pytest.raises(NotFound):
            await meta.get("doc-999")
    assert t.spans[0].outcome == "NotFound" and meta.in_flight == 0
    assert [s.attempt for s in again.spans] == [1, 2]  # asking again after a failure is attempt 2

