"""Embeddings, the three vector stores and the metadata store."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from asynclab import (
    BlockingEmbeddings,
    Embeddings,
    MetadataStore,
    NotFound,
    PgVectorStore,
    PineconeStore,
    RedisStore,
    load_corpus,
    trace,
    vector_store,
)

# At TEST_SPEED (20) a timer firing ~5 ms late (a busy or shared 2-core VM) reads as 0.1 simulated seconds.
ABS = 0.1


async def test_similar_texts_get_close_embeddings(fast: float) -> None:
    emb = Embeddings(latency=0.01)
    a, b, c = await emb.embed_batch([
        "How do I stream tokens from an LLM?",
        "Streaming LLM tokens to the user as they arrive",
        "Postgres stores rows in pages on disk",
    ])
    assert a.shape == (256,)
    assert np.linalg.norm(a) == pytest.approx(1.0)
    assert float(a @ b) > float(a @ c)


async def test_one_batch_costs_less_than_many_single_calls(fast: float) -> None:
    emb = Embeddings()  # 0.1 s + 0.005 s per text
    texts = [f"chunk number {i}" for i in range(40)]
    with trace() as batched:
        await emb.embed_batch(texts)
    with trace() as single:
        for t in texts:
            await emb.embed(t)
    assert batched.elapsed == pytest.approx(0.1 + 0.005 * 40, rel=0.05, abs=ABS)
    # 40 sequential awaits each carry up to ~1 ms of timer lateness (0.05 simulated s at
    # speed 50), so the loose claim here is the ratio: one batch is over 10x cheaper.
    assert single.elapsed > 10 * batched.elapsed
    assert single.elapsed == pytest.approx(40 * 0.105, rel=0.25)
    assert batched.spans[0].items == 40


async def test_embeddings_are_the_same_from_the_blocking_client(fast: float) -> None:
    a = await Embeddings(latency=0.01).embed("event loop")
    b = BlockingEmbeddings(latency=0.01).embed("event loop")
    assert np.array_equal(a, b)


async def test_the_three_stores_find_the_same_documents_at_different_speeds(fast: float) -> None:
    stores = [RedisStore(), PgVectorStore(), PineconeStore()]
    query = "retry a request with exponential backoff after a rate limit"
    with trace() as t:
        results = await asyncio.gather(*(s.search(query, k=4) for s in stores))
    ids = [[hit.id for hit in hits] for hits in results]
    assert ids[0] == ids[1] == ids[2]
    assert [hit.store for hit in results[0]] == ["redis"] * 4
    scores = [hit.score for hit in results[0]]
    assert scores == sorted(scores, reverse=True)
    durations = {s.service: s.duration for s in t.spans}
    assert durations["redis"] == pytest.approx(0.2, rel=0.05, abs=ABS)
    assert durations["pgvector"] == pytest.approx(0.4, rel=0.05, abs=ABS)
    assert durations["pinecone"] == pytest.approx(0.6, rel=0.05, abs=ABS)
    assert t.elapsed == pytest.approx(0.6, rel=0.05, abs=ABS)


async def test_search_finds_relevant_documents(fast: float) -> None:
    hits = await RedisStore(latency=0.01).search("vector database similarity search with HNSW", k=3)
    assert hits[0].topic in {"retrieval", "embeddings"}
    assert hits[0].score > 0.1


async def test_a_store_accepts_an_embedding_as_the_query(fast: float) -> None:
    vector = await Embeddings(latency=0.01).embed("time to first token when streaming")
    by_vector = await RedisStore(latency=0.01).search(vector, k=2)
    by_text = await RedisStore(latency=0.01).search("time to first token when streaming", k=2)
    assert [h.id for h in by_vector] == [h.id for h in by_text]


async def test_metadata_describes_a_document(fast: float) -> None:
    doc = load_corpus()[0]
    info = await MetadataStore(latency=0.01).get(doc.id)
    assert info["title"] == doc.title
    assert info["topic"] == doc.topic
    assert set(info) >= {"id", "title", "topic", "source", "year", "author", "url"}


async def test_an_unknown_document_is_not_found(fast: float) -> None:
    with pytest.raises(NotFound, match="no document 'doc-999'"):
        await MetadataStore(latency=0.01).get("doc-999")


def test_vector_store_makes_a_store_by_name() -> None:
    assert isinstance(vector_store("redis"), RedisStore)
    with pytest.raises(ValueError, match="store must be one of 'redis', 'pgvector', 'pinecone'; got 'milvus'"):
        vector_store("milvus")


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: RedisStore().search("q", k=0), ValueError, "k must be an int >= 1, got 0"),
        (lambda: RedisStore().search("q", k=-3), ValueError, "k must be an int >= 1, got -3"),
        (lambda: RedisStore().search("q", k=2.5), TypeError, "k must be an int >= 1, got float"),
        (lambda: RedisStore().search("", k=2), ValueError, "query must be a non-empty str"),
        (lambda: RedisStore().search(np.zeros(3)), ValueError, r"query vector must have shape \(256,\)"),
        (lambda: Embeddings().embed(""), ValueError, "text must be a non-empty str"),
        (lambda: Embeddings().embed(None), TypeError, "text must be a str, got NoneType"),
        (lambda: Embeddings().embed_batch([]), ValueError, "texts must hold at least one text"),
        (lambda: Embeddings().embed_batch("one text"), TypeError, r"texts must be a list of str.*use embed\(\)"),
        (lambda: Embeddings().embed_batch(["ok", ""]), ValueError, r"texts\[1\] must be a non-empty str"),
        (lambda: MetadataStore().get(""), ValueError, "doc_id must be a non-empty str"),
    ],
)
async def test_bad_retrieval_requests_are_refused(call: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        await call()  # type: ignore[operator]


def test_a_bad_embedding_size_is_refused() -> None:
    with pytest.raises(ValueError, match="dim must be an int >= 1, got 0"):
        Embeddings(dim=0)
