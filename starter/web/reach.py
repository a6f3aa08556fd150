"""通联测试 (issue 20, item 5): start one on demand (the office and the leader: plan/actions.py
`REACH_TEST_STARTERS`), and 确认收到 (each tested person, signed in: a link in a group chat never
confirms for anyone). The monthly run starts by itself (starter/schedules.py); the leading group's
dashboard shows who is unreachable (starter/web/reports.py).
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel
from temporalio.client import Client

from plan.actions import may_start_reach_test
from plan.roster import Role, Roster
from starter.incidents import ServiceError
from starter.schedules import start_reach_test
from store import reach_checks

from . import contract
from .deps import (
    ApiPerson,
    CheckedForm,
    DocumentedQuery,
    PagePerson,
    PagesDep,
    StoreSession,
    TemporalClient,
)
from .pages import Pages

REFUSED = "只有领导小组办公室和组长可以发起通联测试"

router = APIRouter(include_in_schema=False)  # pages: not the JSON API
api_router = APIRouter()


class ReachTestStarted(BaseModel):
    run_id: str
    message: str


class ReachConfirmed(BaseModel):
    run_id: str | None
    message: str


def started_by(roster: Roster, person_id: str) -> str:
    """Who asked, by role (the workflow's input names no one)."""
    return "组长按需发起" if Role.leader in roster.roles_of(person_id) else "办公室按需发起"


async def _start(kit: Pages, client: Client, person_id: str) -> str:
    if not may_start_reach_test(kit.roster, person_id):
        raise ServiceError(403, REFUSED)
    return await start_reach_test(client, kit.settings, by=started_by(kit.roster, person_id))


def confirmed_words(run_id: str | None) -> str:
    if run_id is None:
        return "您还没有收到过通联测试"
    return f"已确认收到通联测试（{run_id}）"


# ---------------------------------------------------------------- the pages


@router.post("/reach-tests")
async def page_start(
    request: Request, me: PagePerson, form: CheckedForm, kit: PagesDep, client: TemporalClient
) -> Response:
    """The dashboard's 立即发起通联测试."""
    run_id = await _start(kit, client, me.person_id)
    return RedirectResponse(f"/dashboard?reach_test={run_id}#reach", status_code=303)


@router.post("/inbox/reach-confirm")
def page_confirm(me: PagePerson, form: CheckedForm, session: StoreSession) -> Response:
    """确认收到, from the inbox: the person's rows of their newest run."""
    reach_checks.confirm(session, person_id=me.person_id, at=datetime.now(UTC))
    return RedirectResponse("/inbox", status_code=303)


# ---------------------------------------------------------------- the API


@api_router.post(
    "/api/reach-tests",
    status_code=201,
    response_model=ReachTestStarted,
    responses=contract.refusals(*contract.AUTHENTICATED, 403, 503),
    dependencies=[DocumentedQuery],
)
async def api_start(person: ApiPerson, kit: PagesDep, client: TemporalClient) -> ReachTestStarted:
    """通联测试 now: a message to every leading-group member, office member and unit head on each
    of their channels, asking them to confirm. The office and the leader only."""
    run_id = await _start(kit, client, person)
    return ReachTestStarted(run_id=run_id, message=f"通联测试已发起，编号 {run_id}")


@api_router.post(
    "/api/reach-tests/confirm",
    response_model=ReachConfirmed,
    responses=contract.refusals(*contract.AUTHENTICATED),
    dependencies=[DocumentedQuery],
)
def api_confirm(person: ApiPerson, session: StoreSession) -> ReachConfirmed:
    """确认收到 the caller's newest 通联测试 (their own only)."""
    run_id = reach_checks.confirm(session, person_id=person, at=datetime.now(UTC))
    return ReachConfirmed(run_id=run_id, message=confirmed_words(run_id))
