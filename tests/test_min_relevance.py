"""``[tagging] min_relevance``: the relevance score the feeds and the weekly digest require (issue 17).

The config key is read and checked; the store's feed rows and the digest's paper list keep exactly the
papers whose stored relevance score reaches it (a real SQLite file, taggings saved as the tagger saves
them).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from monitor import digest
from monitor.config import load_config
from monitor.errors import ConfigError
from monitor.storage import Storage
from monitor.types import Article, Tagging
from tests.digest_data import vocabulary

NOW = dt.datetime(2026, 11, 22, 12, tzinfo=dt.UTC)
CONFIG = """
[tagging]
{line}

[[queries]]
name = "q"
term = 'psoriasis[tiab]'
since = 2024-01-01
"""


def write(tmp_path: Path, line: str) -> Path:
    path = tmp_path / "queries.toml"
    path.write_text(CONFIG.format(line=line), encoding="utf-8")
    return path


def test_default_and_configured_threshold(tmp_path):
    assert load_config(write(tmp_path, "")).tagging.min_relevance == 0.5
    assert load_config(write(tmp_path, "min_relevance = 0.8")).tagging.min_relevance == 0.8
    assert load_config(write(tmp_path, "min_relevance = 1")).tagging.min_relevance == 1.0


@pytest.mark.parametrize("line,message", [
    ("min_relevance = 1.5", "tagging.min_relevance: must be between 0 and 1, not 1.5"),
    ('min_relevance = "high"', "tagging.min_relevance: must be a number"),
])
def test_bad_threshold_names_the_key(tmp_path, line, message):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, line))
    assert message in str(err.value) and err.value.exit_code == 2


def _tagging(relevance: float) -> Tagging:
    return Tagging(conditions=("psoriasis",), interventions=("probiotics",), gut_skin_relevant=relevance >= 0.5,
                   relevance=relevance, taxonomy_version="t1")


@pytest.fixture()
def store(tmp_path):
    s = Storage.open(f"sqlite:///{tmp_path}/monitor.sqlite3")
    s.store_batch([Article(pmid=str(p), title=f"Paper {p}") for p in (1, 2, 3)], query="q", now=NOW)
    s.save_taggings({"1": _tagging(0.95), "2": _tagging(0.6), "3": _tagging(0.2)})
    yield s
    s.close()


def test_feed_rows_follow_the_threshold(store):
    assert [r.pmid for r in store.feed_rows()] == ["1", "2"]
    assert [r.pmid for r in store.feed_rows(0.9)] == ["1"]
    assert [r.pmid for r in store.feed_rows(0.0)] == ["1", "2", "3"]


def test_digest_lists_papers_over_the_threshold(store):
    papers = list(store.iter_papers())
    period = (NOW - dt.timedelta(days=7), NOW)
    for threshold, listed in ((0.5, ("1", "2")), (0.9, ("1",))):
        built = digest.build(papers, [], [], vocabulary=vocabulary(), queries=["q"], period=period, now=NOW,
                             max_papers=50, min_relevance=threshold)
        assert built.relevant == listed
        assert set(built.not_relevant) == {"1", "2", "3"} - set(listed)
