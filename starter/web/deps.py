"""Who is calling, and what they may see (R-SECRECY): the one place pages, the API, exports,
reports, the codec and the Temporal UI's gate ask. (The lists ask the store: `visible_to` below
gives the person's `Involving`, and store/incident_rows.py `involving_clause` is `may_see`'s rule,
`involved_units` and the persons named by activation, written as SQL.)

What someone may not see does not exist for them.

A signed-in person with no role on an incident gets exactly the answer an unknown id gets (404,
the same body), on the pages and the API, for reading it and for acting on it. A 403 would tell
them the id exists, and the workflow's refusals name the responsible unit and the phase; so the
check comes before any action reaches the workflow.

Also the bounds on paging: an offset near 10^21 overflows the database's integers (a 500).
"""

from __future__ import annotations

from fastapi import Request

from plan import rules
from plan.actions import may_read_reports
from plan.models import IncidentView
from plan.roster import Roster
from starter.incidents import ServiceError
from store.incident_rows import Involving

from .pages import pages
from .state import authenticate, request_state

# Paging bounds: far beyond any town's incidents, far below the database's 64-bit integers.
MAX_OFFSET = 1_000_000
PAGE_SIZE = 50
MAX_PAGE = MAX_OFFSET // PAGE_SIZE


def not_found(incident_id: str) -> ServiceError:
    """The answer for an id that does not exist (starter.incidents.get says the same)."""
    return ServiceError(404, f"事件“{incident_id}”不存在")


def caller(request: Request) -> str | None:
    """The person calling: a browser session, else a valid bearer token; None otherwise."""
    me = pages(request).auth.viewer(request)
    if me is not None:
        return me.person_id
    header = request.headers.get("authorization")
    if not header:
        return None
    try:
        return authenticate(request_state(request.app), header)
    except ServiceError:
        return None


def involved_units(view: IncidentView) -> set[str]:
    """The units an incident involves (R-SECRECY): reporting, responsible, co-handling and
    brought in by the leading group (R-ACTIVATE). The lists' filter in SQL,
    store/incident_rows.py `involving_clause`, must say the same (with `activated_persons`)."""
    units = {view.reporter_unit, *view.co_units, *view.activated_units}
    if view.responsible_unit:
        units.add(view.responsible_unit)
    return units


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


def reads_reports(roster: Roster, person_id: str | None) -> bool:
    """The accountability report, the dashboard, the Temporal UI (R-ACCOUNT readers)."""
    return may_read_reports(roster, person_id)


def may_see(roster: Roster, person_id: str, view: IncidentView) -> bool:
    return rules.can_view(roster, person_id, involved_units(view), view.activated_persons)


def require_visible(
    roster: Roster, person_id: str, view: IncidentView, incident_id: str
) -> IncidentView:
    """The view, or the 404 of an unknown `incident_id` (as asked) when the person may not see it."""
    if not may_see(roster, person_id, view):
        raise not_found(incident_id)
    return view
