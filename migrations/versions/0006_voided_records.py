"""R-ACCOUNT: a withdrawn false alarm's deadlines and records are void (kept, counted nowhere);
who recorded a record by hand

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 10:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deadlines") as batch:
        batch.add_column(
            sa.Column("voided", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("accountability") as batch:
        batch.add_column(sa.Column("voided_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("void_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("by", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("accountability") as batch:
        batch.drop_column("by")
        batch.drop_column("void_reason")
        batch.drop_column("voided_at")
    with op.batch_alter_table("deadlines") as batch:
        batch.drop_column("voided")
