"""The web app: the submission form and incident pages (zh-CN), and the JSON API.

Staff sign in to the pages with their personal token (starter.web.auth): a server-side session, CSRF
tokens on every form, and R-SECRECY on the list and incident pages. The API keeps bearer tokens.

Incident state comes from the workflow itself (a query), lists from the read model. Every input
goes through starter.incidents, so the form, the API and the CLI refuse the same things the same way.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client

from config.settings import Settings, get_settings
from plan.actions import ACTIONS, may_read_reports
from plan.models import IncidentView
from plan.roster import Roster, load_roster
from starter import incidents
from starter.errors import FIELD_LABELS, FieldError, translate_errors
from starter.incidents import ServiceError
from store import incident_rows, reporting
from store.db import session_scope

from . import access, apidocs, codec, limits, reports, staff
from .auth import CSRF_FIELD, LOGIN_COOKIE, SESSION_COOKIE, safe_next
from .deps import MAX_OFFSET, MAX_PAGE, may_see, require_visible, visible_to
from .headers import SecurityHeaders
from .pages import Pages
from .state import AppState, authenticate, request_state

HERE = Path(__file__).resolve().parent
MAX_BODY = limits.MAX_JSON_BODY  # bytes; a submission is text, never this large


async def _temporal(request: Request) -> Client:
    state: AppState = request.app.state.yuqing
    return await state.temporal()


TemporalClient = Annotated[Client, Depends(_temporal)]


def create_app(
    settings: Settings | None = None, *, client: Client | None = None, roster: Roster | None = None
) -> FastAPI:
    settings = settings or get_settings()
    roster = roster or load_roster(settings.roster_file)
    state = AppState(settings, roster, client)
    page_kit = Pages(state)
    auth = page_kit.auth
    tz = page_kit.tz
    render = page_kit.render

    def ui_for(person: str | None, incident_id: str) -> str | None:
        """The incident's page on the Temporal UI, for those the UI's gate lets in."""
        return page_kit.ui_link(incident_id) if may_read_reports(roster, person) else None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await access.flush(app)  # the access log's last entries

    # /api/docs: Swagger UI from a pinned package's files (apidocs.py), never from a CDN.
    app = FastAPI(title="舆情应急处置", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.add_middleware(SecurityHeaders, https=settings.public_url.lower().startswith("https"))
    app.state.yuqing = state
    app.state.pages = page_kit
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    # Every request body is capped while it streams in (starter/web/limits.py), whichever route
    # reads it and however (JSON, a form, FastAPI's body parameters).
    app.add_middleware(limits.BodyLimit)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        fields = translate_errors(list(exc.errors()))
        if not request.url.path.startswith("/api/"):  # a page: the error page, in Chinese
            message = "；".join(f.message for f in fields) or "请求内容有误"
            await auth.current(request)  # the header's signed-in person, asked off the loop
            return render(request, "error.html", {"status": 422, "message": message}, 422)
        body = {"detail": "请求内容有误", "errors": [f.as_dict() for f in fields]}
        return JSONResponse(body, status_code=422)

    @app.exception_handler(limits.BodyTooLarge)
    async def _too_large(request: Request, exc: limits.BodyTooLarge) -> Response:
        return await _service_error(request, ServiceError(413, str(exc.detail)))

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError) -> Response:
        body = {"detail": exc.message, "errors": [f.as_dict() for f in exc.fields]}
        response: Response
        if request.url.path.startswith("/api/"):
            response = JSONResponse(body, status_code=exc.status)
        else:
            await auth.current(request)  # the header's signed-in person, asked off the loop
            context = {"status": exc.status, "message": exc.message}
            response = render(request, "error.html", context, exc.status)
        if isinstance(exc, limits.RateLimited):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response

    # The two doors open to anyone: token guessing and report floods (starter/web/limits.py).
    login_failures = limits.SlidingWindow(
        settings.login_failures_allowed, settings.login_window_minutes * 60
    )
    submissions = limits.SlidingWindow(settings.submissions_per_minute, 60)

    async def count_submission(request: Request) -> str | None:
        """Anonymous submissions count against the client's address; a monitoring system or a
        person sending a valid personal token is known and not limited. Returns who is known."""
        header = request.headers.get("authorization")
        if header:
            try:
                return await run_in_threadpool(authenticate, state, header)
            except ServiceError:
                pass  # a bad token is treated as anonymous, not refused here
        limits.refuse_if_limited(submissions, request, "提交")
        submissions.hit(limits.client_key(request))
        return None

    def to_login(request: Request) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse("/login?" + urlencode({"next": target}), status_code=303)

    async def posted_form(request: Request, *, require_session: bool) -> dict[str, str]:
        """A page's POST: same origin, and the CSRF token of the session when signed in."""
        auth.check_origin(request)
        form = await staff.read_form(request)
        values = {k: str(v) for k, v in form.items()}
        me = await auth.current(request)
        if me is not None:
            auth.check_csrf(me, values.get(CSRF_FIELD))
        elif require_session:
            raise ServiceError(403, "请先登录")
        return values

    # ------------------------------------------------------------------ sign-in

    @app.get("/login", response_class=HTMLResponse)
    async def login_page(request: Request, next: str | None = None) -> Response:
        await auth.current(request)
        return login_form(request, safe_next(next), error=None, status_code=200)

    def login_form(
        request: Request, target: str, *, error: str | None, status_code: int
    ) -> Response:
        nonce = secrets.token_urlsafe(32)
        response = render(
            request,
            "login.html",
            {"next": target, "login_csrf": auth.login_csrf_for(nonce), "error": error},
            status_code,
        )
        auth.set_cookie(response, LOGIN_COOKIE, nonce, max_age=3600)
        return response

    @app.post("/login", response_class=HTMLResponse)
    async def login_submit(request: Request) -> Response:
        auth.check_origin(request)
        values = {k: str(v) for k, v in (await request.form()).items()}
        auth.check_login_csrf(request, values.get(CSRF_FIELD))
        target = safe_next(values.get("next"))
        session_id = await run_in_threadpool(auth.sign_in, request, values.get("token", "").strip())
        if session_id is None:
            # Failures are limited, valid sign-ins never: staff behind one address (a NAT) do
            # not lock each other out (issue 15, finding 11; starter/web/limits.py).
            limits.count_failure(login_failures, request, "登录失败")
            await auth.current(request)
            return login_form(
                request, target, error="令牌无效、已过期或已吊销，请核对后重试", status_code=401
            )
        response = RedirectResponse(target, status_code=303)
        auth.set_cookie(
            response, SESSION_COOKIE, session_id, max_age=int(settings.session_hours * 3600)
        )
        auth.clear_cookie(response, LOGIN_COOKIE)
        return response

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        auth.check_origin(request)
        values = {k: str(v) for k, v in (await request.form()).items()}
        me = await auth.current(request)
        if me is not None:
            auth.check_csrf(me, values.get(CSRF_FIELD))
            await run_in_threadpool(auth.sign_out, request)
        response = RedirectResponse("/login", status_code=303)
        auth.clear_cookie(response, SESSION_COOKIE)
        return response

    # ------------------------------------------------------------------ pages

    @app.get("/", response_class=HTMLResponse)
    async def form_page(request: Request) -> Response:
        values = {"submission_key": uuid.uuid4().hex}
        me = await auth.current(request)
        if me is not None:
            values["reporter_unit"] = me.unit
            values["reporter_name"] = me.name
        return render(request, "form.html", {"values": values, "errors": {}})

    @app.get("/report/oral", response_class=HTMLResponse)
    async def oral_page(request: Request) -> Response:
        """R-WRITTEN: the quick form for a phone report, times prefilled with now."""
        now = datetime.now(tz).strftime("%Y-%m-%dT%H:%M")
        values = {"submission_key": uuid.uuid4().hex, "oral_reported_at": now, "discovered_at": now}
        me = await auth.current(request)
        if me is not None:
            values["reporter_unit"] = me.unit
            values["reporter_name"] = me.name
        return render(request, "oral.html", {"values": values, "errors": {}})

    @app.post("/incidents", response_class=HTMLResponse)
    async def form_submit(request: Request, client: TemporalClient) -> Response:
        # Monitoring staff may report without an account; a signed-in person needs the CSRF token.
        await count_submission(request)
        values = await posted_form(request, require_session=False)
        values.pop(CSRF_FIELD, None)
        data, errors = _form_to_submission(values, tz)
        if not errors:
            try:
                me = await auth.current(request)
                submitted = await incidents.submit(
                    client, settings, roster, data, submitted_by=me.person_id if me else None
                )
            except ServiceError as exc:
                if exc.status != 422:
                    raise
                errors = {f.field: f.message for f in exc.fields}
            else:
                view = submitted.view
                if me is None or not may_see(roster, me.person_id, view):
                    # Not theirs to read (R-SECRECY): confirm what was received, nothing more
                    # (not even the title of an incident the same key or post already started).
                    receipt = receipt_of(submitted, values.get("title", ""))
                    return render(request, "submitted.html", {"r": receipt}, 201)
                return RedirectResponse(f"/incidents/{view.id}", status_code=303)
        template = "oral.html" if values.get("variant") == "oral" else "form.html"
        return render(request, template, {"values": values, "errors": errors}, 422)

    @app.get("/incidents", response_class=HTMLResponse)
    async def list_page(
        request: Request,
        phase: str | None = None,
        unit: str | None = None,
        overdue: str | None = None,
        severity: str | None = None,
        category: str | None = None,
        drill: str | None = None,
        page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    ) -> Response:
        me = await auth.current(request)
        if me is None:
            return to_login(request)
        flags = {"true": True, "1": True, "on": True, "false": False, "0": False}
        person_id = me.person_id

        def load() -> list[Any]:
            with session_scope(settings.database_url) as s:
                return list(
                    incident_rows.list_incidents(
                        s,
                        phase=phase or None,
                        unit=unit or None,
                        overdue=flags.get((overdue or "").lower()),
                        drill=flags.get((drill or "").lower()),
                        severity=severity or None,
                        category=category or None,
                        involving=visible_to(roster, person_id),
                        limit=50,
                        offset=(page - 1) * 50,
                    )
                )

        rows = await run_in_threadpool(load)
        access.record(request, me.person_id, "list")
        chosen = {"phase": phase, "unit": unit, "severity": severity, "category": category}
        chosen |= {"overdue": overdue, "drill": drill}
        return render(
            request,
            "list.html",
            {
                "rows": rows,
                "page": page,
                **chosen,
                "filter_query": urlencode({k: v for k, v in chosen.items() if v}),
            },
        )

    @app.get("/incidents/{incident_id}", response_class=HTMLResponse)
    async def incident_page(request: Request, incident_id: str, client: TemporalClient) -> Response:
        me = await auth.current(request)
        if me is None:
            return to_login(request)
        view = await incidents.get(client, incident_id)
        if not may_see(roster, me.person_id, view):
            access.record(request, me.person_id, "view", incident_id=view.id, granted=False)
        view = require_visible(roster, me.person_id, view, incident_id)
        access.record(request, me.person_id, "view", incident_id=view.id)
        actions = staff.action_forms(roster, me.person_id, view, state.plan)
        context = {"v": view, "ui_link": ui_for(me.person_id, view.id), "actions": actions}
        return render(request, "incident.html", context)

    # ------------------------------------------------------------------ JSON API

    @app.get("/healthz")
    async def health() -> dict[str, str]:
        """Liveness: the process answers (a load balancer's cheap check)."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def ready() -> Response:
        """Readiness: the store and the Temporal frontend both answer, or 503 naming which not."""
        problems: dict[str, str] = {}

        def ping() -> None:
            with session_scope(settings.database_url) as s:
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

    @app.post("/api/incidents", status_code=201)
    async def api_submit(request: Request, client: TemporalClient) -> Response:
        known = await count_submission(request)
        data = await _json_body(request)
        submitted = await incidents.submit(client, settings, roster, data, submitted_by=known)
        return submission_answer(submitted, known)

    @app.post("/api/leads", status_code=201)
    async def api_lead(request: Request, client: TemporalClient) -> Response:
        """R-OFFICE: a monitoring system feeds a lead; the office must confirm it within R-REPORT's hour."""
        known = await count_submission(request)
        data = await _json_body(request)
        submitted = await incidents.submit(
            client, settings, roster, {**data, "lead": True}, submitted_by=known
        )
        return submission_answer(submitted, known)

    def submission_answer(submitted: incidents.Submitted, known: str | None) -> Response:
        """The whole incident to a caller who may read it; to anyone else (anonymous, or staff
        with no part in it) only its id, whether it is new, and a receipt (issue 15)."""
        status = 201 if submitted.created else 200
        view = submitted.view
        if known is not None and may_see(roster, known, view):
            return JSONResponse(incident_json(view, ui_for(known, view.id)), status_code=status)
        receipt = receipt_of(submitted, None)
        receipt["received_at"] = receipt["received_at"].isoformat()
        return JSONResponse(
            {k: receipt[k] for k in ("id", "created", "received_at", "message")},
            status_code=status,
        )

    @app.get("/api/incidents")
    async def api_list(
        request: Request,
        authorization: Annotated[str | None, Header()] = None,
        phase: str | None = None,
        unit: str | None = None,
        overdue: bool | None = None,
        drill: bool | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> dict[str, Any]:
        person = await run_in_threadpool(authenticate, state, authorization)
        visible = visible_to(roster, person)

        def load() -> list[dict[str, Any]]:
            with session_scope(settings.database_url) as s:
                rows = incident_rows.list_incidents(
                    s,
                    phase=phase,
                    unit=unit,
                    overdue=overdue,
                    drill=drill,
                    involving=visible,
                    limit=limit,
                    offset=offset,
                )
                return [
                    {
                        "id": r.id,
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

        items = await run_in_threadpool(load)
        access.record(request, person, "list")
        return {"items": items, "limit": limit, "offset": offset}

    @app.get("/api/incidents/{incident_id}")
    async def api_get(
        request: Request,
        incident_id: str,
        client: TemporalClient,
        authorization: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        """The incident's state and its deadline ledger. R-SECRECY: only staff with a role on it."""
        person = await run_in_threadpool(authenticate, state, authorization)
        view = await incidents.get(client, incident_id)
        if not may_see(roster, person, view):
            access.record(request, person, "view", incident_id=view.id, granted=False)
        view = require_visible(roster, person, view, incident_id)
        access.record(request, person, "view", incident_id=view.id)
        return incident_json(view, ui_for(person, view.id))

    for name, rule in ACTIONS.items():
        _add_action_route(app, name, rule.request, ui_for)

    @app.get("/api/reports/accountability")
    async def api_report(
        request: Request,
        start: date,
        end: date,
        authorization: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        """R-ACCOUNT / R-COMMEND: per-unit on-time rates, miss counts and commendations for
        deadlines due from `start` to `end` (inclusive, town dates); drills are left out."""
        person = await run_in_threadpool(authenticate, request_state(app), authorization)
        if not may_read_reports(roster, person):
            raise ServiceError(403, "问责统计仅对领导小组及其办公室开放")
        problem = reports.period_problem(start, end)
        if problem:
            raise ServiceError(422, problem)
        begin, finish = _day_range(start, end, tz)

        def load() -> list[dict[str, object]]:
            with session_scope(settings.database_url) as s:
                return list(reporting.accountability_report(s, start=begin, end=finish))

        rows = await run_in_threadpool(load)
        for row in rows:
            row["unit_name"] = roster.unit_name(str(row["unit"]))
        access.record(request, person, "report")
        return {"start": start.isoformat(), "end": end.isoformat(), "units": rows}

    app.include_router(reports.router)
    app.include_router(staff.router)
    app.include_router(codec.router)
    app.include_router(access.router)
    app.include_router(apidocs.router)
    return app


class AuthenticatedRoute(APIRoute):
    """A route whose bearer token is checked before FastAPI reads and parses its body: an
    anonymous caller is refused without a byte of the body read (issue 15, finding 8). The
    person is left in request.state.actor for the endpoint."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def authenticated(request: Request) -> Response:
            state = request_state(request.app)
            header = request.headers.get("authorization")
            request.state.actor = await run_in_threadpool(authenticate, state, header)
            return await handler(request)

        return authenticated


def _add_action_route(
    app: FastAPI,
    name: str,
    request_model: type[BaseModel],
    ui_for: Callable[[str | None, str], str | None],
) -> None:
    """One route per staff action, with its own request schema in the OpenAPI document; the
    token is checked before the body is read (AuthenticatedRoute)."""

    async def act(
        incident_id: str,
        body: request_model,  # type: ignore[valid-type]
        request: Request,
        client: TemporalClient,
        authorization: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        actor: str = request.state.actor
        data = body.model_dump(mode="json")  # type: ignore[attr-defined]
        roster = request_state(request.app).roster
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
        return incident_json(view, ui_for(actor, view.id))

    act.__annotations__["body"] = request_model
    app.router.add_api_route(
        f"/api/incidents/{{incident_id}}/actions/{name}",
        act,
        methods=["POST"],
        summary=(request_model.__doc__ or name).strip().splitlines()[0],
        name=f"action_{name.replace('-', '_')}",
        tags=["staff actions"],
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


def receipt_of(submitted: incidents.Submitted, title: str | None) -> dict[str, Any]:
    """What a caller who may not read the incident is told: its id, whether their submission
    started it, when this submission was received, and what happens next (in Chinese)."""
    if submitted.created:
        message = "报告已收到，领导小组办公室将尽快核实研判。请记下事件编号。"
    else:
        message = (
            "该报告此前已提交（同一提交编号或相同内容），未重复立案；领导小组办公室将一并核实研判。"
        )
    return {
        "id": submitted.view.id,
        "created": submitted.created,
        "received_at": datetime.now(UTC),
        "title": title,
        "message": message,
    }


def incident_json(view: IncidentView, ui_link: str | None) -> dict[str, Any]:
    data = view.model_dump(mode="json")
    nxt = view.next_deadline()
    data["overdue"] = view.overdue
    data["next_deadline"] = nxt.model_dump(mode="json") if nxt else None
    data["temporal_ui"] = ui_link
    return data


def _form_to_submission(
    values: dict[str, str], tz: ZoneInfo
) -> tuple[dict[str, Any], dict[str, str]]:
    """Form fields to the API's shape: local datetime-local values get the town's offset."""
    data: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name in (
        "title",
        "content",
        "source",
        "reporter_unit",
        "url",
        "reporter_name",
        "severity",
        "category",
        "responsible_unit",
        "submission_key",
    ):
        value = values.get(name, "").strip()
        if value:
            data[name] = value
    oral_variant = values.get("variant") == "oral"
    if oral_variant:
        # The quick phone-report form asks only what the call gives; the rest has a fixed wording
        # until the written report (R-WRITTEN) follows.
        data.setdefault("source", "电话口头报告")
        data.setdefault("content", "电话口头报告，详细情况以书面信息为准。")
    for name in ("discovered_at", "posted_at", "oral_reported_at"):
        value = values.get(name, "").strip()
        if not value:
            continue
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            errors[name] = f"{FIELD_LABELS[name]}：时间格式不正确"
            continue
        data[name] = (parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)).isoformat()
    data["oral"] = oral_variant or values.get("oral") in ("on", "true", "1")
    if oral_variant and "oral_reported_at" not in data and "oral_reported_at" not in errors:
        errors["oral_reported_at"] = f"{FIELD_LABELS['oral_reported_at']}：请填写"
    if values.get("drill") in ("on", "true", "1"):
        speedup = values.get("drill_speedup", "").strip() or "60"
        try:
            data["drill_speedup"] = float(speedup)
        except ValueError:
            errors["drill_speedup"] = f"{FIELD_LABELS['drill_speedup']}：应为数字"
    return data, errors
