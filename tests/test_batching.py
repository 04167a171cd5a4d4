"""MicroBatcher: batches that are full or waited max_wait, each caller its own result, nothing left behind."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from asynclab import Embeddings, MicroBatcher, sleep, stopwatch
from asynclab.batching import BatchRecord
from asynclab.clock import WALL_SLACK, get_speed
from asynclab.text import embed


class Recorder:
    """A batch handler that takes `seconds` per batch and remembers every batch it got."""

    def __init__(self, seconds: float = 0.2, fail_on: str | None = None) -> None:
        self.seconds = seconds
        self.fail_on = fail_on
        self.batches: list[list[str]] = []
        self.running = 0
        self.peak = 0

    async def __call__(self, items: list[str]) -> list[str]:
        self.batches.append(list(items))
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await sleep(self.seconds)
            if self.fail_on in items:
                raise ValueError(f"the model refused {self.fail_on!r}")
            return [item.upper() for item in items]
        finally:
            self.running -= 1


def slack() -> float:
    """Simulated seconds a batch may go out late: twice the timer slack at this speed (as within())."""
    return 2 * WALL_SLACK * get_speed()


async def test_a_burst_goes_out_in_full_batches_at_once_and_the_rest_after_max_wait(fast: float) -> None:
    handler = Recorder()
    async with MicroBatcher(handler, max_batch=4, max_wait=0.5) as batcher:
        with stopwatch() as sw:
            answers = await asyncio.gather(*(batcher.submit(f"t{i}") for i in range(10)))
    assert answers == [f"T{i}" for i in range(10)]  # each caller its own result, in its own place
    assert [len(batch) for batch in handler.batches] == [4, 4, 2]
    full, rest = batcher.batches[:2], batcher.batches[2]
    # Full batches go at once, not after max_wait (half of it tells the two apart on any machine)...
    assert all(record.oldest_wait < 0.25 for record in full)
    # ...the partial one when its oldest has waited 0.5 s; the whole ends one batch (0.2 s) later.
    assert abs(rest.oldest_wait - 0.5) <= 0.05 + slack()
    assert abs(sw.elapsed - (0.5 + 0.2)) <= 0.07 + slack()


async def test_max_wait_runs_from_the_oldest_request_not_the_latest(fast: float) -> None:
    handler = Recorder(seconds=0.1)

    async def arrive(batcher: MicroBatcher[str, str], i: int) -> str:
        await sleep(0.2 * i)  # every 0.2 s: a clock restarted by each arrival would never fire
        return await batcher.submit(f"t{i}")

    async with MicroBatcher(handler, max_batch=100, max_wait=0.5) as batcher:
        await asyncio.gather(*(arrive(batcher, i) for i in range(8)))
    assert all(record.oldest_wait <= 0.5 * 1.1 + slack() for record in batcher.batches)
    # 0, 0.2, 0.4 | 0.6, 0.8, 1.0 | 1.2, 1.4 on time; a caller woken late can move to the next batch,
    # or let one more in, but a clock restarted by each arrival would send all 8 together.
    sizes = [len(batch) for batch in handler.batches]
    assert sum(sizes) == 8 and len(sizes) >= 3 and max(sizes) <= 4, sizes


async def test_each_caller_gets_its_own_vector_from_embed_batch(fast: float) -> None:
    emb = Embeddings()
    texts = [f"chunk number {i} about batching" for i in range(12)]
    async with MicroBatcher(emb.embed_batch, max_batch=5, max_wait=0.1) as batcher:
        vectors = await asyncio.gather(*(batcher.submit(text) for text in texts))
    assert all((vector == embed(text)).all() for vector, text in zip(vectors, texts, strict=True))
    assert emb.calls == 3  # 5 + 5 + 2 texts: three requests instead of twelve


async def test_a_failed_batch_fails_its_callers_only(fast: float) -> None:
    handler = Recorder(fail_on="bad")
    async with MicroBatcher(handler, max_batch=2, max_wait=0.1) as batcher:
        results = await asyncio.gather(*(batcher.submit(t) for t in ["a", "bad", "c", "d"]),
                                       return_exceptions=True)
    assert isinstance(results[0], ValueError) and isinstance(results[1], ValueError)  # the batch [a, bad]
    assert results[2:] == ["C", "D"]  # the next batch was not affected, and the batcher went on


async def test_a_caller_that_gives_up_is_left_out_of_the_batch(fast: float) -> None:
    handler = Recorder()
    async with MicroBatcher(handler, max_batch=10, max_wait=0.3) as batcher:
        impatient = asyncio.create_task(batcher.submit("gone"))
        patient = asyncio.create_task(batcher.submit("stays"))
        await sleep(0.1)
        impatient.cancel()
        assert await patient == "STAYS"
    assert handler.batches == [["stays"]]
    assert impatient.cancelled()


async def test_max_concurrent_caps_the_batches_in_flight_and_lets_the_next_one_grow(fast: float) -> None:
    handler = Recorder(seconds=0.5)

    async def arrive(batcher: MicroBatcher[str, str], i: int) -> str:
        await sleep(0.05 * i)
        return await batcher.submit(f"t{i}")

    async with MicroBatcher(handler, max_batch=100, max_wait=0, max_concurrent=1) as batcher:
        await asyncio.gather(*(arrive(batcher, i) for i in range(20)))
    assert handler.peak == 1
    sizes = [len(batch) for batch in handler.batches]
    # The first goes alone (max_wait 0, nothing else there yet); while it runs 0.5 s, about ten more
    # arrive and go together as soon as it ends.
    assert sizes[0] == 1 and max(sizes) >= 8 and sum(sizes) == 20


async def test_without_a_cap_batches_overlap(fast: float) -> None:
    handler = Recorder(seconds=0.5)
    async with MicroBatcher(handler, max_batch=2, max_wait=0.1) as batcher:
        await asyncio.gather(*(batcher.submit(f"t{i}") for i in range(6)))
    assert handler.peak == 3


async def test_leaving_the_block_sends_what_is_waiting_and_leaves_no_task(fast: float) -> None:
    handler = Recorder()
    before = asyncio.all_tasks()
    async with MicroBatcher(handler, max_batch=10, max_wait=30.0) as batcher:
        waiting = asyncio.create_task(batcher.submit("last"))
        await sleep(0)
    assert waiting.done() and waiting.result() == "LAST"  # sent at the end, not after 30 s
    assert asyncio.all_tasks() - before == set()


async def test_an_error_in_the_block_cancels_the_waiting_callers(fast: float) -> None:
    handler = Recorder()
    waiting: asyncio.Task[str] | None = None
    with pytest.raises(KeyError):
        async with MicroBatcher(handler, max_batch=10, max_wait=30.0) as batcher:
            waiting = asyncio.create_task(batcher.submit("never"))
            await sleep(0)
            raise KeyError("the caller's code failed")
    assert waiting is not None
    await asyncio.gather(waiting, return_exceptions=True)
    assert waiting.cancelled()  # nobody waits for ever for a batch that will never go


async def test_a_handler_returning_the_wrong_number_of_results_fails_the_batch(fast: float) -> None:
    async def short(items: list[str]) -> Sequence[str]:
        return items[:-1]

    async with MicroBatcher(short, max_batch=3, max_wait=0.1) as batcher:
        results = await asyncio.gather(*(batcher.submit(t) for t in "abc"), return_exceptions=True)
    assert all(isinstance(r, ValueError) and "2 results for a batch of 3" in str(r) for r in results)


async def test_submit_outside_the_block_and_a_second_use_are_refused() -> None:
    batcher = MicroBatcher(Recorder(), max_batch=2, max_wait=0.1)
    with pytest.raises(RuntimeError, match=r"inside `async with MicroBatcher\(...\)`"):
        await batcher.submit("x")
    async with batcher:
        pass
    with pytest.raises(RuntimeError, match="already been used"):
        async with batcher:
            pass


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"max_batch": 0, "max_wait": 0.1}, ValueError, "max_batch must be an int >= 1, got 0"),
        ({"max_batch": 2.5, "max_wait": 0.1}, TypeError, "max_batch must be an int >= 1, got float 2.5"),
        ({"max_batch": 2, "max_wait": -1}, ValueError, "max_wait must be a finite number of simulated seconds"),
        ({"max_batch": 2, "max_wait": "1"}, TypeError, "max_wait must be a number of simulated seconds"),
        ({"max_batch": 2, "max_wait": 0.1, "max_concurrent": 0}, ValueError, "max_concurrent must be an int >= 1"),
    ],
)
def test_bad_arguments_are_refused_with_the_argument_named(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        MicroBatcher(Recorder(), **kwargs)  # type: ignore[arg-type]


def test_a_handler_that_is_not_callable_is_refused() -> None:
    with pytest.raises(TypeError, match="handler must be an async function of a list"):
        MicroBatcher("embed_batch", max_batch=2, max_wait=0.1)  # type: ignore[arg-type]


async def test_repr_shows_the_live_state(fast: float) -> None:
    async with MicroBatcher(Recorder(), max_batch=2, max_wait=0.1) as batcher:
        await asyncio.gather(*(batcher.submit(t) for t in "abc"))
    assert repr(batcher) == "<MicroBatcher max_batch=2 max_wait=0.1 s waiting=0 in_flight=0/∞ batches=2 mean size=1.5>"
    assert isinstance(batcher.batches[0], BatchRecord) and batcher.batches[0].size == 2
