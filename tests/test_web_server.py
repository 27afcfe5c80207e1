"""`monitor serve` as users run it: the installed command in a subprocess, real HTTP on a loopback port the
OS picks. Smoke tests of the pages and the API, and issue 15 item 5: one client cannot starve the others
(150 half-open connections held while a normal request is timed) and paths no route could mean are
answered 400/404, never with a traceback.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.conftest import start_serve
from tests.eutils_standin import StandIn
from tests.test_cycle_e2e import TODAY
from tests.web_world import WebWorld

HALF_OPEN = 150


class Served:
    def __init__(self, proc: subprocess.Popen[str], url: str) -> None:
        self.proc, self.url = proc, url
        self.host, port = url.split("//")[1].rstrip("/").split(":")
        self.port = int(port)

    def get(self, path: str, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        conn.putrequest("GET", path, skip_accept_encoding=True)
        conn.endheaders()
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        return resp.status, dict(resp.getheaders()), body


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    world = WebWorld(StandIn(today=TODAY), tmp_path_factory.mktemp("served")).build()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MONITOR_", "NCBI_"))}
    env.update(world.env())
    proc, url = start_serve(["--port", "0"], env, world.tmp)
    server = Served(proc, url)
    yield server
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    stderr = proc.stderr.read() if proc.stderr else ""
    assert "Traceback" not in stderr, stderr


def test_pages_and_api_over_real_http(served: Served) -> None:
    for path in ("/", "/search?q=probiotic&relevant=1", "/map", "/trends", "/status", "/static/style.css"):
        status, headers, body = served.get(path)
        assert status == 200, (path, body[:300])
        assert "default-src 'none'" in headers["Content-Security-Policy"]
    status, headers, body = served.get("/api/papers?relevant=1&per_page=5")
    data = json.loads(body)
    assert status == 200 and headers["Content-Type"] == "application/json" and len(data["papers"]) == 5
    status, _, body = served.get(f"/paper/{data['papers'][0]['pmid']}")
    assert status == 200 and data["papers"][0]["pmid"].encode() in body
    status, _, body = served.get("/api/papers?condition=nope")
    assert status == 400 and json.loads(body)["parameter"] == "condition"


@pytest.mark.parametrize("path", ["/main.xml%00.html", "/%00", "/search%00?q=acne", "/api/papers/1%00", "/%ff%fe",
                                  "/%zz", "/%", "/paper/%c0%af", "/..%2f..%2fetc/passwd", "/archive/%2e%2e/%2e%2e/x.xml"])
def test_invalid_paths_are_400_or_404_never_a_traceback(served: Served, path: str) -> None:
    status, _, body = served.get(path)
    assert status in (400, 404), (path, status, body[:300])
    assert b"Traceback" not in body


def test_a_normal_request_is_served_while_150_connections_are_held_half_open(served: Served) -> None:
    held: list[socket.socket] = []
    try:
        for n in range(HALF_OPEN):
            s = socket.create_connection((served.host, served.port), timeout=5)
            # Half a request: a request line and one header, never finished (every third sends nothing).
            if n % 3:
                s.sendall(b"GET /api/papers HTTP/1.1\r\nHost: x\r\n")
            held.append(s)
        time.sleep(0.5)  # the server has accepted (or queued) them all
        began = time.monotonic()
        status, _, body = served.get("/api/papers?relevant=1&per_page=3", timeout=5)
        elapsed = time.monotonic() - began
        assert status == 200 and len(json.loads(body)["papers"]) == 3
        assert elapsed < 2.0, f"a normal request took {elapsed:.2f} s behind {HALF_OPEN} half-open connections"
        status, _, _ = served.get("/healthz", timeout=5)
        assert status == 200
    finally:
        for s in held:
            s.close()
