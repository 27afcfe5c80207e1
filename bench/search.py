"""Search benchmark: `monitor search` latency on a collection of 1,000,000 papers, and the index build time.

Builds a database of N papers — SQLite by default, in a temporary folder deleted at the end unless
``--keep``; ``--db-url sqlite --db-url postgres`` builds the same collection in SQLite and in a throwaway
PostgreSQL cluster and times both in one run (see bench/_backends.py) —
(default 1,000,000) from the real PubMed records in tests/data/efetch plus the 50 real gut–skin records of
tests/data/tagging/labelled.jsonl, replicated under fresh PMIDs. Each distinct record is parsed and tagged
once with the shipped taxonomy (tags are a function of the record's content, so its replicas carry the
same tags), records whose stored JSON exceeds 64 KB (giant author lists) are left out so the file stays
within a few GB.

The bulk load is the documented fast path, not ``Storage.store_batch``: rows for ``papers``,
``paper_tagging``, ``paper_tags`` and ``paper_queries`` go in through executemany (SQLite) or COPY
(PostgreSQL) in large transactions
(the replicas differ from their record only in the PMID, so each record's JSON is encoded once and the
PMID substituted; content hashes are recomputed per replica). ``paper_tag_inputs`` are not written (search
does not read them). Then the full-text index is built with ``Storage.rebuild_search_index()`` — the same
SQL migration 0005 (SQLite) or 0008 (PostgreSQL) runs — and that is the **index build time**. To show the ordinary write path still
keeps up on a big index, a further 2,000 fresh papers are stored through ``Storage.store_batch`` (tagging
and index maintenance included).

Latency: each typical query (with and without filters) runs ``--rounds`` times through
``monitor.search.search`` — what the CLI calls: parsing, ranking, hydrating the top 20 papers and their
snippets — in this process, after one warm-up pass. p50/p95 are over every timed run.

    .venv/bin/python bench/search.py [--papers 1000000] [--rounds 5] [--keep DIR] [--db-url sqlite --db-url postgres]

Targets (issue 6): p50 < 50 ms, p95 < 200 ms.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import functools
import hashlib
import json
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _backends import Backend, add_arguments, backends, server_version  # noqa: E402
from _results import real_records  # noqa: E402

from monitor.search import SearchRequest, parse_query, search  # noqa: E402
from monitor.storage import Storage, pgsearch  # noqa: E402
from monitor.storage.papers import article_json  # noqa: E402
from monitor.storage.tags import tagging_json  # noqa: E402
from monitor.tagging import load_taxonomy, tag  # noqa: E402
from monitor.types import Article, PaperFilter  # noqa: E402
from tests.tagging_data import LABELLED, row_to_article  # noqa: E402

NOW = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)
QUERIES = ("gut-skin-axis", "probiotics-fmt", "diet-skin", "microbiome-derm")
MAX_JSON = 64 * 1024
BASE_PMID = 50_000_000

# (label, text, filters): typical questions, plain and filtered.
CASES: list[tuple[str, str | None, PaperFilter]] = [
    ("probiotic", "probiotic", PaperFilter()),
    ("gut microbiota (phrase)", '"gut microbiota"', PaperFilter()),
    ("psoriasis", "psoriasis", PaperFilter()),
    ("atopic dermatitis probiotics", "atopic dermatitis probiotics", PaperFilter()),
    ("probio* prefix", "probio*", PaperFilter()),
    ("IL-17", "IL-17", PaperFilter()),
    ("acne OR rosacea diet", "acne OR rosacea diet", PaperFilter()),
    ("cancer -mouse (broad)", "cancer -mouse", PaperFilter()),
    ("patients (very broad)", "patients", PaperFilter()),
    ("title:neutrophil", "title:neutrophil", PaperFilter()),
    ("probiotic +psoriasis +rct", "probiotic", PaperFilter(conditions=("psoriasis",), designs=("rct",))),
    ("probiotic +atopic_dermatitis", "probiotic", PaperFilter(conditions=("atopic_dermatitis",))),
    ("microbiome +relevant +since 2020", "microbiome", PaperFilter(relevant_only=True, since=dt.date(2020, 1, 1))),
    ("patients +rct (broad, filtered)", "patients", PaperFilter(designs=("rct",))),
    ("cancer +review +exclude retracted", "cancer", PaperFilter(designs=("review",), exclude_retracted=True)),
    ("diet +query +found since", "diet", PaperFilter(queries=("diet-skin",), since=dt.date(2026, 6, 1),
                                                     date_field="found")),
    ("patients sorted by date", "patients", PaperFilter()),
    ("no text: psoriasis +rct by date", None, PaperFilter(conditions=("psoriasis",), designs=("rct",))),
]


def corpus() -> list[Article]:
    seen = real_records()
    for n, line in enumerate(LABELLED.read_text(encoding="utf-8").splitlines()):
        row = json.loads(line)
        row["pmid"] = row.get("pmid") or str(9_000_000 + n)
        seen.setdefault(row["pmid"], row_to_article(row))
    return [a for a in seen.values() if len(article_json(a)) <= MAX_JSON]


def prepared_rows(articles: list[Article]) -> list[tuple]:
    """Each distinct record once: the record, its JSON after the PMID, its tagging JSON, tagging, tag rows."""
    taxonomy = load_taxonomy(ROOT / "taxonomy.toml")
    prepared = []
    for a in articles:
        t = tag(a, taxonomy)
        data = article_json(a)
        head = f'{{"pmid":"{a.pmid}"'
        assert data.startswith(head)
        rows = [("condition", x) for x in t.conditions] + [("intervention", x) for x in t.interventions]
        rows += [("design", x) for x in t.designs] + ([("relevance", "gut_skin_relevant")] if t.gut_skin_relevant else [])
        prepared.append((a, data[len(head):], tagging_json(t), t, rows))
    return prepared


def replica_batches(papers: int, prepared: list[tuple], batch: int = 20_000):  # type: ignore[no-untyped-def]
    """Row tuples for papers, paper_tagging, paper_tags and paper_queries, ``batch`` papers at a time."""
    for start in range(0, papers, batch):
        p_rows, g_rows, t_rows, q_rows = [], [], [], []
        for n in range(start, min(start + batch, papers)):
            a, rest, tj, t, tag_rows = prepared[n % len(prepared)]
            pmid = BASE_PMID + n
            data = f'{{"pmid":"{pmid}"{rest}'
            seen = NOW - dt.timedelta(days=n % 730)
            p_rows.append((pmid, a.version, a.status, a.title, a.doi, a.year, a.sort_date, a.date_revised,
                           a.is_retracted, data, hashlib.sha256(data.encode()).hexdigest(), seen, seen, seen))
            g_rows.append((pmid, tj, t.taxonomy_version, t.relevance, t.gut_skin_relevant))
            t_rows += [(pmid, k, x) for k, x in tag_rows]
            q_rows.append((pmid, QUERIES[n % len(QUERIES)], seen))
        yield p_rows, g_rows, t_rows, q_rows


PAPER_COLUMNS = ("pmid, version, status, title, doi, year, sort_date, date_revised, retracted, data, content_hash, "
                 "first_seen_at, updated_at, fetched_at")


def bulk_load_sqlite(db: Path, papers: int, prepared: list[tuple]) -> float:
    """The fast path into SQLite: executemany straight into the tables Storage created. Returns seconds."""
    began = time.perf_counter()
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    for p_rows, g_rows, t_rows, q_rows in replica_batches(papers, prepared):
        stamp = lambda d: d.strftime("%Y-%m-%d %H:%M:%S.000000")  # noqa: E731 - as SQLAlchemy stores them
        p_rows = [(*r[:6], r[6].isoformat() if r[6] else None, r[7].isoformat() if r[7] else None, int(r[8]),
                   *r[9:11], stamp(r[11]), stamp(r[12]), stamp(r[13])) for r in p_rows]
        conn.execute("BEGIN")
        conn.executemany(f"INSERT INTO papers ({PAPER_COLUMNS}, deleted) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)", p_rows)
        conn.executemany("INSERT INTO paper_tagging (pmid, tagging, taxonomy_version, relevance, gut_skin_relevant) "
                         "VALUES (?, ?, ?, ?, ?)", [(*r[:4], int(r[4])) for r in g_rows])
        conn.executemany("INSERT INTO paper_tags (pmid, kind, tag) VALUES (?, ?, ?)", t_rows)
        conn.executemany("INSERT INTO paper_queries (pmid, query_name, first_found_at) VALUES (?, ?, ?)",
                         [(p, q, stamp(at)) for p, q, at in q_rows])
        conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return time.perf_counter() - began


def bulk_load_postgres(url: str, papers: int, prepared: list[tuple]) -> float:
    """The fast path into PostgreSQL: COPY straight into the tables Storage created, then ANALYZE. Returns
    seconds."""
    import psycopg
    import sqlalchemy as sa

    began = time.perf_counter()
    dsn = sa.engine.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn) as conn:
        for p_rows, g_rows, t_rows, q_rows in replica_batches(papers, prepared):
            with conn.cursor() as cur:
                for table, columns, rows in (
                        ("papers", f"{PAPER_COLUMNS}, deleted", [(*r, False) for r in p_rows]),
                        ("paper_tagging", "pmid, tagging, taxonomy_version, relevance, gut_skin_relevant", g_rows),
                        ("paper_tags", "pmid, kind, tag", t_rows),
                        ("paper_queries", "pmid, query_name, first_found_at", q_rows)):
                    with cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(row)
            conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
    return time.perf_counter() - began


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def build(backend: Backend, folder: Path, papers: int, articles: list[Article], prepared: list[tuple]) -> Storage:
    """The collection on one backend: bulk load and index build (each timed and printed), unless a kept
    database already holds it; then 2,000 papers through store_batch. Returns the open store."""
    store = Storage.open(backend.url)  # the schema, through the migrations
    reuse = store.count_papers() >= papers
    if reuse:  # a database an earlier --keep run built: time the queries only
        print(f"{backend.name}: reusing the kept database of {store.count_papers():,} papers (no build timings)",
              flush=True)
    else:
        store.close()
        if backend.url.startswith("sqlite"):
            load_s = bulk_load_sqlite(Path(backend.url[len("sqlite:///"):]), papers, prepared)
        else:
            load_s = bulk_load_postgres(backend.url, papers, prepared)
        print(f"{backend.name}: bulk load (papers, tags, links; no index): {load_s:.1f} s", flush=True)
        store = Storage.open(backend.url)
        began = time.perf_counter()
        indexed = store.rebuild_search_index()
        index_s = time.perf_counter() - began
        print(f"{backend.name}: index build (Storage.rebuild_search_index, the SQL of the migration): {indexed:,} "
              f"papers in {index_s:.1f} s ({indexed / index_s:,.0f} papers/s); database now "
              f"{database_mb(store, folder):,.0f} MB", flush=True)
    taxonomy = load_taxonomy(ROOT / "taxonomy.toml")
    offset = store.count_papers()
    fresh = [dataclasses.replace(a, pmid=str(BASE_PMID + offset + i)) for i, a in enumerate(articles[:2000])]
    began = time.perf_counter()
    for start in range(0, len(fresh), 500):
        store.store_batch(fresh[start:start + 500], query=QUERIES[0], now=NOW,
                          tagger=functools.partial(tag, taxonomy=taxonomy))
    write_s = time.perf_counter() - began
    print(f"{backend.name}: store_batch into the big index: {len(fresh):,} new papers in {write_s:.1f} s "
          f"({len(fresh) / write_s:,.0f} papers/s, tagging and index upkeep included)", flush=True)
    return store


def database_mb(store: Storage, folder: Path) -> float:
    if store.engine.dialect.name == "sqlite":
        return sum(f.stat().st_size for f in folder.glob("search-*.sqlite3*")) / 1e6
    with store.engine.connect() as conn:
        return float(conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar_one()) / 1e6


def match_count(store: Storage, text: str) -> int:
    """How many papers the text matches (context for the timings), from the index alone."""
    node = parse_query(text)
    with store.engine.connect() as conn:
        if store.engine.dialect.name == "sqlite":
            return int(conn.exec_driver_sql("SELECT count(*) FROM papers_fts WHERE papers_fts MATCH ?",
                                            (node.fts5(),)).scalar_one())
        found = pgsearch.tiers(node, ranked=False)
        assert found is not None
        return int(conn.execute(sa.select(sa.func.count()).select_from(pgsearch.paper_search)
                                .where(*found[0].where)).scalar_one())


def time_queries(store: Storage, name: str, rounds: int) -> dict[str, float]:
    """Every case ``rounds`` times after a warm-up pass; prints the table and the percentiles; returns them."""
    requests = [(label, SearchRequest(text, filters, sort="date" if "by date" in label else None, limit=20))
                for label, text, filters in CASES]
    for _, request in requests:  # warm-up: the page cache and the database's caches
        search(store, request)
    timings: dict[str, list[float]] = {label: [] for label, _ in requests}
    hits: dict[str, int] = {}
    for _ in range(rounds):
        for label, request in requests:
            began = time.perf_counter()
            result = search(store, request)
            timings[label].append((time.perf_counter() - began) * 1000)
            hits[label] = len(result)
    matched = {label: match_count(store, r.text) if r.text else None for label, r in requests}
    print(f"\n{name}: latency over {rounds} runs each, top 20 with snippets (ms):")
    print(f"{'query':<40} {'text matches':>12} {'shown':>5} {'median':>8} {'max':>8}")
    for label, _ in requests:
        m = matched[label]
        print(f"{label:<40} {'' if m is None else f'{m:,}':>12} {hits[label]:>5} "
              f"{statistics.median(timings[label]):>8.1f} {max(timings[label]):>8.1f}")
    # Stress: a text that matches a fifth of the collection or more (a near-stopword such as "patients");
    # both indexes score every match, so these cost time in proportion to the match count.
    total = store.count_papers()
    stress = {label for label, _ in requests if matched[label] is not None and matched[label] >= total / 5}
    plain = [t for (label, _, f) in CASES if label not in stress and f == PaperFilter() for t in timings[label]]
    filtered = [t for (label, _, f) in CASES if label not in stress and f != PaperFilter() for t in timings[label]]
    heavy = [t for label in stress for t in timings[label]]
    every = [t for values in timings.values() for t in values]
    print(f"\n{name}: stress queries (text in >= 20% of papers): {', '.join(sorted(stress))}")
    figures = {}
    for set_name, values in (("typical, no filters", plain), ("typical, filtered", filtered),
                             ("typical, all", plain + filtered), ("stress", heavy), ("every query", every)):
        figures[set_name] = (pct(values, 0.50), pct(values, 0.95))
        print(f"{set_name:<20} runs {len(values):>4}  p50 {pct(values, 0.50):7.1f} ms  p95 {pct(values, 0.95):7.1f} ms")
    for set_name, values in (("typical", plain + filtered), ("every query", every)):
        ok = pct(values, 0.50) < 50 and pct(values, 0.95) < 200
        print(f"{name}: targets p50 < 50 ms, p95 < 200 ms, {set_name}: {'met' if ok else 'NOT met'}")
    return {k: v for k, (v, _) in figures.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--papers", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--keep", metavar="DIR", help="build the databases in DIR and keep them (a PostgreSQL cluster "
                    "from --db-url postgres too, stopped); if DIR already holds them, only time the queries")
    add_arguments(ap)
    args = ap.parse_args()
    folder = Path(args.keep).resolve() if args.keep else Path(tempfile.mkdtemp(prefix="search-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    try:
        articles = corpus()
        prepared = prepared_rows(articles)
        with backends(args, folder, "search", keep=folder if args.keep else None) as found:
            versions = ", ".join(server_version(b.url) for b in found)
            print(f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}; Python "
                  f"{platform.python_version()}, {versions}; load average {os.getloadavg()[0]:.2f}", flush=True)
            print(f"corpus: {len(articles)} distinct real records (JSON <= 64 KB), replicated to {args.papers:,} "
                  "papers", flush=True)
            for backend in found:
                store = build(backend, folder, args.papers, articles, prepared)
                time_queries(store, backend.name, args.rounds)
                store.close()
        print(f"load average now {os.getloadavg()[0]:.2f}; whole run {time.perf_counter() - began:,.0f} s")
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
