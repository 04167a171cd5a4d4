"""A metadata store: document id → title, source, year, topic, author, url.

    meta = MetadataStore()
    await meta.get("doc-001")      # 0.3 s, the seed example's metadata fetch

Introduced in notebook 00.
"""

from __future__ import annotations

from functools import cache, lru_cache

from asynclab import text
from asynclab.faults import NotFound
from asynclab.services.base import Service, check_text

__all__ = ["MetadataStore"]

_AUTHORS = ("A. Rivera", "B. Chen", "C. Okafor", "D. Novak", "E. Haddad", "F. Lindqvist")


@cache
def _documents() -> dict[str, text.Document]:
    return {doc.id: doc for doc in text.load_corpus()}


class MetadataStore(Service):
    """Document metadata behind a 0.3 s lookup (latency, faults, capacity: see Service)."""

    default_name = "metadata"
    default_latency = 0.3

    async def get(self, doc_id: str) -> dict[str, str | int]:
        """The metadata of one document; :class:`~asynclab.faults.NotFound` for an unknown id."""
        check_text(doc_id, "doc_id")
        return await self._serve("get", doc_id, self._lookup, doc_id)

    def _lookup(self, doc_id: str) -> dict[str, str | int]:
        info = _metadata(doc_id)
        if info is None:
            raise NotFound(
                f"no document {doc_id!r}: ids look like 'doc-001' … {max(_documents())!r}",
                service=self.name,
                operation="get",
            )
        return dict(info)  # a copy: the caller may edit it


@lru_cache(maxsize=1024)
def _metadata(doc_id: str) -> dict[str, str | int] | None:
    doc = _documents().get(doc_id)
    if doc is None:
        return None
    number = int(doc.id.rsplit("-", 1)[-1]) if doc.id.rsplit("-", 1)[-1].isdigit() else 0
    return {
        "id": doc.id,
        "title": doc.title,
        "topic": doc.topic,
        "source": doc.source,
        "year": doc.year,
        "author": _AUTHORS[number % len(_AUTHORS)],
        "url": f"https://docs.asynclab.example/{doc.topic}/{doc.id}",
    }
