"""R-ESCALATE's reach (issue 20, item 5): who the escalation chain can come to, and which of them
no channel of their own outside the system's inbox reaches.

A 督办 that only lands in an inbox nobody opens at night is not escalation. Group channels of a
unit do not count for a person: a robot posting to a group chat is the unit's, not proof that
the person is reached. Warned about by `yuqing check-roster` (so `make up`), never an error: a
town may run on the inbox alone while it sets its channels up.
"""

from __future__ import annotations

from dataclasses import dataclass

from plan.roster import Roster
from plan.rules import escalation_chain
from plan.spec import PlanSpec


@dataclass(frozen=True)
class Unreached:
    person: str
    name: str
    steps: tuple[str, ...]  # the steps that come to them, as the plan names them


def escalation_people(roster: Roster, spec: PlanSpec) -> dict[str, dict[int, str]]:
    """Everyone a step of the chain can go to, whichever unit is responsible (and none yet),
    with the steps by number, as the plan names them: {3: "第3级（组长）"}."""
    found: dict[str, dict[int, str]] = {}
    for unit_id in [None, *(u.id for u in roster.units)]:
        for step in escalation_chain(roster, unit_id, [], spec):
            for person in step.targets:
                found.setdefault(person, {})[step.step] = f"第{step.step}级（{step.label}）"
    return found


def reachable(roster: Roster, person_id: str) -> bool:
    """Whether the person has a channel of their own besides the inbox."""
    person = roster.person(person_id)
    return person is not None and any(c.kind != "inbox" for c in person.channels)


def unreached(roster: Roster, spec: PlanSpec) -> list[Unreached]:
    """Who the chain can come to that nothing but the inbox reaches, the last steps first (the
    leader before the units' heads: whom a missed deadline ends with matters most)."""
    people = escalation_people(roster, spec)
    order = sorted(people, key=lambda p: (-max(people[p]), p))
    return [
        Unreached(p, roster.person_name(p), tuple(people[p][n] for n in sorted(people[p])))
        for p in order
        if not reachable(roster, p)
    ]
