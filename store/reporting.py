"""The figures the leading group reads: the accountability report (the report pages, their CSV
and JSON, and the weekly digest) and the dashboard's counts, overdue incidents and recent
escalation steps (starter/web/reports.py). Drills are left out of every figure (R-DRILL); the
dashboard may follow them too, when asked (issue 18: a drill you can follow)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select, true
from sqlalchemy.orm import Session

from store.models import (
    AccountabilityRow,
    CommendationRow,
    DeadlineRow,
    EscalationRow,
    Incident,
)


def accountability_report(
    session: Session, *, start: datetime, end: datetime
) -> list[dict[str, object]]:
    """R-ACCOUNT / R-COMMEND: per unit, the deadlines due in [start, end) met on time, met late,
    missed or still pending, the on-time rate, accountability records by kind and commendations.
    Drills (R-DRILL), cancelled deadlines and a withdrawn false alarm's (voided, R-ACCOUNT) are
    left out; voided records are counted apart, as `voided`, and in no kind."""
    units: dict[str, dict[str, object]] = {}

    def unit_row(unit: str) -> dict[str, object]:
        return units.setdefault(
            unit,
            {
                "unit": unit,
                "on_time": 0,
                "late": 0,
                "missed": 0,
                "pending": 0,
                "on_time_rate": None,
                "records": {},
                "voided": 0,
                "commendations": [],
            },
        )

    deadlines_due = session.execute(
        select(DeadlineRow, Incident.drill, Incident.reporter_unit)
        .join(Incident, Incident.id == DeadlineRow.incident_id)
        .where(
            DeadlineRow.due_at >= start,
            DeadlineRow.due_at < end,
            DeadlineRow.cancelled.is_(False),
            DeadlineRow.voided.is_(False),
            Incident.drill.is_(False),
        )
    ).all()
    for d, _drill, reporter in deadlines_due:
        row = unit_row(d.unit or reporter)
        if d.met_at is not None:
            key = "late" if d.overdue else "on_time"
        else:
            key = "missed" if d.overdue else "pending"
        row[key] = int(row[key]) + 1  # type: ignore[call-overload]
    for rec in session.scalars(
        select(AccountabilityRow).where(
            AccountabilityRow.recorded_at >= start,
            AccountabilityRow.recorded_at < end,
            AccountabilityRow.drill.is_(False),
        )
    ):
        row = unit_row(rec.unit)
        if rec.voided_at is not None:
            row["voided"] = int(row["voided"]) + 1  # type: ignore[call-overload]
            continue
        records = row["records"]
        assert isinstance(records, dict)
        records[rec.kind] = records.get(rec.kind, 0) + 1
    for com in session.scalars(
        select(CommendationRow).where(
            CommendationRow.at >= start, CommendationRow.at < end, CommendationRow.drill.is_(False)
        )
    ):
        coms = unit_row(com.unit)["commendations"]
        assert isinstance(coms, list)
        coms.append({"person": com.person, "reason": com.reason, "at": com.at.isoformat()})
    for row in units.values():
        counted = int(row["on_time"]) + int(row["late"]) + int(row["missed"])  # type: ignore[call-overload]
        row["on_time_rate"] = round(int(row["on_time"]) / counted, 4) if counted else None  # type: ignore[call-overload]
    return sorted(units.values(), key=lambda r: str(r["unit"]))


# --- the leading group's dashboard ---


def _drills(column: Any, drills: bool) -> ColumnElement[bool]:
    """R-DRILL: drills are left out unless the dashboard is asked to follow them too."""
    return true() if drills else column.is_(False)


def incident_counts(session: Session, *, drills: bool = False) -> dict[str, dict[str, int]]:
    """Real incidents (drills left out, unless `drills`): all of them by phase, the open ones by
    severity."""
    by_phase = session.execute(
        select(Incident.phase, func.count())
        .where(_drills(Incident.drill, drills))
        .group_by(Incident.phase)
    ).all()
    by_severity = session.execute(
        select(Incident.severity, func.count())
        .where(_drills(Incident.drill, drills), Incident.phase != "closed")
        .group_by(Incident.severity)
    ).all()
    return {
        "phase": {str(k): int(n) for k, n in by_phase},
        "severity": {str(k): int(n) for k, n in by_severity},
    }


def overdue_now(session: Session, *, limit: int = 100, drills: bool = False) -> Sequence[Incident]:
    """Real incidents (and drills, with `drills`) with a deadline overdue now, the oldest
    deadline first."""
    return session.scalars(
        select(Incident)
        .where(
            Incident.overdue.is_(True),
            _drills(Incident.drill, drills),
            Incident.phase != "closed",
        )
        .order_by(Incident.next_due_at.is_(None), Incident.next_due_at)
        .limit(limit)
    ).all()


def escalations_since(
    session: Session, *, since: datetime, limit: int = 200, drills: bool = False
) -> Sequence[tuple[EscalationRow, str]]:
    """Escalation steps of real incidents (and drills, with `drills`) from `since` on, the
    newest first, with the title."""
    rows = session.execute(
        select(EscalationRow, Incident.title)
        .join(Incident, Incident.id == EscalationRow.incident_id)
        .where(EscalationRow.at >= since, _drills(EscalationRow.drill, drills))
        .order_by(EscalationRow.at.desc(), EscalationRow.id.desc())
        .limit(limit)
    ).all()
    return [(e, title) for e, title in rows]
