"""Checkers for notebook 12 · Backpressure and rate limits.

    from asynclab.checks import lesson12
    await lesson12.check_classify_all(classify_all)   # a batch as fast as RPM and TPM allow, zero 429s
    await lesson12.check_ingest(ingest)               # several feeds, one bounded queue, workers that stop

The first checker gives the learner an LLM behind a rate limit that counts requests *and*
tokens, and reads the trace: every 429 (and which budget refused it), each ticket classified
once, and the time against what the limits allow. The second gives three fast feeds and a slow
``handle``, notes when each ticket was taken from its feed, and reads from the trace how many
had been taken and not yet handled (the queue and what the producers hold), whether any was
dropped or handled twice, and what the tasks wait for when the pipeline stops moving.

Introduced in notebook 12.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from asynclab.checks import (
    Attempt,
    attempt,
    awaiting,
    close_coroutines,
    describe_error,
    expect,
    expect_no_leaks,
    fail,
    passed,
    require_async,
    watch_progress,
)
from asynclab.clock import WALL_SLACK, get_speed, now, sleep
from asynclab.faults import Faults, RateLimit, RateLimited, RequestTooLarge
from asynclab.services.llm import LLM, run_model, token_usage
from asynclab.text import load_corpus
from asynclab.tracing import Span, current_trace

__all__ = [
    "BATCH_LATENCY",
    "BATCH_LIMIT",
    "FEED_GAP",
    "HANDLE_SECONDS",
    "INGEST_MAXSIZE",
    "INGEST_WORKERS",
    "Ticket",
    "batch_tickets",
    "check_classify_all",
    "check_ingest",
    "even_pace_seconds",
]

# -- exercise 1: a rate-limited batch ------------------------------------------------------------

#: The checker's budget: 24 requests and 1,500 tokens per 3 s window (8 requests/s, 500 tokens/s).
#: A ticket of fewer than 62.5 tokens is held back by the requests, a longer one by the tokens:
#: the batch's first half is short tickets, its second half long ones, so both budgets bind.
BATCH_LIMIT = (24, 3.0, 1500)
BATCH_LATENCY = 0.6
BATCH_SIZE = 48
#: Where the batch holds a ticket too large for any window (a whole log pasted in): more tokens
#: than the budget allows in 3 s. Sent, it is refused with 413 (RequestTooLarge) however long one waits.
OVERSIZED = 30
#: How much slower than the even pace at the full limits a batch may be. Buckets with the headroom
#: B + r·W ≤ N run 8-10 % under the limits with a window this small (a bucket of 2 is 8 % of 24
#: requests); late wake-ups on a busy machine cost a few % more, aiolimiter (SimulatedLimiter) another
#: ~8 % at speed 20 (it wakes each waiter ~0.5 ms of wall time late). A pacer at half the rate is
#: 100 % slower, one that waits a call's latency between calls 40 % and more.
SLOWER = 0.25


def batch_tickets() -> list[str]:
    """The 49 tickets of check_classify_all: the 24 shortest documents of the corpus, then the 24 longest,
    and at :data:`OVERSIZED` one that no window can hold."""
    docs = load_corpus()
    texts = [f"{doc.title}. {doc.text}" for doc in docs]
    texts.sort(key=lambda text: (token_usage("classifier", text), text))
    tickets = texts[:BATCH_SIZE // 2] + texts[-BATCH_SIZE // 2:]
    pasted = "The export fails again, here is the whole log: " + " ".join(doc.text for doc in docs[:30])
    tickets.insert(OVERSIZED, pasted)
    return tickets


def even_pace_seconds(tokens: Sequence[int], calls: int, per: float, limit_tokens: int, latency: float) -> float:
    """The time a batch takes paced evenly at exactly the limits: each call waits for the budget
    that binds for it (one request, or its tokens), the last one then takes its latency."""
    return sum(max(per / calls, k * per / limit_tokens) for k in tokens[:-1]) + latency


class _CountingLimit(RateLimit):
    """A RateLimit that also notes which budget refused each 429 (the span only says "RateLimited")."""

    def __init__(self, calls: int, per: float, tokens: int) -> None:
        super().__init__(calls, per, tokens=tokens)
        self.refused: list[str] = []

    def admit(self, tokens: int = 0, *, service: str = "", operation: str = "") -> None:
        try:
            super().admit(tokens, service=service, operation=operation)
        except RateLimited as exc:
            self.refused.append(exc.kind)
            raise


def _refused_hint(spans: list[Span], kinds: list[str], texts: list[str], peak: int) -> str:
    calls, per, tokens = BATCH_LIMIT
    refused = [span for span in spans if span.outcome == "RateLimited"]
    counts = Counter(kinds)
    said = ", ".join(f"{n} by the {kind} budget" for kind, n in sorted(counts.items()))
    head = f"{len(refused)} call(s) were refused with 429 ({said})."
    tries = Counter(span.key for span in spans)
    retried = [span.key for span in refused if tries[span.key] > 1]
    if peak >= 0.9 * len(texts):
        return (f"{head} Your function sent all {len(texts)} tickets at once: the window holds {calls} requests and "
                f"{tokens} tokens. Pace the calls: take from a token bucket (or aiolimiter) before each call, with a "
                "bucket for requests and one for tokens.")
    if retried:
        return (f"{head} You retried them, so every ticket got its label, but each 429 is a refused call and a "
                "wasted wait, and a provider counts them against you. Pace the calls so that none is refused: "
                "B + r·W ≤ the limit for both budgets.")
    if set(counts) == {"tokens"}:
        return (f"{head} Your pacing kept the requests under {calls} per {per:g} s but not the tokens: the long "
                f"tickets cost up to {max(token_usage('classifier', t) for t in texts)} tokens each, and {tokens} per "
                f"{per:g} s is less than {calls} of them. Pace the tokens too: a second bucket, from which each call "
                "takes tokens_of(ticket), with room for the largest call (B ≥ its tokens) and B + r·W ≤ the "
                "tokens per window.")
    if set(counts) == {"requests"}:
        return (f"{head} The requests budget refused: more than {calls} calls went out in some {per:g} s window. "
                f"Either you paced the tokens only (short tickets need few tokens, yet each is one request), or "
                f"your bucket's burst is too large: a bucket of B with r per second lets B + r·W calls through in "
                f"a window of W seconds; keep B + r·W ≤ {calls}.")
    return (f"{head} Both budgets refused: pace the requests (B + r·W ≤ {calls} per {per:g} s) and the tokens "
            f"(B + r·W ≤ {tokens} per {per:g} s, B ≥ the largest call) before each call.")


async def check_classify_all(function: Callable[..., Awaitable[Any]]) -> None:
    """``classify_all(llm, tickets, limit, tokens_of)`` returns every ticket's label, in order, with no 429.

    Graded: no call refused with 429 (and which budget refused, if one was); the ticket no window
    can hold answered None, without a wait or a crash; each other ticket classified once with its
    label, in order; calls overlapping; and the time within 25 % of the even pace at the full limits.
    """
    __tracebackhide__ = True
    require_async(function)
    calls, per, tokens = BATCH_LIMIT
    limit = _CountingLimit(calls, per, tokens)
    llm = LLM(latency=BATCH_LATENCY, faults=Faults(rate_limit=limit))
    texts = batch_tickets()
    fitting = [text for i, text in enumerate(texts) if i != OVERSIZED]

    def tokens_of(ticket: str) -> int:
        return token_usage("classifier", ticket)

    result = await attempt(_keeping_errors, function, llm, list(texts), limit, tokens_of, timeout=120)
    spans = result.trace.by_service(llm.name)
    peak = result.trace.max_concurrency()
    if any(span.outcome == "RateLimited" for span in spans):  # first: it explains a raised error or a leak
        fail(_refused_hint(spans, limit.refused, fitting, max(peak, _sent_at_once(spans))))
    labels = result.result
    if isinstance(labels, _Raised):
        error, big = labels.error, tokens_of(texts[OVERSIZED])
        if _has(error, (RequestTooLarge, ValueError)):
            fail(f"your function raised {describe_error(error)}. Ticket {OVERSIZED} needs {big} tokens, more than "
                 f"the {tokens} a whole {per:g} s window allows: no wait makes it fit, and the service refuses it "
                 "with 413 (RequestTooLarge). Check tokens_of(ticket) against limit.tokens first and answer None "
                 "for such a ticket (or catch RequestTooLarge), so it does not sink the batch.")
        fail(f"your function raised {describe_error(error)}")
    expect_no_leaks(result)
    if close_coroutines([labels]) or (isinstance(labels, list) and close_coroutines(labels)):
        fail("classify_all returned coroutine objects: did you forget an `await` (or to gather the calls)?")
    expected: list[str | None] = [run_model("classifier", text) for text in texts]
    expected[OVERSIZED] = None
    expect(isinstance(labels, list) and len(labels) == len(texts),
           f"classify_all should return a list of {len(texts)} labels, one per ticket in order; it returned "
           f"{type(labels).__name__} {labels!r:.80}")
    ok = Counter(span.key for span in spans if span.outcome == "ok")
    twice = [key.split(":", 1)[1] for key, n in ok.items() if n > 1]
    if twice:
        fail(f"{len(twice)} ticket(s) were classified more than once, e.g. {twice[0][:50]!r}…: call the LLM once "
             "per ticket.")
    if labels != expected:
        if labels[OVERSIZED] is not None and labels[:OVERSIZED] + labels[OVERSIZED + 1:] == [
                label for i, label in enumerate(expected) if i != OVERSIZED]:
            fail(f"labels[{OVERSIZED}] should be None: that ticket needs more tokens than a whole window allows, so "
                 f"it has no label; you returned {labels[OVERSIZED]!r:.60}.")
        if sorted(map(str, labels)) == sorted(map(str, expected)):
            fail("your labels are right but in the wrong order: return them in the order of the tickets "
                 "(gather keeps the order; or fill a list by index).")
        wrong = next(i for i, (got, want) in enumerate(zip(labels, expected, strict=True)) if got != want)
        fail(f"label {wrong} is {labels[wrong]!r:.60}, but llm.complete(ticket, model='classifier') answers "
             f"{expected[wrong]!r}: return what the LLM answered for each ticket, in order.")
    allowed = even_pace_seconds([tokens_of(text) for text in fitting], calls, per, tokens, BATCH_LATENCY)
    limit_rate = (len(fitting) - 1) / (allowed - BATCH_LATENCY)
    if result.elapsed > (1 + SLOWER) * allowed + 2 * WALL_SLACK * get_speed():
        starts = sorted(span.queued for span in spans if span.outcome == "ok")
        rate = (len(starts) - 1) / (starts[-1] - starts[0]) if starts[-1] > starts[0] else 0.0
        if peak <= 1:
            fail(f"your calls ran one after another: {result.elapsed:.2f} s, {1 / BATCH_LATENCY:.2f} calls/s at "
                 f"{BATCH_LATENCY:g} s a call, where the limits allow {limit_rate:.1f}/s. Pace the *starts* of the "
                 "calls, and let them overlap: start every ticket's task at once and let each wait for its turn "
                 "in the bucket.")
        fail(f"no call was refused, but the batch took {result.elapsed:.2f} s ({rate:.2f} calls/s), and paced "
             f"evenly at the full limits it takes {allowed:.2f} s ({limit_rate:.2f} calls/s). Pace closer to the "
             f"limits: for each budget, the bucket's rate r with B + r·W just under the limit (a few % of "
             f"headroom), not a fixed sleep per call or a fraction of it.")
    sent_big = any(span.outcome == "RequestTooLarge" for span in spans)
    passed(f"classify_all: {len(fitting)} tickets classified once each, 0 refused with 429, in {result.elapsed:.2f} s "
           f"(paced evenly at the full limits: {allowed:.2f} s; {calls} requests and {tokens} tokens per {per:g} s); "
           f"ticket {OVERSIZED} ({tokens_of(texts[OVERSIZED])} tokens) answered None"
           f"{', after a 413' if sent_big else ', never sent'}.")


class _Raised:
    """What the learner's function raised (graded from the trace first: a 429 explains most errors)."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


def _has(error: BaseException, kinds: type[BaseException] | tuple[type[BaseException], ...]) -> bool:
    if isinstance(error, BaseExceptionGroup):
        return any(_has(inner, kinds) for inner in error.exceptions)
    return isinstance(error, kinds)


async def _keeping_errors(function: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """Run the learner's function; an error it raises becomes a value, so the trace can say why first."""
    try:
        return await function(*args)
    except Exception as error:
        return _Raised(error)


def _sent_at_once(spans: list[Span]) -> int:
    """The most calls sent within 0.25 simulated seconds of each other (a refused call ends as it starts,
    so calls in flight do not show a burst of 429s; 0.25 s: creating 49 tasks on a busy machine, times
    the speed, takes a good part of that, and a pacer at the limits sends 2 in that time)."""
    starts = sorted(span.queued for span in spans)
    return max((sum(1 for t in starts[i:] if t - s <= 0.25) for i, s in enumerate(starts)), default=0)


# -- exercise 2: several feeds, one bounded queue ---------------------------------------------------


@dataclass(frozen=True)
class Ticket:
    """A support ticket as a feed hands it over: where it came from, its id, its text."""

    feed: str
    id: str
    text: str


#: The feeds and how many tickets each hands over: they end at different times.
FEEDS = {"email": 8, "chat": 12, "web form": 16}
#: Simulated seconds between two tickets of one feed: each feed alone is 5× faster than the workers.
FEED_GAP = 0.02
HANDLE_SECONDS = 0.4
INGEST_WORKERS = 4
INGEST_MAXSIZE = 3
#: Progress: a ticket taken from a feed, or a handle call starting or ending. None for this many
#: simulated seconds (a handle call takes 0.4 s) means the pipeline is stuck.
QUIET = 2.0
POLL = 0.1


def _feed_tickets() -> dict[str, list[Ticket]]:
    docs = iter(load_corpus()[40:40 + sum(FEEDS.values())])
    return {feed: [Ticket(feed, f"{feed.split()[0]}-{i + 1:02d}", f"{doc.title}. {doc.text}")
                   for i, doc in zip(range(count), docs, strict=False)]
            for feed, count in FEEDS.items()}


async def _feed(tickets: list[Ticket], taken: dict[str, float]) -> AsyncIterator[Ticket]:
    """A fast feed: a ticket every FEED_GAP seconds, noting when each one was taken."""
    for ticket in tickets:
        await sleep(FEED_GAP)
        taken[ticket.id] = now()
        yield ticket


def _stuck_hint(tasks: Sequence[asyncio.Task[Any]], handled: int) -> str:
    waits = [awaiting(task) for task in tasks if not task.done()]
    putting = sum(1 for chain in waits if "Queue.put" in chain)
    getting = sum(1 for chain in waits if "Queue.get" in chain)
    joining = sum(1 for chain in waits if "Queue.join" in chain)
    head = (f"your function stopped making progress: nothing taken from a feed and no handle call for {QUIET:g} "
            "simulated seconds, and it has not returned.")
    if putting and not getting and handled == 0:
        return (f"{head} It waits in queue.put() on a full queue, and no worker has taken anything yet: the queue was "
                "being filled before any worker started. With an unbounded queue that order works (the queue takes "
                "everything); with maxsize it is a deadlock — the producer waits for room that only a worker can "
                "make. Start the workers first (or in the same TaskGroup as the producers), then fill the queue.")
    if putting:
        return (f"{head} {putting} task(s) wait in queue.put() on a full queue that nobody reads any more: the workers "
                "have stopped (one died on an error, or took a sentinel before the feeds were done). Send the "
                "sentinels only after every producer has finished.")
    if joining:
        return (f"{head} It waits in queue.join(), which returns only when task_done() was called for every put(): "
                "call queue.task_done() after each get(), or wait for the workers (a TaskGroup) instead.")
    if getting:
        return (f"{head} {getting} worker(s) still wait in queue.get() after the last ticket: a worker stops when it "
                "takes a sentinel, so put one sentinel per worker once every feed is read to the end.")
    where = "; ".join(" → ".join(chain) for chain in waits[:4]) or "nothing we can see"
    return f"{head} Its tasks wait in: {where}."


async def _watched(function: Callable[..., Awaitable[Any]], taken: dict[str, float], *args: Any) -> Any:
    """Run the learner's function; when it stops making progress, fail with :func:`_stuck_hint`.

    Progress is a ticket taken from a feed, or a ``handle`` call starting or ending.
    """
    __tracebackhide__ = True

    def stuck(tasks: list[asyncio.Task[Any]]) -> str:
        recorded = current_trace()
        return _stuck_hint(tasks, len(recorded.spans) if recorded is not None else 0)

    return await watch_progress(function, *args, stuck=stuck, progress=lambda: len(taken),
                                quiet=QUIET, poll=POLL)


def _backlog(taken: dict[str, float], started: dict[str, float]) -> int:
    """The most tickets taken from a feed and not yet handed to handle, at one moment."""
    events = sorted([(t, 1) for t in taken.values()]
                    + [(started.get(ticket, math.inf), -1) for ticket in taken])
    waiting = most = 0
    for _, delta in events:
        waiting += delta
        most = max(most, waiting)
    return most


def _ingest_leaks(result: Attempt) -> None:
    __tracebackhide__ = True
    if result.leaked:
        names = ", ".join(sorted({task.get_coro().__qualname__ for task in result.leaked}))  # type: ignore[union-attr]
        fail(f"your function returned while {len(result.leaked)} task(s) it started were still running ({names}): "
             "workers waiting in queue.get() for tickets that will never come. Stop them before you return: a "
             "sentinel per worker once every feed is read, and wait for them (a TaskGroup does).")
    expect_no_leaks(result)


async def check_ingest(function: Callable[..., Awaitable[Any]]) -> None:
    """``ingest(feeds, handle, maxsize, workers)`` returns ``{ticket.id: label}`` for every ticket of every feed.

    Graded: every ticket handled once with its label; never more than maxsize tickets waiting
    (plus one per producer blocked in put()); at most ``workers`` handle calls at once, and the
    workers' pace; no deadlock; no worker left running.
    """
    __tracebackhide__ = True
    require_async(function)
    tickets = _feed_tickets()
    everything = [ticket for feed in tickets.values() for ticket in feed]
    by_text = {ticket.text: ticket.id for ticket in everything}
    llm = LLM(name="handle", latency=HANDLE_SECONDS)

    async def handle(ticket: Ticket) -> str:
        if not isinstance(ticket, Ticket):
            raise TypeError(f"handle(ticket) takes a Ticket from a feed, got {type(ticket).__name__} {ticket!r:.60}")
        return await llm.complete(ticket.text, model="classifier")

    taken: dict[str, float] = {}
    feeds = [_feed(feed, taken) for feed in tickets.values()]
    try:
        result = await attempt(_watched, function, taken, feeds, handle, INGEST_MAXSIZE, INGEST_WORKERS, timeout=60)
    finally:
        for feed in feeds:
            await feed.aclose()  # type: ignore[attr-defined]
    _ingest_leaks(result)
    out = result.result
    if close_coroutines([out]):
        fail("ingest returned a coroutine object: did you forget an `await`?")
    expect(isinstance(out, dict), f"ingest should return a dict {{ticket.id: label}}; it returned "
                                  f"{type(out).__name__} {out!r:.80}")
    calls = result.trace.by_service("handle")
    started: dict[str, float] = {}
    counts: Counter[str] = Counter()
    for span in calls:
        ticket_id = by_text.get(span.key.split(":", 1)[1], "?")
        counts[ticket_id] += 1
        started.setdefault(ticket_id, span.queued)
    twice = [ticket_id for ticket_id, n in counts.items() if n > 1]
    if twice:
        fail(f"ticket {twice[0]} was handled {counts[twice[0]]} times: put each ticket into the queue once, and let "
             "one worker take it.")
    unread = [ticket.id for ticket in everything if ticket.id not in taken]
    expect(not unread, f"{len(unread)} ticket(s) were never taken from their feed, e.g. {unread[:3]}: read every feed "
                       "to the end (`async for ticket in feed:` in one producer per feed).")
    dropped = [ticket_id for ticket_id in taken if ticket_id not in started]
    expect(not dropped, f"{len(dropped)} ticket(s) were taken from a feed but never handled, e.g. {dropped[:3]}: "
                        "dropped. Did put_nowait() raise QueueFull and the ticket go nowhere, or did the workers "
                        "stop before the queue was empty? `await queue.put(ticket)` waits for room; send the "
                        "sentinels after the last ticket.")
    missing = [ticket.id for ticket in everything if ticket.id not in out]
    expect(not missing, f"{len(missing)} ticket(s) are missing from your result, e.g. {missing[:3]}: store each "
                        "label under ticket.id.")
    for ticket in everything:
        want = run_model("classifier", ticket.text)
        expect(out[ticket.id] == want, f"result[{ticket.id!r}] is {out[ticket.id]!r:.40}, but handle(ticket) "
                                       f"returned {want!r}: store what handle returned.")
    waiting = _backlog(taken, started)
    allowed = INGEST_MAXSIZE + len(FEEDS) + 1  # the queue, a ticket per producer blocked in put(), a tie
    expect(waiting <= allowed,
           f"{waiting} tickets had been taken from the feeds and were not yet handled, at one moment: more than "
           f"the queue's maxsize ({INGEST_MAXSIZE}) allows, plus one per feed held in a waiting put(). The queue "
           f"is not bounded (or the tickets are collected elsewhere first). Create it with "
           f"asyncio.Queue(maxsize) and `await queue.put(ticket)`: then the feeds are read only as fast as the "
           "workers work.")
    peak = result.trace.max_concurrency()
    n = len(everything)
    expected = math.ceil(n / INGEST_WORKERS) * HANDLE_SECONDS
    if peak <= 1:
        fail(f"your tickets were handled one at a time ({result.elapsed:.2f} s for {n}): start {INGEST_WORKERS} "
             "workers that all take from the same queue.")
    expect(peak <= INGEST_WORKERS,
           f"{peak} handle calls ran at once, but ingest has {INGEST_WORKERS} workers: only the workers may call "
           "handle, each one ticket at a time.")
    # 15 % on top of the timer slack: 9 rounds of calls, each a timer wake-up on a possibly busy machine.
    expect(result.elapsed <= 1.15 * expected + FEED_GAP * len(FEEDS) + 2 * WALL_SLACK * get_speed(),
           f"ingest took {result.elapsed:.2f} s, but {INGEST_WORKERS} workers handle {n} tickets in "
           f"{math.ceil(n / INGEST_WORKERS)} rounds of {HANDLE_SECONDS:g} s = {expected:.2f} s: are the feeds read "
           "one after another while the workers wait, or do the workers wait for something else?")
    passed(f"ingest: {n} tickets from {len(FEEDS)} feeds, each handled once, in {result.elapsed:.2f} s with {peak} "
           f"workers; at most {waiting} tickets waited (maxsize {INGEST_MAXSIZE}, plus one per blocked producer); "
           "every worker stopped.")
