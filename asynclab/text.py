"""Deterministic text "brains" behind asynclab's simulated services (pure, synchronous, stdlib + numpy).

The async services add simulated latency; these functions make their results meaningful and
reproducible: the same input gives the same output on every machine (no randomness, no ``hash()``).
Tokens and words: ``tokenize``, ``words``, ``STOPWORDS``. Stand-ins for model calls: ``summarize``,
``sentiment``, ``classify``, ``answer``. Vectors: ``embed``, ``cosine``. Knowledge base: ``Document``,
``load_corpus``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from importlib import resources

import numpy as np
import numpy.typing as npt

__all__ = ["MAX_DIM", "NO_ANSWER", "STOPWORDS", "TOPICS", "Document", "answer", "classify", "cosine",
           "embed", "load_corpus", "sentiment", "summarize", "tokenize", "words"]

#: Topic labels of the corpus, as returned by :func:`classify`.
TOPICS = ("llm", "retrieval", "embeddings", "agents", "serving", "async", "evaluation", "safety")
#: The largest embedding size :func:`embed` makes (real models stop near 4,096; 16,384 floats are 128 KiB).
MAX_DIM = 16384
#: What :func:`answer` says when the context holds no answer.
NO_ANSWER = "I don't know based on the given context."


def _wordset(spec: str) -> frozenset[str]:
    return frozenset(spec.split())


#: Small English stopword list, ignored by summaries, answers and embeddings.
STOPWORDS = _wordset("""
a about above after again against all also am an and any are as at be because been before being below
between both but by can could did do does doing down during each either few for from further had has
have having he her here hers him his how i if in into is it its itself just me more most my no nor not
of off on once only or other our ours out over own same she should so some such than that the their
them then there these they this those through to too under until up us very was we were what when where
which while who whom why will with would you your yours""")

_TOKEN_RE = re.compile(r" ?\w+(?:['’]\w+)*| ?[^\w\s]")
_WORD_RE = re.compile(r"[^\W_]+(?:['_][^\W_]+)*")
_SENTIMENT_RE = re.compile(r"[^\W_]+(?:'[^\W_]+)*|[.,;:!?]")
_SENTENCE_RE = re.compile(r"(?<=[.!?])\s+|\n+")
_SPACES_RE = re.compile(r"\s+")

# Keywords per topic, "|"-separated; multi-word entries are phrases. Keywords are stemmed like the text,
# so "token" also matches "tokens" and "cache" matches "caching".
_TOPIC_KEYWORDS = {
    "llm": "llm|language model|token|tokenizer|prompt|system prompt|few shot|context window|temperature"
    "|sampling|decode|prefill|completion|generation|generate|time to first token|ttft|max_tokens"
    "|stop sequence|kv cache|stream|output token",
    "retrieval": "retrieval|retrieve|retriever|rag|chunk|rerank|reranker|bm25|keyword search|hybrid search"
    "|reciprocal rank fusion|rrf|passage|query|document|knowledge base|citation|cite|top k|ingestion"
    "|search|corpus|grounds",
    "embeddings": "embedding|vector|cosine|similarity|dimension|hnsw|pgvector|pinecone|redis|vector database"
    "|vector store|nearest neighbor|ann|normalise|normalize|dot product|euclidean|feature hashing|batch"
    "|semantic",
    "agents": "agent|agentic|tool|tool call|function calling|plan|planner|executor|step|action|observation"
    "|memory|short term memory|long term memory|orchestrator|multi agent|react|router|routing|workflow"
    "|argument|mcp|agent loop",
    "serving": "fastapi|endpoint|server|sse|server sent event|http|api|request|response|rate limit|429|503"
    "|retry|backoff|jitter|throughput|little's law|load balancer|autoscaling|cache|deployment|gpu"
    "|replica|p99|percentile|uvicorn|asgi|worker|idempotent|idempotency|circuit breaker|serving"
    "|latency|traffic",
    "async": "async|await|awaitable|asyncio|event loop|coroutine|gather|semaphore|task|taskgroup"
    "|concurrency|concurrent|concurrently|queue|backpressure|timeout|deadline|cancel|cancelled"
    "|cancellation|blocking|thread|producer|consumer|wait_for|create_task|to_thread|as_completed"
    "|async generator",
    "evaluation": "evaluation|evaluate|eval|metric|benchmark|test set|golden|golden dataset|accuracy|judge"
    "|score|regression|faithfulness|unfaithful|hallucination|human review|rubric|label|grade|recall"
    "|mrr|a/b test|reviewer|agreement|measure|reference answer",
    "safety": "safety|safe|guardrail|prompt injection|injection|jailbreak|pii|moderation|toxic|harmful|harm"
    "|policy|redact|redaction|refusal|refuse|abuse|permission|sandbox|attack|attacker|malicious|secret"
    "|privacy|leak|untrusted|credential|risk|security|least privilege|red teaming|sensitive|confidential",
}
_POSITIVE = _wordset("""
good great excellent amazing awesome fantastic wonderful love lovely happy glad pleased delighted helpful
useful fast quick smooth reliable stable robust accurate correct clear clean easy simple efficient
responsive impressive perfect best better nice enjoy recommend satisfied success successful win solid
elegant intuitive friendly brilliant superb outstanding positive pleasant improve improvement resolved
fixed works thanks thank appreciate seamless snappy secure trustworthy valuable powerful effective""")
_NEGATIVE = _wordset("""
bad terrible awful horrible poor worst worse hate dislike sad angry annoyed frustrated frustrating
disappointed disappointing slow laggy sluggish broken buggy bug crash fail failure error wrong incorrect
inaccurate confusing confused difficult useless unreliable unstable expensive overpriced painful problem
issue outage flaky ugly annoying nightmare mess messy complicated unusable unhelpful insecure leak waste
regret stuck hang freeze rude disaster degraded hallucinate""")
_NEGATORS = _wordset("not no never cannot without hardly nor none")
_INTENSIFIERS = _wordset("very really extremely super incredibly so")
_NEGATION_WINDOW = 3  # a negator affects sentiment words up to 3 words later, within one clause
_WORD_WEIGHT, _TRIGRAM_WEIGHT = 1.0, 0.3  # embedding feature weights


def _check_text(value: object, name: str = "text", *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise ValueError(f"{name} must be non-empty (not just whitespace)")
    return value


def _check_positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be a positive int (>= 1), got {value}")
    return value


@functools.lru_cache(maxsize=32768)
def _stem(word: str) -> str:
    """Crude suffix stripping: "tokens" -> "token", "batches" -> "batch", "caching"/"cache" -> "cach"."""
    word = word.removesuffix("'s")
    if len(word) > 4 and word.endswith("ies"):
        word = word[:-3] + "y"
    elif len(word) > 4 and word.endswith("es") and word[:-2].endswith(("s", "x", "z", "ch", "sh")):
        word = word[:-2]
    elif len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    for suffix, keep in (("ing", 3), ("ed", 4)):
        if word.endswith(suffix) and len(word) - len(suffix) >= keep:
            word = word[: -len(suffix)]
            if word[-1] == word[-2] and word[-1] not in "aeiouylsz":
                word = word[:-1]  # "embedd" -> "embed"
            break
    return word[:-1] if len(word) > 3 and word.endswith("e") else word


def _content_stems(text: str) -> list[str]:
    return [_stem(w) for w in words(text) if w not in STOPWORDS]


def _split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_RE.split(text.strip()) if s.strip()]


def tokenize(text: str) -> list[str]:
    """LLM-like tokens for streaming: words (each keeping its leading space) and punctuation marks.

    Whitespace runs (newlines included) are first collapsed to one space and the ends stripped, so
    ``"".join(tokenize(t)) == " ".join(t.split())``, which is ``t`` itself for normally spaced text.
    ``tokenize("Hello, world.") == ["Hello", ",", " world", "."]``; empty text gives ``[]``.
    """
    return _TOKEN_RE.findall(_SPACES_RE.sub(" ", _check_text(text, allow_empty=True)).strip())


def words(text: str) -> list[str]:
    """Lowercase words (letters and digits, inner ``'`` or ``_`` kept) for analysis; stopwords included."""
    return _WORD_RE.findall(_check_text(text, allow_empty=True).lower().replace("’", "'"))


def summarize(text: str, max_sentences: int = 2) -> str:
    """Extractive summary: the ``max_sentences`` most central sentences, kept in their original order.

    A content word (stemmed, not a stopword) weighs its frequency in the whole text over the top
    frequency; a sentence scores the sum over its distinct content words divided by the square root of
    its content-word count (ties: earlier sentence). Text of at most ``max_sentences`` sentences is
    returned stripped.
    """
    text = _check_text(text)
    limit = _check_positive_int(max_sentences, "max_sentences")
    sentences = _split_sentences(text)
    if len(sentences) <= limit:
        return text.strip()
    stems = [_content_stems(s) for s in sentences]
    freq = Counter(stem for sentence in stems for stem in sentence)
    top = max(freq.values(), default=1)

    def score(i: int) -> float:
        return sum(freq[s] / top for s in set(stems[i])) / math.sqrt(len(stems[i])) if stems[i] else 0.0

    best = sorted(range(len(sentences)), key=lambda i: (-score(i), i))[:limit]
    return " ".join(sentences[i] for i in sorted(best))


_POSITIVE_STEMS = frozenset(map(_stem, _POSITIVE))
_NEGATIVE_STEMS = frozenset(map(_stem, _NEGATIVE))


def sentiment(text: str) -> tuple[str, float]:
    """Lexicon-based sentiment: ``(label, score)``, ``score`` in [-1, 1] (rounded to 4 decimals).

    Each positive word adds +1, each negative word -1, times 1.5 right after an intensifier ("very").
    A negator ("not", "no", "never", "...n't") up to 3 words earlier in the same clause flips the word
    and halves it: "not good" is mildly negative, "not bad" mildly positive. The sum ``r`` becomes
    ``r / sqrt(r*r + 4)``. Label: "positive" if score >= 0.1, "negative" if <= -0.1, else "neutral".
    """
    raw, since_negator, boost = 0.0, _NEGATION_WINDOW + 1, 1.0
    for tok in _SENTIMENT_RE.findall(_check_text(text).lower().replace("’", "'")):
        if tok in ".,;:!?":  # a clause ends: negation and intensifier stop here
            since_negator, boost = _NEGATION_WINDOW + 1, 1.0
        elif tok in _NEGATORS or tok.endswith("n't"):
            since_negator = 0
        elif tok in _INTENSIFIERS:
            since_negator, boost = since_negator + 1, 1.5
        else:
            since_negator += 1
            stem = _stem(tok)
            polarity = boost * ((stem in _POSITIVE_STEMS) - (stem in _NEGATIVE_STEMS))
            if polarity:
                raw += -0.5 * polarity if since_negator <= _NEGATION_WINDOW else polarity
                boost = 1.0
    score = round(raw / math.sqrt(raw * raw + 4.0), 4)
    return ("positive" if score >= 0.1 else "negative" if score <= -0.1 else "neutral"), score


_KEYWORDS = {
    topic: tuple(dict.fromkeys(tuple(map(_stem, words(k))) for k in spec.split("|")))
    for topic, spec in _TOPIC_KEYWORDS.items()
}


def classify(text: str) -> tuple[str, float]:
    """Keyword topic classifier: ``(topic, confidence)``, topic from :data:`TOPICS`, confidence in [0, 1].

    Each occurrence of a topic keyword scores 1 point, of an n-word phrase n points (words stemmed, so
    "tokens" matches "token"). The most points win (ties: earlier in :data:`TOPICS`). Confidence is
    ``share * points / (points + 1)``, ``share`` being the winner's fraction of all points, so it grows
    with both dominance and evidence. Text without any keyword gives ``("other", 0.0)``.
    """
    stems = [_stem(w) for w in words(_check_text(text))]
    grams: Counter[tuple[str, ...]] = Counter()
    for n in range(1, 5):
        grams.update(tuple(stems[i : i + n]) for i in range(len(stems) - n + 1))
    points = {t: sum(len(k) * grams[k] for k in _KEYWORDS[t]) for t in TOPICS}
    best = max(TOPICS, key=lambda t: points[t])  # max() keeps the first of equal topics
    total, top = sum(points.values()), points[best]
    return ("other", 0.0) if total == 0 else (best, round(top / total * top / (top + 1), 4))


def _check_seed(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"seed must be an int, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"seed must be an int >= 0, got {value}")
    return value


@functools.lru_cache(maxsize=65536)
def _bucket(feature: str, dim: int) -> tuple[int, float]:
    value = int.from_bytes(hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest(), "little")
    return value % dim, (-1.0 if value >> 63 else 1.0)


@functools.lru_cache(maxsize=32768)
def _word_features(word: str, dim: int, seed: int) -> tuple[tuple[int, ...], tuple[float, ...]]:
    salt = f"{seed}/" if seed else ""  # seed 0 hashes the bare features: the course's default model
    index, sign = _bucket(f"{salt}w:{_stem(word)}", dim)
    indices, values = [index], [sign * _WORD_WEIGHT]
    padded = f"#{word}#"
    for i in range(len(padded) - 2):
        index, sign = _bucket(f"{salt}c:{padded[i : i + 3]}", dim)
        indices.append(index)
        values.append(sign * _TRIGRAM_WEIGHT)
    return tuple(indices), tuple(values)  # immutable: cached


def embed(text: str, dim: int = 256, *, seed: int = 0) -> npt.NDArray[np.float64]:
    """Feature-hashing embedding: a new L2-normalised float64 vector of length ``dim`` (at most
    :data:`MAX_DIM`).

    Features: each content word's stem (weight 1.0) and the character trigrams of the word padded with
    ``#`` (weight 0.3); stopwords count only when the text has nothing else. Each feature is hashed with
    ``hashlib.blake2b`` (stable across processes, unlike ``hash()``) to a bucket, one hash bit giving its
    sign. Texts sharing words or word parts get a high :func:`cosine`. Should all features cancel out (a
    pathological collision), the zero vector is returned.

    ``seed`` picks another family of hash functions: another "model". Vectors of different seeds or
    sizes are not comparable, as with two real embedding models; seed 0 is the course's default.
    """
    text = _check_text(text)
    size = _check_positive_int(dim, "dim")
    if size > MAX_DIM:
        raise ValueError(f"dim must be at most {MAX_DIM} (MAX_DIM), got {size}")
    seed = _check_seed(seed)
    tokens = [w for w in words(text) if w not in STOPWORDS] or words(text)
    indices: list[int] = []
    values: list[float] = []
    for word in tokens or [_SPACES_RE.sub(" ", text.strip().lower())]:  # symbols only: one "word"
        idx, val = _word_features(word, size, seed)
        indices += idx
        values += val
    counts = np.bincount(np.asarray(indices, dtype=np.intp), weights=values, minlength=size)
    vector = np.asarray(counts, dtype=np.float64)
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def cosine(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    """Cosine similarity of two 1-D numeric vectors of equal length, in [-1, 1]; 0.0 if either is zero."""
    try:
        va, vb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"a and b must be numeric vectors: {exc}") from exc
    if va.ndim != 1 or va.shape != vb.shape:
        raise ValueError(f"a and b must be 1-D vectors of equal length, got shapes {va.shape} and {vb.shape}")
    norms = float(np.linalg.norm(va)) * float(np.linalg.norm(vb))
    return 0.0 if norms == 0.0 else float(np.clip(np.dot(va, vb) / norms, -1.0, 1.0))


def answer(question: str, context: str, max_sentences: int = 1) -> str:
    """Extractive QA: the context sentence(s) sharing the most words with ``question``.

    Each distinct stemmed content word of the question found in a sentence adds ``1 + log(N / df)``
    (``N`` sentences, ``df`` of them containing the word), so specific words count more than common
    ones. The best ``max_sentences`` sentences (ties: earlier) come back in context order. Empty
    context, or no shared word at all, gives :data:`NO_ANSWER`.
    """
    wanted = set(_content_stems(_check_text(question, "question")))
    sentences = _split_sentences(_check_text(context, "context", allow_empty=True))
    limit = _check_positive_int(max_sentences, "max_sentences")
    stem_sets = [set(_content_stems(s)) for s in sentences]
    df = Counter(stem for stems in stem_sets for stem in stems & wanted)
    weight = {stem: 1.0 + math.log(len(sentences) / n) for stem, n in df.items()}
    scores = [sum(weight[s] for s in stems & weight.keys()) for stems in stem_sets]
    best = [i for i in sorted(range(len(sentences)), key=lambda i: (-scores[i], i)) if scores[i] > 0]
    return " ".join(sentences[i] for i in sorted(best[:limit])) if best else NO_ANSWER


@dataclass(frozen=True, slots=True)
class Document:
    """One knowledge-base entry; ``topic`` is one of :data:`TOPICS`."""

    id: str
    title: str
    text: str
    topic: str
    source: str
    year: int


def _document(item: object) -> Document:
    if not isinstance(item, dict):
        raise ValueError(f"corpus entries must be JSON objects, got {type(item).__name__}")
    strings = {k: item.get(k) for k in ("id", "title", "text", "topic", "source")}
    year = item.get("year")
    if any(not isinstance(v, str) for v in strings.values()) or type(year) is not int:
        raise ValueError(f"corpus entry {item.get('id')!r} has a missing or mistyped field")
    return Document(year=year, **{k: str(v) for k, v in strings.items()})


@functools.cache
def load_corpus() -> tuple[Document, ...]:
    """The bundled knowledge base (``asynclab/data/corpus.json``) as a tuple of documents; read once."""
    raw = resources.files("asynclab.data").joinpath("corpus.json").read_text(encoding="utf-8")
    items = json.loads(raw)
    if not isinstance(items, list):
        raise ValueError("corpus.json must contain a JSON list")
    return tuple(_document(item) for item in items)
