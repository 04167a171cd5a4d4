"""The pure text functions behind the simulated services, and the bundled corpus."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from asynclab import text
from asynclab.text import (
    NO_ANSWER,
    STOPWORDS,
    TOPICS,
    Document,
    answer,
    classify,
    cosine,
    embed,
    load_corpus,
    sentiment,
    summarize,
    tokenize,
    words,
)

CORPUS = load_corpus()
REPO = Path(__file__).resolve().parents[1]


def doc_titled(title: str) -> Document:
    return next(d for d in CORPUS if d.title == title)


# ---------------------------------------------------------------- corpus


def test_corpus_has_at_least_120_documents_with_unique_ids() -> None:
    ids = [d.id for d in CORPUS]
    assert len(CORPUS) >= 120
    assert len(set(ids)) == len(ids)
    assert all(d.id == f"doc-{i:03d}" for i, d in enumerate(CORPUS, 1))


def test_every_topic_is_covered_by_twelve_to_twenty_documents() -> None:
    counts = Counter(d.topic for d in CORPUS)
    assert set(counts) == set(TOPICS)
    assert all(12 <= n <= 20 for n in counts.values()), counts


@pytest.mark.parametrize("doc", CORPUS, ids=lambda d: d.id)
def test_every_document_is_short_complete_and_well_formed(doc: Document) -> None:
    assert doc.title.strip() and doc.source.strip()
    assert 40 <= len(doc.text.split()) <= 90
    assert 2 <= len(text._split_sentences(doc.text)) <= 4
    assert doc.text.rstrip()[-1] in ".!?'\""
    assert 2021 <= doc.year <= 2026


def test_load_corpus_returns_the_same_cached_tuple_of_frozen_documents() -> None:
    assert load_corpus() is CORPUS
    assert isinstance(CORPUS, tuple)
    assert not hasattr(CORPUS[0], "__dict__")  # __slots__
    with pytest.raises(dataclasses.FrozenInstanceError):
        CORPUS[0].topic = "other"  # type: ignore[misc]


def test_classifier_recovers_the_corpus_topics_at_least_85_percent_of_the_time() -> None:
    hits = sum(classify(d.text)[0] == d.topic for d in CORPUS)
    assert hits / len(CORPUS) >= 0.85


# ---------------------------------------------------------------- tokenize and words


def test_tokenize_keeps_the_leading_space_on_words_and_splits_punctuation() -> None:
    assert tokenize("Hello, world.") == ["Hello", ",", " world", "."]
    assert tokenize("Don't block the loop!") == ["Don't", " block", " the", " loop", "!"]


@pytest.mark.parametrize(
    "sample",
    ["Hello, world.", "asyncio.gather(a, b) returns [1, 2] -- in order!", "Ünïcode wörds, 3.14 and €5?"]
    + [d.text for d in CORPUS[::10]],
)
def test_joining_the_tokens_reproduces_normally_spaced_text(sample: str) -> None:
    assert "".join(tokenize(sample)) == sample


def test_tokenize_collapses_whitespace_runs_and_strips_the_ends() -> None:
    assert tokenize("  one\n\n two\tthree  ") == ["one", " two", " three"]
    assert tokenize("") == []
    assert tokenize(" \n ") == []


def test_words_are_lowercase_without_punctuation() -> None:
    assert words("Little's law: asyncio.wait_for, HTTP 429!") == [
        "little's", "law", "asyncio", "wait_for", "http", "429",
    ]
    assert words("") == []


def test_stopwords_are_a_small_set_of_lowercase_function_words() -> None:
    assert {"the", "and", "of", "is"} <= STOPWORDS
    assert all(w == w.lower() for w in STOPWORDS)
    assert not {"token", "agent", "async", "vector"} & STOPWORDS
    assert 50 <= len(STOPWORDS) <= 200


# ---------------------------------------------------------------- summarize

ARTICLE = (
    "Async code lets one process wait on many model calls at once. "
    "My cat likes sunny windowsills. "
    "With async code, slow model calls overlap their waiting time. "
    "Lunch was late today. "
    "Overlapping slow model calls is why async code feels fast."
)


def test_summary_keeps_the_most_central_sentences_in_order() -> None:
    summary = summarize(ARTICLE)
    assert "cat" not in summary and "Lunch" not in summary
    picked = text._split_sentences(summary)
    assert len(picked) == 2
    assert all(s in ARTICLE for s in picked)
    assert ARTICLE.index(picked[0]) < ARTICLE.index(picked[1])


def test_summary_length_follows_max_sentences() -> None:
    assert len(text._split_sentences(summarize(ARTICLE, max_sentences=1))) == 1
    assert len(text._split_sentences(summarize(ARTICLE, max_sentences=3))) == 3


def test_short_text_is_its_own_summary_stripped() -> None:
    assert summarize("  Just one sentence here.  ") == "Just one sentence here."
    assert summarize("First. Second.", max_sentences=2) == "First. Second."


# ---------------------------------------------------------------- sentiment


@pytest.mark.parametrize(
    ("sample", "label"),
    [
        ("The new model is great and very fast.", "positive"),
        ("Thanks, the fix works and the app feels snappy.", "positive"),
        ("The service crashed again and the latency is terrible.", "negative"),
        ("Support was rude and the docs are confusing.", "negative"),
        ("The meeting is at noon in room four.", "neutral"),
        ("It is fast but expensive.", "neutral"),
    ],
)
def test_sentiment_labels_clear_examples(sample: str, label: str) -> None:
    assert sentiment(sample)[0] == label


def test_negation_flips_and_softens_sentiment() -> None:
    good, not_good = sentiment("The answer was good.")[1], sentiment("The answer was not good.")[1]
    assert good > 0 > not_good > -good
    assert sentiment("Honestly, not bad at all.")[0] == "positive"
    assert sentiment("It isn't reliable.")[0] == "negative"
    assert sentiment("Not today, the search is great.")[0] == "positive"  # the comma ends the negation


def test_sentiment_score_stays_within_minus_one_and_one() -> None:
    for sample in ["great " * 200, "awful " * 200, *(d.text for d in CORPUS)]:
        assert -1.0 <= sentiment(sample)[1] <= 1.0
    assert sentiment("great " * 200)[1] > sentiment("great great")[1] > sentiment("great")[1]


# ---------------------------------------------------------------- classify


@pytest.mark.parametrize(
    ("question", "topic"),
    [
        ("How many tokens fit in the context window of this LLM?", "llm"),
        ("Should I rerank the retrieved chunks before building the prompt?", "retrieval"),
        ("Which pgvector index gives the fastest cosine similarity search?", "embeddings"),
        ("My agent keeps calling the same tool in a loop", "agents"),
        ("The API returns 429, how long should the retry backoff be?", "serving"),
        ("Why does my coroutine block the event loop?", "async"),
        ("How do we measure the hallucination rate on a golden dataset?", "evaluation"),
        ("How can we stop prompt injection and jailbreaks?", "safety"),
    ],
)
def test_classifier_labels_questions_it_has_never_seen(question: str, topic: str) -> None:
    label, confidence = classify(question)
    assert label == topic
    assert 0.0 < confidence <= 1.0


def test_text_without_any_keyword_is_classified_as_other() -> None:
    assert classify("The weather is lovely today.") == ("other", 0.0)


def test_classifier_confidence_grows_with_evidence_and_shrinks_with_mixed_topics() -> None:
    one = classify("asyncio")
    two = classify("asyncio semaphore")
    three = classify("asyncio semaphore queue")
    mixed = classify("asyncio semaphore and a vector")
    assert one[0] == two[0] == three[0] == mixed[0] == "async"
    assert 0.0 < mixed[1] < two[1] and 0.0 < one[1] < two[1] < three[1] <= 1.0


# ---------------------------------------------------------------- embed and cosine


def test_embedding_is_a_unit_float64_vector_of_the_requested_size() -> None:
    for dim in (1, 8, 256, 1000):
        vector = embed("Streaming tokens over server-sent events", dim)
        assert vector.shape == (dim,) and vector.dtype == np.float64
        assert np.linalg.norm(vector) == pytest.approx(1.0)


def test_similar_texts_are_closer_than_unrelated_ones() -> None:
    query = embed("How do I stream tokens from an LLM?")
    streaming = embed(doc_titled("Streaming tokens to the user").text)
    unrelated = embed(doc_titled("PII redaction").text)
    assert cosine(query, streaming) > cosine(query, unrelated) + 0.2
    assert cosine(embed("retrying requests"), embed("retry the request")) > 0.5


def test_stopword_only_and_symbol_only_texts_still_embed_to_unit_vectors() -> None:
    for sample in ["the and of", "!!! ???", "λ"]:
        assert np.linalg.norm(embed(sample)) == pytest.approx(1.0)


RETRIEVAL_CASES = [
    ("retry with exponential backoff after a 429", {"serving", "async"}),
    ("How do I stream tokens from an LLM?", {"llm", "serving"}),
    ("limit concurrency with an asyncio semaphore", {"async"}),
    ("split documents into chunks with overlap", {"retrieval"}),
    ("cosine similarity between normalised vectors", {"embeddings"}),
    ("HNSW index in pgvector", {"embeddings"}),
    ("agent calls a tool with JSON arguments", {"agents"}),
    ("detect prompt injection and jailbreak attempts", {"safety"}),
    ("measure hallucination rate on a golden dataset", {"evaluation"}),
    ("combine keyword and vector results with reciprocal rank fusion", {"retrieval"}),
    ("how many requests are in flight according to Little's law", {"serving"}),
    ("bounded queue for backpressure", {"async"}),
    ("what is time to first token", {"llm"}),
    ("redact PII before logging", {"safety"}),
]


@pytest.mark.parametrize("with_title", [True, False], ids=["title-and-text", "text-only"])
@pytest.mark.parametrize(("query", "topics"), RETRIEVAL_CASES, ids=[q for q, _ in RETRIEVAL_CASES])
def test_nearest_corpus_document_is_on_the_expected_topic(
    query: str, topics: set[str], with_title: bool
) -> None:
    matrix = np.stack([embed(f"{d.title}. {d.text}" if with_title else d.text) for d in CORPUS])
    best = CORPUS[int(np.argmax(matrix @ embed(query)))]
    assert best.topic in topics, f"{query!r} -> {best.id} {best.title!r} ({best.topic})"


def test_another_seed_is_another_model_that_still_puts_similar_texts_close() -> None:
    query, close, far = "retrying requests with backoff", "retry the request after a backoff", "PII redaction"
    assert np.array_equal(embed(query, seed=0), embed(query))  # seed 0 is the default model
    assert not np.allclose(embed(query, seed=1), embed(query, seed=2))
    # The vectors of two models are unrelated (cosine near 0), yet each model ranks alike.
    assert abs(cosine(embed(query, 256, seed=1), embed(query, 256, seed=2))) < 0.3
    for dim, seed in [(128, 1), (256, 0), (384, 2)]:
        vector = embed(query, dim, seed=seed)
        assert vector.shape == (dim,) and np.linalg.norm(vector) == pytest.approx(1.0)
        assert cosine(vector, embed(close, dim, seed=seed)) > 0.4 > cosine(vector, embed(far, dim, seed=seed))


def test_an_absurd_embedding_size_is_refused_before_allocating_anything() -> None:
    start = time.perf_counter()
    with pytest.raises(ValueError, match="dim must be at most"):
        embed("x", 10**18)
    assert time.perf_counter() - start < 0.1
    assert embed("x", text.MAX_DIM).shape == (text.MAX_DIM,)


def test_embedding_a_sixty_word_text_takes_well_under_a_millisecond() -> None:
    sample = " ".join(doc_titled("Little's law").text.split()[:60])
    embed(sample)
    start = time.perf_counter()
    for _ in range(500):
        embed(sample)
    assert (time.perf_counter() - start) / 500 < 1e-3


def test_cosine_of_parallel_opposite_orthogonal_and_zero_vectors() -> None:
    assert cosine([1.0, 2.0], [2.0, 4.0]) == pytest.approx(1.0)
    assert cosine([1.0, 2.0], [-1.0, -2.0]) == pytest.approx(-1.0)
    assert cosine(np.array([1.0, 0.0]), np.array([0.0, 3.0])) == pytest.approx(0.0)
    assert cosine([0.0, 0.0], [1.0, 1.0]) == 0.0
    assert isinstance(cosine([1, 2], [3, 4]), float)


# ---------------------------------------------------------------- answer

CONTEXT = " ".join(d.text for d in CORPUS if d.topic == "serving")


def test_answer_returns_the_context_sentence_that_best_matches_the_question() -> None:
    assert answer("What does Little's law say?", CONTEXT).startswith("Little's law states that")
    assert "text/event-stream" in answer("What is SSE?", CONTEXT)
    assert "Retry-After" in answer("How long should I wait after a 429?", CONTEXT)


def test_answer_can_return_several_sentences_in_context_order() -> None:
    context = "Queues bound work. Semaphores cap concurrency. A semaphore is an asyncio primitive."
    assert answer("What does a semaphore cap?", context, max_sentences=2) == (
        "Semaphores cap concurrency. A semaphore is an asyncio primitive."
    )


def test_answer_admits_it_does_not_know_without_context_or_overlap() -> None:
    assert answer("What is the capital of France?", CONTEXT) == NO_ANSWER
    assert answer("What is SSE?", "") == NO_ANSWER
    assert answer("What is SSE?", "  \n ") == NO_ANSWER
    assert answer("what is it?", CONTEXT) == NO_ANSWER  # only stopwords


# ---------------------------------------------------------------- bad input and determinism

BAD_CALLS: list[tuple[Callable[[], object], type[Exception], str]] = [
    (lambda: tokenize(None), TypeError, "text must be a str, got NoneType"),  # type: ignore[arg-type]
    (lambda: words(3), TypeError, "text must be a str, got int"),  # type: ignore[arg-type]
    (lambda: summarize(b"bytes"), TypeError, "text must be a str, got bytes"),  # type: ignore[arg-type]
    (lambda: summarize("   "), ValueError, "text must be non-empty"),
    (lambda: summarize("A. B. C.", 0), ValueError, r"max_sentences must be a positive int \(>= 1\), got 0"),
    (lambda: summarize("A. B. C.", 1.5), TypeError, "max_sentences must be an int, got float"),  # type: ignore[arg-type]
    (lambda: summarize("A. B. C.", True), TypeError, "max_sentences must be an int, got bool"),
    (lambda: sentiment(""), ValueError, "text must be non-empty"),
    (lambda: sentiment(1.0), TypeError, "text must be a str, got float"),  # type: ignore[arg-type]
    (lambda: classify(" \n\t"), ValueError, "text must be non-empty"),
    (lambda: classify(["llm"]), TypeError, "text must be a str, got list"),  # type: ignore[arg-type]
    (lambda: embed(""), ValueError, "text must be non-empty"),
    (lambda: embed(42), TypeError, "text must be a str, got int"),  # type: ignore[arg-type]
    (lambda: embed("x", 0), ValueError, r"dim must be a positive int \(>= 1\), got 0"),
    (lambda: embed("x", -3), ValueError, r"dim must be a positive int \(>= 1\), got -3"),
    (lambda: embed("x", 2.0), TypeError, "dim must be an int, got float"),  # type: ignore[arg-type]
    (lambda: embed("x", True), TypeError, "dim must be an int, got bool"),
    (lambda: embed("x", 10**18), ValueError, r"dim must be at most 16384 \(MAX_DIM\), got 10{18}"),
    (lambda: embed("x", seed=-1), ValueError, "seed must be an int >= 0, got -1"),
    (lambda: embed("x", seed=1.5), TypeError, "seed must be an int, got float"),  # type: ignore[arg-type]
    (lambda: embed("x", seed=True), TypeError, "seed must be an int, got bool"),
    (lambda: answer("", "context"), ValueError, "question must be non-empty"),
    (lambda: answer(None, "context"), TypeError, "question must be a str, got NoneType"),  # type: ignore[arg-type]
    (lambda: answer("q?", None), TypeError, "context must be a str, got NoneType"),  # type: ignore[arg-type]
    (lambda: answer("q?", "c.", max_sentences=0), ValueError, "max_sentences must be a positive int"),
    (lambda: cosine([1.0, 2.0], [1.0, 2.0, 3.0]), ValueError, r"equal length, got shapes \(2,\) and \(3,\)"),
    (lambda: cosine(np.ones((2, 2)), np.ones((2, 2))), ValueError, "1-D vectors of equal length"),
    (lambda: cosine("ab", [1.0, 2.0]), TypeError, "a and b must be numeric vectors"),
]


@pytest.mark.parametrize(("call", "error", "message"), BAD_CALLS, ids=[m for _, _, m in BAD_CALLS])
def test_bad_input_raises_an_error_that_names_the_argument(
    call: Callable[[], object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        call()


def test_every_function_gives_identical_output_for_identical_input() -> None:
    sample = CORPUS[0].text + " " + CORPUS[1].text
    for fn in (tokenize, words, summarize, sentiment, classify):
        assert fn(sample) == fn(sample)
    assert answer("What is a token?", sample) == answer("What is a token?", sample)
    assert np.array_equal(embed(sample), embed(sample))


def test_embeddings_are_identical_across_processes_with_different_hash_seeds() -> None:
    script = "from asynclab.text import embed; print(embed('Stable hashing, please!', 64).tolist())"
    outputs = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)}
        command = [sys.executable, "-c", script]
        run = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        outputs.add(run.stdout)
    assert outputs == {str(embed("Stable hashing, please!", 64).tolist()) + "\n"}
