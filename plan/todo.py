"""What an incident waits for, and from whom: the rows of the 待办 page (and the navigation's
badge), computed from the incident's state with the action table the workflow enforces
(plan/actions.py `allows`, `holds`, `Who`, `place_of`, the phases and `when`), so what 待办 lists
is what the workflow would accept.

The workflow computes them at each write (workflows/incident.py) and the `record` activity
replaces the incident's rows (store/incident_rows.py `record`), so the page reads one indexed
query and never the workflow. `matches` says who a row is for, the same test in Python as the
store's query in SQL (`waits_for`).

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from plan import rules
from plan.actions import ACTIONS, REPLY_RULES, Place, Who, holds_itself
from plan.enums import Category, Phase
from plan.models import Deadline, IncidentState
from plan.records import Wait
from plan.roster import Role, Roster

APPROVE = "approve"  # 待我审批
HANDLE = "handle"  # 待我处理
ESCALATED = "escalated"  # 督办给我 (R-ESCALATE)

Owed = Callable[[IncidentState], bool]


def _yes(s: IncidentState) -> bool:
    return True


@dataclass(frozen=True)
class Todo:
    """An action 待办 lists when the incident would accept it: the kind, the rules of the
    deadlines it meets (the soonest open one is shown), and whether it is owed at all (an action
    that is allowed but not owed, like re-triaging a handled incident, is no 待办)."""

    kind: str
    meets: frozenset[str] = frozenset()
    owed: Owed = _yes


REPLY = frozenset(REPLY_RULES)

TODO: dict[str, Todo] = {
    # R-REVIEW, R-RELEASE
    "approve-reply": Todo(APPROVE, REPLY),
    "countersign-reply": Todo(APPROVE, REPLY),
    "approve-release": Todo(APPROVE, REPLY),
    # R-OFFICE: the office confirms leads and triages new incidents.
    "confirm-lead": Todo(HANDLE),
    "triage": Todo(HANDLE, owed=lambda s: s.phase is Phase.triage),
    "file-written-report": Todo(HANDLE, frozenset({rules.R_WRITTEN})),
    "report-progress": Todo(HANDLE, frozenset({rules.R_PROGRESS})),
    # R-SUGGESTION: the adoption decision comes before the reply can be drafted.
    "decide-adoption": Todo(
        HANDLE, REPLY, lambda s: s.category is Category.suggestion and s.adoption is None
    ),
    "draft-reply": Todo(HANDLE, REPLY),
    "publish-reply": Todo(HANDLE, REPLY),
    # R-TRACK: a check is owed while its deadline is open.
    "track": Todo(
        HANDLE,
        frozenset({rules.R_TRACK}),
        lambda s: any(d.open and d.rule == rules.R_TRACK for d in s.deadlines),
    ),
    "submit-summary": Todo(HANDLE, frozenset({rules.R_SUMMARY})),
}

GROUP = (Role.office, Role.leader, Role.deputy, Role.member)


def who_rows(
    who: Who, place: Place, roster: Roster | None = None
) -> list[tuple[str | None, bool, str | None, str | None]]:
    """`holds(who, …)` as rows of (unit, head, role, person): a person holds `who` exactly when a
    row `matches` them. Keep in step with plan/actions.py `holds`. With the roster, a person row
    for each stand-in of someone away who holds it (代理)."""
    units: list[str] = []
    heads: list[str] = []
    roles: list[Role] = []
    persons: list[str] = []
    if who is Who.office:
        roles = [Role.office]
    elif who is Who.leading:
        roles = [Role.leader, Role.deputy]
    elif who is Who.office_or_leading:
        roles = [Role.office, Role.leader, Role.deputy]
    elif who is Who.group:
        roles = list(GROUP)
    elif who is Who.unit:
        units = [place.responsible_unit] if place.responsible_unit else []
    elif who is Who.unit_head:
        heads = [place.responsible_unit] if place.responsible_unit else []
    elif who is Who.involved:
        roles = [Role.office]
        units = [u for u in (place.responsible_unit, *place.co_units) if u]
        units += list(place.activated_units)
        persons = list(place.activated_persons)
    elif who is Who.countersigner:
        heads = list(place.countersign_pending)
    elif who is Who.consulting:
        roles = list(GROUP)
        units = list(place.activated_units)
        persons = list(place.activated_persons)
    else:  # Who.reporter
        roles = [Role.office]
        units = [place.reporter_unit] if place.reporter_unit else []
    rows: list[tuple[str | None, bool, str | None, str | None]] = []
    rows += [(u, False, None, None) for u in dict.fromkeys(units)]
    rows += [(u, True, None, None) for u in dict.fromkeys(heads)]
    rows += [(None, False, r.value, None) for r in roles]
    if roster is not None:
        persons += [s for a, s in place.stand_ins if holds_itself(who, roster, a, place)]
    rows += [(None, False, None, p) for p in dict.fromkeys(persons)]
    return rows


def _meets(s: IncidentState, todo: Todo) -> Deadline | None:
    owed = [d for d in s.deadlines if d.open and d.rule in todo.meets]
    return min(owed, key=lambda d: d.due_at) if owed else None


def waits(s: IncidentState, roster: Roster, place: Place, tz: str = "UTC") -> list[Wait]:
    """Everything the incident waits for now: each `TODO` action the table accepts from someone
    (its phase and `when`; who may take it as rows), and R-ESCALATE's targets of each open,
    overdue deadline (督办给我: the persons its chain reached, at the highest step each)."""
    found: list[Wait] = []
    if s.phase is Phase.closed:
        return found
    for name, todo in TODO.items():
        rule = ACTIONS[name]
        if s.phase not in rule.phases_for(s) or not todo.owed(s):
            continue
        if rule.when(s, roster, tz) is not None:
            continue
        d = _meets(s, todo)
        for unit, head, role, person in who_rows(rule.who, place, roster):
            found.append(
                Wait(
                    action=name,
                    kind=todo.kind,
                    unit=unit,
                    head=head,
                    role=role,
                    person=person,
                    deadline_key=d.key if d else None,
                    deadline_title=d.title if d else None,
                    due_at=d.due_at if d else None,
                    step=d.escalation_step if d else 0,
                )
            )
    for d in s.deadlines:
        if not (d.open and d.overdue and d.escalation_step):
            continue
        reached: dict[str, int] = {}
        for esc in s.escalations:
            if esc.deadline_key == d.key and esc.step <= d.escalation_step:
                for target in esc.targets:
                    reached[target] = max(reached.get(target, 0), esc.step)
        for target, step in reached.items():
            found.append(
                Wait(
                    action=ESCALATED,
                    kind=ESCALATED,
                    person=target,
                    deadline_key=d.key,
                    deadline_title=d.title,
                    due_at=d.due_at,
                    step=step,
                )
            )
    return found


def matches(wait: Wait, roster: Roster, person_id: str) -> bool:
    """Whether a row is for this person: theirs by name, their unit's (a head's row: only if
    they head it), or their standing role's. store/incident_rows.py `waits_for` is this in SQL."""
    if wait.person is not None:
        return wait.person == person_id
    if wait.unit is not None:
        if wait.head:
            return roster.is_head_of(person_id, wait.unit)
        return roster.belongs_to(person_id, wait.unit)
    return wait.role is not None and wait.role in roster.roles_of(person_id)


def headed_units(roster: Roster, person_id: str) -> list[str]:
    """The units this person heads (a unit_head row of `waits` is theirs)."""
    return [u.id for u in roster.units if u.head == person_id]
