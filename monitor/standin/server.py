"""The stand-in's two carriers of the same request handling: a threaded HTTP/1.1 server on loopback (keep-alive,
gzip, resets with SO_LINGER 0, hangs that end when the server stops) and an httpx ``MockTransport`` that calls
the handling in-process, turning faults into what httpx raises for them on a real socket.
"""

from __future__ import annotations

import gzip
import io
import socket
import struct
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from .eutils import Incoming
from .ncbi import Reply, merge_params

Respond = Callable[[Incoming], Reply]


class LoopbackServer:
    """A running HTTP server in front of ``respond``, on ``host``:``port`` (0: the OS picks)."""

    def __init__(self, respond: Respond, host: str = "127.0.0.1", port: int = 0) -> None:
        self.respond = respond
        self.host, self.requested_port = host, port
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("StandIn is not running; call start() first")
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Bind and serve from a daemon thread."""
        if self._server is not None:
            return
        self.stopping.clear()
        self._server = _Server((self.host, self.requested_port), _Handler, self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="eutils-standin", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop promptly, even with connections held open by a "timeout" fault or a keep-alive pool."""
        server = self._server
        if server is None:
            return
        self.stopping.set()  # wakes handlers sleeping in a "timeout" fault
        server.shutdown()
        with self._lock:
            connections = dict(self._connections)
        for conn in connections:  # unblocks handlers waiting for the next keep-alive request
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        server.server_close()
        deadline = time.monotonic() + 2.0
        for thread in [self._thread, *connections.values()]:
            if thread is not None and thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        self._server = None
        self._thread = None

    def track(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections[conn] = threading.current_thread()

    def untrack(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.pop(conn, None)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # bursts from concurrent clients must reach the rate limiter, not the backlog

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 owner: LoopbackServer) -> None:
        self.owner = owner
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up (timeouts, resets, shutdown) is routine here, not worth a traceback.
        if not isinstance(sys.exc_info()[1], (OSError, ValueError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like NCBI
    server_version = "Finatra"
    timeout = 60  # an idle keep-alive connection is dropped after this
    server: _Server

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the stand-in keeps its own log; stderr noise would drown test output

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without this, Nagle + delayed ACK adds ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.owner.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.owner.untrack(self.connection)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        arrival, wall = time.monotonic(), time.time()
        url = urllib.parse.urlsplit(self.path)
        pairs = urllib.parse.parse_qsl(url.query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            body = self.rfile.read(length)
            if "application/x-www-form-urlencoded" in (self.headers.get("Content-Type") or ""):
                pairs += urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        owner = self.server.owner
        reply = owner.respond(Incoming(method, url.path, merge_params(pairs), self.client_address[0], arrival, wall))
        if reply.mode == "timeout":
            owner.stopping.wait(reply.hang_seconds)  # silent; returns early when the stand-in stops
            self.close_connection = True
            return
        if reply.mode == "reset":
            self._reset()
            return
        self._send(reply)

    def _send(self, reply: Reply) -> None:
        body = reply.body
        headers = list(reply.headers)
        if reply.gzip_ok and "gzip" in (self.headers.get("Accept-Encoding") or "").lower():
            body = gzip.compress(body, compresslevel=1)
            headers.append(("Content-Encoding", "gzip"))
        self.send_response(reply.status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if reply.mode == "short_read":
            # The promised length never arrives: half the bytes, then the connection ends.
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if reply.trickle_seconds:
            self._trickle(body, reply.trickle_seconds)
            return
        self.wfile.write(body)

    def _trickle(self, body: bytes, pause: float) -> None:
        """One byte, then a pause, until the client gives up or the stand-in stops."""
        owner = self.server.owner
        try:
            for i in range(len(body)):
                self.wfile.write(body[i:i + 1])
                self.wfile.flush()
                if owner.stopping.wait(pause):
                    break
        except OSError:
            pass  # the client hung up: what a deadline is for
        self.close_connection = True

    def _reset(self) -> None:
        """Close with SO_LINGER 0 so the kernel sends RST instead of FIN."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        # The descriptor is really closed only once rfile (a makefile() view) lets go of it.
        self.rfile.close()
        self.connection.close()
        # http.server flushes wfile after every request: give it somewhere harmless to flush to.
        self.wfile = io.BytesIO()


def in_process_transport(respond: Respond, monotonic: Callable[[], float] = time.monotonic) -> httpx.MockTransport:
    """``respond`` as an httpx transport (no socket, no thread). ``monotonic`` times arrivals for the rate
    limit. Faults become what httpx raises for them on a real socket: a hang is a read timeout (at once), a
    reset a read error, a short read a protocol error; truncated bodies and error bodies are as sent."""

    def handle(request: httpx.Request) -> httpx.Response:
        pairs = urllib.parse.parse_qsl(request.url.query.decode("ascii"), keep_blank_values=True)
        if "application/x-www-form-urlencoded" in request.headers.get("Content-Type", ""):
            pairs += urllib.parse.parse_qsl(request.content.decode("utf-8", "replace"), keep_blank_values=True)
        reply = respond(Incoming(request.method, request.url.path, merge_params(pairs), "in-process",
                                 monotonic(), time.time()))
        if reply.mode == "timeout":
            raise httpx.ReadTimeout("the stand-in sent nothing (injected hang)", request=request)
        if reply.mode == "reset":
            raise httpx.ReadError("[Errno 104] Connection reset by peer", request=request)
        if reply.mode == "short_read":
            raise httpx.RemoteProtocolError("peer closed connection without sending complete message body",
                                            request=request)
        body, headers = reply.body, list(reply.headers)
        if reply.gzip_ok and "gzip" in request.headers.get("Accept-Encoding", "").lower():
            body = gzip.compress(body, compresslevel=1)
            headers.append(("Content-Encoding", "gzip"))
        headers.append(("Content-Type", reply.content_type))
        # A stream, not content: httpx would decode (and hold) content at once; a stream is read as from a
        # socket.
        return httpx.Response(reply.status, headers=headers, stream=httpx.ByteStream(body))

    return httpx.MockTransport(handle)
