"""待办 from the action table (issue 18): the `waits` table, what each open incident waits for and
from whom (plan/todo.py `waits`), written by the `record` activity with each snapshot and read by
the 待办 page and the navigation's badge with one indexed query; and incidents.drill_speedup, so a
drill's lateness is told in plan time (R-DRILL; empty for rows written before: real time).

An incident started before the upgrade gets its rows with its next snapshot (any action or deadline
event writes one); until then 待办 shows its owed deadlines as before.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 17:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "waits",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "incident_id",
            sa.String(64),
            sa.ForeignKey("incidents.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("action", sa.String(50), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("unit", sa.String(200), nullable=True),
        sa.Column("head", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("role", sa.String(30), nullable=True),
        sa.Column("person", sa.String(200), nullable=True),
        sa.Column("deadline_key", sa.String(50), nullable=True),
        sa.Column("deadline_title", sa.String(200), nullable=True),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("step", sa.Integer(), nullable=False, server_default="0"),
    )
    for column in ("incident_id", "unit", "role", "person"):
        op.create_index(f"ix_waits_{column}", "waits", [column])
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("drill_speedup", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("drill_speedup")
    op.drop_table("waits")
