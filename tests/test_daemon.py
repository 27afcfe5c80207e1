"""`monitor start` for real: the installed command in a subprocess, the E-utilities stand-in on loopback,
the real database read back with SQLAlchemy, feeds read by feedparser, and real signals.

Every wait polls the database or the log with a deadline; nothing asserts on a bare sleep.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import feedparser
import pytest
import sqlalchemy as sa

from tests.conftest import database_untouched, db_url, monitor_executable
from tests.eutils_standin import StandIn
from tests.test_cycle_e2e import NOW, TODAY
from tests.test_digest import smtp  # noqa: F401 - the aiosmtpd fixture
from tests.test_feeds import FeedWorld

SHIPPED_SCHEDULE = 'cycle = "30 3 * * *"'


class Proc:
    """One `monitor start` process, its stderr in a file (a pipe could fill up and stall it)."""

    def __init__(self, popen: subprocess.Popen[bytes], log: Path) -> None:
        self.popen = popen
        self.log_path = log

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def events(self, name: str) -> list[dict[str, str]]:
        return [parse_logfmt(line) for line in self.log().splitlines() if f" event={name} " in line + " "]

    def terminate(self, timeout: float = 5.0) -> tuple[int, float]:
        """SIGTERM; returns (exit status, seconds until it exited)."""
        began = time.monotonic()
        self.popen.send_signal(signal.SIGTERM)
        code = self.popen.wait(timeout=timeout)
        return code, time.monotonic() - began

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout=10)


def parse_logfmt(line: str) -> dict[str, str]:
    return {k: (v[1:-1] if v.startswith('"') else v)
            for k, v in re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)', line)}


class DaemonWorld(FeedWorld):
    def __init__(self, standin: StandIn, tmp: Path) -> None:
        super().__init__(standin, tmp)
        self.base_url = standin.base_url  # the daemons are real processes: the stand-in over loopback
        self.procs: list[Proc] = []

    def schedule(self, *, every: str | None = "2s", cycle: str | None = None, lease: str = "3s",
                 stop: str = "3s", timeout: str | None = None) -> None:
        text = self.config.read_text(encoding="utf-8")
        assert SHIPPED_SCHEDULE in text and "\nlease_seconds = 120 " in text and "\nstop_seconds = 3 " in text
        text = text.replace(SHIPPED_SCHEDULE, f'every = "{every}"' if every else f'cycle = "{cycle}"')
        text = text.replace("\nlease_seconds = 120 ", f'\nlease_seconds = "{lease}" ')
        text = text.replace("\nstop_seconds = 3 ", f'\nstop_seconds = "{stop}" ')
        if timeout is not None:
            assert "\ntimeout = 1" in text
            text = text.replace("\ntimeout = 1", f"\ntimeout = {timeout}", 1)
        self.config.write_text(text, encoding="utf-8")

    def env(self, now: str | None, key: bool = True) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MONITOR_", "NCBI_"))}
        env.update({"MONITOR_CONFIG": str(self.config), "MONITOR_DB_URL": db_url(self.db),
                    "MONITOR_EUTILS_URL": self.base_url})
        if key:
            # The key lifts the stand-in's limit to 10 requests/s: a cycle takes about a second, against
            # about four and a half at the 3 requests/s allowed without one.
            env["NCBI_API_KEY"] = "test-key"
        if now is not None:
            env["MONITOR_NOW"] = now
        return env

    def start(self, now: str | None = NOW, key: bool = True) -> Proc:
        log = self.tmp / f"daemon-{len(self.procs)}.log"
        handle = log.open("wb")
        popen = subprocess.Popen([monitor_executable(), "start"], stdout=handle, stderr=subprocess.STDOUT,
                                 env=self.env(now, key), cwd=self.tmp)
        handle.close()
        proc = Proc(popen, log)
        self.procs.append(proc)
        return proc

    def monitor(self, *args: str, now: str = NOW, key: bool = False, db: Path | None = None):
        return subprocess.run([monitor_executable(), *args], capture_output=True, text=True, env=self.env(now),
                              cwd=self.tmp, timeout=120)

    def query(self, sql: str) -> list[tuple]:
        """Rows of ``sql`` read from the daemon's database ([] while it has no tables yet); SQLite read-only."""
        url = db_url(self.db)
        if url.startswith("sqlite"):
            if not self.db.exists():
                return []
            url = f"sqlite:///file:{self.db}?mode=ro&uri=true"
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool, connect_args={"timeout": 10} if
                                  url.startswith("sqlite") else {})
        try:
            with engine.connect() as conn:
                return [tuple(r) for r in conn.exec_driver_sql(sql)]
        except sa.exc.DBAPIError as exc:  # the daemon has not created the tables yet
            if "no such table" in str(exc) or "does not exist" in str(exc):
                return []
            raise
        finally:
            engine.dispose()

    def runs(self) -> list[dict]:
        rows = self.query("SELECT id, started_at, finished_at, status, message FROM runs ORDER BY id")
        return [{"id": r[0], "started": _ts(r[1]), "finished": _ts(r[2]) if r[2] else None, "status": r[3],
                 "message": r[4]} for r in rows]

    def finished_runs(self) -> list[dict]:
        return [r for r in self.runs() if r["finished"] is not None]

    def stored(self) -> set[str]:
        return {str(r[0]) for r in self.query("SELECT pmid FROM papers")}


def _ts(value: str | dt.datetime) -> dt.datetime:
    """A stored time (SQLite hands back text, PostgreSQL a datetime) in UTC."""
    when = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


def wait_for(check: Callable[[], object], what: str, timeout: float = 30.0, procs: list[Proc] = ()) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        for p in procs:
            if p.popen.poll() is not None:
                pytest.fail(f"daemon exited with {p.popen.returncode} while waiting for {what}:\n{p.log()[-3000:]}")
        time.sleep(0.05)
    logs = "\n".join(p.log()[-3000:] for p in procs)
    pytest.fail(f"timed out after {timeout}s waiting for {what}\n{logs}")


@pytest.fixture
def dw(tmp_path: Path) -> Iterator[DaemonWorld]:
    with StandIn(today=TODAY, hang_seconds=3.0) as standin:
        world = DaemonWorld(standin, tmp_path)
        try:
            yield world
        finally:
            for p in world.procs:
                p.kill()


def test_daemon_ingests_between_cycles_survives_an_outage_writes_feeds_and_stops_on_sigterm(dw: DaemonWorld) -> None:
    dw.schedule(every="2s")
    late_relevant = dw.dressed[-2:]  # gut-skin papers PubMed publishes while the daemon runs
    late = late_relevant + dw.all_ids[-3:]
    dw.standin.hide(late)
    daemon = dw.start()

    # The cycle's log line comes after its feeds are written (the run log entry closes before that).
    first = wait_for(lambda: [c for c in daemon.events("cycle") if c["status"] == "ok"], "a first cycle",
                     procs=[daemon])
    first = [r for r in dw.runs() if r["id"] == int(first[0]["run"])]
    early = set(dw.all_ids) - set(late)
    assert dw.stored() == early
    main = dw.out / "main.xml"
    assert main.exists()
    feed = feedparser.parse(main.read_bytes())
    assert feed.bozo == 0 and feed.entries
    assert not any(p in e.link for e in feed.entries for p in late_relevant)

    # NCBI goes down: every request fails until the outage ends. The daemon logs failed queries and a failed
    # (or partial) cycle, and carries on.
    dw.standin.inject("503", count=100_000)
    outage = wait_for(lambda: [r for r in dw.finished_runs() if r["status"] in ("failed", "partial")],
                      "a cycle during the outage", procs=[daemon])
    dw.standin.clear_faults()
    assert daemon.popen.poll() is None
    # Records that appear after the outage are ingested by a later cycle, and reach the feeds.
    dw.standin.publish(late)
    for pmid in late:
        dw.standin.set_dates(pmid, edat=TODAY)
    wait_for(lambda: dw.stored() == set(dw.all_ids), "the new records to be stored", procs=[daemon])
    last = wait_for(lambda: [r for r in dw.finished_runs() if r["status"] == "ok" and r["id"] > outage[0]["id"]
                             and set(late_relevant) <= _feed_pmids(main)], "feeds with the new papers",
                    procs=[daemon])

    code, took = daemon.terminate()
    assert code == 0 and took < 5.0, (code, took, daemon.log()[-2000:])
    log = daemon.log()
    assert "Traceback" not in log
    runs = dw.runs()
    assert len(runs) >= 3 and {r["status"] for r in runs} >= {"ok"}
    assert all(r["status"] != "running" for r in runs)  # SIGTERM closed whatever was in progress
    # MONITOR_NOW set where the clock starts, and then it ran: every run starts later than the one before.
    starts = [r["started"] for r in runs]
    assert starts[0] >= _ts(NOW.replace("T", " ").replace("+00:00", "")) and starts == sorted(set(starts))
    # One structured line per query per run, with its counts; the outage is in the log.
    queries = daemon.events("query")
    names = {q.name for q in dw.queries}
    for run in (first[0], last[0]):
        per_run = [q for q in queries if q["run"] == str(run["id"])]
        assert {q["query"] for q in per_run} == names
        assert all({"found", "new", "updated", "seconds", "window"} <= set(q) for q in per_run)
    failed = [q for q in queries if q["run"] == str(outage[0]["id"]) and q["status"] == "failed"]
    assert failed and all("503" in q["message"] for q in failed)
    assert sum(int(q["new"]) for q in queries) == len(dw.all_ids)  # every record stored exactly once
    cycles = daemon.events("cycle")
    assert [c for c in cycles if c["status"] in ("failed", "partial")] and cycles[-1]["status"] == "ok"
    assert daemon.events("stopped") and daemon.events("start")[0]["cycle"] == "every 2s"
    assert dw.query("SELECT name FROM locks WHERE released_at IS NULL") == []  # the lease was released


def _feed_pmids(path: Path) -> set[str]:
    return {m for e in feedparser.parse(path.read_bytes()).entries for m in re.findall(r"/(\d+)/?$", e.link)}


def test_sigterm_in_the_middle_of_a_cycle_stops_between_batches(dw: DaemonWorld) -> None:
    dw.schedule(every="1h")  # one cycle (the catch-up on first start), then nothing until SIGTERM
    daemon = dw.start(key=False)  # 3 requests/s: the cycle takes seconds, so SIGTERM lands inside it
    running = wait_for(lambda: [r for r in dw.runs() if r["status"] == "running"] and dw.stored(),
                       "a cycle that has stored something", procs=[daemon])
    assert running
    code, took = daemon.terminate()
    assert code == 0 and took < 5.0, (code, took, daemon.log()[-2000:])
    (run,) = dw.runs()
    assert run["status"] == "stopped" and "SIGTERM" in (run["message"] or ""), run
    assert dw.query("SELECT name FROM locks WHERE released_at IS NULL") == []
    assert daemon.events("cycle_stopped")
    partial = dw.stored()
    assert partial and partial != set(dw.all_ids)
    # Nothing half-stored: every stored paper has its tags and its query links, and the interrupted query's
    # watermark did not move, so the next daemon completes the window.
    assert dw.query("SELECT count(*) FROM papers p LEFT JOIN paper_tagging t ON t.pmid = p.pmid "
                    "WHERE t.pmid IS NULL") == [(0,)]
    assert dw.query("SELECT count(*) FROM papers WHERE pmid NOT IN (SELECT pmid FROM paper_queries)") == [(0,)]
    again = dw.start(now="2026-11-22T05:00:00+00:00")  # an hour after the last fire: owed at once
    wait_for(lambda: [r for r in dw.finished_runs() if r["status"] == "ok"], "the next daemon's cycle", procs=[again])
    assert dw.stored() == set(dw.all_ids)
    assert again.terminate()[0] == 0


def test_two_daemons_never_overlap_a_cycle_and_store_nothing_twice(dw: DaemonWorld) -> None:
    # Both on the real clock (run log times comparable across processes), firing every second, so each one
    # fires while the other is mid-cycle.
    dw.schedule(every="1s", lease="3s")
    late = dw.all_ids[-10:]
    dw.standin.hide(late)
    a, b = dw.start(now=None), dw.start(now=None)
    wait_for(lambda: len(dw.finished_runs()) >= 2, "two cycles", timeout=60, procs=[a, b])
    dw.standin.publish(late)
    for pmid in late:
        dw.standin.set_dates(pmid, edat=TODAY)
    wait_for(lambda: len(dw.finished_runs()) >= 5 and dw.stored() == set(dw.all_ids)
             and a.events("cycle_skipped") + b.events("cycle_skipped"), "five cycles and a skipped fire",
             timeout=90, procs=[a, b])
    for proc in (a, b):
        code, took = proc.terminate()
        assert code == 0 and took < 5.0
    runs = dw.finished_runs()
    assert all(r["status"] in ("ok", "stopped") for r in runs), (
        [(r["id"], r["status"], r["message"]) for r in runs],
        dw.query("SELECT run_id, query_name, status, message FROM run_queries WHERE status != 'ok'"))
    spans = sorted((r["started"], r["finished"]) for r in runs)
    for (s1, f1), (s2, f2) in itertools.pairwise(spans):
        assert f1 <= s2, f"cycles overlap: {s1}..{f1} and {s2}..{f2}"
    # Which daemon ran which cycle: both took part, and each skip names the other one.
    ran_by = {p.pid: {int(c["run"]) for c in p.events("cycle")} for p in (a, b)}
    assert ran_by[a.pid] | ran_by[b.pid] >= {r["id"] for r in runs if r["status"] == "ok"}
    for p, other in ((a, b), (b, a)):
        for skip in p.events("cycle_skipped"):
            assert f"/{other.pid}/" in skip["holder"]
    # No duplicates anywhere: each paper once, each link once, each paper's first-seen event once.
    assert dw.query("SELECT count(*), count(DISTINCT pmid) FROM papers") == [(len(dw.all_ids), len(dw.all_ids))]
    links = dw.query("SELECT count(*) FROM paper_queries")[0][0]
    assert links == len(dw.query("SELECT DISTINCT pmid, query_name FROM paper_queries"))
    assert links == sum(len(ids) for ids in dw.matches.values())
    assert dw.query("SELECT count(*) FROM paper_events") == [(0,)]  # nothing was "revised" by a second store


def test_a_killed_daemons_lease_is_taken_over_at_once_on_its_host(dw: DaemonWorld) -> None:
    dw.schedule(every="1h", lease="30s")
    first = dw.start(now=None, key=False)  # a slow cycle (3 requests/s) to kill in the middle of
    wait_for(lambda: [r for r in dw.runs() if r["status"] == "running"], "a running cycle", procs=[first])
    ((holder, expires),) = dw.query("SELECT holder, expires_at FROM locks")
    assert f"/{first.pid}/" in holder
    first.popen.send_signal(signal.SIGKILL)
    first.popen.wait(timeout=10)
    killed_at = dt.datetime.now(dt.UTC)
    assert dw.query("SELECT holder FROM locks") == [(holder,)]  # nobody released it

    # The next daemon on this host sees the holder's pid is gone: it takes the lease over at once, without
    # waiting the 30 s for it to lapse (another host would have to: tests/test_lease.py).
    text = dw.config.read_text(encoding="utf-8")
    dw.config.write_text(text.replace('every = "1h"', 'every = "1s"'), encoding="utf-8")
    second = dw.start(now=None)
    done = wait_for(lambda: [r for r in dw.finished_runs() if r["status"] == "ok"], "the second daemon's cycle",
                    timeout=30, procs=[second])
    assert done[0]["started"] < _ts(expires) and done[0]["started"] - killed_at < dt.timedelta(seconds=10)
    assert "took over the cycle lease from pid" in second.log()
    # The killed daemon's run is closed as abandoned by the next lease holder, and nothing is lost.
    statuses = {r["id"]: r["status"] for r in dw.runs()}
    assert sorted(statuses.values()) == ["abandoned", "ok"]
    assert dw.stored() == set(dw.all_ids)
    assert second.terminate()[0] == 0


# ---------------------------------------------------------------- catch-up, the digest job, CLI contract


def test_a_fire_missed_while_down_runs_once_on_start_up(dw: DaemonWorld) -> None:
    dw.schedule(every=None, cycle="30 3 * * *")  # daily 03:30 New York = 08:30 UTC in November
    first = dw.start(now="2026-11-22T03:00:00+00:00")  # never ran: owed at once (the first backfill)
    wait_for(lambda: [c for c in first.events("cycle") if c["status"] == "ok"], "the first cycle", procs=[first])
    assert first.events("catch_up")[0]["job"] == "cycle"
    assert first.events("start")[0]["next_cycle"].startswith("now (catch-up")
    assert first.terminate()[0] == 0

    # Back an hour later: the next fire (08:30 UTC) has not come yet, so nothing is owed.
    second = dw.start(now="2026-11-22T04:00:00+00:00")
    start = wait_for(lambda: second.events("start"), "start-up", procs=[second])[0]
    assert start["next_cycle"] == "2026-11-22T08:30:00Z" and not second.events("catch_up")
    assert second.terminate()[0] == 0
    assert len(dw.runs()) == 1

    # Down over two fire times (22 and 23 November 08:30 UTC): one catch-up run on start-up, not two.
    third = dw.start(now="2026-11-23T12:00:00+00:00")
    wait_for(lambda: [c for c in third.events("cycle") if c["status"] == "ok"], "the catch-up cycle", procs=[third])
    assert third.events("catch_up")[0]["missed_fire"] == "2026-11-22T08:30:00Z"
    assert third.terminate()[0] == 0
    assert [r["status"] for r in dw.runs()] == ["ok", "ok"]
    status = dw.monitor("status", now="2026-11-23T12:00:00+00:00")
    assert status.returncode == 0, status.stderr
    assert "  cycle: cron '30 3 * * *'; next: 2026-11-24 03:30 EST (08:30 UTC), 2026-11-25 03:30 EST" in status.stdout
    assert re.search(r"      last fire 2026-11-23 12:00:\d\d UTC, finished 2026-11-23 12:00:\d\d UTC: ok", status.stdout)
    assert "cycle lease: free" in status.stdout
    assert "recent runs:" in status.stdout and "papers: " in status.stdout  # the existing sections stay


def test_a_missed_monday_digest_is_sent_on_start_up(dw: DaemonWorld, smtp) -> None:  # noqa: F811 - fixture
    inbox, controller = smtp
    with dw.config.open("a", encoding="utf-8") as fh:
        fh.write(f'\n[digest]\nsmtp_host = "127.0.0.1"\nsmtp_port = {controller.port}\nsecurity = "none"\n'
                 'timeout = 5\nfrom = "Gut-skin monitor <monitor@example.org>"\nto = ["derm@example.org"]\n')
    dw.schedule(every="1h")
    first = dw.start(now="2026-11-16T03:00:00+00:00")  # Sunday 22:00 in New York
    wait_for(lambda: first.events("cycle"), "the first cycle", procs=[first])
    assert first.events("start")[0]["next_digest"] == "2026-11-16T12:00:00Z"  # Monday 07:00 EST
    assert not first.events("digest")  # the digest's first start sets a baseline; it sends nothing yet
    assert first.terminate()[0] == 0
    assert inbox.received == []
    # The machine was off over Monday 07:00; on Tuesday the daemon sends the missed digest at once.
    second = dw.start(now="2026-11-17T09:00:00+00:00")
    sent = wait_for(lambda: second.events("digest"), "the catch-up digest", procs=[second])[0]
    assert sent["status"] == "sent" and sent["recipients"] == "1", sent
    assert [c["missed_fire"] for c in second.events("catch_up") if c["job"] == "digest"] == ["2026-11-16T12:00:00Z"]
    assert second.terminate()[0] == 0
    assert len(inbox.received) == 1 and inbox.received[0][1] == ["derm@example.org"]
    assert dw.query("SELECT outcome FROM schedule_state WHERE job = 'digest'") == [("sent",)]


def test_monitor_run_refuses_or_waits_while_another_process_holds_the_lease(dw: DaemonWorld) -> None:
    from monitor.clock import SystemClock
    from monitor.lease import Lease
    from monitor.storage import Storage

    with Storage.open(db_url(dw.db)) as store:
        other = Lease(store, "cycle", purpose="monitor start (daemon cycle)", clock=SystemClock(), seconds=6,
                      host="farm-7", pid=4242)
        other.acquire()
        busy = dw.monitor("run")
        assert busy.returncode == 1
        (line,) = busy.stderr.strip().splitlines()
        assert line.startswith("monitor: error: another monitor process holds the cycle lease: monitor start "
                               "(daemon cycle) on host farm-7, pid 4242, since ")
        assert line.endswith("try again when it is done, or pass --wait SECONDS")
        assert dw.runs() == []  # nothing ran
        status = dw.monitor("status")
        assert status.returncode == 0, status.stderr
        assert "cycle lease: held by monitor start (daemon cycle) on farm-7, pid 4242, since " in status.stdout
        # --wait outlasts the 6 s lease the other process never renews: the run proceeds.
        waited = dw.monitor("run", "--wait", "30")
        assert waited.returncode == 0, waited.stderr
        assert [r["status"] for r in dw.runs()] == ["ok"]
        assert store.lease("cycle").released_at is not None  # released after the run


@pytest.mark.parametrize("old, new, expected", [
    (SHIPPED_SCHEDULE, 'cycle = "30 3 * *"', "schedule.cycle: must be a 5-field cron expression"),
    (SHIPPED_SCHEDULE, 'every = "2 fortnights"', "schedule.every: must be a duration like"),
    ('timezone = "America/New_York"', 'timezone = "America/Gotham"',
     "schedule.timezone: unknown time zone 'America/Gotham'"),
])
def test_start_with_an_invalid_schedule_is_one_line_exit_2(dw: DaemonWorld, old: str, new: str,
                                                           expected: str) -> None:
    text = dw.config.read_text(encoding="utf-8")
    assert old in text
    dw.config.write_text(text.replace(old, new), encoding="utf-8")
    proc = dw.start()
    code = proc.popen.wait(timeout=30)
    lines = proc.log().strip().splitlines()
    assert code == 2 and len(lines) == 1, proc.log()
    assert lines[0].startswith(f"monitor: error: queries.toml: {expected}"), lines[0]
    assert database_untouched(dw.db)  # refused before the database was opened


def test_sigterm_while_a_request_hangs_exits_after_stop_seconds(dw: DaemonWorld) -> None:
    # NCBI accepts the search and then says nothing; the read timeout is 20 s, the shutdown grace 1 s.
    dw.schedule(every="1h", stop="1s", timeout="20")
    dw.standin.inject("timeout", count=1, endpoint="esearch", hang_seconds=15)
    daemon = dw.start()
    wait_for(lambda: dw.standin.requests_for("esearch") and [r for r in dw.runs() if r["status"] == "running"],
             "a hanging search", procs=[daemon])
    code, took = daemon.terminate()
    assert code == 0 and took < 4.0, (code, took, daemon.log()[-2000:])
    (run,) = dw.runs()
    assert run["status"] == "stopped" and "waiting on NCBI" in run["message"], run
    assert daemon.events("abandoned") and dw.query("SELECT name FROM locks WHERE released_at IS NULL") == []
    assert dw.stored() == set()  # the hanging query stored nothing, and nothing else ran
