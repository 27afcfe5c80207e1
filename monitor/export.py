"""Export: stored papers → JSON Lines, JSON, CSV and (from :mod:`monitor.citations`) RIS, BibTeX and
CSL-JSON. Pure formatting over :class:`~monitor.types.StoredPaper`.

JSONL carries every parsed field (it is how other tools and our own checks read the database); JSON is the
same records as one array; CSV flattens lists with ``; `` for spreadsheets.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable
from typing import Any, TextIO

from .citations import write_bibtex, write_csl_json, write_ris
from .formats import csv_cell, json_line
from .types import StoredPaper

CSV_COLUMNS = (
    "pmid", "version", "status", "deleted", "retracted", "title", "abstract", "authors", "journal",
    "journal_iso", "volume", "issue", "pages", "pub_date", "sort_date", "year", "doi", "pmcid", "pii",
    "languages", "mesh", "keywords", "publication_types", "corrections", "date_revised", "date_completed",
    "queries", "first_seen_at", "updated_at", "conditions", "interventions", "designs", "gut_skin_relevant",
    "relevance", "tag_evidence", "taxonomy_version",
)


def paper_record(paper: StoredPaper) -> dict[str, Any]:
    """The export shape of one paper: all parsed fields plus what the monitor knows about it."""
    a = paper.article
    record = a.to_dict()
    record.update(
        abstract_text=a.abstract_text,
        year=a.year,
        deleted=paper.deleted,
        retracted=a.is_retracted,
        queries=[{"name": name, "first_found_at": at.isoformat()} for name, at in paper.queries],
        first_seen_at=paper.first_seen_at.isoformat(),
        updated_at=paper.updated_at.isoformat(),
    )
    if paper.tagging is None:
        record.update(conditions=[], interventions=[], designs=[], gut_skin_relevant=None, relevance=None,
                      tag_evidence=[], taxonomy_version=None)
    else:
        tags = paper.tagging.to_dict()
        tags["tag_evidence"] = tags.pop("evidence")
        record.update(tags)
    return record


def write_jsonl(papers: Iterable[StoredPaper], out: TextIO) -> int:
    n = 0
    for paper in papers:
        out.write(json_line(json.dumps(paper_record(paper), ensure_ascii=False, sort_keys=True)))
        out.write("\n")
        n += 1
    return n


def write_csv(papers: Iterable[StoredPaper], out: TextIO) -> int:
    """One row per paper; no cell can start a spreadsheet formula (:func:`~monitor.formats.csv_cell`)."""
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    n = 0
    for paper in papers:
        writer.writerow(csv_row(paper))
        n += 1
    return n


def csv_row(paper: StoredPaper) -> dict[str, Any]:
    """A paper's CSV cells, each made safe for spreadsheets."""
    return {key: csv_cell(value) for key, value in _csv_row(paper).items()}


def _csv_row(paper: StoredPaper) -> dict[str, Any]:
    a = paper.article
    j = a.journal
    return {
        "pmid": a.pmid, "version": a.version, "status": a.status or "", "deleted": paper.deleted,
        "retracted": a.is_retracted, "title": a.title, "abstract": a.abstract_text,
        "authors": "; ".join(x.display_name for x in a.authors),
        "journal": j.title or "", "journal_iso": j.iso_abbreviation or "", "volume": j.volume or "",
        "issue": j.issue or "", "pages": j.pages or "", "pub_date": a.pub_date or "",
        "sort_date": a.sort_date.isoformat() if a.sort_date else "", "year": a.year or "",
        "doi": a.doi or "", "pmcid": a.pmcid or "", "pii": a.pii or "",
        "languages": "; ".join(a.languages),
        "mesh": "; ".join(m.descriptor + ("*" if m.major else "") for m in a.mesh),
        "keywords": "; ".join(a.keywords),
        "publication_types": "; ".join(p.name for p in a.publication_types),
        "corrections": "; ".join(f"{c.ref_type} {c.pmid or c.ref_source or ''}".strip() for c in a.corrections),
        "date_revised": a.date_revised.isoformat() if a.date_revised else "",
        "date_completed": a.date_completed.isoformat() if a.date_completed else "",
        "queries": "; ".join(name for name, _ in paper.queries),
        "first_seen_at": paper.first_seen_at.isoformat(), "updated_at": paper.updated_at.isoformat(),
        **_csv_tags(paper),
    }


def _csv_tags(paper: StoredPaper) -> dict[str, Any]:
    t = paper.tagging
    if t is None:
        return {"conditions": "", "interventions": "", "designs": "", "gut_skin_relevant": "", "relevance": "",
                "tag_evidence": "", "taxonomy_version": ""}
    return {
        "conditions": "; ".join(t.conditions), "interventions": "; ".join(t.interventions),
        "designs": "; ".join(t.designs), "gut_skin_relevant": t.gut_skin_relevant,
        "relevance": f"{t.relevance:.3f}",
        "tag_evidence": "; ".join(f"{e.tag} <- {e.source}: {e.text}" for e in t.evidence),
        "taxonomy_version": t.taxonomy_version,
    }


def write_json(papers: Iterable[StoredPaper], out: TextIO) -> int:
    """The JSONL records as one JSON array, written record by record."""
    n = 0
    out.write("[")
    for paper in papers:
        out.write(",\n" if n else "\n")
        out.write(json_line(json.dumps(paper_record(paper), ensure_ascii=False, sort_keys=True)))
        n += 1
    out.write("\n]\n" if n else "]\n")
    return n


WRITERS: dict[str, Callable[[Iterable[StoredPaper], TextIO], int]] = {"jsonl": write_jsonl, "csv": write_csv}
WRITERS.update(json=write_json, ris=write_ris, bibtex=write_bibtex)
WRITERS["csl-json"] = write_csl_json
