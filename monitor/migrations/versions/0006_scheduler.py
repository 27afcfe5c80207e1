"""The scheduler daemon (issue 7): leases that keep cycles (and digests) from running in two processes at
once, and each scheduled job's last fire, so a daemon that was down over a fire time runs it on start-up.

``locks``: one row per lease name while held; ``expires_at`` is renewed by the holder's heartbeat, and a row
whose ``expires_at`` has passed counts as free (its holder died). ``schedule_state``: one row per job.

Revision ID: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "locks",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("purpose", sa.String(64), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "schedule_state",
        sa.Column("job", sa.String(64), primary_key=True),
        sa.Column("last_fire_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_finished_at", sa.DateTime(timezone=True)),
        sa.Column("outcome", sa.String(20)),
        sa.Column("message", sa.Text),
    )


def downgrade() -> None:
    op.drop_table("schedule_state")
    op.drop_table("locks")
