"""The read model's idempotent writes, built once per dialect (private to store/).

Every write an activity makes is an insert on a natural key that leaves (or updates) what a
retry finds already there: the dialect's ON CONFLICT, SQLite and PostgreSQL alike.
store/incident_rows.py writes the incident and its rows with them, store/notifications.py the
inbox and the outbox.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from plan.records import FACT_NAMES, IncidentRow
from store.models import (
    AccountabilityRow,
    Base,
    CommendationRow,
    DeadlineRow,
    Delivery,
    EscalationRow,
    InboxMessage,
    Incident,
    IncidentNumber,
    ReferralRow,
    TimelineEvent,
    WaitRow,
)

DEADLINE_COLUMNS = (
    "rule",
    "title",
    "unit",
    "anchor_at",
    "anchor_label",
    "due_at",
    "met_at",
    "overdue",
    "cancelled",
    "voided",
    "escalation_step",
)
ACCOUNTABILITY_COLUMNS = (
    "rule",
    "kind",
    "unit",
    "person",
    "due_at",
    "met_at",
    "reason",
    "voided_at",
    "void_reason",
    "by",
)


@dataclass(frozen=True)
class Writes:
    update_incident: Any
    update_state: Any
    incident_version: Any
    insert_incident: Any
    timeline: Any
    escalations: Any
    deadlines: Any
    accountability: Any
    referrals: Any
    commendations: Any
    # A wait's row, its deadline's title and due time taken from the deadline's row when the
    # wait names one by key only (issue 21); as given otherwise (writes from before).
    waits: Any
    inbox: Any
    outbox: Any
    # One row, telling whether it was new (RETURNING: an INSERT's rowcount is not reliable on
    # every driver): for the activities that write one step or one message at a time.
    escalation_once: Any
    inbox_once: Any
    # The day's next short number (store/incident_rows.py): the counter row incremented, or
    # created at 1, in one statement that takes the row's lock (two records at once on
    # PostgreSQL wait for each other and never get the same number).
    next_number: Any


def table(model: type[Base]) -> Table:
    return cast(Table, model.__table__)


@lru_cache(maxsize=4)
def writes(dialect: str) -> Writes:
    """The read model's writes for a dialect, built once: values come as parameters, so each
    statement is compiled once and its cache key never computed again. Inserts use the
    dialect's ON CONFLICT (SQLite and PostgreSQL alike) on the natural keys."""
    if dialect not in ("postgresql", "sqlite"):
        raise RuntimeError(f"unsupported database: {dialect}")
    upsert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    incidents = table(Incident)
    state = [c for c in IncidentRow.model_fields if c != "facts"]
    columns = [*state, *FACT_NAMES]
    deadlines = upsert(table(DeadlineRow))
    escalations = upsert(table(EscalationRow)).on_conflict_do_nothing(
        index_elements=["incident_id", "deadline_key", "step", "at"]
    )
    inbox = upsert(table(InboxMessage)).on_conflict_do_nothing(index_elements=["key", "recipient"])
    accountability = upsert(table(AccountabilityRow))
    numbers = table(IncidentNumber)
    waits, dl = table(WaitRow), table(DeadlineRow)

    def of_deadline(column: str) -> Any:
        return func.coalesce(
            bindparam(f"deadline_{column}" if column == "title" else column),
            select(dl.c[column])
            .where(dl.c.incident_id == bindparam("incident_id"))
            .where(dl.c.key == bindparam("deadline_key"))
            .scalar_subquery(),
        )

    next_number = upsert(numbers).values(day=bindparam("day"), last=1)
    return Writes(
        update_incident=update(incidents)
        .where(incidents.c.id == bindparam("_id"), incidents.c.version < bindparam("_version"))
        .values({c: bindparam(c) for c in columns}),
        # A later write of the run: the submission's facts as stored.
        update_state=update(incidents)
        .where(incidents.c.id == bindparam("_id"), incidents.c.version < bindparam("_version"))
        .values({c: bindparam(c) for c in state}),
        incident_version=select(incidents.c.version).where(incidents.c.id == bindparam("_id")),
        insert_incident=insert(incidents),
        timeline=upsert(table(TimelineEvent)).on_conflict_do_nothing(
            index_elements=["incident_id", "seq"]
        ),
        escalations=escalations,
        deadlines=deadlines.on_conflict_do_update(
            index_elements=["incident_id", "key"],
            set_={c: deadlines.excluded[c] for c in DEADLINE_COLUMNS},
        ),
        accountability=accountability.on_conflict_do_update(
            index_elements=["incident_id", "deadline_key", "recorded_at"],
            set_={c: accountability.excluded[c] for c in (*ACCOUNTABILITY_COLUMNS, "drill")},
        ),
        referrals=upsert(table(ReferralRow)).on_conflict_do_nothing(
            index_elements=["incident_id", "no"]
        ),
        commendations=upsert(table(CommendationRow)).on_conflict_do_nothing(
            index_elements=["incident_id", "at", "unit"]
        ),
        waits=insert(waits).values(
            {
                **{
                    c.name: bindparam(c.name)
                    for c in waits.c
                    if c.name not in ("id", "deadline_title", "due_at")
                },
                "deadline_title": of_deadline("title"),
                "due_at": of_deadline("due_at"),
            }
        ),
        inbox=inbox,
        outbox=upsert(table(Delivery)).on_conflict_do_nothing(index_elements=["key"]),
        escalation_once=escalations.returning(table(EscalationRow).c.id),
        inbox_once=inbox.returning(table(InboxMessage).c.id),
        next_number=next_number.on_conflict_do_update(
            index_elements=["day"], set_={"last": numbers.c.last + 1}
        ).returning(numbers.c.last),
    )
