"""Checkers for notebook 05 · Parallel RAG retrieval.

    from asynclab.checks import lesson05
    await lesson05.check_retrieve_all(retrieve_all)
    await lesson05.check_retrieve_within(retrieve_within)

Each checker makes its own vector stores (latencies and faults it knows), runs the learner's
function in a trace, and grades the documents *and* the timing: concurrent searches, nothing
left running, failures reported rather than swallowed.

Both also grade on stores you give them, real ones included (lesson 15):

    await lesson05.check_retrieve_all(retrieve_all, stores=[RedisStore(), real_store, PineconeStore()])
    await lesson05.check_retrieve_within(retrieve_within, good=PostgresVectorStore(pool, name="postgres"))

Then the checker searches each given store once itself, before the attempt and outside its
trace, for the answer to expect, and reads how long the searches took from the trace.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from asynclab.checks import (
    Attempt,
    attempt,
    describe_error,
    expect,
    expect_about,
    expect_concurrent,
    expect_no_leaks,
    fail,
    passed,
    require_async,
    within,
)
from asynclab.clock import get_speed, now, timeout, wait_for
from asynclab.faults import Faults, ServiceError
from asynclab.fusion import RRF_K, rrf
from asynclab.services.vectorstores import Hit, PgVectorStore, PineconeStore, RedisStore, VectorStore
from asynclab.tracing import Trace, trace

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

#: Simulated seconds the checker waits for a given store's own search before it calls the store broken.
REFERENCE_TIMEOUT = 30.0


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


# -- stores given by the caller ------------------------------------------------------------------


def _store(value: object, where: str) -> VectorStore:
    """``value`` if it is a vector store instance; a TypeError naming ``where`` otherwise."""
    if isinstance(value, type) and issubclass(value, VectorStore):
        raise TypeError(f"{where} must be a vector store, got the class {value.__name__}: call it, {value.__name__}()")
    if not isinstance(value, VectorStore):
        raise TypeError(f"{where} must be a VectorStore (RedisStore(), PineconeStore(), PostgresVectorStore(pool), "
                        f"…), got {type(value).__name__} {value!r:.60}")
    return value


def _store_list(value: object, argument: str, example: str) -> list[VectorStore]:
    """``value`` as a non-empty list of vector stores, or a TypeError/ValueError naming ``argument``."""
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{argument} must be a list of vector stores, e.g. {example}; "
                        f"got {type(value).__name__} {value!r:.60}")
    if not value:
        raise ValueError(f"{argument} must hold at least one vector store, e.g. {example}; got {value!r}")
    return [_store(item, f"{argument}[{i}]") for i, item in enumerate(value)]


def _distinct(stores: Sequence[VectorStore], argument: str, whose: Mapping[str, str]) -> None:
    """The trace tells stores apart by name: two with one name would be graded as one."""
    seen = dict(whose)
    for store in stores:
        if store.name in seen:
            raise ValueError(f"{argument}: two stores are named {store.name!r} ({seen[store.name]} and "
                             f"{store!r:.60}), and the trace tells stores apart by name: give yours another "
                             "name, e.g. PostgresVectorStore(pool, name='postgres')")
        seen[store.name] = f"{store!r:.60}"


async def _search_each(
    stores: Sequence[VectorStore], queries: Sequence[str], k: int, argument: str
) -> tuple[list[list[Hit]], Trace]:
    """Every store searched for every query at once, by the checker itself: the answer to expect.

    In a trace of its own (the attempt's trace is not open yet), so these searches are never
    counted as the learner's; the lesson's own trace, if one is open around the check, sees them.
    Returned query-major, like the exercise's loops: ``[(q1, store1), (q1, store2), …]``.
    """
    pairs = [(store, query) for query in queries for store in stores]
    with trace() as own:
        found = await asyncio.gather(*(wait_for(store.search(query, k=k), REFERENCE_TIMEOUT) for store, query in pairs),
                                     return_exceptions=True)
    for (store, _), hits in zip(pairs, found, strict=True):
        if isinstance(hits, TimeoutError):
            raise ValueError(f"{argument}: {store.name} did not answer the checker's own search within "
                             f"{REFERENCE_TIMEOUT:g} s, before your function ran: give the checker stores that answer")
        if isinstance(hits, Exception):
            raise ValueError(f"{argument}: {store.name} failed the checker's own search, before your function ran "
                             f"({describe_error(hits)}): is it ready? (a PostgresVectorStore needs `await "
                             "store.load()`; a store with injected faults cannot be a reference)") from hits
        if isinstance(hits, BaseException):
            raise hits  # cancelled, or KeyboardInterrupt: not the store's answer
    for store in stores:
        if (left := len(own.by_service(store.name))) != len(queries):
            raise ValueError(f"{argument}: {store.name}'s searches left {left} span(s) in the trace for "
                             f"{len(queries)} searches; the checker grades from the trace, so a store must record "
                             "each search like the course's stores do")
    return [list(hits) for hits in found if isinstance(hits, list)], own


def _declared(store: VectorStore, query: str, k: int) -> float:
    """The simulated seconds a search of ``store`` is declared to take (0 for a real store with no delay)."""
    return store.latency.seconds(f"{k}:{query}")


def _simulated(store: VectorStore) -> bool:
    """Whether ``store`` searches through the simulation (its time is its declared latency, nothing more)."""
    return type(store).search is VectorStore.search


def _search_times(stores: Sequence[VectorStore], recorded: Trace, k: int) -> tuple[float, float, float]:
    """(the longest search, the sum of all searches, the time to start them) in simulated seconds.

    Each search counts at least its declared latency, and what it measured in the trace when that
    is longer: a real store's time is only known by measuring it, in the same run as the answer.
    The time to start them: from the attempt's start to the last search that started before the
    first answer of a store with a declared latency came back (a search started after an answer is
    a second round, not part of the start).
    """
    by_name = {store.name: store for store in stores}
    searches = [span for span in recorded.spans if span.service in by_name]
    declared = [_declared(by_name[span.service], span.key.partition(":")[2], k) for span in searches]
    costs = [max(d, span.duration) for d, span in zip(declared, searches, strict=True)]
    first_answer = min((span.end for d, span in zip(declared, searches, strict=True)
                        if d > 0 and span.end is not None), default=math.inf)
    started = max((span.queued for span in searches if span.queued <= first_answer), default=recorded.start)
    return max(costs, default=0.0), sum(costs), started - recorded.start


def _expect_all_at_once(result: Attempt, calls: int, longest: float, total: float, launch: float) -> None:
    """:func:`expect_concurrent`, allowing ``launch`` more simulated seconds above the longest search."""
    __tracebackhide__ = True
    if result.elapsed > longest + launch and result.trace.max_concurrency() > 1:
        expect_about(result.elapsed, longest + launch,
                     "your calls overlapped only partly: {measured:.2f} s, but all at once would take "
                     f"{longest:.2f} s (the longest call) plus {launch:.2f} s to start them. Start every call "
                     "before awaiting the first.")
        return
    # From the longest search to that plus the time to start them all, the answer is on time (compared
    # with itself); sequential, or quicker than the longest search: expect_concurrent's own hints.
    expect_concurrent(result, calls=calls, longest=min(max(result.elapsed, longest), longest + launch), total=total)


async def check_retrieve_all(
    function: Callable[..., Awaitable[Any]], *, stores: Sequence[VectorStore] | None = None
) -> None:
    """``retrieve_all(stores, questions, k)``: every search at once, fused with RRF, top-k ids.

    stores: the stores to grade on (default: a fresh RedisStore, PgVectorStore and PineconeStore),
    real ones included, e.g. ``[RedisStore(), PostgresVectorStore(pool, name="pgvector"),
    PineconeStore()]``. The checker searches each once itself for the ranking to expect, and the
    slowest must declare a latency long enough to tell all searches at once from one question at
    a time at this speed (a simulated store, or a ``PostgresVectorStore`` with a ``delay``).
    """
    __tracebackhide__ = True
    require_async(function)
    given = None if stores is None else _given_stores(stores)
    if given is None:
        stores = [RedisStore(), PgVectorStore(), PineconeStore()]
        latencies = [store.latency.seconds() for store in stores]
        found: list[list[tuple[Any, float]]] = [store.nearest(q, TOP_K) for q in QUESTIONS for store in stores]
    else:
        stores = given
        found = [[(hit, hit.score) for hit in hits]
                 for hits in (await _search_each(given, QUESTIONS, TOP_K, "stores"))[0]]
    calls = len(stores) * len(QUESTIONS)
    rankings = [[doc.id for doc, _ in pairs] for pairs in found]
    scores = rrf_scores(rankings)
    reference = sorted(scores, key=lambda i: (-scores[i], i))[:TOP_K]
    by_score_sum, by_best_score = _score_rankings(found)

    result = await attempt(function, list(stores), list(QUESTIONS), TOP_K)
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
    if given is None:
        expect_concurrent(result, calls=calls, longest=max(latencies), total=len(QUESTIONS) * sum(latencies))
    else:
        # A real store's search takes milliseconds of wall time: a few hundredths of a simulated second
        # at speed 20, up to ~1 s when this 2-core machine is busy. Whether such searches overlap each
        # other is below the timer noise the check forgives, and barely moves the answer's time. What
        # "all at once" means then is what the learner controls and the trace shows: every search starts
        # before the first answer comes back, so the answer takes as long as its longest search *as
        # measured in this run* (whatever the real server took this time included), not a round per
        # question. Tolerance: expect_concurrent's 10 % plus timer slack, above the longest search plus
        # the time it took to start them all. Starting them includes the driver's work on this event loop
        # for a real store (taking a connection, sending the query), which delays every search started
        # after it: the last of nine started 0.01-0.14 s after the attempt began in our runs (0.5-7 ms of
        # wall time at speed 20; 0.01-0.02 s with simulated stores only), more on a busy machine. It is
        # measured in the trace, so it is allowed as measured. It stays meaningful: only
        # searches started before the first answer count as starting, and the slowest store declares a
        # latency (checked in _given_stores) that puts a second round outside the window.
        longest, total, launch = _search_times(stores, result.trace, TOP_K)
        _expect_all_at_once(result, calls, longest, total, launch)
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
    if given is None:
        passed(f"retrieve_all: {calls} searches at once in {result.elapsed:.2f} s (the slowest store, "
               f"{max(latencies):g} s; one after another would take {len(QUESTIONS) * sum(latencies):.1f} s); "
               f"fused top {TOP_K}: {ids}.")
        return
    measured = ", ".join(f"{store.name} {max(span.duration for span in result.trace.by_service(store.name)):.3f} s"
                         for store in stores if not _simulated(store))
    measured = f" (real, measured: {measured} at most)" if measured else ""
    passed(f"retrieve_all: {calls} searches at once on {', '.join(s.name for s in stores)}{measured} in "
           f"{result.elapsed:.2f} s (the longest search, {longest:.2f} s; one after another would take {total:.1f} s); "
           f"fused top {TOP_K}: {ids}.")


def _given_stores(stores: object) -> list[VectorStore]:
    """``stores=`` checked: vector stores with distinct names, the slowest slow enough to grade concurrency."""
    given = _store_list(stores, "stores", "[RedisStore(), PostgresVectorStore(pool, name='pgvector'), PineconeStore()]")
    _distinct(given, "stores", {})
    slowest = max(given, key=lambda store: max(_declared(store, q, TOP_K) for q in QUESTIONS))
    longest = max(_declared(slowest, q, TOP_K) for q in QUESTIONS)
    if within(2 * longest, longest):  # two rounds would look like one: concurrency cannot be graded
        raise ValueError(
            f"stores: the slowest declares {longest:g} s a search ({slowest.name}), too short to tell every search "
            f"at once from one question at a time at speed {get_speed():g} (timer noise is that large); a real "
            "store's milliseconds are measured, but cannot carry the check. Include a store with a longer "
            "latency, e.g. PineconeStore() (0.6 s) or PostgresVectorStore(pool, delay=0.5)."
        )
    return given


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


#: Where the good stores stand in check_retrieve_within's line-up: the ones ``good=`` replaces, in order.
GOOD_PLACES = (0, 3)


async def check_retrieve_within(
    function: Callable[..., Awaitable[Any]], *, good: VectorStore | Sequence[VectorStore] | None = None
) -> None:
    """``retrieve_within(stores, query, deadline)`` → ``(results, failures)`` by store name.

    good: one or two stores (a real one, e.g. ``PostgresVectorStore(pool, name="postgres")``) that
    take the places of the line-up's good stores, redis then elastic; the failing, hanging and late
    stores stay simulated (a real server takes no injected faults). The checker searches each given
    store once itself for the hits to expect.
    """
    __tracebackhide__ = True
    require_async(function)
    supplied = [] if good is None else _given_good(good)
    stores: list[VectorStore] = [
        RedisStore(),                                      # 0.2 s, fine
        PgVectorStore(faults=Faults(error_rate=1.0)),      # fails after 0.4 s
        PineconeStore(faults=Faults(hang_rate=1.0)),       # never answers
        VectorStore(name="elastic", latency=0.5),          # fine
        VectorStore(name="archive", latency=2.5),          # answers, but after the deadline
    ]
    expected_ids = {store.name: [doc.id for doc, _ in store.nearest(WITHIN_QUERY, 3)] for store in stores}
    if supplied:
        kept = [store for i, store in enumerate(stores) if i not in GOOD_PLACES[:len(supplied)]]
        _distinct(supplied, "good", {store.name: f"the line-up's {store.name} store" for store in kept})
        found, own = await _search_each(supplied, [WITHIN_QUERY], 3, "good")
        for store, hits in zip(supplied, found, strict=True):
            span = own.by_service(store.name)[0]
            if span.duration >= WITHIN_DEADLINE:
                raise ValueError(f"good: {store.name} took {span.duration:.2f} s to answer the checker's own search, "
                                 f"and a good store must answer within the {WITHIN_DEADLINE:g} s deadline")
            expected_ids[store.name] = [hit.id for hit in hits]
        for place, store in zip(GOOD_PLACES, supplied, strict=False):  # one or both places
            stores[place] = store
    good_names = {stores[place].name for place in GOOD_PLACES}
    bad = {"pgvector", "pinecone", "archive"}

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
    for store in supplied:
        # A real server on a busy machine may, now and then, take longer than the deadline: then the
        # answer was right to give up on it, and the check cannot grade it as a good store this time.
        # 0.9 × the deadline: a search cancelled at the deadline ends within timer noise of it, while one
        # the answer cancelled early (its own mistake) is left to the hints below.
        late = [span for span in result.trace.by_service(store.name)
                if span.outcome != "ok" and span.duration >= 0.9 * WITHIN_DEADLINE]
        expect(not late, f"{store.name} did not answer within the {WITHIN_DEADLINE:g} s deadline this time (the real "
                         "server was slow: a busy machine, not your code), so it could not count as a good store. "
                         "Run the check again.")
    expect(set(results) == good_names,
           f"results should hold the stores that answered in time, {sorted(good_names)}; yours has {sorted(results)}.")
    for name, hits in results.items():
        want = expected_ids[name]
        expect(_ids(hits) == want,
               f"results[{name!r}] should be that store's hits for the query (ids {want}), got {hits!r:.120}")
    missing = bad - set(failures)
    if missing:
        fail(f"{sorted(missing)} failed or missed the deadline, but your failures dict does not say so: "
             "report every store that did not answer (name → what happened), never drop it silently.")
    expect(not set(failures) & good_names,
           f"{sorted(set(failures) & good_names)} answered in time: they belong in results, not failures.")
    expect(within(result.elapsed, WITHIN_DEADLINE),
           f"retrieve_within took {result.elapsed:.2f} s with a deadline of {WITHIN_DEADLINE:g} s: start every "
           "search at once and wait for all of them together, up to the deadline.")
    pinecone = [span for span in result.trace.spans if span.service == "pinecone"]
    expect(bool(pinecone) and pinecone[0].outcome == "cancelled",
           "the hanging store's search should end cancelled: cancel what did not answer in time.")
    passed(f"retrieve_within: answered in {result.elapsed:.2f} s (deadline {WITHIN_DEADLINE:g} s) with "
           f"{sorted(results)}; reported {', '.join(f'{n}: {str(failures[n])[:40]}' for n in sorted(bad))}; "
           "nothing left running.")


def _given_good(good: object) -> list[VectorStore]:
    """``good=`` checked: one store or a list of one or two, each declared quicker than the deadline."""
    example = "PostgresVectorStore(pool, name='postgres')"
    supplied = _store_list(good, "good", f"[{example}]") if isinstance(good, (list, tuple)) else [_store(good, "good")]
    if len(supplied) > len(GOOD_PLACES):
        raise ValueError(f"good takes at most {len(GOOD_PLACES)} stores (the line-up's good ones, redis and elastic), "
                         f"got {len(supplied)}: {[store.name for store in supplied]}")
    for store in supplied:
        declared = _declared(store, WITHIN_QUERY, 3)
        if declared >= WITHIN_DEADLINE or within(declared, WITHIN_DEADLINE):
            raise ValueError(f"good: {store.name} declares {declared:g} s a search, and a good store must answer well "
                             f"within the {WITHIN_DEADLINE:g} s deadline; give it a shorter latency or delay")
    return supplied
