"""Tag inputs move to a table of their own; ``paper_tagging`` keeps one row per tagged paper.

A retag reads every tag input (about 2 KB a paper) and rewrites taggings (a few hundred bytes). With both in
one row, SQLite rewrote the input with every tagging; apart, a retag writes only the narrow rows. The
tagging JSON no longer carries the taxonomy version (its column does); rows written before keep it inside
and are rewritten by the next retag.

Revision ID: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "paper_tag_inputs",
        sa.Column("pmid", sa.BigInteger, sa.ForeignKey("papers.pmid", ondelete="CASCADE"), primary_key=True),
        sa.Column("tag_input", sa.Text, nullable=False),
    )
    op.execute("INSERT INTO paper_tag_inputs (pmid, tag_input) SELECT pmid, tag_input FROM paper_tagging")
    op.execute("DELETE FROM paper_tagging WHERE tagging IS NULL")
    with op.batch_alter_table("paper_tagging") as batch:
        batch.drop_column("tag_input")
        batch.alter_column("tagging", existing_type=sa.Text, nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("paper_tagging") as batch:
        batch.add_column(sa.Column("tag_input", sa.Text))
        batch.alter_column("tagging", existing_type=sa.Text, nullable=True)
    op.execute("UPDATE paper_tagging SET tag_input = (SELECT i.tag_input FROM paper_tag_inputs i "
               "WHERE i.pmid = paper_tagging.pmid)")
    op.execute("INSERT INTO paper_tagging (pmid, tag_input) SELECT i.pmid, i.tag_input FROM paper_tag_inputs i "
               "WHERE i.pmid NOT IN (SELECT pmid FROM paper_tagging)")
    with op.batch_alter_table("paper_tagging") as batch:
        batch.alter_column("tag_input", existing_type=sa.Text, nullable=False)
    op.drop_table("paper_tag_inputs")
