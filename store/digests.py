"""What the daily and weekly digests list (activities/digest.py; the texts are plan/digest.py):
the open incidents, the deadlines falling due and the accountability records of a period. The
weekly digest's per-unit figures are store/reporting.py's accountability report."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.models import AccountabilityRow, DeadlineRow, Incident


def open_incidents(session: Session, *, drill: bool = False) -> Sequence[Incident]:
    """Incidents not yet closed (drills only when asked for), the next deadline first."""
    return session.scalars(
        select(Incident)
        .where(Incident.phase != "closed", Incident.drill.is_(drill))
        .order_by(Incident.next_due_at.is_(None), Incident.next_due_at, Incident.id)
    ).all()


def deadlines_due_between(
    session: Session, *, start: datetime, end: datetime, drill: bool = False
) -> Sequence[tuple[DeadlineRow, Incident]]:
    """Open deadlines (not met, not cancelled) of open incidents falling due in [start, end)."""
    rows = session.execute(
        select(DeadlineRow, Incident)
        .join(Incident, Incident.id == DeadlineRow.incident_id)
        .where(
            DeadlineRow.due_at >= start,
            DeadlineRow.due_at < end,
            DeadlineRow.met_at.is_(None),
            DeadlineRow.cancelled.is_(False),
            Incident.phase != "closed",
            Incident.drill.is_(drill),
        )
        .order_by(DeadlineRow.due_at, DeadlineRow.incident_id)
    ).all()
    return [(d, i) for d, i in rows]


def accountability_recorded_between(
    session: Session, *, start: datetime, end: datetime
) -> Sequence[tuple[AccountabilityRow, str]]:
    """Accountability records recorded in [start, end), drills and voided ones (a withdrawn
    false alarm's) left out, with the incident's title."""
    rows = session.execute(
        select(AccountabilityRow, Incident.title)
        .join(Incident, Incident.id == AccountabilityRow.incident_id)
        .where(
            AccountabilityRow.recorded_at >= start,
            AccountabilityRow.recorded_at < end,
            AccountabilityRow.drill.is_(False),
            AccountabilityRow.voided_at.is_(None),
        )
        .order_by(AccountabilityRow.recorded_at, AccountabilityRow.id)
    ).all()
    return [(a, title) for a, title in rows]
