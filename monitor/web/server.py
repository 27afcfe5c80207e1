"""The production server: waitress with explicit limits, so no client can starve the others.

waitress reads requests on one asynchronous loop and runs complete requests on a pool of worker threads.
A connection that is open but idle or half-sent (a slow or hostile client) costs a socket, not a thread;
what starves others is running out of *connections*: at its default limit of 100, a client holding 150
half-open sockets keeps everyone else waiting until its sockets time out (120 s by default). Hence:

- ``connection_limit`` well above what a crowd of idle sockets needs, below the usual 1,024 file
  descriptors; ``asyncore_use_poll`` so descriptors above 1,023 (select's limit) still work;
- ``channel_timeout``: a connection idle this long is closed, checked every ``cleanup_interval``;
- ``max_request_header_size`` and ``max_request_body_size`` small (the app only answers GET and HEAD);
- ``threads`` for the requests themselves (database reads are short; the work is CPU-bound under the GIL).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..errors import PublishError

Wsgi = Any


@dataclass(frozen=True, slots=True)
class Limits:
    """waitress settings (see the module docstring); ``tests/test_web_server.py`` holds 150 half-open
    connections and times a normal request against them."""

    threads: int = 6
    connection_limit: int = 500
    channel_timeout: int = 20
    cleanup_interval: int = 2
    max_request_header_size: int = 16 * 1024
    max_request_body_size: int = 64 * 1024
    backlog: int = 1024
    asyncore_use_poll: bool = True


class WebServer:
    """A waitress server for a WSGI app; ``port=0`` lets the OS choose (see :attr:`url`)."""

    def __init__(self, app: Wsgi, host: str = "127.0.0.1", port: int = 8080, limits: Limits = Limits()) -> None:
        from waitress.server import create_server

        try:
            self._server = create_server(app, host=host, port=port, clear_untrusted_proxy_headers=True,
                                         ident="gut-skin-monitor", **asdict(limits))
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


class Deferred:
    """A WSGI app whose target is set after the server is listening: `monitor demo` needs its URL (for the
    feeds' links) before it can build the app it serves. Answers 503 until then."""

    def __init__(self) -> None:
        self.target: Wsgi | None = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if self.target is None:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain; charset=utf-8"),
                                                       ("Retry-After", "1")])
            return [b"starting: try again in a moment\n"]
        return self.target(environ, start_response)
