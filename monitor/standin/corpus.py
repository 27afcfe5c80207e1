"""The stand-in's records: reading PubMed XML files (efetch output, MEDLINE files, plain or gzipped) into the
bytes efetch serves, the three dates a search window filters on, and what a search sees of each record.

The default corpus is the bundled gut–skin sample (``monitor/sample/``, provenance in its SOURCES.md); the
project's tests point the stand-in at the real NCBI recordings in ``tests/data/efetch`` instead.
"""

from __future__ import annotations

import calendar
import datetime as dt
import functools
import gzip
import re
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from lxml import etree

from .matcher import Doc
from .ncbi import safe_date

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "sample"
# The bundled sample of gut–skin records: what `monitor demo` and `python -m monitor.standin` serve.
DEFAULT_CORPUS = SAMPLE_DIR / "gut_skin_sample.xml"

_MONTHS = {m.lower(): i for i, m in enumerate(calendar.month_abbr) if m}
# Guess: PubMed files a season under its first month (winter under December of the printed year).
_SEASONS = {"spring": 3, "summer": 6, "fall": 9, "autumn": 9, "winter": 12}


@dataclass(frozen=True, slots=True)
class RecordDates:
    """The three dates an esearch date window can filter on."""

    edat: dt.date  # Entrez date: when the record entered PubMed
    mdat: dt.date  # modification date
    pdat: dt.date  # publication date, first day of the printed period


@dataclass(frozen=True, slots=True)
class Loaded:
    """A corpus record: the bytes efetch serves and the facts needed to choose between copies."""

    xml: bytes
    dates: RecordDates
    revised: dt.date
    version: int


def _month_number(text: str | None) -> int | None:
    if not text:
        return None
    text = text.strip()
    if text.isdigit():
        month = int(text)
        return month if 1 <= month <= 12 else None
    return _MONTHS.get(text[:3].lower()) or _SEASONS.get(text.lower())


def _ymd(el: etree._Element | None) -> dt.date | None:
    """A ``Year``/``Month``/``Day`` (or ``MedlineDate``) element as the first day of its period."""
    if el is None:
        return None
    year = el.findtext("Year")
    if year and year.strip().isdigit():
        month = _month_number(el.findtext("Month")) or _month_number(el.findtext("Season")) or 1
        day_text = (el.findtext("Day") or "").strip()
        day = int(day_text) if day_text.isdigit() else 1
        return safe_date(int(year), month, max(day, 1))
    medline = el.findtext("MedlineDate")
    if medline:  # e.g. "1998 Dec-1999 Jan", "2000 Spring"
        m = re.match(r"\s*(\d{4})(?:\s+([A-Za-z]+))?", medline)
        if m:
            return safe_date(int(m.group(1)), _month_number(m.group(2)) or 1)
    return None


def _history_date(rec: etree._Element, status: str) -> dt.date | None:
    found = rec.xpath("(PubmedData|PubmedBookData)/History/PubMedPubDate[@PubStatus=$s]", s=status)
    return _ymd(found[0]) if isinstance(found, list) and found and isinstance(found[0], etree._Element) else None


def citation(rec: etree._Element) -> etree._Element:
    """The element holding PMID and DateRevised: MedlineCitation or BookDocument."""
    if rec.tag == "MedlineCitation":
        return rec
    found = rec.find("MedlineCitation")
    if found is None:
        found = rec.find("BookDocument")
    return found if found is not None else rec


def record_dates(rec: etree._Element) -> RecordDates:
    """edat = entrez history date, else pubmed; mdat = DateRevised, else edat; pdat = PubDate.

    Bare MedlineCitations (MEDLINE update files) carry no history, so their edat falls back to
    DateCreated/DateCompleted, then the publication date.
    """
    cit = citation(rec)
    pdat = _ymd(cit.find("Article/Journal/JournalIssue/PubDate")) or _ymd(cit.find("Book/PubDate"))
    edat = (
        _history_date(rec, "entrez")
        or _history_date(rec, "pubmed")
        or _ymd(cit.find("DateCreated"))
        or _ymd(cit.find("DateCompleted"))
        or pdat
        or _ymd(cit.find("DateRevised"))
        or dt.date(1900, 1, 1)
    )
    mdat = _ymd(cit.find("DateRevised")) or edat
    return RecordDates(edat=edat, mdat=mdat, pdat=pdat or edat)


def record_pmid(rec: etree._Element) -> etree._Element | None:
    return citation(rec).find("PMID")


def _open_corpus_file(path: Path) -> gzip.GzipFile | BinaryIO:
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def iter_records(path: Path) -> Iterator[tuple[str, Loaded]]:
    """Yield ``(pmid, record)`` for every top-level record in one efetch/MEDLINE file.

    A bare MedlineCitation (MEDLINE update files) is wrapped in ``<PubmedArticle>``, the shape efetch
    serves it in (PubmedData is optional in the DTD). DeleteCitation entries in corpus files are skipped:
    tests delete records explicitly with :meth:`StandIn.delete`.
    """
    with _open_corpus_file(path) as fh:
        events = etree.iterparse(
            fh, events=("end",), tag=("PubmedArticle", "PubmedBookArticle", "MedlineCitation"),
            resolve_entities=False, no_network=True, huge_tree=True,
        )
        for _, el in events:
            parent = el.getparent()
            if el.tag == "MedlineCitation" and parent is not None and parent.tag == "PubmedArticle":
                continue  # part of a PubmedArticle; handled when that ends
            pmid_el = record_pmid(el)
            if pmid_el is not None and pmid_el.text and pmid_el.text.strip().isdigit():
                xml = etree.tostring(el, encoding="UTF-8", with_tail=False)
                if el.tag == "MedlineCitation":
                    xml = b"<PubmedArticle>" + xml + b"</PubmedArticle>"
                dates = record_dates(el)
                revised = _ymd(citation(el).find("DateRevised")) or dt.date.min
                version = int(pmid_el.get("Version", "1") or 1)
                yield pmid_el.text.strip(), Loaded(xml, dates, revised, version)
            # Free what we have read: the files hold up to a few hundred records.
            el.clear(keep_tail=False)
            while el.getprevious() is not None:
                del el.getparent()[0]


def _text(el: etree._Element | None) -> str:
    return " ".join("".join(str(t) for t in el.itertext()).split()) if el is not None else ""


def _is_major(heading: etree._Element) -> bool:
    descriptor = heading.find("DescriptorName")
    return descriptor is not None and (
        descriptor.get("MajorTopicYN") == "Y"
        or any(q.get("MajorTopicYN") == "Y" for q in heading.iterfind("QualifierName")))


def search_doc(pmid: str, xml: bytes) -> Doc:
    """What a PubMed search sees of one record: title, abstract, author keywords, MeSH descriptors (major
    ones marked), publication types, languages."""
    rec = etree.fromstring(xml, etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True))
    cit = citation(rec)
    title = _text(cit.find("Article/ArticleTitle")) or _text(cit.find("Book/BookTitle")) or _text(
        cit.find("ArticleTitle"))
    abstract = " ".join(_text(a) for a in cit.iterfind(".//Abstract/AbstractText"))
    mesh = tuple(_text(d) for d in cit.iterfind("MeshHeadingList/MeshHeading/DescriptorName"))
    major = tuple(_text(h.find("DescriptorName")) for h in cit.iterfind("MeshHeadingList/MeshHeading")
                  if _is_major(h))
    keywords = tuple(_text(k) for k in cit.iterfind("KeywordList/Keyword"))
    pub_types = tuple(_text(t) for t in cit.iterfind(".//PublicationTypeList/PublicationType"))
    languages = tuple(_text(la) for la in cit.iterfind(".//Language"))
    return Doc(pmid, title, abstract, mesh, major, keywords, pub_types, languages)


@functools.lru_cache(maxsize=4)
def load_corpus(corpus_dir: Path) -> Mapping[str, Loaded]:
    """Every record under ``corpus_dir`` (``*.xml`` and ``*.xml.gz``; or that one file), one per PMID.

    When a PMID appears in several files, the copy with the latest DateRevised wins, ties going to the
    higher PMID@Version, then to the first file in sorted path order. Cached: the corpus is read once
    per process however many stand-ins the tests start.
    """
    chosen: dict[str, Loaded] = {}
    paths = [corpus_dir] if corpus_dir.is_file() else sorted(corpus_dir.rglob("*"))
    for path in paths:
        if not path.is_file() or not (path.name.endswith(".xml") or path.name.endswith(".xml.gz")):
            continue
        for pmid, rec in iter_records(path):
            old = chosen.get(pmid)
            if old is None or (rec.revised, rec.version) > (old.revised, old.version):
                chosen[pmid] = rec
    return types.MappingProxyType(chosen)
