"""Serving: the feed folder over HTTP with a real WSGI server (waitress).

Owns the HTTP behaviour readers rely on: GET/HEAD of the files :mod:`monitor.feeds` writes, with their
content types, ``ETag`` and ``Last-Modified`` validators answered by ``304 Not Modified``, gzip when the
client accepts it, ``/`` as the index page and ``/healthz`` for monitoring. Files are read per request, so
feeds written by ``monitor run`` (or the daemon) are served at once. Nothing outside the folder is reachable.
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
from typing import Any

from .clock import parse_http_date
from .errors import PublishError

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


class FeedApp:
    """The WSGI application over one folder (thread-safe: waitress serves from several threads)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._cache: dict[Path, _Cached] = {}
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "/") or "/"
        if path == "/healthz":
            return self._health(method, start_response)
        if method not in ("GET", "HEAD"):
            return _plain(start_response, "405 Method Not Allowed", "only GET and HEAD\n", [("Allow", "GET, HEAD")])
        target = self._resolve(path)
        if target is None:
            return _plain(start_response, "404 Not Found", "not found\n")
        try:
            entry = self._load(target)
        except OSError:
            return _plain(start_response, "404 Not Found", "not found\n")
        last_modified = email.utils.formatdate(entry.mtime_ns / 1e9, usegmt=True)
        accepts_gzip = "gzip" in environ.get("HTTP_ACCEPT_ENCODING", "").lower()
        etag = f'"{entry.etag}-gz"' if accepts_gzip else f'"{entry.etag}"'
        headers = [("Content-Type", CONTENT_TYPES.get(target.suffix, "application/octet-stream")),
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

    def _resolve(self, path: str) -> Path | None:
        rel = path.lstrip("/") or "index.html"
        parts = rel.split("/")
        if any(p in ("", ".", "..") or p.startswith(HIDDEN_PREFIX) for p in parts):
            return None
        target = (self.root / rel).resolve()
        if self.root not in target.parents or target.suffix not in CONTENT_TYPES or not target.is_file():
            return None
        return target

    def _load(self, target: Path) -> _Cached:
        st = target.stat()
        with self._lock:
            cached = self._cache.get(target)
            if cached and cached.mtime_ns == st.st_mtime_ns and cached.size == st.st_size:
                return cached
        body = target.read_bytes()
        entry = _Cached(st.st_mtime_ns, len(body), body, gzip.compress(body, compresslevel=6, mtime=0),
                        hashlib.sha256(body).hexdigest()[:20])
        with self._lock:
            if len(self._cache) > 2000:  # archives are many and rarely read: keep memory bounded
                self._cache.clear()
            self._cache[target] = entry
        return entry

    def _health(self, method: str, start_response: StartResponse) -> Iterable[bytes]:
        index = self.root / "index.html"
        try:
            generated = dt.datetime.fromtimestamp(index.stat().st_mtime, dt.UTC).isoformat()
            status, ok = "200 OK", True
        except OSError:
            generated, status, ok = None, "503 Service Unavailable", False
        feeds = sum(1 for _ in self.root.glob("*.xml")) if ok else 0
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

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int = 8080, threads: int = 4) -> None:
        from waitress.server import create_server

        try:
            self._server = create_server(FeedApp(root), host=host, port=port, threads=threads,
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
