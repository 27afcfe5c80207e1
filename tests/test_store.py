"""Storage: the revision rule, idempotent upserts, links, deletions, events, watermarks, run log, errors,
and the Alembic migrations matching the table definitions. Real SQLite files in tmp dirs."""

from __future__ import annotations

import dataclasses
import datetime as dt
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from monitor import pubmed
from monitor.errors import StorageError
from monitor.storage import Storage
from monitor.storage.papers import decide
from monitor.storage.schema import include_in_schema_comparison, metadata
from monitor.types import Article, Correction, Deletion, PublicationType, QueryReport, StoredMeta, TagInput
from tests.conftest import DATA

NOW = dt.datetime(2026, 11, 22, 3, 0, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(days=1)


def real_articles() -> list[Article]:
    items = pubmed.parse((DATA / "efetch" / "biopython" / "pubmed2.xml").read_bytes())
    arts = [a for a in items if isinstance(a, Article)]
    assert len(arts) == 2
    return arts


@pytest.fixture
def store(tmp_path: Path) -> Storage:
    s = Storage.open(f"sqlite:///{tmp_path}/db/monitor.sqlite3")
    yield s
    s.close()


def meta(version: int = 1, revised: dt.date | None = dt.date(2020, 1, 1), digest: str = "h",
         deleted: bool = False) -> StoredMeta:
    return StoredMeta(version, revised, digest, deleted)


@pytest.mark.parametrize(("old", "new_version", "new_revised", "new_hash", "expected"), [
    (None, 1, dt.date(2020, 1, 1), "h", "new"),
    (meta(), 1, dt.date(2020, 1, 1), "h", "unchanged"),
    (meta(), 2, dt.date(2019, 1, 1), "x", "updated"),   # a higher version wins even with an older date
    (meta(version=2), 1, dt.date(2021, 1, 1), "x", "older"),
    (meta(), 1, dt.date(2021, 1, 1), "x", "updated"),
    (meta(), 1, dt.date(2019, 1, 1), "x", "older"),      # a stale copy never rolls a paper back
    (meta(), 1, dt.date(2020, 1, 1), "x", "updated"),    # same date, different content: NCBI's copy wins
    (meta(deleted=True), 1, dt.date(2020, 1, 1), "h", "updated"),  # a withdrawn paper that comes back
    (meta(revised=None), 1, None, "h", "unchanged"),
])
def test_decide(old, new_version, new_revised, new_hash, expected) -> None:
    article = Article(pmid="1", version=new_version, date_revised=new_revised)
    assert decide(old, article, new_hash) == expected


def test_store_is_idempotent_and_links_each_query_once(store: Storage) -> None:
    a, b = real_articles()
    first = store.store_batch([a, b], query="q1", now=NOW, run_id=1)
    assert sorted(first.new) == sorted([a.pmid, b.pmid]) and not first.updated
    again = store.store_batch([a, b], query="q1", now=LATER, run_id=2)
    assert not again.new and not again.updated and sorted(again.unchanged) == sorted([a.pmid, b.pmid])
    store.store_batch([a], query="q2", now=LATER, run_id=2)
    papers = {p.article.pmid: p for p in store.iter_papers()}
    assert papers[a.pmid].queries == (("q1", NOW), ("q2", LATER))
    assert papers[b.pmid].queries == (("q1", NOW),)
    assert papers[a.pmid].article == a  # the stored copy round-trips exactly
    assert papers[a.pmid].first_seen_at == NOW and papers[a.pmid].updated_at == NOW
    assert store.count_papers() == 2


def test_revision_updates_and_records_status_events(store: Storage) -> None:
    a, _ = real_articles()
    store.store_batch([a], query="q", now=NOW)
    retracted = dataclasses.replace(
        a, version=a.version + 1,
        corrections=a.corrections + (Correction("RetractionIn", "J X. 2026;1:1", "42"),),
        publication_types=a.publication_types + (PublicationType("Retracted Publication", "D016441"),))
    outcome = store.store_batch([retracted], query="q", now=LATER)
    assert outcome.updated == (a.pmid,)
    (paper,) = list(store.iter_papers())
    assert paper.article.is_retracted and paper.updated_at == LATER and paper.first_seen_at == NOW
    assert [(k, at) for _, k, at in store.events(a.pmid)] == [("retraction", LATER), ("revised", LATER)]
    # The older copy arriving late does not roll it back.
    assert store.store_batch([a], query="q", now=LATER).unchanged == (a.pmid,)
    assert next(store.iter_papers()).article.version == a.version + 1


def test_deletion_marks_withdrawn_once(store: Storage) -> None:
    a, b = real_articles()
    store.store_batch([a, b], query="q", now=NOW)
    assert store.store_batch([Deletion(a.pmid), Deletion("123")], query="q", now=LATER).deleted == (a.pmid,)
    assert store.store_batch([Deletion(a.pmid)], query="q", now=LATER).deleted == ()
    assert store.count_papers() == 1 and store.count_papers(include_deleted=True) == 2
    assert [p.article.pmid for p in store.iter_papers(include_deleted=False)] == [b.pmid]
    assert [k for _, k, _ in store.events(a.pmid)] == ["deleted"]


def test_known_pmids_and_link(store: Storage) -> None:
    a, b = real_articles()
    store.store_batch([a], query="q1", now=NOW)
    assert store.known_pmids([a.pmid, b.pmid, "1"]) == {a.pmid}
    assert store.link([a.pmid], "q2", LATER) == 1
    assert store.link([a.pmid], "q2", LATER) == 0
    many = [str(i) for i in range(1, 2500)]  # more than one IN (...) chunk
    assert store.known_pmids(many + [a.pmid]) == {a.pmid}


def test_watermarks_and_run_log(store: Storage) -> None:
    assert store.query_state("q") is None
    store.set_watermark("q", "term", NOW, (dt.date(2024, 1, 1), dt.date(2026, 11, 22)), run_id=1)
    store.set_watermark("q", "term2", LATER, (dt.date(2026, 10, 1), dt.date(2026, 11, 23)), run_id=2)
    state = store.query_state("q")
    assert (state.term, state.last_success_at, state.window_start) == ("term2", LATER, dt.date(2026, 10, 1))
    run = store.start_run(NOW)
    store.record_query(run, QueryReport("q", "degraded", (dt.date(2026, 1, 1), dt.date(2026, 2, 1)), found=3,
                                        message="PhraseNotFound"))
    store.finish_run(run, LATER, "failed")
    (summary,) = store.recent_runs()
    assert (summary.status, summary.started_at, summary.finished_at) == ("failed", NOW, LATER)
    assert summary.queries[0].message == "PhraseNotFound" and summary.queries[0].found == 3


def test_migrations_match_table_definitions(store: Storage) -> None:
    # The FTS5 index (migration 0005) is a virtual table SQLAlchemy cannot describe: the same hook that
    # keeps it out of Alembic's own comparisons (migrations/env.py) leaves it out here, and nothing else.
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_object": include_in_schema_comparison})
        assert compare_metadata(context, metadata) == []
        tables = set(sa.inspect(conn).get_table_names())
    assert "papers_fts" in tables and {t for t in tables if not include_in_schema_comparison(
        None, t, "table", True, None)} == {"papers_fts", "papers_fts_config", "papers_fts_content",
                                           "papers_fts_data", "papers_fts_docsize", "papers_fts_idx"}


def test_reopening_is_harmless_and_sqlite_is_in_wal_mode(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/m.sqlite3"
    a, _ = real_articles()
    with Storage.open(url) as s:
        s.store_batch([a], query="q", now=NOW)
    with Storage.open(url) as s:
        assert s.count_papers() == 1
    conn = sqlite3.connect(tmp_path / "m.sqlite3")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_database_errors_become_storage_errors(tmp_path: Path) -> None:
    not_a_db = tmp_path / "junk.sqlite3"
    not_a_db.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StorageError, match=r"cannot open database .*junk.sqlite3.*file is not a database"):
        Storage.open(f"sqlite:///{not_a_db}")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StorageError, match=r"check storage.url / MONITOR_DB_URL"):
        Storage.open(f"sqlite:///{blocker}/sub/m.sqlite3")


def test_locked_database_is_reported_not_hung(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/m.sqlite3"
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


def test_upgrade_from_0001_keeps_papers_and_adds_tag_columns(tmp_path: Path) -> None:
    import sqlalchemy as sa

    from monitor import migrations

    url = f"sqlite:///{tmp_path}/old.sqlite3"
    engine = sa.create_engine(url)
    migrations.upgrade(engine, "0001")
    a, _ = real_articles()
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO papers (pmid, version, status, deleted, title, retracted, data, content_hash, "
            "first_seen_at, updated_at, fetched_at) VALUES (:p, 1, 'MEDLINE', 0, :t, 0, :d, 'h', "
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

    url = f"sqlite:///{tmp_path}/old.sqlite3"
    engine = sa.create_engine(url)
    migrations.upgrade(engine, "0002")
    a, b = real_articles()
    old = Tagging(conditions=("acne",), gut_skin_relevant=True, relevance=0.7, taxonomy_version="2025.0",
                  evidence=(TagEvidence("acne", "condition", "title", "acne", 3.0),))
    with engine.begin() as conn:
        for art in (a, b):
            conn.execute(sa.text(
                "INSERT INTO papers (pmid, version, status, deleted, title, retracted, data, content_hash, "
                "first_seen_at, updated_at, fetched_at) VALUES (:p, 1, 'MEDLINE', 0, :t, 0, :d, 'h', "
                "'2026-11-22 03:00:00', '2026-11-22 03:00:00', '2026-11-22 03:00:00')"),
                {"p": int(art.pmid), "t": art.title, "d": orjson.dumps(art).decode()})
        # 0002 kept the tag input in the tagging row, and the version inside the tagging JSON; b is untagged
        conn.execute(sa.text("INSERT INTO paper_tagging (pmid, tag_input, tagging, taxonomy_version, relevance, "
                             "gut_skin_relevant) VALUES (:p, :i, :t, '2025.0', 0.7, 1)"),
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


def test_a_new_taxonomy_that_changes_nothing_only_relabels(store: Storage) -> None:
    from monitor.types import Tagging

    a, b = real_articles()
    store.store_batch([a, b], query="q", now=NOW)
    store.retag(lambda paper: Tagging(conditions=("acne",), taxonomy_version="v1"))
    changes = store.retag(lambda paper: Tagging(conditions=("acne",), taxonomy_version="v2"))
    assert (changes.examined, changes.changed, changes.rewritten, changes.relabelled, changes.added) == (2, 0, 2, 2, ())
    assert store.taxonomy_versions() == {"v2": 2}
    assert {p.tagging.taxonomy_version for p in store.iter_papers()} == {"v2"}


def test_taggings_are_stored_diffed_and_idempotent(store: Storage) -> None:
    from monitor.types import TagEvidence, Tagging

    a, b = real_articles()
    store.store_batch([a, b], query="q", now=NOW)
    ev = (TagEvidence("psoriasis", "condition", "title", "psoriasis", 3.0),)
    t1 = Tagging(conditions=("psoriasis",), designs=("rct",), gut_skin_relevant=True, relevance=0.8,
                 evidence=ev, taxonomy_version="v1")
    changes = store.save_taggings({a.pmid: t1})
    assert (changes.examined, changes.changed, changes.rewritten) == (1, 1, 1)
    assert dict(changes.added) == {"psoriasis": 1, "rct": 1, "gut_skin_relevant": 1} and not changes.removed
    assert store.save_taggings({a.pmid: t1}).rewritten == 0  # same tags again: nothing written
    t2 = Tagging(conditions=("acne",), designs=("rct",), taxonomy_version="v2")
    changes = store.save_taggings({a.pmid: t2})
    assert dict(changes.added) == {"acne": 1}
    assert dict(changes.removed) == {"psoriasis": 1, "gut_skin_relevant": 1}
    stored = {p.article.pmid: p.tagging for p in store.iter_papers()}
    assert stored[a.pmid] == t2 and stored[b.pmid] is None
    assert store.taxonomy_versions() == {"v2": 1, None: 1}


def test_retag_tags_everything_once_then_changes_nothing(store: Storage) -> None:
    from monitor.types import Tagging

    a, b = real_articles()
    store.store_batch([a, b], query="q", now=NOW)
    tagger = lambda paper: Tagging(conditions=("acne",) if paper.title == a.title else (), taxonomy_version="v")  # noqa: E731
    first = store.retag(tagger, batch=1)
    # One paper gains a tag; both get a stored tagging for the first time.
    assert (first.examined, first.changed, first.rewritten) == (2, 1, 2)
    again = store.retag(tagger, batch=1)
    assert (again.examined, again.changed, again.rewritten, again.added, again.removed) == (2, 0, 0, (), ())


def test_store_batch_tags_new_and_revised_papers_in_the_same_transaction(store: Storage) -> None:
    from monitor.types import Tagging

    a, _ = real_articles()
    seen: list[str] = []

    def tagger(paper: TagInput) -> Tagging:
        seen.append(paper.title)
        return Tagging(conditions=("lupus",), taxonomy_version="v")

    store.store_batch([a], query="q", now=NOW, tagger=tagger)
    store.store_batch([a], query="q", now=LATER, tagger=tagger)  # unchanged: not tagged again
    revised = dataclasses.replace(a, version=a.version + 1)
    store.store_batch([revised], query="q", now=LATER, tagger=tagger)
    assert seen == [a.title, a.title]
    assert next(store.iter_papers()).tagging.conditions == ("lupus",)


def test_tagging_the_compact_tag_input_equals_tagging_the_whole_article() -> None:
    """Retag reads only `tag_input`; a run tags the whole Article. They must never disagree."""
    import gzip

    from monitor.storage.tags import decode_tag_input, tag_input_json
    from monitor.tagging import load_taxonomy, tag
    from tests.conftest import ROOT

    taxonomy = load_taxonomy(ROOT / "taxonomy.toml")
    checked = 0
    for path in sorted((DATA / "efetch").rglob("*.xml*")):
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        for article in pubmed.parse(data):
            if isinstance(article, Article):
                light = decode_tag_input(tag_input_json(article))
                assert tag(light, taxonomy) == tag(article, taxonomy), article.pmid
                checked += 1
    assert checked >= 1500


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
    with Storage.open(f"sqlite:///{tmp_path}/new.sqlite3") as s:
        assert s.count_papers() == 0 and len(calls) == 3

    calls.clear()
    monkeypatch.setattr(storage_base, "OPEN_RETRY_SECONDS", 0.0)  # a lock that never clears: a clear error
    with pytest.raises(StorageError, match="database is locked"):
        Storage.open(f"sqlite:///{tmp_path}/other.sqlite3")
    assert len(calls) == 1
