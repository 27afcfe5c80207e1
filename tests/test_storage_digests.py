"""The digest log and the reads for feeds: only a sent digest delivers its papers and events; the feed
rows are the relevant, not withdrawn papers with their tags and queries. Real SQLite files in tmp dirs."""

from __future__ import annotations

import dataclasses
import datetime as dt

from monitor.storage import Storage
from monitor.types import Correction, Deletion, Tagging
from tests.storage_data import LATER, NOW, real_articles

WEEK = dt.timedelta(days=7)


def relevant(conditions: tuple[str, ...] = ("psoriasis",)) -> Tagging:
    return Tagging(conditions=conditions, interventions=("probiotics",), gut_skin_relevant=True, relevance=0.9,
                   taxonomy_version="t1")


def test_only_a_sent_digest_delivers_its_papers(store: Storage) -> None:
    a, b = real_articles()
    store.store_batch([a, b], query="q", now=NOW, tagger=lambda _: relevant())
    assert [p.article.pmid for p in store.papers_first_found(NOW - WEEK, NOW)] == sorted([a.pmid, b.pmid], key=int)

    failed = store.begin_digest(created_at=NOW, period=(NOW - WEEK, NOW), subject="s", recipients=["x@y.org"],
                                message_id="<1@m>", papers_by_section={a.pmid: "relevant"}, event_ids=[])
    store.finish_digest(failed, "failed", NOW, "SMTP down")
    assert len(store.papers_first_found(NOW - WEEK, NOW)) == 2  # a failed send delivered nothing
    assert store.last_sent_digest() is None

    sent = store.begin_digest(created_at=NOW, period=(NOW - WEEK, NOW), subject="s", recipients=["x@y.org"],
                              message_id="<2@m>", papers_by_section={a.pmid: "relevant", b.pmid: "not_relevant"},
                              event_ids=[])
    store.finish_digest(sent, "sent", NOW)
    assert store.papers_first_found(NOW - WEEK, NOW) == []
    assert len(store.papers_first_found(NOW - WEEK, NOW, undelivered_only=False)) == 2
    log = store.digest_log()
    assert [(d.id, d.status, d.papers, d.error) for d in log] == [(sent, "sent", 2, None),
                                                                  (failed, "failed", 1, "SMTP down")]
    last = store.last_sent_digest()
    assert last is not None and last.id == sent and last.recipients == ("x@y.org",)


def test_status_changes_of_delivered_papers_including_a_withdrawal(store: Storage) -> None:
    a, b = real_articles()
    store.store_batch([a, b], query="q", now=NOW)
    sent = store.begin_digest(created_at=NOW, period=(NOW - WEEK, NOW), subject="s", recipients=["x@y.org"],
                              message_id=None, papers_by_section={a.pmid: "relevant", b.pmid: "relevant"},
                              event_ids=[])
    store.finish_digest(sent, "sent", NOW)
    notice = Correction("RetractionIn", "J Test. 2026;1:1", "99999999")
    retracted = dataclasses.replace(a, version=a.version + 1, corrections=(*a.corrections, notice))
    store.store_batch([retracted, Deletion(b.pmid)], query="q", now=LATER)

    changes = store.status_events_of_delivered(NOW, LATER, ["retraction", "deleted"])
    assert [(c.pmid, c.kind, c.notice_pmid) for c in changes] == [(a.pmid, "retraction", "99999999"),
                                                                  (b.pmid, "deleted", None)]
    assert changes[0].title == a.title and changes[0].id > 0
    again = store.begin_digest(created_at=LATER, period=(NOW, LATER), subject="s", recipients=["x@y.org"],
                               message_id=None, papers_by_section={}, event_ids=[c.id for c in changes])
    store.finish_digest(again, "sent", LATER)
    assert store.status_events_of_delivered(NOW, LATER, ["retraction", "deleted"]) == []


def test_feed_rows_are_the_relevant_papers_with_tags_queries_and_fingerprints(store: Storage) -> None:
    a, b = real_articles()
    store.store_batch([a], query="q1", now=NOW, tagger=lambda _: relevant(("psoriasis", "acne")))
    store.store_batch([b], query="q1", now=NOW, tagger=lambda _: Tagging(taxonomy_version="t1"))
    store.link([a.pmid], "q2", LATER)
    (row,) = store.feed_rows()
    assert (row.pmid, row.conditions, row.interventions, row.queries) == (
        a.pmid, ("acne", "psoriasis"), ("probiotics",), ("q1", "q2"))
    assert row.first_seen_at == NOW
    records = store.feed_records([a.pmid])
    record = records[a.pmid]
    assert set(records) == {a.pmid}
    assert f'"pmid":"{a.pmid}"'.encode() in (record.encode() if isinstance(record, str) else record)

    store.save_taggings({a.pmid: relevant(("acne",))})
    (changed,) = store.feed_rows()
    assert changed.fingerprint != row.fingerprint and changed.conditions == ("acne",)
