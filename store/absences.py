"""代理 (issue 20, item 3): absences and their stand-ins in the store. Keyword-only arguments,
one session per call site; the rules for who may declare what are starter/absences.py's.

Every change (a declaration, an early end) takes the next `revision`, unique in the table: a
running incident is told the list with the revision it was read at and keeps the newest, so two
changes told out of order still leave every incident with the later list.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from plan.models import Absence, Absences
from store.models import AbsenceRow


def _next_revision(session: Session) -> int:
    return int(session.scalar(select(func.coalesce(func.max(AbsenceRow.revision), 0))) or 0) + 1


def add(
    session: Session,
    *,
    person: str,
    stand_in: str,
    starts_at: datetime,
    ends_at: datetime,
    reason: str | None,
    by: str,
    now: datetime,
) -> AbsenceRow:
    row = AbsenceRow(
        person_id=person,
        stand_in=stand_in,
        starts_at=starts_at,
        ends_at=ends_at,
        reason=reason,
        declared_by=by,
        declared_at=now,
        revision=_next_revision(session),
    )
    session.add(row)
    session.flush()
    return row


def get(session: Session, *, absence_id: int) -> AbsenceRow | None:
    return session.get(AbsenceRow, absence_id)


def end(session: Session, *, row: AbsenceRow, by: str, now: datetime) -> None:
    """销假: the absence is over now (one not begun yet is withdrawn: it ends as it starts)."""
    row.ends_at = max(row.starts_at, min(row.ends_at, now))
    row.ended_by = by
    row.ended_at = now
    row.revision = _next_revision(session)
    session.flush()


def overlapping(
    session: Session, *, persons: list[str], starts_at: datetime, ends_at: datetime
) -> list[AbsenceRow]:
    """The absences of these persons that share some of the period."""
    return list(
        session.scalars(
            select(AbsenceRow)
            .where(AbsenceRow.person_id.in_(persons))
            .where(AbsenceRow.starts_at < ends_at, AbsenceRow.ends_at > starts_at)
            .order_by(AbsenceRow.starts_at)
        )
    )


def current(session: Session, *, now: datetime) -> Absences:
    """What a running incident is told: every absence not yet over, at the store's revision."""
    rows = session.scalars(
        select(AbsenceRow).where(AbsenceRow.ends_at > now).order_by(AbsenceRow.id)
    ).all()
    return Absences(
        revision=_next_revision(session) - 1,
        items=[
            Absence(
                id=r.id,
                person=r.person_id,
                stand_in=r.stand_in,
                starts_at=r.starts_at,
                ends_at=r.ends_at,
            )
            for r in rows
        ],
    )


def listed(
    session: Session, *, since: datetime, persons: list[str] | None = None
) -> list[AbsenceRow]:
    """The absences not over before `since`, newest first; only those of or for `persons` when
    given (None: all)."""
    q = select(AbsenceRow).where(AbsenceRow.ends_at > since)
    if persons is not None:
        q = q.where(or_(AbsenceRow.person_id.in_(persons), AbsenceRow.stand_in.in_(persons)))
    return list(session.scalars(q.order_by(AbsenceRow.starts_at.desc(), AbsenceRow.id.desc())))
