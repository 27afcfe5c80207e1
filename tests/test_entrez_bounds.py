"""Bounded network: a response that trickles ends at its deadline, a compressed bomb at the size cap, ids
that are not PMIDs and encodings we did not ask for are clear errors (retried where transient), a local
network failure stops at once with one line, and records EFetch leaves out are asked for again and reported.

Hostile answers come from streaming ``httpx.MockTransport`` handlers (read chunk by chunk, as from a socket)
and, for the trickle, a real loopback server sending one byte at a time.
"""

from __future__ import annotations

import random
import re
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from monitor.config import EntrezConfig
from monitor.entrez import EntrezClient, RateLimiter
from monitor.errors import EntrezError, Unreachable
from tests.conftest import DATA

ESEARCH_OK = (DATA / "esearch" / "esearch1.xml").read_bytes()


def client(transport: httpx.BaseTransport | None = None, base_url: str = "http://ncbi.test/entrez/eutils",
           **settings: float) -> tuple[EntrezClient, list[float]]:
    sleeps: list[float] = []
    config = EntrezConfig(base_url=base_url, max_attempts=int(settings.pop("max_attempts", 3)), **settings)
    return EntrezClient(config, limiter=RateLimiter(1000), transport=transport, sleep=sleeps.append,
                        rng=random.Random(3)), sleeps


def streamed(body: Iterator[bytes], **headers: str) -> httpx.Response:
    return httpx.Response(200, headers={"Content-Type": "text/xml", **headers}, stream=_Stream(body))


class _Stream(httpx.SyncByteStream):
    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.produced = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            self.produced += len(chunk)
            yield chunk


def gzip_bomb(megabytes: int) -> Iterator[bytes]:
    """A gzip stream of ``megabytes`` MiB of zeros, compressed on the fly (about 1 KB per MiB)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1 << 20)
    for _ in range(megabytes):
        out = compressor.compress(block)
        if out:
            yield out
    yield compressor.flush()


def test_a_compressed_bomb_stops_at_the_cap_and_is_not_retried() -> None:
    stream: list[_Stream] = []

    def handle(request: httpx.Request) -> httpx.Response:
        response = streamed(gzip_bomb(1024), **{"Content-Encoding": "gzip"})  # inflates to 1 GiB
        stream.append(response.stream)  # type: ignore[arg-type]
        return response

    c, _ = client(httpx.MockTransport(handle), max_response_mb=8)
    began = time.monotonic()
    with pytest.raises(EntrezError, match=r"over 8 MB decompressed \(entrez.max_response_mb\)"):
        c.esearch("probiotics")
    assert len(stream) == 1  # not retried: it would only be as large again
    assert stream[0].produced < 64 * 1024  # stopped after a few compressed KB, not the whole megabyte
    assert time.monotonic() - began < 10


def test_an_uncompressed_answer_over_the_cap_is_refused_too() -> None:
    chunks = (b"x" * (1 << 20) for _ in range(20))
    c, _ = client(httpx.MockTransport(lambda r: streamed(chunks)), max_response_mb=4)
    with pytest.raises(EntrezError, match="over 4 MB"):
        c.esearch("probiotics")


@pytest.mark.parametrize(("bad", "why"), [("12a", "not a PMID"), ("99999999999999999999", "not a PMID"),
                                          ("-5", "not a PMID")])
def test_ids_that_are_not_pmids_are_retried_then_a_clear_error(bad: str, why: str) -> None:
    body = re.sub(rb"<Id>\d+</Id>", f"<Id>{bad}</Id>".encode(), ESEARCH_OK, count=1)
    c, sleeps = client(httpx.MockTransport(lambda r: httpx.Response(200, content=body)))
    with pytest.raises(EntrezError, match=rf"esearch failed after 3 attempts: esearch listed '{re.escape(bad)}', "
                                          rf"which is {why}"):
        c.esearch("probiotics")
    assert len(sleeps) == 2


def test_an_overflowing_count_is_an_error_not_an_overflow() -> None:
    body = re.sub(rb"<Count>\d+</Count>", b"<Count>123456789012345678901234</Count>", ESEARCH_OK, count=1)
    c, _ = client(httpx.MockTransport(lambda r: httpx.Response(200, content=body)))
    with pytest.raises(EntrezError, match="without a usable Count"):
        c.esearch("probiotics")


def test_an_encoding_we_did_not_ask_for_is_retried_and_named() -> None:
    c, _ = client(httpx.MockTransport(lambda r: streamed(iter([b"\x1b\x00junk"]), **{"Content-Encoding": "br"})))
    with pytest.raises(EntrezError, match=r"Content-Encoding 'br'"):
        c.esearch("probiotics")


def test_a_corrupt_gzip_body_is_retried_and_then_succeeds() -> None:
    answers = [streamed(iter([b"\x1f\x8b\x08\x00garbage"]), **{"Content-Encoding": "gzip"}),
               streamed(iter([zlib.compress(ESEARCH_OK)]), **{"Content-Encoding": "deflate"})]
    c, sleeps = client(httpx.MockTransport(lambda r: answers.pop(0)))
    assert c.esearch("probiotics").count > 0
    assert len(sleeps) == 1


class _Trickle(BaseHTTPRequestHandler):
    """Promises a full answer, then sends it one byte every 0.2 s."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(ESEARCH_OK)))
        self.end_headers()
        try:
            for byte in ESEARCH_OK:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.2)
        except OSError:
            pass  # the client gave up: that is the point

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def trickle() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Trickle)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/entrez/eutils"
    server.shutdown()
    server.server_close()


def test_a_trickling_answer_ends_at_the_deadline(trickle: str) -> None:
    # Each byte arrives well within the read timeout; only the deadline can end this.
    c, _ = client(base_url=trickle, timeout=5, deadline=1.5, max_attempts=2)
    began = time.monotonic()
    with pytest.raises(EntrezError, match=r"still arriving after 1.5s .*entrez.deadline"):
        c.esearch("probiotics")
    assert time.monotonic() - began < 2 * (1.5 + 0.5) + 1


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_nothing_listening_stops_after_one_quick_retry_with_one_line() -> None:
    port = _closed_port()
    c, sleeps = client(base_url=f"http://127.0.0.1:{port}/entrez/eutils", max_attempts=6)
    with pytest.raises(Unreachable, match=rf"nothing answers at 127.0.0.1:{port} \(connection refused\)"):
        c.esearch("probiotics")
    assert len(sleeps) == 1 and sleeps[0] <= 1.0  # not six attempts with growing backoff


def test_a_name_that_does_not_resolve_stops_at_once() -> None:
    c, sleeps = client(base_url="http://no-such-host.invalid/entrez/eutils", max_attempts=6)
    with pytest.raises(Unreachable, match=r"cannot resolve no-such-host\.invalid: check the network"):
        c.esearch("probiotics")
    assert len(sleeps) == 1
