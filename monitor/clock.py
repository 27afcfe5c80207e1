"""Time as an input: the :class:`Clock` everything that needs "now" takes (only the clocks here, and the
scheduler's real-time anchor, read the system time), and dates read from the outside world (HTTP dates).

``MONITOR_NOW`` (ISO 8601) freezes the clock of the CLI, for reproducible runs and end-to-end tests.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Mapping
from typing import Protocol

from .errors import ConfigError


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """Current time, timezone-aware UTC."""
        ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


class FixedClock:
    """A clock that returns ``at`` (and can be moved by tests)."""

    def __init__(self, at: dt.datetime) -> None:
        self.at = ensure_utc(at)

    def now(self) -> dt.datetime:
        return self.at

    def advance(self, **delta: float) -> None:
        self.at = self.at + dt.timedelta(**delta)


def ensure_utc(value: dt.datetime) -> dt.datetime:
    """Naive datetimes are taken as UTC; aware ones are converted to UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def clock_from_env(env: Mapping[str, str] | None = None) -> Clock:
    """``MONITOR_NOW`` set → a fixed clock at that instant, else the system clock."""
    raw = (os.environ if env is None else env).get("MONITOR_NOW")
    if not raw:
        return SystemClock()
    try:
        return FixedClock(dt.datetime.fromisoformat(raw))
    except ValueError:
        raise ConfigError(f"not an ISO 8601 date-time: {raw!r}", key="MONITOR_NOW") from None


class RunningClock:
    """Starts at ``at`` and runs forward in real (monotonic) time: ``MONITOR_NOW`` for ``monitor start``,
    where a frozen clock would make every scheduled cycle think no time had passed since the last."""

    def __init__(self, at: dt.datetime, monotonic: Callable[[], float] | None = None) -> None:
        import time

        self._monotonic = monotonic or time.monotonic
        self.start = ensure_utc(at)
        self._t0 = self._monotonic()

    def now(self) -> dt.datetime:
        return self.start + dt.timedelta(seconds=self._monotonic() - self._t0)


def running_clock_from_env(env: Mapping[str, str] | None = None) -> Clock:
    """Like :func:`clock_from_env`, but a ``MONITOR_NOW`` clock keeps running (for the daemon)."""
    clock = clock_from_env(env)
    return RunningClock(clock.at) if isinstance(clock, FixedClock) else clock


def parse_http_date(value: str) -> dt.datetime | None:
    """An RFC 9110 HTTP date (``Wed, 21 Oct 2026 07:28:00 GMT`` and the obsolete forms) as aware UTC, or
    None if it is not one."""
    import email.utils

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return ensure_utc(when)
