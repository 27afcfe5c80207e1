"""Papers and revisions: the revision rule, idempotent upserts, links to queries, deletions and status-change events. Real SQLite files in tmp dirs."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from monitor.storage import Storage
from monitor.storage.papers import decide
from monitor.types import Article, Correction, Deletion, PublicationType
from tests.storage_data import LATER, NOW, meta, real_articles


@pytest.mark.parametrize(("old", "new_version", "new_revised", "new_hash", "expected"), [
    (None, 1, dt.date(2020, 1, 1), "h", "new"),
    (meta(), 1, dt.date(2020, 1, 1), "h", "unchanged"),
    (meta(), 2, dt.date(2019, 1, 1), "x", "updated"),   # a higher version wins even with an older date
    (meta(version=2), 1, dt.date(2021, 1, 1), "x", "older"),
    (meta(), 1, dt.date(2021, 1, 1), "x", "updated"),
    (meta(), 1, dt.date(2019, 1, 1), "x", "older"),      # a stale copy never rolls a paper back
    (meta(), 1, dt.date(2020, 1, 1), "x", "updated"),    # same date, different content: NCBI's copy wins
    (meta(deleted=True), 1, dt.date(2020, 1, 1), "h", "updated"),  # a withdrawn paper that comes back
    (meta(revised=None), 1, None, "h", "unchanged"),
])
def test_decide(old, new_version, new_revised, new_hash, expected) -> None:
    article = Article(pmid="1", version=new_version, date_revised=new_revised)
    assert decide(old, article, new_hash) == expected


def test_store_is_idempotent_and_links_each_query_once(store: Storage) -> None:
    a, b = real_articles()
    first = store.store_batch([a, b], query="q1", now=NOW, run_id=1)
    assert sorted(first.new) == sorted([a.pmid, b.pmid]) and not first.updated
    again = store.store_batch([a, b], query="q1", now=LATER, run_id=2)
    assert not again.new and not again.updated and sorted(again.unchanged) == sorted([a.pmid, b.pmid])
    store.store_batch([a], query="q2", now=LATER, run_id=2)
    papers = {p.article.pmid: p for p in store.iter_papers()}
    assert papers[a.pmid].queries == (("q1", NOW), ("q2", LATER))
    assert papers[b.pmid].queries == (("q1", NOW),)
    assert papers[a.pmid].article == a  # the stored copy round-trips exactly
    assert papers[a.pmid].first_seen_at == NOW and papers[a.pmid].updated_at == NOW
    assert store.count_papers() == 2


def test_revision_updates_and_records_status_events(store: Storage) -> None:
    a, _ = real_articles()
    store.store_batch([a], query="q", now=NOW)
    retracted = dataclasses.replace(
        a, version=a.version + 1,
        corrections=a.corrections + (Correction("RetractionIn", "J X. 2026;1:1", "42"),),
        publication_types=a.publication_types + (PublicationType("Retracted Publication", "D016441"),))
    outcome = store.store_batch([retracted], query="q", now=LATER)
    assert outcome.updated == (a.pmid,)
    (paper,) = list(store.iter_papers())
    assert paper.article.is_retracted and paper.updated_at == LATER and paper.first_seen_at == NOW
    assert [(k, at) for _, k, at in store.events(a.pmid)] == [("retraction", LATER), ("revised", LATER)]
    # The older copy arriving late does not roll it back.
    assert store.store_batch([a], query="q", now=LATER).unchanged == (a.pmid,)
    assert next(store.iter_papers()).article.version == a.version + 1


def test_deletion_marks_withdrawn_once(store: Storage) -> None:
    a, b = real_articles()
    store.store_batch([a, b], query="q", now=NOW)
    assert store.store_batch([Deletion(a.pmid), Deletion("123")], query="q", now=LATER).deleted == (a.pmid,)
    assert store.store_batch([Deletion(a.pmid)], query="q", now=LATER).deleted == ()
    assert store.count_papers() == 1 and store.count_papers(include_deleted=True) == 2
    assert [p.article.pmid for p in store.iter_papers(include_deleted=False)] == [b.pmid]
    assert [k for _, k, _ in store.events(a.pmid)] == ["deleted"]


def test_known_pmids_and_link(store: Storage) -> None:
    a, b = real_articles()
    store.store_batch([a], query="q1", now=NOW)
    assert store.known_pmids([a.pmid, b.pmid, "1"]) == {a.pmid}
    assert store.link([a.pmid], "q2", LATER) == 1
    assert store.link([a.pmid], "q2", LATER) == 0
    many = [str(i) for i in range(1, 2500)]  # more than one IN (...) chunk
    assert store.known_pmids(many + [a.pmid]) == {a.pmid}
