"""PubMed XML → :class:`~monitor.types.Article` records: the one place that knows the PubMed DTD.

Owns reading EFetch ``PubmedArticleSet`` documents (``PubmedArticle``, ``PubmedBookArticle``,
``DeleteCitation``), a bare ``<PubmedArticle>`` root, and MEDLINE update files (``MedlineCitationSet``),
and turning each record into a frozen value object. It is pure: bytes or a binary file-like object in,
:data:`~monitor.types.ParsedItem` objects out; no network, no database, no files opened here.

Streaming: ``lxml.etree.iterparse`` with each finished record cleared and its earlier siblings deleted, so
memory stays bounded by the largest single record (some are ~2 MB) however many records a file holds.
Parsing is hardened: no DTD loading, no network, no entity expansion (an external entity in a DOCTYPE is
never read).

Errors: a document that is not well-formed, or is not a PubMed document at all (NCBI's
``<eFetchResult><ERROR>…`` body), raises :class:`~monitor.errors.ParseError` — after the complete records
before the break were yielded. A well-formed record that cannot be read yields a
:class:`~monitor.types.RecordError` and parsing continues.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import re
from collections.abc import Iterable, Iterator
from typing import BinaryIO, cast

from lxml import etree

from monitor.errors import ParseError
from monitor.types import (
    STATUS_REF_TYPES,
    AbstractSection,
    Article,
    Author,
    Correction,
    Deletion,
    HistoryDate,
    Journal,
    MeshHeading,
    MeshQualifier,
    ParsedItem,
    PublicationType,
    RecordError,
)

__all__ = ["iter_records_raw", "parse"]

Source = bytes | bytearray | memoryview | BinaryIO

# Document roots we accept; anything else (eFetchResult, an HTML error page …) is not PubMed data.
_SET_TAGS = frozenset({"PubmedArticleSet", "MedlineCitationSet"})
_BARE_RECORD_TAGS = frozenset({"PubmedArticle", "PubmedBookArticle", "MedlineCitation"})
_ROOT_TAGS = _SET_TAGS | _BARE_RECORD_TAGS
# iterparse reports only these end tags; everything else is built silently inside the record.
_EVENT_TAGS = ("PubmedArticle", "PubmedBookArticle", "MedlineCitation", "DeleteCitation")
_RAW_TAGS = frozenset({"PubmedArticle", "PubmedBookArticle"})

# Only XML whitespace is collapsed: NBSP and thin spaces inside abstracts are deliberate typography.
_WS = re.compile(r"[ \t\r\n]+")
_ORCID = re.compile(r"([0-9]{4})-?([0-9]{4})-?([0-9]{4})-?([0-9]{3}[0-9Xx])\s*/?\s*$")
_YEAR = re.compile(r"(?<![0-9])([0-9]{4})(?![0-9])")
# After the year of a MedlineDate: an optional month/season word or month number, then an optional day.
_AFTER_YEAR = re.compile(r"\s+([A-Za-z]+|[0-9]{1,2}(?![0-9]))\.?(?:\s+([0-9]{1,2})(?![0-9]))?")
_BEFORE_YEAR = re.compile(r"\s*([A-Za-z]+)")  # "Summer 2001": a rare word-first form

_MONTHS = {
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6,
    "jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12,
}  # fmt: skip
# A season stands for the first month of its quarter (PubMed prints "2000 Spring"; we sort it as April).
_SEASONS = {"winter": 1, "spring": 4, "summer": 7, "fall": 10, "autumn": 10}
_MONTH_ABBR = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def parse(source: Source) -> Iterator[ParsedItem]:
    """Yield one :class:`Article`, :class:`Deletion` (one per PMID of a ``DeleteCitation``) or
    :class:`RecordError` per record, in document order.

    ``source`` is the decompressed document as bytes or a binary file-like object (a ``gzip.GzipFile``
    works). Raises :class:`ParseError` when the document is not well-formed or not a PubMed document.
    """
    for elem in _records(source):
        tag = elem.tag
        if tag == "DeleteCitation":
            for pmid_el in elem.iterfind("PMID"):
                pmid = (pmid_el.text or "").strip()
                if _is_pmid(pmid):
                    yield Deletion(pmid)
                else:
                    yield RecordError(None, f"DeleteCitation with unreadable PMID {pmid!r}")
        else:
            yield _read_record(elem)


def iter_records_raw(source: Source) -> Iterator[tuple[str, bytes]]:
    """Yield ``(pmid, record XML)`` for each ``PubmedArticle``/``PubmedBookArticle``, serialized as UTF-8
    without an XML declaration (e.g. to serve real records from a test stand-in for EFetch).

    Records without a readable PMID are skipped. Raises :class:`ParseError` like :func:`parse`.
    """
    for elem in _records(source):
        if elem.tag not in _RAW_TAGS:
            continue
        pmid = (elem.findtext("MedlineCitation/PMID") or elem.findtext("BookDocument/PMID") or "").strip()
        if _is_pmid(pmid):
            yield pmid, etree.tostring(elem, encoding="UTF-8", with_tail=False)


# ---------------------------------------------------------------------------------------------------------
# Streaming


def _records(source: Source) -> Iterator[etree._Element]:
    """Yield each top-level record element, complete; it is cleared once the consumer moves on."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(bytes(source))
    events = etree.iterparse(
        source,
        events=("end",),
        tag=_EVENT_TAGS,
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=True,
    )
    root_checked = False
    try:
        for _event, elem in events:
            parent = elem.getparent()
            if not root_checked:
                root = elem if parent is None else elem.getroottree().getroot()
                _check_root(root)
                root_checked = True
            if parent is None:  # a bare <PubmedArticle> document: the root is the record
                yield elem
                continue
            if parent.tag not in _SET_TAGS:
                continue  # the MedlineCitation inside a PubmedArticle: its record comes next
            yield elem
            # Bound memory: drop this record's subtree and the (already cleared) records before it.
            elem.clear()
            while elem.getprevious() is not None:
                del parent[0]
    except etree.XMLSyntaxError as exc:
        raise ParseError(f"PubMed XML is not well-formed: {exc}") from exc
    if not root_checked:
        root = events.root
        if root is None:  # pragma: no cover - lxml raises XMLSyntaxError for an empty document
            raise ParseError("PubMed XML document is empty")
        _check_root(root)


def _check_root(root: etree._Element) -> None:
    tag = root.tag
    if tag in _ROOT_TAGS:
        return
    errors = [_clean("".join(_itertext(e))) for e in root.iter("ERROR")]
    if errors:
        raise ParseError(
            f"NCBI answered with an error instead of PubMed records (<{tag}>): " + "; ".join(errors)
        )
    raise ParseError(f"not a PubMed document: root element is <{tag}>, expected <PubmedArticleSet>")


# ---------------------------------------------------------------------------------------------------------
# One record


def _read_record(rec: etree._Element) -> Article | RecordError:
    tag = rec.tag
    if tag == "PubmedBookArticle":
        citation = _find(rec, "BookDocument")
        data = _find(rec, "PubmedBookData")
    elif tag == "PubmedArticle":
        citation = _find(rec, "MedlineCitation")
        data = _find(rec, "PubmedData")
    else:  # a MedlineCitation of a MEDLINE update file: no PubmedData at all
        citation, data = rec, None
    pmid_el = _find(citation, "PMID") if citation is not None else None
    if pmid_el is None or citation is None:
        return RecordError(None, f"<{tag}> record has no PMID")
    pmid = (pmid_el.text or "").strip()
    if not _is_pmid(pmid):
        return RecordError(None, f"<{tag}> record has a non-numeric PMID {pmid!r}")
    try:
        if tag == "PubmedBookArticle":
            return _book(pmid, pmid_el, citation, data)
        return _article(pmid, pmid_el, citation, data)
    except Exception as exc:  # one odd record must not sink the batch; the caller reports it
        return RecordError(pmid, f"could not read record: {type(exc).__name__}: {exc}")


def _article(pmid: str, pmid_el: etree._Element, mc: etree._Element, data: etree._Element | None) -> Article:
    # Direct children grouped by tag in one pass each: cheaper than a find() per field on big batches.
    cit = _children(mc)
    art_el = _first(cit, "Article")
    if art_el is None:
        raise ValueError("MedlineCitation has no Article element")
    art = _children(art_el)
    journal_el = _first(art, "Journal")
    issue = _find(journal_el, "JournalIssue") if journal_el is not None else None
    history = _history(data)
    pub_date, sort_date = _pub_date(_find(issue, "PubDate") if issue is not None else None)
    if sort_date is None:
        pub_date, sort_date = _fallback_date(pub_date, _first(art, "ArticleDate"), history)
    ids = _article_ids(_find(data, "ArticleIdList") if data is not None else None)
    doi = ids.get("doi") or _elocation_doi(art.get("ELocationID", []))
    authors = _authors(art.get("AuthorList", []))
    old_affiliation = _opt(_first(art, "Affiliation"))
    if old_affiliation and authors and not authors[0].affiliations:
        # Before 2014 NLM recorded one affiliation per article: the first author's.
        authors = (dataclasses.replace(authors[0], affiliations=(old_affiliation,)), *authors[1:])
    pub_types = _first(art, "PublicationTypeList")
    return Article(
        pmid=pmid,
        version=_version(pmid_el),
        kind="article",
        status=mc.get("Status"),
        title=_text(_first(art, "ArticleTitle")),
        abstract=_abstract(_first(art, "Abstract")),
        authors=authors,
        journal=_journal(journal_el, issue, _first(art, "Pagination")),
        pub_date=pub_date,
        sort_date=sort_date,
        doi=doi,
        pmcid=ids.get("pmc"),
        pii=ids.get("pii"),
        languages=_texts(art.get("Language", ())),
        mesh=_mesh(_first(cit, "MeshHeadingList")),
        keywords=_keywords(cit.get("KeywordList", ())),
        publication_types=_publication_types(pub_types if pub_types is not None else ()),
        corrections=_corrections(_first(cit, "CommentsCorrectionsList")),
        date_revised=_date(_first(cit, "DateRevised")),
        date_completed=_date(_first(cit, "DateCompleted")),
        history=history,
    )


def _book(pmid: str, pmid_el: etree._Element, doc: etree._Element, data: etree._Element | None) -> Article:
    book = _find(doc, "Book")
    chapter_title = _text(_find(doc, "ArticleTitle"))
    book_title = _text(_find(book, "BookTitle")) if book is not None else ""
    history = _history(data)
    pub_date, sort_date = _pub_date(_find(book, "PubDate") if book is not None else None)
    if sort_date is None:
        pub_date, sort_date = _fallback_date(pub_date, None, history)
    ids = _article_ids(_find(doc, "ArticleIdList"))
    doi = _elocation_doi(doc.iterchildren("ELocationID"))
    if book is not None:
        doi = doi or _elocation_doi(book.iterchildren("ELocationID"))
    doi = ids.get("doi") or doi
    # Chapter authors live on BookDocument; a whole-book record keeps its authors on Book. Editors are
    # not authors of the record.
    authors = _authors(list(doc.iterchildren("AuthorList")))
    if not authors and book is not None:
        authors = _authors(list(book.iterchildren("AuthorList")))
    # A chapter sits in a book the way an article sits in a journal; a whole book has no container.
    journal = Journal()
    if chapter_title and book is not None:
        journal = Journal(
            title=book_title or None,
            volume=_opt(_find(book, "Volume")),
            pages=_pages(_find(doc, "Pagination")),
        )
    return Article(
        pmid=pmid,
        version=_version(pmid_el),
        kind="book",
        status=None,
        title=chapter_title or book_title,
        abstract=_abstract(_find(doc, "Abstract")),
        authors=authors,
        journal=journal,
        pub_date=pub_date,
        sort_date=sort_date,
        doi=doi,
        pmcid=ids.get("pmc"),
        pii=ids.get("pii"),
        languages=_texts(doc.iterchildren("Language")),
        mesh=(),
        keywords=_keywords(list(doc.iterchildren("KeywordList"))),
        publication_types=_publication_types(doc.iterchildren("PublicationType")),
        corrections=_corrections(_find(doc, "CommentsCorrectionsList")),
        date_revised=_date(_find(doc, "DateRevised")),
        date_completed=None,
        history=history,
    )


# ---------------------------------------------------------------------------------------------------------
# Fields


def _abstract(abstract: etree._Element | None) -> tuple[AbstractSection, ...]:
    if abstract is None:
        return ()
    sections = []
    for el in abstract.iterchildren("AbstractText"):
        text = _text(el)
        label = el.get("Label") or None
        if text or label:
            sections.append(AbstractSection(text, label, el.get("NlmCategory") or None))
    return tuple(sections)


def _authors(lists: list[etree._Element]) -> tuple[Author, ...]:
    authors = []
    for author_list in lists:
        if author_list.get("Type") == "editors":
            continue
        for el in author_list.iterchildren("Author"):
            if el.get("ValidYN") == "N":  # NLM keeps misspelt names for searching; they are not authors
                continue
            authors.append(_author(el))
    return tuple(authors)


def _author(el: etree._Element) -> Author:
    # One pass over the children: records with thousands of authors make per-field find() calls costly.
    last = fore = initials = collective = orcid = None
    affiliations: list[str] = []
    for child in el:
        tag = child.tag
        if tag == "LastName":
            last = _text(child) or None
        elif tag == "ForeName":
            fore = _text(child) or None
        elif tag == "Initials":
            initials = _text(child) or None
        elif tag == "CollectiveName":
            collective = _text(child) or None
        elif tag == "AffiliationInfo":
            for aff in child.iterchildren("Affiliation"):
                text = _text(aff)
                if text:
                    affiliations.append(text)
        elif tag == "Identifier":
            if orcid is None and child.get("Source") == "ORCID":
                orcid = _orcid(child.text)
        elif tag == "Affiliation":  # pre-2014 DTDs
            text = _text(child)
            if text:
                affiliations.append(text)
    return Author(last, fore, initials, collective, orcid, tuple(affiliations))


def _orcid(value: str | None) -> str | None:
    """ORCIDs arrive bare, without hyphens, or as http(s)://orcid.org/ URLs; keep 0000-0000-0000-000X."""
    if not value:
        return None
    m = _ORCID.search(value.strip())
    if m is None:
        return None
    return "-".join(m.groups()).upper()


def _journal(
    journal: etree._Element | None, issue: etree._Element | None, pagination: etree._Element | None
) -> Journal:
    volume = number = None
    if issue is not None:
        found = _first_children(issue, ("Volume", "Issue"))
        volume, number = _opt(found["Volume"]), _opt(found["Issue"])
    if journal is None:
        return Journal(volume=volume, issue=number, pages=_pages(pagination))
    found = _first_children(journal, ("Title", "ISOAbbreviation", "ISSN"))
    return Journal(
        title=_opt(found["Title"]),
        iso_abbreviation=_opt(found["ISOAbbreviation"]),
        issn=_opt(found["ISSN"]),
        volume=volume,
        issue=number,
        pages=_pages(pagination),
    )


def _pages(pagination: etree._Element | None) -> str | None:
    if pagination is None:
        return None
    pages = _opt(_find(pagination, "MedlinePgn"))
    if pages:
        return pages
    start, end = _opt(_find(pagination, "StartPage")), _opt(_find(pagination, "EndPage"))
    if start and end and end != start:
        return f"{start}-{end}"
    return start or end


def _article_ids(id_list: etree._Element | None) -> dict[str, str]:
    """IdType → first value, read only from the record's own ArticleIdList (never a ReferenceList's)."""
    ids: dict[str, str] = {}
    if id_list is None:
        return ids
    for el in id_list.iterchildren("ArticleId"):
        kind = el.get("IdType")
        value = (el.text or "").strip()
        if kind and value and kind not in ids:
            ids[kind] = value
    pmc = ids.get("pmc")
    if pmc and pmc.isdigit():  # a few old records carry the bare number
        ids["pmc"] = "PMC" + pmc
    return ids


def _elocation_doi(elocations: Iterable[etree._Element]) -> str | None:
    for el in elocations:
        if el.get("EIdType") == "doi" and el.get("ValidYN") != "N":
            value = (el.text or "").strip()
            if value:
                return value
    return None


def _mesh(heading_list: etree._Element | None) -> tuple[MeshHeading, ...]:
    if heading_list is None:
        return ()
    headings = []
    for heading in heading_list.iterchildren("MeshHeading"):
        descriptor = None
        qualifiers = []
        for child in heading:  # one pass: DescriptorName then its QualifierNames
            if child.tag == "DescriptorName":
                descriptor = child
            elif child.tag == "QualifierName":
                major = child.get("MajorTopicYN") == "Y"
                qualifiers.append(MeshQualifier(_text(child), child.get("UI"), major))
        if descriptor is not None:
            headings.append(
                MeshHeading(
                    _text(descriptor),
                    descriptor.get("UI"),
                    descriptor.get("MajorTopicYN") == "Y",
                    tuple(qualifiers),
                )
            )
    return tuple(headings)


def _keywords(keyword_lists: Iterable[etree._Element]) -> tuple[str, ...]:
    seen: dict[str, None] = {}  # insertion-ordered set: NLM and author keywords often repeat
    for keyword_list in keyword_lists:
        for el in keyword_list.iterchildren("Keyword"):
            word = _text(el)
            if word:
                seen.setdefault(word)
    return tuple(seen)


def _publication_types(elements: Iterable[etree._Element]) -> tuple[PublicationType, ...]:
    found = []
    for el in elements:
        name = _text(el)
        if name:
            found.append(PublicationType(name, el.get("UI")))
    return tuple(found)


def _corrections(comments: etree._Element | None) -> tuple[Correction, ...]:
    if comments is None:
        return ()
    found = []
    for el in comments.iterchildren("CommentsCorrections"):
        ref_type = el.get("RefType")
        if ref_type in STATUS_REF_TYPES:
            found.append(Correction(ref_type, _opt(_find(el, "RefSource")), _opt(_find(el, "PMID"))))
    return tuple(found)


def _history(data: etree._Element | None) -> tuple[HistoryDate, ...]:
    if data is None:
        return ()
    found = []
    for history in data.iterchildren("History"):
        for el in history.iterchildren("PubMedPubDate"):
            status = el.get("PubStatus")
            date = _date(el)
            if status and date is not None:
                found.append(HistoryDate(status, date))
    return tuple(found)


# ---------------------------------------------------------------------------------------------------------
# Dates


def _date(el: etree._Element | None) -> dt.date | None:
    """A Year/Month/Day element (DateRevised, PubMedPubDate …) as a date; None when unreadable."""
    if el is None:
        return None
    year = month = day = None
    for child in el:
        tag = child.tag
        if tag == "Year":
            year = _int(child.text)
        elif tag == "Month":
            month = _month(child.text)
        elif tag == "Day":
            day = _int(child.text)
    if year is None:
        return None
    return _safe_date(year, month or 1, day or 1)


def _pub_date(el: etree._Element | None) -> tuple[str | None, dt.date | None]:
    """JournalIssue/PubDate (or Book/PubDate) → (printed form, sort date)."""
    if el is None:
        return None, None
    found = _first_children(el, ("MedlineDate", "Year", "Month", "Season", "Day"))
    medline = _opt(found["MedlineDate"])
    if medline:
        return medline, _medline_date(medline)
    year_text = _opt(found["Year"])
    month_text = _opt(found["Month"])
    season = _opt(found["Season"])
    day_text = _opt(found["Day"])
    printed = " ".join(p for p in (year_text, month_text or season, day_text) if p) or None
    year = _int(year_text)
    if year is None:
        return printed, None
    month = _month(month_text) or _month(season) or 1
    return printed, _safe_date(year, month, _int(day_text) or 1)


def _medline_date(text: str) -> dt.date | None:
    """Free-text MedlineDate ("1998 Dec-1999 Jan", "2000 Spring", "1977-1978", "2019 Sep/Oct") → its
    first day; an unknown month or day counts as 1."""
    m = _YEAR.search(text)
    if m is None:
        return None
    year = int(m.group(1))
    month = day = 1
    rest = _AFTER_YEAR.match(text, m.end())
    if rest is not None:
        named = _month(rest.group(1))
        if named:  # a day only means something after a month we understood
            month = named
            if rest.group(2):
                day = int(rest.group(2))
    else:
        lead = _BEFORE_YEAR.match(text, 0, m.start())
        month = (_month(lead.group(1)) if lead else None) or 1
    return _safe_date(year, month, day)


def _fallback_date(
    printed: str | None, article_date: etree._Element | None, history: tuple[HistoryDate, ...]
) -> tuple[str | None, dt.date | None]:
    """When the issue date has no readable year: the electronic ArticleDate, then PubMed's own dates."""
    date = _date(article_date)
    if date is None:
        for status in ("pubmed", "entrez"):
            date = next((h.date for h in history if h.status == status), None)
            if date is not None:
                break
    if date is None:
        return printed, None
    return printed or f"{date.year} {_MONTH_ABBR[date.month - 1]} {date.day}", date


def _month(text: str | None) -> int | None:
    if not text:
        return None
    text = text.strip()
    if text.isdigit():
        n = int(text)
        return n if 1 <= n <= 12 else None
    word = text.lower()
    for season, month in _SEASONS.items():
        if word.startswith(season):
            return month
    return _MONTHS.get(word[:3])


def _safe_date(year: int, month: int, day: int) -> dt.date | None:
    try:
        return dt.date(year, month, day)
    except ValueError:
        try:  # "Feb 30" and the like: keep the month
            return dt.date(year, month, 1)
        except ValueError:
            return None


# ---------------------------------------------------------------------------------------------------------
# Small helpers


def _itertext(el: etree._Element) -> Iterator[str]:
    """The text nodes under ``el`` (str: we parse bytes into unicode trees; the stubs allow bytes)."""
    return cast("Iterator[str]", el.itertext())


def _text(el: etree._Element | None) -> str:
    """Text content with inline markup (<i>, <sup>, MathML …) flattened and whitespace collapsed."""
    if el is None:
        return ""
    if len(el):
        text = "".join(_itertext(el))
    else:
        if not el.text:
            return ""
        text = el.text
    # Most PubMed strings need no collapsing; the membership tests are much cheaper than re.sub.
    if "  " in text or "\n" in text or "\t" in text or "\r" in text:
        text = _WS.sub(" ", text)
    return text.strip(" ")


def _children(el: etree._Element) -> dict[str, list[etree._Element]]:
    """Direct children grouped by tag, in document order."""
    grouped: dict[str, list[etree._Element]] = {}
    for child in el:
        grouped.setdefault(child.tag, []).append(child)
    return grouped


def _first(grouped: dict[str, list[etree._Element]], tag: str) -> etree._Element | None:
    found = grouped.get(tag)
    return found[0] if found else None


def _find(el: etree._Element, tag: str) -> etree._Element | None:
    """``el.find(tag)`` for a plain child tag. ``find`` runs lxml's ElementPath in Python; the C-level
    child iterator is about twice as fast, which adds up over the ~25 lookups of every record."""
    return next(el.iterchildren(tag), None)


def _first_children(el: etree._Element, tags: tuple[str, ...]) -> dict[str, etree._Element | None]:
    """The first direct child with each of ``tags`` (None when absent), in one pass over the children."""
    found: dict[str, etree._Element | None] = dict.fromkeys(tags)
    for child in el.iterchildren(tags):
        if found[child.tag] is None:
            found[child.tag] = child
    return found


def _clean(text: str) -> str:
    return _WS.sub(" ", text).strip(" ")


def _opt(el: etree._Element | None) -> str | None:
    """Cleaned text, or None for a missing or empty element."""
    if el is None:
        return None
    return _text(el) or None


def _texts(elements: Iterable[etree._Element]) -> tuple[str, ...]:
    return tuple(t for t in (_text(el) for el in elements) if t)


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() else None


def _is_pmid(text: str) -> bool:
    return text.isascii() and text.isdigit() and int(text) > 0


def _version(pmid_el: etree._Element) -> int:
    raw = (pmid_el.get("Version") or "1").strip()
    if not (raw.isascii() and raw.isdigit()):
        raise ValueError(f"PMID Version {raw!r} is not a number")
    return int(raw)
