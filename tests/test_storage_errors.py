"""Every database failure is a StorageError with a message a user can act on: a locked and a broken database
for every public method, on SQLite (a file another connection holds, a file overwritten) and on PostgreSQL
(tables another session holds locked past the lock timeout, a database dropped under the store)."""

from __future__ import annotations

import inspect
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor.errors import StorageError
from monitor.storage import Storage
from monitor.storage.papers import PreparedBatch
from monitor.types import PaperFilter, QueryReport, Tagging, TextTerm
from tests.conftest import db_url, drop_databases, on_postgres
from tests.storage_data import NOW, real_articles


@pytest.mark.sqlite_only("SQLite files; the PostgreSQL counterpart is test_unreachable_postgresql_is_a_storage_error")
def test_database_errors_become_storage_errors(tmp_path: Path) -> None:
    not_a_db = tmp_path / "junk.sqlite3"
    not_a_db.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StorageError, match=r"cannot open database .*junk.sqlite3.*file is not a database"):
        Storage.open(db_url(not_a_db))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StorageError, match=r"check storage.url / MONITOR_DB_URL"):
        Storage.open(db_url(blocker / "sub/m.sqlite3"))


@pytest.mark.sqlite_only("SQLite's write lock; PostgreSQL's lock timeout is checked by the pg_locked fixture")
def test_locked_database_is_reported_not_hung(tmp_path: Path) -> None:
    url = db_url(tmp_path / "m.sqlite3")
    a, _ = real_articles()
    with Storage.open(url) as s:
        holder = sqlite3.connect(tmp_path / "m.sqlite3", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        s.engine.dispose()
        import sqlalchemy as sa
        from sqlalchemy import event

        quick = Storage(sa.create_engine(url, connect_args={"timeout": 0.2}))
        event.listen(quick.engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        with pytest.raises(StorageError, match="database is locked \\(another monitor process is writing"):
            quick.store_batch([a], query="q", now=NOW)
        holder.rollback()
        holder.close()


# One call of every public Storage method, with arguments it accepts. A method added without an entry here
# fails test_every_public_method_is_listed, so none escapes the error check below.
CALLS: dict[str, Callable[[Storage], Any]] = {
    "known_pmids": lambda s: s.known_pmids(["1"]),
    "store_batch": lambda s: s.store_batch(real_articles()[:1], query="q", now=NOW),
    "store_prepared": lambda s: s.store_prepared(PreparedBatch({}, ["1"]), query="q", now=NOW),
    "link": lambda s: s.link(["1"], "q", NOW),
    "count_papers": lambda s: s.count_papers(),
    "iter_papers": lambda s: list(s.iter_papers()),
    "events": lambda s: s.events(),
    "paper": lambda s: s.paper("1"),
    "linked_pmids": lambda s: s.linked_pmids("q"),
    "linked_query_names": lambda s: s.linked_query_names(),
    "status_changes": lambda s: s.status_changes(),
    "retag": lambda s: s.retag(lambda _: Tagging()),
    "save_taggings": lambda s: s.save_taggings({"1": Tagging()}),
    "taxonomy_versions": lambda s: s.taxonomy_versions(),
    "rebuild_search_index": lambda s: s.rebuild_search_index(),
    "search": lambda s: s.search(TextTerm("probiotic"), PaperFilter()),
    "query_state": lambda s: s.query_state("q"),
    "all_query_states": lambda s: s.all_query_states(),
    "set_watermark": lambda s: s.set_watermark("q", "t", NOW, (NOW.date(), NOW.date()), None),
    "start_run": lambda s: s.start_run(NOW),
    "record_query": lambda s: s.record_query(1, QueryReport("q", "ok")),
    "finish_run": lambda s: s.finish_run(1, NOW, "ok"),
    "recent_runs": lambda s: s.recent_runs(),
    "runs_between": lambda s: s.runs_between(NOW, NOW),
    "close_dead_runs": lambda s: s.close_dead_runs(NOW, "gone"),
    "last_run_started": lambda s: s.last_run_started(),
    "last_sent_digest": lambda s: s.last_sent_digest(),
    "digest_log": lambda s: s.digest_log(),
    "pending_digests": lambda s: s.pending_digests(),
    "papers_first_found": lambda s: s.papers_first_found(NOW, NOW),
    "status_events_of_delivered": lambda s: s.status_events_of_delivered(NOW, NOW, ["retraction"]),
    "begin_digest": lambda s: s.begin_digest(created_at=NOW, period=(NOW, NOW), subject="s", recipients=["a@b.c"],
                                             message_id=None, papers_by_section={}, event_ids=[]),
    "finish_digest": lambda s: s.finish_digest(1, "sent", NOW),
    "try_acquire_lease": lambda s: s.try_acquire_lease("cycle", holder="h", host="x", pid=1, purpose="p", now=NOW,
                                                       expires_at=NOW),
    "renew_lease": lambda s: s.renew_lease("cycle", "h", NOW, NOW),
    "release_lease": lambda s: s.release_lease("cycle", "h", NOW),
    "take_over_lease": lambda s: s.take_over_lease("cycle", "d", holder="h", host="x", pid=1, purpose="p", now=NOW,
                                                   expires_at=NOW),
    "lease": lambda s: s.lease("cycle"),
    "record_fire": lambda s: s.record_fire("cycle", NOW),
    "record_job_outcome": lambda s: s.record_job_outcome("cycle", NOW, "ok"),
    "job_states": lambda s: s.job_states(),
    "document_metas": lambda s: s.document_metas(),
    "document_meta": lambda s: s.document_meta("main.xml"),
    "document": lambda s: s.document("main.xml"),
    "save_documents": lambda s: s.save_documents([], ["main.xml"]),
    "feed_rows": lambda s: s.feed_rows(),
    "feed_records": lambda s: s.feed_records(["1"]),
    "paper_detail": lambda s: s.paper_detail("1"),
    "recent_papers": lambda s: s.recent_papers(PaperFilter(relevant_only=True), limit=10),
    "count_matching": lambda s: s.count_matching(TextTerm("probiotic"), PaperFilter()),
    "facets": lambda s: s.facets(TextTerm("probiotic"), PaperFilter(conditions=("acne",))),
    "evidence_map": lambda s: s.evidence_map(PaperFilter(relevant_only=True)),
    "data_version": lambda s: s.data_version(),
    "trend_counts": lambda s: s.trend_counts("condition", PaperFilter(relevant_only=True)),
}
NOT_DATABASE_CALLS = {"open", "close", "reopened", "prepare_batch"}  # lifecycle, or no connection at all


def test_every_public_method_is_listed() -> None:
    public = {name for name, _ in inspect.getmembers(Storage, callable) if not name.startswith("_")}
    assert public - NOT_DATABASE_CALLS == set(CALLS)


@pytest.mark.postgres
def test_unreachable_postgresql_is_a_storage_error(tmp_path: Path) -> None:
    import sqlalchemy as sa

    missing = sa.engine.make_url(db_url(tmp_path / "m.sqlite3")).set(database="no_such_database_here")
    with pytest.raises(StorageError, match=r"cannot open database postgresql\+psycopg://.*no_such_database_here.*"
                                           r"check storage.url / MONITOR_DB_URL"):
        Storage.open(missing.render_as_string(hide_password=False))


def test_postgresql_without_its_driver_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Storage itself (whoever opens it: the CLI checks the configuration first) names the package."""
    import sys

    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if psycopg were not installed: importing it fails
    with pytest.raises(StorageError) as caught:
        Storage.open("postgresql+psycopg://monitor:secret@db.example.org/monitor")
    assert str(caught.value) == (
        "database URL postgresql+psycopg://monitor:***@db.example.org/monitor needs the Python driver psycopg, "
        "which is not installed: pip install 'gut-skin-monitor[postgres]' (psycopg 3)")


@pytest.fixture
def locked(tmp_path: Path) -> Iterator[Storage]:
    """A locked store: on SQLite (below) a file another connection holds, on PostgreSQL every table held
    in ACCESS EXCLUSIVE mode by another session (see :func:`pg_locked`)."""
    if on_postgres():
        yield from pg_locked(tmp_path)
    else:
        yield from sqlite_locked(tmp_path)


def pg_locked(tmp_path: Path) -> Iterator[Storage]:
    """Another session holds every table of the database locked in an open transaction; the store's
    ``busy_timeout`` becomes PostgreSQL's ``lock_timeout``, so each call gives up after 50 ms."""
    import sqlalchemy as sa

    url = db_url(tmp_path / "m.sqlite3")
    Storage.open(url).close()
    store = Storage.open(url, busy_timeout=0.05, migrate=False)
    holder = sa.create_engine(url).connect()
    tables = sa.inspect(holder).get_table_names()
    holder.exec_driver_sql(f"LOCK TABLE {', '.join(tables)} IN ACCESS EXCLUSIVE MODE")
    yield store
    store.close()
    holder.rollback()
    holder.close()
    holder.engine.dispose()


def sqlite_locked(tmp_path: Path) -> Iterator[Storage]:
    """A store whose database another connection holds exclusively (SQLite's EXCLUSIVE locking mode keeps
    even WAL readers out); a short busy timeout so each call gives up at once."""
    url = db_url(tmp_path / "m.sqlite3")
    Storage.open(url).close()
    store = Storage.open(url, busy_timeout=0.05, migrate=False)
    holder = sqlite3.connect(tmp_path / "m.sqlite3", isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("CREATE TABLE hold (x)")
    holder.execute("COMMIT")  # in EXCLUSIVE mode the lock outlives the transaction
    yield store
    store.close()
    holder.close()


@pytest.fixture
def broken(tmp_path: Path) -> Iterator[Storage]:
    """A store whose database file was overwritten with something that is not a database (SQLite), or whose
    database was dropped under it (PostgreSQL)."""
    if on_postgres():
        store = Storage.open(db_url(tmp_path / "m.sqlite3"))
        store.engine.dispose()
        drop_databases(tmp_path)
        yield store
        store.close()
        return
    path = tmp_path / "m.sqlite3"
    store = Storage.open(db_url(path))
    store.engine.dispose()
    for leftover in (tmp_path / "m.sqlite3-wal", tmp_path / "m.sqlite3-shm"):
        leftover.unlink(missing_ok=True)
    path.write_bytes(b"not a database, not any more " * 200)
    yield store
    store.close()


@pytest.mark.parametrize("method", sorted(CALLS))
def test_a_locked_database_is_a_storage_error_for_every_method(locked: Storage, method: str) -> None:
    if method == "data_version" and on_postgres():
        pytest.skip("on PostgreSQL data_version reads no table, so table locks cannot hold it up")
    with pytest.raises(StorageError, match=r"database is locked \(another monitor process is writing"):
        CALLS[method](locked)


@pytest.mark.parametrize("method", sorted(CALLS))
def test_a_broken_database_is_a_storage_error_for_every_method(broken: Storage, method: str) -> None:
    with pytest.raises(StorageError, match='database "monitor_test_[0-9a-f]+" does not exist' if on_postgres()
                       else "file is not a database"):
        CALLS[method](broken)
