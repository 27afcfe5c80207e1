"""Schedule maths (pure): cron expressions and ``every`` intervals → APScheduler 3.x triggers, the next
fire times a trigger will produce, and whether a fire was missed while the daemon was down.

No scheduler runs here and nothing reads the clock: every function takes ``now``. :mod:`monitor.scheduler`
wires these triggers into a running APScheduler; :mod:`monitor.config` uses the parsers to validate
``[schedule]`` (a ``ValueError`` from here becomes a :class:`~monitor.errors.ConfigError` naming the key).

Two differences between classic cron and APScheduler 3.x are absorbed here, so a crontab line means what
a user who knows cron expects:
- day-of-week numbers: cron counts 0 (and 7) as Sunday, APScheduler 3.x as Monday. The field is expanded to
  day names before APScheduler sees it (``1-5`` → ``mon,tue,wed,thu,fri``);
- day of month *and* day of week restricted: cron fires when either matches, APScheduler only when both do.
  Such an expression is refused rather than silently run on fewer days.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from .types import JobState, JobStatus

if TYPE_CHECKING:
    from .config import ScheduleConfig


class Trigger(Protocol):
    """What we use of an APScheduler trigger (CronTrigger, IntervalTrigger; the library has no types)."""

    def get_next_fire_time(self, previous_fire_time: dt.datetime | None,
                           now: dt.datetime) -> dt.datetime | None: ...

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|secs|seconds?|m|min|mins|minutes?|h|hours?|d|days?)?\s*$",
                          re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# cron day-of-week numbering: 0 and 7 are Sunday.
_CRON_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_APS_ORDER = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


@dataclass(frozen=True, slots=True)
class JobSchedule:
    """When one job fires: a 5-field crontab expression in ``timezone``, or every ``every_seconds``."""

    cron: str | None
    every_seconds: float | None
    timezone: str

    def describe(self) -> str:
        if self.every_seconds is not None:
            return f"every {format_duration(self.every_seconds)}"
        return f"cron '{self.cron}' ({self.timezone})"


def parse_duration(value: str | int | float) -> float:
    """``"30s"``, ``"5m"``, ``"2h"``, ``"1d"``, ``"1.5 hours"`` or a plain number of seconds → seconds."""
    if isinstance(value, bool):
        raise ValueError("must be a duration like \"30s\", \"15m\", \"6h\" or \"1d\", not a boolean")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION_RE.match(value)
        if not match:
            raise ValueError(f"must be a duration like \"30s\", \"15m\", \"6h\" or \"1d\", not {value!r}")
        unit = (match.group(2) or "s").lower()[0]
        seconds = float(match.group(1)) * _UNIT_SECONDS[unit]
    if not math.isfinite(seconds):
        raise ValueError(f"must be a finite duration like \"30s\", \"15m\", \"6h\" or \"1d\", not {value!r}")
    if seconds <= 0:
        raise ValueError(f"must be longer than zero, not {value!r}")
    return seconds


def format_duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def parse_timezone(name: str) -> ZoneInfo:
    """An IANA zone name (``America/New_York``, ``Europe/Berlin``, ``UTC``)."""
    try:
        if not name or name != name.strip() or name.startswith("/") or ".." in name:
            raise ValueError
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {name!r} (use an IANA name like 'America/New_York' or 'UTC')") \
            from None


def cron_trigger(expr: str, timezone: str) -> Trigger:
    """A 5-field crontab expression (minute hour day-of-month month day-of-week) as a trigger whose fire
    times are wall-clock times in ``timezone``. Raises ``ValueError`` saying what is wrong."""
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"must be a 5-field cron expression 'minute hour day month weekday' like "
                         f"'30 3 * * *', not {expr!r} ({len(fields)} fields)")
    minute, hour, day, month, weekday = fields
    if day not in ("*", "?") and weekday not in ("*", "?"):
        raise ValueError(f"{expr!r} restricts both the day of month and the day of week; cron would fire "
                         "when either matches, APScheduler only when both do: restrict one of them")
    zone = parse_timezone(timezone)
    try:
        trigger: Trigger = CronTrigger(minute=minute, hour=hour, day=day.replace("?", "*"), month=month,
                                       day_of_week=cron_weekdays(weekday), timezone=zone)
    except ValueError as exc:
        raise ValueError(f"not a valid cron expression {expr!r}: {exc}") from None
    if trigger.get_next_fire_time(None, dt.datetime.now(zone)) is None:
        raise ValueError(f"{expr!r} never fires (no date matches it, like 31 February): check the day and month")
    return trigger


def cron_weekdays(field: str) -> str:
    """A crontab day-of-week field (0/7 = Sunday, names, ranges, steps, lists) as APScheduler day names."""
    if field in ("*", "?"):
        return "*"
    days: set[int] = set()
    for token in field.lower().split(","):
        spec, _, step_text = token.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) < 1:
                raise ValueError(f"bad step {step_text!r} in the day-of-week field {field!r}")
            step = int(step_text)
        if spec == "*":
            first, last = 0, 6
        elif "-" in spec:
            a, b = spec.split("-", 1)
            first, last = _cron_day(a, field), _cron_day(b, field, upper=True)
            if first > last:
                raise ValueError(f"day-of-week range {spec!r} runs backwards in {field!r}")
        else:
            first = last = _cron_day(spec, field)
            if step_text:
                last = 6
        days.update(d % 7 for d in range(first, last + 1, step))
    if len(days) == 7:
        return "*"
    return ",".join(name for name in _APS_ORDER if _CRON_DAYS.index(name) in days)


def _cron_day(text: str, field: str, upper: bool = False) -> int:
    if text.isdigit() and 0 <= int(text) <= 7:
        # 7 is Sunday too; as the upper end of a range (5-7) it stays 7 so the range is ascending.
        return int(text) if upper or int(text) != 7 else 0
    if text in _DAY_NAMES:
        return _DAY_NAMES[text]
    raise ValueError(f"bad day of week {text!r} in {field!r} (use 0-7 with 0 and 7 for Sunday, or mon..sun)")


_DAY_NAMES = {**{name: i for i, name in enumerate(_CRON_DAYS)},
              **{full: i for i, full in enumerate(["sunday", "monday", "tuesday", "wednesday", "thursday",
                                                   "friday", "saturday"])}}


def interval_trigger(seconds: float, timezone: str, start: dt.datetime) -> Trigger:
    """Every ``seconds``, the first fire one interval after ``start``."""
    trigger: Trigger = IntervalTrigger(seconds=seconds, start_date=start + dt.timedelta(seconds=seconds),
                                       timezone=parse_timezone(timezone))
    return trigger


def trigger_for(job: JobSchedule, start: dt.datetime) -> Trigger:
    """The trigger of a job; ``start`` anchors an interval (cron needs no anchor)."""
    if job.every_seconds is not None:
        return interval_trigger(job.every_seconds, job.timezone, start)
    assert job.cron is not None
    return cron_trigger(job.cron, job.timezone)


def next_fire_times(trigger: Trigger, now: dt.datetime, count: int = 1) -> list[dt.datetime]:
    """The next ``count`` fire times at or after ``now``, as APScheduler computes them (timezone-aware, in
    the trigger's zone)."""
    out: list[dt.datetime] = []
    previous: dt.datetime | None = None
    while len(out) < count:
        fire = trigger.get_next_fire_time(previous, now)
        if fire is None:
            break
        out.append(fire)
        previous = fire
        now = fire
    return out


def missed_fire(trigger: Trigger, last: dt.datetime | None, now: dt.datetime) -> dt.datetime | None:
    """The first fire time after ``last`` that is already due (≤ ``now``), or None.

    ``last`` is when the job last fired (or the baseline the daemon recorded); ``None`` means the job never
    ran at all, which is owed at once. This is what APScheduler's memory job store cannot know after a
    restart, and what makes a daemon that was down over a fire time run once on start-up.
    """
    if last is None:
        return now
    fire = trigger.get_next_fire_time(last, last)
    if fire is not None and fire <= now:
        return fire
    return None


def job_statuses(schedule: ScheduleConfig, digest_on: bool, states: Mapping[str, JobState],
                 now: dt.datetime) -> tuple[JobStatus, ...]:
    """What `monitor status` says of each scheduled job (pure): its schedule in words, its last fire and the
    next ones. An interval job's next fire is known only once it has fired (then ``due_now`` if overdue)."""
    out = []
    for name, job in (("cycle", schedule.cycle), ("digest", schedule.digest if digest_on else None)):
        state = states.get(name)
        if job is None:
            out.append(JobStatus(name, None, state))
        elif job.every_seconds is not None:
            nxt = state.last_fire_at + dt.timedelta(seconds=job.every_seconds) if state else None
            out.append(JobStatus(name, job.describe(), state, every=True, next_fires=(nxt,) if nxt else (),
                                 due_now=nxt is not None and nxt <= now))
        else:
            fires = tuple(next_fire_times(trigger_for(job, now), now, 3))
            out.append(JobStatus(name, f"cron '{job.cron}'", state, next_fires=fires))
    return tuple(out)
