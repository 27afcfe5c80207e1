"""Published documents kept in the database (monitor/docsync.py, storage/documents.py) and served from it
(monitor/web/feedfiles.py's DatabaseFeedFiles), on either backend (see db_url in conftest)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from monitor.docsync import servable_files, sync_folder
from monitor.storage import Storage
from monitor.web.feedfiles import DatabaseFeedFiles, FeedFiles, blueprint


def write(folder: Path, rel: str, body: bytes, mtime: int | None = None) -> None:
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    if mtime is not None:
        os.utime(path, ns=(mtime, mtime))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    out = tmp_path / "feeds"
    write(out, "main.xml", b"<rss>main</rss>", 1_700_000_000_000_000_000)
    write(out, "archive/main/1.xml", b"<rss>old</rss>", 1_700_000_000_000_000_000)
    write(out, "index.html", b"<html>index</html>", 1_700_000_000_000_000_000)
    write(out, "feeds.opml", b"<opml/>", 1_700_000_000_000_000_000)
    write(out, ".manifest.json", b"{}")  # hidden: never stored, never served
    write(out, "notes.txt", b"x")  # not a served kind of file
    return out


def test_a_folder_is_stored_then_only_what_changed(store: Storage, folder: Path) -> None:
    assert set(servable_files(folder)) == {"main.xml", "archive/main/1.xml", "index.html", "feeds.opml"}
    first = sync_folder(folder, store)
    assert (first.stored, first.unchanged, first.removed) == (4, 0, 0)
    stored = store.document("archive/main/1.xml")
    assert stored is not None and stored.body == b"<rss>old</rss>"
    assert stored.meta.etag == hashlib.sha256(b"<rss>old</rss>").hexdigest() and stored.meta.size == 14
    assert stored.meta.changed_at.timestamp() == 1_700_000_000
    again = sync_folder(folder, store)
    assert (again.stored, again.unchanged, again.removed) == (0, 4, 0)
    write(folder, "main.xml", b"<rss>main, revised</rss>", 1_700_000_100_000_000_000)
    (folder / "archive" / "main" / "1.xml").unlink()
    changed = sync_folder(folder, store)
    assert (changed.stored, changed.unchanged, changed.removed) == (1, 2, 1)
    assert store.document("archive/main/1.xml") is None
    main = store.document("main.xml")
    assert main is not None and main.body == b"<rss>main, revised</rss>"


def test_another_host_publishing_the_same_bytes_keeps_the_validators(store: Storage, folder: Path,
                                                                      tmp_path: Path) -> None:
    sync_folder(folder, store)
    before = store.document_metas()
    other = tmp_path / "other-host"
    for rel, path in servable_files(folder).items():
        write(other, rel, path.read_bytes(), 1_800_000_000_000_000_000)  # same bytes, written later
    report = sync_folder(other, store)
    assert (report.stored, report.unchanged, report.removed) == (0, 4, 0)
    assert store.document_metas() == before


def feeds_app(files: FeedFiles) -> Any:
    """A Flask app with only the feed routes (what the web app registers for them)."""
    from flask import Flask

    app = Flask(__name__)
    app.register_blueprint(blueprint(files))
    return app.test_client()


def call(client: Any, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    resp = client.get(path, headers={k.replace("_", "-"): v for k, v in headers.items()})
    return resp.status_code, dict(resp.headers), resp.get_data()


def test_serving_from_the_database_answers_like_the_folder(store: Storage, folder: Path) -> None:
    sync_folder(folder, store)
    from_db, from_files = feeds_app(DatabaseFeedFiles(store)), feeds_app(FeedFiles(folder))
    for path in ("/main.xml", "/index.html", "/archive/main/1.xml", "/feeds.opml"):
        db_status, db_headers, db_body = call(from_db, path)
        file_status, file_headers, file_body = call(from_files, path)
        assert (db_status, db_body) == (file_status, file_body) == (200, db_body)
        for name in ("Content-Type", "ETag", "Last-Modified"):
            assert db_headers[name] == file_headers[name], (path, name)
    _, headers, _ = call(from_db, "/main.xml")
    assert call(from_db, "/main.xml", if_none_match=headers["ETag"])[0] == 304
    assert call(from_db, "/main.xml", if_modified_since=headers["Last-Modified"])[0] == 304
    _, gz_headers, _ = call(from_db, "/main.xml", accept_encoding="gzip")
    assert gz_headers["Content-Encoding"] == "gzip" and gz_headers["ETag"].endswith('-gz"')
    for refused in ("/.manifest.json", "/notes.txt", "/../x.xml", "/nothing.xml", "/a/./b.xml"):
        assert call(from_db, refused)[0] == 404, refused
    write(folder, "main.xml", b"<rss>new</rss>", 1_700_000_200_000_000_000)
    sync_folder(folder, store)
    status, headers2, body = call(from_db, "/main.xml", if_none_match=headers["ETag"])
    assert status == 200 and body == b"<rss>new</rss>" and headers2["ETag"] != headers["ETag"]
    health = call(from_db, "/healthz")
    assert health[0] == 200 and b'"top_level_feeds": 1' in health[2]


def test_the_deployment_guide_shows_the_compose_file_verbatim() -> None:
    from tests.conftest import ROOT

    guide = (ROOT / "docs" / "deploy-postgres.md").read_text(encoding="utf-8")
    compose = (ROOT / "deploy" / "compose-postgres.yml").read_text(encoding="utf-8")
    assert f"```yaml\n{compose}```" in guide
    for service in ("db:", "daemon:", "web-1:", "web-2:"):
        assert f"\n  {service}" in compose
