"""The gate in front of the Temporal Web UI: signed-in readers only, nothing written.

The dev server's UI has no sign-in and no switch for its write actions (terminate, signal, reset,
update, batch operations …): anyone who reaches it can end an incident or act in someone else's
name. `make up` binds the real UI to 127.0.0.1 on an internal port and serves this gate on the
public one. The gate
- lets in only a yuqing session (the web app's cookie: the same host, another port) of someone who
  may read every incident's accountability (REPORT_READERS: the office, the leading group,
  镇党政办); anyone else gets a page saying so, in Chinese;
- passes reads (GET, HEAD) and the one read the UI makes by POST (a workflow query), and refuses
  every other write with 403;
- tells the UI that write actions are off (`DisableWriteActions` in its settings), so it does not
  offer the buttons at all.

Production (docs/DEPLOY.md) runs the UI server with `disableWriteActions: true` and its own
sign-in; the gate is the same promise for `make up`.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from html import escape
from typing import Annotated

import httpx
from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse

from config.settings import Settings, get_settings
from plan.actions import may_read_reports
from plan.roster import Roster, load_roster
from store import credentials
from store.db import session_scope

from .auth import SESSION_COOKIE

READS = {"GET", "HEAD", "OPTIONS"}
# The UI's queries (the 查询 tab, the stack trace) are POSTs that change nothing.
QUERY = re.compile(r"^/api/v1/namespaces/[^/]+/workflows/[^/]+(/runs/[^/]+)?/query/[^/]+$")
# Hop-by-hop headers, and the ones httpx sets itself.
DROP = {
    "host",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-connection",
    "content-length",
}
REFUSED_WRITE = "只读：经由本系统访问 Temporal UI 时不允许终止、发送信号、重置等写操作"


class GateRefused(Exception):
    """Someone the gate does not let in: its page says why (`_page`), in Chinese."""

    def __init__(self, status: int, title: str, text: str) -> None:
        super().__init__(title)
        self.status, self.title, self.text = status, title, text


@dataclass(frozen=True)
class Gate:
    settings: Settings
    roster: Roster
    login: str  # the web app's sign-in page


def reader(request: Request) -> str:
    """The session cookie's person, if they may read the UI; else GateRefused. A plain `def`:
    FastAPI runs it in its thread pool, so the store is asked off the event loop."""
    gate: Gate = request.app.state.gate
    session_id = request.cookies.get(SESSION_COOKIE)
    person = None
    if session_id:
        with session_scope(gate.settings.database_url) as s:
            person = credentials.person_for_session(s, session_id=session_id)
    if person is None:
        raise GateRefused(
            401,
            "请先登录",
            f'Temporal UI 仅供领导小组、领导小组办公室和镇党政办查看流程历史。请先<a href="{escape(gate.login)}">登录</a>本系统，再刷新本页。',
        )
    if not may_read_reports(gate.roster, person):
        raise GateRefused(
            403, "无权查看", "Temporal UI 仅供领导小组、领导小组办公室和镇党政办查看。"
        )
    return person


Reader = Annotated[str, Depends(reader)]


async def _refused(_: Request, exc: GateRefused) -> Response:
    return _page(exc.status, exc.title, exc.text)


def allowed(method: str, path: str) -> bool:
    """Whether a request through the gate may reach the UI: reads and queries only."""
    return method.upper() in READS or (method.upper() == "POST" and bool(QUERY.match(path)))


def create_gate(
    settings: Settings | None = None,
    *,
    roster: Roster | None = None,
    upstream: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    settings = settings or get_settings()
    roster = roster or load_roster(settings.roster_file)
    target = (upstream or settings.temporal_ui_upstream).rstrip("/")
    login = f"{settings.public_url.rstrip('/')}/login"
    holder: dict[str, httpx.AsyncClient] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with httpx.AsyncClient(base_url=target, timeout=60, transport=transport) as http:
            holder["http"] = http
            yield

    app = FastAPI(
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        exception_handlers={GateRefused: _refused},
    )
    app.state.gate = Gate(settings, roster, login)

    @app.api_route(
        "/{path:path}", methods=["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"]
    )
    async def gate(request: Request, path: str, _: Reader) -> Response:
        url_path = "/" + path
        if not allowed(request.method, url_path):
            return JSONResponse({"message": REFUSED_WRITE}, status_code=403)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in DROP}
        headers.pop("cookie", None)  # the yuqing session stays with yuqing
        http = holder["http"]
        upstream_request = http.build_request(
            request.method,
            url_path,
            params=request.query_params,
            headers=headers,
            content=await request.body(),
        )
        answer = await http.send(upstream_request, stream=True)
        out_headers = {k: v for k, v in answer.headers.items() if k.lower() not in DROP}
        out_headers.pop("content-encoding", None)  # httpx hands back decoded bytes
        if url_path == "/api/v1/settings" and answer.status_code == 200:
            body = json.loads(await answer.aread())
            await answer.aclose()
            body["DisableWriteActions"] = True
            return JSONResponse(body, headers=_without_length(out_headers))
        return StreamingResponse(
            _stream(answer),
            status_code=answer.status_code,
            headers=_without_length(out_headers),
        )

    return app


async def _stream(answer: httpx.Response) -> AsyncIterator[bytes]:
    try:
        async for chunk in answer.aiter_bytes():
            yield chunk
    finally:
        await answer.aclose()


def _without_length(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() != "content-length"}


def _page(status: int, title: str, text: str) -> HTMLResponse:
    html = (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title></head><body><main><h1>{title}</h1><p>{text}</p></main></body></html>"
    )
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})
