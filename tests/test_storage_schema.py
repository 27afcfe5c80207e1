"""The schema: Alembic migrations match the table definitions, upgrades keep data, opening is safe. Real SQLite files in tmp dirs."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from monitor.errors import StorageError
from monitor.storage import Storage
from monitor.storage.schema import include_in_schema_comparison, metadata
from monitor.types import TagInput
from tests.conftest import db_url
from tests.storage_data import LATER, NOW, meta, real_articles  # noqa: F401


def test_migrations_match_table_definitions(store: Storage) -> None:
    # The FTS5 index (migration 0005) is a virtual table SQLAlchemy cannot describe: the same hook that
    # keeps it out of Alembic's own comparisons (migrations/env.py) leaves it out here, and nothing else.
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_object": include_in_schema_comparison})
        assert compare_metadata(context, metadata) == []
        tables = set(sa.inspect(conn).get_table_names())
    left_out = {t for t in tables if not include_in_schema_comparison(None, t, "table", True, None)}
    if store.engine.dialect.name == "postgresql":  # the tsvector index of migration 0008
        assert left_out == {"paper_search"}
    else:
        assert left_out == {"papers_fts", "papers_fts_config", "papers_fts_content", "papers_fts_data",
                            "papers_fts_docsize", "papers_fts_idx"}


def test_the_head_revision_is_alembics_and_an_up_to_date_open_skips_alembic(tmp_path: Path, monkeypatch) -> None:
    from alembic.script import ScriptDirectory

    from monitor import migrations

    assert migrations.head_revision() == ScriptDirectory.from_config(migrations.alembic_config()).get_current_head()
    url = db_url(tmp_path / "m.sqlite3")
    Storage.open(url).close()
    calls = []
    monkeypatch.setattr(migrations, "upgrade", lambda *a, **k: calls.append(a))
    with Storage.open(url) as s:
        assert s.count_papers() == 0
    assert calls == []  # at head already: alembic not run (nor imported) on this open


@pytest.mark.sqlite_only("WAL is a SQLite journal mode")
def test_reopening_is_harmless_and_sqlite_is_in_wal_mode(tmp_path: Path) -> None:
    url = db_url(tmp_path / "m.sqlite3")
    a, _ = real_articles()
    with Storage.open(url) as s:
        s.store_batch([a], query="q", now=NOW)
    with Storage.open(url) as s:
        assert s.count_papers() == 1
    conn = sqlite3.connect(tmp_path / "m.sqlite3")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_upgrade_from_0001_keeps_papers_and_adds_tag_columns(tmp_path: Path) -> None:
    import sqlalchemy as sa

    from monitor import migrations

    url = db_url(tmp_path / "old.sqlite3")
    engine = sa.create_engine(url)
    migrations.upgrade(engine, "0001")
    a, _ = real_articles()
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO papers (pmid, version, status, deleted, title, retracted, data, content_hash, "
            "first_seen_at, updated_at, fetched_at) VALUES (:p, 1, 'MEDLINE', false, :t, false, :d, 'h', "
            "'2026-11-22 03:00:00', '2026-11-22 03:00:00', '2026-11-22 03:00:00')"),
            {"p": int(a.pmid), "t": a.title, "d": __import__("orjson").dumps(a).decode()})
    engine.dispose()
    with Storage.open(url) as s:  # upgrades to head
        (paper,) = list(s.iter_papers())
        assert paper.article == a and paper.tagging is None
        assert s.taxonomy_versions() == {None: 1}


def test_upgrade_from_0002_moves_tag_inputs_and_keeps_taggings(tmp_path: Path) -> None:
    import orjson
    import sqlalchemy as sa

    from monitor import migrations
    from monitor.storage.tags import tag_input_json
    from monitor.types import TagEvidence, Tagging

    url = db_url(tmp_path / "old.sqlite3")
    engine = sa.create_engine(url)
    migrations.upgrade(engine, "0002")
    a, b = real_articles()
    old = Tagging(conditions=("acne",), gut_skin_relevant=True, relevance=0.7, taxonomy_version="2025.0",
                  evidence=(TagEvidence("acne", "condition", "title", "acne", 3.0),))
    with engine.begin() as conn:
        for art in (a, b):
            conn.execute(sa.text(
                "INSERT INTO papers (pmid, version, status, deleted, title, retracted, data, content_hash, "
                "first_seen_at, updated_at, fetched_at) VALUES (:p, 1, 'MEDLINE', false, :t, false, :d, 'h', "
                "'2026-11-22 03:00:00', '2026-11-22 03:00:00', '2026-11-22 03:00:00')"),
                {"p": int(art.pmid), "t": art.title, "d": orjson.dumps(art).decode()})
        # 0002 kept the tag input in the tagging row, and the version inside the tagging JSON; b is untagged
        conn.execute(sa.text("INSERT INTO paper_tagging (pmid, tag_input, tagging, taxonomy_version, relevance, "
                             "gut_skin_relevant) VALUES (:p, :i, :t, '2025.0', 0.7, true)"),
                     {"p": int(a.pmid), "i": tag_input_json(a), "t": orjson.dumps(old).decode()})
        conn.execute(sa.text("INSERT INTO paper_tags (pmid, kind, tag) VALUES (:p, 'condition', 'acne'), "
                             "(:p, 'relevance', 'gut_skin_relevant')"), {"p": int(a.pmid)})
        conn.execute(sa.text("INSERT INTO paper_tagging (pmid, tag_input) VALUES (:p, :i)"),
                     {"p": int(b.pmid), "i": tag_input_json(b)})
    engine.dispose()
    with Storage.open(url) as s:  # upgrades to head
        stored = {p.article.pmid: p.tagging for p in s.iter_papers()}
        assert stored == {a.pmid: old, b.pmid: None}
        assert s.taxonomy_versions() == {"2025.0": 1, None: 1}
        seen: list[str] = []

        def tagger(paper: TagInput) -> Tagging:
            seen.append(paper.title)
            return dataclasses.replace(old, taxonomy_version="2026.1")

        changes = s.retag(tagger)  # reads the moved inputs; a keeps its tags, b gains them
        assert sorted(seen) == sorted([a.title, b.title])
        assert (changes.examined, changes.changed, changes.rewritten) == (2, 1, 2)
        assert dict(changes.added) == {"acne": 1, "gut_skin_relevant": 1} and not changes.removed
        assert s.taxonomy_versions() == {"2026.1": 2}
    with sa.create_engine(url).connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM paper_tag_inputs")).scalar() == 2


@pytest.mark.sqlite_only("SQLite's lock-upgrade conflicts; PostgreSQL migrates under an advisory lock "
                         "(tests/test_concurrency.py)")
def test_opening_retries_a_migration_that_met_a_lock_conflict(tmp_path, monkeypatch) -> None:
    # Two daemons creating one SQLite file at the same moment can hit lock-upgrade conflicts that SQLite
    # reports at once ("database is locked") instead of waiting on the busy timeout: the open retries.
    import sqlalchemy as sa

    from monitor import migrations
    from monitor.storage import base as storage_base

    real, calls = migrations.upgrade, []

    def flaky(engine, revision="head"):
        calls.append(revision)
        if len(calls) < 3:
            raise sa.exc.OperationalError("BEGIN IMMEDIATE", {}, Exception("database is locked"))
        real(engine, revision)

    monkeypatch.setattr(migrations, "upgrade", flaky)
    with Storage.open(db_url(tmp_path / "new.sqlite3")) as s:
        assert s.count_papers() == 0 and len(calls) == 3

    calls.clear()
    monkeypatch.setattr(storage_base, "OPEN_RETRY_SECONDS", 0.0)  # a lock that never clears: a clear error
    with pytest.raises(StorageError, match="database is locked"):
        Storage.open(db_url(tmp_path / "other.sqlite3"))
    assert len(calls) == 1
