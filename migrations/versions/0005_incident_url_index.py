"""index incidents.url (the R-DEDUP lookup on every submission)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 08:45:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_incidents_url", "incidents", ["url"], postgresql_using="hash")


def downgrade() -> None:
    op.drop_index("ix_incidents_url", table_name="incidents")
