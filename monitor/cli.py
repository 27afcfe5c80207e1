"""The ``monitor`` command: parse options, build objects through :class:`App`, call one function, format.

Every :class:`~monitor.errors.MonitorError` becomes one line on stderr and its exit code (1 runtime, 2 bad
usage or config); nothing reaches the user as a traceback unless ``--debug`` asks for it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO, TypeVar
from zoneinfo import ZoneInfo

import click

from . import __version__
from .clock import Clock, SystemClock, clock_from_env, running_clock_from_env
from .config import Config, load_config, resolve_config_path
from .cycle import Progress, summarize
from .entrez import EntrezClient
from .errors import MonitorError, UsageError
from .explain import explain as explain_paper
from .explain import render_text as render_explanation
from .export import WRITERS
from .feeds import PublishReport
from .feeds import publish as publish_feeds
from .jobs import CycleResult, monitoring_cycle
from .lease import CYCLE as CYCLE_LEASE
from .lease import Lease
from .search import FORMATS as SEARCH_FORMATS
from .search import SearchRequest, parse_query, period, render_table, tag_ids, write_hits
from .search import search as run_search
from .serve import FeedServer
from .store import PaperFilter, Storage, Tagger
from .tagging import Taxonomy, load_taxonomy, tag
from .types import QueryReport

log = logging.getLogger("monitor")
F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class App:
    """The one factory: config first, then what a command asks for, each built once."""

    config_option: str | None
    debug: bool = False
    verbose: int = 0
    _config: Config | None = None
    _store: Storage | None = None
    _clock: Clock | None = None
    _closers: list[Callable[[], None]] = field(default_factory=list)

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(resolve_config_path(self.config_option))
        return self._config

    @property
    def clock(self) -> Clock:
        if self._clock is None:
            self._clock = clock_from_env()
        return self._clock

    @property
    def store(self) -> Storage:
        if self._store is None:
            self._store = Storage.open(self.config.storage.url)
            self._closers.append(self._store.close)
        return self._store

    @functools.cached_property
    def taxonomy(self) -> Taxonomy:
        return load_taxonomy(self.config.tagging.taxonomy)

    def tagger(self) -> Tagger:
        """The tagger for the configured taxonomy."""
        return functools.partial(tag, taxonomy=self.taxonomy)

    def publish(self, out: Path | None = None) -> PublishReport:
        """Regenerate the feeds from the store (into ``out``, else the configured folder)."""
        return publish_feeds(self.store, self.taxonomy, self.config.feeds, self.clock.now(),
                             queries=[q.name for q in self.config.queries], out=out,
                             min_relevance=self.config.tagging.min_relevance)

    def client(self, sleep: Callable[[float], None] | None = None) -> EntrezClient:
        client = EntrezClient(self.config.entrez) if sleep is None else EntrezClient(self.config.entrez, sleep=sleep)
        self._closers.append(client.close)
        return client

    def lease(self, name: str, purpose: str) -> Lease:
        """A lease on the database. Its clock is always the real one: lease times are compared across
        processes, which MONITOR_NOW (this process's data clock) must not skew."""
        cfg = self.config.schedule
        return Lease(self.store, name, purpose=purpose, clock=SystemClock(), seconds=cfg.lease_seconds,
                     heartbeat=cfg.heartbeat_seconds)

    def run_cycle(self, *, purpose: str, wait: float = 0.0, client: EntrezClient | None = None,
                  lease: Lease | None = None, **options: Any) -> CycleResult:
        """One monitoring cycle under the cycle lease, then the feeds (see :func:`monitor.jobs.monitoring_cycle`);
        what `monitor run` and every scheduled cycle of `monitor start` call."""
        tagger = self.tagger()  # a broken taxonomy stops us before the database or NCBI is touched
        return monitoring_cycle(config=self.config, store=self.store, client=client or self.client(),
                                clock=self.clock, tagger=tagger, publish=self.publish,
                                lease=lease or self.lease(CYCLE_LEASE, purpose), wait=wait, **options)

    def close(self) -> None:
        while self._closers:
            self._closers.pop()()


def handle_errors(func: F) -> F:
    """Turn our errors into one stderr line and the right exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        app: App = click.get_current_context().obj
        try:
            return func(*args, **kwargs)
        except MonitorError as exc:
            if app.debug:
                log.exception("failed")
            click.echo(f"monitor: error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("monitor: interrupted; everything stored so far is kept", err=True)
            sys.exit(130)
        except BrokenPipeError:
            # The reader went away (`monitor export | head`): stop quietly, as `cat` would.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(141)
        except Exception as exc:
            if app.debug:
                raise
            click.echo(f"monitor: internal error: {type(exc).__name__}: {exc} (rerun with --debug and "
                       "report it)", err=True)
            sys.exit(1)
        finally:
            app.close()

    return wrapper  # type: ignore[return-value]


def parse_date(value: str | None, option: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{option}: not a date in YYYY-MM-DD form: {value!r}") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", metavar="PATH",
              help="queries.toml to use (default: $MONITOR_CONFIG, else ./queries.toml).")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for HTTP details).")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.version_option(__version__, prog_name="monitor")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, verbose: int, debug: bool) -> None:
    """Watch PubMed for gut–skin axis research: fetch, store, tag and publish new papers."""
    level = logging.WARNING - 10 * verbose if not debug else logging.DEBUG
    logging.basicConfig(level=max(level, logging.DEBUG), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if verbose < 2 and not debug:
        logging.getLogger("httpx").setLevel(logging.WARNING)
    ctx.obj = App(config_option=config_path, debug=debug, verbose=verbose)


@cli.command()
@click.option("--query", "query_names", multiple=True, metavar="NAME", help="Run only this query (repeatable).")
@click.option("--since", metavar="YYYY-MM-DD", help="Search from this Entrez date instead of the usual window.")
@click.option("--wait", "wait", default=0.0, show_default=True, type=click.FloatRange(0, 86400), metavar="SECONDS",
              help="If another process (the daemon, another run) is running a cycle, wait up to this long for it "
                   "to finish; without it, exit 1 at once naming that process.")
@click.pass_obj
@handle_errors
def run(app: App, query_names: tuple[str, ...], since: str | None, wait: float) -> None:
    """Run one monitoring cycle: search every query, store new and revised papers."""
    start = parse_date(since, "--since")
    if start and start > app.clock.now().date():
        raise UsageError(f"--since: {start} is in the future")
    config = app.config
    queries = [config.query(name) for name in dict.fromkeys(query_names)] or list(config.queries)
    app.tagger()  # a broken taxonomy stops us before the database or NCBI is touched
    width = max(len(q.name) for q in queries + [config.queries[0]])
    with _progress() as progress:

        def show(report: QueryReport) -> None:
            # rich's live bar redirects stdout, so plain echo lands above the bar.
            click.echo(_report_line(report, width))

        result = app.run_cycle(purpose="monitor run", wait=wait, queries=queries, since=start, on_query=show,
                               progress=progress)
    report = result.report
    click.echo(_report_line(summarize(report), width, total=True))
    _echo_publish(result.published)  # feeds reflect what is stored, even after a partial failure
    if not report.ok:
        bad = [q.name for q in report.queries if q.status != "ok"]
        click.echo(f"monitor: error: {len(bad)} of {len(report.queries)} queries did not complete "
                   f"({', '.join(bad)}); see messages above. Stored papers are kept; the next run retries.",
                   err=True)
        sys.exit(1)


def _report_line(r: QueryReport, width: int, total: bool = False) -> str:
    counts = f"found {r.found:>6}  new {r.new:>5}  updated {r.updated:>4}"
    if r.deleted:
        counts += f"  deleted {r.deleted}"
    if r.skipped:
        counts += f"  skipped {r.skipped} malformed"
    status = r.status.upper() if r.status != "ok" else "ok"
    line = f"{r.name:<{width}}  {status:<8}  {counts}"
    if r.window and not total:
        line += f"  [{r.window[0]}..{r.window[1]}]"
    if r.message and r.status != "ok":
        line += f"\n{'':<{width}}  {r.message}"
    elif r.message:
        line += f"  ({r.message})"
    return line


def paper_filter_options(func: F) -> F:
    """The paper filters shared by `monitor search` and `monitor export`."""
    options = [
        click.option("--condition", "conditions", multiple=True, metavar="TAG",
                     help="Only papers tagged with this condition (repeat or comma-separate: any of them)."),
        click.option("--intervention", "interventions", multiple=True, metavar="TAG",
                     help="Only papers tagged with this intervention or exposure (any of those given)."),
        click.option("--design", "designs", multiple=True, metavar="TAG",
                     help="Only papers of this study design (any of those given), e.g. rct, meta_analysis."),
        click.option("--query", "query_names", multiple=True, metavar="NAME",
                     help="Only papers found by this query of queries.toml (any of those given)."),
        click.option("--since", metavar="DATE", help="From this date: 2024, 2024-03 or 2024-03-15 (see --date)."),
        click.option("--until", metavar="DATE", help="Up to the end of this year, month or day (see --date)."),
        click.option("--date", "date_field", type=click.Choice(["published", "found"]), default="published",
                     show_default=True,
                     help="What --since/--until compare: the publication date, or the day the monitor first "
                          "stored the paper."),
        click.option("--relevant/--all", "relevant_only", default=False, show_default=True,
                     help="Only papers tagged gut-skin relevant, or every paper."),
        click.option("--exclude-retracted", is_flag=True, help="Leave out retracted papers."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def build_filter(app: App, *, conditions: tuple[str, ...], interventions: tuple[str, ...],
                 designs: tuple[str, ...], query_names: tuple[str, ...], since: str | None, until: str | None,
                 date_field: str, relevant_only: bool, exclude_retracted: bool) -> PaperFilter:
    """Check the filter options (tag ids against the taxonomy, query names against the config and the
    database, dates) and build the filter."""
    tags: dict[str, tuple[str, ...]] = {}
    for kind, values in (("condition", conditions), ("intervention", interventions), ("design", designs)):
        tags[kind] = tag_ids(values, app.taxonomy.ids(kind), f"--{kind}") if values else ()
    names = tuple(dict.fromkeys(n.strip() for value in query_names for n in value.split(",") if n.strip()))
    if names:
        known = {q.name for q in app.config.queries} | app.store.linked_query_names()
        for name in names:
            if name not in known:
                raise UsageError(f"--query: no query named {name!r} (known: {', '.join(sorted(known))})")
    start, end = period(since, "--since", end=False), period(until, "--until", end=True)
    if start and end and start > end:
        raise UsageError(f"--since {since} is after --until {until}")
    return PaperFilter(conditions=tags["condition"], interventions=tags["intervention"], designs=tags["design"],
                       queries=names, since=start, until=end, date_field=date_field, relevant_only=relevant_only,
                       exclude_retracted=exclude_retracted)


@cli.command()
@click.option("--format", "fmt", type=click.Choice(sorted(WRITERS)), default="jsonl", show_default=True)
@click.option("--out", metavar="FILE", help="Write here (atomically) instead of standard output.")
@click.option("--include-deleted/--exclude-deleted", default=True, show_default=True,
              help="Papers NLM withdrew (DeleteCitation) are included, flagged deleted.")
@paper_filter_options
@click.pass_obj
@handle_errors
def export(app: App, fmt: str, out: str | None, include_deleted: bool, **filter_options: Any) -> None:
    """Write every stored paper with all parsed fields and the queries that found it (or, with filters,
    the papers that pass them; see `monitor search --help`)."""
    filters = build_filter(app, **filter_options)
    papers = app.store.iter_papers(include_deleted=include_deleted, filters=filters)
    writer = WRITERS[fmt]
    if out is None:
        writer(papers, sys.stdout)
        return
    with atomic_write(Path(out)) as fh:
        n = writer(papers, fh)
    click.echo(f"wrote {n} papers to {out}", err=True)


def _echo_publish(report: PublishReport) -> None:
    w = report.write
    click.echo(f"feeds: {report.feeds} feeds, {report.documents} documents (with archive pages) for "
               f"{report.papers} relevant papers and {report.status_items} status changes in {w.out}: "
               f"{report.rendered} rendered, {w.written} files written, {w.removed} removed")


@contextlib.contextmanager
def atomic_write(path: Path) -> Iterator[TextIO]:
    """Write to a temporary file beside ``path`` and rename it into place only when complete."""
    if path.is_dir():
        raise UsageError(f"--out: {path} is a directory; give a file name")
    if not path.parent.exists():
        raise UsageError(f"--out: folder {path.parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@cli.command()
@click.pass_obj
@handle_errors
def retag(app: App) -> None:
    """Tag every stored paper again with the current taxonomy; report what changed per tag."""
    tagger = app.tagger()
    version = app.taxonomy.version
    total = app.store.count_papers()
    began = time.perf_counter()
    with _progress() as progress:
        progress.begin("retag", total)
        changes = app.store.retag(tagger, progress=lambda n: progress.advance("retag", n))
        progress.end("retag")
    seconds = time.perf_counter() - began
    rate = changes.examined / seconds if seconds > 0 else 0.0
    click.echo(f"retagged {changes.examined} papers with taxonomy {version} in {seconds:.1f}s "
               f"({rate:,.0f} papers/s): tags changed on {changes.changed}, "
               f"{changes.rewritten} rewritten ({changes.relabelled} of them only relabelled with the new "
               "taxonomy version; the rest with new evidence or scores)")
    removed = dict(changes.removed)
    added = dict(changes.added)
    for tag_id in sorted(set(added) | set(removed)):
        click.echo(f"  {tag_id:<28} +{added.get(tag_id, 0):<6} -{removed.get(tag_id, 0)}")


@cli.command()
@click.argument("pmid")
@click.pass_obj
@handle_errors
def explain(app: App, pmid: str) -> None:
    """Why a stored paper got its tags and relevance score: the sentences behind each, and those discounted."""
    if not pmid.isdigit() or len(pmid) > 9:
        raise UsageError(f"{pmid!r} is not a PMID: give the number, e.g. `monitor explain 31234567`")
    stored = app.store.paper(pmid)
    if stored is None:
        raise UsageError(f"PMID {pmid} is not stored: `monitor search` lists stored papers, "
                         "`monitor run` fetches new ones")
    click.echo(f"PMID {pmid}, tagged with taxonomy {app.taxonomy.version}")
    if stored.tagging is not None and stored.tagging.taxonomy_version != app.taxonomy.version:
        click.echo(f"(the stored tags come from taxonomy {stored.tagging.taxonomy_version}: run `monitor retag`)")
    click.echo(render_explanation(explain_paper(stored.article, app.taxonomy)), nl=False)


@cli.command()
@click.option("--runs", "limit", default=5, show_default=True, type=click.IntRange(1, 1000),
              help="How many recent runs to show.")
@click.pass_obj
@handle_errors
def status(app: App, limit: int) -> None:
    """Show the stored papers, each query's watermark, the last runs, the schedule and who holds the lease."""
    store, config = app.store, app.config
    click.echo(f"database: {store.engine.url.render_as_string(hide_password=True)}")
    click.echo(f"papers: {store.count_papers()} stored ({store.count_papers(include_deleted=True)} "
               "including withdrawn)")
    versions = store.taxonomy_versions()
    if versions:
        listed = ", ".join(f"{v or 'untagged'}: {n}" for v, n in sorted(versions.items(), key=lambda x: -x[1]))
        click.echo(f"tags: {listed}")
    states = {s.name: s for s in store.all_query_states()}
    click.echo("queries:")
    for q in config.queries:
        s = states.get(q.name)
        if s is None:
            click.echo(f"  {q.name}: never run (first run backfills from {q.since})")
        else:
            changed = "  [term changed: next run backfills]" if s.term != q.term else ""
            click.echo(f"  {q.name}: last success {s.last_success_at:%Y-%m-%d %H:%M} UTC, "
                       f"window {s.window_start}..{s.window_end}{changed}")
    runs = store.recent_runs(limit)
    click.echo("recent runs:" if runs else "recent runs: none yet (run `monitor run`)")
    for r in runs:
        took = f", {(r.finished_at - r.started_at).total_seconds():.1f}s" if r.finished_at else ""
        click.echo(f"  #{r.id} {r.started_at:%Y-%m-%d %H:%M} UTC  {r.status}{took}")
        for qr in r.queries:
            note = f"  {qr.message}" if qr.message and qr.status != "ok" else ""
            click.echo(f"      {qr.name}: {qr.status}, found {qr.found}, new {qr.new}, updated {qr.updated}{note}")
    _echo_schedule(app)


def _echo_schedule(app: App) -> None:
    """`monitor status`'s daemon sections: the schedule with its next fires, each job's last fire, the lease."""
    from .lease import describe_holder
    from .schedule import next_fire_times, trigger_for

    cfg, now = app.config.schedule, app.clock.now()
    states = app.store.job_states()
    zone = ZoneInfo(cfg.timezone)
    click.echo(f"schedule ({cfg.timezone}; `monitor start` runs it):")
    jobs = [("cycle", cfg.cycle), ("digest", cfg.digest if app.config.digest is not None else None)]
    for name, job in jobs:
        state = states.get(name)
        if job is None:
            click.echo(f"  {name}: off (no [digest] table)")
            continue
        if job.every_seconds is not None:
            base = job.describe()
            if state is not None:
                nxt = state.last_fire_at + dt.timedelta(seconds=job.every_seconds)
                fires = [nxt] if nxt > now else []
                upcoming = _local(nxt, zone) if nxt > now else "due now (is the daemon running?)"
            else:
                fires, upcoming = [], "when `monitor start` starts"
        else:
            base = f"cron '{job.cron}'"
            fires = next_fire_times(trigger_for(job, now), now, 3)
            upcoming = ", ".join(_local(f, zone) for f in fires)
        click.echo(f"  {name}: {base}; next: {upcoming}")
        if state is not None:
            finished = (f", finished {state.last_finished_at:%Y-%m-%d %H:%M:%S} UTC" if state.last_finished_at
                        else "")
            message = f" ({state.message})" if state.message and state.outcome not in ("ok", "sent") else ""
            click.echo(f"      last fire {state.last_fire_at:%Y-%m-%d %H:%M:%S} UTC{finished}: "
                       f"{state.outcome or 'running'}{message}")
        else:
            click.echo("      never fired")
    from .lease import CYCLE, DIGEST

    real_now = SystemClock().now()  # leases live in real time, whatever MONITOR_NOW says
    click.echo(f"cycle lease: {describe_holder(app.store.lease(CYCLE), real_now)}")
    if app.config.digest is not None:
        click.echo(f"digest lease: {describe_holder(app.store.lease(DIGEST), real_now)}")


def _local(when: dt.datetime, zone: ZoneInfo) -> str:
    local = when.astimezone(zone)
    return f"{local:%Y-%m-%d %H:%M %Z} ({when.astimezone(dt.UTC):%H:%M} UTC)"


@cli.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="Write the feeds here instead of the configured folder (feeds.out).")
@click.pass_obj
@handle_errors
def feed(app: App, out: Path | None) -> None:
    """Write every RSS feed, its archive pages, feeds.opml and index.html (unchanged files are left alone)."""
    _echo_publish(app.publish(out))


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (loopback by default; 0.0.0.0 exposes the feeds to your network).")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0: any free port, printed on start-up).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="Serve this folder instead of the configured one (feeds.out).")
@click.pass_obj
@handle_errors
def serve(app: App, host: str, port: int, out: Path | None) -> None:
    """Serve the feeds, feeds.opml and index.html over HTTP (with ETag/Last-Modified and gzip).

    The feeds are written once on start-up; after that whatever `monitor run` writes is served at once."""
    folder = out or app.config.feeds.out
    _echo_publish(app.publish(folder))
    server = FeedServer(folder, host=host, port=port)
    app.close()  # the database is not needed while serving files

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    click.echo(f"serving {folder} on {server.url} (main feed: {server.url}main.xml; Ctrl-C to stop)")
    sys.stdout.flush()
    try:
        server.serve_forever()
    finally:
        server.close()
    click.echo("stopped")


@cli.command()
@click.option("--dry-run", is_flag=True,
              help="Build the digest that is due and write it (--out, else standard output) without sending it "
                   "or marking anything sent.")
@click.option("--out", metavar="FILE.eml", help="With --dry-run or --since: write the message here (atomically).")
@click.option("--since", metavar="YYYY-MM-DD",
              help="Preview every paper first found since this date, sent before or not (implies --dry-run).")
@click.option("--force", is_flag=True, help="Send now even if the last digest was sent less than interval_days ago.")
@click.pass_obj
@handle_errors
def digest(app: App, dry_run: bool, out: str | None, since: str | None, force: bool) -> None:
    """Build and send the weekly digest email of new papers (if one is due)."""
    from . import digest as digests

    start = parse_date(since, "--since")
    if start and start > app.clock.now().date():
        raise UsageError(f"--since: {start} is in the future")
    preview = dry_run or start is not None
    if out and not preview:
        raise UsageError("--out: only with --dry-run or --since (a sent digest is not written to a file)")
    if force and preview:
        raise UsageError("--force: only when sending (not with --dry-run or --since)")
    config = app.config
    cfg = digests.require(config)
    vocabulary = digests.Vocabulary.from_taxonomy(app.taxonomy)
    if preview:
        if start is not None:
            built, message = digests.preview(config, app.store, app.clock, vocabulary, start)
        else:
            built, message = digests.build_due(config, app.store, app.clock, vocabulary)
        data = bytes(message)
        if out is None:
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
        else:
            with atomic_write(Path(out)) as fh:
                fh.write(data.decode("ascii"))
        click.echo(f"{'wrote' if out else 'printed'} the digest{' to ' + out if out else ''}: "
                   f"{_digest_counts(built)}; nothing was sent or marked sent", err=True)
        return
    mailer = digests.SmtpMailer(cfg)
    report = digests.send_due(config, app.store, app.clock, mailer, vocabulary, force=force)
    if report.status == "not_due":
        assert report.last_sent is not None and report.next_due is not None
        click.echo(f"no digest due: the last one (up to {report.last_sent:%Y-%m-%d %H:%M} UTC) was sent; the next is "
                   f"due from {report.next_due:%Y-%m-%d %H:%M} UTC (--force sends one now)")
        return
    assert report.digest is not None
    click.echo(f"sent digest #{report.digest_id} to {len(report.recipients) - len(report.refused)} of "
               f"{len(report.recipients)} recipients: {_digest_counts(report.digest)}")
    if report.refused:
        click.echo(f"monitor: warning: the SMTP server refused {', '.join(report.refused)}; check digest.to",
                   err=True)


def _digest_counts(d: Any) -> str:
    start, end = (x.date() for x in d.period)
    return (f"{d.new_count} new relevant papers ({len(d.overflow)} of them only linked), "
            f"{len(d.not_relevant)} judged not relevant, {len(d.status_changes)} status changes, "
            f"{start} to {end}")


# ignore_unknown_options: `monitor search probiotic -mouse` excludes "mouse" instead of failing as an option
# (and no -h, which `-hamster` would trigger: --help only).
@cli.command(context_settings={"ignore_unknown_options": True, "help_option_names": ["--help"]})
@click.argument("text", nargs=-1)
@paper_filter_options
@click.option("--sort", type=click.Choice(["relevance", "date"]), default=None,
              help="Best match first (default with TEXT) or newest publication first (default without).")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(0, None),
              help="At most this many papers; 0 for every match.")
@click.option("--format", "fmt", type=click.Choice(SEARCH_FORMATS), default="table", show_default=True,
              help="table for reading; json/jsonl/csv for tools; ris/bibtex/csl-json for reference managers.")
@click.option("--out", metavar="FILE", help="Write here (atomically) instead of standard output.")
@click.pass_obj
@handle_errors
def search(app: App, text: tuple[str, ...], sort: str | None, limit: int, fmt: str, out: str | None,
           **filter_options: Any) -> None:
    """Search the stored papers: words (all must appear), "exact phrases", OR, -word to exclude, prefix*,
    (grouping) and title:/abstract:/keyword:/mesh:/author: fields; GLP-1 or IL-17 work as written.
    Without TEXT, list the papers that pass the filters, newest first."""
    words = " ".join(text).strip()
    if not words and not any(v for k, v in filter_options.items() if k != "date_field"):
        raise UsageError("give words to search for, or at least one filter (see monitor search --help)")
    if fmt == "table" and out is not None:
        raise UsageError("--out needs a machine format (--format json, csv, ris …), not the table")
    if words:
        parse_query(words)  # a query that cannot run fails before the database is opened
    request = SearchRequest(text=words or None, filters=build_filter(app, **filter_options), sort=sort,
                            limit=limit or None)
    hits = run_search(app.store, request)
    if fmt == "table":
        from rich.console import Console

        console = Console(file=sys.stdout)
        for renderable in render_table(hits, limit=request.limit):
            console.print(renderable)
        return
    if out is None:
        write_hits(hits, fmt, sys.stdout)
        return
    with atomic_write(Path(out)) as fh:
        n = write_hits(hits, fmt, fh)
    click.echo(f"wrote {n} papers to {out}", err=True)


@cli.command()
@click.pass_obj
@handle_errors
def start(app: App) -> None:
    """Run as a service: the monitoring cycle and the weekly digest on the [schedule] of queries.toml, one
    cycle at a time across processes, until SIGTERM or Ctrl-C (exit 0). Log lines (key=value) go to stderr."""
    import threading

    from . import digest as digests
    from .lease import DIGEST as DIGEST_LEASE
    from .scheduler import Daemon, Jobs, configure_logging, stop_aware_sleep

    # MONITOR_NOW starts the clock there and lets it run: a frozen clock would stop the schedule.
    app._clock = running_clock_from_env()
    config = app.config  # an invalid [schedule] (cron, timezone, interval) is a ConfigError: exit 2 here
    app.tagger()  # so is a broken taxonomy
    digest_cfg = digests.require(config) if config.digest is not None else None
    configure_logging(app.clock, verbose=app.verbose)
    stop = threading.Event()
    client = app.client(sleep=stop_aware_sleep(stop))  # retry waits end at once on SIGTERM
    cycle_lease = app.lease(CYCLE_LEASE, "monitor start (daemon cycle)")

    def cycle(should_stop: Callable[[], str | None], on_query: Callable[[QueryReport], None],
              on_cycle: Callable[[Any], None]) -> Any:
        return app.run_cycle(purpose="monitor start", client=client, lease=cycle_lease, wait=0.0,
                             stop=should_stop, on_query=on_query, on_cycle=on_cycle)

    def digest() -> tuple[str, dict[str, Any]]:
        assert digest_cfg is not None
        vocabulary = digests.Vocabulary.from_taxonomy(app.taxonomy)
        with app.lease(DIGEST_LEASE, "monitor start (digest)").held():
            report = digests.send_due(config, app.store, app.clock, digests.SmtpMailer(digest_cfg), vocabulary)
        if report.status == "not_due":
            return "not_due", {"last_sent": report.last_sent, "next_due": report.next_due}
        return report.status, {"digest_id": report.digest_id, "recipients": len(report.recipients),
                               "refused": len(report.refused) or None,
                               "papers": report.digest.new_count if report.digest else None}

    daemon = Daemon(config, app.store, app.clock, Jobs(cycle, digest if digest_cfg else None), cycle_lease,
                    stop_event=stop)
    sys.exit(daemon.run())


# ------------------------------------------------------------------ progress


class _PlainProgress:
    """Log lines instead of a bar when stderr is not a terminal (cron, CI, systemd)."""

    def __init__(self) -> None:
        self.totals: dict[str, int] = {}
        self.done: dict[str, int] = {}

    def begin(self, query: str, total: int) -> None:
        self.totals[query] = total
        self.done[query] = 0
        if total > 500:
            click.echo(f"{query}: fetching {total} records", err=True)

    def advance(self, query: str, n: int) -> None:
        self.done[query] = self.done.get(query, 0) + n
        total = self.totals.get(query, 0)
        if total > 500:
            click.echo(f"{query}: {min(self.done[query], total)}/{total} records", err=True)

    def end(self, query: str) -> None:
        self.totals.pop(query, None)


class _RichProgress:
    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeRemainingColumn(), console=Console(stderr=True), transient=True)
        self.tasks: dict[str, Any] = {}

    def begin(self, query: str, total: int) -> None:
        if query in self.tasks:
            self.bar.update(self.tasks[query], total=total, completed=0)
        else:
            self.tasks[query] = self.bar.add_task(query, total=total)

    def advance(self, query: str, n: int) -> None:
        if query in self.tasks:
            self.bar.advance(self.tasks[query], n)

    def end(self, query: str) -> None:
        task = self.tasks.pop(query, None)
        if task is not None:
            self.bar.remove_task(task)


@contextlib.contextmanager
def _progress() -> Iterator[Progress]:
    if sys.stderr.isatty():
        progress = _RichProgress()
        with progress.bar:
            yield progress
    else:
        yield _PlainProgress()



def main(argv: list[str] | None = None) -> None:
    """Console entry point: click's own usage errors become one line and exit 2, like ours."""
    try:
        cli.main(args=argv, prog_name="monitor", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"monitor: error: {exc.format_message()} (see monitor --help)", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("monitor: interrupted", err=True)
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
