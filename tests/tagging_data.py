"""The labelled tagging sets and how they are scored (shared by tests/test_tagging.py and bench/tagging_eval.py).

Two sets: ``tests/data/tagging/labelled.jsonl`` (dev, a copy of ``../shared/tagging-dev/dev.jsonl``) and
``tests/data/tagging/dev2.jsonl`` (a copy of ``../shared/tagging-dev/dev2.jsonl``). A labelled row
becomes an :class:`~monitor.types.Article` in exactly one place, :func:`row_to_article`: the abstract is one
unlabelled section (as PubMed gives an unstructured abstract; inline headings are the tagger's business),
``mesh_terms`` like ``"Fecal Microbiota Transplantation* / trends"`` become MeSH headings (``*`` marks a
major topic, on the descriptor or on a qualifier), ``publication_types`` become publication types.

The labels include ``other_skin`` (a skin disease outside the vocabulary); the product does not emit it, so
it is left out of scoring (:data:`UNSCORED`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monitor.tagging import Taxonomy, tag
from monitor.types import (
    AbstractSection,
    Article,
    MeshHeading,
    MeshQualifier,
    PublicationType,
    Tagging,
)

LABELLED = Path(__file__).resolve().parent / "data" / "tagging" / "labelled.jsonl"
DEV2 = LABELLED.with_name("dev2.jsonl")
UNSCORED = frozenset({"other_skin"})


@dataclass(frozen=True)
class Record:
    id: str
    article: Article
    conditions: frozenset[str]
    interventions: frozenset[str]
    relevant: bool
    note: str = ""


def parse_mesh_term(term: str) -> MeshHeading:
    """``"Gastrointestinal Diseases / metabolism*"`` → MeshHeading (``*`` = major topic)."""
    parts = [p.strip() for p in term.split("/")]
    descriptor = parts[0]
    major = descriptor.endswith("*")
    qualifiers = tuple(MeshQualifier(name=q.rstrip("*"), major=q.endswith("*")) for q in parts[1:] if q)
    return MeshHeading(descriptor=descriptor.rstrip("*").strip(), major=major, qualifiers=qualifiers)


def row_to_article(row: dict[str, Any]) -> Article:
    abstract = (row.get("abstract") or "").strip()
    return Article(
        pmid=str(row.get("pmid") or row["id"]),
        title=(row.get("title") or "").strip(),
        abstract=(AbstractSection(text=abstract),) if abstract else (),
        doi=row.get("doi"),
        mesh=tuple(parse_mesh_term(t) for t in row.get("mesh_terms") or ()),
        publication_types=tuple(PublicationType(name=p) for p in row.get("publication_types") or ()),
        keywords=tuple(row.get("keywords") or ()),
    )


def load_records(path: Path | str = LABELLED) -> list[Record]:
    records = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            row = json.loads(line)
            records.append(Record(
                id=row["id"],
                article=row_to_article(row),
                conditions=frozenset(row.get("conditions") or ()) - UNSCORED,
                interventions=frozenset(row.get("interventions") or ()) - UNSCORED,
                relevant=bool(row.get("gut_skin_relevant")),
                note=row.get("label_note") or "",
            ))
    return records


def folds(records: Sequence[Record], k: int) -> list[list[Record]]:
    """``k`` fixed folds by a hash of the record id (each fold sorted by id)."""
    ranked = sorted(records, key=lambda r: hashlib.sha1(r.id.encode()).hexdigest())
    return [sorted(ranked[i::k], key=lambda r: r.id) for i in range(k)]


def split_halves(records: Sequence[Record]) -> tuple[list[Record], list[Record]]:
    """Two fixed halves by a hash of the record id: A (rules were developed on it) and B (held out)."""
    ranked = sorted(records, key=lambda r: hashlib.sha1(r.id.encode()).hexdigest())
    half = (len(ranked) + 1) // 2
    a = sorted(ranked[:half], key=lambda r: r.id)
    b = sorted(ranked[half:], key=lambda r: r.id)
    return a, b


@dataclass
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def support(self) -> int:
        return self.tp + self.fn


@dataclass
class Report:
    n: int = 0
    per_tag: dict[str, dict[str, Counts]] = field(default_factory=lambda: {"conditions": {}, "interventions": {}})
    relevance: Counts = field(default_factory=Counts)
    errors: list[tuple[str, str, str, str]] = field(default_factory=list)  # (record id, field, "FP"/"FN", tag)

    def micro(self, kind: str) -> Counts:
        total = Counts()
        for c in self.per_tag[kind].values():
            total.tp += c.tp
            total.fp += c.fp
            total.fn += c.fn
        return total

    def macro_f1(self, kind: str) -> float:
        """Mean F1 over the tags that occur in the labels or the predictions."""
        values = [c.f1 for c in self.per_tag[kind].values() if c.tp + c.fp + c.fn]
        return sum(values) / len(values) if values else 1.0

    def figures(self) -> dict[str, float]:
        return {
            "conditions_micro_f1": self.micro("conditions").f1,
            "interventions_micro_f1": self.micro("interventions").f1,
            "conditions_macro_f1": self.macro_f1("conditions"),
            "interventions_macro_f1": self.macro_f1("interventions"),
            "relevance_precision": self.relevance.precision,
            "relevance_recall": self.relevance.recall,
            "relevance_f1": self.relevance.f1,
        }


def evaluate(records: Iterable[Record], taxonomy: Taxonomy) -> tuple[Report, dict[str, Tagging]]:
    report = Report()
    for kind in ("conditions", "interventions"):
        for tag_id in taxonomy.ids(kind[:-1]):
            report.per_tag[kind][tag_id] = Counts()
    results: dict[str, Tagging] = {}
    for rec in records:
        t = tag(rec.article, taxonomy)
        results[rec.id] = t
        report.n += 1
        for kind, gold in (("conditions", rec.conditions), ("interventions", rec.interventions)):
            predicted = set(getattr(t, kind))
            for tag_id in sorted(predicted | gold):
                c = report.per_tag[kind].setdefault(tag_id, Counts())
                if tag_id in predicted and tag_id in gold:
                    c.tp += 1
                elif tag_id in predicted:
                    c.fp += 1
                    report.errors.append((rec.id, kind, "FP", tag_id))
                else:
                    c.fn += 1
                    report.errors.append((rec.id, kind, "FN", tag_id))
        rel = report.relevance
        if t.gut_skin_relevant and rec.relevant:
            rel.tp += 1
        elif t.gut_skin_relevant:
            rel.fp += 1
            report.errors.append((rec.id, "relevance", "FP", f"score {t.relevance:.3f}"))
        elif rec.relevant:
            rel.fn += 1
            report.errors.append((rec.id, "relevance", "FN", f"score {t.relevance:.3f}"))
    return report, results
