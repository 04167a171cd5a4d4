"""Three vector stores with one interface and three latency profiles.

    store = PineconeStore()
    hits = await store.search("how do retries with backoff work?", k=3)
    hits[0].title, hits[0].score

Each store does a real cosine top-k over the bundled knowledge base (``asynclab/data``), so
the three return the same documents; what differs is how long they take, as in production:

| store            | default latency | why                                              |
| ---------------- | --------------- | ------------------------------------------------ |
| ``RedisStore``   | 0.2 s           | in-memory index next to the app                  |
| ``PgVectorStore``| 0.4 s           | a SQL round trip and an HNSW scan in Postgres    |
| ``PineconeStore``| 0.6 s           | a managed service across the internet (the seed) |

Introduced in notebook 05.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import numpy.typing as npt

from asynclab import text
from asynclab.faults import Faults
from asynclab.latency import Latency, check_count
from asynclab.services.base import Service, check_text

__all__ = [
    "STORES",
    "Hit",
    "PgVectorStore",
    "PineconeStore",
    "RedisStore",
    "VectorStore",
    "nearest",
    "vector_store",
]


@dataclass(frozen=True, slots=True)
class Hit:
    """One retrieved document and its cosine similarity to the query."""

    id: str
    title: str
    text: str
    topic: str
    score: float
    store: str


@cache
def _index(
    dim: int,
) -> tuple[tuple[text.Document, ...], npt.NDArray[np.float64], npt.NDArray[np.intp]]:
    docs = tuple(text.load_corpus())
    matrix = np.stack([text.embed(f"{d.title}. {d.text}", dim) for d in docs])
    id_rank = np.argsort(np.argsort([d.id for d in docs]))
    return docs, matrix, id_rank


def _query_vector(query: str | npt.NDArray[np.float64], dim: int) -> npt.NDArray[np.float64]:
    if isinstance(query, str):
        return text.embed(check_text(query, "query"), dim)
    vector = np.asarray(query, dtype=np.float64)
    if vector.shape != (dim,):
        raise ValueError(f"query vector must have shape ({dim},), got {vector.shape}")
    norm = float(np.linalg.norm(vector))
    if norm == 0:
        raise ValueError("query vector must not be all zeros")
    return vector / norm


def nearest(
    query: str | npt.NDArray[np.float64], k: int = 3, dim: int = 256
) -> list[tuple[text.Document, float]]:
    """Cosine top-k over the knowledge base, instantly (no service, no latency)."""
    check_count(k, "k")
    vector = _query_vector(query, dim)
    docs, matrix, id_rank = _index(dim)
    scores = matrix @ vector
    # By score, then by id (lexsort's last key is the primary one): ties never depend on the sort.
    order = np.lexsort((id_rank, -scores))[:k]
    return [(docs[i], float(scores[i])) for i in order]


class VectorStore(Service):
    """A vector store over the bundled knowledge base.

    latency: simulated seconds per search (default 0.6 s, the seed's vector search).
    faults, capacity, name: see :class:`~asynclab.services.base.Service`.
    """

    default_name = "vectorstore"
    default_latency = 0.6

    def __init__(
        self,
        *,
        latency: float | Latency | None = None,
        faults: Faults | None = None,
        capacity: int | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name, latency=latency, faults=faults, capacity=capacity)
        _index(256)  # build the index now, not inside the first timed call

    async def search(self, query: str | npt.NDArray[np.float64], k: int = 3) -> list[Hit]:
        """The ``k`` documents most similar to ``query`` (a text or an embedding), best first."""
        check_count(k, "k")
        vector = _query_vector(query, 256)  # refuse a bad query before spending any latency
        key = query if isinstance(query, str) else "vector:" + vector.tobytes().hex()[:32]
        return await self._serve("search", f"{k}:{key}", self._hits, vector, k)

    def _hits(self, query: npt.NDArray[np.float64], k: int) -> list[Hit]:
        return [
            Hit(doc.id, doc.title, doc.text, doc.topic, round(score, 4), self.name)
            for doc, score in nearest(query, k)
        ]


class RedisStore(VectorStore):
    """Redis-like: an in-memory index, fast (0.2 s)."""

    default_name = "redis"
    default_latency = 0.2


class PgVectorStore(VectorStore):
    """pgvector-like: Postgres with a vector index (0.4 s)."""

    default_name = "pgvector"
    default_latency = 0.4


class PineconeStore(VectorStore):
    """Pinecone-like: a managed service over the network (0.6 s)."""

    default_name = "pinecone"
    default_latency = 0.6


STORES: dict[str, type[VectorStore]] = {
    "redis": RedisStore,
    "pgvector": PgVectorStore,
    "pinecone": PineconeStore,
}


def vector_store(kind: str, **options: object) -> VectorStore:
    """Make a store by name: ``vector_store("redis", latency=0.05)``."""
    if kind not in STORES:
        raise ValueError(f"store must be one of {', '.join(map(repr, STORES))}; got {kind!r}")
    return STORES[kind](**options)  # type: ignore[arg-type]
