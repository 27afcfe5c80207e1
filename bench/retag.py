"""Retag benchmark: how fast `monitor retag` re-tags a stored collection on one core.

Builds a SQLite database of N papers (default 20,000) from the real PubMed records in tests/data/efetch
(replicated under fresh PMIDs, the same way bench/ingest.py does) and tags them once with the shipped
taxonomy. Then re-tags the whole collection three times, each after an edit to a copy of the taxonomy
(every edit changes its version, so every paper is tagged again and relabelled):

1. one synonym added (the common edit; it changes no paper's tags here), timed in this process;
2. every scoring weight raised by 0.01, so every paper with any evidence gets a new tagging JSON and its
   row is rewritten (the most a taxonomy edit can write), timed in this process;
3. back to the shipped taxonomy, with the real ``monitor retag`` command in a fresh process (its own
   report of papers/s, as a user sees it).

Also prints what one paper costs in this process: decoding its stored tag input and tagging it.

    .venv/bin/python bench/retag.py [--papers 20000] [--results bench/RESULTS.md]

Target (issue 3): at least 5,000 papers/s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import os
import platform
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _results import real_records, write_section  # noqa: E402

from monitor.storage import Storage  # noqa: E402
from monitor.storage.tags import decode_tag_input, tag_input_json  # noqa: E402
from monitor.tagging import load_taxonomy, tag  # noqa: E402
from monitor.types import Article  # noqa: E402

NOW = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)


def corpus() -> list[Article]:
    return list(real_records().values())


def build(db: Path, papers: int, articles: list[Article]) -> Storage:
    store = Storage.open(f"sqlite:///{db}")
    batch: list[Article] = []
    for i in range(papers):
        template = articles[i % len(articles)]
        batch.append(Article(**{**{f: getattr(template, f) for f in template.__dataclass_fields__},
                                "pmid": str(50_000_000 + i)}))
        if len(batch) == 1000:
            store.store_batch(batch, query="bench", now=NOW)
            batch = []
    if batch:
        store.store_batch(batch, query="bench", now=NOW)
    return store


def edit_synonym(text: str) -> str:
    text, n = re.subn(r"patterns = \['rosacea\\w\*', 'acne rosacea'\]",
                      "patterns = ['rosacea\\\\w*', 'acne rosacea', 'erythematotelangiectatic']", text)
    assert n == 1, "the rosacea line of taxonomy.toml changed; update the benchmark"
    return text


def edit_weights(text: str) -> str:
    head, sep, tail = text.partition("[scoring]\n")
    assert sep, "taxonomy.toml has no [scoring] table; update the benchmark"
    body, nxt, rest = tail.partition("\n[")
    body, n = re.subn(r"^(\w+) = (\d+(?:\.\d+)?)$", lambda m: f"{m[1]} = {float(m[2]) + 0.01:g}", body, flags=re.M)
    assert n >= 10, "expected the scoring weights in [scoring]"
    return head + sep + body + nxt + rest


def timed_retag(store: Storage, taxonomy_path: Path) -> tuple[float, float, object]:
    taxonomy = load_taxonomy(taxonomy_path)
    began, cpu = time.perf_counter(), time.process_time()
    changes = store.retag(functools.partial(tag, taxonomy=taxonomy))
    return time.perf_counter() - began, time.process_time() - cpu, changes


def cli_retag(db: Path, taxonomy: Path, tmp: Path) -> tuple[float, str]:
    """Run the installed `monitor retag` on the database; its reported papers/s and its first line."""
    config = tmp / "queries.toml"
    config.write_text((ROOT / "queries.toml").read_text(encoding="utf-8").replace(
        'taxonomy = "taxonomy.toml"', f'taxonomy = "{taxonomy.name}"'), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MONITOR_", "NCBI_"))}
    env["MONITOR_DB_URL"] = f"sqlite:///{db}"
    exe = Path(sys.executable).with_name("monitor")
    done = subprocess.run([str(exe), "--config", str(config), "retag"], capture_output=True, text=True, env=env,
                          check=True)
    first = done.stdout.splitlines()[0]
    rate = re.search(r"\(([\d,]+) papers/s\)", first)
    assert rate, first
    return float(rate[1].replace(",", "")), first


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--papers", type=int, default=20_000)
    parser.add_argument("--results", type=Path, help="write the Retag section of this Markdown file")
    args = parser.parse_args()

    articles = corpus()
    shipped = ROOT / "taxonomy.toml"
    # What one paper costs here: the stored tag inputs of 5,000 papers, decoded and tagged one at a time.
    sample = [tag_input_json(a) for a in (articles * (5000 // len(articles) + 1))[:5000]]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        db = tmp / "retag.sqlite3"
        store = build(db, args.papers, articles)
        distinct = len(articles)
        del articles  # the command holds no parsed records either
        store.retag(functools.partial(tag, taxonomy=load_taxonomy(shipped)))  # as `monitor run` leaves it
        text = shipped.read_text(encoding="utf-8")
        rows = []
        for label, edit in (("one synonym added", edit_synonym), ("every scoring weight +0.01", edit_weights)):
            path = tmp / f"taxonomy-{edit.__name__}.toml"
            path.write_text(edit(text), encoding="utf-8")
            seconds, cpu_seconds, changes = timed_retag(store, path)
            assert changes.examined == args.papers and changes.rewritten == args.papers, changes
            rows.append((label, seconds, cpu_seconds, changes))

        taxonomy = load_taxonomy(shipped)
        t0 = time.perf_counter()
        for text_in in sample:
            decode_tag_input(text_in)
        t1 = time.perf_counter()
        for text_in in sample:
            tag(decode_tag_input(text_in), taxonomy)
        t2 = time.perf_counter()
        load_us = (t1 - t0) / len(sample) * 1e6
        tag_us = (t2 - t1) / len(sample) * 1e6 - load_us
        store.close()
        shutil.copy(shipped, tmp / "shipped.toml")
        cli_rate, cli_line = cli_retag(db, tmp / "shipped.toml", tmp)

    lines = [
        "## Retag (bench/retag.py)",
        "",
        f"Command: `.venv/bin/python bench/retag.py --papers {args.papers}"
        + (f" --results {args.results}`" if args.results else "`"),
        f"Date: {dt.date.today()}; machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}; {distinct:,} distinct real records from "
        f"tests/data/efetch replicated to {args.papers:,} papers, tagged once with the shipped taxonomy, then "
        "re-tagged after each edit below (each edit changes the taxonomy version, so every paper is relabelled).",
        "",
        "| edit | papers | seconds | CPU seconds | papers/s | tags changed on | tagging JSON rewritten |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    rates = []
    for label, seconds, cpu_seconds, changes in rows:
        rate = args.papers / seconds
        rates.append(rate)
        lines.append(f"| {label} | {args.papers:,} | {seconds:.2f} | {cpu_seconds:.2f} | {rate:,.0f} | "
                     f"{changes.changed:,} | {changes.rewritten - changes.relabelled:,} |")
    rates.append(cli_rate)
    lines += [
        "",
        f"`monitor retag` (fresh process, back to the shipped taxonomy): `{cli_line}`",
        "",
        f"Per paper in this process: decoding the stored tag input {load_us:.0f} µs, tagging {tag_us:.0f} µs; "
        "the rest of each retag above is reading and writing the database.",
        "",
        f"Slowest of the three: {min(rates):,.0f} papers/s. Target ≥ 5,000 papers/s: "
        + ("met." if min(rates) >= 5000 else "NOT met."),
    ]
    print("\n".join(lines))
    if args.results:
        write_section(args.results, "## Retag (bench/retag.py)", "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
