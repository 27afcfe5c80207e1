"""Tags: each paper's tagging (with evidence) and the taxonomy version that made it; tag rows for filters;
the tagger's input fields of each paper in compact form, so a retag need not decode whole records.

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("papers") as batch:
        batch.add_column(sa.Column("gut_skin_relevant", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("relevance", sa.Float, nullable=False, server_default="0"))
        batch.add_column(sa.Column("taxonomy_version", sa.String(80)))
        batch.add_column(sa.Column("tagging", sa.Text))
        batch.add_column(sa.Column("tag_input", sa.Text))
    op.create_table(
        "paper_tags",
        sa.Column("pmid", sa.BigInteger, sa.ForeignKey("papers.pmid", ondelete="CASCADE"), primary_key=True),
        sa.Column("kind", sa.String(20), primary_key=True),
        sa.Column("tag", sa.String(64), primary_key=True),
    )
    op.create_index("ix_paper_tags_tag", "paper_tags", ["tag", "pmid"])


def downgrade() -> None:
    op.drop_index("ix_paper_tags_tag", "paper_tags")
    op.drop_table("paper_tags")
    with op.batch_alter_table("papers") as batch:
        for column in ("tag_input", "tagging", "taxonomy_version", "relevance", "gut_skin_relevant"):
            batch.drop_column(column)
