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
import re
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from lxml import etree

from . import __version__, pubmed
from .clock import parse_http_date
from .config import EntrezConfig
from .errors import EntrezError, ParseError, QueryDegraded, RateLimited, Unreachable
from .terms import DEGRADING  # ErrorList/WarningList entries after which NCBI ran a broader search
from .types import ParsedItem, SearchResult

log = logging.getLogger(__name__)
T = TypeVar("T")

# PubMed ESearch never returns ids past position 9,999 (retstart ≤ 9998).
ESEARCH_CAP = 9999
RATE_WINDOW_SECONDS = 1.0  # NCBI counts each key's requests over this window
_NUMBER = re.compile(r"[0-9]{1,18}")  # PMIDs and counts: fits a 64-bit column, never a float or a sign
_SAFE_XML = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True)


class _Start:
    """One request's place in the limiter's window: when it started, moved to when its answer came."""

    __slots__ = ("at",)

    def __init__(self, at: float) -> None:
        self.at = at


class RateLimiter:
    """At most ``max_calls`` requests in any ``period`` seconds, across threads.

    NCBI counts arrivals, and a request can arrive well after it started (the first on a new connection
    waits for the TLS handshake; later ones on the open connection do not), so four starts spaced a window
    apart can still arrive within a second. Each request therefore counts from when its answer came
    (:meth:`settle`), by which time it had certainly arrived; a small ``margin`` widens the window further.
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
        self._starts: collections.deque[_Start] = collections.deque()
        self._lock = threading.Lock()

    def acquire(self) -> _Start:
        """Block until one more request may start, then record it; :meth:`settle` it when its answer came."""
        with self._lock:  # held while sleeping: waiters queue up in order
            while True:
                now = self._monotonic()
                # The epsilon keeps a sleep that lands a rounding error short from looping forever.
                while self._starts and self._starts[0].at + self.window <= now + 1e-6:
                    self._starts.popleft()
                if len(self._starts) < self.max_calls:
                    start = _Start(now)
                    self._starts.append(start)
                    return start
                self._sleep(self._starts[0].at + self.window - now)

    def settle(self, start: _Start) -> None:
        """The answer to this request came (or the attempt ended): count it from now."""
        start.at = max(start.at, self._monotonic())


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
    """A response worth retrying (broken body, NCBI backend error, a body too slow or badly encoded)."""


class _Failure(Exception):
    """Why an attempt failed: ``problem`` for the log, the server's ``retry_after``, whether it was a 429,
    and ``local`` when the cause is on this side of the network (then retrying cannot help)."""

    def __init__(self, problem: str, *, retry_after: float | None = None, rate_limited: bool = False,
                 local: str | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.retry_after = retry_after
        self.rate_limited = rate_limited
        self.local = local


class _TooLarge(Exception):
    """A response over ``max_response_mb``: not retried (it would only be as large again)."""


@dataclass(frozen=True, slots=True)
class _Response:
    status: int
    headers: httpx.Headers
    body: bytes


# Causes of a failed connection that no retry can cure: the name does not resolve, nothing listens there.
_LOCAL_CAUSES: tuple[tuple[type[BaseException], str], ...] = (
    (socket.gaierror, "cannot resolve {host}: check the network connection or the proxy settings"),
    (ConnectionRefusedError, "nothing answers at {host}:{port} (connection refused): check entrez.base_url / "
                             "MONITOR_EUTILS_URL, the network or the proxy"),
)


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
            # Only encodings _receive decodes itself (under the size cap): no brotli or zstd.
            headers={"User-Agent": f"{config.tool}/{__version__}", "Accept-Encoding": "gzip, deflate"},
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
        """One E-utilities request with NCBI's etiquette, retried on transient failures (429, 5xx, timeouts,
        resets, broken or slow bodies); a local network failure raises :class:`Unreachable` after one quick
        second try, a response over the size cap :class:`EntrezError` at once."""
        url = f"{self.config.base_url}/{endpoint}.fcgi"
        data = {**params, "tool": self.config.tool}
        if self.config.email:
            data["email"] = self.config.email
        if self.config.api_key:
            data["api_key"] = self.config.api_key
        attempts = self.config.max_attempts
        unreachable: str | None = None
        for attempt in range(1, attempts + 1):
            start = self.limiter.acquire()
            self.requests_sent[endpoint] += 1
            try:
                return self._attempt(endpoint, url, data, parse)
            except _Failure as failure:
                problem, retry_after, rate_limited = failure.problem, failure.retry_after, failure.rate_limited
                local = failure.local
            finally:
                self.limiter.settle(start)
            if local is not None:
                if unreachable is not None or attempt == attempts:
                    raise Unreachable(f"{local} (the cycle stopped: nothing was fetched or stored)", url=url)
                unreachable = local  # once more after a short pause: a hiccup, or really no way out
            if attempt == attempts:
                kind = RateLimited if rate_limited else EntrezError
                raise kind(f"{endpoint} failed after {attempts} attempts: {problem} "
                           f"({url}); NCBI may be down: the next run retries from the same point", url=url)
            delay = self._backoff(attempt, retry_after)
            if local is not None:
                delay = min(delay, 1.0)
            if rate_limited:
                # NCBI counts requests per key over one second, rejected ones included, and another process
                # may share the key (a daemon handing over to the next): retrying within that second only
                # fills it again.
                delay = max(delay, RATE_WINDOW_SECONDS)
            # A local cause is said once, by Unreachable, if the second try fails too.
            log.log(logging.INFO if local else logging.WARNING, "%s attempt %d/%d: %s; retrying in %.2fs",
                    endpoint, attempt, attempts, problem, delay)
            self._sleep(delay)
        raise AssertionError("unreachable")

    def _attempt(self, endpoint: str, url: str, data: dict[str, str], parse: Callable[[bytes], T]) -> T:
        """One attempt: the parsed answer, or a :class:`_Failure` saying why and whether to retry."""
        try:
            response = self._receive(url, data)
        except _Retry as exc:
            raise _Failure(str(exc)) from None
        except _TooLarge as exc:
            raise EntrezError(f"{endpoint}: {exc} ({url})", url=url) from None
        except httpx.TimeoutException as exc:
            raise _Failure(f"timed out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise _Failure(f"connection failed ({type(exc).__name__}: {exc or 'no detail'})",
                           local=_local_cause(exc, url)) from None
        if response.status == 200:
            try:
                return parse(response.body)
            except _Retry as exc:
                raise _Failure(str(exc)) from None
        if response.status == 429 or response.status >= 500:
            raise _Failure(f"HTTP {response.status} {_snippet(response.body)}",
                           retry_after=_retry_after(response.headers.get("Retry-After")),
                           rate_limited=response.status == 429)
        raise EntrezError(f"{endpoint}: HTTP {response.status} from {url} ({_snippet(response.body)}); "
                          "check entrez.base_url / MONITOR_EUTILS_URL", url=url, status=response.status)

    def _receive(self, url: str, data: dict[str, str]) -> _Response:
        """POST and read the whole answer within ``deadline`` seconds and ``max_response_mb``, decoding gzip
        or deflate here, under the cap: a slow drip cannot hold a run, a compressed bomb cannot fill memory.
        (httpx's timeouts are per read: a server sending a byte every few seconds never trips them.)"""
        cap = int(self.config.max_response_mb * 1024 * 1024)
        give_up = time.monotonic() + self.config.deadline
        with self._http.stream("POST", url, data=data) as response:
            if response.is_stream_consumed:  # built in memory (a test transport): httpx decoded it already
                if len(response.content) > cap:
                    raise _TooLarge(_too_large(self.config.max_response_mb, "decompressed"))
                return _Response(response.status_code, response.headers, response.content)
            decoder = _decoder(response.headers.get("Content-Encoding"))
            received = 0
            body = bytearray()
            for chunk in response.iter_raw():
                received += len(chunk)
                if received > cap:
                    raise _TooLarge(_too_large(self.config.max_response_mb, "compressed"))
                body += _decode(decoder, chunk, cap - len(body), self.config.max_response_mb)
                if time.monotonic() > give_up:
                    raise _Retry(f"the answer was still arriving after {self.config.deadline:g}s "
                                 f"({received} bytes so far; entrez.deadline)")
            if decoder is not None:
                try:
                    body += decoder.flush()
                except zlib.error as exc:
                    raise _Retry(f"corrupt compressed body ({exc})") from None
                if decoder.eof is False and received:
                    raise _Retry("the compressed body ended early")
        return _Response(response.status_code, response.headers, bytes(body))

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
    count_text = (root.findtext("Count") or "").strip()
    if not _NUMBER.fullmatch(count_text):
        raise _Retry(f"esearch body without a usable Count ({count_text[:40]!r}): {_snippet(body)}")
    ids = tuple((e.text or "").strip() for e in root.iterfind("IdList/Id"))
    bad = next((i for i in ids if not _NUMBER.fullmatch(i)), None)
    if bad is not None:
        raise _Retry(f"esearch listed {bad[:40]!r}, which is not a PMID (a number of at most 18 digits)")
    retstart = (root.findtext("RetStart") or "0").strip()
    return SearchResult(
        count=int(count_text),
        ids=ids,
        retstart=int(retstart) if _NUMBER.fullmatch(retstart) else 0,
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


def _decoder(encoding: str | None) -> Any:
    """A zlib decompressor for a Content-Encoding (None: identity). An encoding we did not ask for is a
    broken answer, retried."""
    name = (encoding or "identity").strip().lower()
    if name in ("identity", ""):
        return None
    if name in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if name == "deflate":
        return zlib.decompressobj()
    raise _Retry(f"the answer came in an encoding we did not ask for: Content-Encoding {encoding!r}")


def _decode(decoder: Any, chunk: bytes, room: int, cap_mb: float) -> bytes:
    """``chunk`` decompressed, refusing to produce more than ``room`` bytes (the rest of the cap)."""
    if decoder is None:
        if len(chunk) > room:
            raise _TooLarge(_too_large(cap_mb, "decompressed"))
        return chunk
    try:
        out: bytes = decoder.decompress(chunk, room + 1)
    except zlib.error as exc:
        raise _Retry(f"corrupt compressed body ({exc})") from None
    if len(out) > room or decoder.unconsumed_tail:
        raise _TooLarge(_too_large(cap_mb, "decompressed"))
    return out


def _too_large(cap_mb: float, what: str) -> str:
    return (f"the answer is over {cap_mb:g} MB {what} (entrez.max_response_mb): lower entrez.batch_size, or "
            "raise the cap if your records really are that large")


def _local_cause(exc: httpx.TransportError, url: str) -> str | None:
    """The one-line reason when a connection failed on our side of the network (name resolution, nobody
    listening, a proxy that refuses), else None."""
    target = httpx.URL(url)
    if isinstance(exc, httpx.ProxyError):
        return f"the proxy refused to connect to {target.host} ({exc}): check HTTPS_PROXY/HTTP_PROXY"
    cause: BaseException | None = exc
    while cause is not None:
        for kind, text in _LOCAL_CAUSES:
            if isinstance(cause, kind):
                return text.format(host=target.host, port=target.port or (443 if target.scheme == "https" else 80))
        cause = cause.__cause__ or cause.__context__
    text = str(exc)
    if "Name or service not known" in text or "nodename nor servname" in text or \
            "Temporary failure in name resolution" in text:
        return _LOCAL_CAUSES[0][1].format(host=target.host)
    if "Connection refused" in text:
        return _LOCAL_CAUSES[1][1].format(host=target.host, port=target.port or 443)
    return None


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

