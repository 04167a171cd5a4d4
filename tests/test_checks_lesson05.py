"""The notebook 05 checkers pass the reference solutions and fail wrong ones with their hints."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Any

import pytest

from asynclab import Hit, PgVectorStore, PineconeStore, RedisStore, VectorStore, get_speed, timeout
from asynclab.checks import ExerciseFailed, lesson05
from asynclab.faults import Faults

# -- retrieve_all ------------------------------------------------------------------------------


def rrf(rankings: Sequence[Sequence[str]], k: int = 60) -> list[str]:
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, doc_id in enumerate(ranking, start=1):
            scores[doc_id] = scores.get(doc_id, 0.0) + 1 / (k + rank)
    return sorted(scores, key=lambda doc_id: (-scores[doc_id], doc_id))


async def retrieve_all(stores: Sequence[VectorStore], questions: Sequence[str], k: int = 3) -> list[str]:
    """The reference solution (as in the solutions notebook)."""
    searches = [store.search(q, k=k) for q in questions for store in stores]
    results = await asyncio.gather(*searches)
    return rrf([[hit.id for hit in hits] for hits in results])[:k]


# Wrong answers that the tests on simulated stores and on a real Postgres store share.


async def sequential(stores: Sequence[VectorStore], questions: Sequence[str], k: int = 3) -> list[str]:
    """Each search awaited before the next starts."""
    return rrf([[hit.id for hit in await store.search(q, k=k)] for q in questions for store in stores])[:k]


async def per_question(stores: Sequence[VectorStore], questions: Sequence[str], k: int = 3) -> list[str]:
    """One gather per question: the stores at once, the questions one after another."""
    lists = []
    for q in questions:
        lists += [[hit.id for hit in hits] for hits in await asyncio.gather(*(s.search(q, k=k) for s in stores))]
    return rrf(lists)[:k]


async def score_sum(stores: Sequence[VectorStore], questions: Sequence[str], k: int = 3) -> list[str]:
    """All at once, but ranked by summed cosine scores instead of RRF."""
    results = await asyncio.gather(*(store.search(q, k=k) for q in questions for store in stores))
    total: dict[str, float] = {}
    for hit in (hit for hits in results for hit in hits):
        total[hit.id] = total.get(hit.id, 0.0) + hit.score
    return sorted(total, key=lambda i: (-total[i], i))[:k]


async def test_retrieve_all_passes_the_reference(fast: float, capsys: pytest.CaptureFixture[str]) -> None:
    await lesson05.check_retrieve_all(retrieve_all)
    assert "✅ retrieve_all: 9 searches at once" in capsys.readouterr().out


async def test_retrieve_all_says_sequential_searches_take_the_sum(fast: float) -> None:
    with pytest.raises(ExerciseFailed, match=r"your 9 calls ran one after another: \d\.\d\d s, the sum \(3\.60 s\)"):
        await lesson05.check_retrieve_all(sequential)


async def test_retrieve_all_says_one_gather_per_question_overlaps_only_partly(fast: float) -> None:
    with pytest.raises(ExerciseFailed, match="overlapped only partly"):
        await lesson05.check_retrieve_all(per_question)


async def test_retrieve_all_catches_a_ranking_that_is_not_rrf(fast: float) -> None:
    async def best_score(stores: Sequence[VectorStore], questions: Sequence[str], k: int = 3) -> list[str]:
        results = await asyncio.gather(*(store.search(q, k=k) for q in questions for store in stores))
        best: dict[str, float] = {}
        for hit in (hit for hits in results for hit in hits):  # rank by the best cosine score instead
            best[hit.id] = max(best.get(hit.id, 0.0), hit.score)
        return sorted(best, key=lambda i: -best[i])[:k]

    with pytest.raises(ExerciseFailed, match=r"took the best of the cosine scores, but each store scores with its own "
                                             r"embedding model.*1/\(60 \+ rank\)"):
        await lesson05.check_retrieve_all(best_score)


async def test_retrieve_all_tells_summed_cosine_scores_from_rrf(fast: float) -> None:
    """Issue 7: on the checker's data, summing scores gives another top k than RRF (doc-070 for doc-013)."""
    with pytest.raises(ExerciseFailed, match=r"added up the cosine scores.*reciprocal rank fusion gives"):
        await lesson05.check_retrieve_all(score_sum)


async def test_retrieve_all_catches_any_other_ranking(fast: float) -> None:
    async def reversed_rrf(stores: Sequence[VectorStore], questions: Sequence[str], k: int = 3) -> list[str]:
        return list(reversed(await retrieve_all(stores, questions, k)))

    with pytest.raises(ExerciseFailed, match=r"is not the RRF ranking .*1/\(60 \+ rank\)"):
        await lesson05.check_retrieve_all(reversed_rrf)


async def test_retrieve_all_catches_an_extra_search(fast: float) -> None:
    async def one_more(stores: Sequence[VectorStore], questions: Sequence[str], k: int = 3) -> list[str]:
        extra = asyncio.create_task(stores[-1].search("one more question", k=k))  # never awaited
        ids = await retrieve_all(stores, questions, k)
        del extra
        return ids

    with pytest.raises(ExerciseFailed, match=r"expected 9 searches .* your function made 10"):
        await lesson05.check_retrieve_all(one_more)


# -- retrieve_within ---------------------------------------------------------------------------

Results = tuple[dict[str, list[Hit]], dict[str, str]]


async def retrieve_within(stores: Sequence[VectorStore], query: str, deadline: float) -> Results:
    """The reference solution (as in the solutions notebook)."""

    async def search(store: VectorStore) -> list[Hit]:
        async with timeout(deadline):  # simulated seconds, like the stores
            return await store.search(query)

    outcomes = await asyncio.gather(*(search(store) for store in stores), return_exceptions=True)
    results: dict[str, list[Hit]] = {}
    failures: dict[str, str] = {}
    for store, outcome in zip(stores, outcomes, strict=True):
        if isinstance(outcome, TimeoutError):
            failures[store.name] = "timed out"
        elif isinstance(outcome, BaseException):
            failures[store.name] = type(outcome).__name__
        else:
            results[store.name] = outcome
    return results, failures


async def no_cancel(stores: Sequence[VectorStore], query: str, deadline: float) -> Results:
    """A deadline kept with asyncio.wait, but the searches still running are never cancelled."""
    tasks = {asyncio.create_task(store.search(query)): store.name for store in stores}
    done, pending = await asyncio.wait(tasks, timeout=deadline / get_speed())  # asyncio counts wall seconds
    results = {tasks[t]: t.result() for t in done if t.exception() is None}
    failures = {tasks[t]: "failed" for t in done if t.exception() is not None}
    return results, failures | {tasks[t]: "timed out" for t in pending}


async def test_retrieve_within_passes_the_reference(fast: float, capsys: pytest.CaptureFixture[str]) -> None:
    await lesson05.check_retrieve_within(retrieve_within)
    out = capsys.readouterr().out
    assert "✅ retrieve_within" in out and "pinecone: timed out" in out and "pgvector: ServiceUnavailable" in out


async def test_retrieve_within_also_passes_asyncio_wait_with_cancellation(fast: float) -> None:
    async def with_wait(stores: Sequence[VectorStore], query: str, deadline: float) -> Results:
        tasks = {asyncio.create_task(store.search(query)): store.name for store in stores}
        done, pending = await asyncio.wait(tasks, timeout=deadline / get_speed())  # asyncio counts wall seconds
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        results = {tasks[t]: t.result() for t in done if t.exception() is None}
        failures = {tasks[t]: repr(t.exception()) for t in done if t.exception() is not None}
        failures |= {tasks[t]: "timed out" for t in pending}
        return results, failures

    await lesson05.check_retrieve_within(with_wait)


async def test_retrieve_within_says_a_plain_gather_lets_one_failure_sink_everything(fast: float) -> None:
    async def plain_gather(stores: Sequence[VectorStore], query: str, deadline: float) -> Results:
        hits = await asyncio.gather(*(store.search(query) for store in stores))
        return dict(zip([s.name for s in stores], hits, strict=True)), {}

    with pytest.raises(ExerciseFailed, match=r"one failing store sank the whole answer \(ServiceUnavailable"):
        await lesson05.check_retrieve_within(plain_gather)


async def test_retrieve_within_says_return_exceptions_does_not_help_with_a_hang(fast: float) -> None:
    async def no_timeout(stores: Sequence[VectorStore], query: str, deadline: float) -> Results:
        outcomes = await asyncio.gather(*(store.search(query) for store in stores), return_exceptions=True)
        results = {s.name: o for s, o in zip(stores, outcomes, strict=True) if isinstance(o, list)}
        return results, {s.name: repr(o) for s, o in zip(stores, outcomes, strict=True) if not isinstance(o, list)}

    with pytest.raises(ExerciseFailed, match=r"still waiting after \d+ s, though the deadline is 1 s: a hanging store"):
        await lesson05.check_retrieve_within(no_timeout)


async def test_retrieve_within_says_to_cancel_the_stragglers(fast: float) -> None:
    with pytest.raises(ExerciseFailed, match=r"pinecone, archive still had a search running .* cancel the stragglers"):
        await lesson05.check_retrieve_within(no_cancel)


async def test_retrieve_within_catches_failures_swallowed_silently(fast: float) -> None:
    async def silent(stores: Sequence[VectorStore], query: str, deadline: float) -> Results:
        results, _ = await retrieve_within(stores, query, deadline)
        return results, {}

    with pytest.raises(ExerciseFailed, match=r"\['archive', 'pgvector', 'pinecone'\] failed or missed the deadline"):
        await lesson05.check_retrieve_within(silent)


async def test_retrieve_within_with_a_timeout_in_wall_seconds_is_told_to_use_simulated_ones(fast: float) -> None:
    """Issue 7: a learner who did put a timeout on each store, in asyncio's wall seconds, hears exactly that."""
    async def wall_timeout(stores: Sequence[VectorStore], query: str, deadline: float) -> Results:
        async def one(store: VectorStore) -> Any:
            async with asyncio.timeout(deadline):  # wall seconds: 20 simulated seconds at speed 20
                return await store.search(query)

        outcomes = await asyncio.gather(*(one(store) for store in stores), return_exceptions=True)
        results = {s.name: o for s, o in zip(stores, outcomes, strict=True) if not isinstance(o, BaseException)}
        failures = {s.name: repr(o) for s, o in zip(stores, outcomes, strict=True) if isinstance(o, BaseException)}
        return results, failures

    with pytest.raises(ExerciseFailed, match=r"gave up after 2\d\.\d simulated seconds, not 1: at speed 20 that is 1 "
                                             r"wall seconds\. asyncio\.timeout and asyncio\.wait count wall seconds"):
        await lesson05.check_retrieve_within(wall_timeout)


async def test_retrieve_within_with_asynclab_timeout_per_store_passes(fast: float) -> None:
    async def simulated_timeout(stores: Sequence[VectorStore], query: str, deadline: float) -> Results:
        async def one(store: VectorStore) -> Any:
            async with timeout(deadline):
                return await store.search(query)

        outcomes = await asyncio.gather(*(one(store) for store in stores), return_exceptions=True)
        results = {s.name: o for s, o in zip(stores, outcomes, strict=True) if not isinstance(o, BaseException)}
        failures = {s.name: repr(o) for s, o in zip(stores, outcomes, strict=True) if isinstance(o, BaseException)}
        return results, failures

    await lesson05.check_retrieve_within(simulated_timeout)


# -- stores given by the caller: simulated ---------------------------------------------------------


def the_sum(failed: ExerciseFailed) -> float:
    """The "one after another" sum a sequential hint names, in simulated seconds."""
    found = re.search(r"the sum \((\d+\.\d\d) s\)", failed.hint)
    assert found, failed.hint
    return float(found.group(1))


async def test_retrieve_all_grades_on_stores_it_is_given(fast: float, capsys: pytest.CaptureFixture[str]) -> None:
    stores = [RedisStore(), VectorStore(name="elastic", latency=0.5), PineconeStore()]
    await lesson05.check_retrieve_all(retrieve_all, stores=stores)
    assert "✅ retrieve_all: 9 searches at once on redis, elastic, pinecone in" in capsys.readouterr().out
    # The checker searched each store once per question itself (its expected ranking), then the answer did.
    assert [store.calls for store in stores] == [6, 6, 6]


async def test_retrieve_all_expects_the_ranking_of_the_stores_it_is_given(fast: float) -> None:
    """On other stores the RRF ranking is another: an answer fixed to the default stores' ranking fails."""
    default_stores = [RedisStore(), PgVectorStore(), PineconeStore()]
    default_ranking = await retrieve_all(default_stores, list(lesson05.QUESTIONS), lesson05.TOP_K)

    async def fixed(stores: Sequence[VectorStore], questions: Sequence[str], k: int = 3) -> list[str]:
        await asyncio.gather(*(store.search(q, k=k) for q in questions for store in stores))
        return default_ranking

    whole_base = [VectorStore(name="everything", latency=0.6), RedisStore()]
    assert await retrieve_all(whole_base, list(lesson05.QUESTIONS), lesson05.TOP_K) != default_ranking
    with pytest.raises(ExerciseFailed, match=r"is not the RRF ranking|were not retrieved by any store"):
        await lesson05.check_retrieve_all(fixed, stores=whole_base)


async def test_retrieve_all_on_given_stores_still_names_a_sequential_answer(fast: float) -> None:
    with pytest.raises(ExerciseFailed, match=r"your 6 calls ran one after another: \d+\.\d\d s, the sum") as failed:
        await lesson05.check_retrieve_all(sequential, stores=[RedisStore(), PineconeStore()])
    # The sum is each search's time, at least its declared latency: 3 × (0.2 + 0.6) s, plus each one's timer
    # lateness (0.3-2 ms of wall time on this machine; 5 ms each allows for a busy moment), ×speed.
    assert 2.4 <= the_sum(failed.value) < 2.4 + 6 * 0.005 * fast, failed.value.hint


@pytest.mark.parametrize(("stores", "error", "message"), [
    (RedisStore(), TypeError, r"stores must be a list of vector stores, e\.g\. \[RedisStore\(\), .*got RedisStore"),
    ("redis", TypeError, r"stores must be a list of vector stores.*got str 'redis'"),
    ([], ValueError, r"stores must hold at least one vector store.*got \[\]"),
    ([RedisStore(), PineconeStore], TypeError, r"stores\[1\] must be a vector store, got the class PineconeStore: "
                                               r"call it, PineconeStore\(\)"),
    ([RedisStore(), "pinecone"], TypeError,
     r"stores\[1\] must be a VectorStore \(RedisStore\(\), .*got str 'pinecone'"),
    ([PgVectorStore(), PgVectorStore(latency=0.1)], ValueError,
     r"stores: two stores are named 'pgvector'.*another name"),
    ([RedisStore(latency=0.01), PineconeStore(latency=0.05)], ValueError,
     r"stores: the slowest declares 0\.05 s a search \(pinecone\), too short to tell every search at once from one "
     r"question at a time at speed 20"),
])
async def test_retrieve_all_refuses_bad_stores_naming_the_argument(
    fast: float, stores: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        await lesson05.check_retrieve_all(retrieve_all, stores=stores)


async def test_retrieve_all_refuses_a_store_that_fails_its_own_search_before_grading(fast: float) -> None:
    async def never_called(stores: Sequence[VectorStore], questions: Sequence[str], k: int = 3) -> list[str]:
        raise AssertionError("the learner's function must not run when the stores are unusable")

    failing = PineconeStore(faults=Faults(error_rate=1.0))
    with pytest.raises(ValueError, match=r"stores: pinecone failed the checker's own search, before your function ran "
                                         r"\(ServiceUnavailable"):
        await lesson05.check_retrieve_all(never_called, stores=[RedisStore(), failing])


async def test_retrieve_all_refuses_a_store_that_never_answers_its_own_search(
    fast: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lesson05, "REFERENCE_TIMEOUT", 2.0)  # 0.1 s of wall time at speed 20, not 1.5 s
    hanging = PineconeStore(faults=Faults(hang_rate=1.0))
    with pytest.raises(ValueError, match=r"stores: pinecone did not answer the checker's own search within 2 s"):
        await lesson05.check_retrieve_all(retrieve_all, stores=[RedisStore(), hanging])
    assert hanging.in_flight == 0  # the checker's hanging search was cancelled, not left behind


async def test_retrieve_within_grades_with_a_good_store_it_is_given(
    fast: float, capsys: pytest.CaptureFixture[str]
) -> None:
    opensearch = VectorStore(name="opensearch", latency=0.3)
    await lesson05.check_retrieve_within(retrieve_within, good=opensearch)
    out = capsys.readouterr().out
    assert "✅ retrieve_within" in out and "['elastic', 'opensearch']" in out and "pinecone: timed out" in out
    assert opensearch.calls == 2  # the checker's own search, then the answer's


async def test_retrieve_within_does_not_blame_the_answer_for_a_given_store_that_was_slow_this_time(fast: float) -> None:
    """A real server on a busy machine may miss the deadline in one run: the hint says so, not "your results"."""

    class FastThenSlow:
        """Quick while the checker looks (its declared latency, its own search), then slower than the deadline."""

        def __init__(self) -> None:
            self.asked = 0

        def seconds(self, key: str = "", n: int = 1) -> float:
            self.asked += 1
            return 0.1 if self.asked <= 2 else 5.0

    hint = r"moody did not answer within the 1 s deadline this time \(the real server was slow: a busy machine, not"
    with pytest.raises(ExerciseFailed, match=hint + r" your code\).*Run the check again"):
        await lesson05.check_retrieve_within(retrieve_within, good=VectorStore(name="moody", latency=FastThenSlow()))


@pytest.mark.parametrize(("good", "error", "message"), [
    ("postgres", TypeError, r"good must be a VectorStore \(RedisStore\(\), .*got str 'postgres'"),
    ([RedisStore, ], TypeError, r"good\[0\] must be a vector store, got the class RedisStore"),
    ([], ValueError, r"good must hold at least one vector store"),
    ([VectorStore(name=n, latency=0.1) for n in "abc"], ValueError, r"good takes at most 2 stores .*got 3"),
    (PgVectorStore(latency=0.1), ValueError, r"good: two stores are named 'pgvector' \(the line-up's pgvector store "
                                             r"and .*give yours another name"),
    (VectorStore(name="slow", latency=0.95), ValueError, r"good: slow declares 0\.95 s a search, and a good store must "
                                                         r"answer well within the 1 s deadline"),
])
async def test_retrieve_within_refuses_bad_good_stores_naming_the_argument(
    fast: float, good: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        await lesson05.check_retrieve_within(retrieve_within, good=good)


# -- stores given by the caller: a real Postgres + pgvector ----------------------------------------


async def real_store(pool: Any, **options: Any) -> Any:
    from asynclab.backends import PostgresVectorStore

    store = PostgresVectorStore(pool, **options)
    await store.load()
    return store


async def test_retrieve_all_reference_passes_on_a_real_postgres_store(
    pool: Any, fast: float, capsys: pytest.CaptureFixture[str]
) -> None:
    real = await real_store(pool, name="pgvector")
    await lesson05.check_retrieve_all(retrieve_all, stores=[RedisStore(), real, PineconeStore()])
    out = capsys.readouterr().out
    assert "✅ retrieve_all: 9 searches at once on redis, pgvector, pinecone (real, measured: pgvector" in out
    assert real.calls == 2 * len(lesson05.QUESTIONS)  # the checker's own searches, then the answer's


async def test_retrieve_all_with_a_real_store_names_the_sequential_answer(pool: Any, fast: float) -> None:
    real = await real_store(pool, name="pgvector")

    hint = r"your 9 calls ran one after another: \d+\.\d\d s, the sum \(\d+\.\d\d s\)\. Start them all before awaiting"
    with pytest.raises(ExerciseFailed, match=hint) as failed:
        await lesson05.check_retrieve_all(sequential, stores=[RedisStore(), real, PineconeStore()])
    # The sum: 3 × (0.2 + 0.6) s declared, plus the real store's three searches as measured (a few ms of
    # wall time each, ×speed): above 2.4 s, and below it plus 50 ms of wall time per real search.
    assert 2.4 < the_sum(failed.value) < 2.4 + 3 * 0.05 * fast, failed.value.hint


async def test_retrieve_all_with_a_real_store_tells_a_second_round_from_the_start(pool: Any, fast: float) -> None:
    """Only searches started before the first answer count as starting: a second round is not forgiven."""
    real = await real_store(pool, name="pgvector")

    async def two_rounds(stores: Sequence[VectorStore], questions: Sequence[str], k: int = 3) -> list[str]:
        first = await asyncio.gather(*(s.search(questions[0], k=k) for s in stores))
        rest = await asyncio.gather(*(s.search(q, k=k) for q in questions[1:] for s in stores))
        return rrf([[hit.id for hit in hits] for hits in [*first, *rest]])[:k]

    with pytest.raises(ExerciseFailed, match=r"overlapped only partly: 1\.\d\d s, but all at once would take 0\.6\d s "
                                             r"\(the longest call\)"):
        await lesson05.check_retrieve_all(two_rounds, stores=[RedisStore(), real, PineconeStore()])


async def test_retrieve_all_with_a_real_store_names_one_gather_per_question(pool: Any, fast: float) -> None:
    """The simulated stores still dominate: three rounds of 0.6 s are told from one, real store or not."""
    real = await real_store(pool, name="pgvector")

    with pytest.raises(ExerciseFailed, match="overlapped only partly"):
        await lesson05.check_retrieve_all(per_question, stores=[RedisStore(), real, PineconeStore()])


async def test_retrieve_all_with_a_real_store_tells_summed_scores_from_rrf(pool: Any, fast: float) -> None:
    real = await real_store(pool, name="pgvector")

    with pytest.raises(ExerciseFailed, match=r"added up the cosine scores.*reciprocal rank fusion gives"):
        await lesson05.check_retrieve_all(score_sum, stores=[RedisStore(), real, PineconeStore()])


async def test_only_real_stores_need_a_declared_delay_to_grade_concurrency(pool: Any, fast: float) -> None:
    quick = [await real_store(pool, like=like, name=f"real_{like.default_name}")
             for like in (RedisStore, PgVectorStore, PineconeStore)]
    with pytest.raises(ValueError, match=r"stores: the slowest declares 0 s a search \(real_redis\), too short"):
        await lesson05.check_retrieve_all(retrieve_all, stores=quick)

    # With a delay each (pg_sleep on the server) they declare a latency, and the check grades them. Nine
    # searches share the pool's 4 connections, so some queue: the longest search counts its wait too.
    slow = [await real_store(pool, like=like, name=f"slow_{like.default_name}", delay=delay)
            for like, delay in ((RedisStore, 0.2), (PgVectorStore, 0.4), (PineconeStore, 0.6))]
    assert [store.latency.seconds() for store in slow] == [0.2, 0.4, 0.6]
    await lesson05.check_retrieve_all(retrieve_all, stores=slow)


async def test_retrieve_within_reference_passes_with_a_real_good_store(
    pool: Any, fast: float, capsys: pytest.CaptureFixture[str]
) -> None:
    real = await real_store(pool, name="postgres")
    await lesson05.check_retrieve_within(retrieve_within, good=real)
    out = capsys.readouterr().out
    assert "✅ retrieve_within" in out and "['elastic', 'postgres']" in out and "pgvector: ServiceUnavailable" in out
    assert real.calls == 2 and real.in_flight == 0


async def test_retrieve_within_with_a_real_good_store_says_to_cancel_the_stragglers(pool: Any, fast: float) -> None:
    real = await real_store(pool, name="postgres")

    with pytest.raises(ExerciseFailed, match=r"pinecone, archive still had a search running .* cancel the stragglers"):
        await lesson05.check_retrieve_within(no_cancel, good=[real, VectorStore(name="opensearch", latency=0.3)])


async def test_retrieve_within_refuses_a_real_store_named_like_a_failing_one_or_not_loaded(
    pool: Any, fast: float
) -> None:
    from asynclab.backends import PostgresVectorStore

    with pytest.raises(ValueError, match=r"good: two stores are named 'pgvector' \(the line-up's pgvector store"):
        await lesson05.check_retrieve_within(retrieve_within, good=PostgresVectorStore(pool, name="pgvector"))
    with pytest.raises(ValueError, match=r"good: postgres failed the checker's own search.*UndefinedTableError.*"
                                         r"await store\.load\(\)"):
        await lesson05.check_retrieve_within(retrieve_within, good=PostgresVectorStore(pool, table="kb_not_loaded"))
