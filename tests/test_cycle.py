"""The cycle's window rules (pure functions of query, stored state, today and config)."""

from __future__ import annotations

import datetime as dt

from monitor.config import Query
from monitor.cycle import plan_window, revision_start
from monitor.types import QueryState

TODAY = dt.date(2026, 11, 22)
Q = Query(name="axis", term="microbiome[tiab]", since=dt.date(2024, 1, 1))


def state(last: dt.datetime, term: str = Q.term) -> QueryState:
    return QueryState("axis", term, last, dt.date(2024, 1, 1), last.date())


LAST = dt.datetime(2026, 11, 20, 3, 0, tzinfo=dt.UTC)


def test_first_run_backfills_from_since() -> None:
    w = plan_window(Q, None, TODAY, 30)
    assert (w.start, w.end, w.backfill, w.advance_watermark) == (Q.since, TODAY, True, True)


def test_later_runs_look_back_from_the_last_success() -> None:
    w = plan_window(Q, state(LAST), TODAY, 30)
    assert (w.start, w.end, w.backfill, w.advance_watermark) == (dt.date(2026, 10, 21), TODAY, False, True)
    assert plan_window(Q, state(LAST), TODAY, 0).start == LAST.date()


def test_changed_term_backfills_again() -> None:
    w = plan_window(Q, state(LAST, term="old[tiab]"), TODAY, 30)
    assert (w.start, w.backfill) == (Q.since, True)


def test_explicit_since_keeps_the_watermark_when_it_would_leave_a_gap() -> None:
    earlier = plan_window(Q, state(LAST), TODAY, 30, since=dt.date(2025, 1, 1))
    assert (earlier.start, earlier.advance_watermark) == (dt.date(2025, 1, 1), True)
    later = plan_window(Q, state(LAST), TODAY, 30, since=dt.date(2026, 11, 1))
    assert (later.start, later.advance_watermark) == (dt.date(2026, 11, 1), False)
    first_later = plan_window(Q, None, TODAY, 30, since=dt.date(2025, 6, 1))
    assert first_later.advance_watermark is False  # would skip 2024-01-01..2025-05-31 for good


def test_window_never_starts_in_the_future() -> None:
    future = Query(name="f", term="x[tiab]", since=dt.date(2030, 1, 1))
    assert plan_window(future, None, TODAY, 30).start == TODAY


def test_revision_window_starts_the_day_before_the_last_success() -> None:
    assert revision_start(state(LAST)) == dt.date(2026, 11, 19)
