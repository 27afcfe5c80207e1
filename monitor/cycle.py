"""One monitoring cycle: for each query, search → fetch what is unknown or revised → store → watermark.

The only module (besides the CLI factory) that knows both the network and the database. The window rules
are pure functions (:func:`plan_window`, :func:`revision_start`) so they can be tested without either.

Guarantees:
- only PMIDs not yet stored are fetched; a run with nothing new sends no EFetch request;
- a paper found by several queries is stored once and linked to each;
- batches are stored as they arrive, each in its own transaction, so a failure part-way keeps what was
  stored, leaves the query's watermark where it was, and the next run covers the same window again;
- a batch is stored while the next one is fetched and parsed (:mod:`monitor.pipeline`: one batch in flight,
  stored in order; the watermark moves only after the last one is committed);
- a degraded query (NCBI rewrote it) stores nothing and is reported, unless every phrase NCBI did not
  know has a configured fallback: then the term with those phrases replaced is searched instead, and the
  report says which phrase was replaced by what (:func:`monitor.terms.apply_fallbacks`).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

from .clock import Clock
from .config import Config, Query
from .entrez import EntrezClient
from .errors import EntrezError, QueryDegraded, Stopped, Unreachable
from .interfaces import CycleStore
from .pipeline import BatchPipeline
from .terms import apply_fallbacks, fallback_note, refusal
from .types import (
    ParsedItem,
    QueryReport,
    QueryState,
    RecordError,
    RunReport,
    SearchResult,
    StoreOutcome,
    Tagger,
)

if TYPE_CHECKING:
    from .storage.papers import PreparedBatch

log = logging.getLogger(__name__)


class Progress(Protocol):
    """Told about long fetches so the CLI can draw a bar; all methods optional in spirit."""

    def begin(self, query: str, total: int) -> None: ...

    def advance(self, query: str, n: int) -> None: ...

    def end(self, query: str) -> None: ...


class NoProgress:
    def begin(self, query: str, total: int) -> None:
        pass

    def advance(self, query: str, n: int) -> None:
        pass

    def end(self, query: str) -> None:
        pass


@dataclass(frozen=True, slots=True)
class Window:
    start: dt.date
    end: dt.date
    advance_watermark: bool  # False when an explicit --since leaves a gap before the usual window
    backfill: bool  # True on a first run (or after the term changed): no revision check needed


def plan_window(query: Query, state: QueryState | None, today: dt.date, lookback_days: int,
                since: dt.date | None = None) -> Window:
    """The Entrez-date window a query searches this run (pure).

    First run, or the term changed since the last success: from ``query.since``. Later runs: from the last
    successful run minus ``lookback_days`` (records can start matching late, when MeSH indexing adds
    terms), relying on PMID dedupe for the overlap. ``since`` overrides the start; the watermark then only
    advances if that start is no later than the usual one, so nothing in between is skipped.
    """
    backfill = state is None or state.term != query.term
    usual = query.since if backfill or state is None else (
        state.last_success_at.date() - dt.timedelta(days=lookback_days))
    start = since if since is not None else usual
    start = min(start, today)
    return Window(start=start, end=today, advance_watermark=start <= usual, backfill=backfill)


def revision_start(state: QueryState) -> dt.date:
    """Where the modification-date search starts: the day before the last successful run (pure).

    The day of overlap absorbs the US-Eastern/UTC offset of NCBI's day-resolution dates; a paper revised
    on that day may be fetched once more, and the store then finds it unchanged.
    """
    return state.last_success_at.date() - dt.timedelta(days=1)


@dataclass
class _Tally:
    found: int = 0
    new: int = 0
    updated: int = 0
    deleted: int = 0
    skipped: int = 0
    fetched: set[str] = field(default_factory=set)
    returned: set[str] = field(default_factory=set)  # every PMID EFetch answered for, malformed ones too
    missing: list[str] = field(default_factory=list)  # asked for twice, never returned


Pipe = BatchPipeline[tuple["PreparedBatch", dt.datetime], StoreOutcome]


class Cycle:
    """Runs queries against NCBI into the store. Time comes from ``clock``, never the system."""

    def __init__(self, config: Config, client: EntrezClient, store: CycleStore, clock: Clock,
                 progress: Progress | None = None, tagger: Tagger | None = None,
                 stop: Callable[[], str | None] | None = None) -> None:
        self.config = config
        # Asked before every query and every batch store; a reason (SIGTERM, lease lost) stops the cycle there.
        self.stop = stop
        # The run log entry of the cycle in progress (the daemon closes it on a hard stop).
        self.run_id: int | None = None
        self.tagger = tagger
        self.client = client
        self.store = store
        self.clock = clock
        self.progress = progress or NoProgress()

    def run(self, queries: Iterable[Query] | None = None, *, since: dt.date | None = None,
            on_query: Callable[[QueryReport], None] | None = None) -> RunReport:
        """Run every query (or the given ones), logging the run; never raises for one query's failure."""
        chosen = tuple(queries) if queries is not None else self.config.queries
        started = self.clock.now()
        run_id = self.run_id = self.store.start_run(started)
        reports: list[QueryReport] = []
        try:
            for query in chosen:
                self._check_stop()
                outcome = self._run_query(query, run_id, since)
                self.store.record_query(run_id, outcome)
                reports.append(outcome)
                if on_query:
                    on_query(outcome)
        except BaseException as exc:
            # Interrupted (Ctrl-C, SIGTERM) or the database failed: close the run log entry if the DB lets us.
            try:
                if isinstance(exc, Stopped):
                    self.store.finish_run(run_id, self.clock.now(), "stopped", str(exc))
                elif isinstance(exc, KeyboardInterrupt):
                    self.store.finish_run(run_id, self.clock.now(), "interrupted",
                                          "interrupted (Ctrl-C); every stored batch is complete")
                else:
                    self.store.finish_run(run_id, self.clock.now(), "failed", f"{type(exc).__name__}: {exc}")
            except Exception:
                log.debug("could not close run %s", run_id, exc_info=True)
            raise
        report = RunReport(run_id, started, self.clock.now(), tuple(reports))
        self.store.finish_run(run_id, report.finished_at, report.status)
        return report

    def _run_query(self, query: Query, run_id: int, since: dt.date | None) -> QueryReport:
        began = time.monotonic()
        now = self.clock.now()
        state = self.store.query_state(query.name)
        window = plan_window(query, state, now.date(), self.config.lookback_days, since)
        tally = _Tally()
        status, message = "ok", None
        notes: list[str] = []
        term = query.term
        try:
            try:
                self._ingest_new(query, term, window, tally, run_id)
            except QueryDegraded as exc:
                term = self._fallback(query, exc, notes)
                self._ingest_new(query, term, window, tally, run_id)
            if not window.backfill and state is not None:
                self._ingest_revisions(query, term, revision_start(state), window.end, tally, run_id)
            # The watermark records the term as configured (not a fallback's), so a fallback is no term change.
            if window.advance_watermark:
                self.store.set_watermark(query.name, query.term, now, (window.start, window.end), run_id)
            else:
                notes.append("watermark kept: --since starts after the usual window")
            if tally.missing:
                shown = ", ".join(tally.missing[:10]) + (" …" if len(tally.missing) > 10 else "")
                notes.append(f"EFetch did not return {len(tally.missing)} record(s) though asked twice "
                             f"(PMIDs {shown}); the next run asks again")
            message = "; ".join(notes) or None
        except QueryDegraded as exc:
            status = "degraded"
            message = f"query {query.name!r} is degraded: {refusal(exc.problems, term)}"
            if notes:
                message += f" ({'; '.join(notes)}, and the result was still degraded)"
        except Unreachable:
            raise  # no query can reach NCBI either: the cycle stops here, with one line
        except EntrezError as exc:
            status, message = "failed", str(exc)
        finally:
            self.progress.end(query.name)
        report = QueryReport(
            name=query.name, status=status, window=(window.start, window.end), found=tally.found,
            new=tally.new, updated=tally.updated, deleted=tally.deleted, skipped=tally.skipped,
            missing=len(tally.missing), message=message, seconds=round(time.monotonic() - began, 3),
        )
        log.info("query=%s status=%s window=%s..%s found=%d new=%d updated=%d deleted=%d skipped=%d "
                 "seconds=%.2f", query.name, status, window.start, window.end, tally.found, tally.new,
                 tally.updated, tally.deleted, tally.skipped, report.seconds)
        return report

    def _fallback(self, query: Query, exc: QueryDegraded, notes: list[str]) -> str:
        """The term to search instead when every phrase NCBI did not know has a fallback; else re-raise."""
        rewrite = apply_fallbacks(query.term, exc.problems, query.fallbacks)
        if not rewrite.complete:
            raise exc
        notes.append(fallback_note(rewrite.used))
        log.info("query %s: %s", query.name, notes[-1])
        return rewrite.term

    def _ingest_new(self, query: Query, term: str, window: Window, tally: _Tally, run_id: int) -> None:
        # Search the whole window first: a degraded query must store nothing at all.
        slices = list(self.client.search_slices(term, "edat", window.start, window.end,
                                                query_name=query.name))
        todo: list[tuple[SearchResult, list[str]]] = []
        for piece in slices:
            ids = list(dict.fromkeys(piece.result.ids))
            tally.found += len(ids)
            known = self.store.known_pmids(ids)
            self.store.link([i for i in ids if i in known], query.name, self.clock.now(), run_id)
            todo.append((piece.result, [i for i in ids if i not in known]))
        total = sum(len(unknown) for _, unknown in todo)
        if total:
            self.progress.begin(query.name, total)
        with self._pipeline(query, run_id) as pipe:
            for result, unknown in todo:
                if not unknown:
                    continue
                # The history server saves POSTing thousands of ids when the whole slice is new (backfills).
                whole = len(unknown) == len(result.ids) == result.count and result.webenv
                batches = self.client.efetch_history(result) if whole else self.client.efetch(unknown)
                wanted = set(unknown)
                for batch in batches:
                    self._store(pipe, batch, query, tally, wanted)
                self._fetch_missing(pipe, unknown, query, tally)

    def _ingest_revisions(self, query: Query, term: str, start: dt.date, end: dt.date, tally: _Tally,
                          run_id: int) -> None:
        """Re-fetch stored papers of this query that NCBI modified since the last run (mdat)."""
        candidates: list[str] = []
        for piece in self.client.search_slices(term, "mdat", start, end, query_name=query.name):
            ids = [i for i in dict.fromkeys(piece.result.ids) if i not in tally.fetched]
            known = self.store.known_pmids(ids)
            candidates.extend(i for i in ids if i in known)  # keep NCBI's order, in linear time
        if candidates:
            self.progress.begin(query.name, len(candidates))
            with self._pipeline(query, run_id) as pipe:
                for batch in self.client.efetch(candidates):
                    self._store(pipe, batch, query, tally, set(candidates))
                self._fetch_missing(pipe, candidates, query, tally)

    def _fetch_missing(self, pipe: Pipe, asked: list[str], query: Query, tally: _Tally) -> None:
        """EFetch sometimes returns fewer records than asked for: ask once more for the ones it left out,
        then report those still missing (the next run, whose window overlaps, asks again)."""
        missing = [p for p in asked if p not in tally.returned]
        if not missing:
            return
        log.warning("query %s: EFetch did not return %d of the %d records asked for; asking again",
                    query.name, len(missing), len(asked))
        for batch in self.client.efetch(missing):
            self._store(pipe, batch, query, tally, set(missing))
        still = [p for p in missing if p not in tally.returned]
        tally.missing.extend(still)
        if still:
            log.warning("query %s: EFetch did not return PMIDs %s", query.name, ", ".join(still[:20]))

    def _check_stop(self) -> None:
        reason = self.stop() if self.stop is not None else None
        if reason:
            raise Stopped(reason)

    def _pipeline(self, query: Query, run_id: int) -> Pipe:
        """Where this query's batches are stored: each in one transaction, on a worker while the next is
        fetched (inline for a database only this thread's connection sees)."""

        def store(batch: tuple[PreparedBatch, dt.datetime]) -> StoreOutcome:
            prepared, now = batch  # the time is read in the caller's thread: the clock is never shared
            return self.store.store_prepared(prepared, query=query.name, now=now, run_id=run_id)

        return BatchPipeline(store, threaded=self.store.threads_share_data)

    def _store(self, pipe: Pipe, batch: list[ParsedItem], query: Query, tally: _Tally,
               wanted: set[str]) -> None:
        self._check_stop()  # a fetched batch is stored whole or not at all: stop before, never during
        good: list[ParsedItem] = []
        tally.returned.update(item.pmid for item in batch if item.pmid)
        for item in batch:
            if isinstance(item, RecordError):
                tally.skipped += 1
                log.warning("query %s: skipped malformed record PMID %s: %s", query.name,
                            item.pmid or "?", item.message)
            elif item.pmid in wanted:
                good.append(item)
            # Anything else NCBI sent along (it should not) is ignored rather than linked to this query.
        tally.fetched.update(item.pmid for item in good if item.pmid)

        def stored(outcome: StoreOutcome) -> None:
            tally.new += len(outcome.new)
            tally.updated += len(outcome.updated)
            tally.deleted += len(outcome.deleted)
            self.progress.advance(query.name, len(batch))

        # Prepared (encoded, tagged) here, while the worker still stores the batch before.
        pipe.submit((self.store.prepare_batch(good, tagger=self.tagger), self.clock.now()), stored)


def summarize(report: RunReport) -> QueryReport:
    """Totals over all queries, as a pseudo-query named 'total'."""
    total = QueryReport(name="total", status=report.status)
    for q in report.queries:
        total = replace(total, found=total.found + q.found, new=total.new + q.new,
                        updated=total.updated + q.updated, deleted=total.deleted + q.deleted,
                        skipped=total.skipped + q.skipped, seconds=total.seconds + q.seconds)
    return total
