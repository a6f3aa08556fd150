"""代理 (issue 20, item 3) on the web: the page `/absences` (declare an absence and its stand-in,
end one early, see the list) and the API `/api/absences`. The rules are starter/standins.py's,
the same for the page, the API and the CLI; who may see which absences too (`listing`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from plan.models import AbsenceRequest
from plan.roster import Role
from starter import standins
from starter.incidents import ServiceError

from . import contract
from .deps import ApiPerson, CheckedForm, DocumentedQuery, PagePerson, PagesDep, TemporalClient
from .pages import Pages

router = APIRouter(include_in_schema=False)  # the page
api_router = APIRouter()

DECLARE = contract.refusals(*contract.AUTHENTICATED, 403, 409, 503)
END = contract.refusals(*contract.AUTHENTICATED, 403, 404, 409, 503)


def _answer(row: dict[str, Any], told: standins.Told) -> dict[str, Any]:
    return {
        "absence": row,
        "told": {"incidents": told.told, "failed": max(told.failed, 0), "message": told.words()},
    }


@api_router.get("/api/absences", responses=contract.READ, dependencies=[DocumentedQuery])
def api_absences(person: ApiPerson, kit: PagesDep) -> dict[str, Any]:
    """不在岗与代理登记：未结束和近7天结束的。领导小组及其办公室看到全部，其他人看到本单位的和自己代理的。"""
    now = datetime.now(UTC)
    return {"absences": standins.listing(kit.settings, kit.roster, person, now)}


@api_router.post(
    "/api/absences", status_code=201, responses=DECLARE, dependencies=[DocumentedQuery]
)
async def api_declare(
    body: AbsenceRequest, person: ApiPerson, kit: PagesDep, client: TemporalClient
) -> dict[str, Any]:
    """登记不在岗（请假、出差）和代理人：代理人须为同单位人员或领导小组成员；期间由代理人审批、签收，
    督办通知改发代理人。本人登记本人的，领导小组办公室可为他人登记。"""
    data = body.model_dump(mode="json", exclude_none=True)
    row, told = await standins.declare(client, kit.settings, kit.roster, person, data)
    return _answer(row, told)


@api_router.post("/api/absences/{absence_id}/end", responses=END, dependencies=[DocumentedQuery])
async def api_end(
    absence_id: int, person: ApiPerson, kit: PagesDep, client: TemporalClient
) -> dict[str, Any]:
    """销假：不在岗提前结束（未开始的即撤销）。本人、登记人或领导小组办公室可以销假。"""
    if not 1 <= absence_id <= 2**31 - 1:
        raise ServiceError(404, f"不在岗登记“{absence_id}”不存在")
    row, told = await standins.end(client, kit.settings, kit.roster, person, absence_id)
    return _answer(row, told)


# ------------------------------------------------------------------ the page


def _local_instant(kit: Pages, value: str) -> str:
    """A datetime-local field (the town's wall time) as an ISO instant; as given when unreadable
    (the schema then names the field)."""
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return value
    return (at if at.tzinfo else at.replace(tzinfo=kit.tz)).isoformat()


def _page(
    request: Request,
    kit: Pages,
    me: Any,
    rows: list[dict[str, Any]],
    *,
    errors: dict[str, str] | None = None,
    message: str | None = None,
    form: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    office = Role.office in kit.roster.roles_of(me.person_id)
    context = {
        "rows": rows,
        "errors": errors or {},
        "message": message,
        "form": form or {},
        "office": office,
        "max_days": standins.MAX_DAYS,
        "timezone": kit.settings.timezone,
    }
    return kit.render(request, "absences.html", context, status)


@router.get("/absences", response_class=HTMLResponse)
def absences_page(
    request: Request,
    me: PagePerson,
    kit: PagesDep,
    declared: int = 0,
    ended: int = 0,
    failed: int = 0,
) -> Response:
    """The list and the form; after a change, what was done, worded here from the row (the
    query carries numbers only: a link cannot put words on the page)."""
    rows = standins.listing(kit.settings, kit.roster, me.person_id, datetime.now(UTC))
    message = None
    row = next((r for r in rows if r["id"] in (declared, ended)), None)
    if row is not None:
        if row["id"] == declared:
            message = (
                f"已登记：{row['person_name']}{row['period']}不在岗，由{row['stand_in_name']}代理"
            )
        else:
            message = f"已销假：{row['person_name']}"
        told = standins.Told(told=0, failed=failed)
        message += "；" + (told.words() if failed else "已通知办理中的事件")
    return _page(request, kit, me, rows, message=message)


@router.post("/absences", response_class=HTMLResponse)
async def absences_declare(
    request: Request, me: PagePerson, form: CheckedForm, kit: PagesDep, client: TemporalClient
) -> Response:
    fields = {k: str(form.get(k) or "").strip() for k in ("person", "stand_in", "reason")}
    times = {k: str(form.get(k) or "").strip() for k in ("starts_at", "ends_at")}
    data: dict[str, Any] = {k: v for k, v in fields.items() if v}
    data.update({k: _local_instant(kit, v) for k, v in times.items() if v})
    if "ends_at" not in data:
        data["ends_at"] = None  # the schema's own "required" in Chinese
    try:
        row, told = await standins.declare(client, kit.settings, kit.roster, me.person_id, data)
    except ServiceError as exc:
        rows = await run_in_threadpool(
            standins.listing, kit.settings, kit.roster, me.person_id, datetime.now(UTC)
        )
        errors = {e.field: e.message for e in exc.fields} or {"": exc.message}
        return _page(
            request, kit, me, rows, errors=errors, form={**fields, **times}, status=exc.status
        )
    return RedirectResponse(_after(declared=row["id"], told=told), status_code=303)


@router.post("/absences/{absence_id}/end", response_class=HTMLResponse)
async def absences_end(
    request: Request,
    absence_id: int,
    me: PagePerson,
    form: CheckedForm,
    kit: PagesDep,
    client: TemporalClient,
) -> Response:
    row, told = await standins.end(client, kit.settings, kit.roster, me.person_id, absence_id)
    return RedirectResponse(_after(ended=row["id"], told=told), status_code=303)


def _after(*, told: standins.Told, declared: int = 0, ended: int = 0) -> str:
    query = {"declared": declared, "ended": ended, "failed": told.failed}
    return "/absences?" + urlencode({k: v for k, v in query.items() if v})
