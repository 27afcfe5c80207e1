"""The search index and the paper filters: the SQLite FTS5 index kept in the same transaction as the papers
(migration 0005), ranked search with snippets, and the WHERE clauses of :class:`~monitor.types.PaperFilter`
that search and export share. On PostgreSQL (no FTS5) terms match as substrings.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..errors import SearchSyntaxError
from ..types import (
    SNIPPET_CLOSE,
    SNIPPET_OPEN,
    Article,
    PaperFilter,
    SearchHit,
    TextAll,
    TextAny,
    TextNode,
    TextTerm,
)
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


def index_papers(conn: Connection, articles: Sequence[Article], fresh: set[str], *, fts: bool) -> None:
    """(Re)index stored papers in the full-text index (SQLite only; PostgreSQL matches at query time).
    ``fresh``: papers inserted in this transaction, which cannot be in the index yet."""
    if not fts:
        return
    stale = [int(a.pmid) for a in articles if a.pmid not in fresh]
    if stale:
        unindex(conn, stale, fts=fts)
    conn.execute(papers_fts.insert(), [search_row(a) for a in articles])


def unindex(conn: Connection, pmids: Sequence[str | int], *, fts: bool) -> None:
    if not fts:
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


@dataclass(frozen=True, slots=True)
class _Ranking:
    """The statement that ranks matching PMIDs, and whether its hits get FTS5 snippets."""

    statement: sa.Select[Any]
    snippets: bool


def _fts_ranking(text: TextNode, filters: PaperFilter, sort: str) -> tuple[Any, Any, list[Any], list[Any]] | None:
    """Source, score, WHERE and ORDER BY of a search ranked from the FTS5 index alone, or None when a
    filter or the date order needs ``papers`` joined. Withdrawn papers are never indexed, tag and query
    filters correlate with the index rowid: on a million papers the join to the wide ``papers`` rows is
    most of the cost of a broad query."""
    if sort == "date" or _reads_papers(filters):
        return None
    pmid = papers_fts.c.rowid
    score = sa.func.bm25(sa.literal_column("papers_fts"), *BM25_WEIGHTS)
    where = [*filter_clauses(filters, pmid), sa.literal_column("papers_fts").op("MATCH")(text.fts5())]
    order = [score, pmid.desc()] if sort == "relevance" else []
    return pmid, score, where, order


def _ranking(text: TextNode | None, filters: PaperFilter, sort: str, fts: bool) -> _Ranking:
    """The ranked-PMID statement of a search (see :meth:`SearchMixin.search`)."""
    use_fts = text is not None and fts
    if use_fts:
        assert text is not None
        alone = _fts_ranking(text, filters, sort)
        if alone is not None:
            pmid, score, where, order = alone
            return _Ranking(sa.select(pmid.label("pmid"), score.label("score")).select_from(papers_fts)
                            .where(*where).order_by(*order), True)
        where = filter_clauses(filters, papers.c.pmid)
        score = sa.func.bm25(sa.literal_column("papers_fts"), *BM25_WEIGHTS)
        source: Any = papers_fts.join(papers, papers.c.pmid == papers_fts.c.rowid)
        where.append(sa.literal_column("papers_fts").op("MATCH")(text.fts5()))
    else:
        where = filter_clauses(filters, drive=text is None)
        score = sa.literal(0)
        if text is not None:
            title_hits = [sa.case((_like(papers.c.title, t), 1), else_=0) for t in _positive_terms(text)]
            score = -sum(title_hits[1:], title_hits[0]) if title_hits else sa.literal(0)
            where.append(_like_expr(text))
        source = papers
    if not filters.include_deleted:
        where.append(papers.c.deleted.is_(False))
    if sort == "relevance" and text is not None:
        order = [score, papers.c.pmid.desc()]
    elif text is None and fts and _has_link_filters(filters):
        # SQLite would walk ix_papers_sort_date and probe every paper; with tag or query filters it is far
        # cheaper to let the tag index pick the candidates and sort those ("+" keeps the planner off the
        # date index).
        order = [sa.literal_column("+papers.sort_date").desc().nulls_last(), papers.c.pmid.desc()]
    else:
        order = [papers.c.sort_date.desc().nulls_last(), papers.c.pmid.desc()]
    statement = (sa.select(papers.c.pmid.label("pmid"), score.label("score")).select_from(source)
                 .where(*where).order_by(*order))
    return _Ranking(statement, use_fts)


def matching_pmids(text: TextNode | None, filters: PaperFilter, fts: bool) -> sa.Select[Any]:
    """The PMIDs a search for ``text`` with ``filters`` finds, unordered and unscored (every one, not a
    page): what result counts and facets are computed over, so they describe exactly the search's set."""
    statement = _ranking(text, filters, "date" if text is None else "relevance", fts).statement
    # correlate(None): used as ``x IN (this)`` inside a statement that reads ``papers`` too, it must stay a
    # statement of its own rather than be folded into the outer one's row.
    return (statement.order_by(None).with_only_columns(statement.selected_columns.pmid, maintain_column_froms=True)
            .correlate(None))


class SearchMixin(StorageBase):
    """Full-text search over the stored papers."""

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
               limit: int | None = 20, offset: int = 0) -> list[SearchHit]:
        """Stored papers that match ``text`` (None: every paper) and pass ``filters``, best first.

        ``sort``: ``relevance`` (bm25, title weighted above keywords, MeSH, authors and abstract; PMID
        breaks ties, newest first) or ``date`` (publication date, newest first). ``limit`` None: all;
        ``offset``: skip that many of the best first (a later page).
        On SQLite each hit has a snippet with the matched words between ``SNIPPET_OPEN`` and
        ``SNIPPET_CLOSE``. On PostgreSQL (no FTS5) terms are matched case-insensitively as substrings of the
        title and the stored record, title hits rank first, and ``snippet`` is None. A query FTS5 refuses
        raises :class:`~monitor.errors.SearchSyntaxError`."""
        from .papers import hydrate, paper_columns

        if sort not in ("relevance", "date"):
            raise ValueError(f"unknown sort {sort!r}")
        ranking = _ranking(text, filters, sort, self._fts)
        q = ranking.statement if limit is None else ranking.statement.limit(limit)
        if offset:
            q = q.offset(offset)
        with self._tx("searching papers") as conn:
            try:
                ranked = [(int(r.pmid), float(r.score)) for r in conn.execute(q)]
            except sa.exc.OperationalError as exc:
                if "fts5" in str(exc.orig).lower():
                    raise SearchSyntaxError(f"the search index cannot run this query ({reason(exc)}); "
                                            "put unusual terms in double quotes") from exc
                raise
            if not ranked:
                return []
            pmids = [p for p, _ in ranked]
            snippets = _snippets(conn, text, pmids) if ranking.snippets and text is not None else {}
            rows: list[Any] = []
            for chunk in chunks(pmids):
                rows += conn.execute(paper_columns().where(papers.c.pmid.in_(chunk))).all()
            by_pmid = {p.article.pmid: p for p in hydrate(conn, rows)}
        return [SearchHit(by_pmid[str(pmid)], score if text is not None else None, snippets.get(pmid))
                for pmid, score in ranked]


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
