"""Web app benchmark: server time and page size of `monitor serve`'s pages on 100,000 papers.

Builds the database — SQLite, or with ``--db-url sqlite --db-url postgres`` SQLite and a throwaway PostgreSQL
cluster, timed in one run (bench/_backends.py) — the way bench/search.py does (its loaders: the real PubMed records
of tests/data/efetch plus the 50 labelled gut–skin records, tagged with the shipped taxonomy and
replicated under fresh PMIDs, first found over two years; then the full-text index), or reuses one with
``--keep DIR``. The app is the one `monitor serve` runs (``App.web_app()``), called in-process through
Flask's test client, so the figure is the server's own time per request (routing, SQL, rendering), not the
network's. Each page runs ``--rounds`` times after one warm-up pass, each time **cold** (the app's cache of
facet, map and trend counts emptied first, as after a `monitor run`: what a new search costs) and then
**warm** (the same request again, as the next visitor gets it); the targets are judged on the cold times.
The cold requests' CPU time of this process (SQLite runs in it) is printed too: on a machine shared with
other work it is the server's own cost without the wait for a core.
p50/p95 are over every timed request of a page kind. Bodies are measured uncompressed.

    .venv/bin/python bench/web.py [--papers 100000] [--rounds 10] [--keep DIR] [--db-url sqlite --db-url postgres]

Targets (issue 14): p50 < 50 ms and p95 < 200 ms for /, typical /search with facets, /paper/…, /map and
/trends; no page over 200 KB.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _backends import Backend, add_arguments, backends, server_version  # noqa: E402
from search import BASE_PMID, bulk_load_postgres, bulk_load_sqlite, corpus, prepared_rows  # noqa: E402

from monitor.app import App, Overrides  # noqa: E402
from monitor.clock import FixedClock  # noqa: E402
from monitor.config import load_config  # noqa: E402
from monitor.storage import Storage  # noqa: E402

NOW = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)
TARGET_P50, TARGET_P95, TARGET_BYTES = 50.0, 200.0, 200 * 1024


def cases(papers: int) -> list[tuple[str, str]]:
    """(kind, path): the pages the targets name, several typical requests of each."""
    pmids = [BASE_PMID + n for n in (7, papers // 3, papers // 2 + 11, papers - 5)]
    return [
        ("/", "/"), ("/", "/?page=2"), ("/", "/?page=40"),
        ("/search", "/search?q=probiotic"), ("/search", "/search?q=psoriasis&relevant=1"),
        ("/search", "/search?q=probiotic&condition=atopic_dermatitis"),
        ("/search", "/search?q=%22gut+microbiota%22&sort=date"), ("/search", "/search?relevant=1&design=rct"),
        ("/search", "/search?condition=acne&intervention=dietary_pattern&relevant=1"),
        ("/search", "/search?q=diet&since=2020&date=published"), ("/search", "/search?q=microbiome&page=3"),
        *(("/paper", f"/paper/{p}") for p in pmids),
        ("/map", "/map"), ("/map", "/map?design=rct"), ("/map", "/map?since=2020&until=2026"),
        ("/trends", "/trends"), ("/trends", "/trends?by=intervention"),
        ("/trends", "/trends?date=published&since=1990&until=2026"),
        ("other", "/search"), ("other", "/search?q=patients"), ("other", "/status"),
        ("other", "/api/papers?q=probiotic"), ("other", "/api/map"), ("other", "/api/trends?by=intervention"),
    ]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def build(backend: Backend, papers: int) -> None:
    """The collection in the backend's database, unless a kept database already holds it."""
    with Storage.open(backend.url) as store:  # the schema, through the migrations
        if store.count_papers() >= papers:
            print(f"{backend.name}: reusing the kept database", flush=True)
            return
    articles = corpus()
    prepared = prepared_rows(articles)
    if backend.url.startswith("sqlite"):
        load_s = bulk_load_sqlite(Path(backend.url[len("sqlite:///"):]), papers, prepared)
    else:
        load_s = bulk_load_postgres(backend.url, papers, prepared)
    with Storage.open(backend.url) as store:
        began = time.perf_counter()
        store.rebuild_search_index()
        index_s = time.perf_counter() - began
    print(f"{backend.name}: built {papers:,} papers from {len(articles)} distinct records: load {load_s:.0f} s, "
          f"index {index_s:.0f} s", flush=True)


def make_app(folder: Path, url: str) -> App:
    config = folder / "queries.toml"
    config.write_text((ROOT / "queries.toml").read_text(encoding="utf-8").replace(
        'taxonomy = "taxonomy.toml"', f'taxonomy = "{ROOT / "taxonomy.toml"}"'), encoding="utf-8")
    (folder / "feeds").mkdir(exist_ok=True)
    return App(_config=load_config(config, env={"MONITOR_DB_URL": url}), overrides=Overrides(clock=FixedClock(NOW)))


def measure(name: str, app: App, papers: int, rounds: int) -> None:
    """Every case ``rounds`` times, cold and warm; prints the table and the verdict."""
    flask_app = app.web_app()
    client = flask_app.test_client()
    cache = flask_app.extensions["monitor"].store  # the CachedReads the app reads through
    print(f"{name}: papers stored: {app.store.count_papers():,}", flush=True)
    requests = cases(papers)
    sizes: dict[str, int] = {}
    for _, path in requests:  # warm-up (page cache, database caches, templates compiled)
        response = client.get(path)
        assert response.status_code == 200, (path, response.status_code, response.data[:300])
        sizes[path] = len(response.data)
    timings: dict[str, list[float]] = {path: [] for _, path in requests}
    warm: dict[str, list[float]] = {path: [] for _, path in requests}
    cpu: dict[str, list[float]] = {path: [] for _, path in requests}
    for _ in range(rounds):
        for _, path in requests:
            cache.clear()
            for into in (timings, warm):
                began, began_cpu = time.perf_counter(), time.process_time()
                client.get(path)
                into[path].append((time.perf_counter() - began) * 1000)
                if into is timings:
                    cpu[path].append((time.process_time() - began_cpu) * 1000)
    print(f"\n{name}: server time over {rounds} runs each (ms), cold and warm, and body size (KB):")
    print(f"{'path':<62} {'cold p50':>8} {'max':>7} {'warm p50':>8} {'KB':>6}")
    for _, path in requests:
        print(f"{path:<62} {statistics.median(timings[path]):>8.1f} {max(timings[path]):>7.1f} "
              f"{statistics.median(warm[path]):>8.1f} {sizes[path] / 1024:>6.1f}")
    print()
    met = True
    for kind in ("/", "/search", "/paper", "/map", "/trends", "other"):
        paths = [p for k, p in requests if k == kind]
        values = [t for p in paths for t in timings[p]]
        biggest = max(sizes[p] for p in paths)
        ok = pct(values, 0.5) < TARGET_P50 and pct(values, 0.95) < TARGET_P95 and biggest <= TARGET_BYTES
        if kind != "other":
            met = met and ok
        hot = [t for p in paths for t in warm[p]]
        own = [t for p in paths for t in cpu[p]]
        print(f"{kind:<8} requests {len(values):>4}  cold p50 {pct(values, 0.5):6.1f} ms  p95 {pct(values, 0.95):6.1f} ms"
              f"  (CPU p50 {pct(own, 0.5):5.1f} p95 {pct(own, 0.95):6.1f})"
              f"  warm p50 {pct(hot, 0.5):6.1f} ms  p95 {pct(hot, 0.95):6.1f} ms  largest page {biggest / 1024:6.1f} KB"
              f"  {'' if kind == 'other' else ('met' if ok else 'NOT met')}")
    print(f"\n{name}: targets (p50 < 50 ms, p95 < 200 ms, no page over 200 KB) for /, /search, /paper, /map, "
          f"/trends: {'met' if met else 'NOT met'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--papers", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--keep", metavar="DIR", help="build the databases in DIR and keep them (reused if there)")
    add_arguments(ap)
    args = ap.parse_args()
    folder = Path(args.keep).resolve() if args.keep else Path(tempfile.mkdtemp(prefix="web-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with backends(args, folder, "web", keep=folder if args.keep else None) as found:
            print(f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}; Python "
                  f"{platform.python_version()}, {', '.join(server_version(b.url) for b in found)}; load average "
                  f"{os.getloadavg()[0]:.2f}", flush=True)
            for backend in found:
                build(backend, args.papers)
                app = make_app(folder, backend.url)
                measure(backend.name, app, args.papers, args.rounds)
                app.close()
        print(f"load average now {os.getloadavg()[0]:.2f}")
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
