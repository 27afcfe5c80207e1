"""Shaping stored values for the pages and the JSON API (pure): a paper's list item and full record, status
flags, evidence highlighted in the text, snippets as markup, the evidence map's design groups and shades,
pagination and links that change one parameter of the current page.

Every string from the database reaches HTML through :func:`markupsafe.escape` (here) or Jinja2's
autoescaping (the templates); nothing stored is ever trusted as markup.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from markupsafe import Markup, escape

from ..export import paper_record
from ..types import SNIPPET_CLOSE, SNIPPET_OPEN, MapCell, PaperDetail, StoredPaper, TagEvidence

PUBMED = "https://pubmed.ncbi.nlm.nih.gov/"
DOI = "https://doi.org/"
PMC = "https://www.ncbi.nlm.nih.gov/pmc/articles/"
STATUS_LABELS = {"retracted": "Retracted", "expression_of_concern": "Expression of concern",
                 "erratum": "Erratum", "withdrawn": "Withdrawn from PubMed"}
EVENT_LABELS = {"revised": "Revised (new version)", "retraction": "Retraction notice",
                "erratum": "Erratum published", "expression_of_concern": "Expression of concern",
                "update": "Updated version published", "deleted": "Withdrawn from PubMed"}
# Strongest evidence first (the digest's badge order).
DESIGN_ORDER = ("meta_analysis", "systematic_review", "rct", "clinical_trial", "mendelian_randomization",
                "observational", "review", "case_report", "animal", "in_vitro")
DESIGN_BADGES = {"meta_analysis": "Meta-analysis", "systematic_review": "Systematic review", "rct": "RCT",
                 "clinical_trial": "Clinical trial", "mendelian_randomization": "Mendelian randomization",
                 "observational": "Observational", "review": "Review", "case_report": "Case report",
                 "animal": "Animal", "in_vitro": "In vitro"}


@dataclass(frozen=True, slots=True)
class DesignGroup:
    """A rung of the evidence ladder the map shows per cell."""

    key: str
    label: str
    short: str
    designs: tuple[str, ...]


DESIGN_GROUPS = (
    DesignGroup("synthesis", "Meta-analyses and systematic reviews", "MA/SR", ("meta_analysis", "systematic_review")),
    DesignGroup("rct", "Randomized controlled trials", "RCT", ("rct",)),
    DesignGroup("clinical", "Other clinical studies", "Clin", ("clinical_trial", "case_report")),
    DesignGroup("observational", "Observational (incl. Mendelian randomization)", "Obs",
                ("observational", "mendelian_randomization")),
    DesignGroup("preclinical", "Animal and in vitro", "Pre", ("animal", "in_vitro")),
)
SHADES = 5


def status_flags(paper: StoredPaper) -> tuple[str, ...]:
    """``retracted``, ``expression_of_concern``, ``erratum``, ``withdrawn``: what a reader must know first."""
    a = paper.article
    refs = {c.ref_type for c in a.corrections}
    flags = [name for name, on in (("retracted", a.is_retracted),
                                   ("expression_of_concern", "ExpressionOfConcernIn" in refs),
                                   ("erratum", "ErratumIn" in refs), ("withdrawn", paper.deleted)) if on]
    return tuple(flags)


def ordered_designs(designs: Iterable[str]) -> list[str]:
    return sorted(designs, key=lambda d: DESIGN_ORDER.index(d) if d in DESIGN_ORDER else len(DESIGN_ORDER))


def paper_item(paper: StoredPaper, *, score: float | None = None, snippet: str | None = None) -> dict[str, Any]:
    """A paper as ``/api/papers`` lists it."""
    a, t = paper.article, paper.tagging
    return {
        "pmid": a.pmid, "title": a.title, "journal": a.journal.iso_abbreviation or a.journal.title,
        "year": a.year, "pub_date": a.pub_date, "doi": a.doi,
        "conditions": list(t.conditions) if t else [], "interventions": list(t.interventions) if t else [],
        "designs": ordered_designs(t.designs) if t else [],
        "gut_skin_relevant": t.gut_skin_relevant if t else None, "relevance": t.relevance if t else None,
        "status": list(status_flags(paper)), "first_seen_at": paper.first_seen_at.isoformat(),
        "score": score, "snippet": marked(snippet),
    }


def paper_json(detail: PaperDetail) -> dict[str, Any]:
    """``/api/papers/<pmid>``: the export record (every parsed field, tags with evidence, the queries
    that found it and when; ``status`` is PubMed's citation status there, as in `monitor export`) with its
    status flags (``status_flags``: what ``status`` is in a list item) and its history (``events``)."""
    record = paper_record(detail.paper)
    record["status_flags"] = list(status_flags(detail.paper))
    record["events"] = [{"kind": e.kind, "at": e.at.isoformat(), "notice_pmid": e.notice_pmid}
                        for e in detail.events]
    return record


def marked(snippet: str | None) -> str | None:
    """A snippet with the matches as ``**word**`` (as `monitor search --format json` writes them)."""
    if snippet is None:
        return None
    return snippet.replace(SNIPPET_OPEN, "**").replace(SNIPPET_CLOSE, "**")


def snippet_html(snippet: str | None) -> Markup:
    """A snippet escaped, its matches in ``<mark>``."""
    if not snippet:
        return Markup("")
    return Markup(str(escape(snippet)).replace(SNIPPET_OPEN, "<mark>").replace(SNIPPET_CLOSE, "</mark>"))


def quote_html(text: str) -> Markup:
    """An explanation's quote escaped, its matched words (between the explanation's marks) in ``<mark>``."""
    from ..explain import MARK_CLOSE, MARK_OPEN

    return Markup(str(escape(text)).replace(MARK_OPEN, "<mark>").replace(MARK_CLOSE, "</mark>"))


def highlight(text: str, evidence: Sequence[TagEvidence], labels: Mapping[str, str]) -> Markup:
    """``text`` escaped, with every evidence phrase found in it (case-insensitive) in a ``<mark>`` naming
    its tag; overlapping phrases: the longest wins."""
    phrases: dict[str, str] = {}
    for e in evidence:
        key = e.text.strip().casefold()
        if len(key) >= 2 and key not in phrases:
            phrases[key] = labels.get(e.tag, e.tag) if e.kind != "relevance" else "gut–skin relevance"
    if not phrases or not text:
        return escape(text)
    rx = re.compile("|".join(re.escape(p) for p in sorted(phrases, key=len, reverse=True)), re.IGNORECASE)
    out, last = [], 0
    for m in rx.finditer(text):
        tag = phrases.get(m.group(0).casefold(), "")
        out.append(str(escape(text[last:m.start()])))
        out.append(f'<mark title="{escape(tag)}">{escape(m.group(0))}</mark>')
        last = m.end()
    out.append(str(escape(text[last:])))
    return Markup("".join(out))


def evidence_for_section(evidence: Sequence[TagEvidence], source: str) -> list[TagEvidence]:
    """Evidence found in one place of the record: ``title``, or an abstract section's category or label."""
    if source == "title":
        return [e for e in evidence if e.source == "title"]
    return [e for e in evidence if e.source.startswith("abstract")]


def group_counts(designs: Mapping[str, int]) -> list[tuple[DesignGroup, int]]:
    """Per design group, how many papers have at least one of its designs (strongest group first; a paper
    with two designs of one group is counted by the larger of their counts, a lower bound)."""
    out = []
    for g in DESIGN_GROUPS:
        n = max((designs.get(d, 0) for d in g.designs), default=0)
        if n:
            out.append((g, n))
    return out


def shade(n: int, most: int) -> int:
    """0 for an empty cell, else 1..SHADES on a log scale of ``most`` (a few large cells do not wash out
    the rest)."""
    if n <= 0 or most <= 0:
        return 0
    return max(1, min(SHADES, math.ceil(SHADES * math.log1p(n) / math.log1p(most))))


def cell_index(cells: Iterable[MapCell]) -> dict[tuple[str, str], MapCell]:
    return {(c.condition, c.intervention): c for c in cells}


def link(path: str, args: Mapping[str, Sequence[str]], **changes: str | Sequence[str] | None) -> str:
    """``path`` with the current parameters, ``changes`` applied (None removes one); ``page`` is reset
    unless changed, since another filter gives other pages."""
    merged: dict[str, list[str]] = {k: [v for v in vs if v] for k, vs in args.items() if k != "page"}
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = [value] if isinstance(value, str) else list(value)
    pairs = [(k, v) for k, vs in merged.items() for v in vs if v]
    return path + ("?" + urlencode(pairs) if pairs else "")


def pages(total: int, per_page: int) -> int:
    return max(1, -(-total // per_page))


SHORT_LABELS = {"fecal_microbiota_transplant": "FMT", "hidradenitis_suppurativa": "Hidradenitis"}


def short_label(label: str, tag: str = "") -> str:
    """A tag label without its parenthesis or alternatives (``Antibiotics (incl. …)`` → ``Antibiotics``),
    or a common abbreviation, for table headers."""
    return SHORT_LABELS.get(tag) or re.split(r" \(| / ", label, maxsplit=1)[0]
