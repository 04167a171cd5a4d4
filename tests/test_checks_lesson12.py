"""The notebook 12 checkers pass the reference solutions and fail wrong ones with their hints."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from asynclab import LLM, RateLimit, RateLimited, SimulatedLimiter, now, sleep
from asynclab.checks import ExerciseFailed, lesson12

# -- classify_all ----------------------------------------------------------------------------------


class TokenBucket:
    """The lesson's bucket: ``capacity`` tokens, ``rate`` per simulated second."""

    def __init__(self, rate: float, capacity: float) -> None:
        self.rate, self.capacity = rate, capacity
        self.tokens, self.updated = capacity, now()
        self.lock = asyncio.Lock()

    def _refill(self) -> None:
        t = now()
        self.tokens = min(self.capacity, self.tokens + (t - self.updated) * self.rate)
        self.updated = t

    async def take(self, n: float = 1) -> None:
        async with self.lock:
            self._refill()
            if self.tokens < n:
                await sleep((n - self.tokens) / self.rate)
                self._refill()
            self.tokens -= n


Pace = Callable[[int], Awaitable[None]]


def pacer(limit: RateLimit, largest: int, *, requests: bool = True, tokens: bool = True,
          headroom: float = 0.98, burst: int = 2) -> Pace:
    """Wait for a request token and the call's tokens (either may be left out), under one lock."""
    assert limit.calls is not None and limit.tokens is not None
    room = largest + limit.tokens // 50  # the largest call, and 2 % of the window for late wake-ups
    by_requests = TokenBucket(headroom * (limit.calls - burst) / limit.per, burst)
    by_tokens = TokenBucket(headroom * (limit.tokens - room) / limit.per, room)
    lock = asyncio.Lock()

    async def wait(count: int) -> None:
        async with lock:
            if requests:
                await by_requests.take(1)
            if tokens:
                await by_tokens.take(count)

    return wait


async def paced_batch(llm: LLM, tickets: list[str], wait: Pace, tokens_of: Callable[[str], int],
                      limit: RateLimit) -> list[str | None]:
    async def one(ticket: str) -> str | None:
        assert limit.tokens is not None
        if tokens_of(ticket) > limit.tokens:
            return None  # no window holds it: the service would answer 413 however long we waited
        await wait(tokens_of(ticket))
        return await llm.complete(ticket, model="classifier")

    return list(await asyncio.gather(*(one(ticket) for ticket in tickets)))


def largest_fitting(tickets: list[str], limit: RateLimit, tokens_of: Callable[[str], int]) -> int:
    assert limit.tokens is not None
    return max(k for k in map(tokens_of, tickets) if k <= limit.tokens)


async def classify_all(llm: LLM, tickets: list[str], limit: RateLimit,
                       tokens_of: Callable[[str], int]) -> list[str | None]:
    """The reference solution: a bucket for requests and one for tokens, each with B + r·W ≤ its limit."""
    return await paced_batch(llm, tickets, pacer(limit, largest_fitting(tickets, limit, tokens_of)), tokens_of, limit)


async def test_classify_all_passes_the_reference(fast: float, capsys: pytest.CaptureFixture[str]) -> None:
    await lesson12.check_classify_all(classify_all)
    out = capsys.readouterr().out
    assert "✅ classify_all: 48 tickets classified once each, 0 refused with 429" in out and "never sent" in out


async def test_classify_all_passes_two_aiolimiters(fast: float) -> None:
    async def with_aiolimiter(llm: LLM, tickets: list[str], limit: RateLimit,
                              tokens_of: Callable[[str], int]) -> list[Any]:
        assert limit.calls is not None and limit.tokens is not None
        largest = largest_fitting(tickets, limit, tokens_of)
        requests = SimulatedLimiter(2, 2 / (0.98 * (limit.calls - 2) / limit.per))
        tokens = SimulatedLimiter(largest, largest / (0.98 * (limit.tokens - largest) / limit.per))
        lock = asyncio.Lock()

        async def wait(count: int) -> None:
            async with lock:
                await requests.acquire()
                await tokens.acquire(count)

        return await paced_batch(llm, tickets, wait, tokens_of, limit)

    await lesson12.check_classify_all(with_aiolimiter)


async def test_classify_all_passes_a_client_that_mirrors_the_sliding_window(fast: float) -> None:
    # Faster than the even pace: it spends the first window's whole budget at once, and never a 429.
    async def mirror(llm: LLM, tickets: list[str], limit: RateLimit, tokens_of: Callable[[str], int]) -> list[Any]:
        assert limit.calls is not None and limit.tokens is not None
        sent: list[tuple[float, int]] = []
        lock = asyncio.Lock()

        async def wait(count: int) -> None:
            async with lock:
                while True:
                    # 0.05 s to spare: the server admits a call a moment after we note it.
                    recent = [(t, k) for t, k in sent if t > now() - limit.per - 0.05]
                    if len(recent) < limit.calls and sum(k for _, k in recent) + count <= limit.tokens:
                        sent.append((now(), count))
                        return
                    await sleep(0.01)

        return await paced_batch(llm, tickets, wait, tokens_of, limit)

    await lesson12.check_classify_all(mirror)


async def test_classify_all_says_sending_everything_at_once_is_refused(fast: float) -> None:
    async def at_once(llm: LLM, tickets: list[str], limit: RateLimit, tokens_of: Callable[[str], int]) -> list[Any]:
        async def one(ticket: str) -> str | None:
            try:
                return await llm.complete(ticket, model="classifier")
            except RateLimited:
                return None
        return list(await asyncio.gather(*(one(ticket) for ticket in tickets)))

    with pytest.raises(ExerciseFailed, match=r"refused with 429.*sent all 48 tickets at once"):
        await lesson12.check_classify_all(at_once)


async def test_classify_all_says_retrying_429s_is_not_pacing(fast: float) -> None:
    async def retrying(llm: LLM, tickets: list[str], limit: RateLimit, tokens_of: Callable[[str], int]) -> list[Any]:
        gate = asyncio.Semaphore(8)

        async def one(ticket: str) -> str | None:
            if tokens_of(ticket) > 1500:
                return None
            while True:
                try:
                    async with gate:
                        return await llm.complete(ticket, model="classifier")
                except RateLimited as error:
                    await sleep(error.retry_after)
        return list(await asyncio.gather(*(one(ticket) for ticket in tickets)))

    with pytest.raises(ExerciseFailed, match=r"You retried them.*Pace the calls so that none is refused"):
        await lesson12.check_classify_all(retrying)


async def test_classify_all_says_pacing_requests_only_breaks_the_token_budget(fast: float) -> None:
    async def requests_only(llm: LLM, tickets: list[str], limit: RateLimit,
                            tokens_of: Callable[[str], int]) -> list[Any]:
        wait = pacer(limit, largest_fitting(tickets, limit, tokens_of), tokens=False)
        return await paced_batch(llm, tickets, wait, tokens_of, limit)

    with pytest.raises(ExerciseFailed, match=r"by the tokens budget\).*kept the requests under 24 per 3 s but not"):
        await lesson12.check_classify_all(requests_only)


async def test_classify_all_says_a_burst_of_n_breaks_the_request_window(fast: float) -> None:
    async def big_burst(llm: LLM, tickets: list[str], limit: RateLimit, tokens_of: Callable[[str], int]) -> list[Any]:
        assert limit.calls is not None
        requests = TokenBucket(limit.calls / limit.per, limit.calls)  # B = N, r = N/W: 2N per window

        async def wait(count: int) -> None:
            await requests.take(1)

        async def one(ticket: str) -> str | None:
            await wait(1)
            try:
                return await llm.complete(ticket, model="classifier")
            except RateLimited:
                return None
        return list(await asyncio.gather(*(one(ticket) for ticket in tickets)))

    with pytest.raises(ExerciseFailed, match=r"by the requests budget\)\. The requests budget refused.*B \+ r·W ≤ 24"):
        await lesson12.check_classify_all(big_burst)


async def test_classify_all_says_pacing_at_half_the_rate_is_too_slow(fast: float) -> None:
    async def half(llm: LLM, tickets: list[str], limit: RateLimit, tokens_of: Callable[[str], int]) -> list[Any]:
        wait = pacer(limit, largest_fitting(tickets, limit, tokens_of), headroom=0.5)
        return await paced_batch(llm, tickets, wait, tokens_of, limit)

    with pytest.raises(ExerciseFailed, match=r"no call was refused, but the batch took .* Pace closer to the limits"):
        await lesson12.check_classify_all(half)


async def test_classify_all_says_one_call_at_a_time_is_sequential(fast: float) -> None:
    async def one_by_one(llm: LLM, tickets: list[str], limit: RateLimit, tokens_of: Callable[[str], int]) -> list[Any]:
        assert limit.tokens is not None
        return [await llm.complete(ticket, model="classifier") if tokens_of(ticket) <= limit.tokens else None
                for ticket in tickets]

    with pytest.raises(ExerciseFailed, match=r"your calls ran one after another: .* 1.67 calls/s"):
        await lesson12.check_classify_all(one_by_one)


async def test_classify_all_explains_the_ticket_no_window_holds(fast: float) -> None:
    async def no_check(llm: LLM, tickets: list[str], limit: RateLimit, tokens_of: Callable[[str], int]) -> list[Any]:
        wait = pacer(limit, largest_fitting(tickets, limit, tokens_of))

        async def one(ticket: str) -> str:
            await wait(min(tokens_of(ticket), 1000))  # paced as if it fitted: the service still says 413
            return await llm.complete(ticket, model="classifier")
        return list(await asyncio.gather(*(one(ticket) for ticket in tickets)))

    with pytest.raises(ExerciseFailed, match=r"raised RequestTooLarge.*Ticket 30 needs 1\d{3} tokens.*answer None"):
        await lesson12.check_classify_all(no_check)


async def test_classify_all_wants_none_for_the_ticket_no_window_holds(fast: float) -> None:
    async def placeholder(llm: LLM, tickets: list[str], limit: RateLimit,
                          tokens_of: Callable[[str], int]) -> list[Any]:
        labels = await classify_all(llm, tickets, limit, tokens_of)
        return [label if label is not None else "other" for label in labels]

    with pytest.raises(ExerciseFailed, match=r"labels\[30\] should be None"):
        await lesson12.check_classify_all(placeholder)


async def test_classify_all_wants_the_labels_in_ticket_order(fast: float) -> None:
    async def unordered(llm: LLM, tickets: list[str], limit: RateLimit, tokens_of: Callable[[str], int]) -> list[Any]:
        return list(reversed(await classify_all(llm, tickets, limit, tokens_of)))

    with pytest.raises(ExerciseFailed, match="right but in the wrong order"):
        await lesson12.check_classify_all(unordered)


async def test_classify_all_says_a_pacer_left_running_leaks(fast: float) -> None:
    async def leaky(llm: LLM, tickets: list[str], limit: RateLimit, tokens_of: Callable[[str], int]) -> list[Any]:
        asyncio.get_running_loop().create_task(sleep(30))  # a forgotten refill task
        return await classify_all(llm, tickets, limit, tokens_of)

    with pytest.raises(ExerciseFailed, match=r"returned while 1 task\(s\) it started were still running"):
        await lesson12.check_classify_all(leaky)


def test_the_batch_needs_both_budgets() -> None:
    # The exercise's premise: its short tickets are held back by the requests, its long ones by the tokens.
    calls, per, tokens = lesson12.BATCH_LIMIT
    from asynclab.services.llm import token_usage

    tickets = lesson12.batch_tickets()
    big = tickets.pop(lesson12.OVERSIZED)
    costs = [token_usage("classifier", ticket) for ticket in tickets]
    assert max(costs[:24]) * calls < tokens < min(costs[24:]) * calls, costs
    assert token_usage("classifier", big) > tokens  # no window holds it
    assert lesson12.even_pace_seconds(costs, calls, per, tokens, 0.0) > (len(costs) - 1) * per / calls


# -- ingest ----------------------------------------------------------------------------------------

Handle = Callable[[Any], Awaitable[str]]


async def ingest(feeds: list[AsyncIterator[Any]], handle: Handle, maxsize: int, workers: int) -> dict[str, str]:
    """The reference solution: a producer per feed, workers, one bounded queue, sentinels after every feed."""
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize)
    labels: dict[str, str] = {}

    async def produce(feed: AsyncIterator[Any]) -> None:
        async for ticket in feed:
            await queue.put(ticket)

    async def work() -> None:
        while (ticket := await queue.get()) is not None:
            labels[ticket.id] = await handle(ticket)

    async with asyncio.TaskGroup() as tg:
        for _ in range(workers):
            tg.create_task(work())
        async with asyncio.TaskGroup() as producers:
            for feed in feeds:
                producers.create_task(produce(feed))
        for _ in range(workers):
            await queue.put(None)
    return labels


async def test_ingest_passes_the_reference(fast: float, capsys: pytest.CaptureFixture[str]) -> None:
    await lesson12.check_ingest(ingest)
    assert "✅ ingest: 36 tickets from 3 feeds, each handled once" in capsys.readouterr().out


async def test_ingest_passes_one_producer_reading_the_feeds_in_turn(fast: float) -> None:
    async def in_turn(feeds: list[AsyncIterator[Any]], handle: Handle, maxsize: int, workers: int) -> dict[str, str]:
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize)
        labels: dict[str, str] = {}

        async def work() -> None:
            while True:
                ticket = await queue.get()
                try:
                    labels[ticket.id] = await handle(ticket)
                finally:
                    queue.task_done()

        crew = [asyncio.create_task(work()) for _ in range(workers)]
        for feed in feeds:
            async for ticket in feed:
                await queue.put(ticket)
        await queue.join()
        for task in crew:
            task.cancel()
        await asyncio.gather(*crew, return_exceptions=True)
        return labels

    await lesson12.check_ingest(in_turn)


async def unbounded(feeds: list[AsyncIterator[Any]], handle: Handle, maxsize: int, workers: int) -> dict[str, str]:
    return await ingest(feeds, handle, 0, workers)


async def test_ingest_catches_an_unbounded_queue(fast: float) -> None:
    with pytest.raises(ExerciseFailed, match=r"tickets had been taken from the feeds and were not yet handled.*"
                                             r"asyncio.Queue\(maxsize\)"):
        await lesson12.check_ingest(unbounded)


async def test_ingest_says_put_nowait_dropped_tickets(fast: float) -> None:
    async def dropping(feeds: list[AsyncIterator[Any]], handle: Handle, maxsize: int, workers: int) -> dict[str, str]:
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize)
        labels: dict[str, str] = {}

        async def produce(feed: AsyncIterator[Any]) -> None:
            async for ticket in feed:
                with contextlib.suppress(asyncio.QueueFull):  # full: "shed" it
                    queue.put_nowait(ticket)

        async def work() -> None:
            while (ticket := await queue.get()) is not None:
                labels[ticket.id] = await handle(ticket)

        async with asyncio.TaskGroup() as tg:
            for _ in range(workers):
                tg.create_task(work())
            async with asyncio.TaskGroup() as producers:
                for feed in feeds:
                    producers.create_task(produce(feed))
            for _ in range(workers):
                await queue.put(None)
        return labels

    with pytest.raises(ExerciseFailed, match=r"taken from a feed but never handled.*dropped.*QueueFull"):
        await lesson12.check_ingest(dropping)


async def test_ingest_says_filling_before_the_workers_start_deadlocks(fast: float) -> None:
    async def fill_first(feeds: list[AsyncIterator[Any]], handle: Handle, maxsize: int,
                         workers: int) -> dict[str, str]:
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize)
        labels: dict[str, str] = {}
        for feed in feeds:  # fine with Queue(), a deadlock with Queue(maxsize)
            async for ticket in feed:
                await queue.put(ticket)

        async def work() -> None:
            while (ticket := await queue.get()) is not None:
                labels[ticket.id] = await handle(ticket)

        async with asyncio.TaskGroup() as tg:
            for _ in range(workers):
                tg.create_task(work())
            for _ in range(workers):
                await queue.put(None)
        return labels

    with pytest.raises(ExerciseFailed, match=r"stopped making progress.*no worker has taken anything yet.*deadlock"):
        await lesson12.check_ingest(fill_first)


async def test_ingest_says_sentinels_after_the_first_feed_stop_the_workers_early(fast: float) -> None:
    async def early(feeds: list[AsyncIterator[Any]], handle: Handle, maxsize: int, workers: int) -> dict[str, str]:
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize)
        labels: dict[str, str] = {}

        async def produce(feed: AsyncIterator[Any], last: bool) -> None:
            async for ticket in feed:
                await queue.put(ticket)
            if last:  # "the first feed is done": the others are not
                for _ in range(workers):
                    await queue.put(None)

        async def work() -> None:
            while (ticket := await queue.get()) is not None:
                labels[ticket.id] = await handle(ticket)

        async with asyncio.TaskGroup() as tg:
            for _ in range(workers):
                tg.create_task(work())
            for i, feed in enumerate(feeds):
                tg.create_task(produce(feed, last=i == 0))
        return labels

    with pytest.raises(ExerciseFailed, match=r"wait in queue.put\(\) on a full queue that nobody reads any more"):
        await lesson12.check_ingest(early)


async def test_ingest_says_workers_left_waiting_leak(fast: float) -> None:
    async def leaky(feeds: list[AsyncIterator[Any]], handle: Handle, maxsize: int, workers: int) -> dict[str, str]:
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize)
        labels: dict[str, str] = {}

        async def work() -> None:
            while True:
                ticket = await queue.get()
                labels[ticket.id] = await handle(ticket)
                queue.task_done()

        crew = [asyncio.create_task(work()) for _ in range(workers)]  # never stopped
        for feed in feeds:
            async for ticket in feed:
                await queue.put(ticket)
        await queue.join()
        assert len(crew) == workers
        return labels

    with pytest.raises(ExerciseFailed, match=r"still running \(.*work\): workers waiting in queue.get\(\)"):
        await lesson12.check_ingest(leaky)


async def test_ingest_says_missing_sentinels_leave_workers_waiting(fast: float) -> None:
    async def one_sentinel(feeds: list[AsyncIterator[Any]], handle: Handle, maxsize: int,
                           workers: int) -> dict[str, str]:
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize)
        labels: dict[str, str] = {}

        async def produce(feed: AsyncIterator[Any]) -> None:
            async for ticket in feed:
                await queue.put(ticket)

        async def work() -> None:
            while (ticket := await queue.get()) is not None:
                labels[ticket.id] = await handle(ticket)

        async with asyncio.TaskGroup() as tg:
            for _ in range(workers):
                tg.create_task(work())
            async with asyncio.TaskGroup() as producers:
                for feed in feeds:
                    producers.create_task(produce(feed))
            await queue.put(None)  # one, for four workers
        return labels

    with pytest.raises(ExerciseFailed, match=r"3 worker\(s\) still wait in queue.get\(\).*one sentinel per worker"):
        await lesson12.check_ingest(one_sentinel)


async def test_ingest_says_one_worker_is_sequential(fast: float) -> None:
    async def single(feeds: list[AsyncIterator[Any]], handle: Handle, maxsize: int, workers: int) -> dict[str, str]:
        return await ingest(feeds, handle, maxsize, 1)

    with pytest.raises(ExerciseFailed, match="handled one at a time"):
        await lesson12.check_ingest(single)


async def test_ingest_says_gathering_every_ticket_is_not_a_bounded_queue(fast: float) -> None:
    async def gathered(feeds: list[AsyncIterator[Any]], handle: Handle, maxsize: int,
                       workers: int) -> dict[str, str]:
        tickets = [ticket for feed in feeds async for ticket in feed]
        gate = asyncio.Semaphore(workers)

        async def one(ticket: Any) -> tuple[str, str]:
            async with gate:
                return ticket.id, await handle(ticket)
        return dict(await asyncio.gather(*(one(ticket) for ticket in tickets)))

    with pytest.raises(ExerciseFailed, match=r"36 tickets had been taken from the feeds"):
        await lesson12.check_ingest(gathered)
