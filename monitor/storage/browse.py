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


def _pair(first: str, second: str) -> tuple[Any, Any, Any]:
    """Two aliases of ``paper_tags`` on the same paper (kinds ``first`` and ``second``) and their join."""
    a, b = paper_tags.alias(first), paper_tags.alias(second)
    return a, b, a.join(b, sa.and_(b.c.pmid == a.c.pmid, b.c.kind == second))


class BrowseMixin(StorageBase):
    """The web app's reads (see the module docstring)."""

    def data_version(self) -> int | None:
        """A number that changes whenever another connection commits to the database, for caches of the
        reads above: SQLite's ``PRAGMA data_version``, asked on a connection kept for it alone (its value
        only moves for *other* connections' commits, and a read-only web server writes nothing). None
        where the database has no such counter (PostgreSQL): callers then bound a cached value's age."""
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
            return _count(conn, matching_pmids(text, filters, self._fts))

    def facets(self, text: TextNode | None, filters: PaperFilter) -> Facets:
        """The result count of a search and how many of its papers carry each condition, intervention and
        design tag."""
        scope = matching_pmids(text, filters, self._fts)
        with self._tx("counting facets") as conn:
            counts = _tag_counts(conn, scope, TAG_KINDS)
            total = _count(conn, scope)
        return Facets(total, counts["condition"], counts["intervention"], counts["design"])

    def evidence_map(self, filters: PaperFilter) -> EvidenceMap:
        """Conditions × interventions over the papers that pass ``filters``: papers per pair and, per
        pair, per design; papers per condition and per intervention."""
        scope = matching_pmids(None, filters, self._fts)
        c, i, pair = _pair("condition", "intervention")
        d = paper_tags.alias("design")
        base = [c.c.kind == "condition", c.c.pmid.in_(scope)]
        with self._tx("building the evidence map") as conn:
            cells = conn.execute(sa.select(c.c.tag.label("c"), i.c.tag.label("i"), sa.func.count().label("n"))
                                 .select_from(pair).where(*base).group_by(c.c.tag, i.c.tag)).all()
            designs: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
            for r in conn.execute(
                    sa.select(c.c.tag.label("c"), i.c.tag.label("i"), d.c.tag.label("d"), sa.func.count().label("n"))
                    .select_from(pair.join(d, sa.and_(d.c.pmid == c.c.pmid, d.c.kind == "design")))
                    .where(*base).group_by(c.c.tag, i.c.tag, d.c.tag)):
                designs[(r.c, r.i)][r.d] = int(r.n)
            totals = _tag_counts(conn, scope, ("condition", "intervention"))
            papers_in_scope = _count(conn, scope)
        return EvidenceMap(
            papers=papers_in_scope, conditions=totals["condition"], interventions=totals["intervention"],
            cells=tuple(MapCell(r.c, r.i, int(r.n), designs.get((r.c, r.i), {}))
                        for r in sorted(cells, key=lambda r: (r.c, r.i))))

    def trend_counts(self, kind: str, filters: PaperFilter) -> TrendCounts:
        """Papers per month for each tag of ``kind`` (condition | intervention | design), by the date
        ``filters.date_field`` names (the UTC month first found, or the publication month); papers
        without a publication date are left out of a publication-date trend."""
        if kind not in TAG_KINDS:
            raise ValueError(f"unknown tag kind {kind!r}")
        column: Any = papers.c.first_seen_at if filters.date_field == "found" else papers.c.sort_date
        if self._postgres and filters.date_field == "found":
            column = sa.func.timezone("UTC", column)  # EXTRACT reads a timestamptz in the session's zone
        year, month = sa.extract("year", column).label("y"), sa.extract("month", column).label("m")
        scope = matching_pmids(None, filters, self._fts)
        dated = [papers.c.pmid.in_(scope), column.is_not(None)]
        with self._tx("counting papers per month") as conn:
            per_tag = conn.execute(
                sa.select(paper_tags.c.tag, year, month, sa.func.count().label("n"))
                .select_from(paper_tags.join(papers, papers.c.pmid == paper_tags.c.pmid))
                .where(paper_tags.c.kind == kind, *dated).group_by(paper_tags.c.tag, year, month)).all()
            total = conn.execute(sa.select(year, month, sa.func.count().label("n")).where(*dated)
                                 .group_by(year, month)).all()
        by_tag: dict[str, dict[str, int]] = defaultdict(dict)
        for r in per_tag:
            by_tag[r.tag][f"{int(r.y):04d}-{int(r.m):02d}"] = int(r.n)
        return TrendCounts(dict(by_tag), {f"{int(r.y):04d}-{int(r.m):02d}": int(r.n) for r in total})
