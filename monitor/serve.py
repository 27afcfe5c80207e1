"""Serving: the feed folder over HTTP with a real WSGI server (waitress).

Owns the HTTP behaviour readers rely on: GET/HEAD of the files :mod:`monitor.feeds` writes, with their
content types, ``ETag`` and ``Last-Modified`` validators answered by ``304 Not Modified``, gzip when the
client accepts it, ``/`` as the index page and ``/healthz`` for monitoring. Files are read per request, so
feeds written by ``monitor run`` (or the daemon) are served at once. Nothing outside the folder is reachable.

The documents come from a folder, or — with a shared (PostgreSQL) database — from the database's
``feed_documents`` (:class:`DatabaseDocuments`, filled by :mod:`monitor.docsync`), so every host serving
them serves what the last cycle published, wherever it ran, with the same validators.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import gzip
import hashlib
import json
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .clock import parse_http_date
from .errors import MonitorError, PublishError
from .interfaces import DocumentReader

log = logging.getLogger(__name__)

CONTENT_TYPES = {
    ".xml": "application/rss+xml; charset=utf-8",
    ".opml": "text/x-opml; charset=utf-8",
    ".html": "text/html; charset=utf-8",
}
HIDDEN_PREFIX = "."  # temporary files and the manifest are never served

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


@dataclass
class _Cached:
    mtime_ns: int
    size: int
    body: bytes
    gz: bytes
    etag: str


def _entry(body: bytes, mtime_ns: int, etag: str | None = None) -> _Cached:
    return _Cached(mtime_ns, len(body), body, gzip.compress(body, compresslevel=6, mtime=0),
                   (etag or hashlib.sha256(body).hexdigest())[:20])


class _Source(Protocol):
    """Where the served documents come from: ``load`` a document by its path below the feed root (None: not
    there), ``health`` for /healthz (when the index was generated, how many top-level feeds)."""

    def load(self, rel: str) -> _Cached | None: ...

    def health(self) -> tuple[str | None, int]: ...


class FolderDocuments:
    """Documents read from the feed folder, cached while a file's size and mtime stay the same."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._cache: dict[Path, _Cached] = {}
        self._lock = threading.Lock()

    def load(self, rel: str) -> _Cached | None:
        target = (self.root / rel).resolve()
        if self.root not in target.parents or not target.is_file():
            return None
        try:
            st = target.stat()
            with self._lock:
                cached = self._cache.get(target)
                if cached and cached.mtime_ns == st.st_mtime_ns and cached.size == st.st_size:
                    return cached
            entry = _entry(target.read_bytes(), st.st_mtime_ns)
        except OSError:
            return None
        with self._lock:
            if len(self._cache) > 2000:  # archives are many and rarely read: keep memory bounded
                self._cache.clear()
            self._cache[target] = entry
        return entry

    def health(self) -> tuple[str | None, int]:
        try:
            generated = dt.datetime.fromtimestamp((self.root / "index.html").stat().st_mtime, dt.UTC).isoformat()
        except OSError:
            return None, 0
        return generated, sum(1 for _ in self.root.glob("*.xml"))


class DatabaseDocuments:
    """Documents read from the database (``feed_documents``): one primary-key lookup of the validators per
    request, the body only when it changed since this process last served it."""

    def __init__(self, store: DocumentReader) -> None:
        self.store = store
        self._cache: dict[str, _Cached] = {}
        self._lock = threading.Lock()

    def load(self, rel: str) -> _Cached | None:
        try:
            meta = self.store.document_meta(rel)
            with self._lock:
                cached = self._cache.get(rel)
            if meta is None or (cached is not None and cached.etag == meta.etag[:20]):
                return cached if meta is not None else None
            found = self.store.document(rel)
        except MonitorError as exc:
            log.warning("cannot read %s from the database: %s", rel, exc)
            raise OSError(str(exc)) from None
        if found is None:
            return None
        entry = _entry(found.body, int(found.meta.changed_at.timestamp() * 1e9), found.meta.etag)
        with self._lock:
            if len(self._cache) > 2000:
                self._cache.clear()
            self._cache[rel] = entry
        return entry

    def health(self) -> tuple[str | None, int]:
        metas = self.store.document_metas()
        index = metas.get("index.html")
        feeds = sum(1 for p in metas if "/" not in p and p.endswith(".xml"))
        return (index.changed_at.isoformat() if index else None), feeds


class FeedApp:
    """The WSGI application over one folder, or over the documents of a database (thread-safe: waitress
    serves from several threads)."""

    def __init__(self, root: Path | None = None, documents: DocumentReader | None = None) -> None:
        if documents is not None:
            self.source: _Source = DatabaseDocuments(documents)
        elif root is not None:
            self.source = FolderDocuments(root)
        else:
            raise ValueError("FeedApp needs a folder or a database to serve from")

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "/") or "/"
        if path == "/healthz":
            return self._health(method, start_response)
        if method not in ("GET", "HEAD"):
            return _plain(start_response, "405 Method Not Allowed", "only GET and HEAD\n", [("Allow", "GET, HEAD")])
        rel = self._resolve(path)
        if rel is None:
            return _plain(start_response, "404 Not Found", "not found\n")
        try:
            entry = self.source.load(rel)
        except OSError:
            return _plain(start_response, "503 Service Unavailable", "the feeds cannot be read right now\n",
                          [("Retry-After", "30")])
        if entry is None:
            return _plain(start_response, "404 Not Found", "not found\n")
        last_modified = email.utils.formatdate(entry.mtime_ns / 1e9, usegmt=True)
        accepts_gzip = "gzip" in environ.get("HTTP_ACCEPT_ENCODING", "").lower()
        etag = f'"{entry.etag}-gz"' if accepts_gzip else f'"{entry.etag}"'
        headers = [("Content-Type", CONTENT_TYPES.get(Path(rel).suffix, "application/octet-stream")),
                   ("ETag", etag), ("Last-Modified", last_modified), ("Vary", "Accept-Encoding"),
                   ("Cache-Control", "public, max-age=300")]
        if _not_modified(environ, etag, entry.mtime_ns):
            start_response("304 Not Modified", headers)
            return [b""]
        body = entry.gz if accepts_gzip else entry.body
        if accepts_gzip:
            headers.append(("Content-Encoding", "gzip"))
        headers.append(("Content-Length", str(len(body))))
        start_response("200 OK", headers)
        return [b"" if method == "HEAD" else body]

    def _resolve(self, path: str) -> str | None:
        """The document path below the root a request path names, or None if it names nothing we serve."""
        rel = path.lstrip("/") or "index.html"
        parts = rel.split("/")
        if any(p in ("", ".", "..") or p.startswith(HIDDEN_PREFIX) for p in parts):
            return None
        return rel if Path(rel).suffix in CONTENT_TYPES else None

    def _health(self, method: str, start_response: StartResponse) -> Iterable[bytes]:
        try:
            generated, feeds = self.source.health()
        except MonitorError:
            generated, feeds = None, 0
        ok = generated is not None
        status = "200 OK" if ok else "503 Service Unavailable"
        body = json.dumps({"status": "ok" if ok else "no feeds written yet", "feeds_generated_at": generated,
                           "top_level_feeds": feeds}).encode("utf-8") + b"\n"
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                                ("Cache-Control", "no-store")])
        return [b"" if method == "HEAD" else body]


def _not_modified(environ: dict[str, Any], etag: str, mtime_ns: int) -> bool:
    """RFC 9110: If-None-Match wins over If-Modified-Since."""
    inm = environ.get("HTTP_IF_NONE_MATCH")
    if inm is not None:
        tags = {t.strip().removeprefix("W/") for t in inm.split(",")}
        return "*" in tags or etag in tags
    ims = environ.get("HTTP_IF_MODIFIED_SINCE")
    if ims:
        since = parse_http_date(ims)
        return since is not None and int(mtime_ns / 1e9) <= since.timestamp()
    return False


def _plain(start_response: StartResponse, status: str, text: str,
           extra: list[tuple[str, str]] | None = None) -> list[bytes]:
    body = text.encode("utf-8")
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
                            *(extra or [])])
    return [body]


class FeedServer:
    """A waitress server for :class:`FeedApp`; ``port=0`` lets the OS choose (see :attr:`url`)."""

    def __init__(self, root: Path | None, host: str = "127.0.0.1", port: int = 8080, threads: int = 4,
                 documents: DocumentReader | None = None) -> None:
        from waitress.server import create_server

        try:
            self._server = create_server(FeedApp(root, documents), host=host, port=port, threads=threads,
                                         clear_untrusted_proxy_headers=True, ident="gut-skin-monitor")
        except OSError as exc:
            raise PublishError(f"cannot listen on {host}:{port}: {exc.strerror or exc} (choose another --port, or "
                               "stop what is using it)") from None
        self.host = host
        self.port = int(getattr(self._server, "effective_port"))  # noqa: B009 - not in the stubs' union

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def serve_forever(self) -> None:
        self._server.run()

    def close(self) -> None:
        self._server.close()
