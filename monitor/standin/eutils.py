"""Request handling: one E-utilities request in, one :class:`~.ncbi.Reply` out, whatever carried it (the
loopback server or the in-process transport). NCBI's front door first (its per-caller rate limit answers
429 before any backend sees the request), then injected faults, then esearch (date windows, the history
server, the 9,999 cap, degraded terms) or efetch (ids by GET or POST, history pages, deletions). Every
request is logged (:class:`RequestLog`) so tests can assert on what the client sent and how fast.

Behaviour that is not measured anywhere we could read is marked "Guess:" in a comment.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import threading
import types
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from .faults import Caller, FaultInjector
from .matcher import QuerySyntaxError, Unsupported
from .ncbi import (
    DATE_FIELDS,
    DATETYPES,
    EMPTY_ID_MESSAGE,
    EMPTY_TERM_MESSAGE,
    ENDPOINTS,
    HTML_TYPE,
    NCBI_HEADERS,
    NO_ITEMS_MESSAGE,
    PUBMED_SEARCH_CAP,
    RETSTART_CAP_MESSAGE,
    XML_TYPE,
    BadRequest,
    Reply,
    SearchPage,
    efetch_error_body,
    esearch_body,
    esearch_count_body,
    esearch_error_body,
    max_in_window,
    parse_entrez_date,
    rate_limit_body,
    status_page,
)
from .world import Evaluated, PubMedWorld, Window


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
class Incoming:
    """A request as it arrived: method, path, merged parameters, the client, arrival times."""

    method: str
    path: str
    params: dict[str, str]
    client: str
    arrival: float  # monotonic
    wall: float  # time.time()


class RequestLog:
    """Every request answered, and each caller's arrivals in the last second (for NCBI's rate limit)."""

    def __init__(self, lock: threading.RLock) -> None:
        self.rate_limited_count = 0  # 429s sent because the client really exceeded NCBI's limit
        self._lock = lock
        self._log: list[LoggedRequest] = []
        self._arrivals: dict[str, deque[float]] = {}

    @property
    def entries(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._log)

    def append(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._log.append(entry)
            self.rate_limited_count += entry.rate_limited

    def requests_for(self, endpoint: str) -> list[LoggedRequest]:
        with self._lock:
            return [r for r in self._log if r.endpoint == endpoint]

    def max_in_any_window(self, seconds: float = 1.0, endpoint: str | None = None) -> int:
        """The most logged requests whose arrivals fit in any half-open window of ``seconds``."""
        with self._lock:
            times = [r.arrival for r in self._log if endpoint is None or r.endpoint == endpoint]
        return max_in_window(times, seconds)

    def reset(self) -> None:
        with self._lock:
            self._log.clear()
            self.rate_limited_count = 0

    def note_arrival(self, who: str, arrival: float) -> int:
        """Record an arrival; return how many arrivals from ``who`` fall in the last second, this one
        included (rejected requests count too, as they do at NCBI)."""
        with self._lock:
            window = self._arrivals.setdefault(who, deque())
            while window and arrival - window[0] >= 1.0:
                window.popleft()
            window.append(arrival)
            return len(window)


class EUtils:
    """esearch and efetch on db=pubmed over a :class:`~.world.PubMedWorld`, behind NCBI's rate limit and
    the injected faults; the history server's WebEnvs live here."""

    def __init__(self, world: PubMedWorld, faults: FaultInjector, requests: RequestLog, lock: threading.RLock,
                 *, enforce_rate_limit: bool = True) -> None:
        self.world = world
        self.faults = faults
        self.requests = requests
        self.enforce_rate_limit = enforce_rate_limit
        self._lock = lock
        self._envs: dict[str, list[list[str]]] = {}

    def respond(self, req: Incoming) -> Reply:
        """Answer one request (called from handler threads, or in-process by the transport)."""
        endpoint = ENDPOINTS.get(req.path)
        api_key = req.params.get("api_key", "").strip()
        limit = 10 if api_key else 3
        who = api_key or req.client
        fault: str | None = None
        rate_limited = False
        with self._lock:
            count = self.requests.note_arrival(who, req.arrival)
            if endpoint is None:
                reply = Reply(404, HTML_TYPE, status_page(404))
            elif self.enforce_rate_limit and count > limit:
                # NCBI's front door answers before any backend sees the request.
                rate_limited = True
                reply = Reply(429, "application/json", rate_limit_body(who, count, limit), gzip_ok=False)
            else:
                plan = self.faults.next_fault(endpoint)
                fault = plan.kind if plan else None
                if plan is None:
                    reply = self._endpoint_reply(endpoint, req.params)
                else:
                    reply = self.faults.reply(plan, endpoint, Caller(who, count, limit),
                                              lambda: self._endpoint_reply(endpoint, req.params))
            reply.headers = [
                *NCBI_HEADERS,
                ("X-RateLimit-Limit", str(limit)),
                ("X-RateLimit-Remaining", str(max(0, limit - count))),
                *reply.headers,
            ]
            sent = reply.status if reply.mode not in ("timeout", "reset") else None
            self.requests.append(LoggedRequest(
                req.arrival, req.wall, req.method, endpoint or req.path, types.MappingProxyType(dict(req.params)),
                sent, fault, rate_limited, req.client,
            ))
        return reply

    def _endpoint_reply(self, endpoint: str, params: dict[str, str]) -> Reply:
        try:
            if endpoint == "esearch":
                return self._esearch(params)
            return self._efetch(params)
        except BadRequest as exc:
            text = f"eutils stand-in cannot answer this faithfully: {exc}\n"
            return Reply(400, "text/plain; charset=UTF-8", text.encode())

    # -- esearch ---------------------------------------------------------------------------------------

    def _esearch(self, params: dict[str, str]) -> Reply:
        db = params.get("db", "").strip()
        if db != "pubmed":
            return Reply(200, XML_TYPE, esearch_error_body(f"Invalid db name specified: {db}"))
        if params.get("retmode", "xml").lower() not in ("", "xml"):
            raise BadRequest(f"retmode={params['retmode']} (only XML is served)")
        term = params.get("term", "").strip()
        if not term:
            return Reply(200, XML_TYPE, esearch_error_body(EMPTY_TERM_MESSAGE))
        retstart = _int_param(params, "retstart", 0)
        retmax = _int_param(params, "retmax", 20)
        if retstart > PUBMED_SEARCH_CAP - 1:
            # Measured by several projects in 2026: HTTP 200 with only the ERROR in the envelope.
            return Reply(200, XML_TYPE, esearch_error_body(RETSTART_CAP_MESSAGE))
        window, translation_suffix = self._date_window(params)
        evaluated = self._evaluate(term)
        if isinstance(evaluated, Reply):
            return evaluated
        ids = self.world.search(term, window, evaluated.ids if evaluated else None)
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
            return Reply(200, XML_TYPE, esearch_count_body(len(ids)))
        degradation = self.world.degradation(term)
        errors = list(degradation.errors) if degradation else []
        if degradation:
            warnings = list(degradation.warnings) + warnings
        if evaluated is not None:
            errors = evaluated.errors + errors
            warnings = evaluated.warnings + warnings
        if not ids:
            warnings.append(("OutputMessage", NO_ITEMS_MESSAGE))
        base = evaluated.translation if evaluated is not None else self.world.translation(term, degradation)
        body = esearch_body(SearchPage(len(ids), retstart, page, query_key, webenv, base + translation_suffix,
                                       errors, warnings))
        return Reply(200, XML_TYPE, body)

    def _date_window(self, params: Mapping[str, str]) -> tuple[Window | None, str]:
        """(datetype, first, last) from mindate/maxdate or reldate, and the QueryTranslation suffix."""
        datetype = params.get("datetype", "").strip().lower() or "pdat"  # NCBI's default for PubMed
        if datetype not in DATETYPES:
            raise BadRequest(f"datetype={datetype!r}")
        field_name = DATE_FIELDS[datetype]
        mindate, maxdate = params.get("mindate", "").strip(), params.get("maxdate", "").strip()
        if mindate and maxdate:
            first, last = parse_entrez_date(mindate, end=False), parse_entrez_date(maxdate, end=True)
            if first is None or last is None:
                raise BadRequest(f"mindate={mindate!r} maxdate={maxdate!r} (use YYYY/MM/DD, YYYY/MM, YYYY)")
            return Window(datetype, first, last), f" AND {first:%Y/%m/%d}:{last:%Y/%m/%d}[{field_name}]"
        # Like NCBI, a lone mindate or maxdate is ignored.
        reldate = params.get("reldate", "").strip()
        if reldate:
            if not reldate.isdigit():
                raise BadRequest(f"reldate={reldate!r}")
            today = self.world.today
            first = today - dt.timedelta(days=int(reldate))
            # Guess: "last N days" runs from today-N through today, inclusive.
            label = {"edat": "EDat", "mdat": "MDat", "pdat": "PDat"}[datetype]
            return Window(datetype, first, today), f' AND "last {int(reldate)} days"[{label}]'
        return None, ""

    def _evaluate(self, term: str) -> Evaluated | Reply | None:
        """A term nobody registered, evaluated against the corpus when matching is on (None: not)."""
        try:
            return self.world.evaluate(term)
        except QuerySyntaxError as exc:
            # Guess: NCBI's wording for a query its parser rejects (old responses: "Can't run executor").
            return Reply(200, XML_TYPE, esearch_error_body(f"Syntax error in query: {exc}"))
        except Unsupported as exc:
            raise BadRequest(str(exc)) from None

    def _store_history(self, webenv: str, ids: list[str]) -> tuple[str, int]:
        """Append ``ids`` to ``webenv`` (a new environment when absent or unknown); return the key."""
        if webenv not in self._envs:
            # Guess: an unknown WebEnv on esearch starts a fresh environment rather than failing.
            webenv = "MCID_" + secrets.token_hex(12)
            self._envs[webenv] = []
        self._envs[webenv].append(list(ids))
        return webenv, len(self._envs[webenv])

    # -- efetch ----------------------------------------------------------------------------------------

    def _efetch(self, params: dict[str, str]) -> Reply:
        db = params.get("db", "").strip()
        if db != "pubmed":
            # Guess: efetch words a bad db like epost does (tests/data/errors/biopython_epost2.xml).
            return Reply(200, XML_TYPE, efetch_error_body(f"Invalid db name specified: {db}"))
        if params.get("retmode", "xml").lower() not in ("", "xml"):
            raise BadRequest(f"retmode={params['retmode']} (only XML is served)")
        if params.get("rettype", "").lower() not in ("", "xml", "full", "abstract"):
            raise BadRequest(f"rettype={params['rettype']} (only the PubmedArticleSet XML is served)")
        if "id" in params:
            ids = [p.strip() for p in re.split(r"[,\s]+", params["id"]) if p.strip().isdigit()]
        elif params.get("WebEnv", "").strip():
            found = self._history_ids(params)
            if isinstance(found, Reply):
                return found
            ids = found
        else:
            ids = []
        if not ids:
            return Reply(200, XML_TYPE, efetch_error_body(EMPTY_ID_MESSAGE))
        return Reply(200, XML_TYPE, self.world.article_set(ids))

    def _history_ids(self, params: Mapping[str, str]) -> list[str] | Reply:
        webenv = params.get("WebEnv", "").strip()
        query_key = params.get("query_key", "").strip()
        sets = self._envs.get(webenv)
        if sets is None or not query_key.isdigit() or not 1 <= int(query_key) <= len(sets):
            return Reply(200, XML_TYPE, efetch_error_body(f"Unable to obtain query #{query_key or 1}"))
        retstart = _int_param(params, "retstart", 0)
        # Guess: efetch's default page is 20 records, like esearch's; 10,000 is the documented maximum.
        retmax = min(_int_param(params, "retmax", 20), 10000)
        if retstart > PUBMED_SEARCH_CAP - 1:
            # Measured (2026-08, two projects): walking a PubMed history set past 9,998 is HTTP 400
            # with the esearch cap message. Guess: the body uses the efetch error envelope.
            return Reply(400, XML_TYPE, efetch_error_body(RETSTART_CAP_MESSAGE))
        # Measured: a page crossing the cap is clamped silently (retstart=9500&retmax=500 gives 499).
        end = min(retstart + retmax, PUBMED_SEARCH_CAP)
        return sets[int(query_key) - 1][retstart:end]


def _int_param(params: Mapping[str, str], name: str, default: int) -> int:
    raw = params.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit():
        raise BadRequest(f"{name}={raw!r} is not a non-negative integer")
    return int(raw)
