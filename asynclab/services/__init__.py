"""The simulated services: an LLM, embeddings, vector stores, metadata and agent tools."""

from __future__ import annotations

from asynclab.services.base import Service
from asynclab.services.embeddings import BlockingEmbeddings, Embeddings
from asynclab.services.llm import LLM, MODELS, BlockingLLM
from asynclab.services.metadata import MetadataStore
from asynclab.services.tools import Tools
from asynclab.services.vectorstores import (
    STORES,
    Hit,
    PgVectorStore,
    PineconeStore,
    RedisStore,
    VectorStore,
    vector_store,
)

__all__ = [
    "LLM",
    "MODELS",
    "STORES",
    "BlockingEmbeddings",
    "BlockingLLM",
    "Embeddings",
    "Hit",
    "MetadataStore",
    "PgVectorStore",
    "PineconeStore",
    "RedisStore",
    "Service",
    "Tools",
    "VectorStore",
    "vector_store",
]
