"""Shared by the storage tests: two real PubMed records, fixed times (the ``store`` fixture is in conftest)."""

from __future__ import annotations

import datetime as dt

from monitor import pubmed
from monitor.types import Article, StoredMeta
from tests.conftest import DATA

NOW = dt.datetime(2026, 11, 22, 3, 0, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(days=1)


def real_articles() -> list[Article]:
    items = pubmed.parse((DATA / "efetch" / "biopython" / "pubmed2.xml").read_bytes())
    arts = [a for a in items if isinstance(a, Article)]
    assert len(arts) == 2
    return arts


def meta(version: int = 1, revised: dt.date | None = dt.date(2020, 1, 1), digest: str = "h",
         deleted: bool = False) -> StoredMeta:
    return StoredMeta(version, revised, digest, deleted)
