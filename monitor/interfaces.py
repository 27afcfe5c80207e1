"""What each consumer needs of the database, as narrow protocols.

:class:`monitor.storage.Storage` satisfies every one of them (mypy checks it where :mod:`monitor.app`
hands its store over, ``tests/test_interfaces.py`` at run time); a consumer names the smallest one that
covers its calls, so a test can hand it an in-memory store or a fake, and a reader of the consumer sees at
a glance what it touches. Only :mod:`monitor.app` knows the concrete class.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from .types import (
    DigestRecord,
    DocumentMeta,
    EvidenceMap,
    Facets,
    FeedRow,
    JobState,
    LeaseRow,
    PaperDetail,
    PaperFilter,
    ParsedItem,
    QueryReport,
    QueryState,
    RunSummary,
    SearchHit,
    StatusChange,
    StoredDocument,
    StoredPaper,
    StoreOutcome,
    TagChanges,
    Tagger,
    TextNode,
    TrendCounts,
)

if TYPE_CHECKING:
    from .storage.papers import PreparedBatch


@runtime_checkable
class RunLog(Protocol):
    """Opening and closing entries of the run log."""

    def start_run(self, at: dt.datetime) -> int: ...

    def record_query(self, run_id: int, report: QueryReport) -> None: ...

    def finish_run(self, run_id: int, at: dt.datetime, status: str, message: str | None = None) -> None: ...

    def close_dead_runs(self, at: dt.datetime, message: str) -> list[int]: ...


@runtime_checkable
class CycleStore(RunLog, Protocol):
    """What a monitoring cycle reads and writes: watermarks, known PMIDs, batches, links."""

    def query_state(self, name: str) -> QueryState | None: ...

    def set_watermark(self, name: str, term: str, at: dt.datetime, window: tuple[dt.date, dt.date],
                      run_id: int | None) -> None: ...

    def known_pmids(self, pmids: Iterable[str]) -> set[str]: ...

    def link(self, pmids: Iterable[str], query: str, now: dt.datetime, run_id: int | None = None) -> int: ...

    def prepare_batch(self, items: Sequence[ParsedItem], *, tagger: Tagger | None = None) -> PreparedBatch: ...

    def store_prepared(self, batch: PreparedBatch, *, query: str | None, now: dt.datetime,
                       run_id: int | None = None) -> StoreOutcome: ...

    @property
    def threads_share_data(self) -> bool: ...


@runtime_checkable
class WorkbenchStore(Protocol):
    """What `monitor queries preview` compares a term against (:mod:`monitor.workbench`)."""

    def query_state(self, name: str) -> QueryState | None: ...

    def linked_pmids(self, query: str) -> list[str]: ...

    def known_pmids(self, pmids: Iterable[str]) -> set[str]: ...


@runtime_checkable
class LeaseStore(Protocol):
    """Lease rows (:mod:`monitor.lease`)."""

    def try_acquire_lease(self, name: str, *, holder: str, host: str, pid: int, purpose: str,
                          now: dt.datetime, expires_at: dt.datetime) -> LeaseRow: ...

    def renew_lease(self, name: str, holder: str, now: dt.datetime, expires_at: dt.datetime) -> bool: ...

    def release_lease(self, name: str, holder: str, now: dt.datetime) -> bool: ...

    def take_over_lease(self, name: str, dead_holder: str, *, holder: str, host: str, pid: int, purpose: str,
                        now: dt.datetime, expires_at: dt.datetime) -> bool: ...

    def lease(self, name: str) -> LeaseRow | None: ...


@runtime_checkable
class ScheduleStore(Protocol):
    """What the daemon keeps across restarts (:mod:`monitor.scheduler`)."""

    def job_states(self) -> dict[str, JobState]: ...

    def last_run_started(self) -> dt.datetime | None: ...

    def record_fire(self, job: str, at: dt.datetime) -> None: ...

    def record_job_outcome(self, job: str, at: dt.datetime, outcome: str, message: str | None = None) -> None: ...

    def finish_run(self, run_id: int, at: dt.datetime, status: str, message: str | None = None) -> None: ...

    def recent_runs(self, limit: int = 10) -> list[RunSummary]: ...


@runtime_checkable
class DigestStore(Protocol):
    """What the weekly digest reads and logs (:mod:`monitor.digest`)."""

    def papers_first_found(self, since: dt.datetime, until: dt.datetime, *,
                           undelivered_only: bool = True) -> list[StoredPaper]: ...

    def status_events_of_delivered(self, since: dt.datetime, until: dt.datetime, kinds: Iterable[str], *,
                                   undelivered_only: bool = True) -> list[StatusChange]: ...

    def runs_between(self, since: dt.datetime, until: dt.datetime) -> list[RunSummary]: ...

    def last_sent_digest(self) -> DigestRecord | None: ...

    def pending_digests(self) -> list[DigestRecord]: ...

    def digest_log(self, limit: int = 10, *, status: str | None = None) -> list[DigestRecord]: ...

    def begin_digest(self, *, created_at: dt.datetime, period: tuple[dt.datetime, dt.datetime], subject: str,
                     recipients: Sequence[str], message_id: str | None, papers_by_section: dict[str, str],
                     event_ids: Iterable[int], message: bytes | None = None) -> int: ...

    def finish_digest(self, digest_id: int, status: str, at: dt.datetime, error: str | None = None) -> None: ...


@runtime_checkable
class FeedStore(Protocol):
    """What the feeds plan and render from (:mod:`monitor.feeds`)."""

    def feed_rows(self, min_relevance: float = 0.5) -> list[FeedRow]: ...

    def status_changes(self, kinds: Sequence[str] = ...) -> list[StatusChange]: ...

    def feed_records(self, pmids: Iterable[str]) -> dict[str, str | bytes]: ...

    def reopened(self) -> FeedStore | None: ...


@runtime_checkable
class DocumentReader(Protocol):
    """Published documents, as `monitor serve` reads them from a shared database (:mod:`monitor.web.feedfiles`)."""

    def document_metas(self) -> dict[str, DocumentMeta]: ...

    def document_meta(self, path: str) -> DocumentMeta | None: ...

    def document(self, path: str) -> StoredDocument | None: ...


@runtime_checkable
class DocumentStore(Protocol):
    """Keeping published documents in the database (:mod:`monitor.docsync`)."""

    def document_metas(self) -> dict[str, DocumentMeta]: ...

    def save_documents(self, documents: Sequence[StoredDocument], remove: Sequence[str] = ...) -> None: ...


@runtime_checkable
class PaperReader(Protocol):
    """Reading stored papers: search, filtered listings and exports (:mod:`monitor.search`, exports)."""

    def search(self, text: TextNode | None, filters: PaperFilter, *, sort: str = "relevance",
               limit: int | None = 20, offset: int = 0) -> list[SearchHit]: ...

    def iter_papers(self, *, include_deleted: bool = True, relevant_only: bool = False, batch: int = 1000,
                    filters: PaperFilter | None = None) -> Iterator[StoredPaper]: ...

    def linked_query_names(self) -> set[str]: ...

    def count_papers(self, *, include_deleted: bool = False) -> int: ...


@runtime_checkable
class TagStore(Protocol):
    """Retagging (:meth:`monitor.app.App.retag`)."""

    def retag(self, tagger: Tagger, *, batch: int = 2000,
              progress: Callable[[int], None] | None = None) -> TagChanges: ...

    def taxonomy_versions(self) -> dict[str | None, int]: ...

    def count_papers(self, *, include_deleted: bool = False) -> int: ...


@runtime_checkable
class BrowseStore(PaperReader, Protocol):
    """What the web app reads (:mod:`monitor.web`): search and its counts, a paper's page, the newest
    papers, the evidence map and monthly trends."""

    def paper_detail(self, pmid: str) -> PaperDetail | None: ...

    def recent_papers(self, filters: PaperFilter, *, limit: int, offset: int = 0) -> list[StoredPaper]: ...

    def count_matching(self, text: TextNode | None, filters: PaperFilter) -> int: ...

    def facets(self, text: TextNode | None, filters: PaperFilter) -> Facets: ...

    def evidence_map(self, filters: PaperFilter) -> EvidenceMap: ...

    def trend_counts(self, kind: str, filters: PaperFilter) -> TrendCounts: ...

    def data_version(self) -> int | None: ...
