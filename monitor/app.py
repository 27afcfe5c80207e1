"""The composition root: builds the configuration, storage, E-utilities client, tagger and clock once, and
owns the job bodies that `monitor run`, `monitor digest` and the daemon all call, so a manual run and a
scheduled one cannot drift apart. :mod:`monitor.cli` parses options, calls one method here and formats
what it returns; tests build an :class:`App` with a transport (the E-utilities stand-in in-process), a
clock or a rate limiter of their own through :class:`Overrides`.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .clock import Clock, SystemClock, clock_from_env
from .config import Config, Query, load_config, resolve_config_path
from .errors import UsageError
from .lease import CYCLE, DIGEST
from .types import (
    PaperFilter,
    QueryReport,
    QueryStatus,
    RunReport,
    SearchHit,
    StatusReport,
    StoredPaper,
    TagChanges,
    Tagger,
)

if TYPE_CHECKING:  # imported when used: `monitor --help` and `monitor search` start faster without them
    import httpx
    from flask import Flask

    from .cycle import Cycle, Progress
    from .digest import Digest, DigestReport, Vocabulary
    from .entrez import EntrezClient
    from .explain import Explanation
    from .feeds import PublishReport
    from .lease import Lease
    from .scheduler import Daemon
    from .search import SearchRequest
    from .storage import Storage
    from .tagging import Taxonomy
    from .taxonomy import TagDef
    from .workbench import CheckReport, PreviewReport

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Overrides:
    """What tests inject instead of the real world: an httpx transport for NCBI; the time the rate
    limiter measures and the sleep it and the retry waits use (together: virtual time, so nothing waits);
    the data clock."""

    transport: httpx.BaseTransport | None = None
    monotonic: Callable[[], float] | None = None
    sleep: Callable[[float], None] | None = None
    clock: Clock | None = None


@dataclass(frozen=True, slots=True)
class CycleResult:
    """A cycle's run report and what publishing the feeds after it did."""

    report: RunReport
    published: PublishReport


@dataclass
class App:
    """Everything a command needs, each piece built once on first use and closed by :meth:`close`."""

    config_option: str | Path | None = None
    overrides: Overrides = field(default_factory=Overrides)
    _config: Config | None = None
    _store: Storage | None = None
    _clock: Clock | None = None
    _closers: list[Callable[[], None]] = field(default_factory=list)

    # ---------------------------------------------------------------- the pieces

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(resolve_config_path(str(self.config_option) if self.config_option else None))
        return self._config

    @property
    def clock(self) -> Clock:
        if self._clock is None:
            self._clock = self.overrides.clock or clock_from_env()
        return self._clock

    def use_clock(self, clock: Clock) -> None:
        """Replace the data clock (the daemon's keeps running from MONITOR_NOW)."""
        self._clock = clock

    @property
    def store(self) -> Storage:
        if self._store is None:
            from .storage import Storage

            self._store = Storage.open(self.config.storage.url)
            self._closers.append(self._store.close)
        return self._store

    @functools.cached_property
    def taxonomy(self) -> Taxonomy:
        from .tagging import load_taxonomy

        return load_taxonomy(self.config.tagging.taxonomy)

    @functools.cached_property
    def tag_names(self) -> tuple[TagDef, ...]:
        """The taxonomy's tags as written (ids, labels, synonyms), without compiling its rules: what filters
        need, read fast (`monitor search` starts without the tagger)."""
        from .taxonomy import load_tag_names

        return load_tag_names(self.config.tagging.taxonomy)

    def tagger(self) -> Tagger:
        """The tagger for the configured taxonomy (loading it: a broken taxonomy fails here)."""
        from .tagging import tag

        return functools.partial(tag, taxonomy=self.taxonomy)

    def client(self, sleep: Callable[[float], None] | None = None) -> EntrezClient:
        """A new E-utilities client (closed with the app)."""
        from .entrez import EntrezClient, RateLimiter

        o = self.overrides
        options: dict[str, Any] = {"transport": o.transport}
        if o.monotonic is not None:
            rate = self.config.entrez.requests_per_second
            options["limiter"] = RateLimiter(rate, monotonic=o.monotonic, sleep=o.sleep or (lambda s: None))
        if sleep or o.sleep:
            options["sleep"] = sleep or o.sleep
        client = EntrezClient(self.config.entrez, **options)
        self._closers.append(client.close)
        return client

    def lease(self, name: str, purpose: str) -> Lease:
        """A lease on the database. Its clock is always the real one: lease times are compared across
        processes, which MONITOR_NOW (this process's data clock) must not skew."""
        from .lease import Lease

        cfg = self.config.schedule
        return Lease(self.store, name, purpose=purpose, clock=SystemClock(), seconds=cfg.lease_seconds,
                     heartbeat=cfg.heartbeat_seconds)

    def close(self) -> None:
        while self._closers:
            self._closers.pop()()

    # ---------------------------------------------------------------- the cycle

    def publish(self, out: Path | None = None) -> PublishReport:
        """Regenerate the feeds from the store (into ``out``, else the configured folder); with a shared
        database, also into the database, for `monitor serve` on any host (:mod:`monitor.docsync`)."""
        from .docsync import sync_folder
        from .feeds import publish

        report = publish(self.store, self.taxonomy, self.config.feeds, self.clock.now(),
                         queries=[q.name for q in self.config.queries], out=out,
                         min_relevance=self.config.tagging.min_relevance)
        if self.store.shared:
            sync_folder(report.write.out, self.store)
        return report

    def select_queries(self, names: Sequence[str]) -> list[Query]:
        """The configured queries named (each once, in the order given), or all of them."""
        return [self.config.query(name) for name in dict.fromkeys(names)] or list(self.config.queries)

    def run_cycle(self, *, purpose: str, wait: float = 0.0, client: EntrezClient | None = None,
                  lease: Lease | None = None, queries: Sequence[Query] | None = None,
                  since: dt.date | None = None, on_query: Callable[[QueryReport], None] | None = None,
                  progress: Progress | None = None, stop: Callable[[], str | None] | None = None,
                  on_cycle: Callable[[Cycle], None] | None = None) -> CycleResult:
        """One monitoring cycle under the cycle lease, then the feeds: what `monitor run` and every
        scheduled cycle of `monitor start` call.

        Holds the lease (waiting up to ``wait`` s, else :class:`~monitor.errors.LeaseBusy`), runs every
        query (or ``queries``), then regenerates the feeds — also after a partial failure, so they reflect
        what is stored. ``stop`` is asked between batches; a lost lease stops the cycle the same way.
        Raises :class:`~monitor.errors.Stopped` if stopped, :class:`~monitor.errors.PublishError` if the
        feeds could not be written (the papers are stored either way)."""
        from .cycle import Cycle

        tagger = self.tagger()  # a broken taxonomy stops us before the database or NCBI is touched
        if since is not None and since > self.clock.now().date():
            raise UsageError(f"--since: {since} is in the future")
        lease = lease or self.lease(CYCLE, purpose)
        client = client or self.client()

        def should_stop() -> str | None:
            # Asked before every query and batch: renewing here too (besides the heartbeat) means a holder
            # that stalled past its expiry finds out before it stores anything more.
            if not lease.lost.is_set() and not lease.renew():
                lease.lost.set()
            if lease.lost.is_set():
                return "the cycle lease was lost (this process stalled past its expiry); stopping between batches"
            return stop() if stop is not None else None

        with lease.held(wait):
            lease.wait_quiet(self.overrides.sleep)  # the previous holder's last requests a rate window behind
            dead = self.store.close_dead_runs(
                self.clock.now(), "its process died mid-cycle (its lease lapsed unreleased); "
                                  "the next cycle covered its window again")
            if dead:
                log.warning("closed run(s) #%s: left 'running' by a process that died mid-cycle",
                            ", #".join(map(str, dead)))
            cycle = Cycle(self.config, client, self.store, self.clock, progress, tagger=tagger, stop=should_stop)
            if on_cycle is not None:
                on_cycle(cycle)
            report = cycle.run(list(queries) if queries is not None else None, since=since, on_query=on_query)
            published = self.publish()
        return CycleResult(report, published)

    # ---------------------------------------------------------------- the query workbench

    def check_queries(self, names: Sequence[str], term: str | None, *, years: int = 0) -> list[CheckReport]:
        """`monitor queries check`: what NCBI makes of each query (or of ``term``), one request each."""
        from .workbench import check_queries

        return check_queries(self.config, self.client(), names, term, years=years, today=self.clock.now().date())

    def preview_query(self, name: str, term: str | None, *, sample: int = 5) -> PreviewReport:
        """`monitor queries preview`: what changing a query's term would change (nothing is stored)."""
        from .workbench import preview

        return preview(self.config, self.client(), self.store, name, term, today=self.clock.now().date(),
                       sample=sample)

    # ---------------------------------------------------------------- reading

    def explain(self, pmid: str) -> tuple[Explanation, str | None]:
        """Why a stored paper has its tags (with the current taxonomy), and a note when the stored tags come
        from another taxonomy version."""
        from .explain import checked_pmid, explain_stored

        return explain_stored(pmid, self.store.paper(checked_pmid(pmid)), self.taxonomy)

    def retag(self, progress: Callable[[int], None] | None = None) -> TagChanges:
        """Tag every stored paper again with the current taxonomy."""
        return self.store.retag(self.tagger(), progress=progress)

    def build_filter(self, *, conditions: Sequence[str] = (), interventions: Sequence[str] = (),
                     designs: Sequence[str] = (), query_names: Sequence[str] = (), since: str | None = None,
                     until: str | None = None, date_field: str = "published", relevant_only: bool = False,
                     exclude_retracted: bool = False) -> PaperFilter:
        """Check filter values (tag ids against the taxonomy, query names against the config and the
        database, dates) and build the filter. Option names in messages are the CLI's."""
        from .search import CLI_NAMES, build_filter, tag_aliases

        names = self.tag_names if (conditions or interventions or designs) else ()
        return build_filter(known_tags=lambda kind: tuple(t.id for t in names if t.kind == kind),
                            known_queries=self.known_query_names, names=CLI_NAMES, aliases=tag_aliases(names),
                            conditions=conditions, interventions=interventions, designs=designs,
                            query_names=query_names, since=since, until=until, date_field=date_field,
                            relevant_only=relevant_only, exclude_retracted=exclude_retracted)

    def known_query_names(self) -> set[str]:
        """The configured queries and any that found a stored paper (a query removed from the config)."""
        return {q.name for q in self.config.queries} | self.store.linked_query_names()

    def papers(self, filters: PaperFilter, *, include_deleted: bool = True) -> Iterator[StoredPaper]:
        """Every stored paper that passes ``filters``, in PMID order (what exports write)."""
        return self.store.iter_papers(include_deleted=include_deleted, filters=filters)

    def search(self, request: SearchRequest) -> list[SearchHit]:
        from .search import search

        return search(self.store, request)

    def status(self, runs: int = 5) -> StatusReport:
        """What `monitor status` shows, as one value."""
        from .schedule import job_statuses

        store, config = self.store, self.config
        states = {s.name: s for s in store.all_query_states()}
        queries = tuple(QueryStatus(q.name, q.since, states.get(q.name),
                                    q.name in states and states[q.name].term != q.term) for q in config.queries)
        leases = [(CYCLE, store.lease(CYCLE))] + ([(DIGEST, store.lease(DIGEST))] if config.digest else [])
        return StatusReport(
            database=store.url, papers=store.count_papers(),
            papers_with_withdrawn=store.count_papers(include_deleted=True),
            taxonomy_versions=tuple(sorted(store.taxonomy_versions().items(), key=lambda x: -x[1])),
            queries=queries, runs=tuple(store.recent_runs(runs)), timezone=config.schedule.timezone,
            jobs=job_statuses(config.schedule, config.digest is not None, store.job_states(), self.clock.now()),
            leases=tuple(leases), real_now=SystemClock().now())

    def web_app(self, feeds: Path | None = None) -> Flask:
        """The web app `monitor serve` runs (read-only): this app's store, taxonomy, queries and status,
        and the feed folder (``feeds``, else the configured one)."""
        from .explain import explain_stored
        from .web import Labels, WebContext, create_app

        taxonomy = self.taxonomy  # a broken taxonomy fails here, before the server starts
        ctx = WebContext(store=self.store, labels=Labels.from_taxonomy(taxonomy),
                         query_names=tuple(q.name for q in self.config.queries), known_queries=self.known_query_names,
                         feeds=feeds or self.config.feeds.out, status=self.status,
                         today=lambda: self.clock.now().date(), title=self.config.feeds.title,
                         documents=self.store if self.store.shared else None,
                         explain=lambda paper: explain_stored(paper.article.pmid, paper, taxonomy))
        return create_app(ctx)

    # ---------------------------------------------------------------- the digest

    def vocabulary(self) -> Vocabulary:
        from .digest import Vocabulary

        return Vocabulary.from_taxonomy(self.taxonomy)

    def digest_preview(self, since: dt.date | None = None) -> tuple[Digest, EmailMessage]:
        """The digest that is due (or, with ``since``, every paper first found since then), built and
        rendered but neither sent nor logged. Needs no ``[digest]`` table (the defaults are used)."""
        from . import digest

        if since is None:
            return digest.build_due(self.config, self.store, self.clock, self.vocabulary())
        if since > self.clock.now().date():
            raise UsageError(f"--since: {since} is in the future")
        return digest.preview(self.config, self.store, self.clock, self.vocabulary(), since)

    def send_digest(self, *, force: bool = False, purpose: str = "monitor digest") -> DigestReport:
        """Send the digest if one is due (or ``force``), under the digest lease: what `monitor digest` and
        the daemon's digest job call."""
        from . import digest

        cfg = digest.require(self.config)
        vocabulary = self.vocabulary()
        with self.lease(DIGEST, purpose).held():
            return digest.send_due(self.config, self.store, self.clock, digest.SmtpMailer(cfg), vocabulary,
                                   force=force)

    def daemon(self) -> Daemon:
        """The `monitor start` daemon over this app's job bodies: its cycles share one client (whose retry
        waits a stop request cuts short) and one cycle lease; the digest job exists if ``[digest]`` does.
        Checks the schedule, the taxonomy and the digest settings first (a ConfigError: exit 2)."""
        import threading

        from .clock import running_clock_from_env
        from .scheduler import Daemon, Jobs, stop_aware_sleep

        # MONITOR_NOW starts the clock there and lets it run: a frozen clock would stop the schedule.
        self.use_clock(self.overrides.clock or running_clock_from_env())
        config = self.config
        self.tagger()
        if config.digest is not None:
            from .digest import require

            require(config)
        stop = threading.Event()
        # Retry waits end at once on SIGTERM (tests' virtual time never waits anyway).
        client = self.client(sleep=self.overrides.sleep or stop_aware_sleep(stop))
        cycle_lease = self.lease(CYCLE, "monitor start (daemon cycle)")

        def cycle(should_stop: Callable[[], str | None], on_query: Callable[[QueryReport], None],
                  on_cycle: Callable[[Cycle], None]) -> CycleResult:
            return self.run_cycle(purpose="monitor start", client=client, lease=cycle_lease, wait=0.0,
                                  stop=should_stop, on_query=on_query, on_cycle=on_cycle)

        jobs = Jobs(cycle, self.daemon_digest if config.digest is not None else None)
        return Daemon(config, self.store, self.clock, jobs, cycle_lease, stop_event=stop)

    def daemon_digest(self) -> tuple[str, dict[str, Any]]:
        """The daemon's digest job: send if due; the outcome and the fields of its log line."""
        report = self.send_digest(purpose="monitor start (digest)")
        return report.status, report.log_fields()
