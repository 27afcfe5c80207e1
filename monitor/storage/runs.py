"""Runs and watermarks: each query's watermark (term, window, last success) and the run log (each run and
its per-query outcomes), which `monitor status`, the digest's coverage notes and the daemon read.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..types import QueryReport, QueryState, RunSummary
from .base import StorageBase, chunks, utc, utc_or_none
from .schema import query_state, run_queries, runs


def _state(r: Any) -> QueryState:
    return QueryState(r.name, r.term, utc(r.last_success_at), r.window_start, r.window_end)


def _summaries(conn: Connection, rows: Sequence[Any]) -> list[RunSummary]:
    """Run-log rows with their per-query outcomes, in the order given."""
    by_run: dict[int, list[QueryReport]] = {}
    for chunk in chunks([r.id for r in rows]):
        for d in conn.execute(sa.select(run_queries).where(run_queries.c.run_id.in_(chunk))
                              .order_by(run_queries.c.query_name)):
            window = (d.window_start, d.window_end) if d.window_start and d.window_end else None
            by_run.setdefault(d.run_id, []).append(QueryReport(
                name=d.query_name, status=d.status, window=window, found=d.found, new=d.new,
                updated=d.updated, deleted=d.deleted, skipped=d.skipped, message=d.message, seconds=d.seconds))
    return [RunSummary(r.id, utc(r.started_at), utc_or_none(r.finished_at), r.status, tuple(by_run.get(r.id, ())))
            for r in rows]


class RunsMixin(StorageBase):
    """Watermarks and the run log."""

    def query_state(self, name: str) -> QueryState | None:
        with self._tx("reading the watermark") as conn:
            r = conn.execute(sa.select(query_state).where(query_state.c.name == name)).first()
        return _state(r) if r is not None else None

    def all_query_states(self) -> list[QueryState]:
        with self._tx("reading watermarks") as conn:
            rows = conn.execute(sa.select(query_state).order_by(query_state.c.name)).all()
        return [_state(r) for r in rows]

    def set_watermark(self, name: str, term: str, at: dt.datetime, window: tuple[dt.date, dt.date],
                      run_id: int | None) -> None:
        values = {"term": term, "last_success_at": at, "window_start": window[0], "window_end": window[1],
                  "run_id": run_id}
        with self._tx("saving the watermark") as conn:
            done = conn.execute(query_state.update().where(query_state.c.name == name).values(**values))
            if done.rowcount == 0:
                conn.execute(query_state.insert().values(name=name, **values))

    def start_run(self, at: dt.datetime) -> int:
        with self._tx("starting a run") as conn:
            return int(conn.execute(runs.insert().values(started_at=at, status="running")
                                    .returning(runs.c.id)).scalar_one())

    def record_query(self, run_id: int, report: QueryReport) -> None:
        values = {
            "status": report.status, "found": report.found, "new": report.new, "updated": report.updated,
            "deleted": report.deleted, "skipped": report.skipped, "seconds": report.seconds,
            "message": report.message,
            "window_start": report.window[0] if report.window else None,
            "window_end": report.window[1] if report.window else None,
        }
        with self._tx("logging a query run") as conn:
            conn.execute(run_queries.insert().values(run_id=run_id, query_name=report.name, **values))

    def finish_run(self, run_id: int, at: dt.datetime, status: str, message: str | None = None) -> None:
        with self._tx("finishing a run") as conn:
            conn.execute(runs.update().where(runs.c.id == run_id)
                         .values(finished_at=at, status=status, message=message))

    def recent_runs(self, limit: int = 10) -> list[RunSummary]:
        """The last ``limit`` runs, newest first."""
        with self._tx("reading the run log") as conn:
            rows = conn.execute(sa.select(runs).order_by(runs.c.id.desc()).limit(limit)).all()
            return _summaries(conn, rows)

    def runs_between(self, since: dt.datetime, until: dt.datetime) -> list[RunSummary]:
        """Runs started in ``[since, until]``, oldest first, with their per-query outcomes."""
        with self._tx("reading the run log") as conn:
            rows = conn.execute(sa.select(runs).where(runs.c.started_at >= utc(since),
                                                      runs.c.started_at <= utc(until))
                                .order_by(runs.c.id)).all()
            return _summaries(conn, rows)

    def close_dead_runs(self, at: dt.datetime, message: str) -> list[int]:
        """Mark runs still ``running`` as ``abandoned``. Only called by the holder of the cycle lease: every
        cycle runs under it, so a run that is still ``running`` then belongs to a process that died."""
        with self._tx("closing abandoned runs") as conn:
            return sorted(conn.execute(runs.update().where(runs.c.status == "running")
                                       .values(status="abandoned", finished_at=utc(at), message=message)
                                       .returning(runs.c.id)).scalars())

    def last_run_started(self) -> dt.datetime | None:
        """When the most recent run (scheduled or manual) started, if any."""
        with self._tx("reading the run log") as conn:
            value = conn.execute(sa.select(sa.func.max(runs.c.started_at))).scalar()
        if isinstance(value, str):  # SQLite's max() over a DATETIME column returns the stored text
            value = dt.datetime.fromisoformat(value)
        return utc(value) if value is not None else None
