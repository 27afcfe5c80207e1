"""What the web app reads: one paper with its history, the newest papers by when they were found, result
counts and facet counts of a search, the evidence map (conditions × interventions with their designs)
and monthly trend counts.

Every count is computed over :func:`.search.matching_pmids`, the very statement a search ranks, so a facet
or a map cell counts exactly the papers a search with the same filters lists. Plain SQLAlchemy Core that
runs on PostgreSQL as well (the month of a date comes from ``EXTRACT``); only a text search uses the SQLite
full-text index, as :mod:`.search` does.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..types import (
    EvidenceMap,
    Facets,
    MapCell,
    PaperDetail,
    PaperFilter,
    StatusChange,
    StoredPaper,
    TextNode,
    TrendCounts,
)
from .base import StorageBase, chunks, utc
from .papers import hydrate, notice_pmid, paper_columns
from .schema import paper_events, paper_tags, papers
from .search import filter_clauses, matching_pmids

TAG_KINDS = ("condition", "intervention", "design")


def _tag_counts(conn: Connection, scope: sa.Select[Any], kinds: Iterable[str]) -> dict[str, dict[str, int]]:
    """kind → tag → papers in ``scope`` carrying it (the largest first, then by id)."""
    q = (sa.select(paper_tags.c.kind, paper_tags.c.tag, sa.func.count().label("n"))
         .where(paper_tags.c.kind.in_(list(kinds)), paper_tags.c.pmid.in_(scope))
         .group_by(paper_tags.c.kind, paper_tags.c.tag)
         .order_by(sa.func.count().desc(), paper_tags.c.tag))
    out: dict[str, dict[str, int]] = {k: {} for k in kinds}
    for r in conn.execute(q):
        out[r.kind][r.tag] = int(r.n)
    return out


def _count(conn: Connection, scope: sa.Select[Any]) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(scope.subquery())).scalar_one())


def _scope_rows(filters: PaperFilter, kinds: Iterable[str], *extra: Any) -> sa.Select[Any]:
    """One row per (paper passing ``filters``, tag of ``kinds``) — a paper without such a tag once, with
    ``tag`` None — plus ``extra`` columns of ``papers``. The filter is :func:`.search.filter_clauses`, as
    :func:`.search.matching_pmids` applies it to a search without text; reading the tags in the same
    statement lets SQLite walk the narrow ``ix_papers_search`` index and the tag primary key once (a
    tenth of the time of a second statement over ``pmid IN (…)``)."""
    where = filter_clauses(filters, drive=True)
    if not filters.include_deleted:
        where.append(papers.c.deleted.is_(False))
    joined = papers.outerjoin(paper_tags, sa.and_(paper_tags.c.pmid == papers.c.pmid,
                                                  paper_tags.c.kind.in_(list(kinds))))
    return sa.select(papers.c.pmid, paper_tags.c.kind, paper_tags.c.tag, *extra).select_from(joined).where(*where)


class BrowseMixin(StorageBase):
    """The web app's reads (see the module docstring)."""

    def data_version(self) -> int | None:
        """A number that changes whenever another connection commits to the database, for caches of the
        reads above: SQLite's ``PRAGMA data_version``, asked on a connection kept for it alone (its value
        only moves for *other* connections' commits, and a read-only web server writes nothing). On
        PostgreSQL the server's next transaction id (``pg_snapshot_xmax``): every writing transaction on
        the server moves it, read-only ones never do, so it may change without a change here but never
        misses one. None for another database: callers then bound a cached value's age."""
        if self._postgres:
            with self._tx("checking for changes") as conn:
                return int(conn.exec_driver_sql("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
                           .scalar_one())
        if not self._fts:
            return None
        with self._errors("checking for changes"), self._watch_lock:
            if self._watch is None:
                self._watch = self.engine.connect()
            try:
                return int(self._watch.exec_driver_sql("PRAGMA data_version").scalar_one())
            finally:
                self._watch.rollback()  # never hold a read transaction open between checks

    def paper_detail(self, pmid: str) -> PaperDetail | None:
        """One stored paper (withdrawn ones too) with every event of its history, oldest first; None if
        the PMID is not stored."""
        with self._tx("reading a paper") as conn:
            rows = conn.execute(paper_columns().where(papers.c.pmid == int(pmid))).all()
            if not rows:
                return None
            (paper,) = hydrate(conn, rows)
            events = conn.execute(
                sa.select(paper_events.c.id, paper_events.c.kind, paper_events.c.at, paper_events.c.detail)
                .where(paper_events.c.pmid == int(pmid)).order_by(paper_events.c.at, paper_events.c.id))
            history = tuple(StatusChange(pmid, e.kind, utc(e.at), notice_pmid(e.detail), id=e.id,
                                         title=paper.article.title, doi=paper.article.doi) for e in events)
        return PaperDetail(paper, history)

    def recent_papers(self, filters: PaperFilter, *, limit: int, offset: int = 0) -> list[StoredPaper]:
        """Papers that pass ``filters``, the most recently found first (PMID breaks ties, newest first)."""
        where = filter_clauses(filters, drive=True)
        if not filters.include_deleted:
            where.append(papers.c.deleted.is_(False))
        ranked = (sa.select(papers.c.pmid).where(*where)
                  .order_by(papers.c.first_seen_at.desc(), papers.c.pmid.desc()).limit(limit).offset(offset))
        with self._tx("listing recent papers") as conn:
            pmids = list(conn.execute(ranked).scalars())
            rows: list[Any] = []
            for chunk in chunks(pmids):
                rows += conn.execute(paper_columns().where(papers.c.pmid.in_(chunk))).all()
            by_pmid = {p.article.pmid: p for p in hydrate(conn, rows)}
        return [by_pmid[str(p)] for p in pmids]

    def count_matching(self, text: TextNode | None, filters: PaperFilter) -> int:
        """How many papers a search for ``text`` with ``filters`` finds (all of them, not a page)."""
        with self._tx("counting papers") as conn:
            return _count(conn, matching_pmids(text, filters, self._search_backend))

    def facets(self, text: TextNode | None, filters: PaperFilter) -> Facets:
        """The result count of a search and how many of its papers carry each condition, intervention and
        design tag."""
        scope = matching_pmids(text, filters, self._search_backend)
        with self._tx("counting facets") as conn:
            counts = _tag_counts(conn, scope, TAG_KINDS)
            total = _count(conn, scope)
        return Facets(total, counts["condition"], counts["intervention"], counts["design"])

    def evidence_map(self, filters: PaperFilter) -> EvidenceMap:
        """Conditions × interventions over the papers that pass ``filters``: papers per pair and, per
        pair, per design; papers per condition and per intervention. (One read of the papers' tag rows,
        counted here: on SQLite a fraction of the time of GROUP BY self-joins.)"""
        tags: dict[int, list[tuple[str, str]]] = defaultdict(list)
        with self._tx("building the evidence map") as conn:
            for pmid, kind, tag in conn.execute(_scope_rows(filters, TAG_KINDS)).all():
                rows = tags[pmid]
                if tag is not None:
                    rows.append((kind, tag))
        cells: dict[tuple[str, str], int] = defaultdict(int)
        designs: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
        conditions: dict[str, int] = defaultdict(int)
        interventions: dict[str, int] = defaultdict(int)
        for rows in tags.values():
            cs = [t for k, t in rows if k == "condition"]
            ins = [t for k, t in rows if k == "intervention"]
            ds = [t for k, t in rows if k == "design"]
            for c in cs:
                conditions[c] += 1
            for i in ins:
                interventions[i] += 1
            for c in cs:
                for i in ins:
                    cells[(c, i)] += 1
                    for d in ds:
                        designs[(c, i)][d] += 1
        return EvidenceMap(
            papers=len(tags), conditions=dict(conditions), interventions=dict(interventions),
            cells=tuple(MapCell(c, i, n, dict(designs.get((c, i), {}))) for (c, i), n in sorted(cells.items())))

    def trend_counts(self, kind: str, filters: PaperFilter) -> TrendCounts:
        """Papers per month for each tag of ``kind`` (condition | intervention | design), by the date
        ``filters.date_field`` names (the UTC month first found, or the publication month); papers
        without a publication date are left out of a publication-date trend. (PostgreSQL's EXTRACT reads
        a timestamptz in the session's zone: the found date is converted to UTC first.)"""
        if kind not in TAG_KINDS:
            raise ValueError(f"unknown tag kind {kind!r}")
        column: Any = papers.c.first_seen_at if filters.date_field == "found" else papers.c.sort_date
        dated: Any = sa.func.timezone("UTC", column) if self._postgres and filters.date_field == "found" else column
        # Year and month as numbers (EXTRACT; on SQLite strftime): no date objects to build per row.
        q = _scope_rows(filters, (kind,), sa.extract("year", dated), sa.extract("month", dated)).where(
            column.is_not(None))
        by_tag: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        total: dict[str, int] = defaultdict(int)
        seen: set[int] = set()
        with self._tx("counting papers per month") as conn:
            for pmid, _, tag, year, month in conn.execute(q).all():
                key = f"{int(year):04d}-{int(month):02d}"
                if pmid not in seen:
                    seen.add(pmid)
                    total[key] += 1
                if tag is not None:
                    by_tag[tag][key] += 1
        return TrendCounts({t: dict(m) for t, m in by_tag.items()}, dict(total))
