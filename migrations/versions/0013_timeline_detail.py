"""Issue 19: the text behind a timeline entry (a published reply's wording), so the documents
built from the store (舆情处置情况报告, 处置台账) quote the replies as published.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30 20:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("timeline_events") as batch:
        batch.add_column(sa.Column("detail", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("timeline_events") as batch:
        batch.drop_column("detail")
