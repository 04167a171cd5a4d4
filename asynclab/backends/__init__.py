"""Real backends behind the course's interfaces: embedded Postgres + pgvector, embedded Redis, local Ray.

    from asynclab.backends import EmbeddedPostgres, EmbeddedRedis, PostgresVectorStore, require
    require("backends")          # a clear message when the extra is not installed

Each server starts from a pip package in a temporary folder, listens only on a Unix socket,
and is stopped (folder deleted) by ``stop()`` or the end of its ``with`` block. ``LocalRay``
starts a Ray cluster on 127.0.0.1 only (notebook 16) and connects this process to it. Importing
this package needs none of the extras; using a server without them raises :class:`MissingExtra`.

Introduced in notebook 15.
"""

from __future__ import annotations

from asynclab.backends.extras import EXTRAS, MissingExtra, missing, need, require
from asynclab.backends.pgstore import PostgresVectorStore
from asynclab.backends.postgres import EmbeddedPostgres
from asynclab.backends.ray_local import LocalRay
from asynclab.backends.redis_server import EmbeddedRedis

__all__ = [
    "EXTRAS",
    "EmbeddedPostgres",
    "EmbeddedRedis",
    "LocalRay",
    "MissingExtra",
    "PostgresVectorStore",
    "missing",
    "need",
    "require",
]
