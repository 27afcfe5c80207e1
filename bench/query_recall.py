"""Recall of the shipped PubMed queries on labelled records, as fresh (not yet MeSH-indexed) records.

Run from the repository root::

    .venv/bin/python bench/query_recall.py [--config queries.toml] [--data FILE.jsonl …] [--misses]
                                           [--results bench/RESULTS.md]

Each record of the labelled sets (default ``../shared/tagging-dev/dev.jsonl`` and ``dev2.jsonl``: title,
abstract and the ``gut_skin_relevant`` label) is searched with every query of the config exactly as the
monitor sends it (``{block}`` references expanded), by the PubMed-like matcher the E-utilities stand-in
uses (``tests/pubmed_query.py``: PubMed syntax, left-to-right operators, phrases, truncation, proximity;
no automatic term mapping). MeSH headings and publication types are removed first, because a record the
monitor sees on its first day has neither: only the ``[tiab]`` side of each query can find it.

Prints recall (relevant records retrieved by at least one query), and per query the relevant records and
the near-miss negatives (records labelled not gut–skin relevant: topical-only, skin-microbiome-only,
gut-only, serum-level-only papers) it retrieves. ``--misses`` lists the relevant records no query finds.
``--results`` writes the "Query recall" section of that Markdown file (other sections are kept). Exit 1
when recall is under the target (0.98).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._results import write_section  # noqa: E402 - after the sys.path line
from monitor.config import load_config  # noqa: E402
from tests.pubmed_query import Doc, Matcher  # noqa: E402

SHARED = ROOT.parent / "shared" / "tagging-dev"
DEFAULT_DATA = [SHARED / "dev.jsonl", SHARED / "dev2.jsonl"]
TARGET = 0.98
HEADING = "## Query recall (bench/query_recall.py)"


@dataclass(frozen=True, slots=True)
class Labelled:
    id: str
    relevant: bool
    doc: Doc


def load(paths: list[Path]) -> list[Labelled]:
    """The labelled records as a fresh record looks: title and abstract, no MeSH, no publication types."""
    out: list[Labelled] = []
    for path in paths:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                rec = json.loads(line)
                doc = Doc(pmid=rec["id"], title=rec.get("title") or "", abstract=rec.get("abstract") or "")
                out.append(Labelled(rec["id"], bool(rec["gut_skin_relevant"]), doc))
    return out


@dataclass(frozen=True, slots=True)
class QueryFigures:
    name: str
    relevant: int
    negatives: int


@dataclass(frozen=True, slots=True)
class Figures:
    relevant: int
    negatives: int
    retrieved: int
    per_query: tuple[QueryFigures, ...]
    missed: tuple[Labelled, ...]
    negatives_retrieved: int

    @property
    def recall(self) -> float:
        return self.retrieved / self.relevant if self.relevant else 0.0


def measure(config_path: Path, records: list[Labelled]) -> Figures:
    config = load_config(config_path, env={})
    matcher = Matcher(r.doc for r in records)
    relevant = {r.id for r in records if r.relevant}
    found: set[str] = set()
    per_query: list[QueryFigures] = []
    for query in config.queries:
        outcome = matcher.search(query.term)
        if outcome.errors or outcome.warnings:
            raise SystemExit(f"{query.name}: the matcher reports {outcome.errors + outcome.warnings}")
        hits = set(outcome.ids)
        found |= hits
        per_query.append(QueryFigures(query.name, len(hits & relevant), len(hits - relevant)))
    missed = tuple(r for r in records if r.relevant and r.id not in found)
    return Figures(len(relevant), len(records) - len(relevant), len(found & relevant), tuple(per_query),
                   missed, len(found - relevant))


def report(fig: Figures, data: list[Path]) -> list[str]:
    names = " + ".join(p.name for p in data)
    lines = [f"records: {fig.relevant} relevant, {fig.negatives} near-miss negatives ({names}; MeSH removed)",
             f"recall: {fig.recall:.3f} ({fig.retrieved} of {fig.relevant} relevant records retrieved by >= 1 "
             f"query; target {TARGET})",
             f"near-miss negatives retrieved by any query: {fig.negatives_retrieved} of {fig.negatives}",
             "", f"{'query':<26} {'relevant':>8} {'negatives':>9}"]
    lines += [f"{q.name:<26} {q.relevant:>8} {q.negatives:>9}" for q in fig.per_query]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "queries.toml")
    parser.add_argument("--data", type=Path, action="append", help="labelled JSONL (repeatable)")
    parser.add_argument("--misses", action="store_true", help="list the relevant records no query retrieves")
    parser.add_argument("--results", type=Path, help="write the Query recall section of this Markdown file")
    args = parser.parse_args(argv)
    data = args.data or DEFAULT_DATA
    fig = measure(args.config, load(data))
    lines = report(fig, data)
    print("\n".join(lines))
    if args.misses or fig.missed:
        print("\nmissed:" if fig.missed else "\nmissed: none")
        for rec in fig.missed:
            print(f"  {rec.id}  {rec.doc.title[:100]}")
    if args.results:
        body = "\n".join([HEADING, "", "```", "$ .venv/bin/python bench/query_recall.py --results bench/RESULTS.md",
                          *lines, "", "missed: " + (", ".join(r.id for r in fig.missed) or "none"), "```", ""])
        write_section(args.results, HEADING, body)
    return 0 if fig.recall >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
