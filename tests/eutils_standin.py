"""A stand-in for NCBI E-utilities (esearch + efetch on db=pubmed) for end-to-end tests.

It owns a real HTTP server on loopback that answers the way NCBI does: record XML copied from real
PubMed efetch files (``tests/data/efetch``), envelopes written in NCBI's byte format (compare
``tests/data/esearch/*.xml``, ``tests/data/errors/*.xml``), NCBI's headers, gzip, its 3 (or 10 with an
``api_key``) requests-per-second limit with the 429 JSON body, and the 9,999-record ESearch cap.

Tests say which PMIDs a term matches (:meth:`StandIn.set_query`), or, with ``match_terms=True``, let the
stand-in evaluate PubMed syntax itself against the corpus records' titles, abstracts, keywords and MeSH
(``tests/pubmed_query.py``: fields, phrases, truncation, proximity, left-to-right operators). Its phrase
index can be told which phrases it does not know (:meth:`StandIn.set_phrase_index`); it then answers as
NCBI does (GUIDE §6): the phrase broken into its words with a ``QuotedPhraseNotFound`` warning, or
``PhraseNotFound`` and nothing found, and the QueryTranslation of what it really searched. Tests then change
the world between runs with builder methods (dates, hide/publish, revise, delete, degrade) and script
failures (:meth:`StandIn.inject`, :meth:`StandIn.fault_rate`). Every request is logged so tests can assert
on what the client sent and how fast.

The same handling also runs in-process as an httpx transport (:meth:`StandIn.transport`), for tests that
drive the monitor without a socket. Nothing here imports pytest or the project: the module is also a script, so a developer can point the
monitor at it by hand::

    python tests/eutils_standin.py --port 8080 --all-ids-for 'gut skin axis'

Behaviour that is not measured anywhere we could read is marked "Guess:" in a comment.
"""

from __future__ import annotations

import argparse
import bisect
import calendar
import datetime as dt
import functools
import gzip
import io
import json
import random
import re
import secrets
import socket
import struct
import sys
import threading
import time
import types
import urllib.parse
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import httpx
from lxml import etree

try:  # imported as tests.eutils_standin, or run as a script from tests/
    from tests.pubmed_query import Doc, Matcher, PhraseIndex, QuerySyntaxError, Unsupported
except ModuleNotFoundError:  # pragma: no cover - script mode
    from pubmed_query import Doc, Matcher, PhraseIndex, QuerySyntaxError, Unsupported  # type: ignore[no-redef]

DEFAULT_CORPUS = Path(__file__).resolve().parent / "data" / "efetch"

# PubMed will list at most this many ids for one search (retstart 0..9998).
PUBMED_SEARCH_CAP = 9999
FAULT_KINDS = frozenset(
    {"429", "500", "502", "503", "timeout", "reset", "truncate", "short_read", "error_body"}
)
DATETYPES = ("edat", "mdat", "pdat")
# How QueryTranslation names each datetype (esearch2.xml shows "[Date - Entry]").
DATE_FIELDS = {"edat": "Date - Entry", "mdat": "Date - Modification", "pdat": "Date - Publication"}
ENDPOINTS = {"/entrez/eutils/esearch.fcgi": "esearch", "/entrez/eutils/efetch.fcgi": "efetch"}
# The base URL to configure with StandIn.transport(): the host is never resolved.
IN_PROCESS_URL = "http://eutils.in-process/entrez/eutils"

# --- NCBI byte formats ------------------------------------------------------------------------------

# Prolog of every esearch response (tests/data/esearch/esearch1.xml, 2026 refresh).
ESEARCH_PROLOG = (
    '<?xml version="1.0" encoding="UTF-8" ?>\n'
    '<!DOCTYPE eSearchResult PUBLIC "-//NLM//DTD esearch 20060628//EN" '
    '"https://eutils.ncbi.nlm.nih.gov/eutils/dtd/20060628/esearch.dtd">\n'
)
# Prolog of a PubMed efetch response (tests/data/efetch/biopython/pubmed1.xml, 2025 DTD).
EFETCH_PROLOG = (
    b'<?xml version="1.0" ?>\n'
    b'<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle, 1st January 2025//EN" '
    b'"https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_250101.dtd">\n'
    b"<PubmedArticleSet>\n"
)
EFETCH_EPILOG = b"</PubmedArticleSet>"
# efetch's error envelope; "eEfetchResult" in the DOCTYPE is NCBI's own spelling.
EFETCH_ERROR_PROLOG = (
    '<?xml version="1.0" encoding="UTF-8" ?>\n'
    '<!DOCTYPE eEfetchResult PUBLIC "-//NLM//DTD efetch 20131226//EN" '
    '"https://eutils.ncbi.nlm.nih.gov/eutils/dtd/20131226/efetch.dtd">\n'
)

RETSTART_CAP_MESSAGE = (
    "Search Backend failed: Exception:\n'retstart' cannot be larger than 9998. For PubMed, ESearch can "
    "only retrieve the first 9,999 records matching the query. To obtain more than 9,999 PubMed records, "
    "consider using EDirect that contains additional logic to batch PubMed search results automatically "
    "so that an arbitrary number can be retrieved. "
    "For details see https://www.ncbi.nlm.nih.gov/books/NBK25499/"
)
EMPTY_ID_MESSAGE = "Empty id list - nothing todo"
EMPTY_TERM_MESSAGE = "Empty term and query_key - nothing todo"
NO_ITEMS_MESSAGE = "No items found."
# Default bodies of the "error_body" fault: seen from NCBI at HTTP 200 when a backend hiccups.
DEFAULT_ERROR_BODY = {
    "esearch": "Search Backend failed: Exception: 502 Proxy Error",
    "efetch": "Unable to obtain query #1",
}

# Headers NCBI sends on every E-utilities answer (biocommons_test_esearch.yaml cassette), minus the
# cookies and per-request ids that only matter to NCBI.
NCBI_HEADERS: tuple[tuple[str, str], ...] = (
    ("Access-Control-Allow-Origin", "*"),
    ("Access-Control-Expose-Headers", "X-RateLimit-Limit,X-RateLimit-Remaining"),
    ("Cache-Control", "private"),
    ("Content-Security-Policy", "upgrade-insecure-requests"),
    ("Referrer-Policy", "origin-when-cross-origin"),
    ("Strict-Transport-Security", "max-age=31536000; includeSubDomains; preload"),
    ("X-UA-Compatible", "IE=Edge"),
    ("X-XSS-Protection", "1; mode=block"),
)
XML_TYPE = "text/xml; charset=UTF-8"
HTML_TYPE = "text/html; charset=iso-8859-1"

# Apache-style pages like the ones NCBI's front-end proxies return.
_STATUS_PAGES = {
    500: (
        "Internal Server Error",
        "The server encountered an internal error or\nmisconfiguration and was unable to complete\n"
        "your request.",
    ),
    502: (
        "Proxy Error",
        "The proxy server received an invalid\nresponse from an upstream server.<br />\n"
        "The proxy server could not handle the request<br /><br />\n"
        "Reason: <strong>Error reading from remote server</strong>",
    ),
    503: (
        "Service Unavailable",
        "The server is temporarily unable to service your\nrequest due to maintenance downtime or "
        "capacity\nproblems. Please try again later.",
    ),
    404: ("Not Found", "The requested URL was not found on this server."),
}

_MONTHS = {m.lower(): i for i, m in enumerate(calendar.month_abbr) if m}
# Guess: PubMed files a season under its first month (winter under December of the printed year).
_SEASONS = {"spring": 3, "summer": 6, "fall": 9, "autumn": 9, "winter": 12}


# --- value objects ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecordDates:
    """The three dates an esearch date window can filter on."""

    edat: dt.date  # Entrez date: when the record entered PubMed
    mdat: dt.date  # modification date
    pdat: dt.date  # publication date, first day of the printed period


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    """One request as the stand-in saw it."""

    arrival: float  # time.monotonic() when the request line and headers had been read
    wall_time: float  # time.time() at the same moment
    method: str
    endpoint: str  # "esearch" | "efetch" | the path, for anything else
    params: Mapping[str, str]  # query string and form body merged (repeated keys joined by ",")
    status: int | None  # None when no response was sent ("timeout", "reset")
    fault: str | None = None  # the injected fault kind, if any
    rate_limited: bool = False  # True when NCBI's own limit (not an injection) answered 429
    client: str = ""


@dataclass(frozen=True, slots=True)
class _Loaded:
    """A corpus record: the bytes efetch serves and the facts needed to choose between copies."""

    xml: bytes
    dates: RecordDates
    revised: dt.date
    version: int


@dataclass(slots=True)
class _Degradation:
    errors: tuple[tuple[str, str], ...]
    warnings: tuple[tuple[str, str], ...]
    translation: str | None


@dataclass(slots=True)
class _Evaluated:
    """What the matcher made of a term: ids (unfiltered), QueryTranslation, ErrorList, WarningList."""

    ids: list[str]
    translation: str
    errors: list[tuple[str, str]]
    warnings: list[tuple[str, str]]


@dataclass(slots=True)
class _Scripted:
    kind: str
    remaining: int
    endpoint: str | None
    options: dict[str, Any]


@dataclass(slots=True)
class _RandomFaults:
    p: float
    kinds: tuple[str, ...]
    rng: random.Random
    endpoint: str | None


@dataclass(slots=True)
class _Reply:
    """What the handler should put on the wire. ``mode`` is "send", "timeout", "reset" or "short_read"."""

    status: int
    content_type: str
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)
    mode: str = "send"
    hang_seconds: float = 0.0
    gzip_ok: bool = True


class _BadRequest(Exception):
    """A request the stand-in cannot answer faithfully (e.g. retmode=json): a loud 400, never NCBI's."""


# --- corpus loading ---------------------------------------------------------------------------------


def _month_number(text: str | None) -> int | None:
    if not text:
        return None
    text = text.strip()
    if text.isdigit():
        month = int(text)
        return month if 1 <= month <= 12 else None
    return _MONTHS.get(text[:3].lower()) or _SEASONS.get(text.lower())


def _safe_date(year: int, month: int = 1, day: int = 1) -> dt.date | None:
    try:
        return dt.date(year, month, min(day, calendar.monthrange(year, month)[1]))
    except (ValueError, calendar.IllegalMonthError):
        return None


def _ymd(el: etree._Element | None) -> dt.date | None:
    """A ``Year``/``Month``/``Day`` (or ``MedlineDate``) element as the first day of its period."""
    if el is None:
        return None
    year = el.findtext("Year")
    if year and year.strip().isdigit():
        month = _month_number(el.findtext("Month")) or _month_number(el.findtext("Season")) or 1
        day_text = (el.findtext("Day") or "").strip()
        day = int(day_text) if day_text.isdigit() else 1
        return _safe_date(int(year), month, max(day, 1))
    medline = el.findtext("MedlineDate")
    if medline:  # e.g. "1998 Dec-1999 Jan", "2000 Spring"
        m = re.match(r"\s*(\d{4})(?:\s+([A-Za-z]+))?", medline)
        if m:
            return _safe_date(int(m.group(1)), _month_number(m.group(2)) or 1)
    return None


def _history_date(rec: etree._Element, status: str) -> dt.date | None:
    found = rec.xpath("(PubmedData|PubmedBookData)/History/PubMedPubDate[@PubStatus=$s]", s=status)
    return _ymd(found[0]) if found else None


def _citation(rec: etree._Element) -> etree._Element:
    """The element holding PMID and DateRevised: MedlineCitation or BookDocument."""
    if rec.tag == "MedlineCitation":
        return rec
    found = rec.find("MedlineCitation")
    return found if found is not None else rec.find("BookDocument")


def record_dates(rec: etree._Element) -> RecordDates:
    """edat = entrez history date, else pubmed; mdat = DateRevised, else edat; pdat = PubDate.

    Bare MedlineCitations (MEDLINE update files) carry no history, so their edat falls back to
    DateCreated/DateCompleted, then the publication date.
    """
    cit = _citation(rec)
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


def _record_pmid(rec: etree._Element) -> etree._Element | None:
    return _citation(rec).find("PMID")


def _open_corpus_file(path: Path) -> Any:
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def iter_records(path: Path) -> Iterator[tuple[str, _Loaded]]:
    """Yield ``(pmid, record)`` for every top-level record in one efetch/MEDLINE file.

    A bare MedlineCitation (MEDLINE update files) is wrapped in ``<PubmedArticle>``, the shape efetch
    serves it in (PubmedData is optional in the DTD). DeleteCitation entries in corpus files are skipped:
    tests delete records explicitly with :meth:`StandIn.delete`.
    """
    with _open_corpus_file(path) as fh:
        events = etree.iterparse(
            fh,
            events=("end",),
            tag=("PubmedArticle", "PubmedBookArticle", "MedlineCitation"),
            resolve_entities=False,
            no_network=True,
            huge_tree=True,
        )
        for _, el in events:
            parent = el.getparent()
            if el.tag == "MedlineCitation" and parent is not None and parent.tag == "PubmedArticle":
                continue  # part of a PubmedArticle; handled when that ends
            pmid_el = _record_pmid(el)
            if pmid_el is not None and pmid_el.text and pmid_el.text.strip().isdigit():
                xml = etree.tostring(el, encoding="UTF-8", with_tail=False)
                if el.tag == "MedlineCitation":
                    xml = b"<PubmedArticle>" + xml + b"</PubmedArticle>"
                dates = record_dates(el)
                revised = _ymd(_citation(el).find("DateRevised")) or dt.date.min
                version = int(pmid_el.get("Version", "1") or 1)
                yield pmid_el.text.strip(), _Loaded(xml, dates, revised, version)
            # Free what we have read: the files hold up to a few hundred records.
            el.clear(keep_tail=False)
            while el.getprevious() is not None:
                del el.getparent()[0]


def _doc(pmid: str, xml: bytes) -> Doc:
    """What a PubMed search sees of one record: title, abstract, author keywords, MeSH descriptors (major
    ones marked), publication types, languages."""
    rec = etree.fromstring(xml, etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True))
    cit = _citation(rec)

    def text(el: etree._Element | None) -> str:
        return " ".join("".join(el.itertext()).split()) if el is not None else ""

    title = text(cit.find("Article/ArticleTitle")) or text(cit.find("Book/BookTitle")) or text(
        cit.find("ArticleTitle"))
    abstract = " ".join(text(a) for a in cit.iterfind(".//Abstract/AbstractText"))
    mesh = tuple(text(d) for d in cit.iterfind("MeshHeadingList/MeshHeading/DescriptorName"))
    major = tuple(text(h.find("DescriptorName")) for h in cit.iterfind("MeshHeadingList/MeshHeading")
                  if h.find("DescriptorName") is not None and (
                      h.find("DescriptorName").get("MajorTopicYN") == "Y"
                      or any(q.get("MajorTopicYN") == "Y" for q in h.iterfind("QualifierName"))))
    keywords = tuple(text(k) for k in cit.iterfind("KeywordList/Keyword"))
    pub_types = tuple(text(t) for t in cit.iterfind(".//PublicationTypeList/PublicationType"))
    languages = tuple(text(la) for la in cit.iterfind(".//Language"))
    return Doc(pmid, title, abstract, mesh, major, keywords, pub_types, languages)


@functools.lru_cache(maxsize=4)
def load_corpus(corpus_dir: Path) -> Mapping[str, _Loaded]:
    """Every record under ``corpus_dir`` (``*.xml`` and ``*.xml.gz``), one per PMID.

    When a PMID appears in several files, the copy with the latest DateRevised wins, ties going to the
    higher PMID@Version, then to the first file in sorted path order. Cached: the corpus is read once
    per process however many stand-ins the tests start.
    """
    chosen: dict[str, _Loaded] = {}
    paths = [corpus_dir] if corpus_dir.is_file() else sorted(corpus_dir.rglob("*"))
    for path in paths:
        if not path.is_file() or not (path.name.endswith(".xml") or path.name.endswith(".xml.gz")):
            continue
        for pmid, rec in iter_records(path):
            old = chosen.get(pmid)
            if old is None or (rec.revised, rec.version) > (old.revised, old.version):
                chosen[pmid] = rec
    return types.MappingProxyType(chosen)


# --- small pure helpers -----------------------------------------------------------------------------


def parse_entrez_date(text: str, *, end: bool) -> dt.date | None:
    """``YYYY/MM/DD``, ``YYYY/MM`` or ``YYYY`` as the first (or, with ``end``, last) day it covers."""
    m = re.fullmatch(r"(\d{4})(?:/(\d{1,2})(?:/(\d{1,2}))?)?", text.strip())
    if not m:
        return None
    year = int(m.group(1))
    month = int(m.group(2)) if m.group(2) else (12 if end else 1)
    if not 1 <= month <= 12:
        return None
    last_day = calendar.monthrange(year, month)[1]
    day = int(m.group(3)) if m.group(3) else (last_day if end else 1)
    return _safe_date(year, month, day) if 1 <= day <= last_day else None


def max_in_window(times: Iterable[float], seconds: float = 1.0) -> int:
    """The most of ``times`` that fit in any half-open window ``[t, t + seconds)``."""
    ordered = sorted(times)
    best = 0
    for i, start in enumerate(ordered):
        best = max(best, bisect.bisect_left(ordered, start + seconds, lo=i) - i)
    return best


def _merge_params(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    merged: dict[str, list[str]] = {}
    for key, value in pairs:
        merged.setdefault(key, []).append(value)
    return {key: ",".join(values) for key, values in merged.items()}


def _status_page(status: int) -> bytes:
    title, text = _STATUS_PAGES[status]
    return (
        '<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN">\n<html><head>\n'
        f"<title>{status} {title}</title>\n</head><body>\n<h1>{title}</h1>\n<p>{text}</p>\n"
        "</body></html>\n"
    ).encode("iso-8859-1")


def esearch_error_body(message: str) -> bytes:
    return (ESEARCH_PROLOG + f"<eSearchResult><ERROR>{escape(message)}</ERROR></eSearchResult>\n").encode()


def efetch_error_body(message: str) -> bytes:
    body = f"<eFetchResult>\n\t<ERROR>{escape(message)}</ERROR>\n</eFetchResult>\n"
    return (EFETCH_ERROR_PROLOG + body).encode()


def rate_limit_body(api_key: str, count: int, limit: int) -> bytes:
    """NCBI's 429 body, byte for byte (``api-key`` is the key, or the client IP without one)."""
    payload = {
        "error": "API rate limit exceeded", "api-key": api_key, "count": str(count), "limit": str(limit)
    }
    return json.dumps(payload, separators=(",", ":")).encode()


def _drop_phrase(translation: str, phrase: str) -> str:
    """``translation`` without ``phrase`` (quoted or not), tidied: what PubMed searches once a phrase
    is not found."""
    out = re.sub(r'"\s*' + re.escape(phrase) + r'\s*"(\[[^\]]*\])?', " ", translation, flags=re.I)
    out = re.sub(r"(?<!\w)" + re.escape(phrase) + r"(\[[^\]]*\])?(?!\w)", " ", out, flags=re.I)
    for _ in range(5):  # dangling operators and empty groups left behind
        out = re.sub(r"\(\s*\)", " ", out)
        out = re.sub(r"\(\s*(AND|OR|NOT)\s+", "(", out)
        out = re.sub(r"\s+(AND|OR|NOT)\s*\)", ")", out)
        out = re.sub(r"\b(AND|OR|NOT)\s+(AND|OR|NOT)\b", r"\1", out)
        out = re.sub(r"^\s*(AND|OR|NOT)\s+|\s+(AND|OR|NOT)\s*$", "", out)
        out = re.sub(r"\s{2,}", " ", out).strip()
    return out


def _as_date(value: dt.date | str | None) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(value)


# --- the stand-in -----------------------------------------------------------------------------------


class StandIn:
    """A running E-utilities server with a scriptable PubMed behind it. See the module docstring."""

    def __init__(
        self,
        corpus_dir: Path | str | None = None,
        today: dt.date | None = None,
        *,
        enforce_rate_limit: bool = True,
        hang_seconds: float = 5.0,
        host: str = "127.0.0.1",
        port: int = 0,
        match_terms: bool = False,
    ) -> None:
        self.today: dt.date = today or dt.date.today()
        self.enforce_rate_limit = enforce_rate_limit
        # Evaluate terms nobody registered with set_query against the corpus text (tests/pubmed_query.py).
        self.match_terms = match_terms
        self._phrase_index = PhraseIndex()
        self._matcher: Matcher | None = None
        self.hang_seconds = hang_seconds
        self.rate_limited_count = 0  # 429s sent because the client really exceeded NCBI's limit
        self._host, self._port = host, port
        self._lock = threading.RLock()
        corpus = load_corpus(Path(corpus_dir or DEFAULT_CORPUS).resolve())
        self._xml: dict[str, bytes] = {pmid: rec.xml for pmid, rec in corpus.items()}
        self._dates: dict[str, RecordDates] = {pmid: rec.dates for pmid, rec in corpus.items()}
        self._templates: list[bytes] = []  # synthetic records: template bytes with a placeholder PMID
        self._synthetic: dict[str, int] = {}  # pmid -> index into _templates
        self._hidden: set[str] = set()
        self._deleted: set[str] = set()
        self._queries: dict[str, list[str]] = {}
        self._translations: dict[str, str] = {}
        self._degraded: dict[str, _Degradation] = {}
        self._envs: dict[str, list[list[str]]] = {}
        self._arrivals: dict[str, deque[float]] = {}
        self._log: list[LoggedRequest] = []
        self._scripted: list[_Scripted] = []
        self._random: _RandomFaults | None = None
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> StandIn:
        """Bind (port 0: the OS picks) and serve from a daemon thread."""
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server((self._host, self._port), _Handler, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="eutils-standin",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop promptly, even with connections held open by a "timeout" fault or a keep-alive pool."""
        server = self._server
        if server is None:
            return
        self._stopping.set()  # wakes handlers sleeping in a "timeout" fault
        server.shutdown()
        with self._lock:
            connections = dict(self._connections)
        for conn in connections:  # unblocks handlers waiting for the next keep-alive request
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        server.server_close()
        deadline = time.monotonic() + 2.0
        for thread in [self._thread, *connections.values()]:
            if thread is not None and thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        self._server = None
        self._thread = None

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("StandIn is not running; call start() first")
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self.port}/entrez/eutils"

    def transport(self, monotonic: Callable[[], float] = time.monotonic) -> httpx.MockTransport:
        """The same request handling in-process, as an httpx transport (no socket, no thread): what a client
        built with it sends reaches :meth:`_respond` as it would over loopback. ``monotonic`` times arrivals
        for the rate limit, so a test can run the client and the stand-in on one virtual clock and never
        wait. Faults become what httpx raises for them on a real socket: a hang is a read timeout (at once),
        a reset a read error, a short read a protocol error; truncated bodies and error bodies are as sent.
        Use it with ``base_url`` :data:`IN_PROCESS_URL`."""

        def handle(request: httpx.Request) -> httpx.Response:
            pairs = urllib.parse.parse_qsl(request.url.query.decode("ascii"), keep_blank_values=True)
            if "application/x-www-form-urlencoded" in request.headers.get("Content-Type", ""):
                pairs += urllib.parse.parse_qsl(request.content.decode("utf-8", "replace"), keep_blank_values=True)
            reply = self._respond(request.method, request.url.path, _merge_params(pairs), "in-process",
                                  monotonic(), time.time())
            if reply.mode == "timeout":
                raise httpx.ReadTimeout("the stand-in sent nothing (injected hang)", request=request)
            if reply.mode == "reset":
                raise httpx.ReadError("[Errno 104] Connection reset by peer", request=request)
            if reply.mode == "short_read":
                raise httpx.RemoteProtocolError("peer closed connection without sending complete message body",
                                                request=request)
            body, headers = reply.body, list(reply.headers)
            if reply.gzip_ok and "gzip" in request.headers.get("Accept-Encoding", "").lower():
                body = gzip.compress(body, compresslevel=1)
                headers.append(("Content-Encoding", "gzip"))
            headers.append(("Content-Type", reply.content_type))
            # A stream, not content: httpx would decode (and hold) content at once; a stream is read as from
            # a socket.
            return httpx.Response(reply.status, headers=headers, stream=httpx.ByteStream(body))

        return httpx.MockTransport(handle)

    # -- corpus and world state (builder methods) ------------------------------------------------------

    def pmids(self) -> list[str]:
        """Every PMID the stand-in knows (corpus and synthetic, hidden and deleted too), ascending."""
        with self._lock:
            return sorted(self._dates, key=int)

    def record_xml(self, pmid: str) -> bytes:
        """The record bytes efetch serves for ``pmid`` (the current revision)."""
        with self._lock:
            return self._record_bytes(str(pmid))

    def dates(self, pmid: str) -> RecordDates:
        with self._lock:
            return self._dates[str(pmid)]

    def set_query(self, term: str, pmids: Iterable[str | int], translation: str | None = None) -> None:
        """Make ``term`` match exactly ``pmids`` (replacing any earlier registration).

        ``translation`` is the QueryTranslation to report (default: the term itself).
        """
        ids = self._known(pmids)
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

    def matcher(self) -> Matcher:
        """The PubMed-like matcher over every record (hidden and deleted ones too: the search filters them)."""
        with self._lock:
            if self._matcher is None:
                docs = [_doc(pmid, self._record_bytes(pmid)) for pmid in sorted(self._dates, key=int)]
                self._matcher = Matcher(docs, self._phrase_index)
            return self._matcher

    def set_dates(
        self,
        pmid: str | int,
        edat: dt.date | str | None = None,
        mdat: dt.date | str | None = None,
        pdat: dt.date | str | None = None,
    ) -> None:
        """Override some of a record's search dates (the XML is left alone)."""
        (key,) = self._known([pmid])
        with self._lock:
            old = self._dates[key]
            self._dates[key] = RecordDates(
                edat=_as_date(edat) or old.edat,
                mdat=_as_date(mdat) or old.mdat,
                pdat=_as_date(pdat) or old.pdat,
            )

    def hide(self, pmids: Iterable[str | int]) -> None:
        """Records not yet in PubMed: invisible to esearch and efetch until :meth:`publish`."""
        ids = self._known(pmids)
        with self._lock:
            self._hidden.update(ids)

    def publish(self, pmids: Iterable[str | int]) -> None:
        ids = self._known(pmids)
        with self._lock:
            self._hidden.difference_update(ids)

    def revise(self, pmid: str | int, xml_bytes: bytes, mdat: dt.date | str | None = None) -> None:
        """Replace a record's XML (a new Version, an added RetractionIn …) and set its mdat
        (default: ``today``, the day PubMed would stamp on the change)."""
        (key,) = self._known([pmid])
        record = self._extract_record(xml_bytes, key)
        with self._lock:
            self._xml[key] = record
            self._synthetic.pop(key, None)
            self._matcher = None
            self.set_dates(key, mdat=_as_date(mdat) or self.today)

    def delete(self, pmid: str | int) -> None:
        """NLM withdrew the record: search stops finding it, efetch answers with a DeleteCitation."""
        (key,) = self._known([pmid])
        with self._lock:
            self._deleted.add(key)

    def degrade(
        self,
        term: str,
        errors: Sequence[tuple[str, str]] = (("PhraseNotFound", "x"),),
        warnings: Sequence[tuple[str, str]] = (("PhraseIgnored", "y"),),
        translation: str | None = None,
    ) -> None:
        """Make esearch for ``term`` carry ErrorList/WarningList entries, as PubMed does when it drops a
        phrase; the QueryTranslation then lacks the dropped phrases (or is ``translation``)."""
        with self._lock:
            self._degraded[term.strip()] = _Degradation(tuple(errors), tuple(warnings), translation)

    def add_synthetic(
        self,
        n: int,
        start_pmid: int,
        template_pmid: str | int,
        edat_range: tuple[dt.date | str, dt.date | str],
        term: str | None = None,
    ) -> list[str]:
        """Register ``n`` PMIDs ``start_pmid ..`` whose XML is the real template record with its PMID
        replaced, their edat/mdat/pdat spread evenly over ``edat_range`` (inclusive). With ``term``,
        they are appended to what that term matches. Returns the new PMIDs."""
        first, last = (_as_date(d) for d in edat_range)
        if first is None or last is None or first > last:
            raise ValueError(f"edat_range must be (first, last) with first <= last, not {edat_range!r}")
        (template_key,) = self._known([template_pmid])
        template = self._placeholder_template(self.record_xml(template_key), template_key)
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

    # -- faults --------------------------------------------------------------------------------------

    def inject(
        self,
        kind: str,
        count: int = 1,
        endpoint: str | None = None,
        *,
        retry_after: int | None = None,
        hang_seconds: float | None = None,
        message: str | None = None,
    ) -> None:
        """Answer the next ``count`` requests (to ``endpoint``, or any) with fault ``kind``.

        ``retry_after`` adds a Retry-After header to "429"; ``hang_seconds`` overrides the "timeout"
        hang; ``message`` overrides the ERROR text of "error_body".
        """
        self._check_kind(kind)
        options = {"retry_after": retry_after, "hang_seconds": hang_seconds, "message": message}
        with self._lock:
            self._scripted.append(_Scripted(kind, count, endpoint, options))

    def fault_rate(
        self, p: float, kinds: Sequence[str], seed: int, endpoint: str | None = None
    ) -> None:
        """From now on, each request (to ``endpoint``, or any) not already scripted by :meth:`inject`
        fails with probability ``p``, the kind drawn from ``kinds``. Seeded: the same request sequence
        gets the same faults."""
        for kind in kinds:
            self._check_kind(kind)
        with self._lock:
            self._random = _RandomFaults(p, tuple(kinds), random.Random(seed), endpoint) if p > 0 else None

    def clear_faults(self) -> None:
        with self._lock:
            self._scripted.clear()
            self._random = None

    # -- request log ---------------------------------------------------------------------------------

    @property
    def log(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._log)

    def requests_for(self, endpoint: str) -> list[LoggedRequest]:
        with self._lock:
            return [r for r in self._log if r.endpoint == endpoint]

    def max_in_any_window(self, seconds: float = 1.0, endpoint: str | None = None) -> int:
        """The most logged requests whose arrivals fit in any half-open window of ``seconds``."""
        with self._lock:
            times = [r.arrival for r in self._log if endpoint is None or r.endpoint == endpoint]
        return max_in_window(times, seconds)

    def reset_log(self) -> None:
        with self._lock:
            self._log.clear()
            self.rate_limited_count = 0

    # -- request handling (called from handler threads) ------------------------------------------------

    def _respond(
        self, method: str, path: str, params: dict[str, str], client: str, arrival: float, wall: float
    ) -> _Reply:
        endpoint = ENDPOINTS.get(path)
        api_key = params.get("api_key", "").strip()
        limit = 10 if api_key else 3
        who = api_key or client
        fault: str | None = None
        rate_limited = False
        with self._lock:
            count = self._note_arrival(who, arrival)
            if endpoint is None:
                reply = _Reply(404, HTML_TYPE, _status_page(404))
            elif self.enforce_rate_limit and count > limit:
                # NCBI's front door answers before any backend sees the request.
                rate_limited = True
                self.rate_limited_count += 1
                reply = _Reply(429, "application/json", rate_limit_body(who, count, limit), gzip_ok=False)
            else:
                plan = self._next_fault(endpoint)
                fault = plan.kind if plan else None
                reply = self._fault_reply(plan, endpoint, params, who, count, limit) if plan else None
                if reply is None:
                    reply = self._endpoint_reply(endpoint, params)
            reply.headers = [
                *NCBI_HEADERS,
                ("X-RateLimit-Limit", str(limit)),
                ("X-RateLimit-Remaining", str(max(0, limit - count))),
                *reply.headers,
            ]
            sent = reply.status if reply.mode not in ("timeout", "reset") else None
            self._log.append(
                LoggedRequest(
                    arrival, wall, method, endpoint or path, types.MappingProxyType(dict(params)),
                    sent, fault, rate_limited, client,
                )
            )
        return reply

    def _note_arrival(self, who: str, arrival: float) -> int:
        """Record an arrival; return how many arrivals from ``who`` fall in the last second, this one
        included (rejected requests count too, as they do at NCBI)."""
        window = self._arrivals.setdefault(who, deque())
        while window and arrival - window[0] >= 1.0:
            window.popleft()
        window.append(arrival)
        return len(window)

    def _next_fault(self, endpoint: str) -> _Scripted | None:
        for plan in self._scripted:
            if plan.endpoint in (None, endpoint):
                plan.remaining -= 1
                if plan.remaining <= 0:
                    self._scripted.remove(plan)
                return plan
        rnd = self._random
        if rnd and rnd.endpoint in (None, endpoint) and rnd.rng.random() < rnd.p:
            return _Scripted(rnd.rng.choice(rnd.kinds), 1, endpoint, {})
        return None

    def _fault_reply(
        self, plan: _Scripted, endpoint: str, params: dict[str, str], who: str, count: int, limit: int
    ) -> _Reply:
        kind, opts = plan.kind, plan.options
        if kind == "429":
            extra = [("Retry-After", str(opts["retry_after"]))] if opts.get("retry_after") is not None else []
            return _Reply(429, "application/json", rate_limit_body(who, count, limit), extra, gzip_ok=False)
        if kind in ("500", "502", "503"):
            return _Reply(int(kind), HTML_TYPE, _status_page(int(kind)), gzip_ok=False)
        if kind == "timeout":
            hang = opts.get("hang_seconds")
            hang = self.hang_seconds if hang is None else hang
            return _Reply(0, "", b"", mode="timeout", hang_seconds=hang)
        if kind == "reset":
            return _Reply(0, "", b"", mode="reset")
        if kind == "error_body":
            message = opts.get("message") or DEFAULT_ERROR_BODY[endpoint]
            body = esearch_error_body(message) if endpoint == "esearch" else efetch_error_body(message)
            return _Reply(200, XML_TYPE, body)
        # "truncate" and "short_read" damage the answer the request would have had.
        reply = self._endpoint_reply(endpoint, params)
        if kind == "truncate":
            reply.body = _cut_mid_record(reply.body)
        else:
            reply.mode = "short_read"
        return reply

    def _endpoint_reply(self, endpoint: str, params: dict[str, str]) -> _Reply:
        try:
            if endpoint == "esearch":
                return self._esearch(params)
            return self._efetch(params)
        except _BadRequest as exc:
            text = f"eutils stand-in cannot answer this faithfully: {exc}\n"
            return _Reply(400, "text/plain; charset=UTF-8", text.encode())

    # -- esearch ---------------------------------------------------------------------------------------

    def _esearch(self, params: dict[str, str]) -> _Reply:
        db = params.get("db", "").strip()
        if db != "pubmed":
            return _Reply(200, XML_TYPE, esearch_error_body(f"Invalid db name specified: {db}"))
        if params.get("retmode", "xml").lower() not in ("", "xml"):
            raise _BadRequest(f"retmode={params['retmode']} (only XML is served)")
        term = params.get("term", "").strip()
        if not term:
            return _Reply(200, XML_TYPE, esearch_error_body(EMPTY_TERM_MESSAGE))
        retstart = self._int_param(params, "retstart", 0)
        retmax = self._int_param(params, "retmax", 20)
        if retstart > PUBMED_SEARCH_CAP - 1:
            # Measured by several projects in 2026: HTTP 200 with only the ERROR in the envelope.
            return _Reply(200, XML_TYPE, esearch_error_body(RETSTART_CAP_MESSAGE))
        window, translation_suffix = self._date_window(params)
        evaluated = self._evaluate(term)
        if isinstance(evaluated, _Reply):
            return evaluated
        ids = self._search(term, window, evaluated.ids if evaluated else None)
        warnings: list[tuple[str, str]] = []
        if retstart + retmax > PUBMED_SEARCH_CAP:
            retmax = PUBMED_SEARCH_CAP - retstart
            warnings.append(
                ("OutputMessage", f"Restrictions achieved. start and count adjusted to {retstart}, {retmax}")
            )
        page = ids[retstart : retstart + retmax]
        query_key = webenv = None
        if params.get("usehistory", "").lower() == "y":
            webenv, query_key = self._store_history(params.get("WebEnv", "").strip(), ids)
        if params.get("rettype", "").lower() == "count":
            # Guess: the count-only envelope, as remembered from NCBI (tab-indented like error bodies).
            body = ESEARCH_PROLOG + f"<eSearchResult>\n\t<Count>{len(ids)}</Count>\n</eSearchResult>\n"
            return _Reply(200, XML_TYPE, body.encode())
        degradation = self._degraded.get(term)
        errors = list(degradation.errors) if degradation else []
        if degradation:
            warnings = list(degradation.warnings) + warnings
        if evaluated is not None:
            errors = evaluated.errors + errors
            warnings = evaluated.warnings + warnings
        if not ids:
            warnings.append(("OutputMessage", NO_ITEMS_MESSAGE))
        base = evaluated.translation if evaluated is not None else self._translation(term, degradation)
        translation = base + translation_suffix
        body = _esearch_body(len(ids), retstart, page, query_key, webenv, translation, errors, warnings)
        return _Reply(200, XML_TYPE, body)

    @staticmethod
    def _int_param(params: Mapping[str, str], name: str, default: int) -> int:
        raw = params.get(name, "").strip()
        if not raw:
            return default
        if not raw.isdigit():
            raise _BadRequest(f"{name}={raw!r} is not a non-negative integer")
        return int(raw)

    def _date_window(self, params: Mapping[str, str]) -> tuple[tuple[str, dt.date, dt.date] | None, str]:
        """(datetype, first, last) from mindate/maxdate or reldate, and the QueryTranslation suffix."""
        datetype = params.get("datetype", "").strip().lower() or "pdat"  # NCBI's default for PubMed
        if datetype not in DATETYPES:
            raise _BadRequest(f"datetype={datetype!r}")
        field_name = DATE_FIELDS[datetype]
        mindate, maxdate = params.get("mindate", "").strip(), params.get("maxdate", "").strip()
        if mindate and maxdate:
            first, last = parse_entrez_date(mindate, end=False), parse_entrez_date(maxdate, end=True)
            if first is None or last is None:
                raise _BadRequest(f"mindate={mindate!r} maxdate={maxdate!r} (use YYYY/MM/DD, YYYY/MM, YYYY)")
            return (datetype, first, last), f" AND {first:%Y/%m/%d}:{last:%Y/%m/%d}[{field_name}]"
        # Like NCBI, a lone mindate or maxdate is ignored.
        reldate = params.get("reldate", "").strip()
        if reldate:
            if not reldate.isdigit():
                raise _BadRequest(f"reldate={reldate!r}")
            first = self.today - dt.timedelta(days=int(reldate))
            # Guess: "last N days" runs from today-N through today, inclusive.
            label = {"edat": "EDat", "mdat": "MDat", "pdat": "PDat"}[datetype]
            return (datetype, first, self.today), f' AND "last {int(reldate)} days"[{label}]'
        return None, ""

    def _evaluate(self, term: str) -> _Evaluated | _Reply | None:
        """A term nobody registered, evaluated against the corpus when ``match_terms`` is on (None: not)."""
        if term in self._queries or not self.match_terms:
            return None
        try:
            outcome = self.matcher().search(term)
        except QuerySyntaxError as exc:
            # Guess: NCBI's wording for a query its parser rejects (old responses: "Can't run executor").
            return _Reply(200, XML_TYPE, esearch_error_body(f"Syntax error in query: {exc}"))
        except Unsupported as exc:
            raise _BadRequest(str(exc)) from None
        return _Evaluated(outcome.ids, outcome.translation, list(outcome.errors), list(outcome.warnings))

    def _search(self, term: str, window: tuple[str, dt.date, dt.date] | None,
                evaluated: Sequence[str] | None = None) -> list[str]:
        """Visible ids the term matches, in the window, newest entry first (then higher PMID first)."""
        matched = self._queries.get(term, ()) if evaluated is None else evaluated
        ids = [p for p in matched if p not in self._hidden and p not in self._deleted]
        if window is not None:
            datetype, first, last = window
            ids = [p for p in ids if first <= getattr(self._dates[p], datetype) <= last]
        ids.sort(key=lambda p: (self._dates[p].edat, int(p)), reverse=True)
        return ids

    def _translation(self, term: str, degradation: _Degradation | None) -> str:
        translation = self._translations.get(term, term)
        if degradation is None:
            return translation
        if degradation.translation is not None:
            return degradation.translation
        for name, phrase in degradation.errors:
            if name in ("PhraseNotFound", "FieldNotFound"):
                translation = _drop_phrase(translation, phrase)
        return translation

    def _store_history(self, webenv: str, ids: list[str]) -> tuple[str, int]:
        """Append ``ids`` to ``webenv`` (a new environment when absent or unknown); return the key."""
        if webenv not in self._envs:
            # Guess: an unknown WebEnv on esearch starts a fresh environment rather than failing.
            webenv = "MCID_" + secrets.token_hex(12)
            self._envs[webenv] = []
        self._envs[webenv].append(list(ids))
        return webenv, len(self._envs[webenv])

    # -- efetch ----------------------------------------------------------------------------------------

    def _efetch(self, params: dict[str, str]) -> _Reply:
        db = params.get("db", "").strip()
        if db != "pubmed":
            # Guess: efetch words a bad db like epost does (tests/data/errors/biopython_epost2.xml).
            return _Reply(200, XML_TYPE, efetch_error_body(f"Invalid db name specified: {db}"))
        if params.get("retmode", "xml").lower() not in ("", "xml"):
            raise _BadRequest(f"retmode={params['retmode']} (only XML is served)")
        if params.get("rettype", "").lower() not in ("", "xml", "full", "abstract"):
            raise _BadRequest(f"rettype={params['rettype']} (only the PubmedArticleSet XML is served)")
        if "id" in params:
            ids = [p.strip() for p in re.split(r"[,\s]+", params["id"]) if p.strip().isdigit()]
        elif params.get("WebEnv", "").strip():
            found = self._history_ids(params)
            if isinstance(found, _Reply):
                return found
            ids = found
        else:
            ids = []
        if not ids:
            return _Reply(200, XML_TYPE, efetch_error_body(EMPTY_ID_MESSAGE))
        return _Reply(200, XML_TYPE, self._article_set(ids))

    def _history_ids(self, params: Mapping[str, str]) -> list[str] | _Reply:
        webenv = params.get("WebEnv", "").strip()
        query_key = params.get("query_key", "").strip()
        sets = self._envs.get(webenv)
        if sets is None or not query_key.isdigit() or not 1 <= int(query_key) <= len(sets):
            return _Reply(200, XML_TYPE, efetch_error_body(f"Unable to obtain query #{query_key or 1}"))
        retstart = self._int_param(params, "retstart", 0)
        # Guess: efetch's default page is 20 records, like esearch's; 10,000 is the documented maximum.
        retmax = min(self._int_param(params, "retmax", 20), 10000)
        if retstart > PUBMED_SEARCH_CAP - 1:
            # Measured (2026-08, two projects): walking a PubMed history set past 9,998 is HTTP 400
            # with the esearch cap message. Guess: the body uses the efetch error envelope.
            return _Reply(400, XML_TYPE, efetch_error_body(RETSTART_CAP_MESSAGE))
        # Measured: a page crossing the cap is clamped silently (retstart=9500&retmax=500 gives 499).
        end = min(retstart + retmax, PUBMED_SEARCH_CAP)
        return sets[int(query_key) - 1][retstart:end]

    def _article_set(self, ids: Sequence[str]) -> bytes:
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

    # -- internals -----------------------------------------------------------------------------------

    def _record_bytes(self, pmid: str) -> bytes:
        index = self._synthetic.get(pmid)
        if index is not None:
            return self._templates[index].replace(b"__STANDIN_PMID__", pmid.encode())
        return self._xml[pmid]

    def _known(self, pmids: Iterable[str | int]) -> list[str]:
        ids = [str(p).strip() for p in pmids]
        with self._lock:
            unknown = [p for p in ids if p not in self._dates]
        if unknown:
            raise KeyError(f"PMIDs not in the stand-in corpus: {unknown[:10]}")
        return ids

    @staticmethod
    def _check_kind(kind: str) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(FAULT_KINDS)}")

    @staticmethod
    def _extract_record(xml_bytes: bytes, pmid: str) -> bytes:
        """The PubmedArticle/PubmedBookArticle for ``pmid`` in ``xml_bytes`` (a record or a whole set)."""
        root = etree.fromstring(xml_bytes, etree.XMLParser(resolve_entities=False, no_network=True))
        candidates = [root] if root.tag in ("PubmedArticle", "PubmedBookArticle") else [
            el for el in root if el.tag in ("PubmedArticle", "PubmedBookArticle")
        ]
        for rec in candidates:
            pmid_el = _record_pmid(rec)
            if pmid_el is not None and (pmid_el.text or "").strip() == pmid:
                return etree.tostring(rec, encoding="UTF-8", with_tail=False)
        raise ValueError(f"no PubmedArticle with PMID {pmid} in the revised XML")

    @staticmethod
    def _placeholder_template(xml: bytes, pmid: str) -> bytes:
        """The record with its own PMID (MedlineCitation/PMID and the PubmedData pubmed ArticleId, not
        the reference lists) replaced by a placeholder."""
        rec = etree.fromstring(xml)
        targets = [_record_pmid(rec)] + rec.xpath(
            "(PubmedData|PubmedBookData)/ArticleIdList/ArticleId[@IdType='pubmed']"
        )
        for el in targets:
            if el is not None and (el.text or "").strip() == pmid:
                el.text = "__STANDIN_PMID__"
        return etree.tostring(rec, encoding="UTF-8", with_tail=False)

    def _track(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections[conn] = threading.current_thread()

    def _untrack(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.pop(conn, None)


def _esearch_body(
    count: int,
    retstart: int,
    ids: Sequence[str],
    query_key: int | None,
    webenv: str | None,
    translation: str,
    errors: Sequence[tuple[str, str]],
    warnings: Sequence[tuple[str, str]],
) -> bytes:
    """An eSearchResult in NCBI's layout: one line per Id, everything else on one line."""
    parts = [ESEARCH_PROLOG, f"<eSearchResult><Count>{count}</Count><RetMax>{len(ids)}</RetMax>"]
    parts.append(f"<RetStart>{retstart}</RetStart>")
    if query_key is not None:
        parts.append(f"<QueryKey>{query_key}</QueryKey><WebEnv>{webenv}</WebEnv>")
    if ids:
        parts.append("<IdList>\n" + "".join(f"<Id>{i}</Id>\n" for i in ids) + "</IdList>")
    else:
        parts.append("<IdList/>")
    parts.append(f"<TranslationSet/><QueryTranslation>{escape(translation)}</QueryTranslation>")
    parts.append(_message_list("ErrorList", errors, ("PhraseNotFound", "FieldNotFound")))
    parts.append(
        _message_list("WarningList", warnings, ("PhraseIgnored", "QuotedPhraseNotFound", "OutputMessage"))
    )
    parts.append("</eSearchResult>\n")
    return "".join(parts).encode()


def _message_list(name: str, items: Sequence[tuple[str, str]], dtd_order: Sequence[str]) -> str:
    """ErrorList/WarningList with children in the DTD's order (unknown names last)."""
    if not items:
        return ""
    rank = {tag: i for i, tag in enumerate(dtd_order)}
    ordered = sorted(items, key=lambda item: rank.get(item[0], len(rank)))
    return f"<{name}>" + "".join(f"<{tag}>{escape(text)}</{tag}>" for tag, text in ordered) + f"</{name}>"


def _cut_mid_record(body: bytes) -> bytes:
    """``body`` cut off halfway through its last record (or halfway, when it has none)."""
    starts = [body.rfind(tag) for tag in (b"<PubmedArticle>", b"<PubmedBookArticle>", b"<DeleteCitation>")]
    start = max(starts)
    if start < 0:
        return body[: max(1, len(body) // 2)]
    end = len(body) - len(EFETCH_EPILOG)
    return body[: start + max(1, (end - start) // 2)]


# --- HTTP plumbing ----------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # bursts from concurrent clients must reach the rate limiter, not the backlog

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], standin: StandIn
    ) -> None:
        self.standin = standin
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up (timeouts, resets, shutdown) is routine here, not worth a traceback.
        if not isinstance(sys.exc_info()[1], (OSError, ValueError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like NCBI
    server_version = "Finatra"
    timeout = 60  # an idle keep-alive connection is dropped after this
    server: _Server

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the stand-in keeps its own log; stderr noise would drown test output

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without this, Nagle + delayed ACK adds ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.standin._track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.standin._untrack(self.connection)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        arrival, wall = time.monotonic(), time.time()
        url = urllib.parse.urlsplit(self.path)
        pairs = urllib.parse.parse_qsl(url.query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            body = self.rfile.read(length)
            if "application/x-www-form-urlencoded" in (self.headers.get("Content-Type") or ""):
                pairs += urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        standin = self.server.standin
        params = _merge_params(pairs)
        reply = standin._respond(method, url.path, params, self.client_address[0], arrival, wall)
        if reply.mode == "timeout":
            standin._stopping.wait(reply.hang_seconds)  # silent; returns early when the stand-in stops
            self.close_connection = True
            return
        if reply.mode == "reset":
            self._reset()
            return
        body = reply.body
        headers = list(reply.headers)
        if reply.gzip_ok and "gzip" in (self.headers.get("Accept-Encoding") or "").lower():
            body = gzip.compress(body, compresslevel=1)
            headers.append(("Content-Encoding", "gzip"))
        self.send_response(reply.status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if reply.mode == "short_read":
            # The promised length never arrives: half the bytes, then the connection ends.
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def _reset(self) -> None:
        """Close with SO_LINGER 0 so the kernel sends RST instead of FIN."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        # The descriptor is really closed only once rfile (a makefile() view) lets go of it.
        self.rfile.close()
        self.connection.close()
        # http.server flushes wfile after every request: give it somewhere harmless to flush to.
        self.wfile = io.BytesIO()


# --- command line -----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve the NCBI E-utilities stand-in on loopback.")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument(
        "--all-ids-for", action="append", default=[], metavar="TERM",
        help="make TERM match every corpus record (repeatable)",
    )
    parser.add_argument(
        "--config", type=Path, metavar="QUERIES_TOML",
        help="make every query term in this monitor config match every corpus record",
    )
    parser.add_argument("--today", type=dt.date.fromisoformat, default=None, help="YYYY-MM-DD for reldate")
    parser.add_argument("--no-rate-limit", action="store_true", help="do not answer 429 above 3 (10) req/s")
    parser.add_argument("--match", action="store_true",
                        help="evaluate unregistered terms as PubMed syntax against the corpus records")
    parser.add_argument("--unknown-phrase", action="append", default=[], metavar="PHRASE",
                        help="a phrase the phrase index does not know (repeatable; implies --match)")
    args = parser.parse_args(argv)
    standin = StandIn(
        args.corpus,
        today=args.today,
        enforce_rate_limit=not args.no_rate_limit,
        host=args.host,
        port=args.port,
        match_terms=args.match or bool(args.unknown_phrase),
    )
    if args.unknown_phrase:
        standin.set_phrase_index(args.unknown_phrase)
    terms = list(args.all_ids_for)
    if args.config:
        from monitor.config import load_config  # only the by-hand mode needs the project itself

        terms += [q.term for q in load_config(args.config, env={}).queries]
    for term in terms:
        standin.set_query(term, standin.pmids())
    with standin:
        print(standin.base_url, flush=True)
        print(f"{len(standin.pmids())} records; {len(terms)} terms match them all; Ctrl-C stops",
              file=sys.stderr)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
