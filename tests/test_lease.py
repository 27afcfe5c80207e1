"""The database lease: taken, renewed and released atomically, lapsing when its holder dies; real
processes contending for it on one SQLite file; `monitor run` refusing or waiting while it is held."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from monitor.clock import FixedClock, SystemClock
from monitor.errors import LeaseBusy
from monitor.lease import Lease, busy_message, describe_holder
from monitor.storage import Storage
from tests.conftest import ROOT, db_url

T0 = dt.datetime(2026, 11, 22, 3, 0, tzinfo=dt.UTC)


@pytest.fixture
def store(tmp_path: Path):
    with Storage.open(db_url(tmp_path / "lease.sqlite3")) as s:
        yield s


def lease(store: Storage, clock, pid: int, seconds: float = 10.0, **kw) -> Lease:
    return Lease(store, "cycle", purpose=f"test {pid}", clock=clock, seconds=seconds, host="box", pid=pid, **kw)


def test_take_refuse_lapse_and_take_over(store: Storage) -> None:
    clock = FixedClock(T0)
    a, b = lease(store, clock, 1), lease(store, clock, 2, sleep=lambda s: clock.advance(seconds=s))
    a.acquire()
    assert store.lease("cycle").holder == a.holder
    with pytest.raises(LeaseBusy) as info:
        b.acquire()
    message = str(info.value)
    assert message.startswith("another monitor process holds the cycle lease: test 1 on host box, pid 1, "
                              "since 2026-11-22 03:00:00 UTC")
    assert "lapses in 10s" in message and "\n" not in message
    clock.advance(seconds=5)
    assert a.renew()  # renewed: expires at 03:00:15 now
    clock.advance(seconds=9)
    with pytest.raises(LeaseBusy):
        b.acquire()  # 03:00:14, still held
    # b waits (its sleep moves the fixed clock) until a's lease lapses at 03:00:15, then takes it.
    b.acquire(wait=3, poll=0.5)
    row = store.lease("cycle")
    assert row.holder == b.holder and row.acquired_at >= T0 + dt.timedelta(seconds=15)
    assert not a.renew()  # a learns it lost the lease
    a.release()
    assert store.lease("cycle").holder == b.holder  # a cannot release b's lease
    again = b.try_acquire()
    assert again.holder == b.holder and again.acquired_at == row.acquired_at  # re-taking keeps "since"
    b.release()
    released = store.lease("cycle")  # the row stays, expired and marked released: the next holder reads it
    assert released is not None and released.released_at == clock.now() and released.expires_at == clock.now()
    assert describe_holder(released, clock.now()) == ("free (last held by test 2 on box, pid 2, released "
                                                      f"{clock.now():%Y-%m-%d %H:%M:%S} UTC)")
    assert describe_holder(None, T0) == "free"


def test_describe_holder_says_who_and_whether_it_lapsed(store: Storage) -> None:
    clock = FixedClock(T0)
    a = lease(store, clock, 42, seconds=60)
    a.acquire()
    row = store.lease("cycle")
    assert describe_holder(row, T0 + dt.timedelta(seconds=30)) == (
        "held by test 42 on box, pid 42, since 2026-11-22 03:00:00 UTC (renewed 03:00:00, expires 03:01:00 UTC)")
    assert describe_holder(row, T0 + dt.timedelta(seconds=61)).startswith(
        "free (last held by test 42 on box, pid 42, expired 2026-11-22 03:01:00 UTC without being released")
    assert "after waiting 5s" in busy_message(row, T0, waited=5)


def test_heartbeat_keeps_a_lease_alive_past_its_length_and_release_frees_it(store: Storage) -> None:
    real = SystemClock()
    a = lease(store, real, 1, seconds=0.6, heartbeat=0.1)
    b = lease(store, real, 2, seconds=0.6)
    with a.held():
        deadline = time.monotonic() + 1.5  # well past the 0.6 s lease
        while time.monotonic() < deadline:
            with pytest.raises(LeaseBusy):
                b.acquire()
            time.sleep(0.1)
        assert not a.lost.is_set()
    b.acquire()  # released on exit, not merely lapsed
    b.release()


def test_a_holder_that_stalls_past_expiry_learns_it_lost_the_lease(store: Storage) -> None:
    clock = FixedClock(T0)
    a = lease(store, clock, 1, seconds=10, heartbeat=0.05)
    b = lease(store, clock, 2, seconds=10)
    with a.held():
        clock.advance(seconds=11)  # as if the holder was suspended past its expiry
        b.acquire()  # ...and someone took over before its heartbeat ran
        deadline = time.monotonic() + 5
        while not a.lost.is_set() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert a.lost.is_set()
    assert store.lease("cycle").holder == b.holder  # a's release did not free b's lease


CONTENDER = """
import json, sys, time
sys.path.insert(0, {root!r})
from monitor.clock import SystemClock
from monitor.errors import LeaseBusy
from monitor.lease import Lease
from monitor.storage import Storage

store = Storage.open({url!r})
lease = Lease(store, "cycle", purpose="contender", clock=SystemClock(), seconds=5)
spans = []
deadline = time.monotonic() + {seconds}
while time.monotonic() < deadline:
    try:
        with lease.held():
            began = time.time()
            time.sleep(0.03)
            spans.append((began, time.time()))
    except LeaseBusy:
        time.sleep(0.005)
print(json.dumps(spans))
"""


def test_processes_contending_for_the_lease_never_hold_it_together(tmp_path: Path) -> None:
    url = db_url(tmp_path / "contend.sqlite3")
    Storage.open(url).close()  # migrate once, so the contenders start together
    script = tmp_path / "contend.py"
    script.write_text(CONTENDER.format(root=str(ROOT), url=url, seconds=2.5), encoding="utf-8")
    procs = [subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(4)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        results.append(json.loads(out))
    assert sum(1 for spans in results if spans) >= 2, [len(s) for s in results]  # real contention
    spans = sorted(span for spans in results for span in spans)
    assert len(spans) >= 10
    for (s1, e1), (s2, e2) in itertools.pairwise(spans):
        assert e1 <= s2, f"two processes held the lease at once: {s1}..{e1} and {s2}..{e2}"


def test_a_holder_on_this_host_whose_process_is_gone_is_taken_over_at_once(store: Storage) -> None:
    import socket
    import subprocess
    import sys

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # its pid no longer names a process
    clock = FixedClock(T0)
    here = socket.gethostname()
    dead = Lease(store, "cycle", purpose="monitor run", clock=clock, seconds=120, host=here, pid=gone.pid)
    dead.acquire()
    other_host = Lease(store, "cycle", purpose="daemon", clock=clock, seconds=120, host="elsewhere", pid=gone.pid)
    with pytest.raises(LeaseBusy):
        other_host.acquire()  # on another host the pid says nothing: wait for the lease to lapse
    mine = Lease(store, "cycle", purpose="monitor run", clock=clock, seconds=120, host=here)
    mine.acquire()  # no waiting for the 120 s lease to lapse
    assert store.lease("cycle").holder == mine.holder
    assert not dead.renew()


def test_a_new_holder_waits_out_the_rate_window_after_the_last(store: Storage) -> None:
    clock = FixedClock(T0)
    slept: list[float] = []
    first = lease(store, clock, 1)
    first.acquire()
    assert first.quiet_until is None  # nobody held it before
    clock.advance(seconds=30)
    first.release()
    clock.advance(seconds=0.25)
    second = lease(store, clock, 1, sleep=slept.append)
    second.acquire()
    second.wait_quiet()
    assert slept == [pytest.approx(0.75)]  # one second after the release, not sooner
    clock.advance(seconds=5)
    second.release()
    clock.advance(seconds=2)
    third = lease(store, clock, 1, sleep=slept.append)
    third.acquire()
    third.wait_quiet()
    assert third.quiet_until is None and len(slept) == 1  # released long enough ago: no wait
