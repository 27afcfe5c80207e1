"""Build the bundled sample of gut–skin records (``monitor/sample/gut_skin_sample.xml`` and its SOURCES.md)
that ``monitor demo`` and ``python -m monitor.standin`` serve.

Run from the repository root::

    .venv/bin/python docs/make_sample.py [--data FILE.jsonl …] [--check]

The records are the labelled dev sets (default ``../shared/tagging-dev/dev.jsonl`` and ``dev2.jsonl``; see
that folder's README): real titles, journals, years, PMIDs and DOIs where known, abstracts rewritten in our
own words from the real ones, each labelled gut–skin relevant or a near-miss negative. Every record with a
publication year becomes one ``PubmedArticle`` in the shape efetch returns (PubMed DTD 2025, which the output
is validated against), keeping its real identifiers; a record whose PMID is unknown gets a placeholder PMID
(99100000 + n for ``gsh-n``, 99200000 + n for ``gsn-n``: far above any PMID PubMed has issued). What the DTD
requires and the source does not give is filled as SOURCES.md says. ``--check`` exits 1 if the shipped files
differ from what the sources give now. The output is deterministic: the same sources give the same bytes.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lxml import etree

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "tagging-dev"
DEFAULT_DATA = [SHARED / "dev.jsonl", SHARED / "dev2.jsonl"]
OUT = ROOT / "monitor" / "sample"
XML_NAME = "gut_skin_sample.xml"
DTD = ROOT / "tests" / "data" / "dtd" / "pubmed_250101.dtd"
CORPUS = ROOT / "tests" / "data" / "efetch"  # real records: where the publication types' UIs come from
PROLOG = (
    '<?xml version="1.0" ?>\n'
    '<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle, 1st January 2025//EN" '
    '"https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_250101.dtd">\n'
)
PLACEHOLDER_BASE = {"gsh": 99_100_000, "gsn": 99_200_000}
# Publication types the sources name in words PubMed does not use.
TYPE_NAMES = {"Review Article": "Review", "Case Report": "Case Reports"}
# Section labels of structured abstracts in the sources ("Methods: …" or "Methods" on a line of its own).
LABELS = frozenset({
    "aim", "aims", "background", "background and aim", "background and aims", "background/purpose",
    "case presentation", "case summary", "conclusion", "conclusions", "context", "design", "design and methods",
    "discussion", "findings", "importance", "interventions", "introduction", "limitations",
    "main outcome measures", "material and methods", "materials and methods", "method", "methodology", "methods",
    "methods and material", "methods and results", "objective", "objectives", "participants", "purpose",
    "purpose of review", "recent findings", "result", "results", "results and discussion", "scope", "setting",
    "subjects and methods", "summary", "what is known", "what is new",
})
_LABEL_LINE = re.compile(r"^\s*([A-Za-z][A-Za-z /&,-]{0,40}?)\s*:\s*(.*)$|^\s*([A-Za-z][A-Za-z /&,-]{0,40}?)\s*$")


@dataclass(frozen=True, slots=True)
class Source:
    """One labelled record as the dev set gives it."""

    id: str
    pmid: str
    pmid_known: bool
    title: str
    abstract: str
    journal: str
    year: int
    doi: str | None
    publication_types: tuple[str, ...]
    relevant: bool
    source_url: str


def read_sources(paths: Iterable[Path]) -> tuple[list[Source], list[str]]:
    """The records with a publication year (PubMed's PubDate needs one), and the ids left out."""
    kept: list[Source] = []
    skipped: list[str] = []
    for path in paths:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row: dict[str, Any] = json.loads(line)
                if not row.get("year"):
                    skipped.append(row["id"])
                    continue
                kept.append(_source(row))
    pmids = [s.pmid for s in kept]
    duplicates = sorted({p for p in pmids if pmids.count(p) > 1})
    if duplicates:
        raise SystemExit(f"make_sample: the same PMID for several records: {duplicates}")
    return sorted(kept, key=lambda s: int(s.pmid)), skipped


def _source(row: dict[str, Any]) -> Source:
    known = str(row.get("pmid") or "").strip()
    prefix, number = row["id"].split("-")
    pmid = known if known.isdigit() else str(PLACEHOLDER_BASE[prefix] + int(number))
    types = [TYPE_NAMES.get(t, t) for t in row.get("publication_types") or ()]
    return Source(id=row["id"], pmid=pmid, pmid_known=known.isdigit(), title=row["title"].strip(),
                  abstract=row.get("abstract") or "", journal=(row.get("journal") or "").strip(),
                  year=int(row["year"]), doi=(row.get("doi") or "").strip() or None,
                  publication_types=tuple(dict.fromkeys(["Journal Article", *types])),
                  relevant=bool(row["gut_skin_relevant"]), source_url=row.get("source_url") or "")


def sections(abstract: str) -> list[tuple[str | None, str]]:
    """A structured abstract as (label, text) sections; anything else as one unlabelled section."""
    lines = [line.strip() for line in abstract.splitlines() if line.strip()]
    found: list[tuple[str, list[str]]] = []
    for line in lines:
        m = _LABEL_LINE.match(line)
        label = (m.group(1) or m.group(3) or "").strip() if m else ""
        if m and label.lower() in LABELS:
            found.append((label, [m.group(2) or ""]))
        elif found:
            found[-1][1].append(line)
        else:
            return [(None, " ".join(lines))]
    labelled = [(label.upper(), " ".join(t for t in texts if t).strip()) for label, texts in found]
    return [(label, text) for label, text in labelled if text] or [(None, " ".join(lines))]


def publication_type_uis(corpus: Path) -> dict[str, str]:
    """PublicationType name → UI, as NCBI's own records in ``corpus`` give them."""
    uis: dict[str, str] = {}
    for path in sorted(corpus.rglob("*.xml")):
        for m in re.finditer(rb'<PublicationType UI="(D\d+)">([^<]+)</PublicationType>', path.read_bytes()):
            uis.setdefault(m.group(2).decode(), m.group(1).decode())
    return uis


def _sub(parent: etree._Element, tag: str, text: str | None = None, **attrs: str) -> etree._Element:
    el = etree.SubElement(parent, tag, attrs)
    if text is not None:
        el.text = text
    return el


def article(src: Source, type_uis: dict[str, str]) -> etree._Element:
    """One PubmedArticle: MedlineCitation (journal, title, DOI, abstract, language, types) and PubmedData."""
    rec = etree.Element("PubmedArticle")
    cit = _sub(rec, "MedlineCitation", Status="Publisher", Owner="NLM")
    _sub(cit, "PMID", src.pmid, Version="1")
    art = _sub(cit, "Article", PubModel="Print-Electronic")
    journal = _sub(art, "Journal")
    issue = _sub(journal, "JournalIssue", CitedMedium="Internet")
    _sub(_sub(issue, "PubDate"), "Year", str(src.year))
    if src.journal:
        _sub(journal, "Title", src.journal)
    _sub(art, "ArticleTitle", src.title)
    if src.doi:
        _sub(art, "ELocationID", src.doi, EIdType="doi", ValidYN="Y")
    else:
        _sub(_sub(art, "Pagination"), "MedlinePgn", "")
    abstract = _sub(art, "Abstract")
    for label, text in sections(src.abstract):
        if label is None:
            _sub(abstract, "AbstractText", text)
        else:
            _sub(abstract, "AbstractText", text, Label=label)
    _sub(art, "Language", "eng")
    types = _sub(art, "PublicationTypeList")
    for name in src.publication_types:
        if name in type_uis:  # a name PubMed does not use ("Short Communication") is left out
            _sub(types, "PublicationType", name, UI=type_uis[name])
    _sub(_sub(cit, "MedlineJournalInfo"), "MedlineTA", src.journal)
    data = _sub(rec, "PubmedData")
    _sub(data, "PublicationStatus", "ppublish")
    ids = _sub(data, "ArticleIdList")
    _sub(ids, "ArticleId", src.pmid, IdType="pubmed")
    if src.doi:
        _sub(ids, "ArticleId", src.doi, IdType="doi")
    return rec


def sample_xml(sources: list[Source], type_uis: dict[str, str]) -> bytes:
    root = etree.Element("PubmedArticleSet")
    for src in sources:
        root.append(article(src, type_uis))
    body = etree.tostring(root, encoding="unicode", pretty_print=True)
    return (PROLOG + body).encode("utf-8")


def validate(xml: bytes, dtd_path: Path) -> None:
    """Exit with the DTD's complaints if ``xml`` is not a valid PubmedArticleSet."""
    dtd = etree.DTD(str(dtd_path))
    root = etree.fromstring(xml, etree.XMLParser(resolve_entities=False, no_network=True))
    if not dtd.validate(root):
        raise SystemExit(f"make_sample: the sample is not valid against {dtd_path.name}:\n{dtd.error_log}")


def sources_note(sources: list[Source], skipped: list[str], data: list[Path]) -> str:
    relevant = sum(s.relevant for s in sources)
    known = sum(s.pmid_known for s in sources)
    lines = [
        "# The bundled gut–skin sample: what it is and where it came from",
        "",
        f"`{XML_NAME}` is a PubmedArticleSet (the shape NCBI's efetch returns; valid against PubMed's 2025 DTD)",
        f"of {len(sources)} records about the gut–skin axis: {relevant} labelled gut–skin relevant and",
        f"{len(sources) - relevant} near-miss negatives (topical-only, skin-microbiome-only, gut-only,",
        "serum-level-only papers), so a demo shows the tagger telling them apart. `monitor demo` and",
        "`python -m monitor.standin` serve it through the E-utilities stand-in (`monitor/standin/`).",
        "",
        "**Source.** The project's labelled tagging dev sets "
        f"({', '.join(p.name for p in data)}; `tests/data/tagging/labelled.jsonl` is",
        "the first of them). Their README: titles are the real papers' titles; PMID, DOI, journal and year",
        "are the real paper's where known; abstracts were **rewritten in our own words** from the real",
        "published abstracts (facts, technical terms, section structure and passing mentions kept; the",
        "sentences are new), so treat them as realistic PubMed text, not quotations. Some abstracts are cut",
        "off, as the source excerpts were.",
        "",
        "**Generated** by `docs/make_sample.py` (run from the repository root; `--check` compares). Nothing",
        "here was edited by hand. How each field was made:",
        "",
        f"- PMID: the real one for {known} records; a placeholder for the {len(sources) - known} whose PMID",
        "  the source does not give: 99100000 + n for dev-set record `gsh-n`, 99200000 + n for `gsn-n`",
        "  (far above any PMID PubMed has issued, so their PubMed links lead nowhere; their DOIs are real).",
        "- Title, journal (`Journal/Title`, also as `MedlineTA`), publication year (`PubDate/Year`), DOI",
        "  (`ELocationID` and `ArticleId`) as the source gives them. No authors: the source has none.",
        "- Abstract: a structured abstract (every line `Label: text`, or a label on its own line) becomes",
        "  labelled `AbstractText` sections (label upper-cased, no NlmCategory: the monitor infers it from",
        "  the label); any other abstract is one `AbstractText`.",
        "- Publication types: `Journal Article` plus the source's, in PubMed's names (`Review Article` →",
        "  `Review`, `Case Report` → `Case Reports`; names PubMed does not use are left out), with the UIs",
        "  NCBI's own records in `tests/data/efetch` give them.",
        "- No MeSH and no keywords (as a record looks before MEDLINE indexing; the shipped queries must find",
        "  it by title and abstract). No history dates: the stand-in then takes the Entrez date from the",
        "  publication year (1 January).",
        "- Required by the DTD, not given by the source (fixed values): `MedlineCitation Status=\"Publisher\"`,",
        "  `Article PubModel=\"Print-Electronic\"`, `JournalIssue CitedMedium=\"Internet\"`, `Language eng`,",
        "  `PublicationStatus ppublish`, and an empty `Pagination/MedlinePgn` when there is no DOI.",
        "",
        f"Left out (no publication year in the source): {', '.join(skipped) or 'none'}.",
        "",
        "| PMID | source id | relevant | year | journal | title |",
        "|---|---|---|---|---|---|",
    ]
    for s in sources:
        pmid = s.pmid if s.pmid_known else f"{s.pmid} (placeholder)"
        title = s.title.replace("|", "\\|")
        lines.append(f"| {pmid} | {s.id} | {'yes' if s.relevant else 'no'} | {s.year} | {s.journal or '—'} | {title} |")
    return "\n".join(lines) + "\n"


def outputs(data: list[Path]) -> Iterator[tuple[Path, bytes]]:
    sources, skipped = read_sources(data)
    xml = sample_xml(sources, publication_type_uis(CORPUS))
    validate(xml, DTD)
    yield OUT / XML_NAME, xml
    yield OUT / "SOURCES.md", sources_note(sources, skipped, data).encode("utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--data", type=Path, nargs="+", default=DEFAULT_DATA, help="labelled JSONL files")
    ap.add_argument("--check", action="store_true", help="exit 1 if the shipped files are not what this makes")
    args = ap.parse_args(argv)
    stale = []
    for path, content in outputs(args.data):
        if args.check:
            if not path.exists() or path.read_bytes() != content:
                stale.append(path.relative_to(ROOT))
        else:
            path.write_bytes(content)
            print(f"wrote {path.relative_to(ROOT)} ({len(content):,} bytes)")
    if stale:
        print(f"out of date: {', '.join(map(str, stale))} (run docs/make_sample.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
