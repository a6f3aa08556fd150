"""Data access for the read model: idempotent writes for activities, queries for the edges.

Keyword-only arguments, one session per call site; every write is an upsert on a natural key.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import CursorResult, Table, bindparam, insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from plan.models import DeliverRequest, Escalation, Notification
from plan.records import IncidentRow, RecordRequest
from store.models import (
    AccountabilityRow,
    ApiToken,
    Base,
    CommendationRow,
    DeadlineRow,
    Delivery,
    EscalationRow,
    InboxMessage,
    Incident,
    ReferralRow,
    TimelineEvent,
    WebSession,
    utcnow,
)

# A unit's group channel as a recipient (plan.roster): it is told, but has no inbox of its own.
UNIT_RECIPIENT_PREFIX = "unit:"

# --- writes (activities) ---


def record(session: Session, *, request: RecordRequest) -> None:
    """Write an incident snapshot. A snapshot older than the stored one changes nothing but
    adds any timeline entries and escalation steps it carries (those are keyed and immutable).

    One prepared statement per table, each an insert that leaves (or updates) what a retry finds
    already there: under a burst of escalations the ORM's reads before writes, and building
    statements for each call, were most of the worker's time (docs/PERFORMANCE.md)."""
    w = _writes(session.get_bind().dialect.name)
    row = request.incident
    fields = _incident_fields(row)
    updated = session.execute(w.update_incident, {**fields, "_id": row.id, "_version": row.version})
    fresh = bool(cast("CursorResult[Any]", updated).rowcount)
    if not fresh and session.execute(w.incident_version, {"_id": row.id}).first() is None:
        session.execute(w.insert_incident, fields)
        fresh = True
    if request.timeline:
        session.execute(
            w.timeline, [{"incident_id": row.id, **e.model_dump()} for e in request.timeline]
        )
    if request.escalations:
        session.execute(
            w.escalations, [_escalation_fields(row.id, e, row.drill) for e in request.escalations]
        )
    if not fresh:
        return
    if request.deadlines:
        session.execute(
            w.deadlines,
            [
                {
                    "incident_id": row.id,
                    "key": d.key,
                    **{c: getattr(d, c) for c in DEADLINE_COLUMNS},
                }
                for d in request.deadlines
            ],
        )
    if request.accountability:
        session.execute(
            w.accountability,
            [
                {
                    "incident_id": row.id,
                    "deadline_key": a.deadline_key,
                    "recorded_at": a.recorded_at,
                    "drill": row.drill,
                    **{c: getattr(a, c) for c in ACCOUNTABILITY_COLUMNS},
                }
                for a in request.accountability
            ],
        )
    if request.referrals:
        session.execute(
            w.referrals, [{"incident_id": row.id, **r.model_dump()} for r in request.referrals]
        )
    if request.commendations:
        session.execute(
            w.commendations,
            [
                {"incident_id": row.id, "drill": row.drill, **c.model_dump()}
                for c in request.commendations
            ],
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
class _Writes:
    update_incident: Any
    incident_version: Any
    insert_incident: Any
    timeline: Any
    escalations: Any
    deadlines: Any
    accountability: Any
    referrals: Any
    commendations: Any
    inbox: Any
    outbox: Any
    # One row, telling whether it was new (RETURNING: an INSERT's rowcount is not reliable on
    # every driver): for the activities that write one step or one message at a time.
    escalation_once: Any
    inbox_once: Any


def _table(model: type[Base]) -> Table:
    return cast(Table, model.__table__)


@lru_cache(maxsize=4)
def _writes(dialect: str) -> _Writes:
    """The read model's writes for a dialect, built once: values come as parameters, so each
    statement is compiled once and its cache key never computed again. Inserts use the
    dialect's ON CONFLICT (SQLite and PostgreSQL alike) on the natural keys."""
    if dialect not in ("postgresql", "sqlite"):
        raise RuntimeError(f"unsupported database: {dialect}")
    upsert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    incidents = _table(Incident)
    columns = list(IncidentRow.model_fields)
    deadlines = upsert(_table(DeadlineRow))
    escalations = upsert(_table(EscalationRow)).on_conflict_do_nothing(
        index_elements=["incident_id", "deadline_key", "step", "at"]
    )
    inbox = upsert(_table(InboxMessage)).on_conflict_do_nothing(index_elements=["key", "recipient"])
    accountability = upsert(_table(AccountabilityRow))
    return _Writes(
        update_incident=update(incidents)
        .where(incidents.c.id == bindparam("_id"), incidents.c.version < bindparam("_version"))
        .values({c: bindparam(c) for c in columns}),
        incident_version=select(incidents.c.version).where(incidents.c.id == bindparam("_id")),
        insert_incident=insert(incidents),
        timeline=upsert(_table(TimelineEvent)).on_conflict_do_nothing(
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
        referrals=upsert(_table(ReferralRow)).on_conflict_do_nothing(
            index_elements=["incident_id", "no"]
        ),
        commendations=upsert(_table(CommendationRow)).on_conflict_do_nothing(
            index_elements=["incident_id", "at", "unit"]
        ),
        inbox=inbox,
        outbox=upsert(_table(Delivery)).on_conflict_do_nothing(index_elements=["key"]),
        escalation_once=escalations.returning(_table(EscalationRow).c.id),
        inbox_once=inbox.returning(_table(InboxMessage).c.id),
    )


def _escalation_fields(incident_id: str, escalation: Escalation, drill: bool) -> dict[str, object]:
    return {
        "incident_id": incident_id,
        "deadline_key": escalation.deadline_key,
        "rule": escalation.rule,
        "step": escalation.step,
        "at": escalation.at,
        "targets": ",".join(escalation.targets),
        "summary": escalation.summary,
        "drill": drill,
    }


def _incident_fields(row: IncidentRow) -> dict[str, object]:
    return row.model_dump()


def record_escalation(
    session: Session, *, incident_id: str, escalation: Escalation, drill: bool
) -> bool:
    """Record one escalation step; False when it was already recorded (a retry)."""
    w = _writes(session.get_bind().dialect.name)
    row = _escalation_fields(incident_id, escalation, drill)
    return session.execute(w.escalation_once, row).first() is not None


def write_inbox(
    session: Session,
    *,
    key: str,
    incident_id: str,
    rule: str,
    recipient: str,
    subject: str,
    body: str,
    link: str,
    drill: bool,
    created_at: datetime,
) -> bool:
    """One inbox message per (key, recipient); False when it is already there."""
    w = _writes(session.get_bind().dialect.name)
    row = {
        "key": key,
        "incident_id": incident_id,
        "rule": rule,
        "recipient": recipient,
        "subject": subject,
        "body": body,
        "link": link,
        "drill": drill,
        "created_at": created_at,
    }
    return session.execute(w.inbox_once, row).first() is not None


def write_notification(
    session: Session, *, note: Notification, deliveries: Sequence[DeliverRequest]
) -> None:
    """A notification's inbox rows (one per person; a unit's group channel has no inbox) and a
    pending outbox row for each external delivery: one statement each, whatever the number of
    recipients. Rows already there (a retried activity) are left as they are."""
    people = [
        r.person_id for r in note.recipients if not r.person_id.startswith(UNIT_RECIPIENT_PREFIX)
    ]
    w = _writes(session.get_bind().dialect.name)
    if people:
        session.execute(
            w.inbox,
            [
                {
                    "key": note.key,
                    "incident_id": note.incident_id,
                    "rule": note.rule,
                    "recipient": person,
                    "subject": note.subject,
                    "body": note.body,
                    "link": note.link,
                    "drill": note.drill,
                    "created_at": note.sent_at,
                }
                for person in dict.fromkeys(people)
            ],
        )
    if deliveries:
        session.execute(
            w.outbox,
            [
                {
                    "key": d.key,
                    "incident_id": note.incident_id,
                    "rule": note.rule,
                    "recipient": d.recipient.person_id,
                    "kind": d.channel.kind,
                    "channel": d.target,
                    "state": "pending",
                    "attempts": 0,
                    "created_at": utcnow(),
                }
                for d in {d.key: d for d in deliveries}.values()
            ],
        )


def outbox_row(
    session: Session,
    *,
    key: str,
    incident_id: str,
    rule: str,
    recipient: str,
    kind: str,
    target: str,
) -> Delivery:
    """The outbox row of one delivery, created pending the first time."""
    row = outbox_get(session, key=key)
    if row is None:
        row = Delivery(
            key=key,
            incident_id=incident_id,
            rule=rule,
            recipient=recipient,
            kind=kind,
            channel=target,
            state="pending",
            attempts=0,
        )
        session.add(row)
        session.flush()
    return row


def outbox_get(session: Session, *, key: str) -> Delivery | None:
    return session.scalar(select(Delivery).where(Delivery.key == key))


def outbox(
    session: Session, *, incident_id: str | None = None, state: str | None = None
) -> Sequence[Delivery]:
    q = select(Delivery).order_by(Delivery.id)
    if incident_id:
        q = q.where(Delivery.incident_id == incident_id)
    if state:
        q = q.where(Delivery.state == state)
    return session.scalars(q).all()


# --- queries (edges) ---


def list_incidents(
    session: Session,
    *,
    phase: str | None = None,
    unit: str | None = None,
    overdue: bool | None = None,
    drill: bool | None = None,
    involving: str | None = None,
    limit: int = 50,
    offset: int = 0,
    severity: str | None = None,
    category: str | None = None,
) -> Sequence[Incident]:
    """Incidents, the next deadline first and the closed ones last. `involving` keeps those a
    unit reported, leads or co-handles (R-SECRECY)."""
    q = select(Incident)
    if involving:
        q = q.where(
            (Incident.responsible_unit == involving)
            | (Incident.reporter_unit == involving)
            | (("," + Incident.co_units + ",").contains("," + involving + ",", autoescape=True))
        )
    if phase:
        q = q.where(Incident.phase == phase)
    if unit:
        q = q.where(Incident.responsible_unit == unit)
    if overdue is not None:
        q = q.where(Incident.overdue == overdue)
    if drill is not None:
        q = q.where(Incident.drill == drill)
    if severity:
        q = q.where(Incident.severity == severity)
    if category:
        q = q.where(Incident.category == category)
    q = q.order_by(
        Incident.next_due_at.is_(None), Incident.next_due_at, Incident.received_at.desc()
    )
    return session.scalars(q.limit(limit).offset(offset)).all()


def open_incidents_with_url(session: Session, *, url: str) -> list[str]:
    return list(
        session.scalars(
            select(Incident.id).where(Incident.url == url, Incident.phase != "closed")
        ).all()
    )


def timeline(session: Session, *, incident_id: str) -> Sequence[TimelineEvent]:
    return session.scalars(
        select(TimelineEvent)
        .where(TimelineEvent.incident_id == incident_id)
        .order_by(TimelineEvent.seq)
    ).all()


def deadlines(session: Session, *, incident_id: str) -> Sequence[DeadlineRow]:
    return session.scalars(
        select(DeadlineRow)
        .where(DeadlineRow.incident_id == incident_id)
        .order_by(DeadlineRow.due_at)
    ).all()


def escalations(session: Session, *, incident_id: str) -> Sequence[EscalationRow]:
    return session.scalars(
        select(EscalationRow)
        .where(EscalationRow.incident_id == incident_id)
        .order_by(EscalationRow.at)
    ).all()


def accountability(
    session: Session, *, incident_id: str | None = None
) -> Sequence[AccountabilityRow]:
    q = select(AccountabilityRow).order_by(AccountabilityRow.recorded_at)
    if incident_id:
        q = q.where(AccountabilityRow.incident_id == incident_id)
    return session.scalars(q).all()


def inbox(session: Session, *, recipient: str, limit: int = 100) -> Sequence[InboxMessage]:
    return session.scalars(
        select(InboxMessage)
        .where(InboxMessage.recipient == recipient)
        .order_by(InboxMessage.created_at.desc(), InboxMessage.id.desc())
        .limit(limit)
    ).all()


def deliveries(session: Session, *, key_prefix: str) -> Sequence[Delivery]:
    return session.scalars(
        select(Delivery).where(Delivery.key.startswith(key_prefix, autoescape=True))
    ).all()


# --- tokens (web app and CLI) ---


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# How long a personal token lasts when nobody says (the CLI passes YUQING_TOKEN_DAYS).
TOKEN_DAYS = 180


def create_token(
    session: Session, *, person_id: str, label: str | None = None, days: float = TOKEN_DAYS
) -> str:
    """A new bearer token for a roster person, valid for `days`; only its hash is stored."""
    if not days > 0:
        raise ValueError("a token must be valid for some time")
    token = "yq_" + secrets.token_urlsafe(32)
    now = utcnow()
    session.add(
        ApiToken(
            person_id=person_id,
            token_hash=_hash(token),
            label=label,
            created_at=now,
            expires_at=now + timedelta(days=days),
        )
    )
    return token


def person_for_token(session: Session, *, token: str) -> str | None:
    """The person of a live token: not revoked, not expired."""
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == _hash(token)))
    if row is None or row.revoked_at is not None or row.expires_at <= utcnow():
        return None
    return row.person_id


def revoke_tokens(session: Session, *, person_id: str) -> int:
    rows = session.scalars(
        select(ApiToken).where(ApiToken.person_id == person_id, ApiToken.revoked_at.is_(None))
    ).all()
    for row in rows:
        row.revoked_at = utcnow()
    end_sessions(session, person_id=person_id)  # a revoked person is signed out of the pages too
    return len(rows)


def list_tokens(session: Session) -> Sequence[ApiToken]:
    """Every token, newest first (the hashes only; a token is never stored)."""
    return session.scalars(select(ApiToken).order_by(ApiToken.id.desc())).all()


# --- browser sessions (web app) ---


def create_session(session: Session, *, person_id: str, hours: float) -> str:
    """A new, random session id for a signed-in person; only its hash is stored."""
    session_id = secrets.token_urlsafe(32)
    now = utcnow()
    session.add(
        WebSession(
            person_id=person_id,
            session_hash=_hash(session_id),
            created_at=now,
            expires_at=now + timedelta(hours=hours),
        )
    )
    return session_id


def person_for_session(session: Session, *, session_id: str) -> str | None:
    """The person of a live session: not ended, not expired."""
    row = session.scalar(select(WebSession).where(WebSession.session_hash == _hash(session_id)))
    if row is None or row.revoked_at is not None or row.expires_at <= utcnow():
        return None
    return row.person_id


def end_session(session: Session, *, session_id: str) -> bool:
    row = session.scalar(select(WebSession).where(WebSession.session_hash == _hash(session_id)))
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    return True


def end_sessions(session: Session, *, person_id: str) -> int:
    rows = session.scalars(
        select(WebSession).where(WebSession.person_id == person_id, WebSession.revoked_at.is_(None))
    ).all()
    for row in rows:
        row.revoked_at = utcnow()
    return len(rows)


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


# --- digests (activities/digest.py) ---


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


# --- the leading group's dashboard (starter/web/reports.py) ---


def incident_counts(session: Session) -> dict[str, dict[str, int]]:
    """Real incidents (drills left out): all of them by phase, the open ones by severity."""
    from sqlalchemy import func

    by_phase = session.execute(
        select(Incident.phase, func.count())
        .where(Incident.drill.is_(False))
        .group_by(Incident.phase)
    ).all()
    by_severity = session.execute(
        select(Incident.severity, func.count())
        .where(Incident.drill.is_(False), Incident.phase != "closed")
        .group_by(Incident.severity)
    ).all()
    return {
        "phase": {str(k): int(n) for k, n in by_phase},
        "severity": {str(k): int(n) for k, n in by_severity},
    }


def overdue_now(session: Session, *, limit: int = 100) -> Sequence[Incident]:
    """Real incidents with a deadline overdue now, the oldest deadline first."""
    return session.scalars(
        select(Incident)
        .where(Incident.overdue.is_(True), Incident.drill.is_(False), Incident.phase != "closed")
        .order_by(Incident.next_due_at.is_(None), Incident.next_due_at)
        .limit(limit)
    ).all()


def escalations_since(
    session: Session, *, since: datetime, limit: int = 200
) -> Sequence[tuple[EscalationRow, str]]:
    """Escalation steps of real incidents from `since` on, the newest first, with the title."""
    rows = session.execute(
        select(EscalationRow, Incident.title)
        .join(Incident, Incident.id == EscalationRow.incident_id)
        .where(EscalationRow.at >= since, EscalationRow.drill.is_(False))
        .order_by(EscalationRow.at.desc(), EscalationRow.id.desc())
        .limit(limit)
    ).all()
    return [(e, title) for e, title in rows]


# --- the staff pages: inbox and what a unit owes (web) ---


def mark_read(session: Session, *, person: str, ids: Sequence[int] | None = None) -> int:
    """Mark the person's unread inbox messages read: those with `ids`, or all of them (None).
    Another person's messages are never touched; gives back how many changed."""
    q = select(InboxMessage).where(InboxMessage.recipient == person, InboxMessage.read_at.is_(None))
    if ids is not None:
        if not ids:
            return 0
        q = q.where(InboxMessage.id.in_(list(ids)))
    now = utcnow()
    rows = session.scalars(q).all()
    for row in rows:
        row.read_at = now
    return len(rows)


def owed_deadlines(
    session: Session,
    *,
    unit: str,
    include_unassigned: bool = False,
    involving: str | None = None,
) -> list[tuple[DeadlineRow, Incident]]:
    """Open deadlines (not met, not cancelled) of open incidents that `unit` owes, the soonest
    first; with `include_unassigned` also those that name no unit (the office's). `involving`
    keeps incidents that unit reported, leads or co-handles (R-SECRECY), as list_incidents."""
    owner = DeadlineRow.unit == unit
    if include_unassigned:
        owner = owner | DeadlineRow.unit.is_(None)
    q = (
        select(DeadlineRow, Incident)
        .join(Incident, Incident.id == DeadlineRow.incident_id)
        .where(
            owner,
            DeadlineRow.met_at.is_(None),
            DeadlineRow.cancelled.is_(False),
            Incident.phase != "closed",
        )
    )
    if involving:
        q = q.where(
            (Incident.responsible_unit == involving)
            | (Incident.reporter_unit == involving)
            | (("," + Incident.co_units + ",").contains("," + involving + ",", autoescape=True))
        )
    q = q.order_by(DeadlineRow.due_at, DeadlineRow.id)
    return [(d, i) for d, i in session.execute(q).all()]
