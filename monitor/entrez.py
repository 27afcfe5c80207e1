"""NCBI E-utilities client: the only module that speaks HTTP to NCBI.

Owns NCBI etiquette and resilience: ``tool``/``email``/``api_key`` on every request, one process-wide rate
limiter (3 requests/s, 10 with a key), connect/read timeouts, bounded retries with exponential backoff and
jitter (429, 5xx, timeouts, resets, truncated or unparsable bodies; ``Retry-After`` honoured), ESearch with
the history server, the 9,999-id ESearch cap (date range halved until each slice fits), EFetch by POST in
batches, and the checks that turn NCBI's quiet failures into errors: an ``<ERROR>`` body is never an empty
success, and a query NCBI rewrote (PhraseNotFound, FieldNotFound …) raises :class:`QueryDegraded`.

Biopython's ``Bio.Entrez`` is not used on this path: its URLs are hard-coded, it has no timeouts, retries
429/5xx without sleeping and its rate limiter is not thread-safe (measured; README design notes).
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import httpx
from lxml import etree

from . import __version__, pubmed
from .clock import parse_http_date
from .config import EntrezConfig
from .errors import EntrezError, ParseError, QueryDegraded, RateLimited
from .terms import DEGRADING  # ErrorList/WarningList entries after which NCBI ran a broader search
from .types import ParsedItem, SearchResult

log = logging.getLogger(__name__)
T = TypeVar("T")

# PubMed ESearch never returns ids past position 9,999 (retstart ≤ 9998).
ESEARCH_CAP = 9999
RATE_WINDOW_SECONDS = 1.0  # NCBI counts each key's requests over this window
_SAFE_XML = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True)


class RateLimiter:
    """At most ``max_calls`` request starts in any ``period`` seconds, across threads.

    A small ``margin`` widens the window because NCBI measures arrivals, which jitter a little after our
    send times.
    """

    def __init__(
        self,
        max_calls: int,
        period: float = 1.0,
        margin: float = 0.1,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.max_calls = max_calls
        self.window = period + margin
        self._monotonic = monotonic
        self._sleep = sleep
        self._starts: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        """Block until one more request may start, then record it."""
        with self._lock:  # held while sleeping: waiters queue up in order
            while True:
                now = self._monotonic()
                # The epsilon keeps a sleep that lands a rounding error short from looping forever.
                while self._starts and self._starts[0] + self.window <= now + 1e-6:
                    self._starts.popleft()
                if len(self._starts) < self.max_calls:
                    self._starts.append(now)
                    return
                self._sleep(self._starts[0] + self.window - now)


_shared_limiters: dict[int, RateLimiter] = {}
_shared_lock = threading.Lock()


def shared_rate_limiter(max_calls: int) -> RateLimiter:
    """The process-wide limiter for this rate: every client in the process draws from the same budget."""
    with _shared_lock:
        if max_calls not in _shared_limiters:
            _shared_limiters[max_calls] = RateLimiter(max_calls)
        return _shared_limiters[max_calls]


@dataclass(frozen=True, slots=True)
class Slice:
    """One date slice of a search whose count fits under the ESearch cap."""

    mindate: dt.date
    maxdate: dt.date
    result: SearchResult


class _Retry(Exception):
    """A response worth retrying (broken body, NCBI backend error)."""


class EntrezClient:
    """E-utilities for PubMed. ``transport`` and ``sleep`` are injectable so tests need no real network."""

    def __init__(
        self,
        config: EntrezConfig,
        *,
        limiter: RateLimiter | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.limiter = limiter or shared_rate_limiter(config.requests_per_second)
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.requests_sent = collections.Counter[str]()
        self._http = httpx.Client(
            transport=transport,
            timeout=httpx.Timeout(config.timeout, connect=config.connect_timeout),
            headers={"User-Agent": f"{config.tool}/{__version__}"},
            follow_redirects=True,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> EntrezClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- ESearch

    def esearch(
        self,
        term: str,
        *,
        datetype: str | None = None,
        mindate: dt.date | None = None,
        maxdate: dt.date | None = None,
        retstart: int = 0,
        retmax: int = ESEARCH_CAP,
        usehistory: bool = True,
        query_name: str | None = None,
        degraded_ok: bool = False,
    ) -> SearchResult:
        """One ESearch call on PubMed. Raises :class:`QueryDegraded` if NCBI rewrote the query, unless
        ``degraded_ok`` (the query workbench reads ErrorList/WarningList itself)."""
        params: dict[str, str] = {"db": "pubmed", "term": term, "retstart": str(retstart),
                                  "retmax": str(min(retmax, ESEARCH_CAP))}
        if usehistory:
            params["usehistory"] = "y"
        if datetype:
            if mindate is None or maxdate is None:
                raise ValueError("datetype needs both mindate and maxdate")
            params.update(datetype=datetype, mindate=_ncbi_date(mindate), maxdate=_ncbi_date(maxdate))
        result = self._call("esearch", params, parse_esearch)
        problems = tuple(p for p in result.errors + result.warnings if p[0] in DEGRADING)
        if problems and not degraded_ok:
            raise QueryDegraded(query_name or term, problems)
        return result

    def search_slices(
        self,
        term: str,
        datetype: str,
        mindate: dt.date,
        maxdate: dt.date,
        *,
        query_name: str | None = None,
    ) -> Iterator[Slice]:
        """Every id matching ``term`` with ``datetype`` in [mindate, maxdate], in slices under the cap.

        A window whose count exceeds 9,999 is halved (day resolution) until each half fits; a single day
        over the cap is an error, because no date split can list it.
        """
        pending = [(mindate, maxdate)]
        while pending:
            lo, hi = pending.pop()
            result = self.esearch(term, datetype=datetype, mindate=lo, maxdate=hi, query_name=query_name)
            if result.count <= ESEARCH_CAP:
                if len(result.ids) < result.count:
                    raise EntrezError(
                        f"esearch returned {len(result.ids)} of {result.count} ids for {lo}..{hi}; "
                        "the server clamped retmax unexpectedly"
                    )
                yield Slice(lo, hi, result)
                continue
            if lo >= hi:
                raise EntrezError(
                    f"query {query_name or term!r} matches {result.count} records on {lo} alone, over "
                    f"PubMed's {ESEARCH_CAP}-id ESearch limit; narrow the term"
                )
            mid = lo + (hi - lo) // 2
            log.info("splitting %s..%s (%d ids) at %s", lo, hi, result.count, mid)
            # Push the later half first so slices come out oldest first.
            pending.append((mid + dt.timedelta(days=1), hi))
            pending.append((lo, mid))

    # ---------------------------------------------------------------- EFetch

    def efetch(self, ids: Sequence[str]) -> Iterator[list[ParsedItem]]:
        """Fetch records by PMID, POSTing ``batch_size`` ids per request; yields one parsed batch at a time.

        Each batch is parsed completely before it is yielded, so a truncated body is retried rather than
        half-stored.
        """
        size = self.config.batch_size
        for start in range(0, len(ids), size):
            chunk = ids[start:start + size]
            params = {"db": "pubmed", "retmode": "xml", "id": ",".join(chunk)}
            yield self._call("efetch", params, _parse_efetch)

    def efetch_history(self, result: SearchResult) -> Iterator[list[ParsedItem]]:
        """Fetch every record of a search from the history server (WebEnv + query_key), in batches."""
        if not (result.webenv and result.query_key):
            raise EntrezError("esearch returned no WebEnv/QueryKey; cannot use the history server")
        size = self.config.batch_size
        for start in range(0, result.count, size):
            params = {"db": "pubmed", "retmode": "xml", "WebEnv": result.webenv,
                      "query_key": result.query_key, "retstart": str(start), "retmax": str(size)}
            yield self._call("efetch", params, _parse_efetch)

    # ---------------------------------------------------------------- transport

    def _call(self, endpoint: str, params: dict[str, str], parse: Callable[[bytes], T]) -> T:
        url = f"{self.config.base_url}/{endpoint}.fcgi"
        data = {**params, "tool": self.config.tool}
        if self.config.email:
            data["email"] = self.config.email
        if self.config.api_key:
            data["api_key"] = self.config.api_key
        attempts = self.config.max_attempts
        problem = ""
        for attempt in range(1, attempts + 1):
            retry_after: float | None = None
            rate_limited = False
            self.limiter.acquire()
            self.requests_sent[endpoint] += 1
            try:
                response = self._http.post(url, data=data)
            except httpx.TimeoutException as exc:
                problem = f"timed out ({type(exc).__name__})"
            except httpx.TransportError as exc:
                problem = f"connection failed ({type(exc).__name__}: {exc or 'no detail'})"
            else:
                status = response.status_code
                if status == 200:
                    try:
                        return parse(response.content)
                    except _Retry as exc:
                        problem = str(exc)
                elif status == 429 or status >= 500:
                    rate_limited = status == 429
                    retry_after = _retry_after(response.headers.get("Retry-After"))
                    problem = f"HTTP {status} {_snippet(response.content)}"
                else:
                    raise EntrezError(
                        f"{endpoint}: HTTP {status} from {url} ({_snippet(response.content)}); "
                        "check entrez.base_url / MONITOR_EUTILS_URL",
                        url=url,
                        status=status,
                    )
            if attempt == attempts:
                kind = RateLimited if rate_limited else EntrezError
                raise kind(
                    f"{endpoint} failed after {attempts} attempts: {problem} "
                    f"({url}); NCBI may be down: the next run retries from the same point",
                    url=url,
                )
            delay = self._backoff(attempt, retry_after)
            if rate_limited:
                # NCBI counts requests per key over one second, rejected ones included, and another process
                # may share the key (a daemon handing over to the next): retrying within that second only
                # fills it again.
                delay = max(delay, RATE_WINDOW_SECONDS)
            log.warning("%s attempt %d/%d: %s; retrying in %.2fs", endpoint, attempt, attempts, problem, delay)
            self._sleep(delay)
        raise AssertionError("unreachable")

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with equal jitter, capped; never shorter than the server's Retry-After."""
        ceiling: float = min(self.config.max_backoff_seconds, self.config.backoff_seconds * 2.0 ** (attempt - 1))
        delay = ceiling / 2 + self._rng.uniform(0, ceiling / 2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.config.max_backoff_seconds * 5))
        return delay


# -------------------------------------------------------------------- response parsing (pure)


def parse_esearch(body: bytes) -> SearchResult:
    """Parse an ESearch XML response. ``<ERROR>`` bodies and unparsable XML raise a retryable error."""
    try:
        root = etree.fromstring(body, _SAFE_XML)
    except etree.XMLSyntaxError as exc:
        raise _Retry(f"unparsable esearch body ({exc}): {_snippet(body)}") from None
    if root.tag != "eSearchResult":
        raise _Retry(f"unexpected esearch root <{root.tag}>: {_snippet(body)}")
    error = root.findtext("ERROR")
    if error is not None:
        raise _Retry(f"NCBI error: {' '.join(error.split())}")
    count_text = root.findtext("Count")
    if count_text is None or not count_text.strip().isdigit():
        raise _Retry(f"esearch body without a Count: {_snippet(body)}")
    return SearchResult(
        count=int(count_text),
        ids=tuple((e.text or "").strip() for e in root.iterfind("IdList/Id")),
        retstart=int(root.findtext("RetStart") or 0),
        webenv=root.findtext("WebEnv"),
        query_key=root.findtext("QueryKey"),
        query_translation=root.findtext("QueryTranslation"),
        errors=_entries(root.find("ErrorList")),
        warnings=_entries(root.find("WarningList")),
    )


def _entries(element: etree._Element | None) -> tuple[tuple[str, str], ...]:
    if element is None:
        return ()
    return tuple((child.tag, (child.text or "").strip()) for child in element if isinstance(child.tag, str))


def _parse_efetch(body: bytes) -> list[ParsedItem]:
    try:
        return list(pubmed.parse(body))
    except ParseError as exc:
        raise _Retry(f"broken efetch body: {exc}") from None


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds (either form RFC 9110 allows)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    when = parse_http_date(value)
    return None if when is None else max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


def _ncbi_date(value: dt.date) -> str:
    return value.strftime("%Y/%m/%d")


def _snippet(body: bytes, limit: int = 160) -> str:
    text = " ".join(body[:limit * 2].decode("utf-8", "replace").split())
    return text[:limit] + ("…" if len(text) > limit else "")

