"""Search: the user's query syntax → a safe index query, the filters, and the search output formats.

:func:`parse_query` turns forgiving user text into a tree of :class:`~monitor.types.TextTerm` /
``TextAny`` / ``TextAll``; every word reaches FTS5 as a quoted string, so nothing typed is index syntax.
Understood: words (all must appear), ``"exact phrases"``, ``OR`` between alternatives, ``-word`` or
``NOT word`` to exclude, ``probio*`` prefixes, ``( … )`` grouping and ``title:``/``abstract:``/
``keyword:``/``mesh:``/``author:`` to look in one field. ``GLP-1``, ``IL-17``, ``TNF-α`` are matched as
written (the index splits them into "glp 1" the same way it split the papers). Matching is
case-insensitive, ignores accents (ö = o) and stems English words (probiotic = probiotics).

:func:`search` is the one entry point (the CLI and any later caller such as a scheduler use it); SQL stays
in :mod:`monitor.storage.search`.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from .errors import ParameterError, SearchSyntaxError
from .export import CSV_COLUMNS, WRITERS, csv_row, paper_record
from .formats import SEARCH_FORMATS, csv_cell, json_line, printable
from .interfaces import PaperReader
from .types import SNIPPET_CLOSE, SNIPPET_OPEN, PaperFilter, SearchHit, TextAll, TextAny, TextNode, TextTerm

if TYPE_CHECKING:
    from .taxonomy import TagDef

FORMATS = SEARCH_FORMATS
FIELDS = {"title": "title", "ti": "title", "abstract": "abstract", "ab": "abstract", "keyword": "keywords",
          "keywords": "keywords", "kw": "keywords", "mesh": "mesh", "author": "authors", "authors": "authors",
          "au": "authors"}
_FIELD_RE = re.compile(r"^([A-Za-z]+):(.*)$", re.S)


@dataclass(frozen=True, slots=True)
class SearchRequest:
    """What to look for. ``text`` None lists every paper that passes the filters. ``sort``: ``relevance``
    or ``date`` (None: relevance when there is text, else date). ``limit`` None: every match; ``offset``
    skips that many first (a page of results)."""

    text: str | None = None
    filters: PaperFilter = PaperFilter()  # noqa: RUF009 - frozen, shared safely
    sort: str | None = None
    limit: int | None = 20
    offset: int = 0

    @property
    def node(self) -> TextNode | None:
        """The parsed text (:class:`SearchSyntaxError` when it cannot be searched), None without text."""
        return parse_query(self.text) if self.text is not None else None

    @property
    def effective_sort(self) -> str:
        return self.sort or ("relevance" if self.text is not None else "date")


def search(store: PaperReader, request: SearchRequest) -> list[SearchHit]:
    """Run a search: parse the text (raising :class:`SearchSyntaxError` with what to change) and query the
    store (each hit of a text search comes with its snippet, from either backend's index)."""
    return store.search(request.node, request.filters, sort=request.effective_sort, limit=request.limit,
                        offset=request.offset)


# ------------------------------------------------------------------ the query language


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # term | ( | ) | OR | NOT | -
    term: TextTerm | None = None


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c in "()":
            out.append(_Tok(c))
            i += 1
        elif c == "-" and i + 1 < n and not text[i + 1].isspace() and text[i + 1] != "-":
            out.append(_Tok("-"))
            i += 1
        elif c == '"':
            end = text.find('"', i + 1)
            end = n if end < 0 else end  # an unclosed quote runs to the end
            phrase, i = text[i + 1:end], end + 1
            prefix = i < n and text[i] == "*"
            i += prefix
            _add_term(out, phrase, prefix, None)
        else:
            j = i
            while j < n and not text[j].isspace() and text[j] not in '()"':
                j += 1
            word, i = text[i:j], j
            if word in ("OR", "|", "||"):
                out.append(_Tok("OR"))
                continue
            if word in ("AND", "&", "&&", "+"):
                continue  # words are ANDed anyway
            if word == "NOT":
                out.append(_Tok("-"))
                continue
            column = None
            m = _FIELD_RE.match(word)
            if m and m.group(1).lower() in FIELDS:
                column, word = FIELDS[m.group(1).lower()], m.group(2)
                if not word and i < n and text[i] == '"':  # title:"a phrase"
                    end = text.find('"', i + 1)
                    end = n if end < 0 else end
                    word, i = text[i + 1:end], end + 1
                    prefix = i < n and text[i] == "*"
                    i += prefix
                    _add_term(out, word, prefix, column)
                    continue
            word = word.lstrip("+")
            prefix = word.endswith("*")
            _add_term(out, word.rstrip("*"), prefix, column)
    return out


def _add_term(out: list[_Tok], text: str, prefix: bool, column: str | None) -> None:
    text = " ".join(text.replace("*", " ").split())
    if any(ch.isalnum() for ch in text):
        out.append(_Tok("term", TextTerm(text, prefix, column)))
    elif out and out[-1].kind == "-":
        out.pop()  # "-" before something that is not searchable: drop both


class _Parser:
    def __init__(self, tokens: list[_Tok]) -> None:
        self.toks = tokens
        self.i = 0

    def peek(self) -> str | None:
        return self.toks[self.i].kind if self.i < len(self.toks) else None

    def group(self, top: bool) -> tuple[list[TextNode], list[TextNode]]:
        """Items up to the closing bracket (or the end): (required parts, excluded parts)."""
        parts: list[TextNode] = []
        excluded: list[TextNode] = []
        while (kind := self.peek()) is not None:
            if kind == ")":
                self.i += 1
                if top:
                    continue  # an unmatched ")": ignore it
                break
            if kind == "OR":
                self.i += 1  # a dangling OR (at the start, or doubled): ignore it
                continue
            alternatives: list[tuple[bool, TextNode | None, list[TextNode]]] = [self.unary()]
            while self.peek() == "OR":
                self.i += 1
                if self.peek() in (None, ")", "OR"):
                    break
                alternatives.append(self.unary())
            positives: list[TextNode] = []
            for negated, node, inner_excluded in alternatives:
                excluded += inner_excluded
                if node is None:
                    continue
                (excluded if negated else positives).append(node)  # "-x" among alternatives still excludes
            if len(positives) == 1:
                parts.append(positives[0])
            elif positives:
                parts.append(TextAny(tuple(positives)))
        return parts, excluded

    def unary(self) -> tuple[bool, TextNode | None, list[TextNode]]:
        negated = False
        while self.peek() == "-":
            self.i += 1
            negated = not negated
        kind = self.peek()
        if kind == "term":
            tok = self.toks[self.i]
            self.i += 1
            return negated, tok.term, []
        if kind == "(":
            self.i += 1
            parts, excluded = self.group(top=False)
            node = _all(parts, excluded) if parts else None
            # A bracket holding only exclusions excludes in the enclosing group.
            return negated, node, [] if parts else excluded
        return negated, None, []


def _all(parts: Sequence[TextNode], excluded: Sequence[TextNode]) -> TextNode:
    if len(parts) == 1 and not excluded:
        return parts[0]
    return TextAll(tuple(parts), tuple(excluded))


def parse_query(text: str) -> TextNode:
    """User text → query tree; :class:`SearchSyntaxError` when nothing searchable is left."""
    parser = _Parser(_tokens(text))
    parts, excluded = parser.group(top=True)
    if not parts:
        if excluded:
            raise SearchSyntaxError(f"search {text!r} only excludes words; add at least one word the papers "
                                    "must contain")
        if re.search(r"\b(?:AND|OR|NOT)\b", text):
            raise SearchSyntaxError(f"search {text!r} has only operators (AND, OR, NOT) and nothing they join; "
                                    "give words to search for, or quote an operator to search for it: \"OR\"")
        raise SearchSyntaxError(f"search {text!r} has no words to search for (punctuation alone is not "
                                "indexed); give a word, a \"phrase\" or a prefix*")
    return _all(parts, excluded)


# ------------------------------------------------------------------ output


def marked(snippet: str | None, open_: str = "**", close: str = "**") -> str | None:
    """A snippet with the index's match markers replaced (``**word**`` by default, as in Markdown)."""
    if snippet is None:
        return None
    return snippet.replace(SNIPPET_OPEN, open_).replace(SNIPPET_CLOSE, close)


def hit_record(rank: int, hit: SearchHit) -> dict[str, Any]:
    """The export record of the paper plus ``search``: rank (1 = best), score and the snippet with the
    matched words as ``**word**``."""
    record = paper_record(hit.paper)
    record["search"] = {"rank": rank, "score": hit.score, "snippet": marked(hit.snippet)}
    return record


def write_hits(hits: Sequence[SearchHit], fmt: str, out: TextIO) -> int:
    """Write search results best first in a machine format (``table`` is :func:`render_table`)."""
    if fmt == "jsonl":
        for rank, hit in enumerate(hits, 1):
            out.write(json_line(json.dumps(hit_record(rank, hit), ensure_ascii=False, sort_keys=True)) + "\n")
    elif fmt == "json":
        json.dump([hit_record(rank, hit) for rank, hit in enumerate(hits, 1)], out, ensure_ascii=False,
                  sort_keys=True, indent=1)
        out.write("\n")
    elif fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=("rank", "score", "snippet", *CSV_COLUMNS), lineterminator="\n")
        writer.writeheader()
        for rank, hit in enumerate(hits, 1):
            writer.writerow({"rank": rank, "score": "" if hit.score is None else f"{hit.score:.4f}",
                             "snippet": csv_cell(marked(hit.snippet) or ""), **csv_row(hit.paper)})
    else:
        WRITERS[fmt]((h.paper for h in hits), out)
    return len(hits)


def render_table(hits: Sequence[SearchHit], *, limit: int | None, width: int | None = None) -> Iterable[Any]:
    """Rich renderables for a terminal: one row per paper (rank, PMID, year, title with the snippet under
    it, journal, tags), then a line saying how many were shown."""
    from rich.table import Table
    from rich.text import Text

    # Stored text reaches rich only as Text (never parsed as markup: "[/]" or "[link=…]" in a title stay
    # text) and without control characters (no escape sequence reaches the terminal).
    table = Table(show_lines=True, expand=True, width=width)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("PMID", no_wrap=True)
    table.add_column("year", no_wrap=True)
    table.add_column("title / matching text", ratio=5)
    table.add_column("journal", ratio=1)
    table.add_column("tags", ratio=2)
    for rank, hit in enumerate(hits, 1):
        a = hit.paper.article
        cell = Text(printable(a.title), style="bold")
        if hit.paper.article.is_retracted:
            cell = Text("[RETRACTED] ", style="bold red") + cell
        if hit.snippet:
            cell.append("\n")
            for i, part in enumerate(hit.snippet.replace(SNIPPET_CLOSE, SNIPPET_OPEN).split(SNIPPET_OPEN)):
                cell.append(printable(part), style="reverse" if i % 2 else None)
        t = hit.paper.tagging
        tags = ", ".join((*t.conditions, *t.interventions, *t.designs)) if t else ""
        if t and t.gut_skin_relevant:
            tags = (tags + ", " if tags else "") + "gut-skin"
        journal = Text(printable(a.journal.iso_abbreviation or a.journal.title or ""))
        table.add_row(str(rank), a.pmid, str(a.year or ""), cell, journal, tags)
    more = " (the limit; --limit N or --limit 0 for all)" if limit is not None and len(hits) == limit else ""
    noun = "paper" if len(hits) == 1 else "papers"
    return [table, f"{len(hits)} {noun}{more}"] if hits else ["no papers match"]


# ------------------------------------------------------------------ option values


def tag_ids(values: Iterable[str], known: Sequence[str], option: str,
            aliases: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Tag ids from ``--condition``-style values: repeatable and comma-separated, forgiving about case,
    spaces and hyphens ("Atopic dermatitis" → ``atopic_dermatitis``); any name a user sees for a tag —
    its label, a part of it, a MeSH heading, a plain synonym or an abbreviation (``aliases``, from
    :func:`tag_aliases`: "eczema" → ``atopic_dermatitis``) — works too. An unknown value is a usage error
    that lists the known ids."""
    out: list[str] = []
    for value in values:
        for item in value.split(","):
            if not item.strip():
                continue
            tag = alias_key(item)
            if tag not in known:
                tag = (aliases or {}).get(tag, tag)
            if tag not in known:
                raise ParameterError(f"{option}: unknown tag {item.strip()!r}; known: {', '.join(known)}",
                                     parameter=option)
            out.append(tag)
    return tuple(dict.fromkeys(out))


def alias_key(name: str) -> str:
    """How a tag name is compared: lower case, runs of spaces, hyphens and underscores as one ``_``."""
    return re.sub(r"[\s\-_]+", "_", name.strip().lower()).strip("_")


_PLAIN = re.compile(r"[a-z][a-z' -]*[a-z]")  # a pattern that is a plain word or phrase, not a regex


def tag_aliases(tags: Iterable[TagDef]) -> dict[str, str]:
    """Every name a user may use for a tag (its label and the parts of it, its MeSH headings, its plain
    synonyms and abbreviations), as :func:`alias_key` keys → tag id. A name two tags share belongs to
    neither (it would be a guess)."""
    seen: dict[str, set[str]] = {}
    for t in tags:
        names = [t.label, *re.split(r"\s*[/(),;]\s*|\s+or\s+", t.label), *t.mesh, *t.abbreviations]
        names += [p for p in t.patterns if _PLAIN.fullmatch(p)]
        for name in names:
            if name and name.strip():
                seen.setdefault(alias_key(name), set()).add(t.id)
    return {key: next(iter(ids)) for key, ids in seen.items() if len(ids) == 1}


def period(value: str | None, option: str, *, end: bool) -> dt.date | None:
    """``2024`` / ``2024-03`` / ``2024-03-15`` → the first day of that period (``end``: the last day)."""
    if value is None:
        return None
    m = re.fullmatch(r"(\d{4})(?:-(\d{1,2}))?(?:-(\d{1,2}))?", value.strip())
    try:
        if not m:
            raise ValueError
        year = int(m.group(1))
        if m.group(3):
            return dt.date(year, int(m.group(2)), int(m.group(3)))
        if m.group(2):
            month = int(m.group(2))
            first = dt.date(year, month, 1)
            if not end:
                return first
            return (first.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1)
        return dt.date(year, 12, 31) if end else dt.date(year, 1, 1)
    except ValueError:
        raise ParameterError(f"{option}: expected a year (2024), a month (2024-03) or a day (2024-03-15), "
                             f"got {value!r}", parameter=option) from None


@dataclass(frozen=True, slots=True)
class FilterNames:
    """What each front end calls the filter options, for messages that point at the one to fix."""

    condition: str = "--condition"
    intervention: str = "--intervention"
    design: str = "--design"
    query: str = "--query"
    since: str = "--since"
    until: str = "--until"


CLI_NAMES = FilterNames()
API_NAMES = FilterNames("condition", "intervention", "design", "query", "since", "until")


def build_filter(*, known_tags: Callable[[str], Sequence[str]], known_queries: Callable[[], set[str]],
                 names: FilterNames = CLI_NAMES, aliases: Mapping[str, str] | None = None,
                 conditions: Sequence[str] = (), interventions: Sequence[str] = (),
                 designs: Sequence[str] = (), query_names: Sequence[str] = (), since: str | None = None,
                 until: str | None = None, date_field: str = "published", relevant_only: bool = False,
                 exclude_retracted: bool = False) -> PaperFilter:
    """Check filter values and build the filter (pure but for the two look-ups it is given): tag ids
    against ``known_tags(kind)``, query names against ``known_queries()`` (asked only when names are
    given), dates as :func:`period` reads them. A bad value raises :class:`ParameterError` naming the
    option as ``names`` spells it."""
    tags: dict[str, tuple[str, ...]] = {}
    for kind, values in (("condition", conditions), ("intervention", interventions), ("design", designs)):
        tags[kind] = tag_ids(values, known_tags(kind), getattr(names, kind), aliases) if values else ()
    wanted = tuple(dict.fromkeys(n.strip() for value in query_names for n in value.split(",") if n.strip()))
    if wanted:
        known = known_queries()
        for name in wanted:
            if name not in known:
                raise ParameterError(f"{names.query}: no query named {name!r} (known: {', '.join(sorted(known))})",
                                     parameter=names.query)
    start, end = period(since, names.since, end=False), period(until, names.until, end=True)
    if start and end and start > end:
        raise ParameterError(f"{names.since} {since} is after {names.until} {until}", parameter=names.since)
    if date_field not in ("published", "found"):
        raise ValueError(f"unknown date field {date_field!r}")
    return PaperFilter(conditions=tags["condition"], interventions=tags["intervention"], designs=tags["design"],
                       queries=wanted, since=start, until=end, date_field=date_field, relevant_only=relevant_only,
                       exclude_retracted=exclude_retracted)
