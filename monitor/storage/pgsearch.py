"""PostgreSQL full-text search: the ``paper_search`` table (migration 0008) kept in the same transaction as
the papers, the user's query tree (:class:`~monitor.types.TextTerm` / ``TextAny`` / ``TextAll``) as a
``tsquery``, ranking with ``ts_rank_cd`` and snippets with ``ts_headline``.

How it matches what SQLite's FTS5 index does (``porter unicode61 remove_diacritics 2``):

- **Tokens.** Every run of characters that are not letters or digits separates words, in the papers (each
  field is stored as its words, :func:`normalize`; ``monitor_search_text()`` does the same in SQL for a
  rebuild) and in the query (:func:`words`), so ``GLP-1`` is the two words "glp 1" on both sides and the
  PostgreSQL parser never sees its special tokens (URLs, e-mail addresses, hyphenated compounds, signed
  numbers). Doing it in Python when a paper is stored is cheaper than PostgreSQL's regular expressions
  (they were 40% of the indexing time).
- **Folding and stemming.** The ``monitor_search`` configuration sends every word through ``unaccent``
  (Köbner = kobner) and an English Snowball stemmer *without* a stop-word list (FTS5 drops no words, so
  neither do we: a phrase with "of" in it means what it says); numbers are kept as written.
- **Fields.** A ``document`` tsvector per paper with weights: A title, B keywords, C MeSH descriptors, D
  abstract and author names (a tsvector has four labels for our five fields). ``title:``/``keyword:``/
  ``mesh:`` terms match their label; ``abstract:`` and ``author:`` terms match label D and are re-checked
  against that field's own text (:func:`exact_clause`). A second, small tsvector, ``head``, holds title,
  keywords and MeSH alone (the same words at the same positions as in ``document``).
- **Ranking**, in two tiers (:func:`tiers`): first the papers whose title, keywords or MeSH have a word of
  the query, ordered by ``ts_rank`` over ``head``; then those that have the words only in the abstract or
  author list, ordered by ``ts_rank`` over ``document``. Label weights 1.0 (title), 0.4 (keywords), 0.3
  (MeSH), 0.1 (abstract and authors) are the ratios of the bm25 column weights on SQLite (10, 4, 3, 1;
  authors 2 there), under which a title hit almost always outranks abstract mentions anyway. The tiers are
  what keeps ranking fast on a million papers: ranking reads a tsvector per matching paper, and ``head`` is
  a tenth the size of ``document``; the second tier is only read when the first has fewer papers than the
  page asks for. Scores are negated so that, as with bm25, lower is better; every first-tier score is below
  every second-tier one.
- **Snippets.** ``ts_headline`` over the abstract as written (else title, keywords and MeSH), with the
  match markers of :data:`~monitor.types.SNIPPET_OPEN` / ``SNIPPET_CLOSE``; the texts come from the hits'
  records, which the search reads anyway.

Everything the user typed reaches PostgreSQL as a bound parameter; a query word is letters and digits
only, so it can never be tsquery syntax.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..types import SNIPPET_CLOSE, SNIPPET_OPEN, TextAll, TextAny, TextNode, TextTerm
from .base import chunks

CONFIG = "monitor_search"
GIN_INDEXES = {"ix_paper_search_document": "document", "ix_paper_search_head": "head"}
LABELS = {"title": "A", "keywords": "B", "mesh": "C", "abstract": "D", "authors": "D"}
SHARED_LABEL = {"abstract", "authors"}  # fields whose label another field shares: re-checked on their text
RANK_WEIGHTS = "{0.1, 0.3, 0.4, 1.0}"  # ts_rank weights of labels D, C, B, A
# ts_rank normalisation: 32 scales a rank into [0, 1) (so the tiers cannot overlap); with 1 the document's
# rank is also divided by 1 + log(its length), so long abstracts do not win by length alone.
HEAD_NORMALIZATION = 32
DOCUMENT_NORMALIZATION = 1 | 32
HEADLINE_OPTIONS = (f"StartSel={SNIPPET_OPEN}, StopSel={SNIPPET_CLOSE}, MaxWords=24, MinWords=12, "
                    "ShortWord=2, MaxFragments=1, FragmentDelimiter=\" … \"")

paper_search = sa.table(
    "paper_search", sa.column("pmid"), sa.column("title"), sa.column("abstract"), sa.column("keywords"),
    sa.column("mesh"), sa.column("authors"), sa.column("head"), sa.column("document"))

_WORD = re.compile(r"[^\W_]+")


def words(text: str) -> list[str]:
    """The words of a query term or a field: runs of letters and digits, as PostgreSQL's ``[[:alnum:]]``
    draws them (Python's ``\\w`` also counts superscripts, subscripts and fractions — ``²``, ``₂``, ``½``,
    Unicode's "other numbers" — which PostgreSQL does not)."""
    found = _WORD.findall(text)
    if text.isascii():
        return found
    return [part for word in found for part in _split_other_numbers(word)]


def _split_other_numbers(word: str) -> list[str]:
    if word.isascii():
        return [word]
    return "".join(" " if unicodedata.category(ch) == "No" else ch for ch in word).split()


def normalize(text: str) -> str:
    """A field as ``paper_search`` stores it: its words, one space apart (``monitor_search_text()``)."""
    return " ".join(words(text))


def _operand(term: TextTerm, weighted: bool) -> str | None:
    """One term as tsquery syntax: a word, or a phrase of words joined by ``<->``; the last word open to
    completion for a prefix; restricted to the field's label. None if nothing in it is a word."""
    found = words(term.text)
    if not found:
        return None
    label = LABELS[term.column] if weighted and term.column else ""
    parts = [f"'{w}':{label}" if label else f"'{w}'" for w in found]
    if term.prefix:
        parts[-1] = f"'{found[-1]}':*{label}"
    return parts[0] if len(parts) == 1 else "(" + " <-> ".join(parts) + ")"


def tsquery(node: TextNode, *, weighted: bool = True, relaxed: bool = False) -> str | None:
    """The query tree as ``to_tsquery`` text (None: nothing to search). ``weighted``: field terms keep their
    label (False for headlines, which read one field's plain text). ``relaxed``: leave out exclusions that
    involve an ``abstract:`` or ``author:`` term, whose label is shared — the index query must then be a
    superset of the exact match, and :func:`exact_clause` does the rest."""
    if isinstance(node, TextTerm):
        return _operand(node, weighted)
    if isinstance(node, TextAny):
        alternatives = [q for q in (tsquery(p, weighted=weighted, relaxed=relaxed) for p in node.parts) if q]
        return "(" + " | ".join(alternatives) + ")" if alternatives else None
    required = [q for q in (tsquery(p, weighted=weighted, relaxed=relaxed) for p in node.parts) if q]
    excluded = [q for e in node.excluded if not (relaxed and needs_recheck(e))
                for q in [tsquery(e, weighted=weighted, relaxed=relaxed)] if q]
    if not required:
        return None
    return "(" + " & ".join(required + [f"!{q}" for q in excluded]) + ")"


def _has_column(node: TextNode, column: str) -> bool:
    if isinstance(node, TextTerm):
        return node.column == column
    return any(_has_column(p, column) for p in (*node.parts, *(node.excluded if isinstance(node, TextAll) else ())))


def needs_recheck(node: TextNode) -> bool:
    """Whether the tree has a term on a field that shares its label (abstract, authors)."""
    if isinstance(node, TextTerm):
        return node.column in SHARED_LABEL
    return any(needs_recheck(p) for p in (*node.parts, *(node.excluded if isinstance(node, TextAll) else ())))


def _query(text: str) -> Any:
    return sa.func.to_tsquery(sa.literal_column(f"'{CONFIG}'::regconfig"), sa.literal(text))


def _field_vector(column: str) -> Any:
    return sa.func.to_tsvector(sa.literal_column(f"'{CONFIG}'::regconfig"), getattr(paper_search.c, column))


def exact_clause(node: TextNode) -> Any:
    """The exact match of a tree with ``abstract:``/``author:`` terms, as SQL: those terms against their own
    field's words, everything else against the document. Runs only on the rows the index query found."""
    if isinstance(node, TextTerm):
        text = _operand(node, weighted=node.column not in SHARED_LABEL)
        if text is None:
            return sa.false()
        if node.column in SHARED_LABEL:
            assert node.column is not None
            return _field_vector(node.column).bool_op("@@")(_query(text))
        return paper_search.c.document.bool_op("@@")(_query(text))
    if isinstance(node, TextAny):
        return sa.or_(*(exact_clause(p) for p in node.parts))
    return sa.and_(*(exact_clause(p) for p in node.parts), *(sa.not_(exact_clause(e)) for e in node.excluded))


@dataclass(frozen=True, slots=True)
class Tier:
    """One ranked statement of a search on ``paper_search``: its WHERE clauses and score (lower is better)."""

    where: list[Any]
    score: Any


def _head_terms(node: TextNode) -> list[TextTerm]:
    """The terms a match must or may contain (not the excluded ones) that can be in ``head``: unrestricted,
    ``title:``, ``keyword:`` or ``mesh:`` terms."""
    if isinstance(node, TextTerm):
        return [] if node.column in SHARED_LABEL else [node]
    return [t for part in node.parts for t in _head_terms(part)]


def _rank(vector: Any, query: Any, normalization: int) -> Any:
    return sa.func.ts_rank(sa.literal_column(f"'{RANK_WEIGHTS}'::float4[]"), vector, query, normalization)


def tiers(node: TextNode, *, ranked: bool = True) -> list[Tier] | None:
    """The statements that find ``node`` in ``paper_search``, in rank order (see the module docstring), or
    None when the text has no word left (it matches nothing). ``ranked`` False (sorting by date): one
    statement with every match and no score (0: ranking every match of a broad word would read all their
    documents; :func:`scores` ranks the page afterwards)."""
    text = tsquery(node, relaxed=True)
    if text is None:
        return None
    query = _query(text)
    matches = paper_search.c.document.bool_op("@@")(query)
    exact = [exact_clause(node)] if needs_recheck(node) else []
    rest = Tier([matches, *exact], -_rank(paper_search.c.document, query, DOCUMENT_NORMALIZATION))
    operands = [op for op in (_operand(t, weighted=True) for t in _head_terms(node)) if op]
    if not ranked:
        return [Tier(rest.where, sa.literal(0.0))]
    if not operands:
        return [rest]
    head_query = _query(" | ".join(operands))
    in_head = paper_search.c.head.bool_op("@@")(head_query)
    # One term (a word, phrase or prefix) found in head is found in the document: head is its first part
    # (each of its fields cut at 1,000 characters, migration 0008: a phrase would have to span such a cut).
    first_where = [in_head] if isinstance(node, TextTerm) else [matches, in_head]
    first = Tier([*first_where, *exact], -1 - _rank(paper_search.c.head, head_query, HEAD_NORMALIZATION))
    return [first, Tier([*rest.where, sa.not_(in_head)], rest.score)]


def scores(conn: Connection, node: TextNode, pmids: list[int]) -> dict[int, float]:
    """The document rank (as :func:`tiers` scores its second tier) of each of these papers."""
    text = tsquery(node, relaxed=True)
    if text is None:
        return {}
    score = -_rank(paper_search.c.document, _query(text), DOCUMENT_NORMALIZATION)
    out: dict[int, float] = {}
    for chunk in chunks(pmids):
        out.update((int(p), float(v)) for p, v in conn.execute(
            sa.select(paper_search.c.pmid, score).where(paper_search.c.pmid.in_(chunk))))
    return out


def snippets(conn: Connection, node: TextNode, texts: dict[int, tuple[str, str]]) -> dict[int, str]:
    """``ts_headline`` snippets for the hits, from their texts as written (pmid → (abstract, title ·
    keywords · MeSH)): from the abstract when it has a match, else from the rest. One statement; the texts
    go as two arrays."""
    text = tsquery(node, weighted=False)
    if text is None or not texts:
        return {}
    query = _query(text)
    config: Any = sa.literal_column(f"'{CONFIG}'::regconfig")
    options = sa.literal(HEADLINE_OPTIONS)
    pmids = list(texts)
    rows = sa.func.unnest(sa.literal([p for p in pmids], sa.ARRAY(sa.BigInteger)),
                          sa.literal([texts[p][0] for p in pmids], sa.ARRAY(sa.Text)),
                          sa.literal([texts[p][1] for p in pmids], sa.ARRAY(sa.Text))
                          ).table_valued("pmid", "abstract", "rest").render_derived()
    first = sa.func.ts_headline(config, rows.c.abstract, query, options)
    statement = sa.select(rows.c.pmid, first, sa.case((sa.func.strpos(first, SNIPPET_OPEN) > 0, None),
                                                      else_=sa.func.ts_headline(config, rows.c.rest, query, options)))
    out: dict[int, str] = {}
    for pmid, abstract, other in conn.execute(statement):
        out[int(pmid)] = abstract if other is None or SNIPPET_OPEN in (abstract or "") else other
    return out


def snippet_texts(rows: dict[int, dict[str, str]], node: TextNode) -> dict[int, tuple[str, str]]:
    """The texts :func:`snippets` reads, from each hit's index row as written (search_row): the abstract,
    and title · keywords · MeSH (· authors, only when the query asks for an author: the list can hold
    thousands of names, and ts_headline parses all it is given)."""
    fields = ("title", "keywords", "mesh", "authors") if _has_column(node, "authors") else ("title", "keywords",
                                                                                             "mesh")
    return {pmid: (row["abstract"], " · ".join(row[f] for f in fields if row[f])) for pmid, row in rows.items()}


def search_fields(row: dict[str, Any]) -> dict[str, Any]:
    """A :func:`monitor.storage.search.search_row` as ``paper_search`` takes it: each field's words one
    space apart. The tsvectors are generated columns: PostgreSQL computes them when the row is inserted."""
    return {"pmid": row["rowid"], **{k: normalize(v) for k, v in row.items() if k != "rowid"}}


def unindex(conn: Connection, pmids: Sequence[int]) -> None:
    for chunk in chunks(list(pmids)):
        conn.execute(paper_search.delete().where(paper_search.c.pmid.in_(chunk)))


# The index rows of every stored, not withdrawn paper, from the stored JSON (must give what search_row()
# gives: tests/test_search.py checks it on every corpus record). The text of migration 0008 is a frozen copy.
REBUILD_SQL = """
INSERT INTO paper_search (pmid, title, abstract, keywords, mesh, authors)
SELECT p.pmid, monitor_search_text(p.title),
  monitor_search_text(coalesce((SELECT string_agg(s.value->>'text', E'\\n' ORDER BY s.n)
            FROM jsonb_array_elements(d.j->'abstract') WITH ORDINALITY AS s(value, n)), '')),
  monitor_search_text(coalesce((SELECT string_agg(k.value, '; ' ORDER BY k.n)
            FROM jsonb_array_elements_text(d.j->'keywords') WITH ORDINALITY AS k(value, n)), '')),
  monitor_search_text(coalesce((SELECT string_agg(m.value->>'descriptor', '; ' ORDER BY m.n)
            FROM jsonb_array_elements(d.j->'mesh') WITH ORDINALITY AS m(value, n)), '')),
  monitor_search_text(coalesce((SELECT string_agg(
              CASE WHEN coalesce(a.value->>'collective_name', '') <> '' THEN a.value->>'collective_name'
                   ELSE coalesce(nullif(trim(coalesce(a.value->>'fore_name', '') || ' ' ||
                                             coalesce(a.value->>'last_name', '')), ''),
                                 a.value->>'initials', '')
              END, '; ' ORDER BY a.n)
            FROM jsonb_array_elements(d.j->'authors') WITH ORDINALITY AS a(value, n)), ''))
FROM papers AS p CROSS JOIN LATERAL (SELECT p.data::jsonb AS j) AS d
WHERE NOT p.deleted
"""



def rebuild(conn: Connection) -> int:
    """Empty ``paper_search`` and fill it from the stored papers; the GIN indexes are dropped for the fill
    and built again at once (faster than growing them row by row). Returns the number of papers indexed."""
    conn.exec_driver_sql("SET LOCAL maintenance_work_mem = '256MB'")
    for index in GIN_INDEXES:
        conn.exec_driver_sql(f"DROP INDEX IF EXISTS {index}")
    conn.exec_driver_sql("TRUNCATE paper_search")
    conn.exec_driver_sql(REBUILD_SQL)
    for index, column in GIN_INDEXES.items():
        conn.exec_driver_sql(f"CREATE INDEX {index} ON paper_search USING gin ({column})")
    conn.exec_driver_sql("ANALYZE paper_search")  # the planner's word frequencies
    return int(conn.exec_driver_sql("SELECT count(*) FROM paper_search").scalar_one())
