"""The web app: the submission form and incident pages (zh-CN), and the JSON API.

`create_app` only assembles: the state, the middleware, the exception handlers and the routers.
The routes live in their routers (the JSON API in api.py, sign-in in login.py, the incident pages
in incident_pages.py, the staff's daily pages in staff.py, the leading group's in reports.py, the
access log's in audit.py, the codec in codec.py, the API's documentation in apidocs.py), and take
who is calling from the dependencies in deps.py. Request latencies are measured for Prometheus
(metrics.py), served on YUQING_WEB_METRICS_BIND when set.

Staff sign in to the pages with their personal token (starter.web.auth): a server-side session, CSRF
tokens on every form, and R-SECRECY on the list and incident pages. The API keeps bearer tokens.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from temporalio.client import Client

from config.settings import Settings, get_settings
from plan.roster import Roster, load_roster
from runtime.observability import MetricsServer, settle_heap

from . import (
    access,
    api,
    apidocs,
    archive,
    attachments,
    audit,
    codec,
    contract,
    documents,
    handlers,
    incident_pages,
    limits,
    login,
    metrics,
    reach,
    reports,
    staff,
    standin_pages,
)
from .headers import SecurityHeaders
from .pages import Pages
from .state import AppState

HERE = Path(__file__).resolve().parent
MAX_BODY = api.MAX_BODY  # bytes; a submission is text, never this large


def create_app(
    settings: Settings | None = None, *, client: Client | None = None, roster: Roster | None = None
) -> FastAPI:
    settings = settings or get_settings()
    roster = roster or load_roster(settings.roster_file)
    state = AppState(settings, roster, client)
    latency = metrics.request_latency()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        server = None
        if settings.web_metrics_bind:
            server = MetricsServer(settings.web_metrics_bind, latency.render)
            await server.start()
        settle_heap()
        try:
            yield
        finally:
            if server is not None:
                await server.close()
        await access.flush(app)  # the access log's last entries

    # /api/docs: Swagger UI from a pinned package's files (apidocs.py), never from a CDN.
    app = FastAPI(
        title="舆情应急处置",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        exception_handlers=handlers.HANDLERS,
    )
    app.add_middleware(SecurityHeaders, https=settings.public_url.lower().startswith("https"))
    app.state.yuqing = state
    app.state.pages = Pages(state)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    # Every request body is capped while it streams in (starter/web/limits.py), whichever route
    # reads it and however (JSON, a form, FastAPI's body parameters).
    app.add_middleware(limits.BodyLimit, cap=limits.caps(settings.attachment_max_mb))
    # Outermost: each request's latency by route template and status (starter/web/metrics.py).
    app.add_middleware(metrics.RequestMetrics, histogram=latency)
    app.state.request_latency = latency

    app.include_router(login.router)
    app.include_router(incident_pages.router)
    app.include_router(api.router)
    # One route per staff action in plan/actions.py ACTIONS, as the table is now.
    app.include_router(api.action_router())
    app.include_router(reports.router)
    app.include_router(documents.router)
    app.include_router(documents.api_router)
    app.include_router(archive.router)
    app.include_router(archive.api_router)
    app.include_router(staff.router)
    # 通联测试 (issue 20, item 5): start one, confirm one.
    app.include_router(reach.router)
    app.include_router(reach.api_router)
    app.include_router(codec.router)
    app.include_router(audit.router)
    app.include_router(standin_pages.router)
    app.include_router(standin_pages.api_router)
    # Attachments (issue 19): the API's upload and download, and the page's.
    app.include_router(attachments.router)
    app.include_router(attachments.pages_router)
    app.include_router(apidocs.router)
    # The OpenAPI document says what the API answers, refusals included (contract.py).
    app.openapi = lambda: contract.openapi_for(app, roster)  # type: ignore[method-assign]
    return app
