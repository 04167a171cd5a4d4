"""Reciprocal rank fusion: merge ranked lists from stores that score differently.

    fused = rrf([[h.id for h in hits] for hits in per_store])   # [(doc_id, score)], best first

Each store scores with its own embedding model, so cosine scores from two stores cannot be
compared; ranks can. Every list adds ``1 / (k + rank)`` (rank from 1) to each id it holds, and
ids are ordered by the sum, equal sums by id, so the result never depends on the list order.
``k = 60`` is the constant of Cormack, Clarke and Büttcher (2009).

Introduced in notebook 05.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["RRF_K", "rrf"]

#: The constant of reciprocal rank fusion (Cormack et al., 2009).
RRF_K = 60


def rrf(rankings: Iterable[Sequence[str]], k: int = RRF_K) -> list[tuple[str, float]]:
    """Fuse ranked lists of ids into one: ``[(id, score)]``, best first.

        rrf([["doc-1", "doc-2"], ["doc-2", "doc-3"]])   # doc-2 first: two lists rank it
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"k must be an int >= 0 (60 is the usual constant), got {k!r}")
    scores: dict[str, float] = {}
    for ranking in rankings:
        if isinstance(ranking, str):
            raise TypeError(f"each ranking must be a sequence of ids, not a str: got {ranking!r:.60}")
        for rank, doc_id in enumerate(ranking, start=1):
            if not isinstance(doc_id, str):
                raise TypeError(f"ids must be str, got {type(doc_id).__name__} {doc_id!r:.60}")
            scores[doc_id] = scores.get(doc_id, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))
