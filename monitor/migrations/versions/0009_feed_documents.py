"""Published documents kept in the database (issue 16): every feed document, archive page, ``feeds.opml``
and ``index.html`` the publisher wrote, with its validators, so a `monitor serve` on any host pointed at the
same (PostgreSQL) database serves what the last cycle published, wherever that cycle ran.

``feed_documents``: one row per document, keyed by its path below the feed folder; ``etag`` is the SHA-256
of the body, ``changed_at`` when its content last changed (``Last-Modified``), ``mtime_ns`` the publishing
file's modification time (an unchanged file is recognised without being read). Both dialects.

Revision ID: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feed_documents",
        sa.Column("path", sa.String(512), primary_key=True),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("etag", sa.String(64), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("mtime_ns", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("feed_documents")
