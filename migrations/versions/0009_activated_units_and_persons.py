"""R-SECRECY, R-ACTIVATE: the incident's row keeps the units and persons the leading group brought
in (incidents.activated_units, incidents.activated_persons, comma-joined like co_units), so the
lists show an incident to everyone its page does.

Rows already there start empty and are filled by the incident's next snapshot (any action or
deadline event writes one); until then an incident activated before the upgrade is listed for the
units it involved before, as it was.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 21:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("activated_units", sa.Text(), nullable=False, server_default=""))
        batch.add_column(
            sa.Column("activated_persons", sa.Text(), nullable=False, server_default="")
        )


def downgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("activated_persons")
        batch.drop_column("activated_units")
