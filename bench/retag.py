"""Retag benchmark: how fast `monitor retag` re-tags a stored collection on one core.

Builds a database of N papers (SQLite by default; ``--db-url sqlite --db-url postgres`` measures SQLite and a
throwaway PostgreSQL cluster in one run, see bench/_backends.py) (default 20,000) from the real PubMed records in tests/data/efetch
(replicated under fresh PMIDs, the same way bench/ingest.py does) and tags them once with the shipped
taxonomy. Then re-tags the whole collection three times, each after an edit to a copy of the taxonomy
(every edit changes its version, so every paper is tagged again and relabelled):

1. one synonym added (the common edit; it changes no paper's tags here), timed in this process;
2. every scoring weight raised by 0.01, so every paper with any evidence gets a new tagging JSON and its
   row is rewritten (the most a taxonomy edit can write), timed in this process;
3. back to the shipped taxonomy, with the real ``monitor retag`` command in a fresh process (its own
   report of papers/s, as a user sees it).

Also prints what one paper costs in this process: decoding its stored tag input and tagging it.

    .venv/bin/python bench/retag.py [--papers 20000] [--db-url sqlite --db-url postgres] [--results bench/RESULTS.md]

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
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _backends import Backend, add_arguments, backends, server_version  # noqa: E402
from _results import real_records, write_section  # noqa: E402

from monitor.storage import Storage  # noqa: E402
from monitor.storage.tags import decode_tag_input, tag_input_json  # noqa: E402
from monitor.tagging import load_taxonomy, tag  # noqa: E402
from monitor.types import Article  # noqa: E402

NOW = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)


def corpus() -> list[Article]:
    return list(real_records().values())


def build(url: str, papers: int, articles: list[Article]) -> Storage:
    store = Storage.open(url)
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


def cli_retag(url: str, taxonomy: Path, tmp: Path) -> tuple[float, str]:
    """Run the installed `monitor retag` on the database; its reported papers/s and its first line."""
    config = tmp / "queries.toml"
    config.write_text((ROOT / "queries.toml").read_text(encoding="utf-8").replace(
        'taxonomy = "taxonomy.toml"', f'taxonomy = "{taxonomy.name}"'), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MONITOR_", "NCBI_"))}
    env["MONITOR_DB_URL"] = url
    exe = Path(sys.executable).with_name("monitor")
    done = subprocess.run([str(exe), "--config", str(config), "retag"], capture_output=True, text=True, env=env,
                          check=True)
    first = done.stdout.splitlines()[0]
    rate = re.search(r"\(([\d,]+) papers/s\)", first)
    assert rate, first
    return float(rate[1].replace(",", "")), first


def measure(backend: Backend, papers: int, articles: list[Article], tmp: Path) -> tuple[list[tuple], float, str]:
    """The two in-process retags and the `monitor retag` run on one backend: (rows, its papers/s, its line)."""
    shipped = ROOT / "taxonomy.toml"
    store = build(backend.url, papers, articles)
    store.retag(functools.partial(tag, taxonomy=load_taxonomy(shipped)))  # as `monitor run` leaves it
    text = shipped.read_text(encoding="utf-8")
    rows = []
    for label, edit in (("one synonym added", edit_synonym), ("every scoring weight +0.01", edit_weights)):
        path = tmp / f"taxonomy-{edit.__name__}.toml"
        path.write_text(edit(text), encoding="utf-8")
        seconds, cpu_seconds, changes = timed_retag(store, path)
        assert changes.examined == papers and changes.rewritten == papers, changes
        rows.append((label, seconds, cpu_seconds, changes))
    store.close()
    shutil.copy(shipped, tmp / "shipped.toml")
    cli_rate, cli_line = cli_retag(backend.url, tmp / "shipped.toml", tmp)
    return rows, cli_rate, cli_line


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--papers", type=int, default=20_000)
    parser.add_argument("--results", type=Path, help="write the Retag section of this Markdown file")
    add_arguments(parser)
    args = parser.parse_args()

    articles = corpus()
    distinct = len(articles)
    # What one paper costs here: the stored tag inputs of 5,000 papers, decoded and tagged one at a time.
    sample = [tag_input_json(a) for a in (articles * (5000 // len(articles) + 1))[:5000]]
    results = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        with backends(args, tmp, "retag") as found:
            versions = ", ".join(dict.fromkeys(server_version(b.url) for b in found))
            for backend in found:
                results.append((backend, *measure(backend, args.papers, articles, tmp)))
    del articles  # the command holds no parsed records either
    taxonomy = load_taxonomy(ROOT / "taxonomy.toml")
    t0 = time.perf_counter()
    for text_in in sample:
        decode_tag_input(text_in)
    t1 = time.perf_counter()
    for text_in in sample:
        tag(decode_tag_input(text_in), taxonomy)
    t2 = time.perf_counter()
    load_us = (t1 - t0) / len(sample) * 1e6
    tag_us = (t2 - t1) / len(sample) * 1e6 - load_us
    command = " ".join(["--papers", str(args.papers), *(f"--db-url {u}" for u in args.db_url or []),
                        *(["--results", str(args.results)] if args.results else [])])
    lines = [
        "## Retag (bench/retag.py)",
        "",
        f"Command: `.venv/bin/python bench/retag.py {command}`",
        f"Date: {dt.date.today()}; machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{versions}; {distinct:,} distinct real records from "
        f"tests/data/efetch replicated to {args.papers:,} papers, tagged once with the shipped taxonomy, then "
        "re-tagged after each edit below (each edit changes the taxonomy version, so every paper is relabelled).",
        "",
        "| database | edit | papers | seconds | CPU seconds | papers/s | tags changed on | tagging JSON rewritten |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    rates = []
    for backend, rows, cli_rate, _ in results:
        for label, seconds, cpu_seconds, changes in rows:
            rate = args.papers / seconds
            rates.append(rate)
            lines.append(f"| {backend.name} | {label} | {args.papers:,} | {seconds:.2f} | {cpu_seconds:.2f} | "
                         f"{rate:,.0f} | {changes.changed:,} | {changes.rewritten - changes.relabelled:,} |")
        rates.append(cli_rate)
    lines.append("")
    for backend, _, _, cli_line in results:
        lines.append(f"`monitor retag` on {backend.name} (fresh process, back to the shipped taxonomy): `{cli_line}`  ")
    lines += [
        "",
        f"Per paper in this process: decoding the stored tag input {load_us:.0f} µs, tagging {tag_us:.0f} µs; "
        "the rest of each retag above is reading and writing the database.",
        "",
        f"Slowest of all: {min(rates):,.0f} papers/s. Target ≥ 5,000 papers/s: "
        + ("met." if min(rates) >= 5000 else "NOT met."),
    ]
    print("\n".join(lines))
    if args.results:
        write_section(args.results, "## Retag (bench/retag.py)", "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
