"""Tags: per paper, the tagger's input fields in compact form, its tagging (with evidence) and the taxonomy
version that made it, in a narrow table of their own so a retag never rewrites whole records; tag rows
for filters.

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "paper_tagging",
        sa.Column("pmid", sa.BigInteger, sa.ForeignKey("papers.pmid", ondelete="CASCADE"), primary_key=True),
        sa.Column("tag_input", sa.Text, nullable=False),
        sa.Column("tagging", sa.Text),
        sa.Column("taxonomy_version", sa.String(80)),
        sa.Column("relevance", sa.Float),
        sa.Column("gut_skin_relevant", sa.Boolean),
    )
    op.create_index("ix_paper_tagging_relevant", "paper_tagging", ["gut_skin_relevant", "relevance"])
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
    op.drop_index("ix_paper_tagging_relevant", "paper_tagging")
    op.drop_table("paper_tagging")
