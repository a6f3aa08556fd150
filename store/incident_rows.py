"""The incident's rows in the read model: the snapshot, timeline, deadlines, escalation steps,
accountability records, referrals and commendations the `record` and `escalate` activities
write, and the queries the incident page, the lists and the staff's to-do page read.

Keyword-only arguments, one session per call site; every write is an upsert on a natural key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Select,
    and_,
    delete,
    false,
    func,
    or_,
    select,
)
from sqlalchemy.orm import InstrumentedAttribute, Session, aliased
from sqlalchemy.orm.util import AliasedClass

from plan.models import Escalation
from plan.records import RecordRequest
from plan.roster import Roster
from store._upsert import ACCOUNTABILITY_COLUMNS, DEADLINE_COLUMNS, writes
from store.models import (
    AccountabilityRow,
    DeadlineRow,
    EscalationRow,
    Incident,
    TimelineEvent,
    WaitRow,
)

# --- writes (activities/record.py) ---


# The zone of the short numbers' days when the caller does not say (YUQING_TIMEZONE).
TOWN_ZONE = "Asia/Shanghai"


def short_number(day: str, n: int) -> str:
    """2026-1130-007: the day (YYYYMMDD) and its sequence, at least three digits."""
    return f"{day[:4]}-{day[4:]}-{n:03d}"


def next_short_number(session: Session, *, received_at: datetime, timezone: str) -> str:
    """The next short number of the day `received_at` falls on in `timezone`."""
    day = received_at.astimezone(ZoneInfo(timezone)).strftime("%Y%m%d")
    w = writes(session.get_bind().dialect.name)
    n = session.execute(w.next_number, {"day": day}).scalar_one()
    return short_number(day, n)


def record(session: Session, *, request: RecordRequest, timezone: str = TOWN_ZONE) -> None:
    """Write an incident snapshot. A snapshot older than the stored one changes nothing but
    adds any timeline entries and escalation steps it carries (those are keyed and immutable).
    The first snapshot of an incident gets its short number (`next_short_number`, in the same
    transaction: a retried or concurrent first write that loses on the incident's key rolls
    its number back with it).

    One prepared statement per table, each an insert that leaves (or updates) what a retry finds
    already there: under a burst of escalations the ORM's reads before writes, and building
    statements for each call, were most of the worker's time (docs/PERFORMANCE.md)."""
    w = writes(session.get_bind().dialect.name)
    row = request.incident
    fields = row.columns()
    statement = w.update_incident if row.facts is not None else w.update_state
    updated = session.execute(statement, {**fields, "_id": row.id, "_version": row.version})
    fresh = bool(cast("CursorResult[Any]", updated).rowcount)
    if not fresh and session.execute(w.incident_version, {"_id": row.id}).first() is None:
        if row.facts is None:
            # The run's first write carries them, and writes go one after another: a row missing
            # now was deleted under the running incident. Retried (and seen on the Temporal UI).
            raise LookupError(f"incident {row.id} is not in the store and this write has no facts")
        number = next_short_number(session, received_at=row.facts.received_at, timezone=timezone)
        session.execute(w.insert_incident, {**fields, "short_number": number})
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
    if request.waits is not None:
        # 待办: the incident's rows as of this snapshot, all of them (plan/todo.py `waits`). A
        # wait names its deadline by key; its title and due time are the deadline row's, written
        # above (issue 21: not carried twice in the history).
        session.execute(delete(WaitRow).where(WaitRow.incident_id == row.id))
        if request.waits:
            session.execute(
                w.waits, [{"incident_id": row.id, **x.model_dump()} for x in request.waits]
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


def record_escalation(
    session: Session, *, incident_id: str, escalation: Escalation, drill: bool
) -> bool:
    """Record one escalation step; False when it was already recorded (a retry)."""
    w = writes(session.get_bind().dialect.name)
    row = _escalation_fields(incident_id, escalation, drill)
    return session.execute(w.escalation_once, row).first() is not None


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


# --- who may see an incident in a list (R-SECRECY) ---


@dataclass(frozen=True)
class Involving:
    """Someone without a standing role, for whom a list keeps only the incidents they have a part
    in (R-SECRECY): those of their unit, and those the leading group named them to in person
    (R-ACTIVATE). starter/web/deps.py `visible_to` makes one (None: the person sees them all)."""

    unit: str
    person: str


def _names(joined: InstrumentedAttribute[str], name: str) -> ColumnElement[bool]:
    """A comma-joined column (co_units, activated_units, activated_persons) names `name`; a name
    with a comma (never a roster id) is in no such list, not a run of two."""
    if "," in name:
        return false()
    return ("," + joined + ",").contains("," + name + ",", autoescape=True)


def involving_clause(who: Involving) -> ColumnElement[bool]:
    """R-SECRECY as SQL, the one filter every query that lists incidents for someone uses: the
    incidents `who.unit` reports, leads, co-handles or was brought in to (R-ACTIVATE), and those
    the leading group named `who.person` to in person.

    The same rule as the incident page's, starter/web/deps.py `may_see` for someone without a
    standing role: `deps.involved_units(view)` (reporter_unit, responsible_unit, co_units,
    activated_units) and `view.activated_persons` (plan.rules.can_view). A rule added there
    belongs here too (and the read model's columns it needs). An empty unit or person matches
    nothing: an empty name would otherwise match every empty list."""
    clauses: list[ColumnElement[bool]] = []
    if who.unit:
        clauses += [
            Incident.reporter_unit == who.unit,
            Incident.responsible_unit == who.unit,
            _names(Incident.co_units, who.unit),
            _names(Incident.activated_units, who.unit),
        ]
    if who.person:
        clauses.append(_names(Incident.activated_persons, who.person))
    return or_(false(), *clauses)


# --- queries (the pages, the API, the CLI) ---

SEARCH_MAX = 100  # characters of a search: longer is refused by the pages and the API


def search_clause(text: str) -> ColumnElement[bool]:
    """A keyword search: the title, the content, the short number or the id contains `text`
    (case-insensitive; `%`, `_` and the escape character are matched as themselves)."""
    words = text.strip()
    if "\x00" in words:  # in no stored text, and PostgreSQL refuses it in a parameter
        return false()
    return or_(
        Incident.title.icontains(words, autoescape=True),
        Incident.content.icontains(words, autoescape=True),
        Incident.short_number.icontains(words, autoescape=True),
        Incident.id.icontains(words, autoescape=True),
    )


def list_incidents(
    session: Session,
    *,
    phase: str | None = None,
    unit: str | None = None,
    overdue: bool | None = None,
    drill: bool | None = None,
    involving: Involving | None = None,
    limit: int = 50,
    offset: int = 0,
    severity: str | None = None,
    category: str | None = None,
    text: str | None = None,
) -> Sequence[Incident]:
    """Incidents, the next deadline first and the closed ones last. `involving` keeps those that
    person may see (`involving_clause`, R-SECRECY); None lists them all. `text` keeps those
    whose title, content, short number or id contains it (`search_clause`)."""
    q = select(Incident)
    if involving is not None:
        q = q.where(involving_clause(involving))
    if text and text.strip():
        q = q.where(search_clause(text))
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
    # NULLS LAST rather than sorting on `next_due_at IS NULL` first (the same order): PostgreSQL
    # then reads the next_due_at index in order and stops at the page, instead of sorting every
    # incident for each page of the list.
    q = q.order_by(Incident.next_due_at.asc().nulls_last(), Incident.received_at.desc())
    return session.scalars(q.limit(limit).offset(offset)).all()


def owed_deadlines(
    session: Session,
    *,
    unit: str,
    include_unassigned: bool = False,
    involving: Involving | None = None,
) -> list[tuple[DeadlineRow, Incident]]:
    """Open deadlines (not met, not cancelled) of open incidents that `unit` owes, the soonest
    first; with `include_unassigned` also those that name no unit (the office's). `involving`
    keeps the incidents that person may see (`involving_clause`, R-SECRECY), as list_incidents."""
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
    if involving is not None:
        q = q.where(involving_clause(involving))
    q = q.order_by(DeadlineRow.due_at, DeadlineRow.id)
    return [(d, i) for d, i in session.execute(q).all()]


def short_number_of(session: Session, *, incident_id: str) -> str | None:
    """The incident's short number; None before the store first recorded it."""
    return session.scalar(select(Incident.short_number).where(Incident.id == incident_id))


@dataclass(frozen=True)
class Whose:
    """Whose 待办 rows to read: the person's own, their unit's staff rows, the head rows of the
    units they head, and their standing roles' (plan/todo.py `matches`, as SQL)."""

    person: str
    unit: str | None
    heads: tuple[str, ...]
    roles: tuple[str, ...]


def whose(roster: Roster, person_id: str) -> Whose:
    person = roster.person(person_id)
    return Whose(
        person=person_id,
        unit=person.unit if person else None,
        heads=tuple(u.id for u in roster.units if u.head == person_id),
        roles=tuple(sorted(r.value for r in roster.roles_of(person_id))),
    )


def _mine(who: Whose, w: type[WaitRow] | AliasedClass[WaitRow] = WaitRow) -> ColumnElement[bool]:
    """plan/todo.py `matches` in SQL: each branch one of the waits table's indexes. `w`: the
    waits table or an alias of it (count_waits compares a row with its fellows)."""
    clauses: list[ColumnElement[bool]] = [w.person == who.person]
    if who.unit:
        clauses.append(and_(w.unit == who.unit, w.head.is_(False)))
    if who.heads:
        clauses.append(and_(w.unit.in_(who.heads), w.head.is_(True)))
    if who.roles:
        clauses.append(w.role.in_(who.roles))
    return or_(*clauses)


def waits_query(*, whose: Whose, involving: Involving | None) -> Select[WaitRow, Incident]:
    """The person's rows of open incidents they may see (R-SECRECY, `involving_clause`)."""
    q = (
        select(WaitRow, Incident)
        .join(Incident, Incident.id == WaitRow.incident_id)
        .where(_mine(whose), Incident.phase != "closed")
    )
    if involving is not None:
        q = q.where(involving_clause(involving))
    return q


def waits_for(
    session: Session, *, whose: Whose, involving: Involving | None, limit: int = 500
) -> list[tuple[WaitRow, Incident]]:
    """待办: what open incidents wait for from this person, the soonest deadline first (those
    without one last). A person may match an action twice (their unit and their role): the
    page shows it once."""
    q = waits_query(whose=whose, involving=involving).order_by(
        WaitRow.due_at.is_(None), WaitRow.due_at, WaitRow.id
    )
    return [(w, i) for w, i in session.execute(q.limit(limit)).all()]


def count_waits(
    session: Session, *, whose: Whose, involving: Involving | None, cap: int | None = None
) -> int:
    """The navigation's 待办 badge: how many things wait for the person (one per incident,
    action and deadline), one count query; with `cap`, counted no further than that (the
    badge says "99+"), so a person with thousands waiting costs what one with a hundred does.

    Each thing is counted at its first row (the lowest id) of those naming the person, rather
    than by a DISTINCT: a DISTINCT reads and hashes every row before its LIMIT can stop it (some
    15 ms on every signed-in page with 10,000 open incidents waiting on the office); a row with
    no earlier fellow is known row by row, so the cap stops the scan. The incident's filters
    (open, R-SECRECY) are the same for a row's fellows: they share its incident."""
    earlier = aliased(WaitRow)
    first = ~(
        select(earlier.id)
        .where(
            earlier.incident_id == WaitRow.incident_id,
            earlier.action == WaitRow.action,
            earlier.deadline_key.is_not_distinct_from(WaitRow.deadline_key),
            earlier.id < WaitRow.id,
            _mine(whose, earlier),
        )
        .exists()
    )
    q = waits_query(whose=whose, involving=involving).with_only_columns(WaitRow.id).where(first)
    if cap is not None:
        q = q.limit(cap)
    found = session.scalar(select(func.count()).select_from(q.subquery()))
    return int(found or 0)


def open_incidents_with_url(session: Session, *, url: str) -> list[str]:
    """R-DEDUP: the open incidents about the same post."""
    return list(
        session.scalars(
            select(Incident.id).where(Incident.url == url, Incident.phase != "closed")
        ).all()
    )


def open_incident_ids(session: Session) -> list[str]:
    """Every incident not closed (代理: the ones a change of absences is told to)."""
    return list(session.scalars(select(Incident.id).where(Incident.phase != "closed")).all())


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
