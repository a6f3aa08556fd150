"""通联测试 rows (issue 20, item 5; plan/reach_test.py): written by activities/reach_test.py (a run's
rows, then each delivery's outcome from the outbox), confirmed by the person from the inbox, read
by the leading group's dashboard. Nothing here is read by the accountability figures.

Keyword-only arguments, one session per call site; a run's rows are keyed (run, person, channel),
so a retried activity adds nothing twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from plan.reach_test import Check, PlannedCheck, ReachTestOutcome, reach_test_key
from store.models import Delivery, InboxMessage, ReachCheckRow


def write_run(
    session: Session, *, run_id: str, started_at: datetime, checks: Sequence[PlannedCheck]
) -> int:
    """A run's rows, those not there yet (a retried activity finds the others); gives back how
    many were added."""
    have = set(
        session.scalars(
            select(ReachCheckRow.person_id + "|" + ReachCheckRow.channel).where(
                ReachCheckRow.run_id == run_id
            )
        )
    )
    added = 0
    for c in checks:
        if f"{c.person}|{c.channel}" in have:
            continue
        session.add(
            ReachCheckRow(
                run_id=run_id,
                started_at=started_at,
                person_id=c.person,
                channel_kind=c.kind,
                channel=c.channel,
                delivery_key=c.delivery_key,
                state=c.state,
            )
        )
        have.add(f"{c.person}|{c.channel}")
        added += 1
    session.flush()
    return added


def settle(session: Session, *, run_id: str) -> ReachTestOutcome:
    """Copy each delivery's state, error and time sent from its outbox row to the run's rows."""
    rows = session.scalars(select(ReachCheckRow).where(ReachCheckRow.run_id == run_id)).all()
    keys = [r.delivery_key for r in rows if r.delivery_key]
    outbox = (
        {d.key: d for d in session.scalars(select(Delivery).where(Delivery.key.in_(keys)))}
        if keys
        else {}
    )
    out = ReachTestOutcome(run_id=run_id, people=len({r.person_id for r in rows}))
    for row in rows:
        delivery = outbox.get(row.delivery_key or "")
        if delivery is not None:
            row.state = delivery.state
            row.error = delivery.last_error
            row.sent_at = delivery.sent_at
        if row.state == "sent":
            out.sent += 1
        elif row.state in ("failed", "given_up"):
            out.failed += 1
        elif row.state == "pending":
            out.pending += 1
        else:
            out.inbox_only += 1
    return out


def latest_run_of(session: Session, *, person_id: str) -> str | None:
    """The newest run that tested the person."""
    return session.scalar(
        select(ReachCheckRow.run_id)
        .where(ReachCheckRow.person_id == person_id)
        .order_by(ReachCheckRow.started_at.desc(), ReachCheckRow.id.desc())
        .limit(1)
    )


def awaiting_confirmation(session: Session, *, person_id: str) -> str | None:
    """The person's newest run, when they have not confirmed it yet (the inbox's button)."""
    run_id = latest_run_of(session, person_id=person_id)
    if run_id is None:
        return None
    confirmed = session.scalar(
        select(ReachCheckRow.id).where(
            ReachCheckRow.run_id == run_id,
            ReachCheckRow.person_id == person_id,
            ReachCheckRow.confirmed_at.is_not(None),
        )
    )
    return None if confirmed is not None else run_id


def confirm(session: Session, *, person_id: str, at: datetime) -> str | None:
    """确认收到: the person's rows of their newest run get `at` (once: a second confirmation keeps
    the first time), and its inbox message is read. Gives back the run, or None when no run
    tested the person."""
    run_id = latest_run_of(session, person_id=person_id)
    if run_id is None:
        return None
    rows = session.scalars(
        select(ReachCheckRow).where(
            ReachCheckRow.run_id == run_id,
            ReachCheckRow.person_id == person_id,
            ReachCheckRow.confirmed_at.is_(None),
        )
    )
    for row in rows:
        row.confirmed_at = at
    # The test's message in the inbox is read, once confirmed.
    key = reach_test_key(run_id)
    unread = session.scalars(
        select(InboxMessage).where(
            InboxMessage.recipient == person_id,
            InboxMessage.key == key,
            InboxMessage.read_at.is_(None),
        )
    )
    for message in unread:
        message.read_at = at
    return run_id


def recent(session: Session, *, runs: int = 24) -> list[Check]:
    """The rows of the newest `runs` runs (two years of monthly runs), for the dashboard."""
    newest = (
        select(ReachCheckRow.run_id, ReachCheckRow.started_at)
        .distinct()
        .order_by(ReachCheckRow.started_at.desc())
        .limit(runs)
        .subquery()
    )
    rows = session.scalars(
        select(ReachCheckRow)
        .where(ReachCheckRow.run_id.in_(select(newest.c.run_id)))
        .order_by(ReachCheckRow.started_at.desc(), ReachCheckRow.id)
    )
    return [
        Check(
            run_id=r.run_id,
            started_at=r.started_at,
            person=r.person_id,
            kind=r.channel_kind,
            channel=r.channel,
            state=r.state,
            error=r.error,
            confirmed_at=r.confirmed_at,
        )
        for r in rows
    ]
