"""A simulated embedding service: one text or a batch, where similar texts land close.

    emb = Embeddings()
    v = await emb.embed("How do I stream tokens?")          # 0.105 s, a unit vector
    vs = await emb.embed_batch(chunks)                       # 0.1 + 0.005·n s: batching pays

Latency is ``base + per_item·n`` (:class:`~asynclab.latency.Batched`): one call for 100
texts costs 0.6 s, a hundred calls for one text each cost 10.5 s of service time.

Introduced in notebook 09; :class:`BlockingEmbeddings` shows the blocking trap there.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from asynclab import text as textlib
from asynclab.faults import Faults
from asynclab.latency import Batched, Latency
from asynclab.services.base import Service, check_text

__all__ = ["BlockingEmbeddings", "Embeddings", "Vector", "check_texts"]

Vector = npt.NDArray[np.float64]

#: The default profile: 0.1 s per request plus 5 ms per text.
DEFAULT_LATENCY = Batched(base=0.1, per_item=0.005)


def check_texts(texts: object) -> list[str]:
    """Validate a batch: a list (or other sequence) of non-empty ``str``, never one ``str``."""
    # A str (or bytes) is a sequence too, of characters: embedding each one is never meant.
    if isinstance(texts, (str, bytes, bytearray)) or not isinstance(texts, Sequence):
        raise TypeError(
            f"texts must be a list of str, got {type(texts).__name__} {texts!r:.60}"
            + (" (use embed() for one text)" if isinstance(texts, str) else "")
        )
    if not texts:
        raise ValueError("texts must hold at least one text, got an empty list")
    return [check_text(t, f"texts[{i}]") for i, t in enumerate(texts)]


def _check_dim(dim: object) -> int:
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"dim must be an int from 1 to {textlib.MAX_DIM}, got {type(dim).__name__} {dim!r}")
    if not 1 <= dim <= textlib.MAX_DIM:
        raise ValueError(f"dim must be an int from 1 to {textlib.MAX_DIM} (real models use 256-4096), got {dim!r}")
    return dim


class _EmbeddingsBase(Service):
    default_name = "embeddings"

    def __init__(
        self,
        *,
        dim: int = 256,
        latency: float | Latency | None = None,
        faults: Faults | None = None,
        capacity: int | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(
            name=name, latency=DEFAULT_LATENCY if latency is None else latency,
            faults=faults, capacity=capacity,
        )
        self.dim = _check_dim(dim)

    def _vectors(self, batch: list[str]) -> list[Vector]:
        return [textlib.embed(t, self.dim) for t in batch]


class Embeddings(_EmbeddingsBase):
    """An async embedding client. dim: vector size, from 1 to ``asynclab.text.MAX_DIM`` (default 256)."""

    async def embed(self, text: str) -> Vector:
        """The unit vector of one text."""
        check_text(text, "text")
        return await self._serve("embed", text, textlib.embed, text, self.dim)

    async def embed_batch(self, texts: Sequence[str]) -> list[Vector]:
        """Vectors for many texts in one request: one ``base`` latency for the whole batch."""
        batch = check_texts(texts)
        return await self._serve(
            "embed_batch", "\x1f".join(batch), self._vectors, batch, items=len(batch)
        )


class BlockingEmbeddings(_EmbeddingsBase):
    """The same service behind a blocking client: every call holds the thread.

    Calling it inside ``async def`` runs your "parallel" embeddings one at a time;
    ``await asyncio.to_thread(emb.embed, chunk)`` moves the wait off the event loop.
    """

    def embed(self, text: str) -> Vector:
        check_text(text, "text")
        return self._serve_blocking("embed", text, textlib.embed, text, self.dim)

    def embed_batch(self, texts: Sequence[str]) -> list[Vector]:
        batch = check_texts(texts)
        return self._serve_blocking(
            "embed_batch", "\x1f".join(batch), self._vectors, batch, items=len(batch)
        )
