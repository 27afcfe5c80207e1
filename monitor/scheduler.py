"""The daemon behind `monitor start`: APScheduler 3.x wiring, catch-up, leases, signals and log lines.

What it owns (the job bodies are :mod:`monitor.app`'s):
- a ``BlockingScheduler`` with two jobs, the monitoring cycle (``[schedule] cycle`` cron or ``every``) and,
  if ``[digest]`` is configured, the weekly digest; ``coalesce``, ``max_instances=1`` and a generous
  ``misfire_grace_time``, so a late wake-up runs a job once;
- catch-up: each job's last fire is stored (``schedule_state``), and a fire that passed while no daemon was
  running runs once on start-up (APScheduler's memory job store forgets everything on restart);
- exclusion: every cycle holds the cycle lease (:mod:`monitor.lease`); a fire while another process holds
  it is skipped and logged, never run alongside;
- shutdown: SIGTERM/SIGINT stop the scheduler, ask the running cycle to stop before its next batch (retry
  waits are cut short too), release the lease and exit 0. If the job is still in network I/O after
  ``stop_seconds``, the daemon closes the run log entry, releases the lease and exits anyway: a batch is
  stored in one transaction, so nothing half-stored can remain;
- log lines: one per line on stderr, ``key=value`` (logfmt), e.g.
  ``ts=2026-11-22T03:30:04Z level=info event=query run=12 query=gut-skin-axis status=ok new=3 …``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobEvent, JobExecutionEvent
from apscheduler.schedulers.blocking import BlockingScheduler

from .clock import Clock
from .config import Config
from .cycle import Cycle, summarize
from .errors import LeaseBusy, MonitorError, Stopped
from .interfaces import ScheduleStore
from .lease import Lease
from .schedule import Trigger, missed_fire, next_fire_times, parse_timezone, trigger_for
from .types import QueryReport

if TYPE_CHECKING:
    from .app import CycleResult

log = logging.getLogger("monitor.daemon")

CYCLE_JOB = "cycle"
DIGEST_JOB = "digest"
RETRY_JOB = "cycle-retry"  # a one-off look after a fire skipped under another process's lease
RETRY_MARGIN_SECONDS = 5.0
MAX_RETRY_SECONDS = 600.0


# ------------------------------------------------------------------ log lines


def logfmt(**fields: Any) -> str:
    """``key=value`` pairs; values with spaces, quotes or ``=`` are double-quoted."""
    parts = []
    for key, value in fields.items():
        if value is None:
            continue
        if isinstance(value, float):
            text = f"{value:.3f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))
        elif isinstance(value, dt.datetime):
            text = value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        else:
            text = str(value)
        if text == "" or any(c in text for c in ' "=\n\t'):
            text = '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
        parts.append(f"{key}={text}")
    return " ".join(parts)


class LogfmtFormatter(logging.Formatter):
    """Every record as one logfmt line: our events carry their fields; other loggers' messages (the
    E-utilities client's retries, APScheduler's warnings) become ``msg="…"``."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock

    def format(self, record: logging.LogRecord) -> str:
        head = logfmt(ts=self.clock.now(), level=record.levelname.lower())
        fields = getattr(record, "fields", None)
        if fields is not None:
            return f"{head} {logfmt(**fields)}"
        return f"{head} {logfmt(logger=record.name, msg=record.getMessage())}"


def event(name: str, level: int = logging.INFO, **fields: Any) -> None:
    log.log(level, "%s %s", name, fields, extra={"fields": {"event": name, **fields}})


def configure_logging(clock: Clock, verbose: int = 0) -> None:
    """Daemon logging: logfmt on stderr, our events at INFO; the cycle's own per-query line is replaced by
    ours (it lacks the run id), APScheduler's chatter stays at WARNING."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter(clock))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose >= 2 else logging.INFO)
    logging.getLogger("monitor.cycle").setLevel(logging.WARNING)
    # APScheduler's own lines are replaced by our events (fire_skipped, fire_missed); errors still show.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.DEBUG if verbose >= 2 else logging.WARNING)


# ------------------------------------------------------------------ the daemon


@dataclass(frozen=True, slots=True)
class Jobs:
    """What the daemon runs. ``cycle(stop, on_query, on_cycle)`` runs one cycle under the cycle lease (raising
    :class:`LeaseBusy` at once if another process holds it); ``digest()`` sends the digest if one is due and
    returns a one-line outcome; None when ``[digest]`` is not configured."""

    cycle: Callable[[Callable[[], str | None], Callable[[QueryReport], None], Callable[[Cycle], None]], CycleResult]
    digest: Callable[[], tuple[str, dict[str, Any]]] | None


class Daemon:
    def __init__(self, config: Config, store: ScheduleStore, clock: Clock, jobs: Jobs, cycle_lease: Lease,
                 stop_event: threading.Event | None = None) -> None:
        self.config = config
        self.cycle_lease = cycle_lease  # the lease jobs.cycle holds; released here on a hard stop
        self.store = store
        self.clock = clock
        self.jobs = jobs
        self.schedule = config.schedule
        self.stop_event = stop_event or threading.Event()  # shared with the client's retry sleeps
        self.signal_name: str | None = None
        self._busy: dict[str, float] = {}  # job → monotonic start, while running
        self._busy_lock = threading.Lock()
        self._cycle: Cycle | None = None
        self.scheduler = BlockingScheduler(
            timezone=parse_timezone(self.schedule.timezone),
            job_defaults={"coalesce": True, "max_instances": 1,
                          "misfire_grace_time": int(self.schedule.misfire_grace_seconds)},
        )
        self.scheduler.add_listener(self._on_missed, EVENT_JOB_MISSED)
        self.scheduler.add_listener(self._on_overrun, EVENT_JOB_MAX_INSTANCES)

    # ---------------------------------------------------------------- start-up

    def triggers(self, now: dt.datetime) -> dict[str, Trigger]:
        out = {CYCLE_JOB: trigger_for(self.schedule.cycle, now)}
        if self.jobs.digest is not None:
            out[DIGEST_JOB] = trigger_for(self.schedule.digest, now)
        return out

    def owed(self, triggers: dict[str, Trigger], now: dt.datetime) -> dict[str, dt.datetime]:
        """Jobs whose fire passed while no daemon ran: job → the missed fire time."""
        states = self.store.job_states()
        out: dict[str, dt.datetime] = {}
        for job, trigger in triggers.items():
            state = states.get(job)
            last = state.last_fire_at if state else None
            if job == CYCLE_JOB:
                # A manual `monitor run` after the last scheduled fire covered it too.
                ran = self.store.last_run_started()
                last = max(d for d in (last, ran) if d is not None) if (last or ran) else None
            elif last is None:
                # The digest's first start: nothing was missed; start counting from now.
                self.store.record_fire(job, now)
                self.store.record_job_outcome(job, now, "baseline", "the daemon started; no digest fire yet")
                continue
            missed = missed_fire(trigger, last, now)
            if missed is not None:
                out[job] = missed
        return out

    def run(self) -> int:
        """Schedule, block until SIGTERM/SIGINT, stop cleanly. Returns the exit status (0)."""
        now = self.clock.now()
        triggers = self.triggers(now)
        owed = self.owed(triggers, now)
        # APScheduler fires on the real clock; under MONITOR_NOW an interval anchored on the data clock would
        # start in the past, so its own triggers are anchored on real time.
        real_now = dt.datetime.now(self.scheduler.timezone)
        for job, trigger in self.triggers(real_now).items():
            extra: dict[str, Any] = {"next_run_time": real_now} if job in owed else {}
            func = self._run_cycle if job == CYCLE_JOB else self._run_digest
            self.scheduler.add_job(func, trigger, id=job, name=job, **extra)
        self._install_signals()
        event("start", pid=os.getpid(), cycle=self.schedule.cycle.describe(),
              digest=self.schedule.digest.describe() if DIGEST_JOB in triggers else "off (no [digest] table)",
              next_cycle=f"now (catch-up: missed {logfmt(at=owed[CYCLE_JOB])[3:]})" if CYCLE_JOB in owed
              else next_fire_times(triggers[CYCLE_JOB], now)[0],
              next_digest=None if DIGEST_JOB not in triggers else
              ("now (catch-up)" if DIGEST_JOB in owed else next_fire_times(triggers[DIGEST_JOB], now)[0]),
              lease_seconds=self.schedule.lease_seconds)
        for job, missed in owed.items():
            event("catch_up", job=job, missed_fire=missed)
        if not self.stop_event.is_set():
            self.scheduler.start()  # blocks until shutdown() (from the signal handler)
        return self._finish()

    # ---------------------------------------------------------------- signals and shutdown

    def _install_signals(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.stop_event.is_set():
            return
        self.signal_name = signal.Signals(signum).name
        self.stop_event.set()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    def stop_reason(self) -> str | None:
        return f"{self.signal_name or 'shutdown'} received: stopping between batches" \
            if self.stop_event.is_set() else None

    def _finish(self) -> int:
        event("stopping", signal=self.signal_name, running=",".join(sorted(self._busy)) or "nothing")
        deadline = time.monotonic() + self.schedule.stop_seconds
        while self._busy and time.monotonic() < deadline:
            time.sleep(0.02)
        if self._busy:
            self._abandon()
        event("stopped", signal=self.signal_name)
        logging.shutdown()
        if self._busy:
            # A job thread is still blocked in network I/O; waiting for it is what we refused to do.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        return 0

    def _abandon(self) -> None:
        """The job did not reach a batch boundary in time (it is waiting on the network): close its run log
        entry and release the lease; the process exits right after, so the job never stores another batch."""
        cycle = self._cycle
        if cycle is not None and cycle.run_id is not None:
            try:
                self.store.finish_run(cycle.run_id, self.clock.now(), "stopped",
                                      f"{self.signal_name} received while waiting on NCBI; stopped without it")
            except MonitorError as exc:
                event("abandon_failed", logging.WARNING, error=str(exc))
        if CYCLE_JOB in self._busy:
            self.cycle_lease.release()
        event("abandoned", logging.WARNING, jobs=",".join(sorted(self._busy)),
              reason=f"still busy {self.schedule.stop_seconds:g}s after {self.signal_name}",
              note="every stored batch is complete; the next cycle covers the same window")

    def _on_missed(self, ev: JobExecutionEvent) -> None:
        event("fire_missed", logging.WARNING, job=ev.job_id, scheduled=ev.scheduled_run_time,
              reason="later than misfire_grace_seconds; the next fire (or the next start-up) catches up")

    def _on_overrun(self, ev: JobEvent) -> None:
        event("fire_skipped", job=ev.job_id, reason="the previous run of this job is still going")

    # ---------------------------------------------------------------- jobs

    def _enter(self, job: str) -> None:
        with self._busy_lock:
            self._busy[job] = time.monotonic()

    def _leave(self, job: str) -> None:
        with self._busy_lock:
            self._busy.pop(job, None)

    def _run_cycle(self) -> None:
        if self.stop_event.is_set():
            return
        self._enter(CYCLE_JOB)
        began = time.monotonic()
        try:
            fired = self.clock.now()
            self.store.record_fire(CYCLE_JOB, fired)
            outcome, message = self._cycle_body(fired)
            self.store.record_job_outcome(CYCLE_JOB, self.clock.now(), outcome, message)
        except MonitorError as exc:  # the database or the feed folder failed: log, keep the daemon alive
            event("cycle_failed", logging.ERROR, error=str(exc), seconds=round(time.monotonic() - began, 3))
            self._note_outcome(CYCLE_JOB, "failed", str(exc))
        except Exception as exc:
            log.exception("cycle crashed")
            event("cycle_failed", logging.ERROR, error=f"{type(exc).__name__}: {exc}")
            self._note_outcome(CYCLE_JOB, "failed", f"{type(exc).__name__}: {exc}")
        finally:
            self._cycle = None
            self._leave(CYCLE_JOB)

    def _note_outcome(self, job: str, outcome: str, message: str) -> None:
        try:
            self.store.record_job_outcome(job, self.clock.now(), outcome, message)
        except MonitorError:  # the database is what failed; the log line above already says so
            pass

    def _cycle_body(self, fired: dt.datetime) -> tuple[str, str | None]:
        began = time.monotonic()
        run: dict[str, int | None] = {"id": None}

        def on_cycle(cycle: Cycle) -> None:
            self._cycle = cycle

        def on_query(report: QueryReport) -> None:
            cycle = self._cycle
            run["id"] = cycle.run_id if cycle else None
            window = f"{report.window[0]}..{report.window[1]}" if report.window else None
            event("query", logging.INFO if report.status == "ok" else logging.WARNING, run=run["id"],
                  query=report.name, status=report.status, window=window, found=report.found, new=report.new,
                  updated=report.updated, deleted=report.deleted, skipped=report.skipped,
                  seconds=report.seconds, message=report.message if report.status != "ok" else None)

        try:
            result = self.jobs.cycle(self.stop_reason, on_query, on_cycle)
        except LeaseBusy as exc:
            lease = exc.lease
            retry = self._retry_later(fired)
            event("cycle_skipped", fired=fired, reason="another process holds the cycle lease",
                  holder=lease.holder, purpose=lease.purpose, since=lease.acquired_at, retry_at=retry)
            return "skipped", str(exc)
        except Stopped as exc:
            event("cycle_stopped", logging.WARNING, run=self._cycle.run_id if self._cycle else None,
                  reason=str(exc), seconds=round(time.monotonic() - began, 3))
            return "stopped", str(exc)
        report = result.report
        total = summarize(report)
        pub = result.published
        event("cycle", logging.INFO if report.ok else logging.WARNING, run=report.run_id, status=report.status,
              queries=len(report.queries), failed=sum(q.status != "ok" for q in report.queries),
              found=total.found, new=total.new, updated=total.updated, deleted=total.deleted,
              seconds=round(time.monotonic() - began, 3), feeds=pub.feeds, feed_files_written=pub.write.written)
        bad = [q.name for q in report.queries if q.status != "ok"]
        return report.status, (f"queries that did not complete: {', '.join(bad)}" if bad else None)

    def _retry_later(self, fired: dt.datetime) -> dt.datetime:
        """After a fire skipped because another process held the lease, look again once that lease could
        have lapsed (its holder may have died mid-cycle): a standby daemon covers a dead holder's cycle
        within minutes, not at its own next fire."""
        delay = min(self.schedule.lease_seconds + RETRY_MARGIN_SECONDS, MAX_RETRY_SECONDS)
        at = dt.datetime.now(self.scheduler.timezone) + dt.timedelta(seconds=delay)
        if self.scheduler.running:
            self.scheduler.add_job(self._retry_cycle, "date", run_date=at, args=[fired], id=RETRY_JOB,
                                   name=RETRY_JOB, replace_existing=True)
        return at

    def _retry_cycle(self, fired: dt.datetime) -> None:
        """The retry of a skipped fire: run the cycle unless a cycle finished since that fire."""
        if self.stop_event.is_set():
            return
        covered = [r for r in self.store.recent_runs(5)
                   if r.finished_at is not None and r.finished_at >= fired and r.status in ("ok", "partial")]
        if covered:
            event("cycle_retry_not_needed", fired=fired, run=covered[0].id,
                  reason="the holder finished a cycle after the skipped fire")
            return
        event("cycle_retry", fired=fired, reason="no cycle finished since the skipped fire")
        self._run_cycle()

    def _run_digest(self) -> None:
        if self.stop_event.is_set() or self.jobs.digest is None:
            return
        self._enter(DIGEST_JOB)
        try:
            self.store.record_fire(DIGEST_JOB, self.clock.now())
            try:
                status, fields = self.jobs.digest()
            except LeaseBusy as exc:
                status, fields = "skipped", {"reason": str(exc)}
            except MonitorError as exc:
                status, fields = "failed", {"error": str(exc)}
            event("digest", logging.INFO if status in ("sent", "not_due", "skipped") else logging.ERROR,
                  status=status, **fields)
            self.store.record_job_outcome(DIGEST_JOB, self.clock.now(), status,
                                          fields.get("error") or fields.get("reason"))
        except MonitorError as exc:
            event("digest", logging.ERROR, status="failed", error=str(exc))
        except Exception as exc:
            log.exception("digest crashed")
            event("digest", logging.ERROR, status="failed", error=f"{type(exc).__name__}: {exc}")
        finally:
            self._leave(DIGEST_JOB)


def stop_aware_sleep(stop: threading.Event) -> Callable[[float], None]:
    """A sleep for the E-utilities client's retry waits that a stop request cuts short."""

    def sleep(seconds: float) -> None:
        if stop.wait(seconds):
            raise Stopped("shutdown requested during a retry wait; stopping before the next request")

    return sleep
