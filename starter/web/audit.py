"""Reading the access log (starter/web/access.py writes it): the page `/access-log` (filters,
phone-friendly) and what `GET /api/access-log` (starter/web/api.py) shares with it. The office
and the leading group (组长, 副组长, 成员) read the log, nobody else; a refused attempt is noted too.
Nothing here changes or removes an entry."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from plan.roster import Role, Roster
from starter.incidents import ServiceError
from store import access_log as store
from store.db import session_scope

from .access import ACTION_LABELS, flush, record
from .auth import Viewer
from .deps import ApiPerson, PagePerson, PagesDep
from .pages import pages as pages_of

# The office and the leading group (组长, 副组长, 成员) read the log.
READERS = frozenset({Role.office, Role.leader, Role.deputy, Role.member})
REFUSED = "访问记录仅对领导小组及其办公室开放"
PAGE_SIZE = 100
# What a logged address is, in words, before the address itself (issue 18).
PAGE_NAMES = {
    "/incidents": "事件列表",
    "/dashboard": "看板",
    "/reports/accountability": "问责统计",
    "/reports/accountability.csv": "问责统计导出",
    "/api/reports/accountability": "问责统计（接口）",
    "/api/reports/accountability.csv": "问责统计导出（接口）",
    "/api/incidents": "事件列表（接口）",
    "/access-log": "访问记录",
    "/api/access-log": "访问记录（接口）",
    "/codec/decode": "解密载荷",
    "/codec/encode": "加密载荷",
}
ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")

router = APIRouter(include_in_schema=False)  # pages: not the JSON API (issue 17)


def may_read(roster: Roster, person_id: str | None) -> bool:
    return bool(person_id) and bool(roster.roles_of(person_id or "") & READERS)


async def api_reader(request: Request, person: ApiPerson) -> str:
    """The API's caller, when they may read the log; else 403 (and the attempt noted)."""
    if not may_read(pages_of(request).roster, person):
        record(request, person, "audit", granted=False)
        raise ServiceError(403, REFUSED)
    return person


ApiReader = Annotated[str, Depends(api_reader)]


async def page_reader(request: Request, me: PagePerson) -> Viewer:
    """The page's signed-in viewer, when they may read the log; else 403 (the attempt noted)."""
    if not may_read(pages_of(request).roster, me.person_id):
        record(request, me.person_id, "audit", granted=False)
        raise ServiceError(403, REFUSED)
    return me


PageReader = Annotated[Viewer, Depends(page_reader)]


def filters(
    request: Request,
    person: str | None,
    action: str | None,
    incident: str | None,
    start: str | None,
    end: str | None,
) -> dict[str, Any]:
    """The store's filters from the query; 422 in Chinese for what cannot be read."""
    tz = pages_of(request).tz
    if action and action not in ACTION_LABELS:
        raise ServiceError(422, f"类型“{action[:20]}”不存在，可选：{'、'.join(ACTION_LABELS)}")
    bounds: dict[str, datetime | None] = {"start": None, "end": None}
    for name, value in (("start", start), ("end", end)):
        if not value:
            continue
        try:
            if not ISO_DAY.fullmatch(value):  # as documented; fromisoformat reads more forms
                raise ValueError(value)
            day = date.fromisoformat(value)
            instant = datetime(day.year, day.month, day.day, tzinfo=tz)
            bounds[name] = instant + timedelta(days=1) if name == "end" else instant
        except (ValueError, OverflowError):
            raise ServiceError(422, "日期格式不正确，应为年-月-日，如 2026-01-31") from None
    return {
        "person_id": person or None,
        "action": action or None,
        "incident_id": (incident or "").strip() or None,
        "start": bounds["start"],
        "end": bounds["end"],
    }


def item(request: Request, row: Any) -> dict[str, Any]:
    roster = pages_of(request).roster
    return {
        "at": row.at.isoformat(),
        "person_id": row.person_id,
        "person_name": roster.person_name(row.person_id) if row.person_id else None,
        "action": row.action,
        "action_label": ACTION_LABELS.get(row.action, row.action),
        "resource": row.resource,
        "incident_id": row.incident_id,
        "client": row.client,
        "granted": row.granted,
    }


def read_log(filters: dict[str, Any], url: str, limit: int, offset: int) -> list[Any]:
    """The log's rows (opens a store session: a coroutine runs it in the thread pool)."""
    with session_scope(url) as s:
        return list(store.read(s, limit=limit, offset=offset, **filters))


@router.get("/access-log", response_class=HTMLResponse)
async def access_log_page(
    request: Request,
    me: PageReader,
    kit: PagesDep,
    person: str | None = None,
    action: str | None = None,
    incident: str | None = None,
    start: str | None = None,
    end: str | None = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    chosen = {"person": person, "action": action, "incident": incident, "start": start, "end": end}
    error = None
    rows: list[dict[str, Any]] = []
    try:
        chosen_filters = filters(request, person, action, incident, start, end)
    except ServiceError as exc:
        error = exc.message
    else:
        record(request, me.person_id, "audit")
        await flush(request.app)  # this read, and every one before it, in the log read
        offset = (page - 1) * PAGE_SIZE
        url = kit.settings.database_url
        found = await run_in_threadpool(read_log, chosen_filters, url, PAGE_SIZE, offset)
        rows = [item(request, r) for r in found]
        for r in rows:
            r["at_local"] = kit.local(datetime.fromisoformat(r["at"]), "%Y-%m-%d %H:%M:%S")
    context = {
        **chosen,
        "rows": rows,
        "page": page,
        "page_size": PAGE_SIZE,
        "error": error,
        "action_labels": ACTION_LABELS,
        "page_names": PAGE_NAMES,
        "filter_query": urlencode({k: v for k, v in chosen.items() if v}),
    }
    return kit.render(request, "access_log.html", context, 422 if error else 200)
