"""Any host serves current feeds and pages (issue 16): two `monitor serve` processes, each with its own
empty feed folder, on one PostgreSQL database; a third process runs the cycle (and publishes into a folder
of its own). Both servers serve exactly what it published — every feed, archive page, the OPML list and
the index page — with the same validators, so a reader's conditional GET works against either.

Needs a PostgreSQL server (the ``postgres`` marker): on SQLite, the single-host default, `monitor serve`
serves its own folder (tests/test_feeds.py)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import feedparser
import pytest

from monitor.docsync import servable_files
from tests.conftest import db_url, start_serve
from tests.eutils_standin import StandIn
from tests.test_cycle_e2e import NOW, TODAY
from tests.test_feeds import FeedWorld, expected_guids, get, guids, retract

pytestmark = pytest.mark.postgres


@pytest.fixture
def fw(tmp_path: Path) -> Iterator[FeedWorld]:
    yield FeedWorld(StandIn(today=TODAY, hang_seconds=3.0), tmp_path, limit=4)  # small pages: archives too


@pytest.fixture
def servers(fw: FeedWorld, tmp_path: Path) -> Iterator[list[tuple[str, Path]]]:
    """Two `monitor serve` processes ("host A" and "host B"), each with its own empty folder."""
    procs: list[subprocess.Popen[str]] = []
    found: list[tuple[str, Path]] = []
    try:
        for name in ("host-a", "host-b"):
            folder = tmp_path / name
            env = {k: v for k, v in os.environ.items() if not k.startswith(("MONITOR_", "NCBI_"))}
            env.update({"MONITOR_CONFIG": str(fw.config), "MONITOR_DB_URL": db_url(fw.db), "MONITOR_NOW": NOW})
            proc, url = start_serve(["--port", "0", "--out", str(folder)], env, tmp_path, timeout=60)
            procs.append(proc)
            found.append((url, folder))
        yield found
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def served_everything(fw: FeedWorld, servers: list[tuple[str, Path]]) -> dict[str, str]:
    """Every document the publishing process wrote, fetched from both servers: the same bytes as its file,
    the same ETag on both. Returns the ETags by path."""
    files = servable_files(fw.out)
    assert {"main.xml", "feeds.opml", "index.html"} <= set(files) and any(p.startswith("archive/") for p in files)
    etags = {}
    for rel, path in files.items():
        answers = [get(url, "/" + rel) for url, _ in servers]
        for resp, body in answers:
            assert resp.status == 200 and body == path.read_bytes(), rel
        assert len({resp.getheader("ETag") for resp, _ in answers}) == 1, rel
        assert len({resp.getheader("Last-Modified") for resp, _ in answers}) == 1, rel
        etags[rel] = answers[0][0].getheader("ETag")
    return etags


def test_two_servers_serve_what_a_third_process_published(fw: FeedWorld, servers) -> None:  # type: ignore[no-untyped-def]
    (url_a, _), (url_b, folder_b) = servers
    assert not list(folder_b.rglob("*.xml"))  # host B found documents published already: it wrote none
    empty = get(url_a, "/main.xml")[1]
    assert get(url_b, "/main.xml")[1] == empty and guids(feedparser.parse(empty)) == []
    for url, _ in servers:  # the pages' counts are cached now (until the database changes)
        assert json.loads(get(url, "/api/papers?relevant=1")[1])["total"] == 0

    assert fw.monitor("run", key=True).returncode == 0  # the cycle, in a third process with its own folder
    relevant = [p["pmid"] for p in fw.relevant()]
    assert relevant
    etags = served_everything(fw, servers)
    main_pages = [rel for rel in etags if rel == "main.xml" or rel.startswith("archive/main/")]
    for url, _ in servers:  # the main feed and its archive pages hold every relevant paper
        served = [g for rel in main_pages for g in guids(feedparser.parse(get(url, "/" + rel)[1]))]
        assert len(main_pages) > 1 and sorted(set(served)) == expected_guids("main.xml", relevant)
        # Validators agree across hosts: a reader that fetched from A revalidates against B.
        resp, body = get(url, "/main.xml", {"If-None-Match": etags["main.xml"]})
        assert resp.status == 304 and body == b""
    assert not list(folder_b.rglob("*.xml"))  # still nothing on host B's disk: all from the database
    # The web app's pages and API read the database: both hosts show the papers the cycle stored, at once.
    for path in ("/api/papers?relevant=1&per_page=100", "/api/map", f"/api/papers/{relevant[0]}"):
        answers = [get(url, path) for url, _ in servers]
        assert all(resp.status == 200 for resp, _ in answers) and answers[0][1] == answers[1][1], path
    listed = json.loads(get(url_b, "/api/papers?relevant=1&per_page=100")[1])
    assert listed["total"] == len(relevant) and {p["pmid"] for p in listed["papers"]} == set(relevant)
    assert relevant[0] in get(url_b, f"/paper/{relevant[0]}")[1].decode()

    # A later cycle (a retraction arrives) changes some documents; both hosts serve the new ones at once.
    fw.standin.today = TODAY + dt.timedelta(days=1)
    retract(fw.standin, relevant[0])
    assert fw.monitor("run", key=True, now="2026-11-23T03:00:00+00:00").returncode == 0
    later = served_everything(fw, servers)
    assert later["main.xml"] != etags["main.xml"]
    for url, _ in servers:
        resp, _ = get(url, "/main.xml", {"If-None-Match": etags["main.xml"]})
        assert resp.status == 200
