"""Storage: the only module that knows SQL. It speaks :mod:`monitor.types`; rows never leave it.

Owns the schema (kept in step with the Alembic migrations in ``monitor/migrations``), the SQLite settings
(WAL, busy timeout, foreign keys), PMID dedupe, revision handling (:func:`decide` is the pure rule), the
paper↔query links, the run log and the per-query watermarks. Every database failure surfaces as
:class:`~monitor.errors.StorageError`. The same code runs on PostgreSQL: only ``on_conflict`` needs a dialect
import, chosen from the engine.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import hashlib
import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from .errors import SearchSyntaxError, StorageError
from .types import (
    Article,
    Deletion,
    ParsedItem,
    QueryReport,
    StatusChange,
    StoreOutcome,
    Tagging,
    TagInput,
    TextAll,
    TextAny,
    TextNode,
    TextTerm,
)

metadata = sa.MetaData()

papers = sa.Table(
    "papers",
    metadata,
    sa.Column("pmid", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("status", sa.String(40)),
    sa.Column("deleted", sa.Boolean, nullable=False, default=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("doi", sa.String(255), index=True),
    sa.Column("year", sa.Integer),
    sa.Column("sort_date", sa.Date),
    sa.Column("date_revised", sa.Date),
    sa.Column("retracted", sa.Boolean, nullable=False, default=False),
    sa.Column("data", sa.Text, nullable=False),  # Article.to_dict() as JSON
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
)

# What the tagger reads of each paper (tag_input_json()), written when the paper is stored or revised; a
# retag reads it and never writes it.
paper_tag_inputs = sa.Table(
    "paper_tag_inputs",
    metadata,
    sa.Column("pmid", sa.BigInteger, sa.ForeignKey("papers.pmid", ondelete="CASCADE"), primary_key=True),
    sa.Column("tag_input", sa.Text, nullable=False),
)

# One row per tagged paper. Narrow on purpose: a retag rewrites these rows and nothing wider.
paper_tagging = sa.Table(
    "paper_tagging",
    metadata,
    sa.Column("pmid", sa.BigInteger, sa.ForeignKey("papers.pmid", ondelete="CASCADE"), primary_key=True),
    sa.Column("tagging", sa.Text, nullable=False),  # tagging_json(): evidence included, version not
    sa.Column("taxonomy_version", sa.String(80)),
    sa.Column("relevance", sa.Float),
    sa.Column("gut_skin_relevant", sa.Boolean),
    sa.Index("ix_paper_tagging_relevant", "gut_skin_relevant", "relevance"),
)

paper_tags = sa.Table(
    "paper_tags",
    metadata,
    sa.Column("pmid", sa.BigInteger, sa.ForeignKey("papers.pmid", ondelete="CASCADE"), primary_key=True),
    sa.Column("kind", sa.String(20), primary_key=True),  # condition | intervention | design
    sa.Column("tag", sa.String(64), primary_key=True),
    sa.Index("ix_paper_tags_tag", "tag", "pmid"),
)

paper_queries = sa.Table(
    "paper_queries",
    metadata,
    sa.Column("pmid", sa.BigInteger, sa.ForeignKey("papers.pmid", ondelete="CASCADE"), primary_key=True),
    sa.Column("query_name", sa.String(64), primary_key=True),
    sa.Column("first_found_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("run_id", sa.Integer),
    sa.Index("ix_paper_queries_query", "query_name", "first_found_at"),
)

paper_events = sa.Table(
    "paper_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("pmid", sa.BigInteger, sa.ForeignKey("papers.pmid", ondelete="CASCADE"), nullable=False),
    sa.Column("kind", sa.String(40), nullable=False),  # revised | retraction | erratum | … | deleted
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("run_id", sa.Integer),
    sa.Column("detail", sa.Text),
    sa.Index("ix_paper_events_at", "at"),
)

query_state = sa.Table(
    "query_state",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("term", sa.Text, nullable=False),
    sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("window_start", sa.Date, nullable=False),
    sa.Column("window_end", sa.Date, nullable=False),
    sa.Column("run_id", sa.Integer),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("status", sa.String(20), nullable=False),  # running | ok | partial | failed | stopped | abandoned
    sa.Column("message", sa.Text),
)

run_queries = sa.Table(
    "run_queries",
    metadata,
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("query_name", sa.String(64), primary_key=True),
    sa.Column("status", sa.String(20), nullable=False),  # ok | degraded | failed
    sa.Column("window_start", sa.Date),
    sa.Column("window_end", sa.Date),
    sa.Column("found", sa.Integer, nullable=False, default=0),
    sa.Column("new", sa.Integer, nullable=False, default=0),
    sa.Column("updated", sa.Integer, nullable=False, default=0),
    sa.Column("deleted", sa.Integer, nullable=False, default=0),
    sa.Column("skipped", sa.Integer, nullable=False, default=0),
    sa.Column("seconds", sa.Float, nullable=False, default=0.0),
    sa.Column("message", sa.Text),
)

# The digest log (migration 0004). One row per digest built for sending; ``status`` is pending (being sent,
# or the process died while sending), sent or failed. A paper or event counts as delivered once it is in a
# digest whose status is ``sent``: that is what makes "every new paper exactly once" survive failed sends.
digests = sa.Table(
    "digests",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
    sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),  # pending | sent | failed
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("recipients", sa.Text, nullable=False),  # JSON list
    sa.Column("message_id", sa.String(255)),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("error", sa.Text),
    sa.Index("ix_digests_status", "status", "period_end"),
)

digest_papers = sa.Table(
    "digest_papers",
    metadata,
    sa.Column("digest_id", sa.Integer, sa.ForeignKey("digests.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("pmid", sa.BigInteger, sa.ForeignKey("papers.pmid", ondelete="CASCADE"), primary_key=True),
    sa.Column("section", sa.String(20), nullable=False),  # relevant | not_relevant
    sa.Index("ix_digest_papers_pmid", "pmid"),
)

digest_events = sa.Table(
    "digest_events",
    metadata,
    sa.Column("digest_id", sa.Integer, sa.ForeignKey("digests.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("event_id", sa.Integer, sa.ForeignKey("paper_events.id", ondelete="CASCADE"), primary_key=True),
    sa.Index("ix_digest_events_event", "event_id"),
)

# Leases (migration 0006): one row per held lease. A row whose ``expires_at`` has passed is free: its holder
# stopped renewing it (crashed, killed, or the machine slept).
locks = sa.Table(
    "locks",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(200), nullable=False),  # host/pid/random: unique per process and lease
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("purpose", sa.String(64), nullable=False),  # what the holder is doing: "monitor run", "daemon cycle" …
    sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
)

# Each scheduled job's last fire (migration 0006): what lets a restarted daemon see a fire it missed.
schedule_state = sa.Table(
    "schedule_state",
    metadata,
    sa.Column("job", sa.String(64), primary_key=True),
    sa.Column("last_fire_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_finished_at", sa.DateTime(timezone=True)),
    sa.Column("outcome", sa.String(20)),  # ok | partial | failed | skipped | stopped | not_due | sent …
    sa.Column("message", sa.Text),
)

# Correction RefTypes that become a status-change event when they first appear on a stored paper.
EVENT_KINDS = {
    "RetractionIn": "retraction",
    "ErratumIn": "erratum",
    "ExpressionOfConcernIn": "expression_of_concern",
    "UpdateIn": "update",
}
STATUS_EVENT_KINDS = ("retraction", "erratum", "expression_of_concern", "update")
_IN_CHUNK = 500  # ids per IN (...) clause: below SQLite's variable limit on old builds


@dataclass(frozen=True, slots=True)
class StoredMeta:
    """What :func:`decide` needs to know about the stored copy of a paper."""

    version: int
    date_revised: dt.date | None
    content_hash: str
    deleted: bool


@dataclass(frozen=True, slots=True)
class QueryState:
    name: str
    term: str
    last_success_at: dt.datetime
    window_start: dt.date
    window_end: dt.date


@dataclass(frozen=True, slots=True)
class StoredPaper:
    article: Article
    deleted: bool
    first_seen_at: dt.datetime
    updated_at: dt.datetime
    queries: tuple[tuple[str, dt.datetime], ...]  # (query name, first found at)
    tagging: Tagging | None = None  # None until the paper has been tagged


@dataclass(frozen=True, slots=True)
class FeedRow:
    """What the feeds plan with: a relevant paper's PMID, first-found time, a fingerprint of its stored
    record and tagging (changes when either does), its condition and intervention tags, its queries, and
    its stored tagging JSON (decoded only when an item is rendered: the items show designs and evidence)."""

    pmid: str
    first_seen_at: dt.datetime
    fingerprint: str
    conditions: tuple[str, ...]
    interventions: tuple[str, ...]
    queries: tuple[str, ...]
    tagging_json: str = field(default="{}", compare=False)


@dataclass(frozen=True, slots=True)
class TagChanges:
    """What (re)tagging changed: papers examined and changed, and per tag id how many papers gained or
    lost it (``gut_skin_relevant`` counts as a tag here)."""

    examined: int = 0
    changed: int = 0  # papers whose tags (or relevance flag) changed
    rewritten: int = 0  # papers whose stored tagging changed at all (evidence, score, taxonomy version)
    relabelled: int = 0  # of those, papers whose tagging only changed its taxonomy version
    added: tuple[tuple[str, int], ...] = ()
    removed: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class RunSummary:
    id: int
    started_at: dt.datetime
    finished_at: dt.datetime | None
    status: str
    queries: tuple[QueryReport, ...]


# ---- digest log values (issue 5)


@dataclass(frozen=True, slots=True)
class DigestRecord:
    """One row of the digest log."""

    id: int
    created_at: dt.datetime
    period_start: dt.datetime
    period_end: dt.datetime
    status: str  # pending | sent | failed
    subject: str
    recipients: tuple[str, ...]
    message_id: str | None
    finished_at: dt.datetime | None
    error: str | None
    papers: int  # papers recorded with it (listed or counted)


@dataclass(frozen=True, slots=True)
class StatusEvent:
    """A status-change event (retraction, erratum …) of a stored paper, with what a reader needs to know."""

    id: int
    pmid: str
    kind: str
    at: dt.datetime
    detail: dict[str, Any]
    title: str
    doi: str | None


# ---- lease and schedule values (issue 7)


@dataclass(frozen=True, slots=True)
class LeaseRow:
    """Who holds (or last held, if ``expires_at`` has passed) a lease."""

    name: str
    holder: str
    host: str
    pid: int
    purpose: str
    acquired_at: dt.datetime
    heartbeat_at: dt.datetime
    expires_at: dt.datetime


@dataclass(frozen=True, slots=True)
class JobState:
    """A scheduled job's last fire and how it ended."""

    job: str
    last_fire_at: dt.datetime
    last_finished_at: dt.datetime | None
    outcome: str | None
    message: str | None


def decide(old: StoredMeta | None, new: Article, new_hash: str) -> str:
    """``new`` | ``updated`` | ``unchanged`` | ``older`` for an incoming record (pure).

    A higher ``PMID@Version`` or a later ``DateRevised`` is a revision; an older one is ignored (a stale
    mirror or a reordered batch must not roll a paper back). At the same version and date, what NCBI
    serves now wins if the content differs; a deleted paper that comes back is restored.
    """
    if old is None:
        return "new"
    if new.version != old.version:
        return "updated" if new.version > old.version else "older"
    if new.date_revised and old.date_revised and new.date_revised != old.date_revised:
        return "updated" if new.date_revised > old.date_revised else "older"
    if old.deleted or new_hash != old.content_hash:
        return "updated"
    return "unchanged"


def tag_input_json(article: Article) -> str:
    """The fields the tagger reads (:class:`~monitor.types.TagInput`: title, abstract, keywords, MeSH,
    publication types) as compact JSON.

    ``tests/test_store.py`` checks that tagging :func:`decode_tag_input` of this gives the same tags as
    tagging the whole article, on every corpus record, so retags and runs cannot disagree."""
    return orjson.dumps(tuple(TagInput.of(article))).decode("utf-8")


def decode_tag_input(text: str) -> TagInput:
    """The :class:`~monitor.types.TagInput` that :func:`tag_input_json` wrote (JSON arrays kept as lists)."""
    return TagInput(*orjson.loads(text))


def content_hash(data_json: str) -> str:
    return hashlib.sha256(data_json.encode("utf-8")).hexdigest()


def article_json(article: Article) -> str:
    """The stored JSON of an article: exactly ``json.dumps(article.to_dict(), ensure_ascii=False,
    separators=(",", ":"))`` (fields in definition order), which ``content_hash`` digests.

    orjson serializes the frozen dataclasses directly, about 4× faster than building the dict and
    encoding it with the standard library (bench/ingest.py); tests/test_article_json.py checks the two
    agree byte for byte on every corpus record.
    """
    return orjson.dumps(article).decode("utf-8")


class Storage:
    """The database behind the monitor. Create with :meth:`open` (runs migrations)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._postgres = engine.dialect.name == "postgresql"
        self._fts = engine.dialect.name == "sqlite"  # FTS5 index (migration 0005); elsewhere plain matching

    # ---------------------------------------------------------------- lifecycle

    @classmethod
    def open(cls, url: str, *, migrate: bool = True) -> Storage:
        """Connect (creating a SQLite file's folder if needed) and bring the schema up to date."""
        try:
            engine = _engine(url)
            if migrate:
                _migrate(engine)
            return cls(engine)
        except (SQLAlchemyError, OSError) as exc:
            raise StorageError(f"cannot open database {_safe_url(url)}: {_reason(exc)}; "
                               "check storage.url / MONITOR_DB_URL") from exc

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except SQLAlchemyError as exc:
            raise StorageError(f"database error while {doing}: {_reason(exc)}") from exc

    @contextlib.contextmanager
    def _tx(self, doing: str, immediate: bool = False) -> Iterator[Connection]:
        """One transaction. ``immediate``: for a transaction that reads before it writes, take SQLite's write
        lock at BEGIN. A deferred one that read first fails at once with "database is locked" if another
        process (a second daemon renewing or trying its lease) committed in between; an immediate one waits
        its turn under the busy timeout instead."""
        if not immediate:
            with self._errors(doing), self.engine.begin() as conn:
                yield conn
            return
        with self._errors(doing), self.engine.connect() as conn:
            conn.execution_options(sqlite_begin_immediate=True)
            with conn.begin():
                yield conn

    # ---------------------------------------------------------------- papers

    def known_pmids(self, pmids: Iterable[str]) -> set[str]:
        """The subset of ``pmids`` already stored (deleted ones included)."""
        wanted = [int(p) for p in pmids]
        found: set[str] = set()
        with self._tx("looking up PMIDs") as conn:
            for start in range(0, len(wanted), _IN_CHUNK):
                chunk = wanted[start:start + _IN_CHUNK]
                rows = conn.execute(sa.select(papers.c.pmid).where(papers.c.pmid.in_(chunk)))
                found.update(str(r.pmid) for r in rows)
        return found

    def store_batch(
        self, items: Sequence[ParsedItem], *, query: str | None, now: dt.datetime, run_id: int | None = None,
        tagger: Tagger | None = None,
    ) -> StoreOutcome:
        """Upsert one fetched batch in one transaction, linking each article to ``query``; with a
        ``tagger``, new and revised papers are tagged in the same transaction (never stored untagged).

        Idempotent: storing the same batch twice changes nothing the second time.
        """
        articles = {a.pmid: a for a in items if isinstance(a, Article)}  # last copy of a PMID wins
        deletions = [d.pmid for d in items if isinstance(d, Deletion)]
        new: list[str] = []
        updated: list[str] = []
        unchanged: list[str] = []
        deleted: list[str] = []
        with self._tx("storing papers", immediate=True) as conn:
            old = self._meta(conn, list(articles) + deletions)
            inserts: list[dict[str, Any]] = []
            for pmid, article in articles.items():
                data = article_json(article)
                digest = content_hash(data)
                verdict = decide(old.get(pmid), article, digest)
                row = _paper_row(article, data, digest, now)
                if verdict == "new":
                    inserts.append({**row, "first_seen_at": now})
                    new.append(pmid)
                elif verdict == "updated":
                    previous = self._article(conn, pmid)
                    conn.execute(papers.update().where(papers.c.pmid == int(pmid)).values(**row))
                    self._events(conn, previous, article, now, run_id)
                    updated.append(pmid)
                else:
                    conn.execute(papers.update().where(papers.c.pmid == int(pmid)).values(fetched_at=now))
                    unchanged.append(pmid)
            if inserts:
                conn.execute(papers.insert(), inserts)
            if new or updated:
                self._save_tag_inputs(conn, [articles[p] for p in new + updated], fresh=set(new))
                self._index(conn, [articles[p] for p in new + updated], fresh=set(new))
            for pmid in deletions:
                meta = old.get(pmid)
                if meta is None or meta.deleted:
                    continue  # never stored, or already marked: nothing to do
                conn.execute(papers.update().where(papers.c.pmid == int(pmid))
                             .values(deleted=True, updated_at=now, fetched_at=now))
                conn.execute(paper_events.insert().values(pmid=int(pmid), kind="deleted", at=now, run_id=run_id,
                                                          detail="DeleteCitation"))
                deleted.append(pmid)
            if deleted:
                self._unindex(conn, deleted)  # withdrawn papers are not searchable
            if query:
                self._link(conn, list(articles), query, now, run_id, fresh=new)
            if tagger is not None and (new or updated):
                self._save_taggings(conn, {p: tagger(TagInput.of(articles[p])) for p in new + updated})
        return StoreOutcome(tuple(new), tuple(updated), tuple(unchanged), tuple(deleted))

    def link(self, pmids: Iterable[str], query: str, now: dt.datetime, run_id: int | None = None) -> int:
        """Record that ``query`` found these stored papers; returns how many links are new."""
        with self._tx("linking papers to a query", immediate=True) as conn:
            return self._link(conn, list(pmids), query, now, run_id)

    def _link(self, conn: Connection, pmids: list[str], query: str, now: dt.datetime, run_id: int | None,
              fresh: Sequence[str] = ()) -> int:
        """``fresh``: papers inserted in this transaction. They cannot have links yet (the foreign key), so
        they are not looked up; on an ingest of new papers that saves a query per batch."""
        if not pmids:
            return 0
        existing: set[int] = set()
        ints = [int(p) for p in pmids]
        skip = {int(p) for p in fresh}
        stored = [p for p in ints if p not in skip]
        for start in range(0, len(stored), _IN_CHUNK):
            chunk = stored[start:start + _IN_CHUNK]
            existing.update(conn.execute(
                sa.select(paper_queries.c.pmid)
                .where(paper_queries.c.query_name == query, paper_queries.c.pmid.in_(chunk))
            ).scalars())
        rows = [{"pmid": p, "query_name": query, "first_found_at": now, "run_id": run_id}
                for p in dict.fromkeys(ints) if p not in existing]
        if rows:
            conn.execute(paper_queries.insert(), rows)
        return len(rows)

    def _meta(self, conn: Connection, pmids: list[str]) -> dict[str, StoredMeta]:
        out: dict[str, StoredMeta] = {}
        ints = [int(p) for p in pmids]
        cols = (papers.c.pmid, papers.c.version, papers.c.date_revised, papers.c.content_hash, papers.c.deleted)
        for start in range(0, len(ints), _IN_CHUNK):
            for r in conn.execute(sa.select(*cols).where(papers.c.pmid.in_(ints[start:start + _IN_CHUNK]))):
                out[str(r.pmid)] = StoredMeta(r.version, r.date_revised, r.content_hash, bool(r.deleted))
        return out

    def _article(self, conn: Connection, pmid: str) -> Article:
        data = conn.execute(sa.select(papers.c.data).where(papers.c.pmid == int(pmid))).scalar_one()
        return Article.from_dict(orjson.loads(data))

    def _events(self, conn: Connection, old: Article, new: Article, now: dt.datetime, run_id: int | None) -> None:
        """Status changes worth telling readers about: new retraction/erratum/… links, and revisions."""
        before = {(c.ref_type, c.pmid) for c in old.corrections}
        rows = [
            {"pmid": int(new.pmid), "kind": EVENT_KINDS[c.ref_type], "at": now, "run_id": run_id,
             "detail": json.dumps({"ref_source": c.ref_source, "pmid": c.pmid})}
            for c in new.corrections
            if c.ref_type in EVENT_KINDS and (c.ref_type, c.pmid) not in before
        ]
        if new.is_retracted and not old.is_retracted and not any(r["kind"] == "retraction" for r in rows):
            rows.append({"pmid": int(new.pmid), "kind": "retraction", "at": now, "run_id": run_id,
                         "detail": json.dumps({"publication_type": "Retracted Publication"})})
        rows.append({"pmid": int(new.pmid), "kind": "revised", "at": now, "run_id": run_id,
                     "detail": json.dumps({"version": new.version, "date_revised":
                                           new.date_revised.isoformat() if new.date_revised else None})})
        conn.execute(paper_events.insert(), rows)

    def count_papers(self, *, include_deleted: bool = False) -> int:
        with self._tx("counting papers") as conn:
            q = sa.select(sa.func.count()).select_from(papers)
            if not include_deleted:
                q = q.where(papers.c.deleted.is_(False))
            return int(conn.execute(q).scalar_one())

    def iter_papers(self, *, include_deleted: bool = True, relevant_only: bool = False, batch: int = 1000,
                    filters: PaperFilter | None = None) -> Iterator[StoredPaper]:
        """Every stored paper in PMID order, with the queries that found it (streams in batches);
        ``relevant_only`` keeps the papers tagged gut–skin relevant (read through their index); with
        ``filters``, only the papers that pass them (their ``include_deleted`` is ignored: the keyword wins)."""
        last = -1
        where = _filter_clauses(filters) if filters is not None else []
        while True:
            with self._tx("reading papers") as conn:
                q = (sa.select(papers, paper_tagging.c.tagging, paper_tagging.c.taxonomy_version)
                     .select_from(papers.outerjoin(paper_tagging, paper_tagging.c.pmid == papers.c.pmid))
                     .where(papers.c.pmid > last, *where).order_by(papers.c.pmid).limit(batch))
                if not include_deleted:
                    q = q.where(papers.c.deleted.is_(False))
                if relevant_only:
                    q = q.where(paper_tagging.c.gut_skin_relevant.is_(True))
                rows = conn.execute(q).all()
                if not rows:
                    return
                found = self._hydrate(conn, rows)
            yield from found
            last = rows[-1].pmid

    def paper(self, pmid: str) -> StoredPaper | None:
        """One stored paper (withdrawn or not) with its queries and tagging; None when it is not stored."""
        with self._tx("reading a paper") as conn:
            rows = conn.execute(
                sa.select(papers, paper_tagging.c.tagging, paper_tagging.c.taxonomy_version)
                .select_from(papers.outerjoin(paper_tagging, paper_tagging.c.pmid == papers.c.pmid))
                .where(papers.c.pmid == int(pmid))).all()
            found = self._hydrate(conn, rows)
        return found[0] if found else None

    def _hydrate(self, conn: Connection, rows: Sequence[Any]) -> list[StoredPaper]:
        """StoredPapers for ``papers`` rows joined with their tagging, in the order given."""
        links: dict[int, list[tuple[str, dt.datetime]]] = {}
        for start in range(0, len(rows), _IN_CHUNK):
            link_rows = conn.execute(
                sa.select(paper_queries)
                .where(paper_queries.c.pmid.in_([r.pmid for r in rows[start:start + _IN_CHUNK]]))
                .order_by(paper_queries.c.pmid, paper_queries.c.first_found_at, paper_queries.c.query_name)
            )
            for link in link_rows:
                links.setdefault(link.pmid, []).append((link.query_name, _utc(link.first_found_at)))
        return [
            StoredPaper(
                article=Article.from_dict(orjson.loads(r.data)),
                deleted=bool(r.deleted),
                first_seen_at=_utc(r.first_seen_at),
                updated_at=_utc(r.updated_at),
                queries=tuple(links.get(r.pmid, ())),
                tagging=stored_tagging(r.tagging, r.taxonomy_version) if r.tagging else None,
            )
            for r in rows
        ]

    def events(self, pmid: str | None = None) -> list[tuple[str, str, dt.datetime]]:
        """``(pmid, kind, at)`` status-change events, oldest first."""
        with self._tx("reading events") as conn:
            q = sa.select(paper_events.c.pmid, paper_events.c.kind, paper_events.c.at).order_by(paper_events.c.id)
            if pmid is not None:
                q = q.where(paper_events.c.pmid == int(pmid))
            return [(str(r.pmid), r.kind, _utc(r.at)) for r in conn.execute(q)]

    # ---------------------------------------------------------------- feeds

    def feed_rows(self, min_relevance: float = 0.5) -> list[FeedRow]:
        """Every gut–skin relevant (relevance score ≥ ``min_relevance``), not withdrawn paper as the feeds plan
        with it: when it was first found,
        fingerprints of its record and tagging, its conditions, interventions and queries, its tagging JSON
        (not decoded). The record itself is not read. Ordered by PMID."""
        # Plain scans joined here: on a large collection they cost a third of joining and sorting in SQL.
        # The tags come from the head of each tagging's JSON (see _tags_part), not from paper_tags rows.
        with self._tx("reading papers for feeds") as conn:
            taggings = dict(conn.execute(sa.select(paper_tagging.c.pmid, paper_tagging.c.tagging)
                                         .where(paper_tagging.c.relevance >= min_relevance)).all())
            listed = conn.execute(sa.select(papers.c.pmid, papers.c.first_seen_at, papers.c.content_hash)
                                  .where(papers.c.deleted.is_(False)).order_by(papers.c.pmid)).all()
            found: dict[int, list[str]] = {}
            for pmid, name in conn.execute(sa.select(paper_queries.c.pmid, paper_queries.c.query_name)
                                           .order_by(paper_queries.c.pmid, paper_queries.c.query_name)).all():
                if pmid in taggings:
                    found.setdefault(pmid, []).append(name)
        out = []
        for pmid, first_seen_at, content_hash in listed:
            text = taggings.get(pmid)
            if text is None:
                continue
            head = _tags_head(text)
            out.append(FeedRow(str(pmid), _utc(first_seen_at),
                               content_hash + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16],
                               tuple(sorted(head["conditions"])), tuple(sorted(head["interventions"])),
                               tuple(found.get(pmid, ())), text))
        return out

    def feed_records(self, pmids: Iterable[str]) -> dict[str, str | bytes]:
        """The stored record JSON of each paper, not decoded (feed items are rendered from it; SQLite hands
        it over as UTF-8 bytes, which spares decoding hundreds of megabytes into str objects)."""
        ints = {int(p) for p in pmids}
        data = sa.cast(papers.c.data, sa.LargeBinary) if self._fts else papers.c.data  # _fts: SQLite
        with self._tx("reading papers for feeds") as conn:
            if len(ints) > 20 * _IN_CHUNK:
                # Much of the collection (a first generation): one pass over the PMID range is far cheaper
                # than hundreds of IN (...) lookups.
                rows = conn.execute(sa.select(papers.c.pmid, data)
                                    .where(papers.c.pmid.between(min(ints), max(ints)))).all()
                return {str(pmid): text for pmid, text in rows if pmid in ints}
            ordered = sorted(ints)
            out: dict[str, str | bytes] = {}
            for start in range(0, len(ordered), _IN_CHUNK):
                out.update((str(pmid), text) for pmid, text in conn.execute(
                    sa.select(papers.c.pmid, data).where(papers.c.pmid.in_(ordered[start:start + _IN_CHUNK]))))
            return out

    def reopened(self) -> Storage | None:
        """A new Storage on the same database with connections of its own, for a forked process (which must
        not use its parent's); None for an in-memory database, which another connection would not see. No
        connection is made until it is used."""
        url = self.engine.url
        if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
            return None
        return Storage(_engine(url.render_as_string(hide_password=False)))

    def status_changes(self, kinds: Sequence[str] = STATUS_EVENT_KINDS) -> list[StatusChange]:
        """Retractions, errata, expressions of concern and updates that appeared on stored papers, oldest
        first (``kinds`` narrows them)."""
        with self._tx("reading status changes") as conn:
            rows = conn.execute(
                sa.select(paper_events.c.pmid, paper_events.c.kind, paper_events.c.at, paper_events.c.detail)
                .where(paper_events.c.kind.in_(list(kinds))).order_by(paper_events.c.at, paper_events.c.id))
            out = []
            for r in rows:
                detail = json.loads(r.detail) if r.detail else {}
                notice = detail.get("pmid") if isinstance(detail, dict) else None
                out.append(StatusChange(str(r.pmid), r.kind, _utc(r.at), str(notice) if notice else None))
            return out

    # ---------------------------------------------------------------- tags

    def _save_tag_inputs(self, conn: Connection, articles: list[Article], fresh: set[str]) -> None:
        """Keep each paper's tagger input (new rows for new papers)."""
        rows = [{"pmid": int(a.pmid), "tag_input": tag_input_json(a)} for a in articles]
        inserts = [r for r in rows if str(r["pmid"]) in fresh]
        if inserts:
            conn.execute(paper_tag_inputs.insert(), inserts)
        for r in rows:
            if str(r["pmid"]) in fresh:
                continue
            done = conn.execute(paper_tag_inputs.update().where(paper_tag_inputs.c.pmid == r["pmid"])
                                .values(tag_input=r["tag_input"]))
            if done.rowcount == 0:  # stored before tag inputs were kept
                conn.execute(paper_tag_inputs.insert().values(**r))

    def retag(self, tagger: Tagger, *, batch: int = 2000,
              progress: Callable[[int], None] | None = None) -> TagChanges:
        """Tag every stored (not withdrawn) paper again, writing only what changed, one transaction per
        batch. Running it twice with the same taxonomy changes nothing the second time."""
        total = _Changes()
        last = -1
        while True:
            with self._tx("retagging papers", immediate=True) as conn:
                rows = conn.execute(
                    sa.select(papers.c.pmid, paper_tag_inputs.c.tag_input, paper_tagging.c.tagging,
                              paper_tagging.c.taxonomy_version)
                    .select_from(papers
                                 .outerjoin(paper_tag_inputs, paper_tag_inputs.c.pmid == papers.c.pmid)
                                 .outerjoin(paper_tagging, paper_tagging.c.pmid == papers.c.pmid))
                    .where(papers.c.pmid > last, papers.c.deleted.is_(False))
                    .order_by(papers.c.pmid).limit(batch)
                ).all()
                if not rows:
                    break
                taggings = {str(r.pmid): tagger(self._tag_input(conn, r.pmid, r.tag_input)) for r in rows}
                stored = {str(r.pmid): (r.tagging, r.taxonomy_version) for r in rows}
                total.merge(self._save_taggings(conn, taggings, stored))
            last = rows[-1].pmid
            if progress:
                progress(len(rows))
        return total.frozen()

    def _tag_input(self, conn: Connection, pmid: int, tag_input: str | None) -> TagInput:
        if tag_input is not None:
            return decode_tag_input(tag_input)
        # Stored before tag inputs were kept: decode the whole record once and keep its input from now on.
        article = self._article(conn, str(pmid))
        conn.execute(paper_tag_inputs.insert().values(pmid=pmid, tag_input=tag_input_json(article)))
        return TagInput.of(article)

    def save_taggings(self, taggings: dict[str, Tagging]) -> TagChanges:
        with self._tx("saving tags") as conn:
            return self._save_taggings(conn, taggings).frozen()

    def _save_taggings(self, conn: Connection, taggings: dict[str, Tagging],
                       stored: dict[str, tuple[str | None, str | None]] | None = None) -> _Changes:
        """Write the taggings that differ from the stored ones. ``stored`` maps a stored paper's pmid to its
        (tagging JSON, taxonomy version), both None if it has none yet; papers the caller did not pass are
        looked up, and pmids of papers not stored are skipped. Where only the taxonomy version differs, one
        statement per version relabels the rows."""
        changes = _Changes(examined=len(taggings))
        stored = dict(stored or {})
        ints = [int(p) for p in taggings if p not in stored]
        for start in range(0, len(ints), _IN_CHUNK):
            chunk = ints[start:start + _IN_CHUNK]
            stored.update((str(r.pmid), (r.tagging, r.taxonomy_version)) for r in conn.execute(
                sa.select(papers.c.pmid, paper_tagging.c.tagging, paper_tagging.c.taxonomy_version)
                .select_from(papers.outerjoin(paper_tagging, paper_tagging.c.pmid == papers.c.pmid))
                .where(papers.c.pmid.in_(chunk))))
        deletes: list[dict[str, Any]] = []
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        firsts: list[dict[str, Any]] = []  # papers tagged for the first time
        relabel: dict[str, list[int]] = {}  # taxonomy version -> pmids whose tagging is otherwise unchanged
        for pmid, tagging in taggings.items():
            if pmid not in stored:
                continue  # not a stored paper
            text = tagging_json(tagging)
            old, old_version = stored[pmid]
            if text == old:
                if old_version != tagging.taxonomy_version:
                    relabel.setdefault(tagging.taxonomy_version, []).append(int(pmid))
                    changes.rewritten += 1
                    changes.relabelled += 1
                continue
            if old and _tags_part(old) == _tags_part(text):
                before = after = set()  # same tags; only relevance, evidence or version changed
            else:
                before = _tag_rows(orjson.loads(old)) if old else set()
                after = _tag_rows({"conditions": tagging.conditions, "interventions": tagging.interventions,
                                   "designs": tagging.designs, "gut_skin_relevant": tagging.gut_skin_relevant})
            for kind, tag in before - after:
                deletes.append({"p": int(pmid), "k": kind, "t": tag})
                changes.removed[tag] += 1
            for kind, tag in after - before:
                inserts.append({"pmid": int(pmid), "kind": kind, "tag": tag})
                changes.added[tag] += 1
            row = {"tagging": text, "taxonomy_version": tagging.taxonomy_version,
                   "relevance": tagging.relevance, "gut_skin_relevant": tagging.gut_skin_relevant}
            if old is None:
                firsts.append({"pmid": int(pmid), **row})
            else:
                updates.append({"p": int(pmid), **row})
            changes.changed += before != after
            changes.rewritten += 1
        if deletes:
            conn.execute(paper_tags.delete().where(
                paper_tags.c.pmid == sa.bindparam("p"), paper_tags.c.kind == sa.bindparam("k"),
                paper_tags.c.tag == sa.bindparam("t")), deletes)
        if inserts:
            conn.execute(paper_tags.insert(), inserts)
        if firsts:
            conn.execute(paper_tagging.insert(), firsts)
        if updates:
            conn.execute(paper_tagging.update().where(paper_tagging.c.pmid == sa.bindparam("p")), updates)
        for version, pmids in relabel.items():
            for start in range(0, len(pmids), _IN_CHUNK):
                conn.execute(paper_tagging.update().where(paper_tagging.c.pmid.in_(pmids[start:start + _IN_CHUNK]))
                             .values(taxonomy_version=version))
        return changes

    def taxonomy_versions(self) -> dict[str | None, int]:
        """How many stored papers each taxonomy version tagged (None: not tagged yet)."""
        with self._tx("reading taxonomy versions") as conn:
            rows = conn.execute(
                sa.select(paper_tagging.c.taxonomy_version, sa.func.count())
                .select_from(papers.outerjoin(paper_tagging, paper_tagging.c.pmid == papers.c.pmid))
                .where(papers.c.deleted.is_(False)).group_by(paper_tagging.c.taxonomy_version))
            return {r[0]: int(r[1]) for r in rows}

    # ---------------------------------------------------------------- search

    def _index(self, conn: Connection, articles: Sequence[Article], fresh: set[str]) -> None:
        """(Re)index stored papers in the full-text index (SQLite only; PostgreSQL matches at query time).
        ``fresh``: papers inserted in this transaction, which cannot be in the index yet."""
        if not self._fts:
            return
        stale = [int(a.pmid) for a in articles if a.pmid not in fresh]
        if stale:
            self._unindex(conn, stale)
        conn.execute(papers_fts.insert(), [search_row(a) for a in articles])

    def _unindex(self, conn: Connection, pmids: Sequence[str | int]) -> None:
        if not self._fts:
            return
        ints = [int(p) for p in pmids]
        for start in range(0, len(ints), _IN_CHUNK):
            conn.execute(papers_fts.delete().where(papers_fts.c.rowid.in_(ints[start:start + _IN_CHUNK])))

    def rebuild_search_index(self) -> int:
        """Empty the full-text index and fill it again from the stored papers in one SQL statement (what
        migration 0005 does on upgrade; bench/search.py times it). Returns the number of papers indexed."""
        if not self._fts:
            return 0
        with self._tx("rebuilding the search index") as conn:
            conn.exec_driver_sql("DELETE FROM papers_fts")
            conn.exec_driver_sql(FTS_REBUILD_SQL)
            return int(conn.exec_driver_sql("SELECT count(*) FROM papers_fts").scalar_one())

    def search(self, text: TextNode | None, filters: PaperFilter, *, sort: str = "relevance",
               limit: int | None = 20) -> list[SearchHit]:
        """Stored papers that match ``text`` (None: every paper) and pass ``filters``, best first.

        ``sort``: ``relevance`` (bm25, title weighted above keywords, MeSH, authors and abstract; PMID
        breaks ties, newest first) or ``date`` (publication date, newest first). ``limit`` None: all.
        On SQLite each hit has a snippet with the matched words between ``SNIPPET_OPEN`` and
        ``SNIPPET_CLOSE``. On PostgreSQL (no FTS5) terms are matched case-insensitively as substrings of the
        title and the stored record, title hits rank first, and ``snippet`` is None. A query FTS5 refuses
        raises :class:`~monitor.errors.SearchSyntaxError`."""
        if sort not in ("relevance", "date"):
            raise ValueError(f"unknown sort {sort!r}")
        use_fts = text is not None and self._fts
        order: list[Any]
        if use_fts:
            assert text is not None
            # Ranked from the index alone where possible: withdrawn papers are never indexed, tag and query
            # filters correlate with the index rowid, and `papers` (wide rows) is joined only when a filter
            # or the date order reads one of its columns. On a million papers that join is most of the
            # cost of a broad query.
            pmid_col: Any = papers_fts.c.rowid
            needs_papers = sort == "date" or _reads_papers(filters)
            where = _filter_clauses(filters, pmid_col if not needs_papers else papers.c.pmid)
            score: Any = sa.func.bm25(sa.literal_column("papers_fts"), *BM25_WEIGHTS)
            source: Any = papers_fts.join(papers, papers.c.pmid == papers_fts.c.rowid) if needs_papers else papers_fts
            where.append(sa.literal_column("papers_fts").op("MATCH")(text.fts5()))
            if not needs_papers:
                order = [score, pmid_col.desc()] if sort == "relevance" else []
                pmid_out: Any = pmid_col
        else:
            where = _filter_clauses(filters, drive=text is None)
            if text is not None:
                title_hits = [sa.case((_like(papers.c.title, t), 1), else_=0) for t in _positive_terms(text)]
                score = -sum(title_hits[1:], title_hits[0]) if title_hits else sa.literal(0)
                where.append(_like_expr(text))
            else:
                score = sa.literal(0)
            source = papers
            needs_papers = True
        if needs_papers:
            if not filters.include_deleted:
                where.append(papers.c.deleted.is_(False))
            pmid_out = papers.c.pmid
            if sort == "relevance" and text is not None:
                order = [score, papers.c.pmid.desc()]
            elif text is None and self._fts and _has_link_filters(filters):
                # SQLite would walk ix_papers_sort_date and probe every paper; with tag or query filters it
                # is far cheaper to let the tag index pick the candidates and sort those ("+" keeps the
                # planner off the date index).
                order = [sa.literal_column("+papers.sort_date").desc().nulls_last(), papers.c.pmid.desc()]
            else:
                order = [papers.c.sort_date.desc().nulls_last(), papers.c.pmid.desc()]
        q = sa.select(pmid_out.label("pmid"), score.label("score")).select_from(source).where(*where).order_by(*order)
        if limit is not None:
            q = q.limit(limit)
        with self._tx("searching papers") as conn:
            try:
                ranked = [(int(r.pmid), float(r.score)) for r in conn.execute(q)]
            except sa.exc.OperationalError as exc:
                if "fts5" in str(exc.orig).lower():
                    raise SearchSyntaxError(f"the search index cannot run this query ({_reason(exc)}); "
                                            "put unusual terms in double quotes") from exc
                raise
            if not ranked:
                return []
            pmids = [p for p, _ in ranked]
            snippets = self._snippets(conn, text, pmids) if use_fts and text is not None else {}
            rows = conn.execute(
                sa.select(papers, paper_tagging.c.tagging, paper_tagging.c.taxonomy_version)
                .select_from(papers.outerjoin(paper_tagging, paper_tagging.c.pmid == papers.c.pmid))
                .where(papers.c.pmid.in_(pmids))).all() if len(pmids) <= _IN_CHUNK else None
            if rows is None:  # a long result: fetch in chunks
                rows = []
                for start in range(0, len(pmids), _IN_CHUNK):
                    rows += conn.execute(
                        sa.select(papers, paper_tagging.c.tagging, paper_tagging.c.taxonomy_version)
                        .select_from(papers.outerjoin(paper_tagging, paper_tagging.c.pmid == papers.c.pmid))
                        .where(papers.c.pmid.in_(pmids[start:start + _IN_CHUNK]))).all()
            by_pmid = {p.article.pmid: p for p in self._hydrate(conn, rows)}
        return [SearchHit(by_pmid[str(pmid)], score if text is not None else None, snippets.get(pmid))
                for pmid, score in ranked]

    def _snippets(self, conn: Connection, text: TextNode, pmids: list[int]) -> dict[int, str]:
        """FTS5 snippets for the hits (a second statement, so only the hits pay for them): from the abstract
        when it has a match, else from whichever column matched best."""
        out: dict[int, str] = {}
        for start in range(0, len(pmids), _IN_CHUNK):
            chunk = pmids[start:start + _IN_CHUNK]
            marks = ", ".join("?" * len(chunk))
            for pmid, abstract, best in conn.exec_driver_sql(
                f"SELECT rowid, snippet(papers_fts, 1, ?, ?, '…', {SNIPPET_TOKENS}), "
                f"snippet(papers_fts, -1, ?, ?, '…', {SNIPPET_TOKENS}) "
                f"FROM papers_fts WHERE papers_fts MATCH ? AND rowid IN ({marks})",
                (SNIPPET_OPEN, SNIPPET_CLOSE, SNIPPET_OPEN, SNIPPET_CLOSE, text.fts5(), *chunk)):
                out[int(pmid)] = abstract if SNIPPET_OPEN in (abstract or "") else best
        return out

    def linked_query_names(self) -> set[str]:
        """Names of the queries that found at least one stored paper (also those no longer configured)."""
        with self._tx("reading query names") as conn:
            return set(conn.execute(sa.select(paper_queries.c.query_name).distinct()).scalars())

    # ---------------------------------------------------------------- watermarks

    def query_state(self, name: str) -> QueryState | None:
        with self._tx("reading the watermark") as conn:
            r = conn.execute(sa.select(query_state).where(query_state.c.name == name)).first()
        if r is None:
            return None
        return QueryState(r.name, r.term, _utc(r.last_success_at), r.window_start, r.window_end)

    def all_query_states(self) -> list[QueryState]:
        with self._tx("reading watermarks") as conn:
            rows = conn.execute(sa.select(query_state).order_by(query_state.c.name)).all()
        return [QueryState(r.name, r.term, _utc(r.last_success_at), r.window_start, r.window_end) for r in rows]

    def set_watermark(self, name: str, term: str, at: dt.datetime, window: tuple[dt.date, dt.date],
                      run_id: int | None) -> None:
        values = {"term": term, "last_success_at": at, "window_start": window[0], "window_end": window[1],
                  "run_id": run_id}
        with self._tx("saving the watermark") as conn:
            done = conn.execute(query_state.update().where(query_state.c.name == name).values(**values))
            if done.rowcount == 0:
                conn.execute(query_state.insert().values(name=name, **values))

    # ---------------------------------------------------------------- run log

    def start_run(self, at: dt.datetime) -> int:
        with self._tx("starting a run") as conn:
            return int(conn.execute(runs.insert().values(started_at=at, status="running")
                                    .returning(runs.c.id)).scalar_one())

    def record_query(self, run_id: int, report: QueryReport) -> None:
        values = {
            "status": report.status, "found": report.found, "new": report.new, "updated": report.updated,
            "deleted": report.deleted, "skipped": report.skipped, "seconds": report.seconds,
            "message": report.message,
            "window_start": report.window[0] if report.window else None,
            "window_end": report.window[1] if report.window else None,
        }
        with self._tx("logging a query run") as conn:
            conn.execute(run_queries.insert().values(run_id=run_id, query_name=report.name, **values))

    def finish_run(self, run_id: int, at: dt.datetime, status: str, message: str | None = None) -> None:
        with self._tx("finishing a run") as conn:
            conn.execute(runs.update().where(runs.c.id == run_id)
                         .values(finished_at=at, status=status, message=message))

    def recent_runs(self, limit: int = 10) -> list[RunSummary]:
        with self._tx("reading the run log") as conn:
            rows = conn.execute(sa.select(runs).order_by(runs.c.id.desc()).limit(limit)).all()
            details = conn.execute(
                sa.select(run_queries).where(run_queries.c.run_id.in_([r.id for r in rows]))
                .order_by(run_queries.c.query_name)
            ).all()
        by_run: dict[int, list[QueryReport]] = {}
        for d in details:
            window = (d.window_start, d.window_end) if d.window_start and d.window_end else None
            by_run.setdefault(d.run_id, []).append(QueryReport(
                name=d.query_name, status=d.status, window=window, found=d.found, new=d.new,
                updated=d.updated, deleted=d.deleted, skipped=d.skipped, message=d.message, seconds=d.seconds))
        return [RunSummary(r.id, _utc(r.started_at), _utc(r.finished_at) if r.finished_at else None, r.status,
                           tuple(by_run.get(r.id, ()))) for r in rows]

    # ---------------------------------------------------------------- digest log (issue 5)
    # A paper or event is "delivered" once it belongs to a digest whose status is ``sent``; pending and
    # failed digests deliver nothing, so their papers come back in the next digest.

    def _sent_pmids(self, *, listed_only: bool = False) -> sa.Select[Any]:
        """PMIDs delivered in sent digests; ``listed_only``: as relevant papers (listed, or linked over the
        ``max_papers`` cap), not merely counted as not relevant."""
        q = (sa.select(digest_papers.c.pmid)
             .select_from(digest_papers.join(digests, digests.c.id == digest_papers.c.digest_id))
             .where(digests.c.status == "sent"))
        return q.where(digest_papers.c.section != "not_relevant") if listed_only else q

    def last_sent_digest(self) -> DigestRecord | None:
        """The most recent digest that was sent (by the end of the period it covered)."""
        log = self.digest_log(1, status="sent")
        return log[0] if log else None

    def digest_log(self, limit: int = 10, *, status: str | None = None) -> list[DigestRecord]:
        """Newest first."""
        with self._tx("reading the digest log") as conn:
            counts = (sa.select(digest_papers.c.digest_id, sa.func.count().label("n"))
                      .group_by(digest_papers.c.digest_id).subquery())
            q = (sa.select(digests, sa.func.coalesce(counts.c.n, 0).label("n"))
                 .select_from(digests.outerjoin(counts, counts.c.digest_id == digests.c.id))
                 .order_by(digests.c.period_end.desc(), digests.c.id.desc()).limit(limit))
            if status is not None:
                q = q.where(digests.c.status == status)
            rows = conn.execute(q).all()
        return [DigestRecord(
            id=r.id, created_at=_utc(r.created_at), period_start=_utc(r.period_start),
            period_end=_utc(r.period_end), status=r.status, subject=r.subject,
            recipients=tuple(json.loads(r.recipients)), message_id=r.message_id,
            finished_at=_utc(r.finished_at) if r.finished_at else None, error=r.error, papers=int(r.n),
        ) for r in rows]

    def papers_first_found(self, since: dt.datetime, until: dt.datetime, *,
                           undelivered_only: bool = True) -> list[StoredPaper]:
        """Stored (not withdrawn) papers first found in ``[since, until]``, in PMID order; by default
        without those already delivered in a sent digest."""
        with self._tx("reading new papers") as conn:
            q = (sa.select(papers, paper_tagging.c.tagging, paper_tagging.c.taxonomy_version)
                 .select_from(papers.outerjoin(paper_tagging, paper_tagging.c.pmid == papers.c.pmid))
                 .where(papers.c.first_seen_at >= _utc(since), papers.c.first_seen_at <= _utc(until),
                        papers.c.deleted.is_(False))
                 .order_by(papers.c.pmid))
            if undelivered_only:
                q = q.where(papers.c.pmid.not_in(self._sent_pmids()))
            rows = conn.execute(q).all()
            links: dict[int, list[tuple[str, dt.datetime]]] = {}
            ints = [r.pmid for r in rows]
            for start in range(0, len(ints), _IN_CHUNK):
                for link in conn.execute(
                        sa.select(paper_queries).where(paper_queries.c.pmid.in_(ints[start:start + _IN_CHUNK]))
                        .order_by(paper_queries.c.pmid, paper_queries.c.first_found_at,
                                  paper_queries.c.query_name)):
                    links.setdefault(link.pmid, []).append((link.query_name, _utc(link.first_found_at)))
        return [StoredPaper(
            article=Article.from_dict(orjson.loads(r.data)), deleted=bool(r.deleted),
            first_seen_at=_utc(r.first_seen_at), updated_at=_utc(r.updated_at),
            queries=tuple(links.get(r.pmid, ())),
            tagging=stored_tagging(r.tagging, r.taxonomy_version) if r.tagging else None,
        ) for r in rows]

    def status_events_of_delivered(self, since: dt.datetime, until: dt.datetime, kinds: Iterable[str], *,
                                   undelivered_only: bool = True) -> list[StatusEvent]:
        """Events of ``kinds`` in ``[since, until]`` on papers already delivered as relevant (listed or
        linked over the cap) in a sent digest, oldest first; by default without events already delivered themselves."""
        with self._tx("reading status changes") as conn:
            q = (sa.select(paper_events, papers.c.title, papers.c.doi)
                 .select_from(paper_events.join(papers, papers.c.pmid == paper_events.c.pmid))
                 .where(paper_events.c.kind.in_(list(kinds)), paper_events.c.at >= _utc(since),
                        paper_events.c.at <= _utc(until),
                        paper_events.c.pmid.in_(self._sent_pmids(listed_only=True)))
                 .order_by(paper_events.c.at, paper_events.c.id))
            if undelivered_only:
                sent_events = (sa.select(digest_events.c.event_id)
                               .select_from(digest_events.join(digests, digests.c.id == digest_events.c.digest_id))
                               .where(digests.c.status == "sent"))
                q = q.where(paper_events.c.id.not_in(sent_events))
            rows = conn.execute(q).all()
        return [StatusEvent(id=r.id, pmid=str(r.pmid), kind=r.kind, at=_utc(r.at),
                            detail=json.loads(r.detail) if r.detail else {}, title=r.title, doi=r.doi)
                for r in rows]

    def runs_between(self, since: dt.datetime, until: dt.datetime) -> list[RunSummary]:
        """Runs started in ``[since, until]``, oldest first, with their per-query outcomes."""
        with self._tx("reading the run log") as conn:
            rows = conn.execute(sa.select(runs).where(runs.c.started_at >= _utc(since),
                                                      runs.c.started_at <= _utc(until))
                                .order_by(runs.c.id)).all()
            by_run: dict[int, list[QueryReport]] = {}
            ids = [r.id for r in rows]
            for start in range(0, len(ids), _IN_CHUNK):
                for d in conn.execute(sa.select(run_queries)
                                      .where(run_queries.c.run_id.in_(ids[start:start + _IN_CHUNK]))
                                      .order_by(run_queries.c.query_name)):
                    window = (d.window_start, d.window_end) if d.window_start and d.window_end else None
                    by_run.setdefault(d.run_id, []).append(QueryReport(
                        name=d.query_name, status=d.status, window=window, found=d.found, new=d.new,
                        updated=d.updated, deleted=d.deleted, skipped=d.skipped, message=d.message,
                        seconds=d.seconds))
        return [RunSummary(r.id, _utc(r.started_at), _utc(r.finished_at) if r.finished_at else None, r.status,
                           tuple(by_run.get(r.id, ()))) for r in rows]

    def begin_digest(self, *, created_at: dt.datetime, period: tuple[dt.datetime, dt.datetime], subject: str,
                     recipients: Sequence[str], message_id: str | None, papers_by_section: dict[str, str],
                     event_ids: Iterable[int]) -> int:
        """Log a digest about to be sent (status ``pending``) with the papers (pmid → section) and events it
        carries, in one transaction; :meth:`finish_digest` records the outcome."""
        with self._tx("logging a digest") as conn:
            digest_id = int(conn.execute(digests.insert().values(
                created_at=created_at, period_start=period[0], period_end=period[1], status="pending",
                subject=subject, recipients=json.dumps(list(recipients)), message_id=message_id,
            ).returning(digests.c.id)).scalar_one())
            rows = [{"digest_id": digest_id, "pmid": int(p), "section": sec} for p, sec in papers_by_section.items()]
            if rows:
                conn.execute(digest_papers.insert(), rows)
            events = [{"digest_id": digest_id, "event_id": int(e)} for e in dict.fromkeys(event_ids)]
            if events:
                conn.execute(digest_events.insert(), events)
        return digest_id

    def finish_digest(self, digest_id: int, status: str, at: dt.datetime, error: str | None = None) -> None:
        """``sent`` or ``failed``."""
        with self._tx("recording a digest's outcome") as conn:
            conn.execute(digests.update().where(digests.c.id == digest_id)
                         .values(status=status, finished_at=at, error=error))


    # ---------------------------------------------------------------- leases and schedule state (issue 7)
    # Each lease operation is one conditional statement in one transaction. On SQLite the statement takes
    # the database write lock, so two processes' attempts are serialised; on PostgreSQL the upsert's row
    # lock does the same. Times are compared in SQL, so every process must pass the same kind of clock.

    def try_acquire_lease(self, name: str, *, holder: str, host: str, pid: int, purpose: str,
                          now: dt.datetime, expires_at: dt.datetime) -> LeaseRow:
        """Take the lease if it is free, expired or already ours; return whoever holds it afterwards
        (``row.holder == holder`` means we do)."""
        values = {"name": name, "holder": holder, "host": host, "pid": pid, "purpose": purpose,
                  "acquired_at": _utc(now), "heartbeat_at": _utc(now), "expires_at": _utc(expires_at)}
        stmt = self._upsert(locks).values(**values)
        taken = locks.c.expires_at <= _utc(now)
        mine = locks.c.holder == holder
        stmt = stmt.on_conflict_do_update(
            index_elements=[locks.c.name],
            set_={k: stmt.excluded[k] for k in values if k != "name"} | {
                # Re-acquiring our own lease keeps the original acquired_at.
                "acquired_at": sa.case((mine, locks.c.acquired_at), else_=stmt.excluded.acquired_at)},
            where=sa.or_(taken, mine),
        )
        with self._tx("taking the lease") as conn:
            conn.execute(stmt)
            row = conn.execute(sa.select(locks).where(locks.c.name == name)).one()
        return _lease_row(row)

    def renew_lease(self, name: str, holder: str, now: dt.datetime, expires_at: dt.datetime) -> bool:
        """Extend our lease; False if it is no longer ours (it expired and another process took it)."""
        with self._tx("renewing the lease") as conn:
            done = conn.execute(locks.update().where(locks.c.name == name, locks.c.holder == holder)
                                .values(heartbeat_at=_utc(now), expires_at=_utc(expires_at)))
            return done.rowcount == 1

    def release_lease(self, name: str, holder: str) -> bool:
        """Give the lease up (only if it is still ours); True if it was."""
        with self._tx("releasing the lease") as conn:
            done = conn.execute(locks.delete().where(locks.c.name == name, locks.c.holder == holder))
            return done.rowcount == 1

    def lease(self, name: str) -> LeaseRow | None:
        """The lease row as stored (it may have expired: compare ``expires_at`` with now)."""
        with self._tx("reading the lease") as conn:
            row = conn.execute(sa.select(locks).where(locks.c.name == name)).first()
        return _lease_row(row) if row is not None else None

    def record_fire(self, job: str, at: dt.datetime) -> None:
        """A scheduled job fired (or the daemon set its baseline) at ``at``."""
        values = {"job": job, "last_fire_at": _utc(at), "last_finished_at": None, "outcome": "running",
                  "message": None}
        stmt = self._upsert(schedule_state).values(**values)
        stmt = stmt.on_conflict_do_update(index_elements=[schedule_state.c.job],
                                          set_={k: stmt.excluded[k] for k in values if k != "job"})
        with self._tx("recording a scheduled fire") as conn:
            conn.execute(stmt)

    def record_job_outcome(self, job: str, at: dt.datetime, outcome: str, message: str | None = None) -> None:
        with self._tx("recording a job's outcome") as conn:
            conn.execute(schedule_state.update().where(schedule_state.c.job == job)
                         .values(last_finished_at=_utc(at), outcome=outcome, message=message))

    def job_states(self) -> dict[str, JobState]:
        with self._tx("reading the schedule state") as conn:
            rows = conn.execute(sa.select(schedule_state)).all()
        return {r.job: JobState(r.job, _utc(r.last_fire_at), _utc(r.last_finished_at) if r.last_finished_at
                                else None, r.outcome, r.message) for r in rows}

    def close_dead_runs(self, at: dt.datetime, message: str) -> list[int]:
        """Mark runs still ``running`` as ``abandoned``. Only called by the holder of the cycle lease: every
        cycle runs under it, so a run that is still ``running`` then belongs to a process that died."""
        with self._tx("closing abandoned runs") as conn:
            return sorted(conn.execute(runs.update().where(runs.c.status == "running")
                                       .values(status="abandoned", finished_at=_utc(at), message=message)
                                       .returning(runs.c.id)).scalars())

    def last_run_started(self) -> dt.datetime | None:
        """When the most recent run (scheduled or manual) started, if any."""
        with self._tx("reading the run log") as conn:
            value = conn.execute(sa.select(sa.func.max(runs.c.started_at))).scalar()
        if isinstance(value, str):  # SQLite's max() over a DATETIME column returns the stored text
            value = dt.datetime.fromisoformat(value)
        return _utc(value) if value is not None else None

    def _upsert(self, table: sa.Table) -> Any:
        if self._postgres:
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(table)
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)


# ------------------------------------------------------------------ search (SQLite FTS5, migration 0005)

# The full-text index: an FTS5 virtual table whose rowid is the PMID. Deliberately not in ``metadata``:
# SQLAlchemy cannot describe a virtual table, SQLite owns its shadow tables, and it does not exist on
# PostgreSQL. :func:`include_in_schema_comparison` keeps it out of Alembic's comparisons.
SEARCH_COLUMNS = ("title", "abstract", "keywords", "mesh", "authors")
papers_fts = sa.table("papers_fts", sa.column("rowid"), *(sa.column(c) for c in SEARCH_COLUMNS))
# bm25 column weights, in SEARCH_COLUMNS order: a title hit counts most, the abstract least (it is long
# and mentions everything in passing).
BM25_WEIGHTS = (10.0, 1.0, 4.0, 3.0, 2.0)
# Newest-first listings (`monitor search` without text, or --sort date) walk this instead of sorting.
ix_papers_sort_date = sa.Index("ix_papers_sort_date", papers.c.sort_date)
# The columns search filters and date order read, so a search joins this narrow index instead of the
# wide rows of `papers` (several KB of JSON each; on a million papers that is most of a broad query).
ix_papers_search = sa.Index("ix_papers_search", papers.c.pmid, papers.c.deleted, papers.c.retracted,
                            papers.c.sort_date, papers.c.first_seen_at)
SNIPPET_OPEN, SNIPPET_CLOSE = "\x02", "\x03"  # never in PubMed text; formatters turn them into markup
SNIPPET_TOKENS = 24

# The index rows of every stored, not withdrawn paper, from the stored JSON (must give what search_row()
# gives: tests/test_search.py checks it on every corpus record).
FTS_REBUILD_SQL = """
INSERT INTO papers_fts (rowid, title, abstract, keywords, mesh, authors)
SELECT p.pmid, p.title,
  coalesce((SELECT group_concat(json_extract(s.value, '$.text'), char(10))
            FROM json_each(p.data, '$.abstract') AS s), ''),
  coalesce((SELECT group_concat(k.value, '; ') FROM json_each(p.data, '$.keywords') AS k), ''),
  coalesce((SELECT group_concat(json_extract(m.value, '$.descriptor'), '; ')
            FROM json_each(p.data, '$.mesh') AS m), ''),
  coalesce((SELECT group_concat(
              CASE WHEN coalesce(json_extract(a.value, '$.collective_name'), '') != ''
                   THEN json_extract(a.value, '$.collective_name')
                   ELSE coalesce(nullif(trim(coalesce(json_extract(a.value, '$.fore_name'), '') || ' ' ||
                                             coalesce(json_extract(a.value, '$.last_name'), '')), ''),
                                 json_extract(a.value, '$.initials'), '')
              END, '; ')
            FROM json_each(p.data, '$.authors') AS a), '')
FROM papers AS p WHERE NOT p.deleted
"""


def search_row(article: Article) -> dict[str, Any]:
    """One paper's row in the full-text index: the abstract without section labels (they would make
    "methods" or "results" match every structured abstract), MeSH descriptors without qualifiers (same
    reason), authors as display names."""
    return {
        "rowid": int(article.pmid),
        "title": article.title,
        "abstract": "\n".join(s.text for s in article.abstract),
        "keywords": "; ".join(article.keywords),
        "mesh": "; ".join(m.descriptor for m in article.mesh),
        "authors": "; ".join(a.display_name for a in article.authors),
    }


def include_in_schema_comparison(obj: Any, name: str | None, type_: str, reflected: bool,
                                 compare_to: Any) -> bool:
    """Alembic ``include_object`` hook: leave the FTS5 table and its shadow tables (``papers_fts_data``,
    ``_idx``, ``_content``, ``_docsize``, ``_config``) out of metadata comparisons. Migration 0005 owns
    them; they are not described by ``metadata`` because SQLAlchemy cannot describe a virtual table."""
    return not (type_ == "table" and name is not None and (name == "papers_fts" or name.startswith("papers_fts_")))


@dataclass(frozen=True, slots=True)
class PaperFilter:
    """Which stored papers a search or an export keeps. Tag lists mean "any of these"; different fields
    must all hold. ``date_field``: ``published`` compares the publication date (``sort_date``: an unknown
    month or day counts as the first), ``found`` the UTC day the monitor first stored the paper."""

    conditions: tuple[str, ...] = ()
    interventions: tuple[str, ...] = ()
    designs: tuple[str, ...] = ()
    queries: tuple[str, ...] = ()
    since: dt.date | None = None
    until: dt.date | None = None
    date_field: str = "published"
    relevant_only: bool = False
    exclude_retracted: bool = False
    include_deleted: bool = False


@dataclass(frozen=True, slots=True)
class SearchHit:
    paper: StoredPaper
    score: float | None  # bm25 (lower is better) on SQLite; minus the title hits on PostgreSQL; None: no text
    snippet: str | None  # matched words between SNIPPET_OPEN and SNIPPET_CLOSE


def _reads_papers(f: PaperFilter) -> bool:
    """Whether a filter needs columns of ``papers`` (and not only the tag and link tables)."""
    return bool(f.exclude_retracted or f.since or f.until)


def _has_link_filters(f: PaperFilter) -> bool:
    return bool(f.conditions or f.interventions or f.designs or f.relevant_only or f.queries)


def _filter_clauses(f: PaperFilter, pmid: Any = None, *, drive: bool = False) -> list[Any]:
    """WHERE clauses for ``f`` (deleted papers are the caller's business); ``pmid`` is the column the tag
    and query filters correlate with (default ``papers.pmid``). ``drive``: write them as ``pmid IN
    (SELECT …)`` so the tag index can drive a query that has no text (EXISTS, for the index-driven text
    search, only probes)."""
    pmid = papers.c.pmid if pmid is None else pmid
    where: list[Any] = []

    def link(table: Any, *conds: Any) -> Any:
        if drive:
            return pmid.in_(sa.select(table.c.pmid).where(*conds))
        return sa.exists().where(table.c.pmid == pmid, *conds)

    for kind, tags in (("condition", f.conditions), ("intervention", f.interventions), ("design", f.designs)):
        if tags:
            where.append(link(paper_tags, paper_tags.c.kind == kind, paper_tags.c.tag.in_(tags)))
    if f.relevant_only:
        where.append(link(paper_tags, paper_tags.c.kind == "relevance", paper_tags.c.tag == "gut_skin_relevant"))
    if f.queries:
        where.append(link(paper_queries, paper_queries.c.query_name.in_(f.queries)))
    if f.exclude_retracted:
        where.append(papers.c.retracted.is_(False))
    if f.date_field == "found":
        if f.since:
            where.append(papers.c.first_seen_at >= _midnight(f.since))
        if f.until:
            where.append(papers.c.first_seen_at < _midnight(f.until + dt.timedelta(days=1)))
    else:
        if f.since:
            where.append(papers.c.sort_date >= f.since)
        if f.until:
            where.append(papers.c.sort_date <= f.until)
    return where


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)


def _positive_terms(node: TextNode) -> list[TextTerm]:
    """The terms a match must (or may, under OR) contain; excluded ones left out."""
    if isinstance(node, TextTerm):
        return [node]
    return [t for part in node.parts for t in _positive_terms(part)]


def _like(column: Any, term: TextTerm) -> Any:
    escaped = term.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return column.ilike(f"%{escaped}%", escape="\\")


def _like_expr(node: TextNode) -> Any:
    """The PostgreSQL fallback of a text query: substring matches on the title (``title:`` terms) or on the
    stored record's JSON (everything else; a superset of the indexed columns)."""
    if isinstance(node, TextTerm):
        return _like(papers.c.title if node.column == "title" else papers.c.data, node)
    if isinstance(node, TextAny):
        return sa.or_(*(_like_expr(p) for p in node.parts))
    assert isinstance(node, TextAll)
    clauses = [_like_expr(p) for p in node.parts] + [sa.not_(_like_expr(e)) for e in node.excluded]
    return sa.and_(*clauses)


def _paper_row(article: Article, data: str, digest: str, now: dt.datetime) -> dict[str, Any]:
    return {
        "pmid": int(article.pmid),
        "version": article.version,
        "status": article.status,
        "deleted": False,
        "title": article.title,
        "doi": article.doi,
        "year": article.year,
        "sort_date": article.sort_date,
        "date_revised": article.date_revised,
        "retracted": article.is_retracted,
        "data": data,
        "content_hash": digest,
        "updated_at": now,
        "fetched_at": now,
    }


def _engine(url: str) -> Engine:
    if url.startswith("sqlite:///") and not url.endswith(":memory:"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling defers BEGIN; take control so BEGIN IMMEDIATE is possible.
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return sa.create_engine(url, pool_pre_ping=True)


_OPEN_RETRY_SECONDS = 30.0


def _migrate(engine: Engine) -> None:
    """Bring the schema up to date. Processes that open one new SQLite file at the same moment (two daemons
    started together) can meet SQLite's lock-upgrade conflicts, which fail at once instead of waiting on
    the busy timeout: such an attempt is retried, with growing pauses, for up to half a minute."""
    from . import migrations  # local: alembic is only needed when the schema may change

    deadline = time.monotonic() + _OPEN_RETRY_SECONDS
    pause = 0.05
    while True:
        try:
            migrations.upgrade(engine)
            return
        except sa.exc.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 2.0)


def _sqlite_begin(conn: Connection) -> None:
    immediate = conn.get_execution_options().get("sqlite_begin_immediate")
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # let the "begin" listener issue BEGIN
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _lease_row(r: Any) -> LeaseRow:
    return LeaseRow(r.name, r.holder, r.host, r.pid, r.purpose, _utc(r.acquired_at), _utc(r.heartbeat_at),
                    _utc(r.expires_at))


def _utc(value: dt.datetime) -> dt.datetime:
    """SQLite hands datetimes back naive; everything we store is UTC."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig or exc).splitlines()[0]
    if "database is locked" in text:
        return "database is locked (another monitor process is writing; try again shortly)"
    return text


def _safe_url(url: str) -> str:
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unparsable URL)"


Tagger = Callable[[TagInput], Tagging]


def tagging_json(tagging: Tagging) -> str:
    """A tagging as ``paper_tagging.tagging`` stores it: its JSON without ``taxonomy_version``, which has a
    column of its own, so a new taxonomy that gives a paper the same tags and evidence only relabels it.
    (:class:`Tagging` serialises its fields in definition order; the version is the last.)"""
    text = orjson.dumps(tagging).decode("utf-8")
    return text[:text.rindex(',"taxonomy_version":')] + "}"


def stored_tagging(text: str, taxonomy_version: str | None) -> Tagging:
    """The :class:`Tagging` of a stored row (rows written before the version moved out of the JSON still
    carry it inside; the column wins)."""
    data = orjson.loads(text)
    data["taxonomy_version"] = taxonomy_version or data.get("taxonomy_version", "")
    return Tagging.from_dict(data)


def _tags_part(tagging_json: str) -> str:
    """The part of a stored tagging's JSON that :func:`_tag_rows` reads: :class:`Tagging` serialises its
    fields in definition order, so everything before ``"relevance"`` is the tag ids and the relevance flag
    (equal prefixes mean equal ``paper_tags`` rows, without decoding the evidence)."""
    return tagging_json[:tagging_json.find(',"relevance":')]


def _tags_head(tagging_json: str) -> dict[str, Any]:
    """The tag ids of a stored tagging, decoding only the JSON before its evidence when it has the usual
    layout (a tenth of the work), the whole of it otherwise."""
    try:
        head = orjson.loads(_tags_part(tagging_json) + "}")
        if "conditions" in head and "interventions" in head:
            return head  # type: ignore[no-any-return]
    except orjson.JSONDecodeError:
        pass
    return orjson.loads(tagging_json)  # type: ignore[no-any-return]


def _tag_rows(tagging: dict[str, Any]) -> set[tuple[str, str]]:
    """The ``paper_tags`` rows of a tagging (as stored JSON: no need to rebuild its evidence objects);
    ``gut_skin_relevant`` rides along as a pseudo-tag."""
    rows = {("condition", t) for t in tagging["conditions"]}
    rows |= {("intervention", t) for t in tagging["interventions"]}
    rows |= {("design", t) for t in tagging["designs"]}
    if tagging["gut_skin_relevant"]:
        rows.add(("relevance", "gut_skin_relevant"))
    return rows


@dataclass
class _Changes:
    examined: int = 0
    changed: int = 0
    rewritten: int = 0
    relabelled: int = 0
    added: collections.Counter[str] = field(default_factory=collections.Counter)
    removed: collections.Counter[str] = field(default_factory=collections.Counter)

    def merge(self, other: _Changes) -> None:
        self.examined += other.examined
        self.changed += other.changed
        self.rewritten += other.rewritten
        self.relabelled += other.relabelled
        self.added.update(other.added)
        self.removed.update(other.removed)

    def frozen(self) -> TagChanges:
        return TagChanges(examined=self.examined, changed=self.changed, rewritten=self.rewritten,
                          relabelled=self.relabelled, added=tuple(sorted(self.added.items())),
                          removed=tuple(sorted(self.removed.items())))
