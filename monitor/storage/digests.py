"""The digest log: each digest built for sending (pending, sent or failed) with the papers and status
changes it carries, and the reads that decide what the next digest holds.

A paper or event is "delivered" once it belongs to a digest whose status is ``sent``; pending and failed
digests deliver nothing, so their papers come back in the next digest.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from ..types import DigestRecord, StatusChange, StoredPaper
from .base import StorageBase, utc, utc_or_none
from .papers import hydrate, notice_pmid, paper_columns
from .schema import digest_events, digest_papers, digests, paper_events, papers


def _sent_pmids(*, listed_only: bool = False) -> sa.Select[Any]:
    """PMIDs delivered in sent digests; ``listed_only``: as relevant papers (listed, or linked over the
    ``max_papers`` cap), not merely counted as not relevant."""
    q = (sa.select(digest_papers.c.pmid)
         .select_from(digest_papers.join(digests, digests.c.id == digest_papers.c.digest_id))
         .where(digests.c.status == "sent"))
    return q.where(digest_papers.c.section != "not_relevant") if listed_only else q


def _record(r: Any) -> DigestRecord:
    return DigestRecord(
        id=r.id, created_at=utc(r.created_at), period_start=utc(r.period_start), period_end=utc(r.period_end),
        status=r.status, subject=r.subject, recipients=tuple(json.loads(r.recipients)), message_id=r.message_id,
        finished_at=utc_or_none(r.finished_at), error=r.error, papers=int(r.n), message=r.message)


class DigestsMixin(StorageBase):
    """The digest log and what is still to be delivered."""

    def last_sent_digest(self) -> DigestRecord | None:
        """The most recent digest that was sent (by the end of the period it covered)."""
        log = self.digest_log(1, status="sent")
        return log[0] if log else None

    def digest_log(self, limit: int = 10, *, status: str | None = None) -> list[DigestRecord]:
        """Newest first."""
        with self._tx("reading the digest log") as conn:
            counts = (sa.select(digest_papers.c.digest_id, sa.func.count().label("n"))
                      .group_by(digest_papers.c.digest_id).subquery())
            q = (sa.select(digests, sa.func.coalesce(counts.c.n, 0).label("n"))
                 .select_from(digests.outerjoin(counts, counts.c.digest_id == digests.c.id))
                 .order_by(digests.c.period_end.desc(), digests.c.id.desc()).limit(limit))
            if status is not None:
                q = q.where(digests.c.status == status)
            rows = conn.execute(q).all()
        return [_record(r) for r in rows]

    def pending_digests(self) -> list[DigestRecord]:
        """Digests logged as about to be sent whose send never finished (a crash, a kill), oldest first."""
        return sorted(self.digest_log(100, status="pending"), key=lambda d: d.id)

    def papers_first_found(self, since: dt.datetime, until: dt.datetime, *,
                           undelivered_only: bool = True) -> list[StoredPaper]:
        """Stored (not withdrawn) papers first found in ``[since, until]``, in PMID order; by default
        without those already delivered in a sent digest."""
        with self._tx("reading new papers") as conn:
            q = (paper_columns()
                 .where(papers.c.first_seen_at >= utc(since), papers.c.first_seen_at <= utc(until),
                        papers.c.deleted.is_(False))
                 .order_by(papers.c.pmid))
            if undelivered_only:
                q = q.where(papers.c.pmid.not_in(_sent_pmids()))
            return hydrate(conn, conn.execute(q).all())

    def status_events_of_delivered(self, since: dt.datetime, until: dt.datetime, kinds: Iterable[str], *,
                                   undelivered_only: bool = True) -> list[StatusChange]:
        """Events of ``kinds`` in ``[since, until]`` on papers already delivered as relevant (listed or
        linked over the cap) in a sent digest, oldest first; by default without events already delivered
        themselves."""
        with self._tx("reading status changes") as conn:
            q = (sa.select(paper_events, papers.c.title, papers.c.doi)
                 .select_from(paper_events.join(papers, papers.c.pmid == paper_events.c.pmid))
                 .where(paper_events.c.kind.in_(list(kinds)), paper_events.c.at >= utc(since),
                        paper_events.c.at <= utc(until),
                        paper_events.c.pmid.in_(_sent_pmids(listed_only=True)))
                 .order_by(paper_events.c.at, paper_events.c.id))
            if undelivered_only:
                sent_events = (sa.select(digest_events.c.event_id)
                               .select_from(digest_events.join(digests, digests.c.id == digest_events.c.digest_id))
                               .where(digests.c.status == "sent"))
                q = q.where(paper_events.c.id.not_in(sent_events))
            rows = conn.execute(q).all()
        return [StatusChange(pmid=str(r.pmid), kind=r.kind, at=utc(r.at), notice_pmid=notice_pmid(r.detail),
                             id=r.id, title=r.title, doi=r.doi) for r in rows]

    def begin_digest(self, *, created_at: dt.datetime, period: tuple[dt.datetime, dt.datetime], subject: str,
                     recipients: Sequence[str], message_id: str | None, papers_by_section: dict[str, str],
                     event_ids: Iterable[int], message: bytes | None = None) -> int:
        """Log a digest about to be sent (status ``pending``) with the papers (pmid → section) and events it
        carries and the message itself, in one transaction; :meth:`finish_digest` records the outcome."""
        with self._tx("logging a digest") as conn:
            digest_id = int(conn.execute(digests.insert().values(
                created_at=created_at, period_start=period[0], period_end=period[1], status="pending",
                subject=subject, recipients=json.dumps(list(recipients)), message_id=message_id, message=message,
            ).returning(digests.c.id)).scalar_one())
            rows = [{"digest_id": digest_id, "pmid": int(p), "section": sec} for p, sec in papers_by_section.items()]
            if rows:
                conn.execute(digest_papers.insert(), rows)
            events = [{"digest_id": digest_id, "event_id": int(e)} for e in dict.fromkeys(event_ids)]
            if events:
                conn.execute(digest_events.insert(), events)
        return digest_id

    def finish_digest(self, digest_id: int, status: str, at: dt.datetime, error: str | None = None) -> None:
        """``sent`` or ``failed``."""
        with self._tx("recording a digest's outcome") as conn:
            conn.execute(digests.update().where(digests.c.id == digest_id)
                         .values(status=status, finished_at=at, error=error))
