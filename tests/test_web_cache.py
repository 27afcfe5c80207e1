"""The web app's cache of aggregate reads: answers from memory while the database is unchanged, and a
commit by any other connection (another process's `monitor run`) is seen by the next request."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
from pathlib import Path

from monitor.storage import Storage
from monitor.tagging import load_taxonomy, tag
from monitor.types import PaperFilter
from monitor.web.cache import CachedReads
from tests.conftest import ROOT, db_url
from tests.tagging_data import LABELLED, row_to_article

NOW = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)


def articles(start: int, n: int) -> list:
    rows = [json.loads(line) for line in LABELLED.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [dataclasses.replace(row_to_article(r), pmid=str(start + i)) for i, r in enumerate(rows[:n])]


def test_cached_counts_hold_until_another_connection_commits(tmp_path: Path) -> None:
    url = db_url(tmp_path / "m.sqlite3")
    tagger = functools.partial(tag, taxonomy=load_taxonomy(ROOT / "taxonomy.toml"))
    writer = Storage.open(url)
    writer.store_batch(articles(31_000_000, 20), query="q", now=NOW, tagger=tagger)
    reader = Storage.open(url, migrate=False)
    cached = CachedReads(reader)
    relevant = PaperFilter(relevant_only=True)
    before = cached.facets(None, relevant)
    assert cached.facets(None, relevant) == before and (cached.hits, cached.misses) == (1, 1)
    assert cached.evidence_map(relevant) == reader.evidence_map(relevant)
    assert cached.trend_counts("condition", relevant) == reader.trend_counts("condition", relevant)

    writer.store_batch(articles(32_000_000, 20), query="q", now=NOW, tagger=tagger)  # another connection commits
    after = cached.facets(None, relevant)
    assert after == reader.facets(None, relevant) and after.total == 2 * before.total > 0
    assert cached.count_matching(None, relevant) == after.total
    reader.close()
    writer.close()


def test_without_a_version_counter_values_live_for_ttl_seconds(tmp_path: Path) -> None:
    class NoVersion:
        calls = 0

        def data_version(self) -> None:
            return None

        def count_matching(self, text: object, filters: PaperFilter) -> int:
            self.calls += 1
            return self.calls

    clock = [0.0]
    store = NoVersion()
    cached = CachedReads(store, ttl=30.0, monotonic=lambda: clock[0])  # type: ignore[arg-type]
    assert cached.count_matching(None, PaperFilter()) == 1
    clock[0] = 29.0
    assert cached.count_matching(None, PaperFilter()) == 1
    clock[0] = 31.0
    assert cached.count_matching(None, PaperFilter()) == 2
