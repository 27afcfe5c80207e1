"""The feed folder over HTTP, as before the web app: GET/HEAD of the files :mod:`monitor.feeds` writes with
their content types, ``ETag``/``Last-Modified`` answered by ``304 Not Modified``, gzip when the client
accepts it, and ``/healthz``. Files are read per request (cached by mtime and size), so what ``monitor
run`` writes is served at once. Nothing outside the folder, no hidden file (temporary files, the manifest)
and no other file type is reachable.

:class:`FeedFiles` owns the folder and the validators; :class:`DatabaseFeedFiles` serves the same documents
from a shared (PostgreSQL) database instead (``feed_documents``, kept by :mod:`monitor.docsync`), so every
host serves what the last cycle published, wherever it ran, with the same validators; :func:`blueprint`
routes ``/index.html``, every ``*.xml``/``*.opml`` path and ``/healthz`` to either.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import gzip
import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from flask import Blueprint, Response, request

from ..clock import parse_http_date
from ..interfaces import DocumentReader

CONTENT_TYPES = {
    ".xml": "application/rss+xml; charset=utf-8",
    ".opml": "text/x-opml; charset=utf-8",
    ".html": "text/html; charset=utf-8",
}
HIDDEN_PREFIX = "."  # temporary files and the manifest are never served
CACHE_ENTRIES = 2000  # archives are many and rarely read: keep memory bounded


@dataclass(frozen=True, slots=True)
class FeedFile:
    """One file as last read: its mtime and size (the cache key), body, gzipped body and entity tag."""

    mtime_ns: int
    size: int
    body: bytes
    gz: bytes
    etag: str


class FeedFiles:
    """The files of one folder (thread-safe: the server answers from several threads)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._cache: dict[Path, FeedFile] = {}
        self._lock = threading.Lock()

    def resolve(self, rel: str) -> Path | None:
        """The file a request path names, or None (outside the folder, hidden, another type, absent)."""
        if not servable(rel):
            return None
        target = (self.root / rel).resolve()
        if self.root not in target.parents or target.suffix not in CONTENT_TYPES or not target.is_file():
            return None
        return target

    def load(self, target: Path) -> FeedFile:
        st = target.stat()
        with self._lock:
            cached = self._cache.get(target)
            if cached and cached.mtime_ns == st.st_mtime_ns and cached.size == st.st_size:
                return cached
        body = target.read_bytes()
        entry = FeedFile(st.st_mtime_ns, len(body), body, gzip.compress(body, compresslevel=6, mtime=0),
                         hashlib.sha256(body).hexdigest()[:20])
        with self._lock:
            if len(self._cache) > CACHE_ENTRIES:
                self._cache.clear()
            self._cache[target] = entry
        return entry

    def entry(self, rel: str) -> FeedFile | None:
        """The document a request path names, as last read, or None."""
        target = self.resolve(rel)
        try:
            return self.load(target) if target is not None else None
        except OSError:
            return None

    def response(self, rel: str) -> Response:
        """The answer to GET/HEAD of one file: 200 (gzipped if accepted), 304 or 404."""
        entry = self.entry(rel)
        if entry is None:
            return Response("not found\n", 404, content_type="text/plain; charset=utf-8")
        accepts_gzip = "gzip" in request.headers.get("Accept-Encoding", "").lower()
        etag = f'"{entry.etag}-gz"' if accepts_gzip else f'"{entry.etag}"'
        headers = {"ETag": etag, "Last-Modified": email.utils.formatdate(entry.mtime_ns / 1e9, usegmt=True),
                   "Vary": "Accept-Encoding", "Cache-Control": "public, max-age=300"}
        content_type = CONTENT_TYPES[PurePosixPath(rel).suffix]
        if not_modified(request.headers.get("If-None-Match"), request.headers.get("If-Modified-Since"), etag,
                        entry.mtime_ns):
            return Response(b"", 304, headers=headers, content_type=content_type)
        body = entry.gz if accepts_gzip else entry.body
        if accepts_gzip:
            headers["Content-Encoding"] = "gzip"
        response = Response(body, 200, headers=headers, content_type=content_type)
        response.direct_passthrough = True  # already encoded: the app's own gzip must leave it alone
        return response

    def published(self) -> tuple[str | None, int]:
        """When the index page was generated (None: no feeds written yet) and how many top-level feeds."""
        try:
            generated = dt.datetime.fromtimestamp((self.root / "index.html").stat().st_mtime, dt.UTC).isoformat()
        except OSError:
            return None, 0
        return generated, sum(1 for _ in self.root.glob("*.xml"))

    def health(self) -> Response:
        generated, feeds = self.published()
        ok = generated is not None
        body = json.dumps({"status": "ok" if ok else "no feeds written yet", "feeds_generated_at": generated,
                           "top_level_feeds": feeds}) + "\n"
        return Response(body, 200 if ok else 503, content_type="application/json",
                        headers={"Cache-Control": "no-store"})


class DatabaseFeedFiles(FeedFiles):
    """The published documents of a shared database (thread-safe): per request one primary-key lookup of
    the document's validators, its body only when it changed since this process last served it. A database
    error reaches the app's StorageError handler (503)."""

    def __init__(self, documents: DocumentReader) -> None:
        self.documents = documents
        self._by_path: dict[str, FeedFile] = {}
        self._lock = threading.Lock()

    def entry(self, rel: str) -> FeedFile | None:
        if not servable(rel):
            return None
        meta = self.documents.document_meta(rel)
        if meta is None:
            return None
        with self._lock:
            cached = self._by_path.get(rel)
        if cached is not None and cached.etag == meta.etag[:20]:
            return cached
        found = self.documents.document(rel)
        if found is None:
            return None
        body = found.body
        entry = FeedFile(int(found.meta.changed_at.timestamp() * 1e9), len(body), body,
                         gzip.compress(body, compresslevel=6, mtime=0), found.meta.etag[:20])
        with self._lock:
            if len(self._by_path) > CACHE_ENTRIES:
                self._by_path.clear()
            self._by_path[rel] = entry
        return entry

    def published(self) -> tuple[str | None, int]:
        metas = self.documents.document_metas()
        index = metas.get("index.html")
        if index is None:
            return None, 0
        return index.changed_at.isoformat(), sum(1 for p in metas if "/" not in p and p.endswith(".xml"))


def servable(rel: str) -> bool:
    """Whether a request path may name a feed document: no hidden part (temporary files, the manifest), no
    empty, ``.`` or ``..`` part, no control character, one of the served types."""
    parts = rel.split("/")
    if any(p in ("", ".", "..") or p.startswith(HIDDEN_PREFIX) for p in parts):
        return False
    return not any(ord(c) < 32 or c == "\x7f" for c in rel) and PurePosixPath(rel).suffix in CONTENT_TYPES


def not_modified(if_none_match: str | None, if_modified_since: str | None, etag: str, mtime_ns: int) -> bool:
    """RFC 9110: If-None-Match wins over If-Modified-Since."""
    if if_none_match is not None:
        tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
        return "*" in tags or etag in tags
    if if_modified_since:
        since = parse_http_date(if_modified_since)
        return since is not None and int(mtime_ns / 1e9) <= since.timestamp()
    return False


def blueprint(files: FeedFiles) -> Blueprint:
    """Routes for the feed folder: ``/index.html`` (the feeds' own index page), ``/<path>.xml``,
    ``/<path>.opml`` and ``/healthz``."""
    bp = Blueprint("feeds", __name__)

    @bp.get("/healthz")
    def healthz() -> Response:
        return files.health()

    @bp.get("/index.html")
    def index() -> Response:
        return files.response("index.html")

    @bp.get("/<path:rel>")
    def feed_file(rel: str) -> Response:
        return files.response(rel)

    return bp
