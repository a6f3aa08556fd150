"""The access log: who read what, when and from where (issue 15, finding 12).

Every incident page and API read, incident list, CSV export, report page and codec decode notes one
entry: the person, the kind of read, the incident or resource, the time and the client address; a
refused attempt by a signed-in person is noted too. The office and the leading group read the log
at `/access-log` (filters, phone-friendly) and `GET /api/access-log`; nothing changes or removes an
entry (no route does, and the store refuses UPDATE and DELETE: migration 0007).

Writing never slows or fails a read: `record` only appends to this process's buffer, and a task
writes the buffer in one INSERT shortly after (batching the reads of that moment). A failed write
is logged and retried; the read it came from has long been answered. A route running in the thread
pool (a plain `def`) notes its entry through the event loop, where the buffer and its task live.
Entries still buffered when the process is killed outright (not stopped) are lost: at most the
last second's.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

import anyio.from_thread
from fastapi import APIRouter, FastAPI, Header, Query, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from plan.roster import Role, Roster
from starter.incidents import ServiceError
from store import access_log as store
from store.access_log import AccessEntry
from store.db import session_scope

from .limits import client_key
from .pages import pages as pages_of
from .pages import to_login
from .state import authenticate, request_state

log = logging.getLogger("yuqing.access")

# The office and the leading group (组长, 副组长, 成员) read the log.
READERS = frozenset({Role.office, Role.leader, Role.deputy, Role.member})
REFUSED = "访问记录仅对领导小组及其办公室开放"
ACTION_LABELS = {
    "view": "查看事件",
    "list": "浏览事件列表",
    "export": "导出",
    "report": "查看统计报表",
    "decode": "解密载荷",
    "encode": "加密载荷",
    "audit": "查阅访问记录",
}
PAGE_SIZE = 100
FLUSH_AFTER = 0.5  # seconds: reads within this moment share one INSERT
RETRY_AFTER = 5.0
MAX_BUFFERED = 10_000


def may_read(roster: Roster, person_id: str | None) -> bool:
    return bool(person_id) and bool(roster.roles_of(person_id or "") & READERS)


class AccessLog:
    """This process's buffer of entries and the task that writes them."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._buffer: list[AccessEntry] = []
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def note(self, entry: AccessEntry) -> None:
        if len(self._buffer) >= MAX_BUFFERED:
            dropped = self._buffer.pop(0)
            log.error("access log buffer full: dropped the entry of %s", dropped.at.isoformat())
        self._buffer.append(entry)
        self._schedule(FLUSH_AFTER)

    def _schedule(self, delay: float) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._later(delay))

    async def _later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        # Entries noted while a batch was being written go in the next INSERT.
        while self._buffer and await self.flush():
            pass

    async def flush(self) -> bool:
        """Write what is buffered now, in one INSERT; on failure keep it and try again later."""
        async with self._lock:
            batch, self._buffer = self._buffer, []
            if not batch:
                return True
            try:
                await asyncio.to_thread(self._write, batch)
            except Exception:
                log.exception("access log: could not write %d entries; retrying", len(batch))
                self._buffer[:0] = batch[-MAX_BUFFERED:]
                asyncio.get_running_loop().call_later(RETRY_AFTER, self._schedule, 0.0)
                return False
            return True

    def _write(self, batch: list[AccessEntry]) -> None:
        with session_scope(self.database_url) as s:
            store.append(s, batch)


def access_log_of(app: FastAPI) -> AccessLog:
    found: AccessLog | None = getattr(app.state, "access_log", None)
    if found is None:
        found = AccessLog(app.state.yuqing.settings.database_url)
        app.state.access_log = found
    return found


def record(
    request: Request,
    person_id: str | None,
    action: str,
    *,
    incident_id: str | None = None,
    resource: str | None = None,
    granted: bool = True,
) -> None:
    """Note one read. Never raises: a read is never refused or failed for its log entry."""
    try:
        if resource is None:
            query = request.url.query
            resource = request.url.path + (f"?{query}" if query else "")
        entry = AccessEntry(
            at=datetime.now(UTC),
            person_id=person_id,
            action=action,
            resource=resource,
            incident_id=incident_id,
            client=client_key(request),
            granted=granted,
        )
        if _on_the_loop():
            _note(request.app, entry)
        else:  # a plain-`def` route, in the thread pool
            anyio.from_thread.run_sync(_note, request.app, entry)
    except Exception:
        log.exception("access log: could not note a %s by %s", action, person_id)


def _note(app: FastAPI, entry: AccessEntry) -> None:
    access_log_of(app).note(entry)


def _on_the_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def flush(app: FastAPI) -> None:
    """Write what is buffered (on shutdown, and before the log is read)."""
    found: AccessLog | None = getattr(app.state, "access_log", None)
    if found is not None:
        await found.flush()


# ------------------------------------------------------------------ reading the log

router = APIRouter()


def _filters(
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
            day = date.fromisoformat(value)
            instant = datetime(day.year, day.month, day.day, tzinfo=tz)
            bounds[name] = instant + timedelta(days=1) if name == "end" else instant
        except (ValueError, OverflowError):
            raise ServiceError(422, "日期格式不正确，应为 YYYY-MM-DD") from None
    return {
        "person_id": person or None,
        "action": action or None,
        "incident_id": (incident or "").strip() or None,
        "start": bounds["start"],
        "end": bounds["end"],
    }


def _item(request: Request, row: Any) -> dict[str, Any]:
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


def _read(filters: dict[str, Any], url: str, limit: int, offset: int) -> list[Any]:
    """The log's rows (opens a store session: a coroutine runs it in the thread pool)."""
    with session_scope(url) as s:
        return list(store.read(s, limit=limit, offset=offset, **filters))


@router.get("/api/access-log")
async def api_access_log(
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
    person: str | None = None,
    action: str | None = None,
    incident: str | None = None,
    start: str | None = None,
    end: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> dict[str, Any]:
    """Who read what, when and from where, the newest first (the office and the leading group).
    Filters: `person` (roster id), `action`, `incident` (id), `start` / `end` (town dates,
    inclusive). Read-only: the log has no route that changes it."""
    reader = await run_in_threadpool(authenticate, request_state(request.app), authorization)
    if not may_read(pages_of(request).roster, reader):
        record(request, reader, "audit", granted=False)
        raise ServiceError(403, REFUSED)
    filters = _filters(request, person, action, incident, start, end)
    record(request, reader, "audit")
    await flush(request.app)
    url = pages_of(request).settings.database_url
    rows = await run_in_threadpool(_read, filters, url, limit, offset)
    return {"items": [_item(request, r) for r in rows], "limit": limit, "offset": offset}


@router.get("/access-log", response_class=HTMLResponse)
async def access_log_page(
    request: Request,
    person: str | None = None,
    action: str | None = None,
    incident: str | None = None,
    start: str | None = None,
    end: str | None = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    k = pages_of(request)
    me = await k.auth.current(request)
    if me is None:
        return to_login(request)
    if not may_read(k.roster, me.person_id):
        record(request, me.person_id, "audit", granted=False)
        raise ServiceError(403, REFUSED)
    chosen = {"person": person, "action": action, "incident": incident, "start": start, "end": end}
    error = None
    rows: list[dict[str, Any]] = []
    try:
        filters = _filters(request, person, action, incident, start, end)
    except ServiceError as exc:
        error = exc.message
    else:
        record(request, me.person_id, "audit")
        await flush(request.app)
        offset = (page - 1) * PAGE_SIZE
        found = await run_in_threadpool(_read, filters, k.settings.database_url, PAGE_SIZE, offset)
        rows = [_item(request, r) for r in found]
        for r in rows:
            r["at_local"] = k.local(datetime.fromisoformat(r["at"]), "%Y-%m-%d %H:%M:%S")
    context = {
        **chosen,
        "rows": rows,
        "page": page,
        "page_size": PAGE_SIZE,
        "error": error,
        "action_labels": ACTION_LABELS,
        "filter_query": urlencode({k2: v for k2, v in chosen.items() if v}),
    }
    return k.render(request, "access_log.html", context, 422 if error else 200)
