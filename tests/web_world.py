"""A database with real gut–skin content for the web app's tests (and the screenshots in docs/ that the
browser tests write with UPDATE_SCREENSHOTS=1).

The E-utilities stand-in serves real PubMed records; fifty of them are dressed with the title and abstract
of the fifty labelled gut–skin records (tests/data/tagging, real PubMed text), so the shipped tagger finds
most of them relevant on its own, across many conditions, interventions and designs. Two `monitor run`s a
month apart (some records appear only before the second), one dressed record carrying a hostile title,
one relevant paper retracted in the second run: papers found in two months, a status history, and text
that must stay text.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from lxml import etree

from tests.conftest import db_url
from tests.eutils_standin import StandIn
from tests.tagging_data import LABELLED
from tests.test_cycle_e2e import NOW, TODAY, World, with_retraction
from tests.test_feeds import dress

HOSTILE = '<script>alert("x")</script> & <b>bold</b> '
LATER = "2026-12-22T03:00:00+00:00"
LATER_DAY = dt.date(2026, 12, 22)


class WebWorld(World):
    """The world after both runs (``build``); ``hostile`` is the PMID of the paper with the hostile title,
    ``retracted`` the one retracted in the second run, ``late`` the PMIDs first found in the second."""

    def __init__(self, standin: StandIn, tmp: Path) -> None:
        super().__init__(standin, tmp)
        rows = [json.loads(line) for line in LABELLED.read_text(encoding="utf-8").splitlines() if line.strip()]
        self.dressed = self.all_ids[:len(rows)]
        for pmid, row in zip(self.dressed, rows):
            dress(standin, pmid, row)
        self.hostile = self.dressed[0]
        root = etree.fromstring(standin.record_xml(self.hostile))
        title = root.find(".//ArticleTitle")
        assert title is not None
        title.text = HOSTILE + (title.text or "")
        standin.revise(self.hostile, etree.tostring(root), mdat=TODAY - dt.timedelta(days=30))
        self.late = self.dressed[-10:]
        self.retracted = ""

    def build(self) -> WebWorld:
        self.standin.hide(self.late)
        first = self.monitor("run", key=True)
        assert first.returncode == 0, first.stderr
        relevant = [p["pmid"] for p in self.export() if p["gut_skin_relevant"]]
        self.retracted = next(p for p in relevant if p != self.hostile)
        self.standin.today = LATER_DAY
        self.standin.publish(self.late)
        for pmid in self.late:
            self.standin.set_dates(pmid, edat=LATER_DAY)
        self.standin.revise(self.retracted, with_retraction(self.standin.record_xml(self.retracted).decode()).encode())
        second = self.monitor("run", key=True, now=LATER)
        assert second.returncode == 0, second.stderr
        return self

    def env(self) -> dict[str, str]:
        """What `monitor serve` needs to read this world's database (no network)."""
        return {"MONITOR_CONFIG": str(self.config), "MONITOR_DB_URL": db_url(self.db), "MONITOR_NOW": LATER}


__all__ = ["LATER", "NOW", "WebWorld"]
