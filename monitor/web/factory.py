"""The Flask application: its blueprints (pages, the JSON API, the feed folder), the headers every response
carries (a Content-Security-Policy that allows only the app's own styles, images and scripts), errors as
answers (400 naming the parameter, 404, 405, 503 when the database is unavailable — never a traceback) and
a guard in front of it all that refuses request paths no route could mean (NUL and other control
characters, bytes that are not UTF-8).
"""

from __future__ import annotations

import dataclasses
import gzip
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from flask import Flask, Response, render_template, request
from werkzeug.exceptions import HTTPException

from ..errors import ParameterError, StorageError
from . import api, pages
from .cache import CachedReads
from .context import WebContext
from .feedfiles import DatabaseFeedFiles, FeedFiles
from .feedfiles import blueprint as feeds_blueprint

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; form-action 'self'; "
       "base-uri 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}
GZIP_MIN_BYTES = 1024
GZIP_TYPES = ("text/html", "application/json", "text/css", "text/csv")

StartResponse = Callable[..., Any]
Wsgi = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def create_app(ctx: WebContext, *, cache: bool = True) -> Flask:
    """The web app over ``ctx`` (read-only: every route answers GET and HEAD only). ``cache``: keep
    aggregate reads (facets, counts, the map, trends) until the database changes (:mod:`.cache`)."""
    if cache:
        ctx = dataclasses.replace(ctx, store=CachedReads(ctx.store))
    app = Flask(__name__, template_folder=str(HERE / "templates"), static_folder=str(HERE / "static"))
    app.config.update(JSON_SORT_KEYS=False, MAX_CONTENT_LENGTH=64 * 1024)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.jinja_env.autoescape = True  # every template, whatever its name: stored text is never markup
    app.jinja_env.trim_blocks = app.jinja_env.lstrip_blocks = True
    app.extensions["monitor"] = ctx
    app.register_blueprint(pages.blueprint(ctx))
    app.register_blueprint(api.blueprint(ctx))
    feeds = FeedFiles(ctx.feeds) if ctx.documents is None else DatabaseFeedFiles(ctx.documents)
    app.register_blueprint(feeds_blueprint(feeds))
    app.after_request(_finish)
    app.register_error_handler(ParameterError, _bad_parameter)
    app.register_error_handler(StorageError, _storage_error)
    app.register_error_handler(HTTPException, _http_error)
    app.wsgi_app = guard_paths(app.wsgi_app)  # type: ignore[method-assign,assignment]
    return app


def _finish(response: Response) -> Response:
    """Security headers on every response; gzip for text a client accepts it for."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if (response.status_code == 200 and not response.direct_passthrough and not response.is_streamed
            and response.mimetype in GZIP_TYPES and "gzip" in request.headers.get("Accept-Encoding", "").lower()):
        body = response.get_data()
        if len(body) >= GZIP_MIN_BYTES:
            response.set_data(gzip.compress(body, compresslevel=5, mtime=0))
            response.headers["Content-Encoding"] = "gzip"
            response.vary.add("Accept-Encoding")
    return response


def wants_json() -> bool:
    return request.path.startswith("/api/")


def _bad_parameter(exc: ParameterError) -> Response | tuple[str, int]:
    if wants_json():
        return api.error(str(exc), 400, exc.parameter)
    return render_template("error.html", status=400, message=str(exc), parameter=exc.parameter), 400


def _storage_error(exc: StorageError) -> Response | tuple[str, int]:
    log.warning("%s %s: %s", request.method, request.path, exc)
    message = f"the database cannot be read just now ({exc}); try again shortly"
    if wants_json():
        return api.error(message, 503, None)
    return render_template("error.html", status=503, message=message, parameter=None), 503


def _http_error(exc: HTTPException) -> Response | tuple[str, int]:
    code = exc.code or 500
    message = {404: "not found", 405: "only GET and HEAD", 400: "bad request"}.get(code, exc.name.lower())
    if wants_json():
        response = api.error(message, code, None)
    elif request.blueprint == "feeds" or code == 405:
        response = Response(message + "\n", code, content_type="text/plain; charset=utf-8")
    else:
        return render_template("error.html", status=code, message=message.capitalize(), parameter=None), code
    if code == 405:
        response.headers["Allow"] = "GET, HEAD"
    return response


def guard_paths(app: Wsgi) -> Wsgi:
    """WSGI middleware: a path with a NUL or another control character, or that is not UTF-8 once
    percent-decoded, is answered 400 before routing (file systems and templates never see it)."""
    def guarded(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        raw = environ.get("PATH_INFO", "")
        try:
            path = raw.encode("latin-1").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            path = None
        if path is None or any(ord(c) < 32 or c == "\x7f" for c in path):
            body = b"bad request path\n"
            start_response("400 Bad Request", [("Content-Type", "text/plain; charset=utf-8"),
                                               ("Content-Length", str(len(body))),
                                               *SECURITY_HEADERS.items()])
            return [body]
        return app(environ, start_response)

    return guarded
