"""Runs and watermarks: each query's watermark and the run log. Real SQLite files in tmp dirs."""

from __future__ import annotations

import datetime as dt

from monitor.storage import Storage
from monitor.types import QueryReport
from tests.storage_data import LATER, NOW, meta, real_articles  # noqa: F401


def test_watermarks_and_run_log(store: Storage) -> None:
    assert store.query_state("q") is None
    store.set_watermark("q", "term", NOW, (dt.date(2024, 1, 1), dt.date(2026, 11, 22)), run_id=1)
    store.set_watermark("q", "term2", LATER, (dt.date(2026, 10, 1), dt.date(2026, 11, 23)), run_id=2)
    state = store.query_state("q")
    assert (state.term, state.last_success_at, state.window_start) == ("term2", LATER, dt.date(2026, 10, 1))
    run = store.start_run(NOW)
    store.record_query(run, QueryReport("q", "degraded", (dt.date(2026, 1, 1), dt.date(2026, 2, 1)), found=3,
                                        message="PhraseNotFound"))
    store.finish_run(run, LATER, "failed")
    (summary,) = store.recent_runs()
    assert (summary.status, summary.started_at, summary.finished_at) == ("failed", NOW, LATER)
    assert summary.queries[0].message == "PhraseNotFound" and summary.queries[0].found == 3
