"""The :class:`StandIn`: one object that tests, ``monitor demo`` and ``python -m monitor.standin`` drive. It
composes the scriptable PubMed (:mod:`.world`), fault injection (:mod:`.faults`), the request handling and its
log (:mod:`.eutils`) and the two carriers (:mod:`.server`: a loopback HTTP server, an in-process httpx
transport), and gives them one lock and one public surface.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import ClassVar

import httpx

from .corpus import DEFAULT_CORPUS, RecordDates, load_corpus
from .eutils import EUtils, Incoming, LoggedRequest, RequestLog
from .faults import FaultInjector
from .matcher import Matcher
from .ncbi import XML_TYPE, Reply
from .server import LoopbackServer, in_process_transport
from .world import PubMedWorld


class StandIn:
    """A stand-in for NCBI E-utilities (esearch + efetch on db=pubmed) with a scriptable PubMed behind it.

    It answers the way NCBI does: record XML copied from real PubMed files (``corpus_dir``: a folder of
    efetch/MEDLINE files or one file; default :attr:`default_corpus`, the bundled gut–skin sample), envelopes
    in NCBI's byte format, NCBI's headers, gzip, its 3 (or 10 with an ``api_key``) requests-per-second limit
    with the 429 JSON body, and the 9,999-record ESearch cap.

    Tests say which PMIDs a term matches (:meth:`set_query`), or, with ``match_terms=True``, let the stand-in
    evaluate PubMed syntax itself against the records' titles, abstracts, keywords and MeSH
    (:mod:`monitor.standin.matcher`). Its phrase index can be told which phrases it does not know
    (:meth:`set_phrase_index`); it then answers as NCBI does (GUIDE §6). Tests change the world between runs
    with builder methods (dates, hide/publish, revise, delete, degrade) and script failures (:meth:`inject`,
    :meth:`fault_rate`). Every request is logged (:attr:`log`).

    Served on loopback between :meth:`start` and :meth:`stop` (or as a context manager), and in-process as an
    httpx transport (:meth:`transport`, with ``base_url`` :data:`~.ncbi.IN_PROCESS_URL`).
    """

    default_corpus: ClassVar[Path] = DEFAULT_CORPUS

    def __init__(self, corpus_dir: Path | str | None = None, today: dt.date | None = None, *,
                 enforce_rate_limit: bool = True, hang_seconds: float = 5.0, host: str = "127.0.0.1",
                 port: int = 0, match_terms: bool = False) -> None:
        lock = threading.RLock()
        corpus = load_corpus(Path(corpus_dir or self.default_corpus).resolve())
        self.world = PubMedWorld(corpus, today or dt.date.today(), lock, match_terms=match_terms)
        self.faults = FaultInjector(lock, hang_seconds)
        self.requests = RequestLog(lock)
        self.eutils = EUtils(self.world, self.faults, self.requests, lock, enforce_rate_limit=enforce_rate_limit)
        self._server = LoopbackServer(self._respond, host, port)

    # -- settings tests change -------------------------------------------------------------------------

    @property
    def today(self) -> dt.date:
        """The day PubMed thinks it is (reldate windows, the mdat of a revision)."""
        return self.world.today

    @today.setter
    def today(self, value: dt.date) -> None:
        self.world.today = value

    @property
    def match_terms(self) -> bool:
        return self.world.match_terms

    @match_terms.setter
    def match_terms(self, value: bool) -> None:
        self.world.match_terms = value

    @property
    def enforce_rate_limit(self) -> bool:
        return self.eutils.enforce_rate_limit

    @enforce_rate_limit.setter
    def enforce_rate_limit(self, value: bool) -> None:
        self.eutils.enforce_rate_limit = value

    @property
    def hang_seconds(self) -> float:
        return self.faults.hang_seconds

    @hang_seconds.setter
    def hang_seconds(self, value: float) -> None:
        self.faults.hang_seconds = value

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> StandIn:
        """Bind (port 0: the OS picks) and serve from a daemon thread."""
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop promptly, even with connections held open by a "timeout" fault or a keep-alive pool."""
        self._server.stop()

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def base_url(self) -> str:
        return f"http://{self._server.host}:{self.port}/entrez/eutils"

    def transport(self, monotonic: Callable[[], float] = time.monotonic) -> httpx.MockTransport:
        """The same request handling in-process, as an httpx transport (no socket, no thread): what a client
        built with it sends is answered as it would be over loopback. ``monotonic`` times arrivals for the
        rate limit, so a test can run the client and the stand-in on one virtual clock and never wait.
        Faults become what httpx raises for them on a real socket: a hang is a read timeout (at once), a
        reset a read error, a short read a protocol error; truncated bodies and error bodies are as sent.
        Use it with ``base_url`` :data:`~.ncbi.IN_PROCESS_URL`."""
        return in_process_transport(self._respond, monotonic)

    def _respond(self, req: Incoming) -> Reply:
        return self.eutils.respond(req)

    # -- the world (see PubMedWorld) ------------------------------------------------------------------

    def pmids(self) -> list[str]:
        """Every PMID the stand-in knows (corpus and synthetic, hidden and deleted too), ascending."""
        return self.world.pmids()

    def record_xml(self, pmid: str) -> bytes:
        """The record bytes efetch serves for ``pmid`` (the current revision)."""
        return self.world.record_xml(pmid)

    def dates(self, pmid: str) -> RecordDates:
        return self.world.dates(pmid)

    def matcher(self) -> Matcher:
        """The PubMed-like matcher over every record (hidden and deleted ones too: the search filters them)."""
        return self.world.matcher()

    def set_query(self, term: str, pmids: Iterable[str | int], translation: str | None = None) -> None:
        """Make ``term`` match exactly ``pmids``; ``translation`` is the QueryTranslation to report."""
        self.world.set_query(term, pmids, translation)

    def set_phrase_index(self, unknown: Iterable[str] = (), wildcard_cap: int = 600) -> None:
        """Phrases PubMed's phrase index does not know, and the truncation variant cap (matched terms only)."""
        self.world.set_phrase_index(unknown, wildcard_cap)

    def set_dates(self, pmid: str | int, edat: dt.date | str | None = None, mdat: dt.date | str | None = None,
                  pdat: dt.date | str | None = None) -> None:
        """Override some of a record's search dates (the XML is left alone)."""
        self.world.set_dates(pmid, edat, mdat, pdat)

    def hide(self, pmids: Iterable[str | int]) -> None:
        """Records not yet in PubMed: invisible to esearch and efetch until :meth:`publish`."""
        self.world.hide(pmids)

    def publish(self, pmids: Iterable[str | int]) -> None:
        self.world.publish(pmids)

    def revise(self, pmid: str | int, xml_bytes: bytes, mdat: dt.date | str | None = None) -> None:
        """Replace a record's XML and set its mdat (default: ``today``)."""
        self.world.revise(pmid, xml_bytes, mdat)

    def delete(self, pmid: str | int) -> None:
        """NLM withdrew the record: search stops finding it, efetch answers with a DeleteCitation."""
        self.world.delete(pmid)

    def degrade(self, term: str, errors: Sequence[tuple[str, str]] = (("PhraseNotFound", "x"),),
                warnings: Sequence[tuple[str, str]] = (("PhraseIgnored", "y"),),
                translation: str | None = None) -> None:
        """Make esearch for ``term`` carry ErrorList/WarningList entries, as PubMed does when it drops a phrase."""
        self.world.degrade(term, errors, warnings, translation)

    def add_synthetic(self, n: int, start_pmid: int, template_pmid: str | int,
                      edat_range: tuple[dt.date | str, dt.date | str], term: str | None = None) -> list[str]:
        """Register ``n`` copies of a real record under new PMIDs, dated over ``edat_range``."""
        return self.world.add_synthetic(n, start_pmid, template_pmid, edat_range, term)

    # -- faults (see FaultInjector) -------------------------------------------------------------------

    def inject(self, kind: str, count: int = 1, endpoint: str | None = None, *, retry_after: int | None = None,
               hang_seconds: float | None = None, message: str | None = None, body: bytes | None = None,
               headers: Sequence[tuple[str, str]] = (), content_type: str = XML_TYPE,
               trickle_seconds: float = 0.0) -> None:
        """Answer the next ``count`` requests (to ``endpoint``, or any) with fault ``kind`` (see
        :meth:`~.faults.FaultInjector.inject`; "body" sends exactly ``body``, possibly trickled)."""
        self.faults.inject(kind, count, endpoint, retry_after=retry_after, hang_seconds=hang_seconds,
                           message=message, body=body, headers=headers, content_type=content_type,
                           trickle_seconds=trickle_seconds)

    def fault_rate(self, p: float, kinds: Sequence[str], seed: int, endpoint: str | None = None) -> None:
        """Each later request fails with probability ``p`` (seeded), the kind drawn from ``kinds``."""
        self.faults.fault_rate(p, kinds, seed, endpoint)

    def clear_faults(self) -> None:
        self.faults.clear()

    # -- the request log (see RequestLog) -------------------------------------------------------------

    @property
    def log(self) -> list[LoggedRequest]:
        return self.requests.entries

    @property
    def rate_limited_count(self) -> int:
        """429s sent because the client really exceeded NCBI's limit."""
        return self.requests.rate_limited_count

    def requests_for(self, endpoint: str) -> list[LoggedRequest]:
        return self.requests.requests_for(endpoint)

    def max_in_any_window(self, seconds: float = 1.0, endpoint: str | None = None) -> int:
        """The most logged requests whose arrivals fit in any half-open window of ``seconds``."""
        return self.requests.max_in_any_window(seconds, endpoint)

    def reset_log(self) -> None:
        self.requests.reset()
