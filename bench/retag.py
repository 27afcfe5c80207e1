"""Retag benchmark: how fast `monitor retag` re-tags a stored collection on one core.

Builds a SQLite database of N papers (default 20,000) from the real PubMed records in tests/data/efetch
(replicated under fresh PMIDs, the same way bench/ingest.py does), tags them once with the shipped
taxonomy, edits one synonym in a copy of the taxonomy (so the version changes and every paper must be
rewritten) and times ``Storage.retag`` over the whole collection in this one process. Also prints the
breakdown per paper: loading the stored JSON into an Article, the tagger itself, and the database part.

    .venv/bin/python bench/retag.py [--papers 20000] [--results bench/RESULTS.md]

Target (issue 3): at least 5,000 papers/s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import gzip
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from monitor import pubmed  # noqa: E402
from monitor.store import Storage, tag_input_article, tag_input_json  # noqa: E402
from monitor.tagging import load_taxonomy, tag  # noqa: E402
from monitor.types import Article  # noqa: E402

NOW = dt.datetime(2026, 11, 22, tzinfo=dt.timezone.utc)


def corpus() -> list[Article]:
    seen: dict[str, Article] = {}
    for path in sorted((ROOT / "tests" / "data" / "efetch").rglob("*.xml*")):
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        for item in pubmed.parse(data):
            if isinstance(item, Article) and (item.title or item.abstract):
                seen[item.pmid] = item
    return list(seen.values())


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--papers", type=int, default=20_000)
    parser.add_argument("--results", type=Path, help="write the Retag section of this Markdown file")
    args = parser.parse_args()

    articles = corpus()
    shipped = ROOT / "taxonomy.toml"
    with tempfile.TemporaryDirectory() as tmp:
        store = build(Path(tmp) / "retag.sqlite3", args.papers, articles)
        first_tax = load_taxonomy(shipped)
        store.retag(functools.partial(tag, taxonomy=first_tax))  # the collection as `monitor run` leaves it

        edited = Path(tmp) / "taxonomy.toml"
        text = shipped.read_text(encoding="utf-8")
        text, n = re.subn(r"patterns = \['rosacea\\w\*', 'acne rosacea'\]",
                          "patterns = ['rosacea\\\\w*', 'acne rosacea', 'erythematotelangiectatic']", text)
        assert n == 1, "the rosacea line of taxonomy.toml changed; update the benchmark"
        edited.write_text(text, encoding="utf-8")
        taxonomy = load_taxonomy(edited)
        assert taxonomy.version != first_tax.version

        began = time.perf_counter()
        cpu = time.process_time()
        changes = store.retag(functools.partial(tag, taxonomy=taxonomy))
        seconds = time.perf_counter() - began
        cpu_seconds = time.process_time() - cpu
        assert changes.examined == args.papers and changes.rewritten == args.papers, changes

        # Breakdown on 5,000 papers: decoding the stored tagger input (what retag reads), then tagging.
        sample = [tag_input_json(a) for a in (articles * (5000 // len(articles) + 1))[:5000]]
        t0 = time.perf_counter()
        loaded = [tag_input_article(str(i), text) for i, text in enumerate(sample)]
        t1 = time.perf_counter()
        for a in loaded:
            tag(a, taxonomy)
        t2 = time.perf_counter()
        load_us = (t1 - t0) / len(sample) * 1e6
        tag_us = (t2 - t1) / len(sample) * 1e6
        total_us = seconds / args.papers * 1e6
        store.close()

    rate = args.papers / seconds
    lines = [
        "## Retag (bench/retag.py)",
        "",
        f"Command: `.venv/bin/python bench/retag.py --papers {args.papers}"
        + (f" --results {args.results}`" if args.results else "`"),
        f"Date: {dt.date.today()}; machine: {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{len(articles)} distinct real records from tests/data/efetch replicated to {args.papers:,} papers; "
        "one synonym added to the taxonomy, so every paper is re-tagged and rewritten.",
        "",
        "| papers | seconds | CPU seconds | papers/s | µs/paper: load tag input | tag | database + rest |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {args.papers:,} | {seconds:.2f} | {cpu_seconds:.2f} | {rate:,.0f} | {load_us:.0f} | {tag_us:.0f} "
        f"| {max(total_us - load_us - tag_us, 0):.0f} |",
        "",
        f"Tags changed on {changes.changed} papers, {changes.rewritten} rewritten. Target ≥ 5,000 papers/s: "
        + ("met." if rate >= 5000 else "NOT met."),
    ]
    print("\n".join(lines))
    if args.results:
        write_section(args.results, "## Retag (bench/retag.py)", "\n".join(lines) + "\n")
    return 0


def write_section(path: Path, heading: str, body: str) -> None:
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(body + "\n", text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + body
    path.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
