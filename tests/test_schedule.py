"""Schedule maths without waiting: next fire times across the US daylight-saving changes, the weekly digest,
the interval form, cron's weekday numbering, missed fires; and the [schedule] config table's errors."""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from monitor.config import DEFAULT_CYCLE_CRON, DEFAULT_DIGEST_CRON, load_config
from monitor.errors import ConfigError
from monitor.schedule import (
    JobSchedule,
    cron_trigger,
    cron_weekdays,
    interval_trigger,
    missed_fire,
    next_fire_times,
    parse_duration,
    trigger_for,
)
from tests.conftest import SHIPPED_CONFIG

NY = ZoneInfo("America/New_York")
UTC = dt.UTC


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def test_default_cycle_fires_once_a_day_at_0330_eastern_across_both_dst_changes() -> None:
    trigger = cron_trigger(DEFAULT_CYCLE_CRON, "America/New_York")
    # 2026: DST starts Sunday 8 March (02:00 EST → 03:00 EDT), ends Sunday 1 November (02:00 EDT → 01:00 EST).
    for start, days in ((utc(2026, 3, 5), 7), (utc(2026, 10, 29), 7)):
        fires = next_fire_times(trigger, start, days)
        local = [f.astimezone(NY) for f in fires]
        assert [(t.hour, t.minute) for t in local] == [(3, 30)] * days  # the same wall-clock time every day
        assert [t.date() for t in local] == [local[0].date() + dt.timedelta(days=i) for i in range(days)]
        # 03:30 EST is 08:30 UTC, 03:30 EDT 07:30 UTC: the UTC instant moves with the offset.
        offsets = [t.utcoffset() for t in local]
        as_utc = [f.astimezone(UTC) for f in fires]
        for _t, off, u in zip(local, offsets, as_utc):
            assert (u.hour, u.minute) == ((8, 30) if off == dt.timedelta(hours=-5) else (7, 30))
    spring = [f.astimezone(NY) for f in next_fire_times(trigger, utc(2026, 3, 7), 2)]
    assert [f.utcoffset() for f in spring] == [dt.timedelta(hours=-5), dt.timedelta(hours=-4)]
    autumn = [f.astimezone(NY) for f in next_fire_times(trigger, utc(2026, 10, 31), 2)]
    assert [f.utcoffset() for f in autumn] == [dt.timedelta(hours=-4), dt.timedelta(hours=-5)]
    # The fire is inside NCBI's off-peak window (21:00-05:00 Eastern) in both seasons.
    assert all(f.hour < 5 for f in spring + autumn)


def test_times_in_the_dst_gap_and_overlap_behave_as_documented() -> None:
    """Why the default avoids 01:00-03:00 local: 02:30 does not exist on 8 March 2026 (APScheduler fires
    at the instant 02:30 EST would be, 03:30 EDT), and 01:30 happens twice on 1 November (it fires twice)."""
    gap = cron_trigger("30 2 * * *", "America/New_York")
    fires = next_fire_times(gap, utc(2026, 3, 7, 12), 3)
    assert [f.astimezone(UTC) for f in fires] == [utc(2026, 3, 8, 7, 30), utc(2026, 3, 9, 6, 30),
                                                  utc(2026, 3, 10, 6, 30)]
    overlap = cron_trigger("30 1 * * *", "America/New_York")
    fires = next_fire_times(overlap, utc(2026, 10, 31, 12), 3)
    assert [f.astimezone(UTC) for f in fires] == [utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 6, 30),
                                                  utc(2026, 11, 2, 6, 30)]


def test_weekly_digest_is_monday_0700_local_in_the_configured_zone() -> None:
    for zone in ("America/New_York", "Europe/Berlin", "Australia/Sydney"):
        trigger = cron_trigger(DEFAULT_DIGEST_CRON, zone)
        fires = next_fire_times(trigger, utc(2026, 3, 1), 10)  # across the US and EU spring changes
        local = [f.astimezone(ZoneInfo(zone)) for f in fires]
        assert all(t.weekday() == 0 and (t.hour, t.minute) == (7, 0) for t in local), local
        assert all(b - a in (dt.timedelta(days=7),) for a, b in itertools.pairwise(local))  # local dates a week apart
    ny = next_fire_times(cron_trigger(DEFAULT_DIGEST_CRON, "America/New_York"), utc(2026, 3, 1), 2)
    # A week apart on the calendar but 167 hours apart in real time across the spring change.
    assert ny[1] - ny[0] == dt.timedelta(days=7) and (ny[1].timestamp() - ny[0].timestamp()) == 167 * 3600


def test_cron_weekday_numbers_mean_what_they_mean_in_cron() -> None:
    assert cron_weekdays("1") == "mon" and cron_weekdays("mon") == "mon" and cron_weekdays("Monday") == "mon"
    assert cron_weekdays("0") == cron_weekdays("7") == cron_weekdays("sun") == "sun"
    assert cron_weekdays("1-5") == "mon,tue,wed,thu,fri"
    assert cron_weekdays("5-7") == "fri,sat,sun"
    assert cron_weekdays("*/2") == "tue,thu,sat,sun"  # cron: 0,2,4,6 = Sunday, Tuesday, Thursday, Saturday
    assert cron_weekdays("0-6") == "*" and cron_weekdays("*") == "*"
    sunday = next_fire_times(cron_trigger("0 7 * * 0", "UTC"), utc(2026, 11, 22, 8), 1)[0]  # after Sun 07:00
    assert sunday.weekday() == 6 and sunday.date() == dt.date(2026, 11, 29)
    for bad in ("8", "mon-", "fri-mon", "funday", "*/0"):
        with pytest.raises(ValueError):
            cron_weekdays(bad)


def test_interval_form_and_durations() -> None:
    assert [parse_duration(v) for v in ("30s", "2s", "15m", "6h", "1d", "1.5 hours", 45, 2.5)] == [
        30, 2, 900, 21600, 86400, 5400, 45, 2.5]
    for bad in ("", "soon", "-3s", "0s", "3 fortnights", True):
        with pytest.raises(ValueError):
            parse_duration(bad)  # type: ignore[arg-type]
    start = utc(2026, 3, 8, 6, 59, 58)  # two seconds before the New York DST change
    trigger = interval_trigger(2, "America/New_York", start)
    fires = next_fire_times(trigger, start, 4)
    assert [f.timestamp() - start.timestamp() for f in fires] == [2, 4, 6, 8]  # real seconds, DST or not
    job = JobSchedule(None, 30.0, "UTC")
    assert job.describe() == "every 30s"
    assert next_fire_times(trigger_for(job, start), start, 1) == [start + dt.timedelta(seconds=30)]


def test_missed_fire_after_downtime() -> None:
    daily = cron_trigger(DEFAULT_CYCLE_CRON, "America/New_York")
    last = utc(2026, 11, 20, 8, 30)  # Friday's 03:30 EST fire
    assert missed_fire(daily, last, utc(2026, 11, 21, 8, 0)) is None  # Saturday's fire not yet due
    assert missed_fire(daily, last, utc(2026, 11, 21, 8, 30)) == utc(2026, 11, 21, 8, 30)
    assert missed_fire(daily, last, utc(2026, 11, 24, 12)) == utc(2026, 11, 21, 8, 30)  # three missed: one run
    assert missed_fire(daily, None, utc(2026, 11, 24, 12)) == utc(2026, 11, 24, 12)  # never ran: owed now
    every = interval_trigger(2, "UTC", utc(2026, 1, 1))
    assert missed_fire(every, utc(2026, 1, 1, 0, 0, 10), utc(2026, 1, 1, 0, 0, 11)) is None
    assert missed_fire(every, utc(2026, 1, 1, 0, 0, 10), utc(2026, 1, 1, 0, 5)) == utc(2026, 1, 1, 0, 0, 12)


# ---------------------------------------------------------------- [schedule] in queries.toml

BASE = """
[[queries]]
name = "q"
term = 'probiotic*[tiab]'
since = 2024-01-01
"""


def load(tmp_path: Path, table: str):
    path = tmp_path / "queries.toml"
    path.write_text(table + "\n" + BASE, encoding="utf-8")
    return load_config(path, env={})


def test_schedule_defaults_and_values(tmp_path: Path) -> None:
    default = load(tmp_path, "").schedule
    assert (default.cycle.cron, default.digest.cron, default.timezone) == (
        "30 3 * * *", "0 7 * * mon", "America/New_York")
    assert default.lease_seconds == 120 and default.heartbeat_seconds == 30
    custom = load(tmp_path, '[schedule]\nevery = "2s"\ntimezone = "Europe/Berlin"\ndigest = "0 8 * * 1"\n'
                            'lease_seconds = "3s"\nstop_seconds = 1\nmisfire_grace_seconds = "2h"').schedule
    assert custom.cycle == JobSchedule(None, 2.0, "Europe/Berlin")
    assert custom.digest == JobSchedule("0 8 * * 1", None, "Europe/Berlin")
    assert (custom.lease_seconds, custom.stop_seconds, custom.misfire_grace_seconds) == (3.0, 1.0, 7200.0)
    cron = load(tmp_path, '[schedule]\ncycle = "0  22 * * 1-5"').schedule
    assert cron.cycle == JobSchedule("0 22 * * 1-5", None, "America/New_York")
    assert load_config(SHIPPED_CONFIG, env={}).schedule == default  # the shipped file states the defaults


@pytest.mark.parametrize("table, expected", [
    ('cycle = "30 3 * *"', "schedule.cycle: must be a 5-field cron expression"),
    ('cycle = "61 3 * * *"', "schedule.cycle: not a valid cron expression '61 3 * * *'"),
    ('cycle = "0 3 1 * mon"', "schedule.cycle: '0 3 1 * mon' restricts both the day of month and the day of week"),
    ('digest = "0 7 * * funday"', "schedule.digest: not a valid cron expression '0 7 * * funday': bad day of week"),
    ('timezone = "Mars/Olympus"', "schedule.timezone: unknown time zone 'Mars/Olympus'"),
    ('timezone = "../etc/passwd"', "schedule.timezone: unknown time zone"),
    ('every = "soon"', "schedule.every: must be a duration like"),
    ('every = "0.5s"', "schedule.every: must be between 1 second and 366 days"),
    ('every = true', "schedule.every: must be a string or an integer or a number, not a boolean"),
    ('every = "2s"\ncycle = "0 3 * * *"', "schedule.every: give either cycle (a cron expression) or every"),
    ('lease_seconds = 0', "schedule.lease_seconds: must be between 1 and 86400 seconds"),
    ('stop_seconds = "forever"', "schedule.stop_seconds: must be a duration like"),
    ('evry = "2s"', "schedule.evry: unknown key"),
])
def test_schedule_errors_name_the_key(tmp_path: Path, table: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, "[schedule]\n" + table)
    message = str(info.value)
    assert message.startswith("queries.toml: " + expected), message
    assert "\n" not in message
