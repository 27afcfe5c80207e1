"""The database schema: every table, index and the full-text index's name, in one place.

Kept in step with the Alembic migrations in ``monitor/migrations`` (``tests/test_storage_schema.py`` compares
them). Each aggregate module of :mod:`monitor.storage` reads and writes its own tables through these
definitions; nothing outside the package sees them.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

metadata = sa.MetaData()

papers = sa.Table(
    "papers",
    metadata,
    sa.Column("pmid", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("status", sa.String(40)),
    sa.Column("deleted", sa.Boolean, nullable=False, default=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("doi", sa.String(255), index=True),
    sa.Column("year", sa.Integer),
    sa.Column("sort_date", sa.Date),
    sa.Column("date_revised", sa.Date),
    sa.Column("retracted", sa.Boolean, nullable=False, default=False),
    sa.Column("data", sa.Text, nullable=False),  # Article.to_dict() as JSON
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
)

# What the tagger reads of each paper (tag_input_json()), written when the paper is stored or revised; a
# retag reads it and never writes it.
paper_tag_inputs = sa.Table(
    "paper_tag_inputs",
    metadata,
    sa.Column("pmid", sa.BigInteger, sa.ForeignKey("papers.pmid", ondelete="CASCADE"), primary_key=True),
    sa.Column("tag_input", sa.Text, nullable=False),
)

# One row per tagged paper. Narrow on purpose: a retag rewrites these rows and nothing wider.
paper_tagging = sa.Table(
    "paper_tagging",
    metadata,
    sa.Column("pmid", sa.BigInteger, sa.ForeignKey("papers.pmid", ondelete="CASCADE"), primary_key=True),
    sa.Column("tagging", sa.Text, nullable=False),  # tagging_json(): evidence included, version not
    sa.Column("taxonomy_version", sa.String(80)),
    sa.Column("relevance", sa.Float),
    sa.Column("gut_skin_relevant", sa.Boolean),
    sa.Index("ix_paper_tagging_relevant", "gut_skin_relevant", "relevance"),
)

paper_tags = sa.Table(
    "paper_tags",
    metadata,
    sa.Column("pmid", sa.BigInteger, sa.ForeignKey("papers.pmid", ondelete="CASCADE"), primary_key=True),
    sa.Column("kind", sa.String(20), primary_key=True),  # condition | intervention | design
    sa.Column("tag", sa.String(64), primary_key=True),
    sa.Index("ix_paper_tags_tag", "tag", "pmid"),
)

paper_queries = sa.Table(
    "paper_queries",
    metadata,
    sa.Column("pmid", sa.BigInteger, sa.ForeignKey("papers.pmid", ondelete="CASCADE"), primary_key=True),
    sa.Column("query_name", sa.String(64), primary_key=True),
    sa.Column("first_found_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("run_id", sa.Integer),
    sa.Index("ix_paper_queries_query", "query_name", "first_found_at"),
)

paper_events = sa.Table(
    "paper_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("pmid", sa.BigInteger, sa.ForeignKey("papers.pmid", ondelete="CASCADE"), nullable=False),
    sa.Column("kind", sa.String(40), nullable=False),  # revised | retraction | erratum | … | deleted
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("run_id", sa.Integer),
    sa.Column("detail", sa.Text),
    sa.Index("ix_paper_events_at", "at"),
)

query_state = sa.Table(
    "query_state",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("term", sa.Text, nullable=False),
    sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("window_start", sa.Date, nullable=False),
    sa.Column("window_end", sa.Date, nullable=False),
    sa.Column("run_id", sa.Integer),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    # running | ok | partial | failed | stopped | interrupted | abandoned
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("message", sa.Text),
)

run_queries = sa.Table(
    "run_queries",
    metadata,
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("query_name", sa.String(64), primary_key=True),
    sa.Column("status", sa.String(20), nullable=False),  # ok | degraded | failed
    sa.Column("window_start", sa.Date),
    sa.Column("window_end", sa.Date),
    sa.Column("found", sa.Integer, nullable=False, default=0),
    sa.Column("new", sa.Integer, nullable=False, default=0),
    sa.Column("updated", sa.Integer, nullable=False, default=0),
    sa.Column("deleted", sa.Integer, nullable=False, default=0),
    sa.Column("skipped", sa.Integer, nullable=False, default=0),
    sa.Column("seconds", sa.Float, nullable=False, default=0.0),
    sa.Column("message", sa.Text),
)

# The digest log (migration 0004). One row per digest built for sending; ``status`` is pending (being sent,
# or the process died while sending), sent or failed. A paper or event counts as delivered once it is in a
# digest whose status is ``sent``: that is what makes "every new paper exactly once" survive failed sends.
digests = sa.Table(
    "digests",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
    sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),  # pending | sent | failed
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("recipients", sa.Text, nullable=False),  # JSON list
    sa.Column("message_id", sa.String(255)),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("error", sa.Text),
    sa.Column("message", sa.LargeBinary),  # the email as sent (migration 0007): what a resumed send resends
    sa.Index("ix_digests_status", "status", "period_end"),
)

digest_papers = sa.Table(
    "digest_papers",
    metadata,
    sa.Column("digest_id", sa.Integer, sa.ForeignKey("digests.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("pmid", sa.BigInteger, sa.ForeignKey("papers.pmid", ondelete="CASCADE"), primary_key=True),
    sa.Column("section", sa.String(20), nullable=False),  # relevant | not_relevant
    sa.Index("ix_digest_papers_pmid", "pmid"),
)

digest_events = sa.Table(
    "digest_events",
    metadata,
    sa.Column("digest_id", sa.Integer, sa.ForeignKey("digests.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("event_id", sa.Integer, sa.ForeignKey("paper_events.id", ondelete="CASCADE"), primary_key=True),
    sa.Index("ix_digest_events_event", "event_id"),
)

# Leases (migration 0006): one row per lease. A row whose ``expires_at`` has passed is free: its holder gave
# it up (``released_at``) or stopped renewing it (crashed, killed, or the machine slept).
locks = sa.Table(
    "locks",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(200), nullable=False),  # host/pid/random: unique per process and lease
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("purpose", sa.String(64), nullable=False),  # what the holder is doing: "monitor run", "daemon cycle" …
    sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("released_at", sa.DateTime(timezone=True)),  # given up (the row stays, expired; migration 0007)
)

# Each scheduled job's last fire (migration 0006): what lets a restarted daemon see a fire it missed.
schedule_state = sa.Table(
    "schedule_state",
    metadata,
    sa.Column("job", sa.String(64), primary_key=True),
    sa.Column("last_fire_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_finished_at", sa.DateTime(timezone=True)),
    sa.Column("outcome", sa.String(20)),  # ok | partial | failed | skipped | stopped | not_due | sent …
    sa.Column("message", sa.Text),
)

# Published documents (migration 0009): what the feed publisher wrote, for `monitor serve` on any host that
# shares the database (see monitor.docsync). ``etag``: SHA-256 of ``body``; ``mtime_ns``: the publishing
# file's modification time, so an unchanged file is recognised without reading it.
feed_documents = sa.Table(
    "feed_documents",
    metadata,
    sa.Column("path", sa.String(512), primary_key=True),  # below the feed folder: main.xml, archive/…
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("etag", sa.String(64), nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),  # Last-Modified
    sa.Column("mtime_ns", sa.BigInteger, nullable=False),
)

# The full-text index: an FTS5 virtual table whose rowid is the PMID. Deliberately not in ``metadata``:
# SQLAlchemy cannot describe a virtual table, SQLite owns its shadow tables, and it does not exist on
# PostgreSQL. :func:`include_in_schema_comparison` keeps it out of Alembic's comparisons.
SEARCH_COLUMNS = ("title", "abstract", "keywords", "mesh", "authors")
papers_fts = sa.table("papers_fts", sa.column("rowid"), *(sa.column(c) for c in SEARCH_COLUMNS))
# Newest-first listings (`monitor search` without text, or --sort date) walk this instead of sorting.
ix_papers_sort_date = sa.Index("ix_papers_sort_date", papers.c.sort_date)
# The columns search filters and date order read, so a search joins this narrow index instead of the
# wide rows of `papers` (several KB of JSON each; on a million papers that is most of a broad query).
ix_papers_search = sa.Index("ix_papers_search", papers.c.pmid, papers.c.deleted, papers.c.retracted,
                            papers.c.sort_date, papers.c.first_seen_at)


# PostgreSQL's full-text index (migration 0008): ``paper_search``, one row per indexed paper with a generated
# tsvector. Not in ``metadata`` either (it exists on one dialect only); :mod:`.pgsearch` describes its columns.
PG_SEARCH_TABLE = "paper_search"


def include_in_schema_comparison(obj: Any, name: str | None, type_: str, reflected: bool,
                                 compare_to: Any) -> bool:
    """Alembic ``include_object`` hook: leave the full-text indexes out of metadata comparisons: SQLite's
    FTS5 table and its shadow tables (``papers_fts_data``, ``_idx``, ``_content``, ``_docsize``,
    ``_config``; migration 0005: SQLAlchemy cannot describe a virtual table) and PostgreSQL's
    ``paper_search`` (migration 0008; one dialect only)."""
    if type_ == "table" and name is not None:
        return not (name in ("papers_fts", PG_SEARCH_TABLE) or name.startswith("papers_fts_"))
    if type_ == "index" and name is not None:
        return name not in ("ix_paper_search_document", "ix_paper_search_head", "ix_papers_newest",
                            "ix_paper_tags_lookup")
    return True
