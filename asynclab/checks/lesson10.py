"""Checkers for notebook 10 · Prompt pipelines.

    from asynclab.checks import lesson10
    await lesson10.check_index_documents(index_documents)   # three stages, balanced workers, bounded queues
    await lesson10.check_summarize_all(summarize_all)       # a pipeline that ends, and survives a bad document

Each checker makes its own stages (latencies and limits it knows), runs the learner's function
in a trace and reads it: which document each call was for, how many calls of a stage ran at
once, how long items waited between stages. A pipeline that stops making progress is not left
to time out: the checker looks at what its tasks are waiting for (``queue.get()``,
``queue.put()``, ``queue.join()``) and names the mistake.

Introduced in notebook 10.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import math
from collections import Counter
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Sequence
from typing import Any

import numpy as np

from asynclab.checks import (
    Attempt,
    attempt,
    awaiting,
    describe_error,
    expect,
    fail,
    passed,
    require_async,
    watch_progress,
)
from asynclab.clock import now
from asynclab.pipeline import Step
from asynclab.services import LLM, Embeddings
from asynclab.services.llm import run_model
from asynclab.text import Document, embed, load_corpus
from asynclab.tracing import Span

__all__ = [
    "EMBED_SECONDS",
    "EXTRACT_SECONDS",
    "INDEX_MAXSIZE",
    "SUMMARIZE_CAPACITY",
    "SUMMARIZE_SECONDS",
    "check_index_documents",
    "check_summarize_all",
    "extract_text",
    "steady_rate",
    "stuck_hint",
]

# -- exercise 1: three stages, balanced ---------------------------------------------------------

#: The three stages of check_index_documents: (simulated seconds per call, calls the service
#: serves at once or None). Summarize is the bottleneck: 3 / 0.6 s = 5 documents per second.
EXTRACT_SECONDS = 0.1
SUMMARIZE_SECONDS = 0.6
SUMMARIZE_CAPACITY = 3
EMBED_SECONDS = 0.5
#: How many documents check_index_documents sends, and the queue bound it asks for.
INDEX_DOCS = 24
INDEX_MAXSIZE = 2
#: Documents per second the pipeline can reach: the slowest stage's.
THROUGHPUT = SUMMARIZE_CAPACITY / SUMMARIZE_SECONDS

# -- exercise 2: a pipeline that ends -----------------------------------------------------------

SUMMARIZE_ALL_SECONDS = 0.4
SUMMARIZE_ALL_WORKERS = 3
#: The document that cannot be summarized: its page had no text (the LLM refuses an empty prompt).
EMPTY = Document(id="doc-empty", title="(a page with no text)", text="", topic="other", source="crawler", year=2025)

#: A pipeline that has had no service call running or starting for this many simulated seconds
#: (its longest stage takes 0.6 s), and has not returned, is stuck.
QUIET = 2.0
#: How often the watchdog looks, in simulated seconds.
POLL = 0.1


def extract_text(doc: Document) -> str:
    """What the extract stage returns for a document: its title and text, as one text to summarize."""
    return f"{doc.title}. {doc.text}"


# -- where a stuck pipeline waits -----------------------------------------------------------------


def stuck_hint(tasks: Iterable[asyncio.Task[Any]], quiet: float = QUIET) -> str:
    """Why a pipeline never ends, from what its unfinished tasks are waiting for."""
    waits = [awaiting(task) for task in tasks if not task.done()]
    joining = sum(1 for chain in waits if "Queue.join" in chain)
    putting = sum(1 for chain in waits if "Queue.put" in chain)
    getting = sum(1 for chain in waits if "Queue.get" in chain)
    reasons = []
    if joining:
        reasons.append(
            "it waits in queue.join(), which returns only when task_done() has been called once for every "
            "put() (sentinels and failed items included), and some item never got its task_done(). Call "
            "queue.task_done() after every get() (in a `finally:`), or drop join(): a TaskGroup already "
            "waits until every worker has stopped.")
    if putting:
        reasons.append(
            f"{putting} task(s) wait in queue.put() on a full queue that nobody reads any more: the workers "
            "that should take from it have stopped (one died on an error, or took a sentinel too early). "
            "Keep every worker alive until it takes its own sentinel.")
    if getting:
        reasons.append(
            f"{getting} worker(s) still wait in queue.get() after the last item: a worker stops only when it "
            "takes a sentinel, so a queue read by N workers needs N sentinels after its last item (put one "
            "per worker, e.g. `for _ in range(workers): await queue.put(None)`).")
    if not reasons:
        where = "; ".join(" → ".join(chain) for chain in waits[:4]) or "nothing we can see"
        reasons.append(f"its tasks wait in: {where}")
    head = (f"your pipeline stopped making progress: no call for {quiet:g} simulated seconds, and it has not "
            "returned.")
    if len(reasons) == 1:
        return f"{head} {reasons[0][0].upper()}{reasons[0][1:]}"
    return head + "".join(f"\n  {i}. {reason[0].upper()}{reason[1:]}" for i, reason in enumerate(reasons, 1))


async def _watched(function: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """Run the learner's function; when it stalls before returning, fail with :func:`stuck_hint`."""
    __tracebackhide__ = True
    return await watch_progress(function, *args, stuck=stuck_hint, quiet=QUIET, poll=POLL)


# -- reading a pipeline's trace ----------------------------------------------------------------


def _peak(intervals: Iterable[tuple[float, float]]) -> int:
    """The most intervals open at one moment (back to back is not overlap)."""
    events = sorted((t, delta) for start, end in intervals for t, delta in ((start, 1), (end, -1)))
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    return peak


def _backlog(arrivals: Sequence[float], departures: Sequence[float]) -> int:
    """The most items that had arrived and not yet left at one moment (leaving first at a tie)."""
    events = sorted([(t, 1) for t in arrivals] + [(t, -1) for t in departures])
    waiting = most = 0
    for _, delta in events:
        waiting += delta
        most = max(most, waiting)
    return most


def steady_rate(moments: Sequence[float], stalls: int = 2) -> float:
    """Items per second from the moments they came out, leaving out the ``stalls`` longest gaps.

    A loaded machine can stall the event loop for a few hundred milliseconds of wall time, which
    the speed turns into seconds: one long gap. Leaving out the longest gaps forgives up to
    ``stalls`` of them; a pipeline that pauses regularly (a barrier every few items) has many.
    """
    gaps = sorted(b - a for a, b in itertools.pairwise(sorted(moments)))[: max(len(moments) - 1 - stalls, 1)]
    total = sum(gaps)
    return len(gaps) / total if total > 0 else math.inf


def _documents(spans: Sequence[Span], keys: dict[str, str]) -> dict[str, list[Span]]:
    """A stage's calls by document id (calls about no known document under '?')."""
    found: dict[str, list[Span]] = {}
    for span in spans:
        found.setdefault(keys.get(span.key, "?"), []).append(span)
    return found


def _expect_workers_stopped(result: Attempt) -> None:
    """Fail when the function returned while its workers still ran (they were cancelled since)."""
    __tracebackhide__ = True
    if result.leaked:
        names = ", ".join(sorted({task.get_coro().__qualname__ for task in result.leaked}))  # type: ignore[union-attr]
        fail(f"your function returned while {len(result.leaked)} task(s) it started were still running ({names}): "
             "workers that wait in queue.get() for items that will never come. Stop every worker before you "
             "return: a sentinel per worker, then wait for them (a TaskGroup does), or cancel them after "
             "queue.join() and await the cancelled tasks.")


def _close_coroutines(value: Any) -> bool:
    if inspect.iscoroutine(value):
        value.close()
        return True
    return False


# -- exercise 1 ----------------------------------------------------------------------------------


async def _documents_arriving(docs: Sequence[Document], taken: dict[str, float]) -> AsyncGenerator[Document, None]:
    """The checker's source: documents as a crawler hands them over, noting when each was taken."""
    for doc in docs:
        taken[doc.id] = now()
        yield doc


def _needed(seconds: float) -> int:
    """Workers a stage of ``seconds`` per call needs to keep up with the bottleneck."""
    return math.ceil(round(seconds * THROUGHPUT, 9))


async def check_index_documents(function: Callable[..., Awaitable[Any]]) -> None:
    """``index_documents(source, extract, summarize, embed, maxsize)`` returns ``{doc.id: vector}``.

    Graded: every document comes out once with the embedding of its summary; the throughput is
    the bottleneck's (5 documents/s) with the fewest workers that reach it; no queue holds more
    than ``maxsize``; no worker is left running.
    """
    __tracebackhide__ = True
    require_async(function)
    docs = list(load_corpus()[60:60 + INDEX_DOCS])
    texts = {doc.id: extract_text(doc) for doc in docs}
    summaries = {doc_id: run_model("summarizer", text) for doc_id, text in texts.items()}
    llm = LLM(name="summarize", latency=SUMMARIZE_SECONDS, capacity=SUMMARIZE_CAPACITY)
    embedder = Embeddings(name="embed", latency=EMBED_SECONDS)
    extract = Step(extract_text, name="extract", latency=EXTRACT_SECONDS)

    async def summarize(text: str) -> str:
        return await llm.complete(text, model="summarizer")

    async def embed_(text: str) -> Any:
        return await embedder.embed(text)

    taken: dict[str, float] = {}
    source = _documents_arriving(docs, taken)
    result = await attempt(_watched, function, source, extract, summarize, embed_, INDEX_MAXSIZE, timeout=120)
    await source.aclose()
    _expect_workers_stopped(result)
    out = result.result
    if _close_coroutines(out):
        fail("index_documents returned a coroutine object: did you forget an `await`?")
    expect(isinstance(out, dict),
           f"index_documents should return a dict {{doc.id: vector}}; it returned {type(out).__name__} {out!r:.80}")
    if not taken:
        fail("index_documents never read the source: read it with `async for doc in source:`.")
    missing = [doc.id for doc in docs if doc.id not in out]
    extra = sorted(set(out) - set(texts), key=str)
    expect(not missing, f"{len(missing)} of {len(docs)} documents are missing from your result, e.g. {missing[:3]}: "
                        "every document must come out of the last stage (did some workers stop too early?).")
    expect(not extra, f"your result has keys that are not document ids: {extra[:3]}. Key it by doc.id.")
    wrong_texts = {"the summary": summaries, "the extracted text": texts,
                   "the document's text": {doc.id: doc.text for doc in docs}}
    for doc in docs:
        got = out[doc.id]
        want = embed(summaries[doc.id], embedder.dim)
        if _close_coroutines(got) or not isinstance(got, np.ndarray) or got.shape != want.shape:
            fail(f"out[{doc.id!r}] should be the vector embed(summary) returned; it is {type(got).__name__} "
                 f"{got!r:.60}")
        if not np.allclose(got, want):
            what = next((name for name, by_id in wrong_texts.items()
                         if np.allclose(got, embed(by_id[doc.id], embedder.dim))), None)
            fail(f"out[{doc.id!r}] is the embedding of {what or 'some other text'}, not of the document's summary. "
                 "Each stage works on what the stage before returned: extract(doc) → summarize(text) → "
                 "embed(summary). Carry the doc.id along with the value: put (doc.id, value) pairs in the queues.")

    spans = result.trace.spans
    keys_by_stage = {
        "extract": {repr(doc): doc.id for doc in docs},
        "summarize": {f"summarizer:{text}": doc_id for doc_id, text in texts.items()},
        "embed": {summary: doc_id for doc_id, summary in summaries.items()},
    }
    stages = {name: [span for span in spans if span.service == name] for name in keys_by_stage}
    for name, calls in stages.items():
        per_doc = _documents(calls, keys_by_stage[name])
        twice = [doc_id for doc_id, found in per_doc.items() if len(found) > 1]
        expect(not twice, f"{name} ran {len(per_doc[twice[0]]) if twice else 0} times for {twice[:1]}: each "
                          "document must pass each stage exactly once (is one item put into two queues?).")

    peaks = {name: _peak((span.queued, span.end if span.end is not None else now()) for span in calls)
             for name, calls in stages.items()}
    n = len(docs)
    if max(peaks.values()) <= 1 and _peak((s.queued, s.end or now()) for s in spans) <= 1:
        fail(f"your stages ran one call at a time, one document after another: {result.elapsed:.2f} s for {n} "
             f"documents ({n / result.elapsed:.2f}/s). Give each stage its own workers, joined by queues, so "
             "that all three stages work at the same time on different documents.")
    if peaks["extract"] >= n - 1 and n > 2:
        fail(f"all {n} documents were in the pipeline at once ({peaks['extract']} extract calls at the same "
             "moment): a fan-out with gather (or a worker per document), not a pipeline. Read the source in a "
             "producer that puts "
             f"each document into a bounded queue (maxsize={INDEX_MAXSIZE}), and let a few workers per stage take "
             "from it.")
    seconds = {"extract": EXTRACT_SECONDS, "summarize": SUMMARIZE_SECONDS, "embed": EMBED_SECONDS}
    capacity = {"extract": None, "summarize": SUMMARIZE_CAPACITY, "embed": None}
    for name in stages:
        served = min(peaks[name], capacity[name] or peaks[name])
        rate = served / seconds[name]
        if rate < THROUGHPUT - 1e-9:
            fail(f"stage {name} ran at most {peaks[name]} call(s) at once: {served} / {seconds[name]:g} s = "
                 f"{rate:.2f} documents/s, below the {THROUGHPUT:g}/s the slowest stage (summarize: "
                 f"{SUMMARIZE_CAPACITY} at once, {SUMMARIZE_SECONDS:g} s each) can do, so {name} is now the "
                 "bottleneck. "
                 f"Give it ⌈{seconds[name]:g} s × {THROUGHPUT:g}/s⌉ = {_needed(seconds[name])} workers.")
    waited = [span for span in stages["summarize"] if span.wait > 0.05]
    if waited or peaks["summarize"] > SUMMARIZE_CAPACITY:
        fail(f"up to {peaks['summarize']} summarize calls were in flight, but the service serves "
             f"{SUMMARIZE_CAPACITY} at once: {len(waited)} call(s) waited inside it. Workers beyond a service's "
             f"capacity add no throughput, only queueing you cannot see; use {SUMMARIZE_CAPACITY}.")
    # More workers than a stage needs are not graded: after the bottleneck they only wait in
    # queue.get() (a task each, no call), and before it the bounded queue holds them back.
    ends = {name: {keys_by_stage[name].get(s.key, "?"): s.end for s in calls if s.end is not None}
            for name, calls in stages.items()}
    starts = {name: {keys_by_stage[name].get(s.key, "?"): s.queued for s in calls}
              for name, calls in stages.items()}
    waiting = _backlog(list(taken.values()), list(starts["extract"].values()))
    if waiting > INDEX_MAXSIZE + 2:  # the queue, plus one the producer holds while its put() waits, plus a tie
        fail(f"{waiting} documents had been read from the source but not yet started: the first queue is not "
             f"bounded. Make it asyncio.Queue(maxsize={INDEX_MAXSIZE}) (maxsize is index_documents' argument): "
             "then `await queue.put(doc)` waits while the queue is full, and the source is read only as fast "
             "as the pipeline works.")
    for before, after in itertools.pairwise(stages):
        between = _backlog([ends[before][d] for d in ends[before] if d in starts[after]],
                           [starts[after][d] for d in ends[before] if d in starts[after]])
        allowed = INDEX_MAXSIZE + peaks[before] + 1  # the queue, one item per upstream worker blocked in put(), a tie
        if between > allowed:
            fail(f"{between} documents waited at once between {before} and {after}, more than the queue bound "
                 f"{INDEX_MAXSIZE} allows (plus the {peaks[before]} a blocked {before} worker can hold): the queue "
                 f"between them is not bounded. Create every queue with asyncio.Queue(maxsize).")

    measured = steady_rate(list(ends["embed"].values()))
    # 15 %: each gap is a timer wake-up on a busy machine; a stage one worker short is 20 % slower and
    # caught above; a pipeline that stops every few items (a barrier per batch) is far slower.
    expect(measured >= 0.85 * THROUGHPUT,
           f"documents came out at {measured:.2f}/s, below the {THROUGHPUT:g}/s of the slowest stage: something "
           "makes the stages wait for each other (a stage that waits for the whole batch, a lock, a sleep?).")
    passed(f"index_documents: {n} documents, each once, at {measured:.2f} documents/s (the bottleneck allows "
           f"{THROUGHPUT:g}/s) with {peaks['extract']} + {peaks['summarize']} + {peaks['embed']} workers; "
           f"at most {waiting} documents waited for extract (bound {INDEX_MAXSIZE}); no task left running.")


# -- exercise 2 ----------------------------------------------------------------------------------


def _errors_in(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _errors_in(inner)]
    return [exc]


async def _survives(function: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """:func:`_watched`, with a hint of its own when the bad document's error escapes."""
    __tracebackhide__ = True
    try:
        return await _watched(function, *args)
    except Exception as exc:
        if any(isinstance(leaf, ValueError) and "prompt" in str(leaf) for leaf in _errors_in(exc)):
            fail(f"one bad document ({EMPTY.id}, a page with no text) stopped the whole pipeline: "
                 f"{describe_error(exc)}. In the worker, catch the stage's error (`except Exception as exc:`), "
                 "record it in errors[doc.id], and go on with the next document.")
        raise


async def check_summarize_all(function: Callable[..., Awaitable[Any]]) -> None:
    """``summarize_all(docs, summarize, workers)`` returns ``(summaries, errors)`` keyed by doc id, and ends."""
    __tracebackhide__ = True
    require_async(function)
    docs = list(load_corpus()[100:111])
    docs.insert(4, EMPTY)
    llm = LLM(name="summarize", latency=SUMMARIZE_ALL_SECONDS)

    async def summarize(text: str) -> str:
        return await llm.complete(text, model="summarizer")

    workers = SUMMARIZE_ALL_WORKERS
    result = await attempt(_survives, function, docs, summarize, workers, timeout=60)
    _expect_workers_stopped(result)
    out = result.result
    if _close_coroutines(out):
        fail("summarize_all returned a coroutine object: did you forget an `await`?")
    expect(isinstance(out, tuple) and len(out) == 2 and all(isinstance(part, dict) for part in out),
           f"summarize_all should return a tuple (summaries, errors) of two dicts; it returned {out!r:.100}")
    summaries, errors = out
    good = [doc for doc in docs if doc.text]
    missing = [doc.id for doc in good if doc.id not in summaries]
    expect(not missing, f"{len(missing)} documents have no summary, e.g. {missing[:3]}: every good document must "
                        "be summarized (did the workers stop before the queue was empty?).")
    for doc in good:
        want = run_model("summarizer", doc.text)
        expect(summaries[doc.id] == want,
               f"summaries[{doc.id!r}] is {summaries[doc.id]!r:.60}, but summarize(doc.text) returns {want!r:.60}")
    if EMPTY.id not in errors:
        fail(f"{EMPTY.id} (a page with no text) is in neither summaries nor errors: its failure was dropped "
             "silently. Record it: errors[doc.id] = exc.")
    expect(isinstance(errors[EMPTY.id], ValueError),
           f"errors[{EMPTY.id!r}] should be the exception summarize raised (a ValueError), "
           f"got {errors[EMPTY.id]!r:.80}")
    expect(set(summaries) == {doc.id for doc in good} and set(errors) == {EMPTY.id},
           f"summaries should hold the {len(good)} good documents and errors only {EMPTY.id}; got summaries for "
           f"{sorted(set(summaries) - {d.id for d in good})[:3]} and errors for {sorted(set(errors) - {EMPTY.id})[:3]}")
    calls = result.trace.by_service("summarize")
    peak = _peak((span.queued, span.end if span.end is not None else now()) for span in calls)
    if peak <= 1:
        fail(f"your summaries ran one at a time ({result.elapsed:.2f} s for {len(good)}): start {workers} workers "
             "that all take from the same queue.")
    expect(peak <= workers,
           f"{peak} summaries ran at once, but summarize_all has {workers} workers: only the workers may call "
           "summarize, each one document at a time.")
    counts = Counter(span.key for span in calls)
    expect(max(counts.values(), default=1) == 1, "a document was summarized twice: put each one into the queue once.")
    passed(f"summarize_all: {len(summaries)} summaries and 1 error ({EMPTY.id}: "
           f"{type(errors[EMPTY.id]).__name__}) in {result.elapsed:.2f} s with {peak} workers; every worker "
           "took its own sentinel and stopped.")
