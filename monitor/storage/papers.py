"""Papers and their revisions: PMID dedupe, the revision rule (:func:`decide`), the paper↔query links and
the status-change events a revision brings (retractions, errata …). Storing a batch also keeps each paper's
tagger input, search-index row and tags, through the conn-level functions of :mod:`.tags` and
:mod:`.search`, in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..types import (
    Article,
    Deletion,
    PaperFilter,
    ParsedItem,
    StatusChange,
    StoredMeta,
    StoredPaper,
    StoreOutcome,
    Tagger,
    Tagging,
    TagInput,
)
from . import search as search_index
from . import tags as tag_store
from .base import StorageBase, chunks, utc
from .schema import paper_events, paper_queries, paper_tagging, papers

# Correction RefTypes that become a status-change event when they first appear on a stored paper.
EVENT_KINDS = {
    "RetractionIn": "retraction",
    "ErratumIn": "erratum",
    "ExpressionOfConcernIn": "expression_of_concern",
    "UpdateIn": "update",
}
STATUS_EVENT_KINDS = ("retraction", "erratum", "expression_of_concern", "update")


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


def _strip_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list):
        return [_strip_nul(v) for v in value]
    if isinstance(value, dict):
        return {k: _strip_nul(v) for k, v in value.items()}
    return value


def encoded(article: Article) -> tuple[Article, str]:
    """The article as it is stored, with its JSON (:func:`article_json`). NUL characters are removed from
    every text field first: PostgreSQL's text cannot hold them (a batch with one would fail), and SQLite
    must store what PostgreSQL stores. Only a record that has one (its JSON has the escape ``\\u0000``) is
    rebuilt; for every other the JSON is encoded once, as before."""
    data = article_json(article)
    if "\\u0000" not in data:
        return article, data
    clean = Article.from_dict(_strip_nul(orjson.loads(data)))
    return clean, article_json(clean)


def paper_columns() -> sa.Select[Any]:
    """``papers`` rows joined with their tagging: what :func:`hydrate` reads."""
    return (sa.select(papers, paper_tagging.c.tagging, paper_tagging.c.taxonomy_version)
            .select_from(papers.outerjoin(paper_tagging, paper_tagging.c.pmid == papers.c.pmid)))


def hydrate(conn: Connection, rows: Sequence[Any]) -> list[StoredPaper]:
    """StoredPapers for :func:`paper_columns` rows, in the order given, with the queries that found each."""
    links: dict[int, list[tuple[str, dt.datetime]]] = {}
    for chunk in chunks([r.pmid for r in rows]):
        link_rows = conn.execute(
            sa.select(paper_queries).where(paper_queries.c.pmid.in_(chunk))
            .order_by(paper_queries.c.pmid, paper_queries.c.first_found_at, paper_queries.c.query_name))
        for link in link_rows:
            links.setdefault(link.pmid, []).append((link.query_name, utc(link.first_found_at)))
    return [
        StoredPaper(
            article=Article.from_dict(orjson.loads(r.data)),
            deleted=bool(r.deleted),
            first_seen_at=utc(r.first_seen_at),
            updated_at=utc(r.updated_at),
            queries=tuple(links.get(r.pmid, ())),
            tagging=tag_store.stored_tagging(r.tagging, r.taxonomy_version) if r.tagging else None,
        )
        for r in rows
    ]


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


def _event_rows(old: Article, new: Article, now: dt.datetime, run_id: int | None) -> list[dict[str, Any]]:
    """Status changes worth telling readers about: new retraction/erratum/… links, and the revision."""
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
    return rows


def notice_pmid(detail: str | None) -> str | None:
    """The PMID of the notice (retraction, erratum …) an event's detail names, if any."""
    try:
        data = json.loads(detail) if detail else {}
    except ValueError:  # a withdrawal's detail is the plain word "DeleteCitation"
        return None
    notice = data.get("pmid") if isinstance(data, dict) else None
    return str(notice) if notice else None


@dataclass(frozen=True, slots=True)
class PreparedPaper:
    """One article in every form its transaction may write, computed without the database."""

    article: Article  # NUL characters removed (:func:`encoded`)
    data: str  # the stored JSON
    digest: str  # content_hash(data)
    tag_input: str  # tags.tag_input_json
    index_row: dict[str, Any] | None  # its full-text index row (None: the database has no index)
    tagging: Tagging | None  # the tagger's verdict, when a tagger was given


@dataclass(frozen=True, slots=True)
class PreparedBatch:
    """A fetched batch ready to store (:meth:`PapersMixin.prepare_batch`). Preparing is most of the CPU a
    store costs this process and needs no connection, so a caller can prepare one batch while the one
    before is being stored (:mod:`monitor.pipeline`)."""

    papers: dict[str, PreparedPaper]  # by PMID; the last copy of a PMID in the batch wins
    deletions: list[str]


class PapersMixin(StorageBase):
    """Papers, revisions, links to queries, status-change events."""

    def known_pmids(self, pmids: Iterable[str]) -> set[str]:
        """The subset of ``pmids`` already stored (deleted ones included)."""
        found: set[str] = set()
        with self._tx("looking up PMIDs") as conn:
            for chunk in chunks([int(p) for p in pmids]):
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
        return self.store_prepared(self.prepare_batch(items, tagger=tagger), query=query, now=now, run_id=run_id)

    def prepare_batch(self, items: Sequence[ParsedItem], *, tagger: Tagger | None = None) -> PreparedBatch:
        """The batch in the forms :meth:`store_prepared` writes (JSON, digest, tagger input, index row and,
        with a ``tagger``, tags); touches no connection, so any thread may call it."""
        backend = self._search_backend
        prepared: dict[str, PreparedPaper] = {}
        for item in items:
            if isinstance(item, Article):
                article, data = encoded(item)
                prepared[article.pmid] = PreparedPaper(
                    article, data, content_hash(data), tag_store.tag_input_json(article),
                    search_index.index_row(article, backend),
                    tagger(TagInput.of(article)) if tagger is not None else None)
        return PreparedBatch(prepared, [d.pmid for d in items if isinstance(d, Deletion)])

    def store_prepared(self, batch: PreparedBatch, *, query: str | None, now: dt.datetime,
                       run_id: int | None = None) -> StoreOutcome:
        """:meth:`store_batch` of a prepared batch: one transaction."""
        records = batch.papers
        with self._tx("storing papers", immediate=True) as conn:
            old = _meta(conn, list(records) + batch.deletions, lock=self._postgres)
            new, updated, unchanged = _upsert_articles(conn, records, old, now, run_id)
            changed = [records[p] for p in new + updated]
            if changed:
                fresh = set(new)
                tag_store.save_tag_inputs(conn, {p.article.pmid: p.tag_input for p in changed}, fresh=fresh)
                search_index.index_rows(conn, [p.index_row for p in changed if p.index_row is not None],
                                        stale=[p.article.pmid for p in changed if p.article.pmid not in fresh],
                                        backend=self._search_backend)
            deleted = _mark_deleted(conn, batch.deletions, old, now, run_id)
            if deleted:
                search_index.unindex(conn, deleted, backend=self._search_backend)  # withdrawn papers are not searchable
            if query:
                _link(conn, list(records), query, now, run_id, fresh=new)
            taggings = {p.article.pmid: p.tagging for p in changed if p.tagging is not None}
            if taggings:
                tag_store.save_taggings(conn, taggings)
        return StoreOutcome(tuple(new), tuple(updated), tuple(unchanged), tuple(deleted))

    def link(self, pmids: Iterable[str], query: str, now: dt.datetime, run_id: int | None = None) -> int:
        """Record that ``query`` found these stored papers; returns how many links are new."""
        with self._tx("linking papers to a query", immediate=True) as conn:
            return _link(conn, list(pmids), query, now, run_id)

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
        where = search_index.filter_clauses(filters) if filters is not None else []
        while True:
            with self._tx("reading papers") as conn:
                q = paper_columns().where(papers.c.pmid > last, *where).order_by(papers.c.pmid).limit(batch)
                if not include_deleted:
                    q = q.where(papers.c.deleted.is_(False))
                if relevant_only:
                    q = q.where(paper_tagging.c.gut_skin_relevant.is_(True))
                rows = conn.execute(q).all()
                if not rows:
                    return
                found = hydrate(conn, rows)
            yield from found
            last = rows[-1].pmid

    def paper(self, pmid: str) -> StoredPaper | None:
        """One stored paper (withdrawn or not) with its queries and tagging; None when it is not stored."""
        with self._tx("reading a paper") as conn:
            found = hydrate(conn, conn.execute(paper_columns().where(papers.c.pmid == int(pmid))).all())
        return found[0] if found else None

    def events(self, pmid: str | None = None) -> list[tuple[str, str, dt.datetime]]:
        """``(pmid, kind, at)`` status-change events, oldest first."""
        with self._tx("reading events") as conn:
            q = sa.select(paper_events.c.pmid, paper_events.c.kind, paper_events.c.at).order_by(paper_events.c.id)
            if pmid is not None:
                q = q.where(paper_events.c.pmid == int(pmid))
            return [(str(r.pmid), r.kind, utc(r.at)) for r in conn.execute(q)]

    def linked_pmids(self, query: str) -> list[str]:
        """The PMIDs linked to one query (found by it in some run), ascending."""
        with self._tx("reading a query's papers") as conn:
            rows = conn.execute(sa.select(paper_queries.c.pmid).where(paper_queries.c.query_name == query)
                                .order_by(paper_queries.c.pmid)).scalars()
            return [str(p) for p in rows]

    def linked_query_names(self) -> set[str]:
        """Names of the queries that found at least one stored paper (also those no longer configured)."""
        with self._tx("reading query names") as conn:
            return set(conn.execute(sa.select(paper_queries.c.query_name).distinct()).scalars())

    def status_changes(self, kinds: Sequence[str] = STATUS_EVENT_KINDS) -> list[StatusChange]:
        """Retractions, errata, expressions of concern and updates that appeared on stored papers, oldest
        first (``kinds`` narrows them)."""
        with self._tx("reading status changes") as conn:
            rows = conn.execute(
                sa.select(paper_events.c.id, paper_events.c.pmid, paper_events.c.kind, paper_events.c.at,
                          paper_events.c.detail)
                .where(paper_events.c.kind.in_(list(kinds))).order_by(paper_events.c.at, paper_events.c.id))
            return [StatusChange(str(r.pmid), r.kind, utc(r.at), notice_pmid(r.detail), id=r.id) for r in rows]


def _upsert_articles(conn: Connection, records: dict[str, PreparedPaper], old: dict[str, StoredMeta],
                     now: dt.datetime, run_id: int | None) -> tuple[list[str], list[str], list[str]]:
    """Insert new papers, rewrite revised ones (logging their events), touch unchanged ones; returns the
    PMIDs of each."""
    new: list[str] = []
    updated: list[str] = []
    unchanged: list[str] = []
    inserts: list[dict[str, Any]] = []
    for pmid, prepared in records.items():
        article = prepared.article
        verdict = decide(old.get(pmid), article, prepared.digest)
        row = _paper_row(article, prepared.data, prepared.digest, now)
        if verdict == "new":
            inserts.append({**row, "first_seen_at": now})
            new.append(pmid)
        elif verdict == "updated":
            previous = stored_article(conn, pmid)
            conn.execute(papers.update().where(papers.c.pmid == int(pmid)).values(**row))
            conn.execute(paper_events.insert(), _event_rows(previous, article, now, run_id))
            updated.append(pmid)
        else:
            conn.execute(papers.update().where(papers.c.pmid == int(pmid)).values(fetched_at=now))
            unchanged.append(pmid)
    if inserts:
        conn.execute(papers.insert(), inserts)
    return new, updated, unchanged


def _mark_deleted(conn: Connection, pmids: list[str], old: dict[str, StoredMeta], now: dt.datetime,
                  run_id: int | None) -> list[str]:
    """Mark withdrawn papers (DeleteCitation) deleted, with an event; returns those newly marked."""
    deleted = []
    for pmid in pmids:
        meta = old.get(pmid)
        if meta is None or meta.deleted:
            continue  # never stored, or already marked: nothing to do
        conn.execute(papers.update().where(papers.c.pmid == int(pmid))
                     .values(deleted=True, updated_at=now, fetched_at=now))
        conn.execute(paper_events.insert().values(pmid=int(pmid), kind="deleted", at=now, run_id=run_id,
                                                  detail="DeleteCitation"))
        deleted.append(pmid)
    return deleted


def _link(conn: Connection, pmids: list[str], query: str, now: dt.datetime, run_id: int | None,
          fresh: Sequence[str] = ()) -> int:
    """``fresh``: papers inserted in this transaction. They cannot have links yet (the foreign key), so
    they are not looked up; on an ingest of new papers that saves a query per batch."""
    if not pmids:
        return 0
    existing: set[int] = set()
    ints = [int(p) for p in pmids]
    skip = {int(p) for p in fresh}
    for chunk in chunks([p for p in ints if p not in skip]):
        existing.update(conn.execute(
            sa.select(paper_queries.c.pmid)
            .where(paper_queries.c.query_name == query, paper_queries.c.pmid.in_(chunk))
        ).scalars())
    rows = [{"pmid": p, "query_name": query, "first_found_at": now, "run_id": run_id}
            for p in dict.fromkeys(ints) if p not in existing]
    if rows:
        conn.execute(paper_queries.insert(), rows)
    return len(rows)


def _meta(conn: Connection, pmids: list[str], *, lock: bool = False) -> dict[str, StoredMeta]:
    """What is stored of these papers. ``lock`` (PostgreSQL): lock their rows until the transaction ends,
    in PMID order, so that a concurrent retag (which locks its batch the same way, see
    :meth:`~monitor.storage.tags.TagsMixin.retag`) cannot tag a revision this batch replaces, and the
    two never wait for each other in a cycle. (SQLite's BEGIN IMMEDIATE already serialises writers.)"""
    out: dict[str, StoredMeta] = {}
    cols = (papers.c.pmid, papers.c.version, papers.c.date_revised, papers.c.content_hash, papers.c.deleted)
    for chunk in chunks(sorted({int(p) for p in pmids})):
        q = sa.select(*cols).where(papers.c.pmid.in_(chunk))
        if lock:
            q = q.order_by(papers.c.pmid).with_for_update(key_share=True)
        for r in conn.execute(q):
            out[str(r.pmid)] = StoredMeta(r.version, r.date_revised, r.content_hash, bool(r.deleted))
    return out


def stored_article(conn: Connection, pmid: str) -> Article:
    """The stored record of one paper (which must exist)."""
    data = conn.execute(sa.select(papers.c.data).where(papers.c.pmid == int(pmid))).scalar_one()
    return Article.from_dict(orjson.loads(data))
