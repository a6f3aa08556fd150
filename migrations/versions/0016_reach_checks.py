"""Issue 20, item 5: the 通联测试's rows (reach_checks), one per run, person and channel.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30 23:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reach_checks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(length=200), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("person_id", sa.String(length=200), nullable=False),
        sa.Column("channel_kind", sa.String(length=20), nullable=False),
        sa.Column("channel", sa.String(length=300), nullable=False),
        sa.Column("delivery_key", sa.String(length=700), nullable=True),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id", "person_id", "channel", name="uq_reach_checks_channel"),
    )
    op.create_index("ix_reach_checks_run_id", "reach_checks", ["run_id"])
    op.create_index("ix_reach_checks_started_at", "reach_checks", ["started_at"])
    op.create_index("ix_reach_checks_person_started", "reach_checks", ["person_id", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_reach_checks_person_started", table_name="reach_checks")
    op.drop_index("ix_reach_checks_started_at", table_name="reach_checks")
    op.drop_index("ix_reach_checks_run_id", table_name="reach_checks")
    op.drop_table("reach_checks")
