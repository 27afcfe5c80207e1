"""What the feeds read: the relevant papers as the feed planner needs them (first found, fingerprints, tags,
queries) and their stored records, undecoded, for rendering. Read-only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import sqlalchemy as sa

from ..types import FeedRow
from .base import IN_CHUNK, StorageBase, chunks, utc
from .schema import paper_queries, paper_tagging, papers
from .tags import tags_head


class FeedRowsMixin(StorageBase):
    """Reads for :mod:`monitor.feeds`."""

    def feed_rows(self, min_relevance: float = 0.5) -> list[FeedRow]:
        """Every not withdrawn paper whose relevance score reaches ``min_relevance`` (``[tagging]
        min_relevance``) as the feeds plan with it: when it was first found,
        fingerprints of its record and tagging, its conditions, interventions and queries, its tagging JSON
        (not decoded). The record itself is not read. Ordered by PMID."""
        # Plain scans joined here: on a large collection they cost a third of joining and sorting in SQL.
        # The tags come from the head of each tagging's JSON (see tags.tags_part), not from paper_tags rows.
        with self._tx("reading papers for feeds") as conn:
            taggings = dict(conn.execute(sa.select(paper_tagging.c.pmid, paper_tagging.c.tagging)
                                         .where(paper_tagging.c.relevance >= min_relevance)).all())
            listed = conn.execute(sa.select(papers.c.pmid, papers.c.first_seen_at, papers.c.content_hash)
                                  .where(papers.c.deleted.is_(False)).order_by(papers.c.pmid)).all()
            found: dict[int, list[str]] = {}
            for pmid, name in conn.execute(sa.select(paper_queries.c.pmid, paper_queries.c.query_name)
                                           .order_by(paper_queries.c.pmid, paper_queries.c.query_name)).all():
                if pmid in taggings:
                    found.setdefault(pmid, []).append(name)
        out = []
        for pmid, first_seen_at, content_hash in listed:
            text = taggings.get(pmid)
            if text is None:
                continue
            head = tags_head(text)
            out.append(FeedRow(str(pmid), utc(first_seen_at),
                               content_hash + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16],
                               tuple(sorted(head["conditions"])), tuple(sorted(head["interventions"])),
                               tuple(found.get(pmid, ())), text))
        return out

    def feed_records(self, pmids: Iterable[str]) -> dict[str, str | bytes]:
        """The stored record JSON of each paper, not decoded (feed items are rendered from it; SQLite hands
        it over as UTF-8 bytes, which spares decoding hundreds of megabytes into str objects)."""
        ints = {int(p) for p in pmids}
        data = sa.cast(papers.c.data, sa.LargeBinary) if self._fts else papers.c.data  # _fts: SQLite
        with self._tx("reading papers for feeds") as conn:
            if len(ints) > 20 * IN_CHUNK:
                # Much of the collection (a first generation): one pass over the PMID range is far cheaper
                # than hundreds of IN (...) lookups.
                rows = conn.execute(sa.select(papers.c.pmid, data)
                                    .where(papers.c.pmid.between(min(ints), max(ints)))).all()
                return {str(pmid): text for pmid, text in rows if pmid in ints}
            out: dict[str, str | bytes] = {}
            for chunk in chunks(sorted(ints)):
                out.update((str(pmid), text) for pmid, text in conn.execute(
                    sa.select(papers.c.pmid, data).where(papers.c.pmid.in_(chunk))))
            return out
