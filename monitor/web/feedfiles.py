"""The feed folder over HTTP, as before the web app: GET/HEAD of the files :mod:`monitor.feeds` writes with
their content types, ``ETag``/``Last-Modified`` answered by ``304 Not Modified``, gzip when the client
accepts it, and ``/healthz``. Files are read per request (cached by mtime and size), so what ``monitor
run`` writes is served at once. Nothing outside the folder, no hidden file (temporary files, the manifest)
and no other file type is reachable.

:class:`FeedFiles` owns the folder and the validators; :func:`blueprint` routes ``/index.html``, every
``*.xml``/``*.opml`` path and ``/healthz`` to it.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import gzip
import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path

from flask import Blueprint, Response, request

from ..clock import parse_http_date

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
        parts = rel.split("/")
        if any(p in ("", ".", "..") or p.startswith(HIDDEN_PREFIX) for p in parts):
            return None
        if any(ord(c) < 32 or c == "\x7f" for c in rel):
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

    def response(self, rel: str) -> Response:
        """The answer to GET/HEAD of one file: 200 (gzipped if accepted), 304 or 404."""
        target = self.resolve(rel)
        try:
            entry = self.load(target) if target is not None else None
        except OSError:
            entry = None
        if target is None or entry is None:
            return Response("not found\n", 404, content_type="text/plain; charset=utf-8")
        accepts_gzip = "gzip" in request.headers.get("Accept-Encoding", "").lower()
        etag = f'"{entry.etag}-gz"' if accepts_gzip else f'"{entry.etag}"'
        headers = {"ETag": etag, "Last-Modified": email.utils.formatdate(entry.mtime_ns / 1e9, usegmt=True),
                   "Vary": "Accept-Encoding", "Cache-Control": "public, max-age=300"}
        content_type = CONTENT_TYPES[target.suffix]
        if not_modified(request.headers.get("If-None-Match"), request.headers.get("If-Modified-Since"), etag,
                        entry.mtime_ns):
            return Response(b"", 304, headers=headers, content_type=content_type)
        body = entry.gz if accepts_gzip else entry.body
        if accepts_gzip:
            headers["Content-Encoding"] = "gzip"
        response = Response(body, 200, headers=headers, content_type=content_type)
        response.direct_passthrough = True  # already encoded: the app's own gzip must leave it alone
        return response

    def health(self) -> Response:
        index = self.root / "index.html"
        try:
            generated: str | None = dt.datetime.fromtimestamp(index.stat().st_mtime, dt.UTC).isoformat()
            ok = True
        except OSError:
            generated, ok = None, False
        feeds = sum(1 for _ in self.root.glob("*.xml")) if ok else 0
        body = json.dumps({"status": "ok" if ok else "no feeds written yet", "feeds_generated_at": generated,
                           "top_level_feeds": feeds}) + "\n"
        return Response(body, 200 if ok else 503, content_type="application/json",
                        headers={"Cache-Control": "no-store"})


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
