"""Issue 18, items 7 and 8.

- incidents.short_number: a number a clerk can read out on the phone (2026-1130-007: the day the
  report was received in the town's zone and that day's sequence), unique; incident_numbers keeps
  each day's last number. Rows already there are numbered here, in order of receipt, in the zone
  of YUQING_TIMEZONE (Asia/Shanghai unless set).
- sign_in_links: one-time sign-in links minted by the `deliver` activity (hashes only).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 17:00:00
"""

import os
from collections.abc import Sequence
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _aware(value: object) -> datetime:
    if isinstance(value, str):  # SQLite gives text back to a bare select
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def upgrade() -> None:
    op.create_table(
        "incident_numbers",
        sa.Column("day", sa.String(length=8), nullable=False),
        sa.Column("last", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day"),
    )
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("short_number", sa.String(length=20), nullable=True))
        batch.create_unique_constraint("uq_incidents_short_number", ["short_number"])
    op.create_table(
        "sign_in_links",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("link_hash", sa.String(length=64), nullable=False),
        sa.Column("person_id", sa.String(length=200), nullable=False),
        sa.Column("incident_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("link_hash"),
    )
    with op.batch_alter_table("sign_in_links") as batch:
        batch.create_index("ix_sign_in_links_person_id", ["person_id"], unique=False)

    # Number the incidents already recorded, each day in order of receipt.
    zone = ZoneInfo(os.environ.get("YUQING_TIMEZONE") or "Asia/Shanghai")
    conn = op.get_bind()
    rows = conn.execute(
        sa.text("SELECT id, received_at FROM incidents ORDER BY received_at, id")
    ).all()
    last: dict[str, int] = {}
    for incident_id, received_at in rows:
        day = _aware(received_at).astimezone(zone).strftime("%Y%m%d")
        last[day] = last.get(day, 0) + 1
        number = f"{day[:4]}-{day[4:]}-{last[day]:03d}"
        conn.execute(
            sa.text("UPDATE incidents SET short_number = :n WHERE id = :id"),
            {"n": number, "id": incident_id},
        )
    for day, n in last.items():
        conn.execute(
            sa.text("INSERT INTO incident_numbers (day, last) VALUES (:day, :last)"),
            {"day": day, "last": n},
        )


def downgrade() -> None:
    with op.batch_alter_table("sign_in_links") as batch:
        batch.drop_index("ix_sign_in_links_person_id")
    op.drop_table("sign_in_links")
    with op.batch_alter_table("incidents") as batch:
        batch.drop_constraint("uq_incidents_short_number", type_="unique")
        batch.drop_column("short_number")
    op.drop_table("incident_numbers")
