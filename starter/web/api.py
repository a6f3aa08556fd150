"""The JSON API (bearer tokens, never the page's session cookie) and the health checks.

Who calls comes from deps.py (`ApiPerson`, `MaybePerson`, `VisibleIncident`); every input goes
through starter.incidents, so the API, the form and the CLI refuse the same things the same way.
There is one route per staff action in plan/actions.py `ACTIONS` (`action_router`, built when the
app is), each with its own request schema in the OpenAPI document.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from datetime import date, datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest

from plan.actions import ACTIONS, may_read_reports
from starter import incidents
from starter.errors import FieldError
from starter.incidents import ServiceError
from store import incident_rows, reporting
from store.db import session_scope

from . import access, attachments, audit, contract, incident_pages, limits, reports
from .answers import incident_json, receipt_of
from .deps import (
    MAX_OFFSET,
    ApiPerson,
    DocumentedQuery,
    DocumentedQueryAnyone,
    MaybePerson,
    PagesDep,
    StateDep,
    StoreSession,
    TemporalClient,
    may_see,
    refuse_unless_in_store,
    require_visible,
    visible_incident,
    visible_to,
)
from .filters import ApiListFilter
from .pages import Pages
from .state import authenticate, request_state

MAX_BODY = limits.MAX_JSON_BODY  # bytes; a submission is text, never this large

router = APIRouter()

# What the report's and the access log's parameters must be, in the OpenAPI document.
REPORT_DAY: dict[str, Any] = {
    "pattern": contract.REPORT_DAY,
    "description": "镇时区日期 YYYY-MM-DD，2000年至2100年；开始日期不得晚于结束日期，间隔不超过10年",
}
# Empty is no filter (the page's form sends the empty choice).
LOG_DAY: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "format": "date", "pattern": contract.ISO_DAY},
        {"type": "string", "maxLength": 0},
    ],
    "description": "镇时区日期 YYYY-MM-DD（含当日）；空为不限",
}
LOGGED: dict[str, Any] = {
    "anyOf": [{"type": "string", "enum": ["", *sorted(access.ACTION_LABELS)]}],
    "description": "记录的类型；空为不限",
}


@router.get("/healthz")
async def health() -> dict[str, str]:
    """Liveness: the process answers (a load balancer's cheap check)."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={
        503: {
            "description": "存储或 Temporal 不可达：problems 逐项说明",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "status": {"type": "string"},
                            "problems": {
                                "type": "object",
                                "additionalProperties": {"type": "string"},
                            },
                        },
                    }
                }
            },
        }
    },
)
async def ready(state: StateDep) -> Response:
    """Readiness: the store and the Temporal frontend both answer, or 503 naming which not."""
    problems: dict[str, str] = {}

    def ping() -> None:
        with session_scope(state.settings.database_url) as s:
            s.execute(text("SELECT 1"))

    try:
        await run_in_threadpool(ping)
    except Exception as exc:  # any driver error means not ready
        problems["database"] = type(exc).__name__
    try:
        client = await asyncio.wait_for(state.temporal(), 5)
        await client.workflow_service.get_system_info(
            GetSystemInfoRequest(), timeout=timedelta(seconds=3)
        )
    except Exception as exc:  # unreachable, TLS refused, timed out
        problems["temporal"] = type(exc).__name__
    if problems:
        return JSONResponse({"status": "unavailable", "problems": problems}, status_code=503)
    return JSONResponse({"status": "ok"})


@router.post(
    "/api/incidents",
    status_code=201,
    responses=contract.SUBMIT,
    dependencies=[DocumentedQueryAnyone],
    openapi_extra=contract.submission_body("一条负面舆情的报告（R-REPORT）"),
)
async def api_submit(
    request: Request, client: TemporalClient, known: MaybePerson, kit: PagesDep
) -> Response:
    data = await _json_body(request)
    submitted = await incidents.submit(client, kit.settings, kit.roster, data, submitted_by=known)
    return _submission_answer(kit, submitted, known)


@router.post(
    "/api/leads",
    status_code=201,
    responses=contract.SUBMIT,
    dependencies=[DocumentedQueryAnyone],
    openapi_extra=contract.submission_body("监测系统的线索（`lead` 总为真，不论请求体如何写）"),
)
async def api_lead(
    request: Request, client: TemporalClient, known: MaybePerson, kit: PagesDep
) -> Response:
    """R-OFFICE: a monitoring system feeds a lead; the office must confirm it within R-REPORT's hour."""
    data = await _json_body(request)
    submitted = await incidents.submit(
        client, kit.settings, kit.roster, {**data, "lead": True}, submitted_by=known
    )
    return _submission_answer(kit, submitted, known)


def _submission_answer(kit: Pages, submitted: incidents.Submitted, known: str | None) -> Response:
    """The whole incident to a caller who may read it; to anyone else (anonymous, or staff
    with no part in it) only its id, whether it is new, and a receipt (issue 15)."""
    status = 201 if submitted.created else 200
    view = submitted.view
    if known is not None and may_see(kit.roster, known, view):
        return JSONResponse(incident_json(view, kit.ui_for(known, view.id)), status_code=status)
    receipt = receipt_of(submitted, None)
    receipt["received_at"] = receipt["received_at"].isoformat()
    return JSONResponse(
        {k: receipt[k] for k in ("id", "created", "received_at", "message")},
        status_code=status,
    )


@router.get("/api/incidents", responses=contract.READ, dependencies=[DocumentedQuery])
def api_list(
    request: Request,
    person: ApiPerson,
    kit: PagesDep,
    session: StoreSession,
    f: ApiListFilter,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> dict[str, Any]:
    rows = incident_rows.list_incidents(
        session,
        **f.query(),
        involving=visible_to(kit.roster, person),
        limit=limit,
        offset=offset,
    )
    items = [
        {
            "id": r.id,
            "short_number": r.short_number,
            "title": r.title,
            "phase": r.phase,
            "severity": r.severity,
            "category": r.category,
            "responsible_unit": r.responsible_unit,
            "drill": r.drill,
            "overdue": r.overdue,
            "next_due_at": r.next_due_at.isoformat() if r.next_due_at else None,
            "received_at": r.received_at.isoformat(),
        }
        for r in rows
    ]
    access.record(request, person, "list")
    return {"items": items, "limit": limit, "offset": offset}


@router.get(
    "/api/incidents.xlsx",
    responses=contract.LIST_XLSX,
    response_class=Response,
    dependencies=[DocumentedQuery],
)
def api_list_xlsx(
    request: Request, person: ApiPerson, kit: PagesDep, session: StoreSession, f: ApiListFilter
) -> Response:
    """The incidents the caller may see (R-SECRECY), filtered as GET /api/incidents is, as an
    Excel workbook (issue 19): every match up to 10,000, times in the town's local time."""
    rows = list(
        incident_rows.list_incidents(
            session,
            **f.query(),
            involving=visible_to(kit.roster, person),
            limit=incident_pages.EXPORT_LIMIT,
        )
    )
    access.record(request, person, "export")
    return incident_pages.list_workbook(kit, rows, f.chosen())


@router.get(
    "/api/incidents/{incident_id}", responses=contract.READ_ONE, dependencies=[DocumentedQuery]
)
async def api_get(
    request: Request,
    incident_id: str,
    client: TemporalClient,
    person: ApiPerson,
    kit: PagesDep,
) -> dict[str, Any]:
    """The incident's state and its deadline ledger. R-SECRECY: only staff with a role on it.
    An incident Temporal no longer holds (归档) answers 404 naming its archive."""
    try:
        view = await visible_incident(request, incident_id, client, person)
    except ServiceError as exc:
        if exc.status != 404:
            raise
        await refuse_unless_in_store(request, kit, person, incident_id, exc)
        raise ServiceError(
            404,
            f"事件“{incident_id}”已归档，办理流程的记录已按保存期限清理；"
            f"归档的处置台账：GET /api/incidents/{incident_id}/archive",
        ) from exc
    access.record(request, person, "view", incident_id=view.id)
    data = incident_json(view, kit.ui_for(person, view.id))
    data["short_number"] = await run_in_threadpool(kit.short_number, view.id)
    # Issue 19: its attachments' metadata, each with its download address (never the file).
    data["attachments"] = await run_in_threadpool(attachments.of_incident, kit.settings, view.id)
    return data


@router.get(
    "/api/reports/accountability", responses=contract.REPORT, dependencies=[DocumentedQuery]
)
def api_report(
    request: Request,
    person: ApiPerson,
    kit: PagesDep,
    session: StoreSession,
    start: Annotated[date, Query(json_schema_extra=REPORT_DAY)],
    end: Annotated[date, Query(json_schema_extra=REPORT_DAY)],
) -> dict[str, Any]:
    """R-ACCOUNT / R-COMMEND: per-unit on-time rates, miss counts and commendations for
    deadlines due from `start` to `end` (inclusive, town dates); drills are left out."""
    if not may_read_reports(kit.roster, person):
        raise ServiceError(403, "问责统计仅对领导小组及其办公室开放")
    problem = reports.period_problem(start, end)
    if problem:
        raise ServiceError(422, problem)
    begin, finish = _day_range(start, end, kit.tz)
    rows = list(reporting.accountability_report(session, start=begin, end=finish))
    for row in rows:
        row["unit_name"] = kit.roster.unit_name(str(row["unit"]))
    access.record(request, person, "report")
    return {"start": start.isoformat(), "end": end.isoformat(), "units": rows}


@router.get(
    "/api/reports/accountability.xlsx",
    responses=contract.REPORT_XLSX,
    response_class=Response,
    dependencies=[DocumentedQuery],
)
def api_report_xlsx(
    request: Request,
    person: ApiPerson,
    kit: PagesDep,
    session: StoreSession,
    start: Annotated[date, Query(json_schema_extra=REPORT_DAY)],
    end: Annotated[date, Query(json_schema_extra=REPORT_DAY)],
) -> Response:
    """The accountability report (R-ACCOUNT / R-COMMEND, drills left out) as an Excel workbook:
    a title row with the town and the period, a row per unit and a 合计 row (issue 19)."""
    if not may_read_reports(kit.roster, person):
        raise ServiceError(403, "问责统计仅对领导小组及其办公室开放")
    problem = reports.period_problem(start, end)
    if problem:
        raise ServiceError(422, problem)
    return reports.report_file(request, person, kit, session, start, end, "xlsx")


@router.get("/api/access-log", responses=contract.REPORT, dependencies=[DocumentedQuery])
async def api_access_log(
    request: Request,
    reader: audit.ApiReader,
    kit: PagesDep,
    person: str | None = None,
    action: Annotated[str | None, Query(json_schema_extra=LOGGED)] = None,
    incident: str | None = None,
    start: Annotated[str | None, Query(json_schema_extra=LOG_DAY)] = None,
    end: Annotated[str | None, Query(json_schema_extra=LOG_DAY)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> dict[str, Any]:
    """Who read what, when and from where, the newest first (the office and the leading group).
    Filters: `person` (roster id), `action`, `incident` (id), `start` / `end` (town dates,
    inclusive). Read-only: the log has no route that changes it."""
    filters = audit.filters(request, person, action, incident, start, end)
    access.record(request, reader, "audit")
    await access.flush(request.app)  # this read, and every one before it, in the log read
    url = kit.settings.database_url
    rows = await run_in_threadpool(audit.read_log, filters, url, limit, offset)
    return {"items": [audit.item(request, r) for r in rows], "limit": limit, "offset": offset}


# ------------------------------------------------------------------ the staff actions


class AuthenticatedRoute(APIRoute):
    """A route whose bearer token is checked before FastAPI reads and parses its body: an
    anonymous caller is refused without a byte of the body read (issue 15, finding 8). The
    person is left in request.state.actor, where the endpoint's `ApiPerson` finds it."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def authenticated(request: Request) -> Response:
            state = request_state(request.app)
            header = request.headers.get("authorization")
            request.state.actor = await run_in_threadpool(authenticate, state, header)
            return await handler(request)

        return authenticated


def action_router() -> APIRouter:
    """One route per staff action in `ACTIONS` as the table is now, each with its own request
    schema in the OpenAPI document; the token is checked before the body is read."""
    router = APIRouter()
    for name, rule in ACTIONS.items():
        _add_action_route(router, name, rule.request)
    return router


def _add_action_route(router: APIRouter, name: str, request_model: type[BaseModel]) -> None:
    async def act(
        incident_id: str,
        body: request_model,  # type: ignore[valid-type]
        client: TemporalClient,
        actor: ApiPerson,
        kit: PagesDep,
    ) -> dict[str, Any]:
        data = body.model_dump(mode="json")  # type: ignore[attr-defined]
        roster = kit.roster
        # R-SECRECY first: the workflow's refusals name the unit and phase (issue 15, finding 9).
        require_visible(roster, actor, await incidents.get(client, incident_id), incident_id)
        done = await incidents.perform(client, incident_id, name, data, actor, roster=roster)
        try:
            view = await incidents.get(client, incident_id, run_id=done.run_id)
        except incidents.ServiceError:
            # Accepted and in the history; only reading it back failed: say so, never a 5xx
            # that would make the caller try an action that is already done.
            return {
                "id": done.incident_id,
                "version": done.version,
                "phase": done.phase.value,
                "accepted": True,
                "message": "操作已受理；事件状态暂时无法读取，请稍后刷新",
            }
        return incident_json(view, kit.ui_for(actor, view.id))

    act.__annotations__["body"] = request_model
    router.add_api_route(
        f"/api/incidents/{{incident_id}}/actions/{name}",
        act,
        methods=["POST"],
        summary=(request_model.__doc__ or name).strip().splitlines()[0],
        name=f"action_{name.replace('-', '_')}",
        tags=["staff actions"],
        responses=contract.ACTION,
        dependencies=[DocumentedQuery],
        route_class_override=AuthenticatedRoute,
    )


def _day_range(start: date, end: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    begin = datetime(start.year, start.month, start.day, tzinfo=tz)
    finish = datetime(end.year, end.month, end.day, tzinfo=tz) + timedelta(days=1)
    return begin, finish


async def _json_body(request: Request) -> dict[str, Any]:
    # limits.BodyLimit stops the read past MAX_BODY (declared or streamed); this is the backstop.
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise limits.BodyTooLarge(MAX_BODY)
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # also too deep, or an integer too long
        body = FieldError("body", "请求内容：不是有效的JSON")
        raise ServiceError(422, "请求内容不是有效的JSON", [body]) from exc
    if not isinstance(data, dict):
        body = FieldError("body", "请求内容：应为JSON对象")
        raise ServiceError(422, "请求内容应为JSON对象", [body])
    return data
