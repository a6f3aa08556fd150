"""R-SECRECY at the door: what someone may not see does not exist for them.

A signed-in person with no role on an incident gets exactly the answer an unknown id gets (404,
the same body), on the pages and the API, for reading it and for acting on it. A 403 would tell
them the id exists, and the workflow's refusals name the responsible unit and the phase; so the
check comes before any action reaches the workflow.

Also the bounds on paging: an offset near 10^21 overflows the database's integers (a 500).
"""

from __future__ import annotations

from plan import rules
from plan.models import IncidentView
from plan.roster import Roster
from starter.incidents import ServiceError

from .pages import involved_units

# Paging bounds: far beyond any town's incidents, far below the database's 64-bit integers.
MAX_OFFSET = 1_000_000
PAGE_SIZE = 50
MAX_PAGE = MAX_OFFSET // PAGE_SIZE


def not_found(incident_id: str) -> ServiceError:
    """The answer for an id that does not exist (starter.incidents.get says the same)."""
    return ServiceError(404, f"事件“{incident_id}”不存在")


def may_see(roster: Roster, person_id: str, view: IncidentView) -> bool:
    return rules.can_view(roster, person_id, involved_units(view), view.activated_persons)


def require_visible(
    roster: Roster, person_id: str, view: IncidentView, incident_id: str
) -> IncidentView:
    """The view, or the 404 of an unknown `incident_id` (as asked) when the person may not see it."""
    if not may_see(roster, person_id, view):
        raise not_found(incident_id)
    return view
