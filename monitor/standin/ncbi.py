"""What NCBI's E-utilities put on the wire, byte for byte: response envelopes (compare
``tests/data/esearch/*.xml``, ``tests/data/errors/*.xml``), error messages, headers, status pages, the 429
body, and the small pure helpers the request handling shares (date parameters, rate windows, merged
parameters, a reply value). Nothing here holds state.

Behaviour that is not measured anywhere we could read is marked "Guess:" in a comment.
"""

from __future__ import annotations

import bisect
import calendar
import datetime as dt
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

# PubMed will list at most this many ids for one search (retstart 0..9998).
PUBMED_SEARCH_CAP = 9999
FAULT_KINDS = frozenset(
    {"429", "500", "502", "503", "timeout", "reset", "truncate", "short_read", "error_body", "body"}
)
DATETYPES = ("edat", "mdat", "pdat")
# How QueryTranslation names each datetype (esearch2.xml shows "[Date - Entry]").
DATE_FIELDS = {"edat": "Date - Entry", "mdat": "Date - Modification", "pdat": "Date - Publication"}
ENDPOINTS = {"/entrez/eutils/esearch.fcgi": "esearch", "/entrez/eutils/efetch.fcgi": "efetch"}
# The base URL to configure with StandIn.transport(): the host is never resolved.
IN_PROCESS_URL = "http://eutils.in-process/entrez/eutils"

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


@dataclass(slots=True)
class Reply:
    """What the handler should put on the wire. ``mode`` is "send", "timeout", "reset" or "short_read";
    ``trickle_seconds`` sends the body one byte at a time with that pause (over loopback)."""

    status: int
    content_type: str
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)
    mode: str = "send"
    hang_seconds: float = 0.0
    gzip_ok: bool = True
    trickle_seconds: float = 0.0


class BadRequest(Exception):
    """A request the stand-in cannot answer faithfully (e.g. retmode=json): a loud 400, never NCBI's."""


def safe_date(year: int, month: int = 1, day: int = 1) -> dt.date | None:
    """The date, the day clamped to the month's length; None when year or month is impossible."""
    try:
        return dt.date(year, month, min(day, calendar.monthrange(year, month)[1]))
    except (ValueError, calendar.IllegalMonthError):
        return None


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
    return safe_date(year, month, day) if 1 <= day <= last_day else None


def max_in_window(times: Iterable[float], seconds: float = 1.0) -> int:
    """The most of ``times`` that fit in any half-open window ``[t, t + seconds)``."""
    ordered = sorted(times)
    best = 0
    for i, start in enumerate(ordered):
        best = max(best, bisect.bisect_left(ordered, start + seconds, lo=i) - i)
    return best


def merge_params(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Query string and form pairs as one mapping (repeated keys joined by ",")."""
    merged: dict[str, list[str]] = {}
    for key, value in pairs:
        merged.setdefault(key, []).append(value)
    return {key: ",".join(values) for key, values in merged.items()}


def status_page(status: int) -> bytes:
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


@dataclass(frozen=True, slots=True)
class SearchPage:
    """What one eSearchResult reports."""

    count: int
    retstart: int
    ids: Sequence[str]
    query_key: int | None
    webenv: str | None
    translation: str
    errors: Sequence[tuple[str, str]]
    warnings: Sequence[tuple[str, str]]


def esearch_body(page: SearchPage) -> bytes:
    """An eSearchResult in NCBI's layout: one line per Id, everything else on one line."""
    parts = [ESEARCH_PROLOG, f"<eSearchResult><Count>{page.count}</Count><RetMax>{len(page.ids)}</RetMax>"]
    parts.append(f"<RetStart>{page.retstart}</RetStart>")
    if page.query_key is not None:
        parts.append(f"<QueryKey>{page.query_key}</QueryKey><WebEnv>{page.webenv}</WebEnv>")
    if page.ids:
        parts.append("<IdList>\n" + "".join(f"<Id>{i}</Id>\n" for i in page.ids) + "</IdList>")
    else:
        parts.append("<IdList/>")
    parts.append(f"<TranslationSet/><QueryTranslation>{escape(page.translation)}</QueryTranslation>")
    parts.append(_message_list("ErrorList", page.errors, ("PhraseNotFound", "FieldNotFound")))
    parts.append(
        _message_list("WarningList", page.warnings, ("PhraseIgnored", "QuotedPhraseNotFound", "OutputMessage"))
    )
    parts.append("</eSearchResult>\n")
    return "".join(parts).encode()


def esearch_count_body(count: int) -> bytes:
    """Guess: the count-only envelope, as remembered from NCBI (tab-indented like error bodies)."""
    return (ESEARCH_PROLOG + f"<eSearchResult>\n\t<Count>{count}</Count>\n</eSearchResult>\n").encode()


def _message_list(name: str, items: Sequence[tuple[str, str]], dtd_order: Sequence[str]) -> str:
    """ErrorList/WarningList with children in the DTD's order (unknown names last)."""
    if not items:
        return ""
    rank = {tag: i for i, tag in enumerate(dtd_order)}
    ordered = sorted(items, key=lambda item: rank.get(item[0], len(rank)))
    return f"<{name}>" + "".join(f"<{tag}>{escape(text)}</{tag}>" for tag, text in ordered) + f"</{name}>"


def cut_mid_record(body: bytes) -> bytes:
    """``body`` cut off halfway through its last record (or halfway, when it has none)."""
    starts = [body.rfind(tag) for tag in (b"<PubmedArticle>", b"<PubmedBookArticle>", b"<DeleteCitation>")]
    start = max(starts)
    if start < 0:
        return body[: max(1, len(body) // 2)]
    end = len(body) - len(EFETCH_EPILOG)
    return body[: start + max(1, (end - start) // 2)]


def drop_phrase(translation: str, phrase: str) -> str:
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
