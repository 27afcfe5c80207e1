"""`monitor demo`: the whole product, offline, on the bundled sample of real gut–skin records.

Owns the demo folder and the run through it: a self-contained folder (its own ``queries.toml`` — the shipped
queries, searched from before the sample's oldest record — a copy of the shipped ``taxonomy.toml``, its own
SQLite database, feeds and ``digest.eml``), then one real monitoring cycle (:meth:`monitor.app.App.run_cycle`,
the code `monitor run` runs) against the built-in E-utilities stand-in (:mod:`monitor.standin`) as an
in-process httpx transport, evaluating each query's PubMed syntax over the sample, then the digest preview
(what `monitor digest --dry-run --since` writes). The rate limiter runs on virtual time, as in the tests: the
stand-in still checks NCBI's 3 requests a second, but nobody waits for an in-process server. Serving the
feeds is the CLI's part. Running it again changes nothing but the time stamps of a new run.

The demo never reads the environment's ``MONITOR_DB_URL`` or other overrides: it must not write into the
user's real database.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import time
import tomllib
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UsageError
from .types import PaperFilter, StoredPaper

if TYPE_CHECKING:
    from .app import App, CycleResult
    from .digest import Digest
    from .web.server import Deferred, WebServer

SAMPLE = Path(__file__).resolve().parent / "sample"
SHIPPED_QUERIES = SAMPLE / "queries.toml"  # the repository's queries.toml and taxonomy.toml (symlinks)
SHIPPED_TAXONOMY = SAMPLE / "taxonomy.toml"
# Every query searches from here: before the sample's oldest record (1999), whatever its shipped `since`.
DEMO_SINCE = dt.date(1990, 1, 1)
# Where `python -m monitor.standin` listens by default: the demo's config points there, so the folder also
# works with a stand-in started by hand (`monitor --config DIR/queries.toml run`).
STANDIN_URL = "http://127.0.0.1:8081/entrez/eutils"
DIGEST_FILE = "digest.eml"
HEADER = """\
# The `monitor demo` folder's configuration, written by `monitor demo` (it rewrites this file on every run).
# The queries, blocks and fallbacks are the shipped queries.toml's; every query searches from {since},
# before the oldest record of the bundled sample. `monitor demo` runs them against the built-in
# E-utilities stand-in in-process. Any command works on this folder with --config, e.g.
#   monitor --config {config} search probiotic
# and `monitor run` does too once the stand-in runs by hand (`python -m monitor.standin`, port 8081).
"""


@dataclass(frozen=True, slots=True)
class QueryCount:
    """Which papers of the store a query found: how many, and how many of them are gut–skin relevant."""

    name: str
    papers: int
    relevant: int


@dataclass(frozen=True, slots=True)
class DemoReport:
    """What one demo run did: where, the cycle's report and feeds, the stored and relevant papers, the
    digest preview and how long it all took."""

    folder: Path
    config: Path
    records: int  # records in the bundled sample
    cycle: CycleResult
    stored: int
    relevant: int
    per_query: tuple[QueryCount, ...]
    digest: Digest
    digest_path: Path
    digest_since: dt.date
    seconds: float


class VirtualTime:
    """A monotonic clock that moves only when someone sleeps on it: the rate limiter's waits advance it."""

    def __init__(self, start: float = 1_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self._now += max(0.0, seconds)


# ------------------------------------------------------------------ the folder


def demo_settings(shipped: Mapping[str, Any], feeds_url: str) -> dict[str, Any]:
    """The demo's configuration as TOML data: the shipped one's, with its own storage, feeds and stand-in,
    every query from :data:`DEMO_SINCE`, and no ``[digest]`` table (the demo previews, it never sends)."""
    data = {key: value for key, value in shipped.items() if key != "digest"}
    data["since"] = DEMO_SINCE
    data["entrez"] = {**shipped.get("entrez", {}), "base_url": STANDIN_URL, "email": ""}
    data["storage"] = {"url": "sqlite:///db/monitor.sqlite3"}
    data["tagging"] = {"taxonomy": "taxonomy.toml"}
    data["feeds"] = {**shipped.get("feeds", {}), "out": "feeds", "base_url": feeds_url}
    data["queries"] = [{**query, "since": DEMO_SINCE} for query in shipped.get("queries", [])]
    return data


def write_folder(folder: Path, feeds_url: str) -> Path:
    """Write the demo's ``queries.toml`` and ``taxonomy.toml`` into ``folder`` (each only if it changed);
    returns the config's path."""
    config = folder / "queries.toml"
    if config.exists() and not config.read_text(encoding="utf-8", errors="replace").startswith(HEADER[:60]):
        raise UsageError(f"--dir: {config} exists and was not written by monitor demo; give a new folder (or "
                         "an earlier demo's) so no configuration of yours is overwritten")
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--dir: {folder} is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    shipped = tomllib.loads(SHIPPED_QUERIES.read_text(encoding="utf-8"))
    text = HEADER.format(since=DEMO_SINCE, config=config) + "\n" + toml_text(demo_settings(shipped, feeds_url))
    _write_if_changed(config, text.encode("utf-8"))
    _write_if_changed(folder / "taxonomy.toml", SHIPPED_TAXONOMY.read_bytes())
    return config


def _write_if_changed(path: Path, content: bytes) -> None:
    if not path.exists() or path.read_bytes() != content:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(content)
        tmp.replace(path)


# ------------------------------------------------------------------ the run


def run(folder: Path, feeds_url: str, *, started: float | None = None) -> DemoReport:
    """Write the folder, run one cycle against the stand-in (which publishes the feeds), and write the
    digest preview. ``started`` (a ``time.perf_counter()``) is when the user's command began."""
    from .app import App, Overrides
    from .clock import clock_from_env
    from .config import load_config
    from .standin import StandIn

    began = time.perf_counter() if started is None else started
    folder = folder.resolve()
    config_path = write_folder(folder, feeds_url)
    config = load_config(config_path, env={})  # never the environment's MONITOR_DB_URL: not the real database
    clock = clock_from_env()  # MONITOR_NOW still freezes the data clock (tests)
    standin = StandIn(today=clock.now().date(), match_terms=True)  # the bundled sample
    ticks = VirtualTime()
    overrides = Overrides(transport=standin.transport(ticks.monotonic), monotonic=ticks.monotonic,
                          sleep=ticks.sleep, clock=clock)
    app = App(config_path, overrides, _config=config)
    try:
        cycle = app.run_cycle(purpose="monitor demo")
        digest, path, since = _digest_preview(app, folder)
        papers = list(app.papers(PaperFilter(), include_deleted=False))
    finally:
        app.close()
    relevant = [p for p in papers if p.tagging is not None and p.tagging.gut_skin_relevant]
    return DemoReport(folder=folder, config=config_path, records=len(standin.pmids()), cycle=cycle,
                      stored=len(papers), relevant=len(relevant),
                      per_query=per_query(papers, [q.name for q in config.queries]), digest=digest,
                      digest_path=path, digest_since=since, seconds=time.perf_counter() - began)


def per_query(papers: Sequence[StoredPaper], names: Sequence[str]) -> tuple[QueryCount, ...]:
    """For each query, the stored papers it found and how many of those are relevant."""
    found: Counter[str] = Counter()
    relevant: Counter[str] = Counter()
    for paper in papers:
        for name, _ in paper.queries:
            found[name] += 1
            relevant[name] += bool(paper.tagging and paper.tagging.gut_skin_relevant)
    return tuple(QueryCount(name, found[name], relevant[name]) for name in names)


def _digest_preview(app: App, folder: Path) -> tuple[Digest, Path, dt.date]:
    """Every paper the demo has found (first found since the day of its first run), as `monitor digest
    --dry-run --since` previews it, written to ``digest.eml``."""
    firsts = [p.first_seen_at for p in app.papers(PaperFilter(), include_deleted=False)]
    since = min(firsts).astimezone(dt.UTC).date() if firsts else app.clock.now().date()
    digest, message = app.digest_preview(since)
    path = folder / DIGEST_FILE
    _write_if_changed(path, bytes(message))
    return digest, path, since


# ------------------------------------------------------------------ serving and saying what happened

DEFAULT_PORT = 8080  # `monitor serve`'s


def open_server(port: int | None) -> tuple[WebServer, Deferred, str | None]:
    """The web server, listening on ``port`` (without one: on 8080 if it is free, else on any free port, and
    a note saying so) before the demo runs, so the feeds can link to it; the app it serves is set once the
    folder is written (:func:`web_app`). A busy port the user asked for is an error (PublishError, exit 1)."""
    from .errors import PublishError
    from .web.server import Deferred, WebServer

    slot = Deferred()
    if port is not None:
        return WebServer(slot, port=port), slot, None
    try:
        return WebServer(slot, port=DEFAULT_PORT), slot, None
    except PublishError:
        server = WebServer(slot, port=0)
        return server, slot, f"port {DEFAULT_PORT} is in use, so the demo is served on port {server.port}"


def web_app(report: DemoReport) -> tuple[Any, App]:
    """The web app over the demo folder (its database and feeds), and the App to close when done."""
    from .app import App, Overrides
    from .config import load_config

    app = App(report.config, Overrides(), _config=load_config(report.config, env={}))
    return app.web_app(report.folder / "feeds"), app


def describe(r: DemoReport) -> Iterator[str]:
    """What the demo did, for a newcomer: each step, where its output is, and what to try next."""
    rel = r.folder.relative_to(Path.cwd()) if r.folder.is_relative_to(Path.cwd()) else r.folder
    yield (f"monitor demo: the monitor, offline, on {r.records} real gut–skin records bundled with it "
           f"({SAMPLE / 'SOURCES.md'} says where they come from)")
    yield f"folder: {rel}/ (queries.toml, taxonomy.toml, db/monitor.sqlite3, feeds/, {DIGEST_FILE})"
    report = r.cycle.report
    new = sum(q.new for q in report.queries)
    yield (f"1. one monitoring cycle (run #{report.run_id}, the code `monitor run` runs) with the shipped queries "
           "against the built-in E-utilities stand-in, in-process (no network):")
    width = max(len(q.name) for q in report.queries)
    for q, c in zip(report.queries, r.per_query):
        note = f"  {q.message}" if q.message and q.status != "ok" else ""
        yield (f"   {q.name:<{width}}  {q.status:<8}  this run: found {q.found:>3}, new {q.new:>3}   "
               f"stored: {c.papers:>3} papers, {c.relevant:>3} relevant{note}")
    if new == 0 and report.ok:
        yield f"   (nothing new: an earlier demo run stored these records; delete {rel}/ to start over)"
    counts = ", ".join(f"{label} {n}" for label, n in r.digest.condition_counts[:5])
    yield (f"2. tags: {r.stored} papers stored, {r.relevant} tagged gut–skin relevant, "
           f"{r.stored - r.relevant} not; conditions of the relevant ones: {counts} …")
    p = r.cycle.published
    yield f"3. feeds: {p.feeds} RSS feeds of the {p.papers} relevant papers in {rel}/feeds/ (feeds.opml lists them)"
    yield (f"4. digest preview: {rel}/{DIGEST_FILE} ({r.digest.new_count} relevant papers, "
           f"{len(r.digest.not_relevant)} judged not relevant; nothing sent; open it in a mail client)")
    yield f"done in {r.seconds:.1f} s. Try:"
    yield f"   monitor --config {rel}/queries.toml search probiotic --condition psoriasis"
    yield f"   monitor --config {rel}/queries.toml digest --dry-run --since {r.digest_since} --out preview.eml"


# ------------------------------------------------------------------ TOML out

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def toml_text(data: Mapping[str, Any]) -> str:
    """``data`` (as :mod:`tomllib` reads it: tables, arrays of tables, strings, numbers, booleans, dates) as
    TOML text that reads back to the same data: scalars first, then tables, then arrays of tables."""
    lines = _table_lines(data, prefix=())
    return "\n".join(lines).strip() + "\n"


def _table_lines(data: Mapping[str, Any], prefix: tuple[str, ...]) -> list[str]:
    scalars = {k: v for k, v in data.items() if not _is_table(v) and not _is_table_array(v)}
    tables = {k: v for k, v in data.items() if _is_table(v)}
    arrays = {k: v for k, v in data.items() if _is_table_array(v)}
    lines = [f"{_key(k)} = {_value(v)}" for k, v in scalars.items()]
    for key, table in tables.items():
        lines += ["", f"[{'.'.join(map(_key, (*prefix, key)))}]", *_table_lines(table, (*prefix, key))]
    for key, items in arrays.items():
        for item in items:
            lines += ["", f"[[{'.'.join(map(_key, (*prefix, key)))}]]", *_table_lines(item, (*prefix, key))]
    return lines


def _is_table(value: Any) -> bool:
    return isinstance(value, dict)


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | dt.date):
        return value.isoformat() if isinstance(value, dt.date) else repr(value)
    if isinstance(value, str):
        if "\n" in value and "'''" not in value:
            return "'''\n" + value + "'''"  # the newline after the opening quotes is dropped
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")
