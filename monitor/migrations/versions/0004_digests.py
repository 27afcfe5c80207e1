"""The digest log: which papers and status-change events went into which digest, and whether it was sent.

Revision ID: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "digests",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("recipients", sa.Text, nullable=False),
        sa.Column("message_id", sa.String(255)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("error", sa.Text),
    )
    op.create_index("ix_digests_status", "digests", ["status", "period_end"])
    op.create_table(
        "digest_papers",
        sa.Column("digest_id", sa.Integer, sa.ForeignKey("digests.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("pmid", sa.BigInteger, sa.ForeignKey("papers.pmid", ondelete="CASCADE"), primary_key=True),
        sa.Column("section", sa.String(20), nullable=False),
    )
    op.create_index("ix_digest_papers_pmid", "digest_papers", ["pmid"])
    op.create_table(
        "digest_events",
        sa.Column("digest_id", sa.Integer, sa.ForeignKey("digests.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("event_id", sa.Integer, sa.ForeignKey("paper_events.id", ondelete="CASCADE"),
                  primary_key=True),
    )
    op.create_index("ix_digest_events_event", "digest_events", ["event_id"])


def downgrade() -> None:
    op.drop_table("digest_events")
    op.drop_table("digest_papers")
    op.drop_table("digests")
