"""The scriptable PubMed behind the stand-in: which records exist and when they entered PubMed, which terms
match which records (registered by a test, or evaluated as PubMed syntax by :mod:`.matcher`), and the world
changes tests make between runs — dates moved, records hidden and published, revised, deleted, queries
degraded, synthetic records added. The request handling (:mod:`.eutils`) asks it what a search finds and
which bytes efetch serves; it knows nothing of HTTP.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from lxml import etree

from .corpus import Loaded, RecordDates, record_pmid, search_doc
from .matcher import Matcher, PhraseIndex
from .ncbi import EFETCH_EPILOG, EFETCH_PROLOG, drop_phrase

PLACEHOLDER = b"__STANDIN_PMID__"


@dataclass(frozen=True, slots=True)
class Degradation:
    """What PubMed reports for a term it degraded: ErrorList, WarningList, and the translation (None: the
    term without the dropped phrases)."""

    errors: tuple[tuple[str, str], ...]
    warnings: tuple[tuple[str, str], ...]
    translation: str | None


@dataclass(frozen=True, slots=True)
class Evaluated:
    """What the matcher made of a term: ids (unfiltered), QueryTranslation, ErrorList, WarningList."""

    ids: list[str]
    translation: str
    errors: list[tuple[str, str]]
    warnings: list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class Window:
    """An esearch date window: the datetype and its first and last day (inclusive)."""

    datetype: str
    first: dt.date
    last: dt.date


def as_date(value: dt.date | str | None) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(value)


class PubMedWorld:
    """Records, their dates and visibility, and what each term matches. Every method takes ``lock`` (shared
    with the rest of the stand-in, so a request sees one consistent world)."""

    def __init__(self, corpus: Mapping[str, Loaded], today: dt.date, lock: threading.RLock, *,
                 match_terms: bool = False) -> None:
        self.today = today
        # Evaluate terms nobody registered with set_query against the corpus text (.matcher).
        self.match_terms = match_terms
        self._lock = lock
        self._phrase_index = PhraseIndex()
        self._matcher: Matcher | None = None
        self._xml: dict[str, bytes] = {pmid: rec.xml for pmid, rec in corpus.items()}
        self._dates: dict[str, RecordDates] = {pmid: rec.dates for pmid, rec in corpus.items()}
        self._templates: list[bytes] = []  # synthetic records: template bytes with a placeholder PMID
        self._synthetic: dict[str, int] = {}  # pmid -> index into _templates
        self._hidden: set[str] = set()
        self._deleted: set[str] = set()
        self._queries: dict[str, list[str]] = {}
        self._translations: dict[str, str] = {}
        self._degraded: dict[str, Degradation] = {}

    # -- reading ---------------------------------------------------------------------------------------

    def pmids(self) -> list[str]:
        """Every PMID known (corpus and synthetic, hidden and deleted too), ascending."""
        with self._lock:
            return sorted(self._dates, key=int)

    def record_xml(self, pmid: str) -> bytes:
        """The record bytes efetch serves for ``pmid`` (the current revision)."""
        with self._lock:
            return self._record_bytes(str(pmid))

    def dates(self, pmid: str) -> RecordDates:
        with self._lock:
            return self._dates[str(pmid)]

    def matcher(self) -> Matcher:
        """The PubMed-like matcher over every record (hidden and deleted ones too: the search filters them)."""
        with self._lock:
            if self._matcher is None:
                docs = [search_doc(pmid, self._record_bytes(pmid)) for pmid in sorted(self._dates, key=int)]
                self._matcher = Matcher(docs, self._phrase_index)
            return self._matcher

    # -- what terms match ------------------------------------------------------------------------------

    def set_query(self, term: str, pmids: Iterable[str | int], translation: str | None = None) -> None:
        """Make ``term`` match exactly ``pmids`` (replacing any earlier registration).

        ``translation`` is the QueryTranslation to report (default: the term itself).
        """
        ids = self.known(pmids)
        with self._lock:
            self._queries[term.strip()] = list(dict.fromkeys(ids))
            if translation is None:
                self._translations.pop(term.strip(), None)
            else:
                self._translations[term.strip()] = translation

    def set_phrase_index(self, unknown: Iterable[str] = (), wildcard_cap: int = 600) -> None:
        """Phrases PubMed's phrase index does not know (as written in terms, any case), and how many
        variants of a truncated stem are searched before PubMed's "used only the first N variations"
        warning. Applies to terms the stand-in evaluates (``match_terms``), not to registered ones."""
        with self._lock:
            self._phrase_index = PhraseIndex.without(unknown, wildcard_cap)
            if self._matcher is not None:
                self._matcher.index = self._phrase_index  # the word index stays valid

    def degrade(self, term: str, errors: Sequence[tuple[str, str]] = (("PhraseNotFound", "x"),),
                warnings: Sequence[tuple[str, str]] = (("PhraseIgnored", "y"),),
                translation: str | None = None) -> None:
        """Make esearch for ``term`` carry ErrorList/WarningList entries, as PubMed does when it drops a
        phrase; the QueryTranslation then lacks the dropped phrases (or is ``translation``)."""
        with self._lock:
            self._degraded[term.strip()] = Degradation(tuple(errors), tuple(warnings), translation)

    def degradation(self, term: str) -> Degradation | None:
        return self._degraded.get(term)

    def evaluate(self, term: str) -> Evaluated | None:
        """A term nobody registered, evaluated against the corpus when ``match_terms`` is on (None: not).
        Raises the matcher's QuerySyntaxError or Unsupported."""
        if term in self._queries or not self.match_terms:
            return None
        outcome = self.matcher().search(term)
        return Evaluated(outcome.ids, outcome.translation, list(outcome.errors), list(outcome.warnings))

    def search(self, term: str, window: Window | None, evaluated: Sequence[str] | None = None) -> list[str]:
        """Visible ids the term matches, in the window, newest entry first (then higher PMID first)."""
        matched = self._queries.get(term, ()) if evaluated is None else evaluated
        ids = [p for p in matched if p not in self._hidden and p not in self._deleted]
        if window is not None:
            ids = [p for p in ids if window.first <= getattr(self._dates[p], window.datetype) <= window.last]
        ids.sort(key=lambda p: (self._dates[p].edat, int(p)), reverse=True)
        return ids

    def translation(self, term: str, degradation: Degradation | None) -> str:
        translation = self._translations.get(term, term)
        if degradation is None:
            return translation
        if degradation.translation is not None:
            return degradation.translation
        for name, phrase in degradation.errors:
            if name in ("PhraseNotFound", "FieldNotFound"):
                translation = drop_phrase(translation, phrase)
        return translation

    def article_set(self, ids: Sequence[str]) -> bytes:
        """The PubmedArticleSet for ``ids``: records in request order, unknown and hidden ids left out
        (as NCBI does), withdrawn ones named in one trailing DeleteCitation."""
        records: list[bytes] = []
        deleted: list[str] = []
        for pmid in dict.fromkeys(ids):  # Guess: a repeated id is served once
            if pmid in self._deleted:
                deleted.append(pmid)
            elif pmid in self._dates and pmid not in self._hidden:
                records.append(self._record_bytes(pmid))
        if deleted:
            inner = "".join(f'<PMID Version="1">{p}</PMID>' for p in deleted)
            records.append(f"<DeleteCitation>{inner}</DeleteCitation>".encode())
        return EFETCH_PROLOG + b"".join(records) + EFETCH_EPILOG

    # -- changing the world ----------------------------------------------------------------------------

    def set_dates(self, pmid: str | int, edat: dt.date | str | None = None, mdat: dt.date | str | None = None,
                  pdat: dt.date | str | None = None) -> None:
        """Override some of a record's search dates (the XML is left alone)."""
        (key,) = self.known([pmid])
        with self._lock:
            old = self._dates[key]
            self._dates[key] = RecordDates(
                edat=as_date(edat) or old.edat,
                mdat=as_date(mdat) or old.mdat,
                pdat=as_date(pdat) or old.pdat,
            )

    def hide(self, pmids: Iterable[str | int]) -> None:
        """Records not yet in PubMed: invisible to esearch and efetch until :meth:`publish`."""
        ids = self.known(pmids)
        with self._lock:
            self._hidden.update(ids)

    def publish(self, pmids: Iterable[str | int]) -> None:
        ids = self.known(pmids)
        with self._lock:
            self._hidden.difference_update(ids)

    def revise(self, pmid: str | int, xml_bytes: bytes, mdat: dt.date | str | None = None) -> None:
        """Replace a record's XML (a new Version, an added RetractionIn …) and set its mdat
        (default: ``today``, the day PubMed would stamp on the change)."""
        (key,) = self.known([pmid])
        record = _extract_record(xml_bytes, key)
        with self._lock:
            self._xml[key] = record
            self._synthetic.pop(key, None)
            self._matcher = None
            self.set_dates(key, mdat=as_date(mdat) or self.today)

    def delete(self, pmid: str | int) -> None:
        """NLM withdrew the record: search stops finding it, efetch answers with a DeleteCitation."""
        (key,) = self.known([pmid])
        with self._lock:
            self._deleted.add(key)

    def add_synthetic(self, n: int, start_pmid: int, template_pmid: str | int,
                      edat_range: tuple[dt.date | str, dt.date | str], term: str | None = None) -> list[str]:
        """Register ``n`` PMIDs ``start_pmid ..`` whose XML is the real template record with its PMID
        replaced, their edat/mdat/pdat spread evenly over ``edat_range`` (inclusive). With ``term``,
        they are appended to what that term matches. Returns the new PMIDs."""
        first, last = (as_date(d) for d in edat_range)
        if first is None or last is None or first > last:
            raise ValueError(f"edat_range must be (first, last) with first <= last, not {edat_range!r}")
        (template_key,) = self.known([template_pmid])
        template = _placeholder_template(self.record_xml(template_key), template_key)
        span = (last - first).days + 1
        new = [str(start_pmid + i) for i in range(n)]
        with self._lock:
            clash = [p for p in new if p in self._dates]
            if clash:
                raise ValueError(f"synthetic PMIDs already exist: {clash[:5]}")
            index = len(self._templates)
            self._templates.append(template)
            for i, pmid in enumerate(new):
                day = first + dt.timedelta(days=(i * span) // max(n, 1))
                self._synthetic[pmid] = index
                self._dates[pmid] = RecordDates(edat=day, mdat=day, pdat=day)
            if term is not None:
                self._queries.setdefault(term.strip(), []).extend(new)
            self._matcher = None
        return new

    # -- internals -------------------------------------------------------------------------------------

    def known(self, pmids: Iterable[str | int]) -> list[str]:
        """``pmids`` as strings; KeyError naming the ones the stand-in does not have."""
        ids = [str(p).strip() for p in pmids]
        with self._lock:
            unknown = [p for p in ids if p not in self._dates]
        if unknown:
            raise KeyError(f"PMIDs not in the stand-in corpus: {unknown[:10]}")
        return ids

    def _record_bytes(self, pmid: str) -> bytes:
        index = self._synthetic.get(pmid)
        if index is not None:
            return self._templates[index].replace(PLACEHOLDER, pmid.encode())
        return self._xml[pmid]


def _extract_record(xml_bytes: bytes, pmid: str) -> bytes:
    """The PubmedArticle/PubmedBookArticle for ``pmid`` in ``xml_bytes`` (a record or a whole set)."""
    root = etree.fromstring(xml_bytes, etree.XMLParser(resolve_entities=False, no_network=True))
    candidates = [root] if root.tag in ("PubmedArticle", "PubmedBookArticle") else [
        el for el in root if el.tag in ("PubmedArticle", "PubmedBookArticle")
    ]
    for rec in candidates:
        pmid_el = record_pmid(rec)
        if pmid_el is not None and (pmid_el.text or "").strip() == pmid:
            return etree.tostring(rec, encoding="UTF-8", with_tail=False)
    raise ValueError(f"no PubmedArticle with PMID {pmid} in the revised XML")


def _placeholder_template(xml: bytes, pmid: str) -> bytes:
    """The record with its own PMID (MedlineCitation/PMID and the PubmedData pubmed ArticleId, not the
    reference lists) replaced by a placeholder."""
    rec = etree.fromstring(xml)
    found = rec.xpath("(PubmedData|PubmedBookData)/ArticleIdList/ArticleId[@IdType='pubmed']")
    targets = [record_pmid(rec)] + [el for el in (found if isinstance(found, list) else [])
                                    if isinstance(el, etree._Element)]
    for el in targets:
        if el is not None and (el.text or "").strip() == pmid:
            el.text = PLACEHOLDER.decode()
    return etree.tostring(rec, encoding="UTF-8", with_tail=False)
