"""Request parameters → checked values (pure). The filters are exactly `monitor search`'s: the same query
language (:func:`monitor.search.parse_query`) and the same validation (:func:`monitor.search.build_filter`,
with the API's parameter names), so a bad value raises :class:`~monitor.errors.ParameterError` naming the
parameter, which the app answers with 400.

Parameters are a mapping of name → list of values (a query string's repeated keys); lists of tags may also
be comma-separated, as on the command line.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ..errors import ParameterError, SearchSyntaxError
from ..search import API_NAMES, SearchRequest, build_filter, parse_query, period
from ..types import PaperFilter, TextNode
from .context import Labels

Args = Mapping[str, Sequence[str]]

FILTERS = ("condition", "intervention", "design", "query", "relevant", "exclude_retracted", "since", "until", "date")
PAPERS = ("q", *FILTERS, "sort", "page", "per_page")
MAP = ("design", "since", "until", "date")
TRENDS = ("by", "date", "since", "until")
EXPORT = ("q", *FILTERS, "sort", "format")
HOME = ("page",)
MAX_PER_PAGE = 100
DEFAULT_PER_PAGE = 20
TREND_MONTHS = 60  # the default window: the five years up to this month
MAX_TREND_MONTHS = 600
EXPORT_FORMATS = ("ris", "bibtex", "csl-json", "csv", "jsonl")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


@dataclass(frozen=True, slots=True)
class PapersQuery:
    """A search and one page of it."""

    request: SearchRequest
    node: TextNode | None
    page: int
    per_page: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page


@dataclass(frozen=True, slots=True)
class TrendsQuery:
    """Monthly counts per tag of ``by`` (condition | intervention) by ``date_field`` over ``months``."""

    by: str
    date_field: str
    months: tuple[str, ...]
    filters: PaperFilter


def check_known(args: Args, allowed: Sequence[str]) -> None:
    """Refuse a parameter the endpoint does not know (a typo would otherwise be ignored silently)."""
    for name in args:
        if name not in allowed:
            raise ParameterError(f"unknown parameter {name!r} (known: {', '.join(allowed)})", parameter=name)


def one(args: Args, name: str, default: str | None = None) -> str | None:
    """A single-valued parameter: the last value given (browsers send one), stripped; empty counts as absent."""
    values = args.get(name) or []
    value = values[-1].strip() if values else ""
    return value or default


def choice(args: Args, name: str, options: Sequence[str], default: str | None) -> str | None:
    value = one(args, name, default)
    if value is not None and value not in options:
        raise ParameterError(f"{name}: expected one of {', '.join(options)}, got {value!r}", parameter=name)
    return value


def flag(args: Args, name: str) -> bool:
    value = (one(args, name) or "").lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ParameterError(f"{name}: expected 1 or 0 (true or false), got {value!r}", parameter=name)


def number(args: Args, name: str, default: int, low: int, high: int) -> int:
    value = one(args, name)
    if value is None:
        return default
    if not value.isdigit() or not low <= int(value) <= high:
        raise ParameterError(f"{name}: expected a whole number from {low} to {high}, got {value!r}", parameter=name)
    return int(value)


def paper_filter(args: Args, labels: Labels, known_queries: Callable[[], set[str]], *,
                 relevant: bool | None = None) -> PaperFilter:
    """The filter parameters as :func:`monitor.search.build_filter` checks them (``relevant`` forces it)."""
    date_field = choice(args, "date", ("published", "found"), "published")
    assert date_field is not None
    return build_filter(
        known_tags=labels.ids, known_queries=known_queries, names=API_NAMES, aliases=labels.aliases,
        conditions=args.get("condition", ()), interventions=args.get("intervention", ()),
        designs=args.get("design", ()), query_names=args.get("query", ()), since=one(args, "since"),
        until=one(args, "until"), date_field=date_field,
        relevant_only=flag(args, "relevant") if relevant is None else relevant,
        exclude_retracted=flag(args, "exclude_retracted"))


def text(args: Args) -> tuple[str | None, TextNode | None]:
    """``q`` and its parsed query tree (None, None without text)."""
    q = one(args, "q")
    if q is None:
        return None, None
    try:
        return q, parse_query(q)
    except SearchSyntaxError as exc:
        raise ParameterError(f"q: {exc}", parameter="q") from None


def papers_query(args: Args, labels: Labels, known_queries: Callable[[], set[str]],
                 allowed: Sequence[str] = PAPERS, *, limit: int | None = None) -> PapersQuery:
    """``/api/papers`` and ``/search``: text, filters, sort and page. ``limit``: every match up to that
    many (an export) instead of a page."""
    check_known(args, allowed)
    q, node = text(args)
    filters = paper_filter(args, labels, known_queries)
    sort = choice(args, "sort", ("relevance", "date"), None)
    page = number(args, "page", 1, 1, 100_000)
    per_page = number(args, "per_page", DEFAULT_PER_PAGE, 1, MAX_PER_PAGE)
    if limit is not None:
        page, per_page = 1, limit
    request = SearchRequest(text=q, filters=filters, sort=sort, limit=per_page, offset=(page - 1) * per_page)
    return PapersQuery(request, node, page, per_page)


def month_range(start: dt.date, end: dt.date) -> tuple[str, ...]:
    """Every month from ``start``'s to ``end``'s, as ``YYYY-MM``."""
    months = []
    y, m = start.year, start.month
    while (y, m) <= (end.year, end.month):
        months.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return tuple(months)


def trends_query(args: Args, labels: Labels, today: dt.date) -> TrendsQuery:
    """``/api/trends`` and ``/trends``: by condition or intervention, by found or publication date, over
    ``since``..``until`` (default: the five years up to this month)."""
    check_known(args, TRENDS)
    by = choice(args, "by", ("condition", "intervention"), "condition")
    date_field = choice(args, "date", ("found", "published"), "found")
    assert by is not None and date_field is not None
    until = period(one(args, "until"), "until", end=True) or today
    first = until.year * 12 + until.month - 1 - (TREND_MONTHS - 1)
    default_start = dt.date(first // 12, first % 12 + 1, 1)
    since = period(one(args, "since"), "since", end=False) or default_start
    if since > until:
        raise ParameterError(f"since {since} is after until {until}", parameter="since")
    months = month_range(since, until)
    if len(months) > MAX_TREND_MONTHS:
        raise ParameterError(f"since: at most {MAX_TREND_MONTHS} months at once, not {len(months)}",
                             parameter="since")
    filters = PaperFilter(relevant_only=True, since=since, until=until, date_field=date_field)
    return TrendsQuery(by, date_field, months, filters)
