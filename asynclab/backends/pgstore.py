"""A real vector store: a share of the knowledge base in Postgres + pgvector, searched through asyncpg.

    pool = await asyncpg.create_pool(postgres.dsn, max_size=4)
    store = PostgresVectorStore(pool, like=PgVectorStore)
    await store.load()                                   # the same documents and embeddings
    hits = await store.search("how do retries with backoff work?", k=3)

It is a :class:`~asynclab.services.vectorstores.VectorStore`: the same ``search(query, k)``
returning :class:`Hit` objects, the same documents and embedding model as the simulated store
it is ``like``, and a span in the current trace per search, so code written for the simulated
stores (lesson 05) runs on it unchanged and its timeline draws the same way. Differences:
the latency is real (wall time × speed in the trace, like every span), a span's queued part
is the wait for a free connection of the pool (the pool is the concurrency limit), and the
fault plan is not used (a real server fails on its own).

The table has no vector index: over a few hundred rows an exact scan takes a millisecond and
its top-k equals the simulated store's cosine top-k. (An HNSW index trades exactness for
speed on large tables: its top-k is approximate.) pgvector stores 32-bit floats, so scores
agree with the simulated ones to about 1e-6.

Introduced in notebook 15.
"""

from __future__ import annotations

import re
from typing import Any

from asynclab.clock import get_speed, now
from asynclab.latency import as_latency, check_count, check_seconds
from asynclab.services.vectorstores import Hit, PgVectorStore, Vector, VectorStore, _digest, _index, _query_vector

__all__ = ["PostgresVectorStore"]

_TABLE = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def _literal(vector: Vector) -> str:
    """A vector as pgvector's text form, ``[0.1,0.2,…]``, sent as ``$1::text::vector``.

    A text parameter works on a pool with no vector codec registered, and spares each new
    connection asyncpg's introspection of the unknown ``vector`` type (tens of ms per connection).
    """
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


class PostgresVectorStore(VectorStore):
    """The documents of the simulated store ``like``, in a Postgres table, searched with pgvector.

    pool: an ``asyncpg`` pool (anything with ``acquire()``); its size limits concurrent searches.
    like: the simulated store class whose documents and embedding model this store holds
    (default :class:`PgVectorStore`, the internal wiki). name: in traces (default ``"postgres"``).
    table: the table's name (default ``kb_`` + name). delay: simulated seconds of extra work on
    the server per search (``pg_sleep``, holding the connection), to model a slow scan on a big
    table; 0 by default, the real cost of the query only. ``latency`` is ``Fixed(delay)``: what a
    search is declared to take, the query's real time on top.
    """

    default_name = "postgres"
    default_latency = 0.0  # declared: the delay (see __init__); the query's real time comes on top, measured

    def __init__(
        self,
        pool: Any,
        *,
        like: type[VectorStore] = PgVectorStore,
        name: str | None = None,
        table: str | None = None,
        delay: float = 0.0,
    ) -> None:
        if not callable(getattr(pool, "acquire", None)):
            raise TypeError(
                f"pool must be an asyncpg pool (asyncpg.create_pool(dsn)), got {type(pool).__name__} {pool!r:.60}"
            )
        if not (isinstance(like, type) and issubclass(like, VectorStore)):
            raise TypeError(f"like must be a VectorStore class such as PgVectorStore, got {like!r:.60}")
        self.collection = like.collection  # type: ignore[misc]  # per instance: the store it mirrors
        super().__init__(name=name)
        table = f"kb_{self.name}" if table is None else table
        if not isinstance(table, str) or not _TABLE.fullmatch(table):
            raise ValueError(
                f"table must be a lower-case SQL name (letters, digits, _; at most 63), got {table!r}; "
                "or pass name= with such a name"
            )
        self.pool = pool
        self.table = table
        self.delay = check_seconds(delay, "delay")
        # What a search is known to take before it runs: its delay. A checker that needs one slow store
        # it can rely on (lesson 05's, given stores=) reads it here, like a simulated store's latency.
        self.latency = as_latency(self.delay)
        self._search_sql = (
            "WITH pause AS (SELECT pg_sleep($3)) "
            f"SELECT id, title, text, topic, 1 - (embedding <=> $1::text::vector) AS score FROM {table}, pause "
            "ORDER BY embedding <=> $1::text::vector, id LIMIT $2"
        )

    async def load(self) -> int:
        """(Re)create the table and insert the documents with their embeddings; returns how many."""
        docs, matrix, _ = _index(self.collection)
        rows = [(d.id, d.title, d.text, d.topic, _literal(v)) for d, v in zip(docs, matrix, strict=True)]
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            await conn.execute(f"DROP TABLE IF EXISTS {self.table}")
            await conn.execute(
                f"CREATE TABLE {self.table} (id text PRIMARY KEY, title text NOT NULL, text text NOT NULL, "
                f"topic text NOT NULL, embedding vector({self.collection.dim}) NOT NULL)"
            )
            await conn.executemany(f"INSERT INTO {self.table} VALUES ($1, $2, $3, $4, $5::text::vector)", rows)
        return len(rows)

    async def search(self, query: str | Vector, k: int = 3) -> list[Hit]:
        """The ``k`` documents most similar to ``query`` (a text or an embedding), best first, from Postgres."""
        check_count(k, "k")
        vector = _query_vector(query, self.collection, self.name)  # refuse a bad query before any I/O
        key = query if isinstance(query, str) else f"vector:{_digest(vector)}"
        span = self._open("search", f"{k}:{key}")
        try:
            async with self.pool.acquire() as conn:
                span.start = now()  # until here the search waited for a connection: the pool's queue
                self.in_flight += 1
                try:
                    rows = await conn.fetch(self._search_sql, _literal(vector), k, self.delay / get_speed())
                finally:
                    self.in_flight -= 1
                self._finish(span)  # before the connection goes back: the next search starts after this one
        except BaseException as exc:
            self._close(span, exc)  # nothing to do when the span was finished already
            raise
        return [
            Hit(r["id"], r["title"], r["text"], r["topic"], round(float(r["score"]), 4), self.name) for r in rows
        ]

    def __repr__(self) -> str:
        return (
            f"<PostgresVectorStore {self.name!r} table={self.table} ({self.collection.description}, "
            f"{self.collection.model}) in_flight={self.in_flight} calls={self.calls}>"
        )


