"""Database leases: one cycle at a time across processes (daemons, `monitor run`), on any database the
store supports.

A lease is a row in ``locks`` (migration 0006) naming its holder (host/pid/random id), what it is doing and
when it expires. Taking, renewing and releasing are single conditional statements in
:class:`~monitor.interfaces.LeaseStore`, so two processes can never both believe they hold it. While held, a
heartbeat thread renews it every ``heartbeat`` seconds (a quarter of the lease by default); a holder that
dies stops renewing, and once ``expires_at`` passes anyone may take the lease over. A holder that notices
it lost its lease (it was suspended longer than the lease) reports that through :attr:`Lease.lost`, and the
cycle stops at its next batch.

A holder on this host whose process is gone (killed, crashed) is taken over at once, without waiting for
its lease to lapse. A new holder also learns when the previous one stopped (its release, or its last sign
of life) and :meth:`Lease.wait_quiet` waits out NCBI's one-second rate window after it, so two processes
handing the cycle over never send requests inside one window.

Lease times are compared across processes, so the clock passed here must be the real clock even when
``MONITOR_NOW`` shifts the data clock (the CLI does that).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator

from .clock import Clock
from .errors import LeaseBusy, MonitorError
from .interfaces import LeaseStore
from .types import LeaseRow

log = logging.getLogger(__name__)

QUIET_SECONDS = 1.0  # NCBI counts requests per key over one second: a new holder waits this long after the last

CYCLE = "cycle"  # the lease every monitoring cycle holds (daemon and `monitor run`)
DIGEST = "digest"  # the daemon's digest job: never two digests sent at once


class Lease:
    """One process's claim on the lease ``name``. Not reentrant; one per concurrent use."""

    def __init__(self, store: LeaseStore, name: str, *, purpose: str, clock: Clock, seconds: float,
                 heartbeat: float | None = None, host: str | None = None, pid: int | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.store = store
        self.name = name
        self.purpose = purpose
        self.clock = clock
        self.seconds = seconds
        self.heartbeat = heartbeat if heartbeat is not None else seconds / 4
        self.host = host or socket.gethostname()
        self.pid = os.getpid() if pid is None else pid
        self.holder = f"{self.host}/{self.pid}/{uuid.uuid4().hex[:12]}"
        self.lost = threading.Event()
        self.quiet_until: dt.datetime | None = None  # when the previous holder's requests are a window away
        self._sleep = sleep
        self._stop_beat = threading.Event()
        self._beat: threading.Thread | None = None

    def try_acquire(self) -> LeaseRow:
        """One attempt. Returns the holder afterwards: ``row.holder == self.holder`` means we have it."""
        now = self.clock.now()
        return self.store.try_acquire_lease(self.name, holder=self.holder, host=self.host, pid=self.pid,
                                            purpose=self.purpose, now=now,
                                            expires_at=now + dt.timedelta(seconds=self.seconds))

    def acquire(self, wait: float = 0.0, poll: float = 0.5) -> None:
        """Take the lease, waiting up to ``wait`` seconds for the holder to finish; else :class:`LeaseBusy`
        naming the holder. A holder on this host whose process no longer exists is taken over at once."""
        deadline = time.monotonic() + max(wait, 0.0)
        while True:
            before = self.store.lease(self.name)
            row = self.try_acquire()
            if row.holder != self.holder and self._dead_here(row):
                row = self._take_over(row)
            if row.holder == self.holder:
                self.lost.clear()
                self.quiet_until = _quiet_after(before, self.holder, self.clock.now(), self.heartbeat)
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise LeaseBusy(busy_message(row, self.clock.now(), waited=wait), row)
            self._sleep(min(poll, left))

    def _dead_here(self, row: LeaseRow) -> bool:
        """Whether ``row``'s holder is a process of this host that no longer exists."""
        return row.host == self.host and row.pid != self.pid and not _pid_alive(row.pid)

    def _take_over(self, row: LeaseRow) -> LeaseRow:
        now = self.clock.now()
        if self.store.take_over_lease(self.name, row.holder, holder=self.holder, host=self.host, pid=self.pid,
                                      purpose=self.purpose, now=now,
                                      expires_at=now + dt.timedelta(seconds=self.seconds)):
            log.warning("took over the %s lease from pid %d on this host (%s since %s UTC): that process no "
                        "longer exists", self.name, row.pid, row.purpose, f"{row.acquired_at:%H:%M:%S}")
        return self.store.lease(self.name) or row

    def wait_quiet(self, sleep: Callable[[float], None] | None = None) -> None:
        """Wait until the previous holder's last requests to NCBI are a rate window behind (a no-op when
        there was no recent holder)."""
        if self.quiet_until is None:
            return
        left = (self.quiet_until - self.clock.now()).total_seconds()
        if left > 0:
            (sleep or self._sleep)(left)

    def renew(self) -> bool:
        now = self.clock.now()
        return self.store.renew_lease(self.name, self.holder, now, now + dt.timedelta(seconds=self.seconds))

    def release(self) -> None:
        self._stop_heartbeat()
        try:
            self.store.release_lease(self.name, self.holder, self.clock.now())
        except MonitorError as exc:  # it expires on its own; say so rather than fail the shutdown
            log.warning("could not release the %s lease (%s); it expires by itself within %.0fs",
                        self.name, exc, self.seconds)

    @contextlib.contextmanager
    def held(self, wait: float = 0.0) -> Iterator[Lease]:
        """Acquire (or raise :class:`LeaseBusy`), renew from a heartbeat thread while the body runs, release."""
        self.acquire(wait)
        self._start_heartbeat()
        try:
            yield self
        finally:
            self.release()

    # ---------------------------------------------------------------- heartbeat

    def _start_heartbeat(self) -> None:
        self._stop_beat.clear()
        self._beat = threading.Thread(target=self._beat_loop, name=f"lease-{self.name}", daemon=True)
        self._beat.start()

    def _stop_heartbeat(self) -> None:
        self._stop_beat.set()
        if self._beat is not None and self._beat is not threading.current_thread():
            self._beat.join(timeout=max(self.heartbeat, 1.0) + 5)
        self._beat = None

    def _beat_loop(self) -> None:
        last_renewed = time.monotonic()
        while not self._stop_beat.wait(self.heartbeat):
            try:
                if self.renew():
                    last_renewed = time.monotonic()
                    continue
                log.error("lost the %s lease: it expired and another process took it; stopping at the next "
                          "batch", self.name)
                self.lost.set()
                return
            except MonitorError as exc:
                # A busy database delays one renewal; only a lease older than its expiry is given up.
                log.warning("could not renew the %s lease: %s", self.name, exc)
                if time.monotonic() - last_renewed >= self.seconds:
                    self.lost.set()
                    return


def _pid_alive(pid: int) -> bool:
    """Whether a process with this id exists here (a process of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _quiet_after(before: LeaseRow | None, holder: str, now: dt.datetime, heartbeat: float) -> dt.datetime | None:
    """When a new holder may send its first request: a rate window after the previous holder stopped — its
    release, or (it died) its last heartbeat plus one interval, the latest it can have sent anything."""
    if before is None or before.holder == holder:
        return None
    last = before.released_at or min(now, before.heartbeat_at + dt.timedelta(seconds=heartbeat))
    quiet = last + dt.timedelta(seconds=QUIET_SECONDS)
    return quiet if quiet > now else None


def busy_message(row: LeaseRow, now: dt.datetime, waited: float = 0.0) -> str:
    """One line naming the holder: host, pid, what it does, since when, and when the lease lapses."""
    left = max((row.expires_at - now).total_seconds(), 0.0)
    after = f" after waiting {waited:g}s" if waited > 0 else ""
    return (f"another monitor process holds the {row.name} lease{after}: {row.purpose} on host {row.host}, "
            f"pid {row.pid}, since {row.acquired_at:%Y-%m-%d %H:%M:%S} UTC (lease renewed "
            f"{row.heartbeat_at:%H:%M:%S} UTC, lapses in {left:.0f}s if that process died); try again when "
            "it is done, or pass --wait SECONDS")


def describe_holder(row: LeaseRow | None, now: dt.datetime) -> str:
    """``free`` or who holds the lease, for `monitor status`."""
    if row is None:
        return "free"
    if row.released_at is not None and row.expires_at <= now:
        return f"free (last held by {row.purpose} on {row.host}, pid {row.pid}, released " \
               f"{row.released_at:%Y-%m-%d %H:%M:%S} UTC)"
    if row.expires_at <= now:
        return (f"free (last held by {row.purpose} on {row.host}, pid {row.pid}, expired "
                f"{row.expires_at:%Y-%m-%d %H:%M:%S} UTC without being released: that process died)")
    return (f"held by {row.purpose} on {row.host}, pid {row.pid}, since {row.acquired_at:%Y-%m-%d %H:%M:%S} "
            f"UTC (renewed {row.heartbeat_at:%H:%M:%S}, expires {row.expires_at:%H:%M:%S} UTC)")
