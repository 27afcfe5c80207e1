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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

import click

from . import __version__
from .errors import MonitorError, UsageError
from .formats import EXPORT_FORMATS, SEARCH_FORMATS, printable

if TYPE_CHECKING:  # the rest is imported where a command needs it: `monitor --help` loads almost nothing
    from .app import App, Overrides
    from .feeds import PublishReport
    from .types import QueryReport, StatusReport
    from .web.server import WebServer

log = logging.getLogger("monitor")
F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Session:
    """What a command receives: the app and how the user asked for output."""

    app: App
    debug: bool = False
    verbose: int = 0


def handle_errors(func: F) -> F:
    """Turn our errors into one stderr line and the right exit code; close the app afterwards."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        session: Session = click.get_current_context().obj
        try:
            return func(*args, **kwargs)
        except MonitorError as exc:
            if session.debug:
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
            if session.debug:
                raise
            click.echo(f"monitor: internal error: {type(exc).__name__}: {exc} (rerun with --debug and "
                       "report it)", err=True)
            sys.exit(1)
        finally:
            session.app.close()

    return wrapper  # type: ignore[return-value]


def command(group: click.Group, **settings: Any) -> Callable[[Callable[..., None]], click.Command]:
    """A subcommand that receives the :class:`App` first and has our error handling."""

    def decorate(func: Callable[..., None]) -> click.Command:
        @functools.wraps(func)
        def with_app(*args: Any, **kwargs: Any) -> None:
            session: Session = click.get_current_context().obj
            func(session.app, *args, **kwargs)

        return group.command(**settings)(handle_errors(with_app))

    return decorate


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
    _configure_logging(verbose, debug)
    from .app import App, Overrides

    # Tests pass Overrides (an in-process NCBI, a virtual clock) as the context object.
    overrides = ctx.obj if isinstance(ctx.obj, Overrides) else Overrides()
    ctx.obj = Session(App(config_path, overrides), debug=debug, verbose=verbose)


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted (a command run in-process by a test
    gets its own stderr each time)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:  # logging must never take the command down
            self.handleError(record)


def _configure_logging(verbose: int, debug: bool) -> None:
    root = logging.getLogger()
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    level = logging.WARNING - 10 * verbose if not debug else logging.DEBUG
    root.setLevel(max(level, logging.DEBUG))
    logging.getLogger("httpx").setLevel(logging.WARNING if verbose < 2 and not debug else logging.DEBUG)


# ------------------------------------------------------------------ run


@command(cli)
@click.option("--query", "query_names", multiple=True, metavar="NAME", help="Run only this query (repeatable).")
@click.option("--since", metavar="YYYY-MM-DD", help="Search from this Entrez date instead of the usual window.")
@click.option("--wait", "wait", default=0.0, show_default=True, type=click.FloatRange(0, 86400), metavar="SECONDS",
              help="If another process (the daemon, another run) is running a cycle, wait up to this long for it "
                   "to finish; without it, exit 1 at once naming that process.")
def run(app: App, query_names: tuple[str, ...], since: str | None, wait: float) -> None:
    """Run one monitoring cycle: search every query, store new and revised papers."""
    start = parse_date(since, "--since")
    queries = app.select_queries(query_names)
    width = max(len(q.name) for q in [*queries, app.config.queries[0]])
    with _progress() as progress:

        def show(report: QueryReport) -> None:
            progress.echo(_report_line(report, width))

        result = app.run_cycle(purpose="monitor run", wait=wait, queries=queries, since=start, on_query=show,
                               progress=progress)
    report = result.report
    from .cycle import summarize

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
    if r.missing:
        counts += f"  MISSING {r.missing}"
    status = r.status.upper() if r.status != "ok" else "ok"
    line = f"{r.name:<{width}}  {status:<8}  {counts}"
    if r.window and not total:
        line += f"  [{r.window[0]}..{r.window[1]}]"
    if r.message and r.status != "ok":
        line += f"\n{'':<{width}}  {printable(r.message)}"
    elif r.message:
        line += f"  ({printable(r.message)})"
    return line


def _echo_publish(report: PublishReport) -> None:
    w = report.write
    click.echo(f"feeds: {report.feeds} feeds, {report.documents} documents (with archive pages) for "
               f"{report.papers} relevant papers and {report.status_items} status changes in {w.out}: "
               f"{report.rendered} rendered, {w.written} files written, {w.removed} removed")


# ------------------------------------------------------------------ export and search


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


@command(cli)
@click.option("--format", "fmt", type=click.Choice(sorted(EXPORT_FORMATS)), default="jsonl", show_default=True)
@click.option("--out", metavar="FILE", help="Write here (atomically) instead of standard output.")
@click.option("--include-deleted/--exclude-deleted", default=True, show_default=True,
              help="Papers NLM withdrew (DeleteCitation) are included, flagged deleted.")
@paper_filter_options
def export(app: App, fmt: str, out: str | None, include_deleted: bool, **filter_options: Any) -> None:
    """Write every stored paper with all parsed fields and the queries that found it (or, with filters,
    the papers that pass them; see `monitor search --help`)."""
    from .export import WRITERS

    papers = app.papers(app.build_filter(**filter_options), include_deleted=include_deleted)
    writer = WRITERS[fmt]
    if out is None:
        writer(papers, sys.stdout)
        return
    with atomic_write(Path(out)) as fh:
        n = writer(papers, fh)
    click.echo(f"wrote {n} papers to {out}", err=True)


@contextlib.contextmanager
def atomic_write(path: Path) -> Iterator[TextIO]:
    """Write to a temporary file beside ``path`` and rename it into place only when complete. The file gets
    the permissions an ordinary new file would (the umask), or keeps those of the file it replaces (the
    temporary file is created private)."""
    if path.is_dir():
        raise UsageError(f"--out: {path} is a directory; give a file name")
    if not path.parent.exists():
        raise UsageError(f"--out: folder {path.parent} does not exist")
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            yield fh
            os.fchmod(fh.fileno(), mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# ignore_unknown_options: `monitor search probiotic -mouse` excludes "mouse" instead of failing as an option
# (and no -h, which `-hamster` would trigger: --help only).
@command(cli, context_settings={"ignore_unknown_options": True, "help_option_names": ["--help"]})
@click.argument("text", nargs=-1)
@paper_filter_options
@click.option("--sort", type=click.Choice(["relevance", "date"]), default=None,
              help="Best match first (default with TEXT) or newest publication first (default without).")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(0, None),
              help="At most this many papers; 0 for every match.")
@click.option("--format", "fmt", type=click.Choice(SEARCH_FORMATS), default="table", show_default=True,
              help="table for reading; json/jsonl/csv for tools; ris/bibtex/csl-json for reference managers.")
@click.option("--out", metavar="FILE", help="Write here (atomically) instead of standard output.")
def search(app: App, text: tuple[str, ...], sort: str | None, limit: int, fmt: str, out: str | None,
           **filter_options: Any) -> None:
    """Search the stored papers: words (all must appear), "exact phrases", OR, -word to exclude, prefix*,
    (grouping) and title:/abstract:/keyword:/mesh:/author: fields; GLP-1 or IL-17 work as written.
    Without TEXT, list the papers that pass the filters, newest first."""
    from .search import SearchRequest, parse_query, render_table, write_hits

    words = " ".join(text).strip()
    if not words and not any(v for k, v in filter_options.items() if k != "date_field"):
        raise UsageError("give words to search for, or at least one filter (see monitor search --help)")
    if fmt == "table" and out is not None:
        raise UsageError("--out needs a machine format (--format json, csv, ris …), not the table")
    if words:
        parse_query(words)  # a query that cannot run fails before the database is opened
    request = SearchRequest(text=words or None, filters=app.build_filter(**filter_options), sort=sort,
                            limit=limit or None)
    hits = app.search(request)
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


# ------------------------------------------------------------------ retag and status


@command(cli)
def retag(app: App) -> None:
    """Tag every stored paper again with the current taxonomy; report what changed per tag."""
    version = app.taxonomy.version
    total = app.store.count_papers()
    began = time.perf_counter()
    with _progress() as progress:
        progress.begin("retag", total)
        changes = app.retag(progress=lambda n: progress.advance("retag", n))
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


@command(cli)
@click.argument("pmid")
def explain(app: App, pmid: str) -> None:
    """Why a stored paper got its tags and relevance score: the sentences behind each, and those discounted."""
    from .explain import render_text

    explanation, note = app.explain(pmid)
    click.echo(f"PMID {pmid}, tagged with taxonomy {app.taxonomy.version}")
    if note:
        click.echo(note)
    click.echo(render_text(explanation), nl=False)


@command(cli)
@click.option("--runs", "limit", default=5, show_default=True, type=click.IntRange(1, 1000),
              help="How many recent runs to show.")
def status(app: App, limit: int) -> None:
    """Show the stored papers, each query's watermark, the last runs, the schedule and who holds the lease."""
    for line in status_lines(app.status(limit)):
        click.echo(line)


def status_lines(s: StatusReport) -> Iterator[str]:
    """`monitor status` as text."""
    yield f"database: {s.database}"
    yield f"papers: {s.papers} stored ({s.papers_with_withdrawn} including withdrawn)"
    if s.taxonomy_versions:
        yield "tags: " + ", ".join(f"{v or 'untagged'}: {n}" for v, n in s.taxonomy_versions)
    yield "queries:"
    for q in s.queries:
        if q.state is None:
            yield f"  {q.name}: never run (first run backfills from {q.since})"
        else:
            changed = "  [term changed: next run backfills]" if q.term_changed else ""
            yield (f"  {q.name}: last success {q.state.last_success_at:%Y-%m-%d %H:%M} UTC, "
                   f"window {q.state.window_start}..{q.state.window_end}{changed}")
    yield "recent runs:" if s.runs else "recent runs: none yet (run `monitor run`)"
    for r in s.runs:
        took = f", {(r.finished_at - r.started_at).total_seconds():.1f}s" if r.finished_at else ""
        yield f"  #{r.id} {r.started_at:%Y-%m-%d %H:%M} UTC  {r.status}{took}"
        for qr in r.queries:
            note = f"  {printable(qr.message)}" if qr.message and qr.status != "ok" else ""
            yield f"      {qr.name}: {qr.status}, found {qr.found}, new {qr.new}, updated {qr.updated}{note}"
    yield from _schedule_lines(s)


def _schedule_lines(s: StatusReport) -> Iterator[str]:
    """`monitor status`'s daemon sections: the schedule with its next fires, each job's last fire, the lease."""
    from zoneinfo import ZoneInfo

    from .lease import describe_holder

    zone = ZoneInfo(s.timezone)
    yield f"schedule ({s.timezone}; `monitor start` runs it):"
    for job in s.jobs:
        if job.schedule is None:
            yield f"  {job.name}: off (no [digest] table)"
            continue
        if not job.every:
            upcoming = ", ".join(_local(f, zone) for f in job.next_fires)
        elif job.state is None:
            upcoming = "when `monitor start` starts"
        else:
            upcoming = "due now (is the daemon running?)" if job.due_now else _local(job.next_fires[0], zone)
        yield f"  {job.name}: {job.schedule}; next: {upcoming}"
        state = job.state
        if state is None:
            yield "      never fired"
            continue
        finished = (f", finished {state.last_finished_at:%Y-%m-%d %H:%M:%S} UTC" if state.last_finished_at else "")
        message = f" ({printable(state.message)})" if state.message and state.outcome not in ("ok", "sent") else ""
        yield (f"      last fire {state.last_fire_at:%Y-%m-%d %H:%M:%S} UTC{finished}: "
               f"{state.outcome or 'running'}{message}")
    for name, row in s.leases:
        yield f"{name} lease: {describe_holder(row, s.real_now)}"


def _local(when: dt.datetime, zone: Any) -> str:
    local = when.astimezone(zone)
    return f"{local:%Y-%m-%d %H:%M %Z} ({when.astimezone(dt.UTC):%H:%M} UTC)"


# ------------------------------------------------------------------ feeds


@command(cli)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="Write the feeds here instead of the configured folder (feeds.out).")
def feed(app: App, out: Path | None) -> None:
    """Write every RSS feed, its archive pages, feeds.opml and index.html (unchanged files are left alone)."""
    _echo_publish(app.publish(out))


@command(cli)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (loopback by default; 0.0.0.0 exposes the app to your network).")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0: any free port, printed on start-up).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="Serve the feeds from this folder instead of the configured one (feeds.out).")
def serve(app: App, host: str, port: int, out: Path | None) -> None:
    """Serve the web app (search, paper pages, evidence map, trends, status, JSON API) and the feeds,
    feeds.opml and index.html (with ETag/Last-Modified and gzip). Read-only.

    The feeds are written once on start-up; after that whatever `monitor run` writes is served at once. With
    a PostgreSQL database the feeds are served from the database, so every host serves what the last cycle
    published, wherever it ran (written on start-up only if nothing was published yet)."""
    from .web.server import WebServer

    folder = out or app.config.feeds.out
    if not (app.store.shared and app.store.document_meta("index.html") is not None):  # nothing published yet
        _echo_publish(app.publish(folder))
    server = WebServer(app.web_app(folder), host=host, port=port)
    _serve_until_stopped(server, f"the database {app.store.url}" if app.store.shared else folder)


def _serve_until_stopped(server: WebServer, folder: Path | str) -> None:
    """Serve until SIGTERM or Ctrl-C (exit 0), then close the server."""

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    click.echo(f"serving the web app on {server.url} (feeds from {folder}: {server.url}main.xml; Ctrl-C to stop)")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    click.echo("stopped")


@command(cli)
@click.option("--dir", "folder", type=click.Path(file_okay=False, path_type=Path), default=Path("monitor-demo"),
              show_default=True, help="The demo folder (its config, database, feeds and digest preview).")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Serve the feeds on this port (default 8080, or any free port if 8080 is taken; 0: any free).")
@click.option("--no-serve", is_flag=True, help="Write the folder and stop (do not serve the feeds).")
def demo(app: App, folder: Path, port: int | None, no_serve: bool) -> None:
    """Try the whole monitor offline in under a minute: a monitoring cycle over real gut-skin records bundled
    with it (through a built-in NCBI stand-in), their tags, the RSS feeds and a digest preview in a folder of
    its own, then the feeds served until Ctrl-C. Running it again changes nothing."""
    from . import demo as demos

    started = time.perf_counter()
    server, slot, note = (None, None, None) if no_serve else demos.open_server(port)
    try:
        url = server.url if server else f"http://127.0.0.1:{port or demos.DEFAULT_PORT}/"
        report = demos.run(folder, url, started=started)
    except BaseException:
        if server is not None:
            server.close()
        raise
    for line in demos.describe(report):
        click.echo(line)
    if server is not None and slot is not None:
        if note:
            click.echo(f"({note})")
        slot.target, served = demos.web_app(report)
        try:
            _serve_until_stopped(server, report.folder / "feeds")
        finally:
            served.close()


# ------------------------------------------------------------------ digest


@command(cli)
@click.option("--dry-run", is_flag=True,
              help="Build the digest that is due and write it (--out, else standard output) without sending it "
                   "or marking anything sent.")
@click.option("--out", metavar="FILE.eml", help="With --dry-run or --since: write the message here (atomically).")
@click.option("--since", metavar="YYYY-MM-DD",
              help="Preview every paper first found since this date, sent before or not (implies --dry-run).")
@click.option("--force", is_flag=True, help="Send now even if the last digest was sent less than interval_days ago.")
def digest(app: App, dry_run: bool, out: str | None, since: str | None, force: bool) -> None:
    """Build and send the weekly digest email of new papers (if one is due)."""
    start = parse_date(since, "--since")
    preview = dry_run or start is not None
    if out and not preview:
        raise UsageError("--out: only with --dry-run or --since (a sent digest is not written to a file)")
    if force and preview:
        raise UsageError("--force: only when sending (not with --dry-run or --since)")
    if preview:
        built, message = app.digest_preview(start)
        data = bytes(message)
        if out is None:
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
        else:
            with atomic_write(Path(out)) as fh:
                fh.write(data.decode("ascii"))
        click.echo(f"{'wrote' if out else 'printed'} the digest{' to ' + out if out else ''}: "
                   f"{_digest_counts(built)}; nothing was sent or marked sent", err=True)
        if app.config.digest is None:
            click.echo("(no [digest] table in the config: previewed with the default settings; add one to send "
                       "digests, see README 'Weekly digest')", err=True)
        return
    report = app.send_digest(force=force)
    if report.status == "not_due":
        assert report.last_sent is not None and report.next_due is not None
        click.echo(f"no digest due: the last one (up to {report.last_sent:%Y-%m-%d %H:%M} UTC) was sent; the next is "
                   f"due from {report.next_due:%Y-%m-%d %H:%M} UTC (--force sends one now)")
        return
    delivered = f"{len(report.recipients) - len(report.refused)} of {len(report.recipients)} recipients"
    if report.status == "resumed":
        click.echo(f"sent digest #{report.digest_id} again to {delivered}, exactly as built before it was "
                   f"interrupted (same Message-ID, so a copy the server already had is shown once): "
                   f"{report.subject}; run `monitor digest` again for a newer one if due")
    else:
        assert report.digest is not None
        click.echo(f"sent digest #{report.digest_id} to {delivered}: {_digest_counts(report.digest)}")
    if report.refused:
        click.echo(f"monitor: warning: the SMTP server refused {', '.join(report.refused)}; check digest.to",
                   err=True)


def _digest_counts(d: Any) -> str:
    start, end = (x.date() for x in d.period)
    return (f"{d.new_count} new relevant papers ({len(d.overflow)} of them only linked), "
            f"{len(d.not_relevant)} judged not relevant, {len(d.status_changes)} status changes, "
            f"{start} to {end}")


# ------------------------------------------------------------------ the daemon


@command(cli)
def start(app: App) -> None:
    """Run as a service: the monitoring cycle and the weekly digest on the [schedule] of queries.toml, one
    cycle at a time across processes, until SIGTERM or Ctrl-C (exit 0). Log lines (key=value) go to stderr."""
    from .scheduler import configure_logging

    daemon = app.daemon()  # an invalid [schedule], taxonomy or [digest] is a ConfigError: exit 2 here
    session: Session = click.get_current_context().obj
    configure_logging(app.clock, verbose=session.verbose)
    sys.exit(daemon.run())


@cli.group()
def queries() -> None:
    """Check and preview the PubMed queries against NCBI before a run depends on them."""


@command(queries, name="check")
@click.argument("names", nargs=-1, metavar="[NAME]...")
@click.option("--term", metavar="TERM",
              help="Check this term instead ({block} references expanded; with one NAME, that query's fallbacks).")
@click.option("--years", default=0, show_default=True, type=click.IntRange(0, 30), metavar="N",
              help="Also count each of the last N calendar years by Entrez date (one more request per year).")
def queries_check(app: App, names: tuple[str, ...], term: str | None, years: int) -> None:
    """Ask NCBI for each query's count only; show its translation, every warning with the fix to try, and
    whether a run would refuse it as degraded (exit 1 if any would be)."""
    from .workbench import render_check

    reports = app.check_queries(names, term, years=years)
    for report in reports:
        click.echo("\n".join(render_check(report)))
    refused = [r.name for r in reports if r.refused]
    if refused:
        click.echo(f"monitor: error: {len(refused)} of {len(reports)} would be refused as degraded "
                   f"({', '.join(refused)}): fix the term or add a fallback (see the lines above)", err=True)
        sys.exit(1)


@command(queries, name="preview")
@click.argument("name")
@click.option("--term", metavar="TERM",
              help="The term to try ({block} references expanded); default: the term now in queries.toml.")
@click.option("--sample", default=5, show_default=True, type=click.IntRange(0, 50),
              help="Titles of this many of the papers the term would bring in.")
def queries_preview(app: App, name: str, term: str | None, sample: int) -> None:
    """What changing a query's term would change: count now vs before, stored papers it would no longer
    match, new papers it would bring in, and whether the next run would backfill (nothing is stored)."""
    from .workbench import render_preview

    report = app.preview_query(name, term, sample=sample)
    click.echo("\n".join(render_preview(report)))
    if report.check.refused:
        sys.exit(1)


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

    def echo(self, line: str) -> None:
        click.echo(line)


class _RichProgress:
    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as Bar

        self.bar = Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
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

    def echo(self, line: str) -> None:
        """A result line on stdout on a line of its own: the bar (on stderr, the same terminal) is taken
        down while it is written and drawn again below it."""
        self.bar.stop()
        click.echo(line)
        self.bar.start()


@contextlib.contextmanager
def _progress() -> Iterator[_PlainProgress | _RichProgress]:
    if sys.stderr.isatty():
        progress = _RichProgress()
        with progress.bar:
            yield progress
    else:
        yield _PlainProgress()


def main(argv: list[str] | None = None, overrides: Overrides | None = None) -> None:
    """Console entry point: click's own usage errors become one line and exit 2, like ours. ``overrides``
    (tests only) replace NCBI, time and sleep for an in-process run."""
    try:
        cli.main(args=argv, prog_name="monitor", standalone_mode=False, obj=overrides)
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
