"""PostgresVectorStore: the simulated store's interface and answers, from a real Postgres + pgvector."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

asyncpg = pytest.importorskip("asyncpg")
pytest.importorskip("pgserver")

from asynclab import text, trace  # noqa: E402
from asynclab.backends import EmbeddedPostgres, PostgresVectorStore  # noqa: E402
from asynclab.checks import lesson05  # noqa: E402
from asynclab.clock import timeout  # noqa: E402
from asynclab.faults import Faults  # noqa: E402
from asynclab.fusion import rrf  # noqa: E402
from asynclab.services.vectorstores import PgVectorStore, PineconeStore, RedisStore, VectorStore  # noqa: E402

#: Hits carry scores rounded to 4 decimals, as the simulated stores'; pgvector's 32-bit floats move a cosine
#: by ~1e-7, which can flip the 4th decimal: 1e-4 plus that.
SCORE_TOLERANCE = 1e-4 + 1e-6

QUESTIONS = [doc.title for doc in text.load_corpus()[::5]] + [
    "How do I retry a failed LLM call?",
    "What is exponential backoff?",
    "how does a connection pool limit concurrency?",
]


@pytest.mark.parametrize("like", [PgVectorStore, PineconeStore, RedisStore])
async def test_top_k_equals_the_simulated_stores_cosine_top_k(pool: Any, like: type[VectorStore]) -> None:
    store = PostgresVectorStore(pool, like=like, name=f"real_{like.default_name}")
    assert await store.load() == len(like.collection.documents())
    simulated = like()
    for question in QUESTIONS:
        hits = await store.search(question, k=5)
        expected = simulated.nearest(question, 5)
        assert [hit.id for hit in hits] == [doc.id for doc, _ in expected], question
        assert [hit.score for hit in hits] == pytest.approx([round(s, 4) for _, s in expected], abs=SCORE_TOLERANCE)
        assert {hit.store for hit in hits} == {store.name}


async def test_a_query_embedding_finds_what_the_query_text_finds(pool: Any) -> None:
    store = PostgresVectorStore(pool, like=PineconeStore)
    await store.load()
    vector = text.embed("what is time to first token?", 256, seed=0)
    by_text = await store.search("what is time to first token?", k=3)
    by_vector = await store.search(np.asarray(vector), k=3)
    assert [h.id for h in by_vector] == [h.id for h in by_text]
    with pytest.raises(ValueError, match=r"shape \(256,\)"):
        await store.search(np.ones(384), k=3)


async def test_every_search_is_a_span_in_the_current_trace(pool: Any) -> None:
    store = PostgresVectorStore(pool)
    await store.load()
    with trace() as t:
        await asyncio.gather(store.search("postmortem of the outage", k=2), store.search("design review", k=4))
    assert sorted(span.key for span in t.spans) == ["2:postmortem of the outage", "4:design review"]
    assert {span.name for span in t.spans} == {"postgres.search"}
    assert all(span.outcome == "ok" and span.end is not None for span in t.spans)
    assert store.calls == 2 and store.in_flight == 0


async def test_a_pool_of_one_connection_serves_one_search_at_a_time(postgres: EmbeddedPostgres) -> None:
    pool = await asyncpg.create_pool(postgres.dsn, min_size=1, max_size=1)
    try:
        store = PostgresVectorStore(pool, table="kb_pool_of_one")
        await store.load()
        with trace() as t:
            await asyncio.gather(*(store.search(q, k=3) for q in QUESTIONS[:8]))
    finally:
        await pool.close()
    assert t.max_concurrency() == 1  # the pool is the limit: searches queue for its one connection
    assert sum(span.wait > 0 for span in t.spans) >= 7  # all but the first waited for the connection


async def test_a_failing_query_closes_its_span_with_the_error(pool: Any) -> None:
    store = PostgresVectorStore(pool, table="kb_never_loaded")
    with trace() as t, pytest.raises(asyncpg.UndefinedTableError):
        await store.search("anything", k=3)
    assert t.spans[0].outcome == "UndefinedTableError"
    assert store.in_flight == 0


def test_bad_arguments_name_the_argument_and_what_is_allowed() -> None:
    with pytest.raises(TypeError, match=r"pool must be an asyncpg pool.*got str"):
        PostgresVectorStore("postgresql://nowhere")
    fake_pool = type("P", (), {"acquire": lambda self: None})()
    with pytest.raises(TypeError, match="like must be a VectorStore class"):
        PostgresVectorStore(fake_pool, like=PgVectorStore())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"table must be a lower-case SQL name.*'kb; DROP'"):
        PostgresVectorStore(fake_pool, table="kb; DROP")


async def test_lesson05_retrieve_all_checker_passes_with_the_real_store_in_place_of_pgvector(
    pool: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], fast: float
) -> None:
    real = PostgresVectorStore(pool, name="pgvector")
    await real.load()
    # The checker makes its own stores; hand it the real one where it makes the simulated pgvector.
    monkeypatch.setattr(lesson05, "PgVectorStore", lambda: real)

    async def retrieve_all(stores: list[VectorStore], questions: list[str], k: int = 3) -> list[str]:
        hit_lists = await asyncio.gather(*(store.search(q, k=k) for q in questions for store in stores))
        return [doc_id for doc_id, _ in rrf([[hit.id for hit in hits] for hits in hit_lists])[:k]]

    await lesson05.check_retrieve_all(retrieve_all)
    assert "✅" in capsys.readouterr().out
    assert real.calls == len(lesson05.QUESTIONS)


async def test_lesson05_retrieve_within_solution_gets_the_real_stores_hits_and_reports_the_others(
    pool: Any, fast: float
) -> None:
    # check_retrieve_within builds stores with injected faults, which a real server does not take,
    # so this runs the solution notebook's function on the same line-up with the real store in it.
    real = PostgresVectorStore(pool, name="postgres")
    await real.load()
    stores: list[VectorStore] = [
        RedisStore(), real, PgVectorStore(faults=Faults(error_rate=1.0)),
        PineconeStore(faults=Faults(hang_rate=1.0)), VectorStore(name="archive", latency=2.5),
    ]

    async def retrieve_within(stores: list[VectorStore], query: str, deadline: float) -> tuple[dict, dict]:  # type: ignore[type-arg]
        async def search(store: VectorStore) -> Any:
            async with timeout(deadline):
                return await store.search(query)

        outcomes = await asyncio.gather(*(search(s) for s in stores), return_exceptions=True)
        results, failures = {}, {}
        for store, outcome in zip(stores, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                failures[store.name] = type(outcome).__name__
            else:
                results[store.name] = outcome
        return results, failures

    results, failures = await retrieve_within(stores, lesson05.WITHIN_QUERY, lesson05.WITHIN_DEADLINE)
    assert set(results) == {"redis", "postgres"}
    assert failures == {"pgvector": "ServiceUnavailable", "pinecone": "TimeoutError", "archive": "TimeoutError"}
    assert [h.id for h in results["postgres"]] == [d.id for d, _ in real.nearest(lesson05.WITHIN_QUERY, 3)]


async def test_delay_holds_the_connection_on_the_server_for_that_many_simulated_seconds(
    pool: Any, fast: float
) -> None:
    store = PostgresVectorStore(pool, table="kb_slow", delay=0.5)
    await store.load()
    with trace() as t:
        hits = await asyncio.gather(*(store.search(q, k=2) for q in QUESTIONS[:4]))
    assert [len(h) for h in hits] == [2, 2, 2, 2]
    # Four searches on four open connections at once: each span is the 0.5 s of pg_sleep plus the
    # query's real time, ~2 ms of wall time but up to ~50 ms on this busy 2-core machine, which is
    # ×speed in simulated seconds: at least 0.5 s, and less than 0.5 s + 50 ms of wall time.
    assert all(0.5 <= span.duration < 0.5 + 0.05 * fast for span in t.spans), [round(s.duration, 3) for s in t.spans]
    assert t.max_concurrency() == 4
    with pytest.raises(ValueError, match="delay"):
        PostgresVectorStore(pool, delay=-1.0)
