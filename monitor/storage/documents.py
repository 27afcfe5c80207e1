"""Published documents: the feed documents, archive pages, OPML list and index page the publisher wrote,
kept with their validators so that a `monitor serve` on any host sharing the database serves them
(:mod:`monitor.docsync` fills the table from a feed folder; :mod:`monitor.web.feedfiles` serves it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from ..types import DocumentMeta, StoredDocument
from .base import StorageBase, chunks, utc
from .schema import feed_documents

_META = (feed_documents.c.path, feed_documents.c.etag, feed_documents.c.size, feed_documents.c.changed_at,
         feed_documents.c.mtime_ns)


def _meta(r: Any) -> DocumentMeta:
    return DocumentMeta(r.path, r.etag, int(r.size), utc(r.changed_at), int(r.mtime_ns))


class DocumentsMixin(StorageBase):
    """Published documents and their validators."""

    def document_metas(self) -> dict[str, DocumentMeta]:
        """Every stored document's validators (no bodies), by path."""
        with self._tx("reading published documents") as conn:
            return {r.path: _meta(r) for r in conn.execute(sa.select(*_META))}

    def document_meta(self, path: str) -> DocumentMeta | None:
        """One document's validators (a primary-key lookup: what a conditional GET needs), or None."""
        with self._tx("reading a published document") as conn:
            row = conn.execute(sa.select(*_META).where(feed_documents.c.path == path)).first()
            return _meta(row) if row is not None else None

    def document(self, path: str) -> StoredDocument | None:
        """One document with its bytes, or None."""
        with self._tx("reading a published document") as conn:
            row = conn.execute(sa.select(*_META, feed_documents.c.body).where(feed_documents.c.path == path)).first()
            return StoredDocument(_meta(row), bytes(row.body)) if row is not None else None

    def save_documents(self, documents: Sequence[StoredDocument], remove: Sequence[str] = ()) -> None:
        """Store these documents (replacing those at the same paths) and delete the ``remove`` paths, in one
        transaction."""
        rows = [{"path": d.meta.path, "body": d.body, "etag": d.meta.etag, "size": d.meta.size,
                 "changed_at": utc(d.meta.changed_at), "mtime_ns": d.meta.mtime_ns} for d in documents]
        with self._tx("saving published documents") as conn:
            for chunk in chunks([r["path"] for r in rows] + list(remove)):
                conn.execute(feed_documents.delete().where(feed_documents.c.path.in_(chunk)))
            if rows:
                conn.execute(feed_documents.insert(), rows)
