"""Ingest benchmark: parse + store throughput and peak memory on real PubMed records.

Run from the repository root (about 3 minutes on 2 cores with these options)::

    .venv/bin/python bench/ingest.py --scale-check --results bench/RESULTS.md

What it does:

1. Builds one ``PubmedArticleSet`` file of ``--records`` records (default 100,000) by cycling through every
   distinct real ``PubmedArticle`` in ``tests/data/efetch`` (read with ``monitor.pubmed.iter_records_raw``,
   ``.gz`` files through gzip) in a fixed order, each copy under a fresh PMID. Only the record's own
   ``MedlineCitation/PMID`` and ``PubmedData/ArticleIdList/ArticleId[@IdType="pubmed"]`` change; PMIDs in
   reference lists and CommentsCorrections are left as they are. The real mix is kept, including the
   1.8 MB record ``ncbi-cxx-toolkit/pubmed33761533.xml``. The file is written as a stream.
2. Measures three stages on that same file, each in its own child process (this script re-run with
   ``--stage``), so each stage's peak RSS is its own:

   (a) ``raw``:   ``lxml.etree.iterparse(path, events=("end",), tag="PubmedArticle")`` with ``clear()`` and
       earlier siblings deleted, counting records: the floor any lxml-based parser can reach;
   (b) ``parse``: ``monitor.pubmed.parse(open(path, "rb"))``, consuming every item;
   (c) ``store``: (b) plus ``Storage.open(URL)`` on a fresh database and ``store_batch`` every
       ``--batch`` records (default 500) with a query name, so paper↔query links are written too; the
       stored papers and links are then counted, and each count must equal ``--records``. Batches go
       through ``monitor.pipeline.BatchPipeline`` as the cycle's do: one batch is stored on a worker thread
       while this thread parses the next (``--serial`` stores each inline instead, as before). Stage (c) runs
       once per ``--db-url`` (default: a fresh SQLite file; ``--db-url sqlite --db-url postgres`` adds a
       throwaway PostgreSQL cluster, see ``bench/_backends.py``), so one run puts PostgreSQL next to SQLite.

   Timings cover the record loop only (imports and the schema migration are excluded), as wall-clock and
   as CPU time of the child: (c)'s wall time also includes waiting for SQLite's writes and the fsyncs of
   WAL checkpoints, which vary from run to run on a virtual disk. Peak RSS is the child's ``VmHWM`` from
   ``/proc/self/status`` (``ru_maxrss`` elsewhere): unlike ``ru_maxrss``, which survives ``execve``, it
   cannot inherit the parent's peak.
3. With ``--scale-check`` it repeats the three stages at ``--scale-records`` (default 20,000) so the peaks
   can be compared: bounded streaming means they should not grow with the input.

Targets (from the issue): (c) takes at most 3x as long as (a); peak RSS under 200 MB at any input size;
on PostgreSQL (c) takes at most 1.5x the SQLite time (issue 16).
The exit status is 1 if a stage stored or counted the wrong number of records, 0 otherwise (missed
targets are reported, not fatal). ``--results PATH`` writes the "Ingest" section of that Markdown file
(other sections are kept; the Ingest section is rewritten whole). ``--stage … --profile OUT`` writes
cProfile stats of one stage for inspection.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import itertools
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _backends import add_arguments, backends, server_version

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "data" / "efetch"
FIRST_PMID = 90_000_001  # far above real PMIDs (~41 million in 2026), so no copy collides with a real one
SENTINEL = "BENCHPMIDSENTINEL"
STAGES = ("raw", "parse", "store")
LABELS = {
    "raw": "(a) lxml iterparse + clear",
    "parse": "(b) monitor.pubmed.parse",
    "store": "(c) parse + Storage.store_batch",
}
SECTION = "## Ingest (bench/ingest.py)"
RSS_TARGET_MB = 200.0
RATIO_TARGET = 3.0
PG_RATIO_TARGET = 1.5

if str(ROOT) not in sys.path:  # run as a plain script from anywhere
    sys.path.insert(0, str(ROOT))


# ---------------------------------------------------------------------------------------------------------
# Building the input


def corpus_templates() -> list[tuple[str, list[bytes]]]:
    """Every distinct real PubmedArticle as (source file, byte pieces around each PMID to replace)."""
    from lxml import etree

    from monitor.pubmed import iter_records_raw

    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True)
    seen: set[bytes] = set()
    templates: list[tuple[str, list[bytes]]] = []
    for path in sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix in (".xml", ".gz")):
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        for _pmid, xml in iter_records_raw(data):
            if not xml.startswith(b"<PubmedArticle") or xml in seen:
                continue  # books and repeats of a record are not part of the mix
            seen.add(xml)
            rec = etree.fromstring(xml, parser)
            targets = rec.findall("MedlineCitation/PMID") + [
                el for el in rec.iterfind("PubmedData/ArticleIdList/ArticleId")
                if el.get("IdType") == "pubmed"
            ]
            for el in targets:
                el.text = SENTINEL
            pieces = etree.tostring(rec, encoding="UTF-8", with_tail=False).split(SENTINEL.encode())
            if len(pieces) != len(targets) + 1:
                raise SystemExit(f"{path}: sentinel appears outside the PMID elements")
            templates.append((str(path.relative_to(CORPUS)), pieces))
    if not templates:
        raise SystemExit(f"no PubmedArticle records under {CORPUS}")
    return templates


def build_input(path: Path, n: int, templates: list[tuple[str, list[bytes]]]) -> int:
    """Write ``n`` records to ``path`` (streamed, 1 MB buffer); returns the file size in bytes."""
    with open(path, "wb", buffering=1 << 20) as out:
        out.write(b'<?xml version="1.0" encoding="UTF-8"?>\n<PubmedArticleSet>\n')
        for i, (_src, pieces) in zip(range(n), itertools.cycle(templates)):
            out.write(str(FIRST_PMID + i).encode().join(pieces))
            out.write(b"\n")
        out.write(b"</PubmedArticleSet>\n")
    return path.stat().st_size


# ---------------------------------------------------------------------------------------------------------
# The stages (each runs in its own child process)


def stage_raw(path: Path) -> dict:
    from lxml import etree

    start, cpu = time.perf_counter(), time.process_time()
    count = 0
    for _event, elem in etree.iterparse(str(path), events=("end",), tag="PubmedArticle"):
        count += 1
        elem.clear()
        while elem.getprevious() is not None:
            del elem.getparent()[0]
    return {"count": count, "seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu}


def stage_parse(path: Path) -> dict:
    from monitor.pubmed import parse
    from monitor.types import Article

    start, cpu = time.perf_counter(), time.process_time()
    count = errors = 0
    with open(path, "rb") as f:
        for item in parse(f):
            if isinstance(item, Article):
                count += 1
            else:
                errors += 1
    return {"count": count, "errors": errors, "seconds": time.perf_counter() - start,
            "cpu_seconds": time.process_time() - cpu}


def stage_store(path: Path, url: str, batch_size: int, query: str, serial: bool = False) -> dict:
    import sqlalchemy as sa

    from monitor.pipeline import BatchPipeline
    from monitor.pubmed import parse
    from monitor.storage import Storage
    from monitor.storage.schema import paper_queries
    from monitor.types import RecordError

    db = Path(url[len("sqlite:///"):]) if url.startswith("sqlite:///") else None
    for leftover in (db, Path(f"{db}-wal"), Path(f"{db}-shm")) if db else ():
        leftover.unlink(missing_ok=True)
    now = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
    storage = Storage.open(url)
    run_id = storage.start_run(now)
    start, cpu = time.perf_counter(), time.process_time()
    errors = new = 0
    batch: list = []

    def counted(outcome) -> None:
        nonlocal new
        new += len(outcome.new)

    with open(path, "rb") as f, BatchPipeline(lambda b: storage.store_prepared(b, query=query, now=now, run_id=run_id),
                                              threaded=storage.threads_share_data and not serial) as pipe:
        for item in parse(f):
            if isinstance(item, RecordError):
                errors += 1  # the cycle reports these and stores the rest; so do we
                continue
            batch.append(item)
            if len(batch) >= batch_size:
                pipe.submit(storage.prepare_batch(batch), counted)  # as the cycle: prepared here, stored there
                batch = []
        if batch:
            pipe.submit(storage.prepare_batch(batch), counted)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    stored = storage.count_papers()
    with storage.engine.connect() as conn:
        links = conn.execute(sa.select(sa.func.count()).select_from(paper_queries)
                             .where(paper_queries.c.query_name == query)).scalar_one()
        if db is None:
            db_bytes = conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar_one()
    storage.close()  # the last connection closing checkpoints the WAL into the main file
    if db is not None:
        db_bytes = sum(p.stat().st_size for p in (db, Path(f"{db}-wal")) if p.exists())
    return {"count": stored, "new": new, "links": links, "errors": errors, "seconds": seconds,
            "cpu_seconds": cpu_seconds, "db_bytes": db_bytes}


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB (VmHWM; ru_maxrss where /proc is missing)."""
    try:
        found = re.search(r"^VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    except OSError:
        found = None
    if found:
        return int(found.group(1)) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)


def run_stage(args: argparse.Namespace) -> None:
    """Child-process entry point: run one stage, print its figures as one JSON line."""
    path = Path(args.input)

    def go() -> dict:
        if args.stage == "raw":
            return stage_raw(path)
        if args.stage == "parse":
            return stage_parse(path)
        return stage_store(path, args.db, args.batch, args.query, args.serial)

    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        result = profiler.runcall(go)
        profiler.dump_stats(args.profile)
    else:
        result = go()
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))


# ---------------------------------------------------------------------------------------------------------
# The driver


def spawn(stage: str, path: Path, db: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--stage", stage, "--input", str(path),
           "--db", db, "--batch", str(args.batch), "--query", args.query] + (["--serial"] if args.serial else [])
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"stage {stage} failed with exit status {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(n: int, workdir: Path, templates: list, args: argparse.Namespace) -> dict:
    """Every stage on one input of ``n`` records; stage (c) once per backend (``store``, ``store-1`` …)."""
    path = workdir / f"pubmed-{n}.xml"
    t0 = time.perf_counter()
    size = build_input(path, n, templates)
    print(f"\n{n:,} records: wrote {path} ({size / 1e6:,.1f} MB, mean record {size / n / 1024:,.1f} KiB) "
          f"in {time.perf_counter() - t0:.1f} s", flush=True)
    results = {}
    with backends(args, workdir, f"ingest{n}") as found:
        runs = [("raw", "raw", ""), ("parse", "parse", "")] + [
            ("store" if i == 0 else f"store-{i}", "store", b.url) for i, b in enumerate(found)]
        for key, stage, url in runs:
            results[key] = r = spawn(stage, path, url, args)
            if stage == "store":
                r["backend"] = found[int(key.partition("-")[2] or 0)].name
                r["version"] = server_version(url)
            print(f"  {label(key, r):<46} {r['count']:>8,} records  {r['seconds']:7.1f} s ({r['cpu_seconds']:.1f} s "
                  f"CPU)  {r['count'] / r['seconds']:8,.0f} rec/s  peak RSS {r['peak_rss_mb']:6.1f} MB", flush=True)
    path.unlink()
    return {"records": n, "file_bytes": size, "stages": results}


def label(key: str, result: dict) -> str:
    return LABELS[key] if key in LABELS and "backend" not in result else f"{LABELS['store']}, {result['backend']}"


def check(run: dict) -> list[str]:
    """Problems that make the figures meaningless (wrong counts), as messages."""
    n, s = run["records"], run["stages"]
    problems = []
    for stage in s:
        if s[stage]["count"] != n:
            problems.append(f"{stage}: {s[stage]['count']:,} records, expected {n:,}")
        if s[stage].get("errors"):
            problems.append(f"{stage}: {s[stage]['errors']:,} unreadable records")
        if stage.startswith("store") and (s[stage]["new"] != n or s[stage]["links"] != n):
            problems.append(f"{stage}: {s[stage]['new']:,} new papers and {s[stage]['links']:,} links, expected {n:,}")
    return problems


def report(runs: list[dict], args: argparse.Namespace, templates: list, wall: float) -> str:
    """The Markdown section (also printed)."""
    main = runs[0]
    n, s = main["records"], main["stages"]
    keys = list(s)  # raw, parse, store, then store-1 … for further backends
    rate = {k: s[k]["count"] / s[k]["seconds"] for k in keys}
    ratio_b = s["parse"]["seconds"] / s["raw"]["seconds"]
    ratio_c = s["store"]["seconds"] / s["raw"]["seconds"]
    peaks = [r["stages"][k]["peak_rss_mb"] for r in runs for k in r["stages"]]
    databases = ", ".join(dict.fromkeys(s[k]["version"] for k in keys if "version" in s[k]))
    sizes = ", ".join(f"{s[k]['backend']} {s[k]['db_bytes'] / 1e6:,.1f} MB" for k in keys if k.startswith("store"))
    cmd = "python bench/ingest.py " + " ".join(args.argv)
    machine = (f"{os.cpu_count()} cores, {cpu_model()}; Python {platform.python_version()}, "
               f"lxml {lxml_version()}, SQLAlchemy {sqlalchemy_version()}, {databases}")
    data = (f"{n:,} records cycled from the {len(templates)} distinct real PubmedArticle records in "
            f"tests/data/efetch under fresh PMIDs; {main['file_bytes'] / 1e6:,.1f} MB of XML, mean record "
            f"{main['file_bytes'] / n / 1024:,.1f} KiB. Store batch: {args.batch} records, query "
            f"`{args.query}`, a fresh database each, "
            + ("each batch stored before the next is parsed (`--serial`)" if args.serial else
               "one batch stored on a worker thread while the next is parsed (monitor.pipeline, as the cycle)")
            + "; final size "
            f"{sizes}. "
            f"Whole benchmark: {wall:.0f} s.")
    lines = [
        SECTION,
        "",
        f"Command: `{cmd.strip()}` (run from the repository root with the project's virtualenv)  ",
        f"Date: {dt.date.today().isoformat()}  ",
        f"Machine: {machine}  ",
        f"Input: {data}",
        "",
        "| stage | records | seconds | CPU seconds | records/s | time vs (a) | peak RSS (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for k in keys:
        lines.append(f"| {label(k, s[k])} | {s[k]['count']:,} | {s[k]['seconds']:.1f} | {s[k]['cpu_seconds']:.1f} | "
                     f"{rate[k]:,.0f} | {s[k]['seconds'] / s['raw']['seconds']:.2f}x | "
                     f"{s[k]['peak_rss_mb']:.1f} |")
    cpu_ratio = s["store"]["cpu_seconds"] / s["raw"]["cpu_seconds"]
    off_cpu = max(0.0, s["store"]["seconds"] - s["store"]["cpu_seconds"])
    verdict = "met" if ratio_c <= RATIO_TARGET else "NOT met"
    summary = (f"(b)/(a) time ratio {ratio_b:.2f}x; (c)/(a) time ratio {ratio_c:.2f}x "
               f"(target at most {RATIO_TARGET:.0f}x: {verdict}); in CPU time (c)/(a) is {cpu_ratio:.2f}x, "
               f"and (c) spent {off_cpu:.1f} s of wall time beyond its CPU time (waiting on SQLite's writes "
               f"and fsyncs; CPU time counts both threads). "
               f"Stored and verified: {s['store']['count']:,} papers, {s['store']['links']:,} links.")
    lines += ["", summary]
    for k in keys[3:]:
        ratio = s[k]["seconds"] / s["store"]["seconds"]
        verdict = "met" if ratio <= PG_RATIO_TARGET else "NOT met"
        lines += ["", f"{s[k]['backend']}: (c) took {ratio:.2f}x the {s['store']['backend']} time "
                      f"({s[k]['seconds']:.1f} s against {s['store']['seconds']:.1f} s; CPU of this process "
                      f"{s[k]['cpu_seconds']:.1f} s against {s['store']['cpu_seconds']:.1f} s; target at most "
                      f"{PG_RATIO_TARGET}x: {verdict}). Stored and verified: {s[k]['count']:,} papers, "
                      f"{s[k]['links']:,} links."]
    if len(runs) > 1:
        header = "| records | file MB | " + " | ".join(label(k, s[k]) for k in keys) + " |"
        lines += ["", "Scale check, peak RSS (MB) by input size:", "", header, "|---:|---:|" + "---:|" * len(keys)]
        for r in sorted(runs, key=lambda r: r["records"]):
            peaks_row = " | ".join(f"{r['stages'][k]['peak_rss_mb']:.1f}" for k in keys)
            lines.append(f"| {r['records']:,} | {r['file_bytes'] / 1e6:,.0f} | {peaks_row} |")
        small = min(runs, key=lambda r: r["records"])
        growth = max(main["stages"][k]["peak_rss_mb"] - small["stages"][k]["peak_rss_mb"] for k in keys)
        lines += ["", f"Largest peak growth from {small['records']:,} to {n:,} records: {growth:+.1f} MB."]
    rss_verdict = "met" if max(peaks) < RSS_TARGET_MB else "NOT met"
    lines += ["", f"Peak RSS target (under {RSS_TARGET_MB:.0f} MB): {rss_verdict} (highest {max(peaks):.1f} MB)."]
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    """Add or replace our section, keeping every other section of the file as it is."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    start = text.find(SECTION)
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(SECTION))
        rest = "" if end == -1 else "\n" + text[end + 1:]
        text = text[:start] + section + rest
    path.write_text(text, encoding="utf-8")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def lxml_version() -> str:
    from lxml import etree

    return ".".join(map(str, etree.LXML_VERSION[:3]))


def sqlalchemy_version() -> str:
    import sqlalchemy

    return sqlalchemy.__version__


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=100_000, help="records in the input file (default 100000)")
    ap.add_argument("--batch", type=int, default=500, help="records per store_batch call (default 500)")
    ap.add_argument("--query", default="bench", help="query name the stored papers are linked to")
    ap.add_argument("--serial", action="store_true",
                    help="store each batch inline before parsing the next (no overlap; for comparison)")
    ap.add_argument("--workdir", help="where to write the XML and the database (default: a temp dir, removed)")
    ap.add_argument("--scale-check", action="store_true", help="also run every stage at --scale-records")
    ap.add_argument("--scale-records", type=int, default=20_000, help="the second size (default 20000)")
    ap.add_argument("--results", help="Markdown file whose Ingest section is written (e.g. bench/RESULTS.md)")
    add_arguments(ap)
    ap.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)  # child-process mode
    ap.add_argument("--input", help=argparse.SUPPRESS)
    ap.add_argument("--db", help=argparse.SUPPRESS)
    ap.add_argument("--profile", help="with --stage: write cProfile stats to this file")
    args = ap.parse_args(argv)
    args.argv = argv

    if args.stage:
        run_stage(args)
        return 0

    wall = time.perf_counter()
    print(f"batch size {args.batch}; stages run in separate child processes: "
          + ", ".join(LABELS[k] for k in STAGES), flush=True)
    templates = corpus_templates()
    print(f"corpus: {len(templates)} distinct PubmedArticle records from {CORPUS.relative_to(ROOT)}")
    own_dir = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="ingest-bench-")) if own_dir else Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        runs = [measure(args.records, workdir, templates, args)]
        if args.scale_check:
            runs.append(measure(args.scale_records, workdir, templates, args))
    finally:
        if own_dir:
            shutil.rmtree(workdir, ignore_errors=True)
    problems = [p for r in runs for p in check(r)]
    section = report(runs, args, templates, time.perf_counter() - wall)
    print("\n" + section)
    if args.results:
        write_section(Path(args.results), section)
        print(f"wrote the Ingest section of {args.results}")
    for p in problems:
        print(f"COUNT MISMATCH: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
