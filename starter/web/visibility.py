"""Whose incidents a person sees in a list (R-SECRECY): starter/web/deps.py answers every other
question of who may see what; these two live apart so sign-in (starter/web/auth.py, the
navigation's badges) asks the same rule without importing the dependencies."""

from __future__ import annotations

from plan import rules
from plan.roster import Roster
from store.incident_rows import Involving


def sees_every_incident(roster: Roster, person_id: str | None) -> bool:
    """The standing roles (the office, the leading group, publicity, 镇党政办, the contacts)."""
    return bool(person_id) and rules.can_view(roster, person_id or "", set())


def visible_to(roster: Roster, person_id: str) -> Involving | None:
    """For lists: None when the person sees every incident, else whose incidents they see: their
    unit's, and those the leading group named them to (store/incident_rows.py `involving_clause`,
    `may_see`'s rule). Someone not on the roster sees none (empty names match nothing)."""
    if sees_every_incident(roster, person_id):
        return None
    person = roster.person(person_id)
    if person is None:
        return Involving(unit="", person="")
    return Involving(unit=person.unit, person=person.id)
