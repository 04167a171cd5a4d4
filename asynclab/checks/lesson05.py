"""Checkers for notebook 05 · Parallel RAG retrieval.

    from asynclab.checks import lesson05
    await lesson05.check_retrieve_all(retrieve_all)
    await lesson05.check_retrieve_within(retrieve_within)

Each checker makes its own vector stores (latencies and faults it knows), runs the learner's
function in a trace, and grades the documents *and* the timing: concurrent searches, nothing
left running, failures reported rather than swallowed.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from asynclab.checks import (
    attempt,
    describe_error,
    expect,
    expect_concurrent,
    expect_no_leaks,
    fail,
    passed,
    require_async,
    within,
)
from asynclab.clock import get_speed, now, timeout
from asynclab.faults import Faults, ServiceError
from asynclab.fusion import RRF_K, rrf
from asynclab.services.vectorstores import PgVectorStore, PineconeStore, RedisStore, VectorStore

__all__ = ["RRF_K", "check_retrieve_all", "check_retrieve_within", "rrf_scores"]

#: Three wordings of one question: their top-k lists overlap but disagree, so fusing them matters.
QUESTIONS = (
    "How do I retry a failed LLM call?",
    "What is exponential backoff?",
    "How should a client handle 429 rate limit errors?",
)
TOP_K = 4

WITHIN_QUERY = "How do I combine results from several retrievers?"
WITHIN_DEADLINE = 1.0


def rrf_scores(rankings: Sequence[Sequence[str]], k: int = RRF_K) -> dict[str, float]:
    """Reciprocal rank fusion as a dict: each list adds 1 / (k + rank) to every id it holds (rank from 1)."""
    return dict(rrf(rankings, k))


def _score_rankings(found: Sequence[Sequence[tuple[Any, float]]]) -> tuple[list[str], list[str]]:
    """The two wrong fusions a learner tries first: the sum of cosine scores, and the best score."""
    summed: dict[str, float] = {}
    best: dict[str, float] = {}
    for pairs in found:
        for doc, score in pairs:
            summed[doc.id] = summed.get(doc.id, 0.0) + score
            best[doc.id] = max(best.get(doc.id, -1.0), score)
    return ([i for i in sorted(summed, key=lambda i: (-summed[i], i))[:TOP_K]],
            [i for i in sorted(best, key=lambda i: (-best[i], i))[:TOP_K]])


def _ids(value: object) -> list[str]:
    """The learner's ranking as ids: accept a list of ids or of Hits."""
    __tracebackhide__ = True
    if not isinstance(value, (list, tuple)):
        fail(f"return a list of document ids, best first; got {type(value).__name__} {value!r:.80}")
    items = list(value)  # type: ignore[call-overload]
    expect(all(isinstance(getattr(item, "id", item), str) for item in items),
           f"return document ids (str, like 'doc-069'), best first; got {value!r:.120}")
    return [str(getattr(item, "id", item)) for item in items]


async def check_retrieve_all(function: Callable[..., Awaitable[Any]]) -> None:
    """``retrieve_all(stores, questions, k)``: every search at once, fused with RRF, top-k ids."""
    __tracebackhide__ = True
    require_async(function)
    stores: list[VectorStore] = [RedisStore(), PgVectorStore(), PineconeStore()]
    latencies = [store.latency.seconds() for store in stores]
    calls = len(stores) * len(QUESTIONS)
    found = [store.nearest(q, TOP_K) for q in QUESTIONS for store in stores]
    rankings = [[doc.id for doc, _ in pairs] for pairs in found]
    scores = rrf_scores(rankings)
    reference = sorted(scores, key=lambda i: (-scores[i], i))[:TOP_K]
    by_score_sum, by_best_score = _score_rankings(found)

    result = await attempt(function, stores, list(QUESTIONS), TOP_K)
    spans = result.trace.spans
    expect(len(spans) == calls,
           f"expected {calls} searches ({len(stores)} stores × {len(QUESTIONS)} questions), your function made "
           f"{len(spans)}: search every store with every question, once each.")
    asked = {(span.service, span.key) for span in spans}
    expect(len(asked) == calls,
           "some store got the same question twice and another question never: search every store with "
           "every question.")
    expect(all(span.key.startswith(f"{TOP_K}:") for span in spans),
           f"search each store for k={TOP_K} hits (store.search(question, k=k)), the depth you were asked for.")
    expect_concurrent(result, calls=calls, longest=max(latencies), total=len(QUESTIONS) * sum(latencies))
    expect_no_leaks(result)

    ids = _ids(result.result)
    expect(len(ids) == TOP_K, f"return the top k={TOP_K} fused ids, got {len(ids)}: {ids}")
    expect(len(set(ids)) == len(ids),
           f"an id appears twice in {ids}: fusion adds up a document's scores into one entry per document.")
    unknown = [i for i in ids if i not in scores]
    expect(not unknown, f"{unknown} were not retrieved by any store: return ids from the hits.")
    got = [scores[i] for i in ids]
    # Equal RRF scores (the same ranks in different lists) may come in either order: compare scores,
    # not positions, with a tolerance for the order the floats were added in.
    in_order = all(a >= b - 1e-12 for a, b in itertools.pairwise(got))
    cutoff = min(got)
    best_left_out = max((s for i, s in scores.items() if i not in ids), default=0.0)
    if not in_order or best_left_out > cutoff + 1e-12:
        if ids in (by_score_sum, by_best_score):
            how = "added up" if ids == by_score_sum else "took the best of"
            fail(f"your ranking {ids} {how} the cosine scores, but each store scores with its own embedding model: "
                 f"0.8 in one is not 0.8 in another, so scores from different stores cannot be compared. Fuse by "
                 f"rank instead: reciprocal rank fusion gives {reference}, 1/({RRF_K} + rank) from each list.")
        detail = ", ".join(f"{i} {scores[i]:.4f}" for i in reference)
        fail(f"your fused ranking {ids} is not the RRF ranking {reference} ({detail}). Give every id "
             f"1/({RRF_K} + rank) from each list it appears in (rank 1 = best), add them up, sort by the sum, "
             "highest first.")
    passed(f"retrieve_all: {calls} searches at once in {result.elapsed:.2f} s (the slowest store, "
           f"{max(latencies):g} s; one after another would take {len(QUESTIONS) * sum(latencies):.1f} s); "
           f"fused top {TOP_K}: {ids}.")


async def _within(
    function: Callable[..., Awaitable[Any]], stores: Sequence[VectorStore], query: str, deadline: float
) -> tuple[Any, list[str]]:
    """Run the learner's function with a guard, and see which stores still work when it returns."""
    __tracebackhide__ = True
    # At speed s, asyncio.timeout(deadline) waits deadline *wall* seconds = s × deadline simulated:
    # the guard waits a little past that, so the mistake can be told from having no timeout at all.
    speed = get_speed()
    guard = 3 * deadline if speed <= 1.5 else 1.5 * speed * deadline
    started = now()
    try:
        async with timeout(guard) as scope:
            result = await function(stores, query, deadline)
    except TimeoutError:
        if scope.expired():
            fail(f"your function was still waiting after {guard:g} s, though the deadline is {deadline:g} s: a "
                 "hanging store never answers, and gather waits for it forever (return_exceptions does not help "
                 "with hangs). Put a timeout on each store (asynclab.timeout(deadline)) or use "
                 "asyncio.wait(..., timeout=...).")
        fail("a TimeoutError escaped from your function: catch it per store and report that store as timed out.")
    except ServiceError as exc:
        fail(f"one failing store sank the whole answer ({describe_error(exc)}). Collect each store's "
             "result or exception separately (gather(..., return_exceptions=True), or try/except per store).")
    took = now() - started
    if speed > 1.5 and within(took, speed * deadline, rel=0.2):
        fail(f"your function gave up after {took:.1f} simulated seconds, not {deadline:g}: at speed {speed:g} that "
             f"is {deadline:g} wall seconds. asyncio.timeout and asyncio.wait count wall seconds; "
             "asynclab.timeout(deadline) and asynclab.wait_for count simulated ones, like the stores.")
    still_running = [store.name for store in stores if store.in_flight]
    return result, still_running


async def check_retrieve_within(function: Callable[..., Awaitable[Any]]) -> None:
    """``retrieve_within(stores, query, deadline)`` → ``(results, failures)`` by store name."""
    __tracebackhide__ = True
    require_async(function)
    stores: list[VectorStore] = [
        RedisStore(),                                      # 0.2 s, fine
        PgVectorStore(faults=Faults(error_rate=1.0)),      # fails after 0.4 s
        PineconeStore(faults=Faults(hang_rate=1.0)),       # never answers
        VectorStore(name="elastic", latency=0.5),          # fine
        VectorStore(name="archive", latency=2.5),          # answers, but after the deadline
    ]
    good, bad = {"redis", "elastic"}, {"pgvector", "pinecone", "archive"}
    expected_ids = {store.name: [doc.id for doc, _ in store.nearest(WITHIN_QUERY, 3)] for store in stores}

    result = await attempt(_within, function, stores, WITHIN_QUERY, WITHIN_DEADLINE)
    value, still_running = result.result
    if still_running:
        fail(f"{', '.join(still_running)} still had a search running when your function returned: cancel the "
             "stragglers (task.cancel(), then await them) — asyncio.wait(timeout=...) only stops waiting, "
             "it does not stop them.")
    expect_no_leaks(result)
    expect(isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, Mapping) for v in value),
           f"return a tuple (results, failures) of two dicts keyed by store.name; got {value!r:.120}")
    results, failures = value
    expect(set(results) == good,
           f"results should hold the stores that answered in time, {sorted(good)}; yours has {sorted(results)}.")
    for name, hits in results.items():
        want = expected_ids[name]
        expect(_ids(hits) == want,
               f"results[{name!r}] should be that store's hits for the query (ids {want}), got {hits!r:.120}")
    missing = bad - set(failures)
    if missing:
        fail(f"{sorted(missing)} failed or missed the deadline, but your failures dict does not say so: "
             "report every store that did not answer (name → what happened), never drop it silently.")
    expect(not set(failures) & good,
           f"{sorted(set(failures) & good)} answered in time: they belong in results, not failures.")
    expect(within(result.elapsed, WITHIN_DEADLINE),
           f"retrieve_within took {result.elapsed:.2f} s with a deadline of {WITHIN_DEADLINE:g} s: start every "
           "search at once and wait for all of them together, up to the deadline.")
    pinecone = [span for span in result.trace.spans if span.service == "pinecone"]
    expect(bool(pinecone) and pinecone[0].outcome == "cancelled",
           "the hanging store's search should end cancelled: cancel what did not answer in time.")
    passed(f"retrieve_within: answered in {result.elapsed:.2f} s (deadline {WITHIN_DEADLINE:g} s) with "
           f"{sorted(results)}; reported {', '.join(f'{n}: {str(failures[n])[:40]}' for n in sorted(bad))}; "
           "nothing left running.")
