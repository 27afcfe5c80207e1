"""Keeping the published feed folder in the database, so any host serves what the last cycle published.

:func:`sync_folder` runs after the publisher (:mod:`monitor.feeds`) has written its folder: every servable
file (the feed documents, their archive pages, ``feeds.opml``, ``index.html``) is stored in the database's
``feed_documents`` with its SHA-256 and modification time, files gone from the folder are deleted there.
A file whose size and modification time match the stored row is not even read (the publisher leaves
unchanged files untouched, so a run with nothing new reads nothing); one that was rewritten with the same
bytes (another host publishing the same content) is read and hashed but not stored again, so validators
stay stable whichever host publishes. `monitor serve` then answers from the table on every host
(:class:`monitor.web.feedfiles.DatabaseFeedFiles`).

Done when the database is shared by nature (PostgreSQL, see :attr:`monitor.storage.base.StorageBase.shared`); on
SQLite, the single-host default, the folder alone is served, as before.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

from .interfaces import DocumentStore
from .types import DocumentMeta, StoredDocument

SERVED_SUFFIXES = (".xml", ".opml", ".html")  # what the web app serves (web.feedfiles.CONTENT_TYPES)
BATCH_BYTES = 32 * 1024 * 1024  # documents per transaction: a first generation is gigabytes


@dataclass(frozen=True, slots=True)
class SyncReport:
    """What one sync did: documents stored (new or changed), left as they were, and deleted."""

    stored: int
    unchanged: int
    removed: int


def servable_files(out: Path) -> dict[str, Path]:
    """The files below ``out`` that are served, by path relative to it (hidden files — the manifest, the
    lock, temporary files — never)."""
    found: dict[str, Path] = {}
    for path in out.rglob("*"):
        rel = path.relative_to(out).as_posix()
        if path.suffix in SERVED_SUFFIXES and not any(p.startswith(".") for p in rel.split("/")) and path.is_file():
            found[rel] = path
    return found


def sync_folder(out: Path, store: DocumentStore) -> SyncReport:
    """Make the stored documents what ``out`` holds (see the module docstring)."""
    known = store.document_metas()
    files = servable_files(out)
    batch: list[StoredDocument] = []
    size = stored = unchanged = 0
    for rel, path in sorted(files.items()):
        st = path.stat()
        meta = known.get(rel)
        if meta is not None and meta.size == st.st_size and meta.mtime_ns == st.st_mtime_ns:
            unchanged += 1
            continue
        body = path.read_bytes()
        etag = hashlib.sha256(body).hexdigest()
        if meta is not None and meta.etag == etag:
            unchanged += 1  # the same bytes written again (another host): validators stay as they are
            continue
        changed_at = dt.datetime.fromtimestamp(st.st_mtime_ns / 1e9, dt.UTC)
        batch.append(StoredDocument(DocumentMeta(rel, etag, len(body), changed_at, st.st_mtime_ns), body))
        size += len(body)
        stored += 1
        if size >= BATCH_BYTES:
            store.save_documents(batch)
            batch, size = [], 0
    removed = sorted(set(known) - set(files))
    if batch or removed:
        store.save_documents(batch, removed)
    return SyncReport(stored, unchanged, len(removed))
