"""The search index and the paper filters: the full-text index kept in the same transaction as the papers
(SQLite: an FTS5 table, migration 0005; PostgreSQL: a weighted tsvector, migration 0008 and
:mod:`.pgsearch`), ranked search with snippets, and the WHERE clauses of :class:`~monitor.types.PaperFilter`
that search and export share.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..errors import SearchSyntaxError, StorageError
from ..types import (
    SNIPPET_CLOSE,
    SNIPPET_OPEN,
    Article,
    PaperFilter,
    SearchHit,
    TextNode,
)
from . import pgsearch
from .base import StorageBase, chunks, midnight, reason
from .schema import paper_queries, paper_tags, papers, papers_fts

# bm25 column weights, in SEARCH_COLUMNS order: a title hit counts most, the abstract least (it is long
# and mentions everything in passing).
BM25_WEIGHTS = (10.0, 1.0, 4.0, 3.0, 2.0)
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


def index_row(article: Article, backend: str | None) -> dict[str, Any] | None:
    """The row ``backend``'s full-text index (``fts5``, ``tsvector``; None: no index) keeps of a paper:
    :func:`search_row`, its fields split into words for PostgreSQL (:func:`pgsearch.search_fields`)."""
    if backend is None:
        return None
    row = search_row(article)
    return pgsearch.search_fields(row) if backend == "tsvector" else row


def index_rows(conn: Connection, rows: Sequence[dict[str, Any]], stale: Sequence[str], *,
               backend: str | None) -> None:
    """(Re)index stored papers: ``rows`` from :func:`index_row`; ``stale``: PMIDs whose old row goes first
    (papers inserted in this transaction cannot be in the index yet)."""
    if backend is None:
        return
    if stale:
        unindex(conn, stale, backend=backend)
    if rows:
        conn.execute(pgsearch.paper_search.insert() if backend == "tsvector" else papers_fts.insert(), rows)


def unindex(conn: Connection, pmids: Sequence[str | int], *, backend: str | None) -> None:
    if backend == "tsvector":
        pgsearch.unindex(conn, [int(p) for p in pmids])
        return
    if backend is None:
        return
    for chunk in chunks([int(p) for p in pmids]):
        conn.execute(papers_fts.delete().where(papers_fts.c.rowid.in_(chunk)))


def filter_clauses(f: PaperFilter, pmid: Any = None, *, drive: bool = False) -> list[Any]:
    """WHERE clauses for ``f`` (deleted papers are the caller's business); ``pmid`` is the column the tag
    and query filters correlate with (default ``papers.pmid``). ``drive``: write them as ``pmid IN
    (SELECT …)`` so the tag index can drive a query that has no text (EXISTS, for the index-driven text
    search, only probes)."""
    pmid = papers.c.pmid if pmid is None else pmid

    def link(table: Any, *conds: Any) -> Any:
        if drive:
            return pmid.in_(sa.select(table.c.pmid).where(*conds))
        return sa.exists().where(table.c.pmid == pmid, *conds)

    where: list[Any] = []
    for kind, tags in (("condition", f.conditions), ("intervention", f.interventions), ("design", f.designs)):
        if tags:
            where.append(link(paper_tags, paper_tags.c.kind == kind, paper_tags.c.tag.in_(tags)))
    if f.relevant_only:
        where.append(link(paper_tags, paper_tags.c.kind == "relevance", paper_tags.c.tag == "gut_skin_relevant"))
    if f.queries:
        where.append(link(paper_queries, paper_queries.c.query_name.in_(f.queries)))
    if f.exclude_retracted:
        where.append(papers.c.retracted.is_(False))
    return where + _date_clauses(f)


def _date_clauses(f: PaperFilter) -> list[Any]:
    if f.date_field == "found":
        return ([papers.c.first_seen_at >= midnight(f.since)] if f.since else []) + (
            [papers.c.first_seen_at < midnight(f.until + dt.timedelta(days=1))] if f.until else [])
    return ([papers.c.sort_date >= f.since] if f.since else []) + (
        [papers.c.sort_date <= f.until] if f.until else [])


def _reads_papers(f: PaperFilter) -> bool:
    """Whether a filter needs columns of ``papers`` (and not only the tag and link tables)."""
    return bool(f.exclude_retracted or f.since or f.until)


def _has_link_filters(f: PaperFilter) -> bool:
    return bool(f.conditions or f.interventions or f.designs or f.relevant_only or f.queries)


@dataclass(frozen=True, slots=True)
class _Ranking:
    """The statements that rank matching PMIDs, run in order until the page is full (one, except for
    PostgreSQL's ranking tiers), and whether their hits get snippets from the index."""

    statements: list[sa.Select[Any]]
    snippets: bool


@dataclass(frozen=True, slots=True)
class _TextMatch:
    """A text query on one backend's index: the index table, its PMID column, and one (score, WHERE
    clauses) tier per statement, best tier first (score: lower is better)."""

    table: Any
    pmid: Any
    tiers: list[tuple[Any, list[Any]]]


def _text_match(text: TextNode, backend: str, sort: str) -> _TextMatch | None:
    """The index match of ``text`` (None: the text has nothing the index can match, so nothing matches)."""
    if backend == "tsvector":
        found = pgsearch.tiers(text, ranked=sort == "relevance")
        if found is None:
            return None
        return _TextMatch(pgsearch.paper_search, pgsearch.paper_search.c.pmid,
                          [(tier.score, tier.where) for tier in found])
    fts: Any = sa.literal_column("papers_fts")
    return _TextMatch(papers_fts, papers_fts.c.rowid,
                      [(sa.func.bm25(fts, *BM25_WEIGHTS), [fts.op("MATCH")(text.fts5())])])


def _ranking(text: TextNode | None, filters: PaperFilter, sort: str, backend: str) -> _Ranking | None:
    """The ranked-PMID statements of a search (see :meth:`SearchMixin.search`); None if nothing can match.

    A text search is ranked from the index alone when no filter and not the date order needs ``papers``
    (withdrawn papers are never indexed; tag and query filters correlate with the index's PMID): on a
    million papers the join to the wide ``papers`` rows is most of the cost of a broad query."""
    if text is None:
        where = filter_clauses(filters, drive=True)
        if not filters.include_deleted:
            where.append(papers.c.deleted.is_(False))
        # SQLite would walk ix_papers_sort_date and probe every paper; with tag or query filters it is far
        # cheaper to let the tag index pick the candidates and sort those ("+" keeps the planner off the
        # date index).
        date = (sa.literal_column("+papers.sort_date") if backend == "fts5" and _has_link_filters(filters)
                else papers.c.sort_date)
        return _Ranking([sa.select(papers.c.pmid.label("pmid"), sa.literal(0).label("score")).where(*where)
                         .order_by(date.desc().nulls_last(), papers.c.pmid.desc())], False)
    match = _text_match(text, backend, sort)
    if match is None:
        return None
    statements = []
    for score, match_where in match.tiers:
        if sort != "date" and not _reads_papers(filters):
            statements.append(sa.select(match.pmid.label("pmid"), score.label("score")).select_from(match.table)
                              .where(*filter_clauses(filters, match.pmid), *match_where)
                              .order_by(score, match.pmid.desc()))
            continue
        where = filter_clauses(filters, papers.c.pmid) + match_where
        if not filters.include_deleted:
            where.append(papers.c.deleted.is_(False))
        order = ([score, papers.c.pmid.desc()] if sort == "relevance"
                 else [papers.c.sort_date.desc().nulls_last(), papers.c.pmid.desc()])
        statements.append(sa.select(papers.c.pmid.label("pmid"), score.label("score"))
                          .select_from(match.table.join(papers, papers.c.pmid == match.pmid))
                          .where(*where).order_by(*order))
    return _Ranking(statements, True)


def matching_pmids(text: TextNode | None, filters: PaperFilter, backend: str | None) -> sa.Select[Any]:
    """The PMIDs a search for ``text`` with ``filters`` finds, unordered and unscored (every one, not a
    page): what result counts and facets are computed over, so they describe exactly the search's set.
    (PostgreSQL's ranking tiers are one statement when not ranked: the date order's.)"""
    if backend is None:
        raise StorageError("full-text search needs SQLite or PostgreSQL")
    sort = "relevance" if text is not None and backend == "fts5" else "date"
    ranking = _ranking(text, filters, sort, backend)
    if ranking is None:  # the text has nothing the index can match
        return sa.select(papers.c.pmid).where(sa.false())
    statement = ranking.statements[0]
    # correlate(None): used as ``x IN (this)`` inside a statement that reads ``papers`` too, it must stay a
    # statement of its own rather than be folded into the outer one's row.
    return (statement.order_by(None).with_only_columns(statement.selected_columns.pmid, maintain_column_froms=True)
            .correlate(None))


class SearchMixin(StorageBase):
    """Full-text search over the stored papers."""

    def rebuild_search_index(self) -> int:
        """Empty the full-text index and fill it again from the stored papers in one SQL statement (what
        migrations 0005 and 0008 do on upgrade; bench/search.py times it). Returns the number of papers
        indexed."""
        backend = self._search_backend
        if backend is None:
            return 0
        with self._tx("rebuilding the search index") as conn:
            if backend == "tsvector":
                return pgsearch.rebuild(conn)
            conn.exec_driver_sql("DELETE FROM papers_fts")
            conn.exec_driver_sql(FTS_REBUILD_SQL)
            return int(conn.exec_driver_sql("SELECT count(*) FROM papers_fts").scalar_one())

    def search(self, text: TextNode | None, filters: PaperFilter, *, sort: str = "relevance",
               limit: int | None = 20, offset: int = 0) -> list[SearchHit]:
        """Stored papers that match ``text`` (None: every paper) and pass ``filters``, best first.

        ``sort``: ``relevance`` (bm25 on SQLite, ts_rank in two tiers on PostgreSQL, the title weighted above
        keywords, MeSH, authors and abstract; lower scores are better; PMID breaks ties, newest first) or
        ``date`` (publication date, newest first). ``limit`` None: all; ``offset``: skip that many of the
        best first (a later page). Each hit of a text search has a snippet with the matched words between
        ``SNIPPET_OPEN`` and ``SNIPPET_CLOSE``. A query the index refuses raises
        :class:`~monitor.errors.SearchSyntaxError`."""
        from .papers import hydrate, paper_columns

        if sort not in ("relevance", "date"):
            raise ValueError(f"unknown sort {sort!r}")
        backend = self._search_backend
        if backend is None:
            raise StorageError(f"full-text search needs SQLite or PostgreSQL, not {self.engine.dialect.name}")
        ranking = _ranking(text, filters, sort, backend)
        if ranking is None:
            return []
        with self._tx("searching papers") as conn:
            ranked = _run_ranking(conn, ranking, limit, offset)
            if not ranked:
                return []
            pmids = [p for p, _ in ranked]
            rows: list[Any] = []
            for chunk in chunks(pmids):
                rows += conn.execute(paper_columns().where(papers.c.pmid.in_(chunk))).all()
            by_pmid = {p.article.pmid: p for p in hydrate(conn, rows)}
            snippets: dict[int, str] = {}
            if ranking.snippets and text is not None:
                snippets = (_pg_snippets(conn, text, pmids, by_pmid) if backend == "tsvector"
                            else _snippets(conn, text, pmids))
            if backend == "tsvector" and sort == "date" and text is not None:  # ranked after paging (see tiers)
                by_pmid_score = pgsearch.scores(conn, text, pmids)
                ranked = [(p, by_pmid_score.get(p, score)) for p, score in ranked]
        return [SearchHit(by_pmid[str(pmid)], score if text is not None else None, snippets.get(pmid))
                for pmid, score in ranked]


def _pg_snippets(conn: Connection, text: TextNode, pmids: list[int], papers_by_pmid: dict[str, Any]) -> dict[int, str]:
    """PostgreSQL's headlines for the hits, over their texts as written (the hydrated records')."""
    rows = {p: search_row(papers_by_pmid[str(p)].article) for p in pmids}
    return pgsearch.snippets(conn, text, pgsearch.snippet_texts(rows, text))


def _snippets(conn: Connection, text: TextNode, pmids: list[int]) -> dict[int, str]:
    """FTS5 snippets for the hits (a second statement, so only the hits pay for them): from the abstract
    when it has a match, else from whichever column matched best."""
    out: dict[int, str] = {}
    for chunk in chunks(pmids):
        marks = ", ".join("?" * len(chunk))
        for pmid, abstract, best in conn.exec_driver_sql(
            f"SELECT rowid, snippet(papers_fts, 1, ?, ?, '…', {SNIPPET_TOKENS}), "
            f"snippet(papers_fts, -1, ?, ?, '…', {SNIPPET_TOKENS}) "
            f"FROM papers_fts WHERE papers_fts MATCH ? AND rowid IN ({marks})",
            (SNIPPET_OPEN, SNIPPET_CLOSE, SNIPPET_OPEN, SNIPPET_CLOSE, text.fts5(), *chunk)):
            out[int(pmid)] = abstract if SNIPPET_OPEN in (abstract or "") else best
    return out


def _run_ranking(conn: Connection, ranking: _Ranking, limit: int | None, offset: int = 0) -> list[tuple[int, float]]:
    """(PMID, score) of the best ``limit`` matches after the first ``offset`` (None: all): each statement in
    turn, until enough. With several statements (ranking tiers) the first ``offset + limit`` are read and the
    page cut from them; a single statement pages in SQL."""
    if len(ranking.statements) == 1:
        q = ranking.statements[0].offset(offset or None)
        return _ranked(conn, q if limit is None else q.limit(limit))
    wanted_total = None if limit is None else offset + limit
    ranked: list[tuple[int, float]] = []
    for statement in ranking.statements:
        wanted = None if wanted_total is None else wanted_total - len(ranked)
        if wanted == 0:
            break
        ranked += _ranked(conn, statement if wanted is None else statement.limit(wanted))
    return ranked[offset:]


def _ranked(conn: Connection, q: sa.Select[Any]) -> list[tuple[int, float]]:
    try:
        return [(int(r.pmid), float(r.score)) for r in conn.execute(q)]
    except sa.exc.OperationalError as exc:
        if "fts5" in str(exc.orig).lower():
            raise SearchSyntaxError(f"the search index cannot run this query ({reason(exc)}); "
                                    "put unusual terms in double quotes") from exc
        raise
