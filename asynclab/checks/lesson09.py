"""Checkers for notebook 09 · Parallel embeddings.

    from asynclab.checks import lesson09
    await lesson09.check_embed_all(embed_all)            # batches, a limit, every chunk once, in order
    await lesson09.check_micro_batcher(micro_batcher)    # dynamic batching: max_batch and max_wait

Each checker makes its own :class:`~asynclab.Embeddings` with a latency it knows, runs the
learner's function in a trace, and grades the vectors *and* the requests the trace recorded:
how many texts each carried (``span.items``), how many were in flight, when each was sent.

Introduced in notebook 09.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from asynclab import text as textlib
from asynclab.checks import attempt, expect, expect_no_leaks, fail, passed, require_async, within
from asynclab.clock import WALL_SLACK, get_speed, now, sleep_until
from asynclab.latency import Batched
from asynclab.services.embeddings import Embeddings
from asynclab.tracing import Span

__all__ = [
    "BATCHER_LATENCY",
    "EMBED_ALL_LATENCY",
    "batcher_plan",
    "check_embed_all",
    "check_micro_batcher",
    "plan_seconds",
    "sentences",
]

#: check_embed_all: 400 chunks, at most 8 requests in flight, at most 32 texts per request.
#: 400 / 32 → 13 requests: more than 8, so the limit binds (2 waves of 0.26 s).
EMBED_ALL_CHUNKS = 400
EMBED_ALL_LIMIT = 8
EMBED_ALL_MAX_BATCH = 32
EMBED_ALL_LATENCY = Batched(base=0.1, per_item=0.005)  # the course's default embedding service

#: check_micro_batcher: batches of at most 8, the oldest request waits at most 1 s. The service
#: is slow per request (0.5 s + 0.01 s per text), so a batcher that waits for each batch before
#: collecting the next makes the burst's callers wait visibly. max_wait is long next to what a
#: busy machine can add (a stall of 10-15 ms of wall time is 0.2-0.3 s at speed 20), so a correct
#: batcher is never taken for one that holds full batches or waits too long.
BATCHER_MAX_BATCH = 8
BATCHER_MAX_WAIT = 1.0
#: Simulated seconds between the trickle's requests: 3 of them fit in one max_wait, with 0.2 s to spare.
BATCHER_TRICKLE = 0.4
BATCHER_LATENCY = Batched(base=0.5, per_item=0.01)
#: After the batcher returns, how long (simulated seconds) the checker still waits for
#: answers, to tell "returned while batches were in flight" from "never sent them".
BATCHER_GRACE = 1.5

#: Wall seconds a busy 2-core machine may add to each wave of requests (its timers and tasks
#: wake late), and to a whole attempt (one stall: a kernel's garbage collection, another process).
WAVE_SLACK = 0.004
STALL = 0.010
#: Simulated seconds of lateness from the kernel's run-queue wait the batcher check forgives at
#: most (see _wait_tolerance).
BUSY_CAP = 0.8

_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def sentences() -> list[str]:
    """The knowledge base cut into sentences (457 of them, all different): the checkers' chunks."""
    return [part for doc in textlib.load_corpus() for part in _SENTENCE.split(doc.text) if part.strip()]


def plan_seconds(sizes: Sequence[int], limit: int, latency: Batched = EMBED_ALL_LATENCY) -> float:
    """How long requests of these sizes take with ``limit`` in flight, each sent when a slot frees.

        plan_seconds([32] * 12 + [16], limit=8)    # 2 waves: 0.26 + 0.26 = 0.52 s
    """
    free = [0.0] * max(1, limit)  # when each slot is free again
    for size in sizes:
        start = heapq.heappop(free)
        heapq.heappush(free, start + latency.seconds(n=size))
    return max(free)


def _texts(span: Span) -> list[str]:
    return span.key.split("\x1f") if span.operation == "embed_batch" else [span.key]


def _measure_vectors(chunks: Sequence[str], dim: int) -> tuple[list[np.ndarray[Any, Any]], float]:
    """The right vectors, and what computing them costs here in simulated seconds.

    The simulated service computes the same vectors on this CPU while a request "waits", and the
    event loop does it for one request after another: that CPU time, times the speed, is the most
    a correct answer can lose to it. Computing them here first also warms the model's caches.
    """
    started = time.perf_counter()
    vectors = [textlib.embed(chunk, dim) for chunk in chunks]
    return vectors, (time.perf_counter() - started) * get_speed()


# -- exercise 1: embed_all -------------------------------------------------------------------------


def _expect_vectors(value: Any, expected: list[np.ndarray[Any, Any]], batches: int) -> None:
    __tracebackhide__ = True
    n = len(expected)
    if not isinstance(value, (list, tuple)):
        fail(f"embed_all should return a list of {n} vectors (one per chunk, in order), got {type(value).__name__}")
    if len(value) == batches and batches != n and all(isinstance(v, (list, tuple)) for v in value):
        fail(f"embed_all returned {len(value)} lists, one per request: flatten them into one list of {n} "
             "vectors, e.g. `[vector for batch in results for vector in batch]`.")
    if len(value) != n:
        fail(f"embed_all returned {len(value)} items for {n} chunks: return one vector per chunk, in order.")
    arrays: list[np.ndarray[Any, Any]] = []
    for i, vector in enumerate(value):
        try:
            array: np.ndarray[Any, Any] | None = None if isinstance(vector, (str, bytes)) else np.asarray(vector, float)
        except (TypeError, ValueError):
            array = None
        if array is None or array.shape != expected[0].shape:
            fail(f"item {i} of your result is {type(vector).__name__} {vector!r:.60}, not a vector like "
                 "emb.embed_batch returns: return the vectors themselves.")
            return  # not reached: fail() raised
        arrays.append(array)
    wrong = [i for i, (got, want) in enumerate(zip(arrays, expected, strict=True)) if not np.allclose(got, want)]
    if not wrong:
        return
    keys = Counter(want.tobytes() for want in expected)
    if Counter(np.asarray(got, dtype=float).tobytes() for got in arrays) == keys:
        fail(f"you returned the right vectors in the wrong order (vector {wrong[0]} belongs to another chunk): "
             "results must follow the chunks. asyncio.gather returns results in the order of its arguments; "
             "as_completed and a shared list appended to by tasks do not.")
    fail(f"vector {wrong[0]} is not the embedding of chunk {wrong[0]}: return, for each chunk, the vector "
         "emb.embed_batch gave for it, in the order of the chunks.")


async def check_embed_all(function: Callable[..., Awaitable[Any]]) -> None:
    """``embed_all(emb, chunks, limit, max_batch)`` returns every chunk's vector, in order, batched and limited."""
    __tracebackhide__ = True
    require_async(function)
    chunks = sentences()[:EMBED_ALL_CHUNKS]
    n, limit, max_batch = len(chunks), EMBED_ALL_LIMIT, EMBED_ALL_MAX_BATCH
    emb = Embeddings(latency=EMBED_ALL_LATENCY)
    expected, cpu = _measure_vectors(chunks, emb.dim)
    result = await attempt(function, emb, list(chunks), limit, max_batch, timeout=120)
    expect_no_leaks(result)
    spans = sorted(result.trace.spans, key=lambda span: span.start)
    expect(bool(spans), "embed_all made no embedding call: call `await emb.embed_batch(batch)` for each batch.")
    largest = max(spans, key=lambda span: span.items)
    if largest.items > max_batch:
        fail(f"one request carried {largest.items} texts, but the provider takes at most {max_batch} per request: "
             f"cut the chunks into batches of at most max_batch, e.g. chunks[i:i + max_batch] for i in "
             f"range(0, len(chunks), max_batch).")
    peak = result.trace.max_concurrency()
    if peak > limit:
        fail(f"{peak} requests were in flight at once, but the limit is {limit}. Hold one asyncio.Semaphore(limit), "
             "created once and shared by every request, around each `await emb.embed_batch(batch)`.")
    counts: Counter[str] = Counter()
    for span in spans:
        counts.update(_texts(span))
    missing = [i for i, chunk in enumerate(chunks) if counts[chunk] == 0]
    if missing:
        fail(f"{len(missing)} of the {n} chunks were never embedded (the first is chunk {missing[0]}): is the last, "
             f"shorter batch sent? range(0, len(chunks), max_batch) reaches every chunk.")
    twice = next((i for i, chunk in enumerate(chunks) if counts[chunk] > 1), None)
    if twice is not None:
        fail(f"chunk {twice} was embedded {counts[chunks[twice]]} times: the batches must not overlap; "
             "embed each chunk once.")
    if all(span.items == 1 for span in spans):
        fail(f"you sent one text per request ({len(spans)} requests): each pays the request's base latency "
             f"({EMBED_ALL_LATENCY.base:g} s). Send batches of up to {max_batch} texts with emb.embed_batch.")
    _expect_vectors(result.result, expected, len(spans))
    sizes = [span.items for span in spans]
    if len(spans) > 1 and peak == 1:
        fail(f"your {len(spans)} requests ran one after another ({result.elapsed:.2f} s). Start them all at once "
             f"(asyncio.gather or a TaskGroup) and let the semaphore hold back all but {limit}.")
    full, rest = divmod(n, max_batch)
    best = plan_seconds([max_batch] * full + ([rest] if rest else []), limit)
    planned = plan_seconds(sizes, limit)
    if planned > 1.5 * best:
        fail(f"your {len(spans)} requests of about {round(n / len(spans))} texts need {planned:.2f} s even with "
             f"{limit} in flight; batches of {max_batch} need {best:.2f} s. Fill each request up to max_batch.")
    waves = math.ceil(len(spans) / limit)
    if peak < min(limit, len(spans)):
        fail(f"at most {peak} requests were in flight, but the limit allows {limit}: your answer took "
             f"{result.elapsed:.2f} s instead of {planned:.2f} s. Let {limit} requests run at once.")
    # Allowance on top of within()'s 10 % and timer slack: each wave may start a few ms of wall time
    # late, one stall, and the loop computes every vector once, one request after another (cpu,
    # measured above; twice that, as the machine may be busier during the attempt than during the
    # measurement). All of it stays far below the wrong answers' times, caught above anyway (one
    # request after another: 13 × 0.26 s; single texts: 50 waves of 0.105 s).
    allowance = (waves * WAVE_SLACK + STALL) * get_speed() + 2 * cpu
    if not within(result.elapsed, planned) and result.elapsed > planned + allowance:
        fail(f"embed_all took {result.elapsed:.2f} s, but its {len(spans)} requests with {limit} in flight take "
             f"{planned:.2f} s: start every request at once and wait for nothing else.")
    passed(f"embed_all: {n} chunks in {len(spans)} requests of at most {max(sizes)} texts, at most {peak} in flight, "
           f"{result.elapsed:.2f} s ({waves} waves, {planned:.2f} s predicted); every chunk embedded once, "
           "the vectors in order.")


# -- exercise 2: the micro-batcher -----------------------------------------------------------------


@dataclass(frozen=True)
class Arrival:
    """One caller of the micro-batcher checker: its text, when it arrives, and which phase it is in."""

    text: str
    at: float
    phase: str


def batcher_plan() -> list[Arrival]:
    """The callers: a burst of 20 at once, a trickle of 12 every 0.4 s, then 3 alone, 2.5 s apart.

    - burst: two full batches go out at once, the 4 left over after max_wait;
    - trickle: requests 0.4 s apart, so a batch collects 3 within max_wait (1 s);
    - alone: nothing joins them, so each goes out max_wait after it arrived (the last at the end).
    """
    texts = iter(sentences()[EMBED_ALL_CHUNKS:])
    plan = [Arrival(next(texts), 0.0, "burst") for _ in range(20)]
    plan += [Arrival(next(texts), 2.0 + BATCHER_TRICKLE * i, "trickle") for i in range(12)]
    plan += [Arrival(next(texts), 8.0 + 2.5 * i, "alone") for i in range(3)]  # each answered before the next
    return plan


@dataclass
class _Run:
    """What the callers saw."""

    arrived: dict[str, float] = field(default_factory=dict)
    futures: dict[str, asyncio.Future[Any]] = field(default_factory=dict)
    returned_early: bool = False
    unanswered_at_return: int = 0
    answered_later: int = 0


async def _drive(function: Callable[..., Awaitable[Any]], emb: Embeddings, plan: list[Arrival], run: _Run) -> None:
    """Feed the learner's batcher a queue of (text, future) on the plan's schedule, then None."""
    loop = asyncio.get_running_loop()
    requests: asyncio.Queue[Any] = asyncio.Queue()
    start = now()

    async def feed() -> None:
        for arrival in plan:
            if now() < start + arrival.at:  # callers due at the same moment arrive together
                await sleep_until(start + arrival.at)
            future = loop.create_future()
            run.arrived[arrival.text] = now()
            run.futures[arrival.text] = future
            requests.put_nowait((arrival.text, future))
        requests.put_nowait(None)  # the end: no more requests

    feeder = asyncio.create_task(feed())
    try:
        await function(requests, emb, BATCHER_MAX_BATCH, BATCHER_MAX_WAIT)
    finally:
        if not feeder.done():
            run.returned_early = True
            feeder.cancel()
        await asyncio.gather(feeder, return_exceptions=True)
    pending = [future for future in run.futures.values() if not future.done()]
    run.unanswered_at_return = len(pending)
    if pending:  # answered a little later by batches left running, or never?
        await asyncio.wait(pending, timeout=BATCHER_GRACE / get_speed())
        run.answered_later = sum(1 for future in pending if future.done())
    for future in run.futures.values():
        if not future.done():
            future.cancel()


def _wait_tolerance(descheduled: float = 0.0) -> float:
    """How late a batch may go out: 10 % of max_wait, twice the timer slack (as within()), one
    stall, and the time the kernel waited for a CPU during the run (at most BUSY_CAP simulated s).

    A machine running more kernels than it has cores wakes the batcher's timer late by what the
    loop's thread spent in the run queue (0.7 simulated s at speed 20 was seen with 4 notebooks
    on 2 cores). The cap keeps the check sharp: a batcher that restarts its clock on every
    arrival holds a trickle batch 2.8 s, beyond max_wait plus every allowance here.
    """
    speed = get_speed()
    return 0.1 * BATCHER_MAX_WAIT + (2 * WALL_SLACK + STALL) * speed + min(descheduled * speed, BUSY_CAP)


async def check_micro_batcher(function: Callable[..., Awaitable[Any]]) -> None:
    """``micro_batcher(requests, emb, max_batch, max_wait)``: batches of callers' texts, each caller its vector."""
    __tracebackhide__ = True
    require_async(function)
    plan = batcher_plan()
    phase = {arrival.text: arrival.phase for arrival in plan}
    emb = Embeddings(latency=BATCHER_LATENCY)
    expected, _ = _measure_vectors([arrival.text for arrival in plan], emb.dim)
    want = {arrival.text: vector for arrival, vector in zip(plan, expected, strict=True)}
    run = _Run()
    result = await attempt(_drive, function, emb, plan, run, timeout=60)
    if run.returned_early:
        fail("your batcher returned before None arrived: keep taking requests from the queue until "
             "`await requests.get()` gives None, the end.")
    if run.unanswered_at_return:
        if run.answered_later == run.unanswered_at_return:
            fail(f"your batcher returned while batches were still in flight ({run.unanswered_at_return} callers had "
                 "no vector yet): wait for every batch you started before returning, e.g. create their tasks "
                 "in an `async with asyncio.TaskGroup()` block.")
        fail(f"{run.unanswered_at_return - run.answered_later} callers never got a vector: when None arrives, "
             "send the batch you were collecting (even a partial one), then return.")
    expect_no_leaks(result)
    spans = sorted(result.trace.spans, key=lambda span: span.start)
    singles = [span for span in spans if span.operation == "embed"]
    if singles:
        fail(f"your batcher called emb.embed {len(singles)} times, one text per request: the point is one "
             "`await emb.embed_batch(texts)` per batch.")
    expect(bool(spans), "your batcher sent no request: collect a batch of (text, future) pairs and send its texts "
                        "with `await emb.embed_batch(texts)`.")
    largest = max(spans, key=lambda span: span.items)
    if largest.items > BATCHER_MAX_BATCH:
        fail(f"one batch carried {largest.items} texts, but max_batch is {BATCHER_MAX_BATCH}: stop collecting when "
             "the batch is full, and send it.")
    for text, future in run.futures.items():
        if future.cancelled():
            fail(f"the caller of {text!r:.50} was cancelled instead of answered: set each future's result.")
        error = future.exception()
        if error is not None:
            fail(f"the caller of {text!r:.50} got an error instead of its vector: {type(error).__name__}: {error}")
        got = future.result()
        if not isinstance(got, np.ndarray) or got.shape != want[text].shape or not np.allclose(got, want[text]):
            other = next((t for t, v in want.items() if isinstance(got, np.ndarray) and got.shape == v.shape
                          and np.allclose(got, v)), None)
            mixed = " (it is the vector of another caller's text)" if other is not None else ""
            fail(f"the caller of {text!r:.50} got {type(got).__name__} {got!r:.40}{mixed}: set each future's "
                 "result to the vector at the same position in embed_batch's answer.")
    # Which request carried whom, and how long its oldest and its last members waited.
    sent = [(span, [run.arrived[t] for t in _texts(span)], _texts(span)) for span in spans]
    burst = [span for span, _, texts in sent if any(phase[t] == "burst" for t in texts)]
    if len(burst) > 1 and _overlap(burst) == 1:
        late = burst[1].start - min(run.arrived[t] for t in _texts(burst[1]))
        fail(f"your batcher waited for each batch to come back before collecting the next, so the burst's second "
             f"batch went out {late:.2f} s after its callers arrived. Send each batch in its own task "
             "(tg.create_task(...)) and go straight back to collecting.")
    slack = _wait_tolerance(result.descheduled)
    for span, arrivals, _ in sent:
        held = span.start - max(arrivals)
        if span.items == BATCHER_MAX_BATCH and held > max(slack, BATCHER_MAX_WAIT / 2):
            fail(f"a full batch of {BATCHER_MAX_BATCH} waited {held:.2f} s before it went out: send a batch as soon "
                 "as it holds max_batch requests.")
    for span, arrivals, _ in sent:
        waited = span.start - min(arrivals)
        if waited > BATCHER_MAX_WAIT + slack:
            fail(f"a request waited {waited:.2f} s before its batch went out, but max_wait is {BATCHER_MAX_WAIT:g} s: "
                 "start the clock when a batch's FIRST (oldest) request arrives, not the latest, and send the batch "
                 "when max_wait has passed, even if it is not full.")
    trickle = [span.items for span, _, texts in sent if all(phase[t] == "trickle" for t in texts)]
    if trickle and (mean := sum(trickle) / len(trickle)) < 1.5:
        fail(f"requests that arrived {BATCHER_TRICKLE:g} s apart went out in batches of {mean:.1f} on average: "
             f"after a batch's first request, keep collecting for up to max_wait ({BATCHER_MAX_WAIT:g} s) "
             "so that later ones can join.")
    sizes = [span.items for span in spans]
    longest = max(span.start - min(arrivals) for span, arrivals, _ in sent)
    passed(f"micro_batcher: {len(plan)} callers in {len(spans)} batches (sizes {sizes}), none over "
           f"{BATCHER_MAX_BATCH}; the longest wait before a batch went out was {longest:.2f} s (max_wait "
           f"{BATCHER_MAX_WAIT:g} s); every caller got its own vector, and nothing was left running.")


def _overlap(spans: list[Span]) -> int:
    """The most of these spans in flight at the same moment."""
    events = sorted([(span.start, 1) for span in spans] + [(span.end or now(), -1) for span in spans])
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    return peak
