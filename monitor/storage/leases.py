"""Leases and schedule state: the database lease rows that keep one cycle (and one digest) at a time across
processes and hosts, and each scheduled job's last fire, which lets a restarted daemon catch up.

Each lease operation is one conditional statement in one transaction. On SQLite the statement takes the
database write lock, so two processes' attempts are serialised; on PostgreSQL the upsert's row lock does
the same. Times are compared in SQL, so every process must pass the same kind of clock.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from ..types import JobState, LeaseRow
from .base import StorageBase, utc, utc_or_none
from .schema import locks, schedule_state


def _lease_row(r: Any) -> LeaseRow:
    return LeaseRow(r.name, r.holder, r.host, r.pid, r.purpose, utc(r.acquired_at), utc(r.heartbeat_at),
                    utc(r.expires_at), utc_or_none(r.released_at))


class LeasesMixin(StorageBase):
    """Lease rows and the schedule state."""

    def try_acquire_lease(self, name: str, *, holder: str, host: str, pid: int, purpose: str,
                          now: dt.datetime, expires_at: dt.datetime) -> LeaseRow:
        """Take the lease if it is free, expired or already ours; return whoever holds it afterwards
        (``row.holder == holder`` means we do)."""
        values = {"name": name, "holder": holder, "host": host, "pid": pid, "purpose": purpose,
                  "acquired_at": utc(now), "heartbeat_at": utc(now), "expires_at": utc(expires_at),
                  "released_at": None}
        stmt = self._upsert(locks).values(**values)
        taken = locks.c.expires_at <= utc(now)
        mine = locks.c.holder == holder
        stmt = stmt.on_conflict_do_update(
            index_elements=[locks.c.name],
            set_={k: stmt.excluded[k] for k in values if k != "name"} | {
                # Re-acquiring our own lease keeps the original acquired_at.
                "acquired_at": sa.case((mine, locks.c.acquired_at), else_=stmt.excluded.acquired_at)},
            where=sa.or_(taken, mine),
        )
        with self._tx("taking the lease") as conn:
            conn.execute(stmt)
            row = conn.execute(sa.select(locks).where(locks.c.name == name)).one()
        return _lease_row(row)

    def renew_lease(self, name: str, holder: str, now: dt.datetime, expires_at: dt.datetime) -> bool:
        """Extend our lease; False if it is no longer ours (it expired and another process took it)."""
        with self._tx("renewing the lease") as conn:
            done = conn.execute(locks.update().where(locks.c.name == name, locks.c.holder == holder)
                                .values(heartbeat_at=utc(now), expires_at=utc(expires_at)))
            return done.rowcount == 1

    def release_lease(self, name: str, holder: str, now: dt.datetime) -> bool:
        """Give the lease up (only if it is still ours); True if it was. The row stays, expired at ``now``
        and marked released, so the next holder knows when this one stopped (see :mod:`monitor.lease`)."""
        with self._tx("releasing the lease") as conn:
            done = conn.execute(locks.update().where(locks.c.name == name, locks.c.holder == holder)
                                .values(expires_at=utc(now), released_at=utc(now)))
            return done.rowcount == 1

    def take_over_lease(self, name: str, dead_holder: str, *, holder: str, host: str, pid: int, purpose: str,
                        now: dt.datetime, expires_at: dt.datetime) -> bool:
        """Take the lease from ``dead_holder`` (a process known to be gone) if it still has it; True if we
        now hold it."""
        with self._tx("taking over the lease") as conn:
            done = conn.execute(locks.update().where(locks.c.name == name, locks.c.holder == dead_holder)
                                .values(holder=holder, host=host, pid=pid, purpose=purpose, acquired_at=utc(now),
                                        heartbeat_at=utc(now), expires_at=utc(expires_at), released_at=None))
            return done.rowcount == 1

    def lease(self, name: str) -> LeaseRow | None:
        """The lease row as stored (it may have expired: compare ``expires_at`` with now)."""
        with self._tx("reading the lease") as conn:
            row = conn.execute(sa.select(locks).where(locks.c.name == name)).first()
        return _lease_row(row) if row is not None else None

    def record_fire(self, job: str, at: dt.datetime) -> None:
        """A scheduled job fired (or the daemon set its baseline) at ``at``."""
        values = {"job": job, "last_fire_at": utc(at), "last_finished_at": None, "outcome": "running",
                  "message": None}
        stmt = self._upsert(schedule_state).values(**values)
        stmt = stmt.on_conflict_do_update(index_elements=[schedule_state.c.job],
                                          set_={k: stmt.excluded[k] for k in values if k != "job"})
        with self._tx("recording a scheduled fire") as conn:
            conn.execute(stmt)

    def record_job_outcome(self, job: str, at: dt.datetime, outcome: str, message: str | None = None) -> None:
        with self._tx("recording a job's outcome") as conn:
            conn.execute(schedule_state.update().where(schedule_state.c.job == job)
                         .values(last_finished_at=utc(at), outcome=outcome, message=message))

    def job_states(self) -> dict[str, JobState]:
        with self._tx("reading the schedule state") as conn:
            rows = conn.execute(sa.select(schedule_state)).all()
        return {r.job: JobState(r.job, utc(r.last_fire_at), utc_or_none(r.last_finished_at), r.outcome, r.message)
                for r in rows}
