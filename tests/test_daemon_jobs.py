"""The daemon's jobs in-process: the same :class:`~monitor.scheduler.Daemon` that `monitor start` runs,
built by :meth:`monitor.app.App.daemon` over the stand-in (in-process, virtual time), with its scheduled
jobs called directly instead of waiting for APScheduler to fire them. The subprocess tests in
test_daemon.py cover what needs a real process: signals, timing, two daemons at once.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from monitor.app import App
from monitor.clock import FixedClock
from monitor.errors import LeaseBusy
from monitor.lease import CYCLE
from tests.conftest import db_url
from tests.eutils_standin import StandIn
from tests.harness import standin_overrides
from tests.test_cycle_e2e import TODAY
from tests.test_feeds import FeedWorld

NOW = dt.datetime(2026, 11, 22, 3, 0, tzinfo=dt.UTC)


class JobWorld(FeedWorld):
    def app(self, now: dt.datetime = NOW) -> App:
        import dataclasses

        overrides = dataclasses.replace(standin_overrides(self.standin, self.time), clock=FixedClock(now))
        return App(self.config, overrides)


@pytest.fixture
def jw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[JobWorld]:
    world = JobWorld(StandIn(today=TODAY), tmp_path)
    for key in ("MONITOR_CONFIG", "MONITOR_NOW", "NCBI_API_KEY", "NCBI_EMAIL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MONITOR_DB_URL", db_url(world.db))
    monkeypatch.setenv("MONITOR_EUTILS_URL", world.base_url)
    yield world


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[dict[str, object]]:
    return [r.fields for r in caplog.records if getattr(r, "fields", {}).get("event") == name]  # type: ignore[attr-defined]


def test_a_scheduled_cycle_stores_papers_logs_each_query_and_records_its_fire(jw: JobWorld,
                                                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="monitor.daemon")
    app = jw.app()
    try:
        daemon = app.daemon()
        daemon._run_cycle()
        state = app.store.job_states()["cycle"]
    finally:
        app.close()
    assert state.outcome == "ok" and state.last_finished_at is not None
    queries = events(caplog, "query")
    assert {q["query"] for q in queries} == {q.name for q in jw.queries}
    assert all(q["status"] == "ok" and q["run"] == 1 for q in queries)
    (cycle,) = events(caplog, "cycle")
    assert cycle["status"] == "ok" and cycle["new"] == len(jw.all_ids) and cycle["feeds"]
    assert [p["pmid"] for p in jw.export()] == jw.all_ids
    assert (jw.out / "main.xml").is_file()


def test_a_cycle_fire_while_another_process_holds_the_lease_is_skipped(jw: JobWorld,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="monitor.daemon")
    holder = jw.app()
    app = jw.app()
    try:
        with holder.lease(CYCLE, "monitor run").held():
            app.daemon()._run_cycle()
            with pytest.raises(LeaseBusy):
                app.run_cycle(purpose="monitor run")
        state = app.store.job_states()["cycle"]
    finally:
        app.close()
        holder.close()
    (skipped,) = events(caplog, "cycle_skipped")
    assert skipped["purpose"] == "monitor run" and state.outcome == "skipped"
    assert jw.export() == []  # nothing ran alongside the holder


def test_a_missed_fire_is_owed_once_and_a_manual_run_covers_it(jw: JobWorld) -> None:
    app = jw.app(now=dt.datetime(2026, 11, 22, 3, 0, tzinfo=dt.UTC))
    try:
        daemon = app.daemon()
        triggers = daemon.triggers(app.clock.now())
        assert daemon.owed(triggers, app.clock.now()) == {"cycle": app.clock.now()}  # never ran at all
        zone = ZoneInfo(app.config.schedule.timezone)
        assert app.config.schedule.cycle.cron == "30 3 * * *"  # the shipped schedule: 03:30 local time
        app.store.record_fire("cycle", dt.datetime(2026, 11, 19, 3, 30, tzinfo=zone))
        owed = daemon.owed(triggers, app.clock.now())
        assert owed == {"cycle": dt.datetime(2026, 11, 20, 3, 30, tzinfo=zone)}  # the first fire after it, once
        app.store.start_run(dt.datetime(2026, 11, 21, 9, 0, tzinfo=dt.UTC))  # a manual run after that fire
        assert daemon.owed(triggers, app.clock.now()) == {}
    finally:
        app.close()


def test_the_digest_job_without_a_server_fails_and_says_so(jw: JobWorld, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="monitor.daemon")
    with jw.config.open("a", encoding="utf-8") as fh:
        fh.write('\n[digest]\nfrom = "m@example.org"\nto = ["t@example.org"]\nsmtp_host = "127.0.0.1"\n'
                 'smtp_port = 9\nsecurity = "none"\ntimeout = 2\n')
    app = jw.app()
    try:
        daemon = app.daemon()
        daemon._run_cycle()
        daemon._run_digest()
        state = app.store.job_states()["digest"]
        log = app.store.digest_log()
    finally:
        app.close()
    (digest,) = events(caplog, "digest")
    assert digest["status"] == "failed" and "127.0.0.1" in str(digest["error"])
    assert state.outcome == "failed"
    assert [d.status for d in log] == ["failed"]  # logged, and its papers stay due


def test_a_skipped_fire_is_retried_once_the_holder_is_gone_unless_it_finished_a_cycle(
        jw: JobWorld, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="monitor.daemon")
    holder, app = jw.app(), jw.app()
    try:
        daemon = app.daemon()
        with holder.lease(CYCLE, "monitor run").held():
            daemon._run_cycle()  # skipped: the holder has the lease (and dies without a finished cycle)
        (skipped,) = events(caplog, "cycle_skipped")
        fired = app.store.job_states()["cycle"].last_fire_at
        assert skipped["retry_at"] is not None
        daemon._retry_cycle(fired)  # no cycle finished since the skipped fire: the standby runs it now
        assert events(caplog, "cycle_retry") and len(jw.export()) == len(jw.all_ids)
        daemon._retry_cycle(fired)  # a second look finds that cycle: nothing more to do
        assert events(caplog, "cycle_retry_not_needed")
    finally:
        app.close()
        holder.close()
