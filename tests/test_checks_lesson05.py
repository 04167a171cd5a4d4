"""The notebook 05 checkers pass the reference solutions and fail wrong ones with their hints."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from asynclab import Hit, VectorStore, get_speed, timeout
from asynclab.checks import ExerciseFailed, lesson05

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


async def test_retrieve_all_passes_the_reference(fast: float, capsys: pytest.CaptureFixture[str]) -> None:
    await lesson05.check_retrieve_all(retrieve_all)
    assert "✅ retrieve_all: 9 searches at once" in capsys.readouterr().out


async def test_retrieve_all_says_sequential_searches_take_the_sum(fast: float) -> None:
    async def sequential(stores: Sequence[VectorStore], questions: Sequence[str], k: int = 3) -> list[str]:
        lists = [[hit.id for hit in await store.search(q, k=k)] for q in questions for store in stores]
        return rrf(lists)[:k]

    with pytest.raises(ExerciseFailed, match=r"your 9 calls ran one after another: \d\.\d\d s, the sum \(3\.60 s\)"):
        await lesson05.check_retrieve_all(sequential)


async def test_retrieve_all_says_one_gather_per_question_overlaps_only_partly(fast: float) -> None:
    async def per_question(stores: Sequence[VectorStore], questions: Sequence[str], k: int = 3) -> list[str]:
        lists = []
        for q in questions:
            for hits in await asyncio.gather(*(store.search(q, k=k) for store in stores)):
                lists.append([hit.id for hit in hits])
        return rrf(lists)[:k]

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
    async def score_sum(stores: Sequence[VectorStore], questions: Sequence[str], k: int = 3) -> list[str]:
        results = await asyncio.gather(*(store.search(q, k=k) for q in questions for store in stores))
        total: dict[str, float] = {}
        for hit in (hit for hits in results for hit in hits):
            total[hit.id] = total.get(hit.id, 0.0) + hit.score
        return sorted(total, key=lambda i: (-total[i], i))[:k]

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
    async def no_cancel(stores: Sequence[VectorStore], query: str, deadline: float) -> Results:
        tasks = {asyncio.create_task(store.search(query)): store.name for store in stores}
        done, pending = await asyncio.wait(tasks, timeout=deadline / get_speed())  # asyncio counts wall seconds
        results = {tasks[t]: t.result() for t in done if t.exception() is None}
        failures = {tasks[t]: "failed" for t in done if t.exception() is not None}
        return results, failures | {tasks[t]: "timed out" for t in pending}

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
