"""Initial schema: papers, paper↔query links, status events, watermarks, run log.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "papers",
        sa.Column("pmid", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(40)),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("doi", sa.String(255)),
        sa.Column("year", sa.Integer),
        sa.Column("sort_date", sa.Date),
        sa.Column("date_revised", sa.Date),
        sa.Column("retracted", sa.Boolean, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_papers_doi", "papers", ["doi"])
    op.create_table(
        "paper_queries",
        sa.Column("pmid", sa.BigInteger, sa.ForeignKey("papers.pmid", ondelete="CASCADE"), primary_key=True),
        sa.Column("query_name", sa.String(64), primary_key=True),
        sa.Column("first_found_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_id", sa.Integer),
    )
    op.create_index("ix_paper_queries_query", "paper_queries", ["query_name", "first_found_at"])
    op.create_table(
        "paper_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("pmid", sa.BigInteger, sa.ForeignKey("papers.pmid", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_id", sa.Integer),
        sa.Column("detail", sa.Text),
    )
    op.create_index("ix_paper_events_at", "paper_events", ["at"])
    op.create_table(
        "query_state",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("term", sa.Text, nullable=False),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_start", sa.Date, nullable=False),
        sa.Column("window_end", sa.Date, nullable=False),
        sa.Column("run_id", sa.Integer),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("message", sa.Text),
    )
    op.create_table(
        "run_queries",
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("query_name", sa.String(64), primary_key=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("window_start", sa.Date),
        sa.Column("window_end", sa.Date),
        sa.Column("found", sa.Integer, nullable=False),
        sa.Column("new", sa.Integer, nullable=False),
        sa.Column("updated", sa.Integer, nullable=False),
        sa.Column("deleted", sa.Integer, nullable=False),
        sa.Column("skipped", sa.Integer, nullable=False),
        sa.Column("seconds", sa.Float, nullable=False),
        sa.Column("message", sa.Text),
    )


def downgrade() -> None:
    for table in ("run_queries", "runs", "query_state", "paper_events", "paper_queries", "papers"):
        op.drop_table(table)
