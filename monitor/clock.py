"""The injected clock. Everything that needs "now" takes a :class:`Clock`; nothing calls ``datetime.now``.

``MONITOR_NOW`` (ISO 8601) freezes the clock of the CLI, for reproducible runs and end-to-end tests.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Callable, Mapping, Protocol

from .errors import ConfigError


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """Current time, timezone-aware UTC."""
        ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc)


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
        return value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)


def clock_from_env(env: Mapping[str, str] | None = None) -> Clock:
    """``MONITOR_NOW`` set → a fixed clock at that instant, else the system clock."""
    raw = (os.environ if env is None else env).get("MONITOR_NOW")
    if not raw:
        return SystemClock()
    try:
        return FixedClock(dt.datetime.fromisoformat(raw))
    except ValueError:
        raise ConfigError(f"not an ISO 8601 date-time: {raw!r}", key="MONITOR_NOW") from None


Sleep = Callable[[float], None]
