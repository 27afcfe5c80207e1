"""Tagging quality on the labelled sets, a k-fold cross-check, relevance calibration, and speed.

Run from the repository root::

    .venv/bin/python bench/tagging_eval.py [--folds 5] [--errors] [--fit-calibration] [--seconds 2]
                                           [--taxonomy PATH] [--results bench/RESULTS.md]

Reports, for the dev set (``tests/data/tagging/labelled.jsonl``), dev2 (``tests/data/tagging/dev2.jsonl``)
and both together: conditions and interventions micro/macro F1 with per-tag precision, recall and support;
relevance precision and recall. Then a k-fold cross-check: the 120 records are split into ``--folds``
fixed folds (by a hash of the record id) and each fold is scored on its own with the rules frozen, so
the spread between folds shows how much a figure depends on which records happen to be in a set. The
calibration of the relevance score is checked the same way: the calibration constants are refitted on
the other folds and the held-out fold's scores are binned (a reliability table); ``--fit-calibration``
prints the constants fitted on all records, for ``[relevance] calibration`` in taxonomy.toml. Also: how
many of the unrelated real PubMed records in ``tests/data/efetch`` are flagged relevant, with ``--errors``
each false positive / negative by record with its evidence, and throughput on one core.
``--results`` writes the "Tagging" section of that Markdown file (other sections are kept).

The ``other_skin`` label is not a product tag and is not scored.
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from _results import real_records, write_section  # noqa: E402

from monitor.errors import MonitorError  # noqa: E402 - after the sys.path line
from monitor.tagging import DEFAULT_TAXONOMY, analyse, calibrate, load_taxonomy, tag  # noqa: E402
from monitor.taxonomy import Calibration, Taxonomy  # noqa: E402
from monitor.types import Article  # noqa: E402
from tests.tagging_data import DEV2, LABELLED, Record, Report, evaluate, folds, load_records  # noqa: E402

TARGETS = {"conditions_micro_f1": 0.96, "interventions_micro_f1": 0.90, "relevance_precision": 0.97,
           "relevance_recall": 0.97}
BINS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0000001)
HEADER = ("| set | n | cond. micro-F1 | cond. macro-F1 | interv. micro-F1 | interv. macro-F1 | rel. P | rel. R "
          "| rel. F1 |\n|---|---|---|---|---|---|---|---|---|")


@dataclass(frozen=True)
class Scored:
    """One labelled record's raw (uncalibrated) relevance and its label."""

    raw: float
    relevant: bool


def table(report: Report, kind: str) -> list[str]:
    lines = [f"{kind:<28} {'P':>6} {'R':>6} {'F1':>6} {'support':>8} {'pred':>5}"]
    for tag_id, c in sorted(report.per_tag[kind].items()):
        lines.append(f"  {tag_id:<26} {c.precision:6.2f} {c.recall:6.2f} {c.f1:6.2f} {c.support:8d} {c.tp + c.fp:5d}")
    m = report.micro(kind)
    lines.append(f"  {'micro':<26} {m.precision:6.3f} {m.recall:6.3f} {m.f1:6.3f} {m.support:8d} {m.tp + m.fp:5d}")
    lines.append(f"  {'macro (F1)':<26} {'':6} {'':6} {report.macro_f1(kind):6.3f}")
    return lines


def summary_line(name: str, report: Report) -> str:
    f = report.figures()
    return (f"| {name} | {report.n} | {f['conditions_micro_f1']:.3f} | {f['conditions_macro_f1']:.3f} | "
            f"{f['interventions_micro_f1']:.3f} | {f['interventions_macro_f1']:.3f} | "
            f"{f['relevance_precision']:.3f} | {f['relevance_recall']:.3f} | {f['relevance_f1']:.3f} |")


# ─────────────────────────────────────────────── calibration ────────────────────────────────────────────


def _logit(raw: float) -> float:
    raw = min(max(raw, 1e-6), 1 - 1e-6)
    return math.log(raw / (1 - raw))


def fit_calibration(points: Sequence[Scored], l2: float = 1.0) -> Calibration:
    """Logistic regression of the label on logit(raw) (Newton's method, an L2 penalty pulling the slope
    towards 1 and the intercept towards 0, so a handful of records cannot make it extreme)."""
    slope, intercept = 1.0, 0.0
    for _ in range(50):
        g_s = l2 * (slope - 1.0)
        g_i = l2 * intercept
        h_ss, h_si, h_ii = l2, 0.0, l2
        for p in points:
            x = _logit(p.raw)
            q = 1.0 / (1.0 + math.exp(-(slope * x + intercept)))
            err = q - (1.0 if p.relevant else 0.0)
            g_s += err * x
            g_i += err
            w = q * (1 - q)
            h_ss += w * x * x
            h_si += w * x
            h_ii += w
        det = h_ss * h_ii - h_si * h_si
        if det <= 0:
            break
        d_s = (h_ii * g_s - h_si * g_i) / det
        d_i = (h_ss * g_i - h_si * g_s) / det
        slope, intercept = slope - d_s, intercept - d_i
        if abs(d_s) + abs(d_i) < 1e-9:
            break
    return Calibration(round(min(max(slope, 0.01), 100.0), 3), round(min(max(intercept, -100.0), 100.0), 3))


def reliability(pairs: Sequence[tuple[float, bool]]) -> list[str]:
    """Rows of a reliability table: per score bin, how many records and how many of them are relevant."""
    rows = []
    for lo, hi in itertools.pairwise(BINS):
        inside = [rel for score, rel in pairs if lo <= score < hi]
        share = f"{sum(inside) / len(inside):.2f}" if inside else "–"
        rows.append(f"| {lo:.1f}–{min(hi, 1.0):.1f} | {len(inside)} | {sum(inside)} | {share} |")
    return rows


def raw_scores(records: Sequence[Record], taxonomy: Taxonomy) -> list[Scored]:
    return [Scored(analyse(r.article, taxonomy).raw_relevance, r.relevant) for r in records]


def cross_fitted(parts: Sequence[Sequence[Record]], taxonomy: Taxonomy) -> list[tuple[float, bool]]:
    """Each fold's records scored with calibration constants fitted on the other folds."""
    scored = [raw_scores(part, taxonomy) for part in parts]
    out = []
    for i, held in enumerate(scored):
        rest = [p for j, part in enumerate(scored) if j != i for p in part]
        cal = fit_calibration(rest)
        out += [(calibrate(p.raw, cal), p.relevant) for p in held]
    return out


# ─────────────────────────────────────────────── other figures ──────────────────────────────────────────


def corpus_flagged(articles: Sequence[Article], taxonomy: Taxonomy) -> list[str]:
    """PMIDs of the unrelated real records that are tagged gut–skin relevant."""
    return [a.pmid for a in articles if tag(a, taxonomy).gut_skin_relevant]


def throughput(articles: Sequence[Article], taxonomy: Taxonomy, seconds: float) -> float:
    """Papers tagged per CPU second of this process (CPU time, not wall time: on a shared machine the wall
    clock also counts the time other processes held the core)."""
    for a in articles:  # warm-up
        tag(a, taxonomy)
    done, start = 0, time.process_time()
    while True:
        for a in articles:
            tag(a, taxonomy)
        done += len(articles)
        elapsed = time.process_time() - start
        if elapsed >= seconds:
            return done / elapsed


def errors(report: Report, records: Sequence[Record], taxonomy: Taxonomy) -> list[str]:
    by_id = {r.id: r for r in records}
    lines = []
    for rec_id, field_name, kind, what in report.errors:
        line = f"  {rec_id:<10} {field_name:<13} {kind} {what}"
        t = tag(by_id[rec_id].article, taxonomy)
        if kind == "FP" and field_name != "relevance":
            line += "   <- " + "; ".join(f"{e.source}:{e.text!r}:{e.weight:g}" for e in t.evidence if e.tag == what)
        if field_name == "relevance":
            line += "   <- " + "; ".join(f"{e.tag}:{e.source}:{e.text!r}:{e.weight:g}" for e in t.evidence
                                         if e.kind == "relevance")
        lines.append(line)
    return lines


def fold_rows(parts: Sequence[Sequence[Record]], taxonomy: Taxonomy) -> tuple[list[str], list[str]]:
    rows, spread = [], []
    figures = []
    for i, part in enumerate(parts, 1):
        rep, _ = evaluate(part, taxonomy)
        rows.append(summary_line(f"fold {i}", rep))
        figures.append(rep.figures())
    for key in TARGETS:
        values = [f[key] for f in figures]
        spread.append(f"{key}: mean {statistics.mean(values):.3f}, min {min(values):.3f}, max {max(values):.3f}")
    return rows, spread


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--taxonomy", type=Path, default=DEFAULT_TAXONOMY)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--errors", action="store_true", help="list false positives / negatives per record")
    ap.add_argument("--fit-calibration", action="store_true", help="print calibration constants fitted on all")
    ap.add_argument("--seconds", type=float, default=2.0, help="minimum time for the throughput loop")
    ap.add_argument("--results", type=Path, help="write the Tagging section of this Markdown file")
    args = ap.parse_args(argv)
    try:
        taxonomy = load_taxonomy(args.taxonomy)
    except MonitorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    dev, dev2 = load_records(LABELLED), load_records(DEV2)
    both = dev + dev2
    reports = {name: evaluate(recs, taxonomy)[0] for name, recs in (("dev", dev), ("dev2", dev2),
                                                                    ("dev + dev2", both))}
    out: list[str] = [f"taxonomy {taxonomy.version}", "", HEADER]
    out += [summary_line(name, rep) for name, rep in reports.items()]
    full = reports["dev + dev2"]
    per_tag = ["", "```", *table(full, "conditions"), "", *table(full, "interventions"), "```"]
    parts = folds(both, args.folds)
    rows, spread = fold_rows(parts, taxonomy)
    cal_pairs = cross_fitted(parts, taxonomy)
    shipped_pairs = [(calibrate(p.raw, taxonomy.calibration), p.relevant) for p in raw_scores(both, taxonomy)]
    corpus = list(real_records().values())
    flagged = corpus_flagged(corpus, taxonomy)
    speed = throughput(corpus, taxonomy, args.seconds)
    print("\n".join(out + per_tag))
    print(f"\n{args.folds}-fold cross-check (rules frozen; each fold scored on its own):\n{HEADER}")
    print("\n".join(rows + [""] + spread))
    print("\nreliability of the shipped relevance score on dev + dev2 | cross-fitted (held-out folds):")
    print("| score | n | relevant | share |\n|---|---|---|---|")
    print("\n".join(a + "   " + b for a, b in zip(reliability(shipped_pairs), reliability(cal_pairs), strict=True)))
    print(f"\nunrelated real records flagged relevant: {len(flagged)} of {len(corpus)} {flagged[:10]}")
    print(f"throughput: {speed:,.0f} papers per CPU second ({len(corpus)} real records, parsing not included)")
    if args.fit_calibration:
        print(f"\ncalibration fitted on all {len(both)} records: {list(fit_calibration(raw_scores(both, taxonomy)))}")
    if args.errors:
        print("\nerrors:")
        print("\n".join(errors(full, both, taxonomy)))
    if args.results:
        write_section(args.results, "## Tagging", _section(args, taxonomy, out, per_tag, rows, spread, shipped_pairs,
                                                           cal_pairs, flagged, len(corpus), speed))
    return 0


def _section(args: argparse.Namespace, taxonomy: Taxonomy, out: list[str], per_tag: list[str], rows: list[str],
             spread: list[str], shipped: list[tuple[float, bool]], crossed: list[tuple[float, bool]],
             flagged: list[str], n_corpus: int, speed: float) -> str:
    fold_table = "\n".join([HEADER, *rows])
    rel_table = "\n".join(["| score | n | relevant | share relevant |", "|---|---|---|---|", *reliability(shipped)])
    cross_table = "\n".join(["| score | n | relevant | share relevant |", "|---|---|---|---|", *reliability(crossed)])
    return "\n".join([
        "## Tagging",
        "",
        f"Command: `.venv/bin/python bench/tagging_eval.py --folds {args.folds} --results bench/RESULTS.md`; "
        f"taxonomy `{taxonomy.version}`. Targets (issue 17, measured on a hidden set): conditions micro-F1 ≥ 0.96, "
        "interventions micro-F1 ≥ 0.90, relevance precision and recall ≥ 0.97, ≤ 1% of unrelated records "
        "flagged relevant. `other_skin` is not scored.",
        "",
        *out[2:],
        "",
        "Both sets, per tag:",
        *per_tag,
        "",
        f"{args.folds}-fold cross-check: the 120 records in {args.folds} fixed folds (by a hash of the record id), "
        "each scored on its own with the rules frozen:",
        "",
        fold_table,
        "",
        *[f"- {line}" for line in spread],
        "",
        "Reliability of the relevance score (the shipped calibration, on dev + dev2):",
        "",
        rel_table,
        "",
        "The same with the calibration refitted on the other folds for each held-out fold (an honest estimate "
        "of how the mapping generalises):",
        "",
        cross_table,
        "",
        f"Unrelated real records (tests/data/efetch) flagged relevant: {len(flagged)} of {n_corpus}.",
        "",
        f"Throughput on one core: {speed:,.0f} papers per CPU second tagging the {n_corpus} real records (parsing not "
        "included; `bench/retag.py` has the end-to-end retag figure).",
        "",
    ])


if __name__ == "__main__":
    sys.exit(main())
