"""Reciprocal rank fusion (asynclab.fusion), and the agent endpoint that uses it."""

from __future__ import annotations

import pytest

from asynclab.fusion import RRF_K, rrf
from asynclab.services.vectorstores import PgVectorStore, PineconeStore, RedisStore


def test_a_document_two_lists_rank_beats_one_that_a_single_list_ranks_first() -> None:
    fused = rrf([["a", "b"], ["c", "b"]])
    assert [doc_id for doc_id, _ in fused] == ["b", "a", "c"]
    assert fused[0][1] == pytest.approx(2 / (RRF_K + 2))


def test_the_order_of_the_lists_does_not_change_the_result() -> None:
    lists = [["a", "b", "c"], ["c", "d"], ["d", "a"]]
    assert rrf(lists) == rrf(list(reversed(lists)))


def test_equal_scores_are_ordered_by_id() -> None:
    assert [doc_id for doc_id, _ in rrf([["z"], ["a"]])] == ["a", "z"]


@pytest.mark.parametrize(
    ("rankings", "k", "error", "message"),
    [
        (["doc-1"], 60, TypeError, "each ranking must be a sequence of ids, not a str"),
        ([[1, 2]], 60, TypeError, "ids must be str, got int 1"),
        ([["a"]], -1, ValueError, "k must be an int >= 0"),
        ([["a"]], True, ValueError, "k must be an int >= 0"),
    ],
)
def test_bad_input_is_refused_by_name(rankings: list[object], k: int, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        rrf(rankings, k)  # type: ignore[arg-type]


async def test_the_agent_fuses_the_stores_by_rank_not_by_their_incomparable_scores(fast: float) -> None:
    import httpx

    from asynclab.server import create_app

    question = "Why does my LLM app feel slow to users?"
    stores = [RedisStore(), PgVectorStore(), PineconeStore()]
    expected = [doc_id for doc_id, _ in rrf([[d.id for d, _ in s.nearest(question, 3)] for s in stores])[:3]]
    by_score = sorted(((score, d.id) for s in stores for d, score in s.nearest(question, 3)), reverse=True)
    transport = httpx.ASGITransport(app=create_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://asynclab") as client:
        body = (await client.post("/agent", json={"question": question, "k": 3})).json()
    assert [source["id"] for source in body["sources"]] == expected
    assert expected != [doc_id for _, doc_id in by_score[:3]]  # the data tells the two apart
