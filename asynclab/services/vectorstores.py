"""Three vector stores with one interface, three shares of the knowledge base, three embeddings.

    store = PineconeStore()
    hits = await store.search("how do retries with backoff work?", k=3)
    hits[0].title, hits[0].score, hits[0].store

A team's knowledge rarely lives in one system: the support FAQ sits in a cache, the product
docs in a managed index, the internal wiki in the database next to the app. Each store here
holds its own share of the bundled knowledge base (``asynclab/data``, chosen by each document's
``source``), embeds it with its own model, and does a real cosine top-k over what it holds:

| store             | holds                                                     | model (dim, seed) | latency |
| ----------------- | --------------------------------------------------------- | ----------------- | ------- |
| ``RedisStore``    | FAQ cache: support FAQ, office hours notes, field guide,  | 128, seed 1       | 0.2 s   |
|                   | plus copies of the 7 product-docs pages asked about most  |                   |         |
| ``PgVectorStore`` | internal wiki: team wiki, design reviews, postmortems,    | 384, seed 2       | 0.4 s   |
|                   | plus 4 blog posts that began as wiki pages                |                   |         |
| ``PineconeStore`` | product docs: handbook, lecture notes, engineering blog   | 256, seed 0       | 0.6 s   |
| ``VectorStore``   | the whole knowledge base (the base class, any ``name``)   | 256, seed 0       | 0.6 s   |

Why it matters (notebook 05): for one question the stores return different documents with
scores from different models, so their lists can only be merged by rank (reciprocal rank
fusion), and the fused list finds what no single store ranks first. The overlap is small, as
in real systems, and a document two stores hold gets a vote from each. Pinecone's model is the
course's default (``Embeddings()``, ``text.embed``), so an embedding from ``Embeddings()`` is a
valid query for it; the other stores refuse a vector of the wrong size and say which model they
use. Latencies, as in production: Redis is an in-memory index next to the app, pgvector a SQL
round trip and an HNSW scan in Postgres, Pinecone a managed service across the internet (the
seed).

Introduced in notebook 05.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from asynclab import text
from asynclab.faults import Faults
from asynclab.latency import Latency, check_count
from asynclab.services.base import Service, check_text

__all__ = [
    "STORES",
    "Collection",
    "Hit",
    "PgVectorStore",
    "PineconeStore",
    "RedisStore",
    "VectorStore",
    "nearest",
    "vector_store",
]

Vector = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Hit:
    """One retrieved document, its cosine similarity to the query, and the store it came from."""

    id: str
    title: str
    text: str
    topic: str
    score: float
    store: str


@dataclass(frozen=True, slots=True)
class Collection:
    """What a store holds and how it embeds it.

    sources: the corpus ``source`` values it indexes (None: every document). copies: ids of
    documents it holds besides those (copies of pages kept in another system). model, dim, seed:
    its embedding model, a :func:`asynclab.text.embed` of that size and hash seed.
    """

    description: str
    sources: frozenset[str] | None
    copies: frozenset[str]
    model: str
    dim: int
    seed: int

    def holds(self, doc: text.Document) -> bool:
        """Whether ``doc`` is in this collection."""
        return self.sources is None or doc.source in self.sources or doc.id in self.copies

    def documents(self) -> tuple[text.Document, ...]:
        """The documents of this collection, in corpus order."""
        return tuple(doc for doc in text.load_corpus() if self.holds(doc))

    def embed(self, query: str) -> Vector:
        """``query`` embedded with this collection's model (a unit vector of ``dim`` floats)."""
        return text.embed(check_text(query, "query"), self.dim, seed=self.seed)


WHOLE = Collection("the whole knowledge base", None, frozenset(), "hash-256", 256, 0)
FAQ_CACHE = Collection(
    "FAQ cache",
    frozenset({"support FAQ", "office hours notes", "field guide"}),
    # Product-docs pages behind the most-asked questions: TTFT, streaming, RAG, embeddings,
    # backoff, gather, prompt injection.
    frozenset({"doc-002", "doc-005", "doc-017", "doc-033", "doc-069", "doc-083", "doc-113"}),
    "hash-128", 128, 1,
)
WIKI = Collection(
    "internal wiki",
    frozenset({"team wiki", "design review", "postmortem archive"}),
    # Blog posts that were wiki pages first: reranking, semantic caching, backpressure,
    # indirect prompt injection.
    frozenset({"doc-021", "doc-074", "doc-089", "doc-114"}),
    "hash-384", 384, 2,
)
PRODUCT_DOCS = Collection(
    "product docs",
    frozenset({"asynclab handbook", "lecture notes", "engineering blog"}),
    frozenset(),
    "hash-256", 256, 0,
)


@cache
def _index(collection: Collection) -> tuple[tuple[text.Document, ...], Vector, npt.NDArray[np.intp]]:
    docs = collection.documents()
    matrix = np.stack([text.embed(f"{d.title}. {d.text}", collection.dim, seed=collection.seed) for d in docs])
    id_rank = np.argsort(np.argsort([d.id for d in docs]))
    return docs, matrix, id_rank


def _not_a_query(query: object, dim: int) -> TypeError:
    hint = ""
    if isinstance(query, (bytes, bytearray)):
        hint = "; decode it first (query.decode())"
    elif isinstance(query, (list, tuple)):
        hint = "; search one query per call, and pass an embedding as np.asarray(vector)"
    return TypeError(
        f"query must be a str or a numpy array of shape ({dim},) (an embedding), got {type(query).__name__}{hint}"
    )


def _digest(vector: Vector) -> str:
    """A short stable name for a query vector: its request key (faults and jitter depend on it)."""
    return hashlib.blake2b(vector.tobytes(), digest_size=8).hexdigest()


def _query_vector(query: object, collection: Collection, owner: str) -> Vector:
    """The unit query vector for ``collection``: ``query`` embedded, or a given embedding checked."""
    if isinstance(query, str):
        return collection.embed(query)
    if not isinstance(query, np.ndarray):
        raise _not_a_query(query, collection.dim)
    if query.dtype.kind not in "iuf":
        raise TypeError(f"query vector must hold real numbers (int or float), got dtype {query.dtype}")
    if query.shape != (collection.dim,):
        raise ValueError(
            f"query vector must have shape ({collection.dim},), the size of {owner}'s embedding model "
            f"{collection.model!r}; got shape {query.shape}. Pass the query as text, or embed it with that model."
        )
    vector = query.astype(np.float64)
    bad = ~np.isfinite(vector)
    if bad.any():
        raise ValueError(
            f"query vector must be finite: {int(np.isnan(vector).sum())} NaN and {int(np.isinf(vector).sum())} "
            f"infinite values, the first at index {int(np.argmax(bad))}"
        )
    largest = float(np.max(np.abs(vector)))
    if largest == 0:
        raise ValueError("query vector must not be all zeros: it has no direction to compare")
    vector = vector / largest  # first to [-1, 1]: the norm of 1e200-sized values would overflow
    return vector / float(np.linalg.norm(vector))


def _top_k(collection: Collection, vector: Vector, k: int) -> list[tuple[text.Document, float]]:
    docs, matrix, id_rank = _index(collection)
    scores = matrix @ vector
    # By score, then by id (lexsort's last key is the primary one): ties never depend on the sort.
    order = np.lexsort((id_rank, -scores))[:k]
    return [(docs[i], float(scores[i])) for i in order]


def nearest(query: str | Vector, k: int = 3, dim: int = 256) -> list[tuple[text.Document, float]]:
    """Cosine top-k over the whole knowledge base, instantly (no service, no latency), model seed 0."""
    check_count(k, "k")
    collection = WHOLE if dim == 256 else replace(WHOLE, model=f"hash-{dim}", dim=check_count(dim, "dim"))
    return _top_k(collection, _query_vector(query, collection, "the knowledge base"), k)


class VectorStore(Service):
    """A vector store; this base class holds the whole knowledge base (subclasses hold a share).

    latency: simulated seconds per search (default 0.6 s, the seed's vector search).
    faults, capacity, name: see :class:`~asynclab.services.base.Service`.
    The class attribute ``collection`` says what the store holds and its embedding model.
    """

    default_name = "vectorstore"
    default_latency = 0.6
    collection: ClassVar[Collection] = WHOLE

    def __init__(
        self,
        *,
        latency: float | Latency | None = None,
        faults: Faults | None = None,
        capacity: int | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name, latency=latency, faults=faults, capacity=capacity)
        _index(self.collection)  # build the index now, not inside the first timed call

    async def search(self, query: str | Vector, k: int = 3) -> list[Hit]:
        """The ``k`` documents of this store most similar to ``query`` (a text or an embedding), best first."""
        check_count(k, "k")
        vector = _query_vector(query, self.collection, self.name)  # refuse a bad query before any latency
        key = query if isinstance(query, str) else f"vector:{_digest(vector)}"
        return await self._serve("search", f"{k}:{key}", self._hits, vector, k)

    def nearest(self, query: str | Vector, k: int = 3) -> list[tuple[text.Document, float]]:
        """What :meth:`search` finds, instantly and untraced: ``(document, cosine)`` pairs, best first.

        For checkers and tests that need the expected ranking without spending the latency.
        """
        check_count(k, "k")
        return _top_k(self.collection, _query_vector(query, self.collection, self.name), k)

    def _hits(self, query: Vector, k: int) -> list[Hit]:
        return [
            Hit(doc.id, doc.title, doc.text, doc.topic, round(score, 4), self.name)
            for doc, score in _top_k(self.collection, query, k)
        ]


class RedisStore(VectorStore):
    """Redis-like: the FAQ cache, an in-memory index next to the app, fast (0.2 s)."""

    default_name = "redis"
    default_latency = 0.2
    collection = FAQ_CACHE


class PgVectorStore(VectorStore):
    """pgvector-like: the internal wiki in Postgres with a vector index (0.4 s)."""

    default_name = "pgvector"
    default_latency = 0.4
    collection = WIKI


class PineconeStore(VectorStore):
    """Pinecone-like: the product docs in a managed service over the network (0.6 s)."""

    default_name = "pinecone"
    default_latency = 0.6
    collection = PRODUCT_DOCS


STORES: dict[str, type[VectorStore]] = {
    "redis": RedisStore,
    "pgvector": PgVectorStore,
    "pinecone": PineconeStore,
}


def vector_store(kind: str, **options: object) -> VectorStore:
    """Make a store by name: ``vector_store("redis", latency=0.05)``."""
    if kind not in STORES:
        raise ValueError(f"store must be one of {', '.join(map(repr, STORES))}; got {kind!r}")
    factory: Callable[..., VectorStore] = STORES[kind]
    return factory(**options)
