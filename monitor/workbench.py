"""The query workbench: what NCBI makes of a term before a run depends on it (:func:`check_term`), and what
changing a term would change (:func:`preview`).

Value objects and functions taking an :class:`~monitor.entrez.EntrezClient` (and, for a preview, the
store); ``monitor queries check|preview`` only formats them (:func:`render_check`, :func:`render_preview`).
Nothing here writes to the database or moves a watermark.

Request budget. Every request goes through the client's shared rate limiter (3 requests/s, 10 with an API
key) and is counted in the reports:

- **check**: one ESearch per query with ``retmax=0`` (count, QueryTranslation, ErrorList, WarningList; not
  ``rettype=count``, whose answer holds the count alone). One more only when configured fallbacks cover
  every problem, to check the rewritten term too. Per-year counts are extra requests, one per year
  (a count by Entrez date, the date the monitor's windows use), and only on request (``years``).
- **preview**: the check of the new term, one count of the old term in the same window, one ESearch per
  9,999-id date slice to list the new term's ids in ``[since, today]``, one ESearch per 200 stored PMIDs the
  new term did not list (``(term) AND (pmids[uid])``, to tell "no longer matches" from "outside the
  window"), and one EFetch for the titles of a sample of the papers it would bring in.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from .config import Config, Query
from .cycle import plan_window
from .entrez import EntrezClient
from .errors import UsageError
from .interfaces import WorkbenchStore
from .terms import DEGRADING, Fallback, UsedFallback, apply_fallbacks, fixes
from .types import Article

NO_ITEMS = ("OutputMessage", "No items found.")
PMID_CHUNK = 200
EXPLAIN = {
    "PhraseNotFound": "not in PubMed's index: PubMed left it out of the search (what it was part of got broader) "
                      "or, for a hyphenated phrase or a single word, it finds nothing",
    "QuotedPhraseNotFound": "not in PubMed's phrase index: PubMed searched its words separately (ANDed), "
                            "a broader search than the phrase",
    "QuotedPhraseIgnored": "PubMed ignored the quoted phrase",
    "PhraseIgnored": "PubMed ignored it (a stopword, or an operator not written in capitals)",
    "FieldNotFound": "not a PubMed field tag: PubMed ignored the tag and searched all fields",
}


@dataclass(frozen=True, slots=True)
class Finding:
    """One ErrorList/WarningList entry, whether it makes the query degraded, and what to try."""

    kind: str
    text: str
    degrading: bool
    fixes: tuple[str, ...]

    @property
    def explanation(self) -> str:
        if self.kind == "OutputMessage":
            return "PubMed's message" + (": the search is narrower than written" if self.fixes else "")
        return EXPLAIN.get(self.kind, "reported by NCBI")


@dataclass(frozen=True, slots=True)
class YearCount:
    year: int
    count: int


@dataclass(frozen=True, slots=True)
class CheckReport:
    """What NCBI made of one term. ``verdict``: ``ok`` (runs as written), ``fallback`` (runs with the
    configured fallbacks: ``searched`` is the rewritten term) or ``refused`` (a run stores nothing)."""

    name: str
    term: str
    count: int
    translation: str | None
    findings: tuple[Finding, ...]
    verdict: str
    searched: str
    used: tuple[UsedFallback, ...] = ()
    fallback_count: int | None = None
    fallback_findings: tuple[Finding, ...] = ()
    years: tuple[YearCount, ...] = ()
    requests: int = 0

    @property
    def refused(self) -> bool:
        return self.verdict == "refused"


def _findings(problems: Sequence[tuple[str, str]], term: str,
              fallbacks: Sequence[Fallback] = ()) -> tuple[Finding, ...]:
    return tuple(Finding(kind, text, kind in DEGRADING, fixes(kind, text, term, fallbacks))
                 for kind, text in problems if (kind, text) != NO_ITEMS)


def _sent(client: EntrezClient) -> int:
    return sum(client.requests_sent.values())


def check_term(client: EntrezClient, name: str, term: str, fallbacks: Sequence[Fallback] = (), *,
               years: Sequence[int] = (), today: dt.date | None = None) -> CheckReport:
    """Ask ESearch for ``term``'s count only and read what NCBI says about it (see the module docstring
    for the requests this costs)."""
    before = _sent(client)
    result = client.esearch(term, retmax=0, usehistory=False, query_name=name, degraded_ok=True)
    problems = result.errors + result.warnings
    findings = _findings(problems, term, fallbacks)
    degrading = [(f.kind, f.text) for f in findings if f.degrading]
    report = CheckReport(name, term, result.count, result.query_translation, findings,
                         "refused" if degrading else "ok", term)
    if degrading:
        rewrite = apply_fallbacks(term, degrading, fallbacks)
        if rewrite.complete:
            again = client.esearch(rewrite.term, retmax=0, usehistory=False, query_name=name, degraded_ok=True)
            left = _findings(again.errors + again.warnings, rewrite.term)
            verdict = "refused" if any(f.degrading for f in left) else "fallback"
            report = replace(report, verdict=verdict, searched=rewrite.term, used=rewrite.used,
                             fallback_count=again.count, fallback_findings=left)
    if years and not report.refused:
        last = today or dt.date.today()
        counts = []
        for year in years:
            end = min(dt.date(year, 12, 31), last)
            got = client.esearch(report.searched, datetype="edat", mindate=dt.date(year, 1, 1), maxdate=end,
                                 retmax=0, usehistory=False, query_name=name, degraded_ok=True)
            counts.append(YearCount(year, got.count))
        report = replace(report, years=tuple(counts))
    return replace(report, requests=_sent(client) - before)


def check_queries(config: Config, client: EntrezClient, names: Sequence[str], term: str | None = None, *,
                  years: int = 0, today: dt.date | None = None) -> list[CheckReport]:
    """``monitor queries check``: the named queries (all without names), or ``term`` (as one named query
    would run it: with that query's fallbacks; alone: with the top-level ones)."""
    last = today or dt.date.today()
    span = [last.year - i for i in range(years)][::-1]
    if term is not None:
        if len(names) > 1:
            raise UsageError("--term: give at most one query NAME (whose fallbacks apply), not several")
        expanded = config.expand(term)
        query = config.query(names[0]) if names else None
        fallbacks = query.fallbacks if query else config.fallbacks
        label = f"{query.name} (--term)" if query else "--term"
        return [check_term(client, label, expanded, fallbacks, years=span, today=last)]
    chosen = [config.query(n) for n in dict.fromkeys(names)] if names else list(config.queries)
    return [check_term(client, q.name, q.term, q.fallbacks, years=span, today=last) for q in chosen]


# --- preview --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PreviewReport:
    """What the next run would do if query ``name`` searched ``new_term`` instead of ``old_term`` (the term
    its stored papers were found with; ``None`` when it never ran)."""

    name: str
    new_term: str
    old_term: str | None
    window: tuple[dt.date, dt.date]
    check: CheckReport
    new_count: int | None = None  # in the window; None when the new term would be refused
    old_count: int | None = None
    stored: int = 0  # papers linked to the query now
    dropped: tuple[str, ...] = ()  # stored papers of the query the new term no longer matches
    added: tuple[str, ...] = ()  # papers it matches that are not stored at all
    relinked: int = 0  # stored already (found by other queries), would be linked to this one
    sample: tuple[tuple[str, str], ...] = ()  # (PMID, title) of some added papers
    backfill: bool = False
    reason: str = ""
    fetch_requests: int = 0  # EFetch requests the next run needs for the added papers
    requests: int = 0


def preview(config: Config, client: EntrezClient, store: WorkbenchStore, name: str, term: str | None, *,
            today: dt.date, sample: int = 5) -> PreviewReport:
    """``monitor queries preview NAME [--term TERM]``: compare the term the stored papers of ``name`` were
    found with (its watermark) with ``term`` (else the term now in queries.toml), over ``[since, today]``."""
    query = config.query(name)
    state = store.query_state(name)
    new_term = config.expand(term) if term is not None else query.term
    old_term = state.term if state else (query.term if term is not None else None)
    before = _sent(client)
    window = (min(query.since, today), today)
    checked = check_term(client, name, new_term, query.fallbacks)
    changed = replace(query, term=new_term)
    plan = plan_window(changed, state, today, config.lookback_days)
    report = PreviewReport(name, new_term, old_term, window, checked, backfill=plan.backfill,
                           reason=_reason(state, old_term, new_term, query))
    if checked.refused:
        return replace(report, requests=_sent(client) - before)
    new_ids = _window_ids(client, checked.searched, window, name)
    old_count = None if old_term is None else _window_count(client, old_term, window, name, query.fallbacks)
    linked = store.linked_pmids(name)
    unseen = [p for p in linked if p not in new_ids]
    dropped = [p for p in unseen if p not in _still_matching(client, checked.searched, unseen, name)]
    known = store.known_pmids(list(new_ids))
    added = tuple(p for p in new_ids if p not in known)
    mine = set(linked)
    relinked = len([p for p in new_ids if p in known and p not in mine])
    titles = _titles(client, added[:sample])
    return replace(report, new_count=len(new_ids), old_count=old_count, stored=len(linked),
                   dropped=tuple(dropped), added=added, relinked=relinked, sample=titles,
                   fetch_requests=math.ceil(len(added) / config.entrez.batch_size),
                   requests=_sent(client) - before)


def _reason(state: object, old_term: str | None, new_term: str, query: Query) -> str:
    if state is None:
        return f"never run: the first run backfills from {query.since}"
    if old_term == new_term:
        return "the term is the one the stored papers were found with: the next run is incremental"
    return (f"the term differs from the one the stored papers were found with: the next run backfills from "
            f"{query.since}")


def _window_count(client: EntrezClient, term: str, window: tuple[dt.date, dt.date], name: str,
                  fallbacks: Sequence[Fallback]) -> int:
    """The term's count in the window as a run would search it (with fallbacks, if NCBI degrades it)."""

    def count(t: str) -> tuple[int, list[tuple[str, str]]]:
        got = client.esearch(t, datetype="edat", mindate=window[0], maxdate=window[1], retmax=0,
                             usehistory=False, query_name=name, degraded_ok=True)
        return got.count, [p for p in got.errors + got.warnings if p[0] in DEGRADING]

    n, problems = count(term)
    if problems:
        rewrite = apply_fallbacks(term, problems, fallbacks)
        if rewrite.complete:
            n, _ = count(rewrite.term)
    return n


def _window_ids(client: EntrezClient, term: str, window: tuple[dt.date, dt.date], name: str) -> dict[str, None]:
    ids: dict[str, None] = {}
    for piece in client.search_slices(term, "edat", window[0], window[1], query_name=name):
        ids.update(dict.fromkeys(piece.result.ids))
    return ids


def _still_matching(client: EntrezClient, term: str, pmids: Sequence[str], name: str) -> set[str]:
    """Which of ``pmids`` the term matches whatever their date (one ESearch per 200 PMIDs)."""
    found: set[str] = set()
    for start in range(0, len(pmids), PMID_CHUNK):
        chunk = pmids[start:start + PMID_CHUNK]
        restricted = f"({term}) AND ({' OR '.join(f'{p}[uid]' for p in chunk)})"
        result = client.esearch(restricted, retmax=len(chunk), usehistory=False, query_name=name,
                                degraded_ok=True)
        found.update(result.ids)
    return found


def _titles(client: EntrezClient, pmids: Sequence[str]) -> tuple[tuple[str, str], ...]:
    if not pmids:
        return ()
    titles: dict[str, str] = {}
    for batch in client.efetch(list(pmids)):
        for item in batch:
            if isinstance(item, Article):
                titles[item.pmid] = item.title
    return tuple((p, titles.get(p, "(no title)")) for p in pmids)


# --- rendering ------------------------------------------------------------------------------------------


def render_check(r: CheckReport) -> list[str]:
    """The lines ``monitor queries check`` prints for one term."""
    verdict = {"ok": "ok", "fallback": "runs with fallback", "refused": "REFUSED (degraded: a run stores nothing)"}
    lines = [f"{r.name}: {verdict[r.verdict]} — {r.count:,} records in PubMed ({r.requests} request"
             f"{'s' if r.requests != 1 else ''})"]
    lines.append(f"  translation: {r.translation or '(none)'}")
    for f in r.findings:
        lines += _finding_lines(f)
    if r.used:
        for u in r.used:
            lines.append(f"  fallback for {u.phrase!r} ({u.occurrences}×): ({u.replacement})")
        lines.append(f"  with fallbacks: {r.fallback_count:,} records"
                     + ("" if r.verdict == "fallback" else "; still degraded:"))
        for f in r.fallback_findings:
            lines += _finding_lines(f)
    if r.years:
        lines.append("  per year (Entrez date): " + "  ".join(f"{y.year} {y.count:,}" for y in r.years))
    return lines


def _finding_lines(f: Finding) -> list[str]:
    mark = "degrading" if f.degrading else "note"
    lines = [f"  {f.kind} {f.text!r} ({mark}): {f.explanation}"]
    lines += [f"    try: {fix}" for fix in f.fixes]
    return lines


def render_preview(r: PreviewReport) -> list[str]:
    """The lines ``monitor queries preview`` prints."""
    lines = [f"{r.name}: window {r.window[0]}..{r.window[1]} (Entrez date)"]
    lines += ["  new term:", *render_check(r.check)[1:]]
    if r.check.refused:
        lines.append("  the new term would be refused (degraded): fix it or add a fallback before using it")
        lines.append(f"  requests: {r.requests}")
        return lines
    old = "(never run)" if r.old_count is None else f"{r.old_count:,}"
    lines.append(f"  records in the window: old term {old} -> new term {r.new_count:,}")
    lines.append(f"  stored papers of this query: {r.stored:,}; no longer matched: {len(r.dropped):,}"
                 + (f" (e.g. {', '.join(r.dropped[:10])})" if r.dropped else ""))
    lines.append(f"  new papers it would bring in: {len(r.added):,}"
                 + (f"; already stored via other queries, would be linked: {r.relinked:,}" if r.relinked else ""))
    for pmid, title in r.sample:
        lines.append(f"    {pmid}  {title}")
    lines.append(f"  backfill: {'yes' if r.backfill else 'no'} — {r.reason}"
                 + (f" ({r.fetch_requests} EFetch request{'s' if r.fetch_requests != 1 else ''} for the new papers)"
                    if r.backfill and r.added else ""))
    lines.append(f"  requests: {r.requests}")
    return lines
