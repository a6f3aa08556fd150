"""The access log: who read what, when and from where (issue 15, finding 12).

Every incident page and API read, incident list, CSV export, report page and codec decode notes one
entry: the person, the kind of read, the incident or resource, the time and the client address; a
refused attempt by a signed-in person is noted too. The office and the leading group read the log
at `/access-log` (filters, phone-friendly; starter/web/audit.py) and `GET /api/access-log`
(starter/web/api.py); nothing changes or removes an entry (no route does, and the store refuses
UPDATE and DELETE: migration 0007).

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
from datetime import UTC, datetime

import anyio.from_thread
from fastapi import FastAPI, Request

from store import access_log as store
from store.access_log import AccessEntry
from store.db import session_scope

from .limits import client_key

log = logging.getLogger("yuqing.access")

ACTION_LABELS = {
    "view": "查看事件",
    "download": "下载附件",
    "list": "浏览事件列表",
    "export": "导出",
    "report": "查看统计报表",
    "decode": "解密载荷",
    "encode": "加密载荷",
    "audit": "查阅访问记录",
}
FLUSH_AFTER = 0.5  # seconds: reads within this moment share one INSERT
RETRY_AFTER = 5.0
MAX_BUFFERED = 10_000


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
