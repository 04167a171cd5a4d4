"""A CPU-bound re-ranker in pure Python: the kind of work asyncio cannot overlap.

    hits = await store.search(question, k=12)     # waiting on a service: asyncio overlaps it
    rerank(question, hits, k=3)                    # computing: tens of ms of CPU, the GIL held throughout
    # [('doc-069', 0.9412), ('doc-013', 0.8125), ('doc-143', 0.7901)]

A retriever ranks by embeddings (fast, approximate); a re-ranker then scores each candidate
against the query more carefully. Real ones are cross-encoders, a model's forward pass per
(query, document) pair. This one matches each word of the query to its closest word in the
candidate by edit distance, so "retrying" still finds "retries" and a typo still finds its word,
in plain Python loops: real computation, deterministic, that holds the GIL from start to end.
Threads take turns running it; processes run it in parallel (notebook 16 measures both).

It lives in a module, not a notebook cell, because a process pool sends a function to its
workers by name: a ``spawn``-ed worker imports ``asynclab.reranker`` and finds it there.

Introduced in notebook 16.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Protocol

from asynclab.text import STOPWORDS, words

__all__ = ["Candidate", "edit_distance", "rerank", "similarity", "units"]


class Candidate(Protocol):
    """What :func:`rerank` reads from a candidate: a :class:`~asynclab.Hit` or a :class:`~asynclab.Document`."""

    @property
    def id(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def text(self) -> str: ...


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: the fewest single-letter insertions, deletions and substitutions from a to b.

    The textbook dynamic programme, row by row, len(a) × len(b) steps of Python: no shortcut on purpose.
    """
    previous = list(range(len(b) + 1))
    for i, letter in enumerate(a, 1):
        current = [i]
        for j, other in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (letter != other)))
        previous = current
    return previous[-1]


def similarity(a: str, b: str) -> float:
    """1 for the same word, 0 for nothing in common: 1 - edit distance / the longer length."""
    if not a and not b:
        return 1.0
    return 1.0 - edit_distance(a, b) / max(len(a), len(b))


def units(text: str) -> list[str]:
    """What is matched: the distinct meaningful words of ``text`` (no stopwords), then its distinct
    pairs of neighbouring ones ("rate limit", "event loop"), each list in order of appearance."""
    content = [w for w in words(text) if w not in STOPWORDS]
    pairs = [f"{a} {b}" for a, b in itertools.pairwise(content)]
    return list(dict.fromkeys(content)) + list(dict.fromkeys(pairs))


def _closest(unit: str, among: list[str]) -> float:
    """The similarity of the closest unit of the same kind (a word to words, a pair to pairs)."""
    pair = " " in unit
    return max((similarity(unit, other) for other in among if (" " in other) == pair), default=0.0)


def _check_candidates(candidates: object) -> list[Candidate]:
    if isinstance(candidates, (str, bytes)) or not isinstance(candidates, Sequence):
        raise TypeError("candidates must be a sequence of hits or documents (with .id, .title and .text), "
                        f"got {type(candidates).__name__}")
    for index, candidate in enumerate(candidates):
        if not all(isinstance(getattr(candidate, name, None), str) for name in ("id", "title", "text")):
            raise TypeError(f"candidates[{index}] must be a hit or a document (with str .id, .title and .text), "
                            f"got {type(candidate).__name__} {candidate!r:.60}")
    return list(candidates)


def rerank(query: str, candidates: Sequence[Candidate], k: int = 3) -> list[tuple[str, float]]:
    """The ``k`` best candidates for ``query`` as ``(id, score)``, best first; scores from 0 to 1.

    A candidate's score is the mean, over the query's meaningful words, of the squared
    :func:`similarity` of the closest word in its title and text (squared: a near-exact match
    counts far more than a vague one). Ties go to the smaller id, so the order never depends on
    the candidates' order. About 4 ms of CPU per candidate of the course's knowledge base.

    query: a non-empty str with at least one word that is not a stopword. candidates: hits or
    documents (anything with str ``id``, ``title`` and ``text``). k: an int >= 1 (fewer
    candidates than k: all of them).
    """
    if not isinstance(query, str):
        raise TypeError(f"query must be a str, got {type(query).__name__} {query!r:.60}")
    wanted = units(query)
    if not wanted:
        raise ValueError(f"query must contain at least one word that is not a stopword, got {query!r:.60}")
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"k must be an int >= 1, got {type(k).__name__} {k!r:.60}")
    if k < 1:
        raise ValueError(f"k must be an int >= 1, got {k}")
    scored = []
    for candidate in _check_candidates(candidates):
        title, text = units(candidate.title), units(candidate.text)
        # Squared: a near-exact match counts far more than a vague one; the title counts as much
        # as the whole text, so a page about the question beats one that mentions its words.
        score = sum(_closest(u, title) ** 2 + _closest(u, text) ** 2 for u in wanted) / (2 * len(wanted))
        scored.append((candidate.id, round(score, 4)))
    scored.sort(key=lambda pair: (-pair[1], pair[0]))
    return scored[:k]
