"""The re-ranker: real edit distances, a ranking that reads the query, clear errors."""

from __future__ import annotations

import pickle
import time

import pytest

from asynclab import Hit, VectorStore, load_corpus, rerank
from asynclab.reranker import edit_distance, similarity, units


def test_edit_distance_counts_insertions_deletions_and_substitutions() -> None:
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("retry", "retries") == 3      # y→i, then +e +s
    assert edit_distance("", "abc") == 3
    assert edit_distance("same", "same") == 0


def test_similarity_is_one_for_the_same_word_and_falls_with_each_edit() -> None:
    assert similarity("cache", "cache") == 1.0
    assert similarity("cache", "caches") == pytest.approx(1 - 1 / 6)
    assert similarity("abc", "xyz") == 0.0


def test_units_are_the_meaningful_words_then_their_neighbouring_pairs() -> None:
    assert units("How should a client handle rate limit errors?") == [
        "client", "handle", "rate", "limit", "errors", "client handle", "handle rate", "rate limit", "limit errors"]


def test_a_page_titled_with_the_question_ranks_first() -> None:
    docs = load_corpus()
    kv = next(doc for doc in docs if doc.title.lower().startswith("kv cache") or "KV cache" in doc.title)
    candidates = [kv, *docs[:11]]
    best, score = rerank("What is a KV cache?", candidates, k=1)[0]
    assert best == kv.id and score > 0.9


def test_the_ranking_does_not_depend_on_the_candidates_order_and_stops_at_k() -> None:
    hits = VectorStore().nearest("How do I retry a failed LLM call?", 12)
    docs = [doc for doc, _ in hits]
    forward = rerank("How do I retry a failed LLM call?", docs, k=5)
    assert forward == rerank("How do I retry a failed LLM call?", docs[::-1], k=5)
    assert len(forward) == 5 and [s for _, s in forward] == sorted((s for _, s in forward), reverse=True)
    assert len(rerank("retry", docs[:2], k=5)) == 2


def test_hits_and_documents_score_the_same_and_travel_to_a_process() -> None:
    doc = load_corpus()[0]
    hit = Hit(doc.id, doc.title, doc.text, doc.topic, 0.5, "redis")
    assert rerank("tokens", [hit]) == rerank("tokens", [doc])
    assert pickle.loads(pickle.dumps(hit)) == hit  # what a process pool does with the arguments


def test_it_is_real_cpu_work_of_milliseconds_per_candidate() -> None:
    docs = load_corpus()[:12]
    cpu = time.thread_time()
    rerank("How should a client handle 429 rate limit errors?", docs)
    cpu = time.thread_time() - cpu
    # 12 candidates cost tens of ms of CPU on this machine (about 4 ms each); 5 ms is a floor that
    # only a shortcut (a cache, an early exit) would break, 2 s a ceiling only a hang would.
    assert 0.005 < cpu < 2.0, cpu


@pytest.mark.parametrize(("args", "error", "message"), [
    ((42, []), TypeError, "query must be a str, got int"),
    (("the and of", []), ValueError, "query must contain at least one word that is not a stopword"),
    (("retry", "doc-001"), TypeError, "candidates must be a sequence of hits or documents"),
    (("retry", [{"id": "doc-001"}]), TypeError, r"candidates\[0\] must be a hit or a document"),
    (("retry", [], 0), ValueError, "k must be an int >= 1, got 0"),
    (("retry", [], True), TypeError, "k must be an int >= 1, got bool"),
])
def test_bad_arguments_are_named(args: tuple[object, ...], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        rerank(*args)  # type: ignore[arg-type]
