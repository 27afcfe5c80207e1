"""Exactly-once digests and lease handovers (issue 15).

``digests.message``: the whole email as sent (MIME bytes), stored with the digest before it is sent, so a
digest interrupted by a crash is sent again with the same content and Message-ID instead of being rebuilt
beside a new one. ``locks.released_at``: when the holder gave the lease up (the row now stays, expired): the
next holder waits out NCBI's one-second window after it, so the two processes' requests never share one.

Revision ID: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("digests") as batch:
        batch.add_column(sa.Column("message", sa.LargeBinary))
    with op.batch_alter_table("locks") as batch:
        batch.add_column(sa.Column("released_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("locks") as batch:
        batch.drop_column("released_at")
    with op.batch_alter_table("digests") as batch:
        batch.drop_column("message")
