"""Who is calling, and what they may see (R-SECRECY): the one place pages, the API, exports,
reports, the codec and the Temporal UI's gate ask. (The lists ask the store: `visible_to` below
gives the person's `Involving`, and store/incident_rows.py `involving_clause` is `may_see`'s rule,
`involved_units` and the persons named by activation, written as SQL.)

What someone may not see does not exist for them.

A signed-in person with no role on an incident gets exactly the answer an unknown id gets (404,
the same body), on the pages and the API, for reading it and for acting on it. A 403 would tell
them the id exists, and the workflow's refusals name the responsible unit and the phase; so the
check comes before any action reaches the workflow.

The answers reach the routes as FastAPI dependencies (the full-stack template's pattern): a route
declares what it needs in its signature and its body starts with the work.

- `SettingsDep`, `StateDep`, `PagesDep`, `TemporalClient`, `StoreSession`: the app's settings,
  its state, the page kit (templates, sign-in), the Temporal client, and one store transaction
  (committed when the route returns, rolled back when it raises; for plain-`def` routes, which
  FastAPI runs in its thread pool).
- `ApiPerson`: the API's caller, by bearer token; 401 in Chinese otherwise.
- `PagePerson`: the signed-in viewer of a page. Without one the route never runs: `SignInRequired`
  is raised, and its exception handler (starter/web/handlers.py) redirects to the sign-in page
  with `next=` the page asked for (`IncidentPagePerson`: the incident's page, for its forms).
- `MaybeViewer`: the signed-in viewer or None (public pages, for their header).
- `MaybePerson`: who sends a submission: the person of a valid bearer token, or None for an
  anonymous one, which counts against the client's submission limit (starter/web/limits.py).
- `VisibleIncident` / `VisibleIncidentPage`: the incident as the caller may see it, or the 404 of
  an unknown id (the refused attempt noted in the access log).
- `CheckedForm`: a signed-in person's posted form, after the Origin and CSRF checks.

Also the bounds on paging: an offset near 10^21 overflows the database's integers (a 500).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated
from urllib.parse import urlencode

from fastapi import Depends, Request
from fastapi.responses import RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from temporalio.client import Client

from activities import documents
from config.settings import Settings
from plan import rules
from plan.actions import may_read_reports
from plan.models import IncidentView
from plan.roster import Roster
from starter import incidents
from starter.errors import FieldError
from starter.incidents import ServiceError
from store.db import session_scope

from . import access, limits
from .auth import Viewer
from .pages import Pages, pages
from .state import AppState, authenticate, request_state
from .visibility import sees_every_incident as sees_every_incident
from .visibility import visible_to as visible_to

# Paging bounds: far beyond any town's incidents, far below the database's 64-bit integers.
MAX_OFFSET = 1_000_000
PAGE_SIZE = 50
MAX_PAGE = MAX_OFFSET // PAGE_SIZE


# ------------------------------------------------------------------ what may be seen


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


# ------------------------------------------------------------------ signing in from a page


class SignInRequired(Exception):
    """A page for signed-in staff, asked without a session: the answer is the redirect to the
    sign-in page, coming back to `target` (starter/web/handlers.py turns it into `to_login`)."""

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.target = target


def to_login(target: str) -> RedirectResponse:
    """The sign-in page, and back to `target` (a path on this site) once signed in."""
    return RedirectResponse("/login?" + urlencode({"next": target}), status_code=303)


def _asked_for(request: Request) -> str:
    """The path and query the request asked for."""
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


# ------------------------------------------------------------------ the app's parts


def app_state(request: Request) -> AppState:
    return request_state(request.app)


StateDep = Annotated[AppState, Depends(app_state)]


def settings_of(state: StateDep) -> Settings:
    return state.settings


SettingsDep = Annotated[Settings, Depends(settings_of)]

PagesDep = Annotated[Pages, Depends(pages)]


async def temporal(state: StateDep) -> Client:
    return await state.temporal()


TemporalClient = Annotated[Client, Depends(temporal)]


def store_session(config: SettingsDep) -> Iterator[Session]:
    """One store transaction for a plain-`def` route (run in the thread pool, like this): it
    commits when the route returns, before the answer is sent, and rolls back if it raises."""
    with session_scope(config.database_url) as s:
        yield s


StoreSession = Annotated[Session, Depends(store_session, scope="function")]


# ------------------------------------------------------------------ who is calling


# The bearer token as the OpenAPI document's security scheme (and /api/docs' Authorize button).
# It never answers by itself (auto_error=False): `authenticate` does, with the Chinese 401.
bearer = HTTPBearer(auto_error=False, description="个人令牌：Authorization: Bearer <令牌>")


async def api_person(
    request: Request,
    _token: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> str:
    """The API's caller: the roster person behind the bearer token, or 401 in Chinese. A route
    of AuthenticatedRoute (the staff actions) has checked the token before reading the body."""
    known: str | None = getattr(request.state, "actor", None)
    if known is not None:
        return known
    header = request.headers.get("authorization")
    person = await run_in_threadpool(authenticate, request_state(request.app), header)
    request.state.actor = person
    return person


ApiPerson = Annotated[str, Depends(api_person)]


def _undocumented_query(request: Request) -> None:
    """422 for a query parameter the route's OpenAPI document does not name, or one given more
    than once (issue 17): a misspelt or doubled filter would otherwise be ignored, and the
    caller read an answer filtered otherwise than asked."""
    route = request.scope.get("route")
    path = getattr(route, "path", None)
    if path is None or not request.query_params:
        return
    operation = request.app.openapi()["paths"].get(path, {}).get(request.method.lower(), {})
    named = {p["name"]: p for p in operation.get("parameters", []) if p.get("in") == "query"}
    unknown = [k for k in dict.fromkeys(request.query_params.keys()) if k not in named]
    if unknown:
        fields = [FieldError(k[:40], f"未定义的查询参数“{k[:40]}”") for k in unknown[:5]]
        raise ServiceError(422, "请求包含未定义的查询参数", fields)
    # A parameter of one value given twice: FastAPI would read the last and drop the others.
    repeated = [
        k
        for k in dict.fromkeys(request.query_params.keys())
        if len(request.query_params.getlist(k)) > 1
        and named[k].get("schema", {}).get("type") != "array"
    ]
    if repeated:
        fields = [FieldError(k, f"参数“{k}”只能出现一次") for k in repeated]
        raise ServiceError(422, "查询参数重复", fields)


async def documented_query(request: Request, _person: ApiPerson) -> None:
    """Only the query parameters the document names, after the token (401 before 422)."""
    _undocumented_query(request)


async def documented_query_anyone(request: Request) -> None:
    """Only the query parameters the document names, for a route open to anyone."""
    _undocumented_query(request)


DocumentedQuery = Depends(documented_query)
DocumentedQueryAnyone = Depends(documented_query_anyone)


async def maybe_viewer(request: Request) -> Viewer | None:
    """The signed-in viewer of a page, or None: a public page's header shows who is signed in."""
    return await pages(request).auth.current(request)


MaybeViewer = Annotated[Viewer | None, Depends(maybe_viewer)]


async def page_person(request: Request) -> Viewer:
    """The signed-in viewer of a page; else, back here after signing in (SignInRequired)."""
    me = await pages(request).auth.current(request)
    if me is None:
        raise SignInRequired(_asked_for(request))
    return me


PagePerson = Annotated[Viewer, Depends(page_person)]


async def incident_page_person(request: Request, incident_id: str) -> Viewer:
    """The signed-in viewer posting a form of an incident's page; else, back to that page after
    signing in (not to the form's address, which only takes a POST)."""
    me = await pages(request).auth.current(request)
    if me is None:
        raise SignInRequired(f"/incidents/{incident_id}")
    return me


IncidentPagePerson = Annotated[Viewer, Depends(incident_page_person)]


async def maybe_person(request: Request) -> str | None:
    """Who sends a submission. Anonymous submissions count against the client's address; a
    monitoring system or a person sending a valid personal token is known and not limited."""
    header = request.headers.get("authorization")
    state = request_state(request.app)
    if header:
        try:
            return await run_in_threadpool(authenticate, state, header)
        except ServiceError:
            pass  # a bad token is treated as anonymous, not refused here
    limits.refuse_if_limited(state.submissions, request, "提交")
    state.submissions.hit(limits.client_key(request))
    return None


MaybePerson = Annotated[str | None, Depends(maybe_person)]


async def checked_form(request: Request, me: PagePerson) -> FormData:
    """A signed-in person's posted form, after the Origin and CSRF checks."""
    return await pages(request).posted(request, me)


CheckedForm = Annotated[FormData, Depends(checked_form)]


# ------------------------------------------------------------------ an incident they may see


def _visible(
    request: Request, person_id: str, view: IncidentView, incident_id: str
) -> IncidentView:
    roster = request_state(request.app).roster
    if not may_see(roster, person_id, view):
        access.record(request, person_id, "view", incident_id=view.id, granted=False)
    return require_visible(roster, person_id, view, incident_id)


async def visible_incident(
    request: Request, incident_id: str, client: TemporalClient, person: ApiPerson
) -> IncidentView:
    """The incident for the API's caller, or the 404 of an unknown id (R-SECRECY)."""
    return _visible(request, person, await incidents.get(client, incident_id), incident_id)


VisibleIncident = Annotated[IncidentView, Depends(visible_incident)]


async def visible_incident_page(
    request: Request, incident_id: str, client: TemporalClient, me: PagePerson
) -> IncidentView:
    """The incident for a page's signed-in viewer, or the 404 of an unknown id (R-SECRECY)."""
    return _visible(request, me.person_id, await incidents.get(client, incident_id), incident_id)


VisibleIncidentPage = Annotated[IncidentView, Depends(visible_incident_page)]


def visible_in_store(kit: Pages, person_id: str, incident_id: str) -> bool | None:
    """Whether the person may see the incident the store holds (R-SECRECY, the lists' rule in
    SQL; None: the store has no such incident): the answer for an incident Temporal no longer
    holds (归档, issue 19 item 4), whose attachments, documents and archive stay readable.
    Blocking: run it in the thread pool."""
    with session_scope(kit.settings.database_url) as s:
        if documents.visible_row(s, incident_id, visible_to(kit.roster, person_id)) is not None:
            return True
        return False if documents.visible_row(s, incident_id, None) is not None else None


async def refuse_unless_in_store(
    request: Request, kit: Pages, person_id: str, incident_id: str, refusal: ServiceError
) -> None:
    """After the workflow answered 404 (`refusal`): go on when the store holds the incident and
    the person may see it, else raise `refusal` (a refused attempt on a stored incident noted
    in the access log, as for a live one)."""
    seen = await run_in_threadpool(visible_in_store, kit, person_id, incident_id)
    if seen:
        return
    if seen is False:
        access.record(request, person_id, "view", incident_id=incident_id, granted=False)
    raise refusal
