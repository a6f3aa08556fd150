"""The incident pages (zh-CN): the submission form and the quick form for a phone report (open to
anyone), the incident list and an incident's page (signed-in staff, R-SECRECY).

Every input goes through starter.incidents, so the form, the API and the CLI refuse the same
things the same way. The incident's state comes from the workflow itself (a query), the list from
the read model.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from plan.enums import Category, Severity
from starter import incidents, sheets
from starter.errors import FIELD_LABELS
from starter.incidents import ServiceError
from store import incident_rows

from . import access, archive, staff
from . import attachments as uploads  # not spelt as store/attachments.py
from .answers import receipt_of
from .auth import CSRF_FIELD, Viewer
from .deps import (
    MAX_PAGE,
    MaybePerson,
    MaybeViewer,
    PagePerson,
    PagesDep,
    StoreSession,
    TemporalClient,
    may_see,
    refuse_unless_in_store,
    visible_incident_page,
    visible_to,
)
from .filters import FLAGS, PageFilter, PageListFilter
from .pages import Pages

router = APIRouter(include_in_schema=False)  # pages: not the JSON API (issue 17)

# The submission forms' fields top to bottom: the error summary lists them in this order.
FORM_ORDER = {
    name: n
    for n, name in enumerate(
        (
            "title",
            "oral_reported_at",
            "content",
            "source",
            "url",
            "evidence",
            "posted_at",
            "discovered_at",
            "reporter_unit",
            "reporter_name",
            "severity",
            "category",
            "responsible_unit",
            "oral",
            "drill_speedup",
        )
    )
}


@router.get("/", response_class=HTMLResponse)
async def form_page(request: Request, kit: PagesDep, me: MaybeViewer) -> Response:
    values = {"submission_key": uuid.uuid4().hex}
    if me is not None:
        values["reporter_unit"] = me.unit
        values["reporter_name"] = me.name
    return kit.render(request, "form.html", {"values": values, "errors": {}})


@router.get("/report/oral", response_class=HTMLResponse)
async def oral_page(request: Request, kit: PagesDep, me: MaybeViewer) -> Response:
    """R-WRITTEN: the quick form for a phone report, times prefilled with now."""
    now = datetime.now(kit.tz).strftime("%Y-%m-%dT%H:%M")
    values = {"submission_key": uuid.uuid4().hex, "oral_reported_at": now, "discovered_at": now}
    if me is not None:
        values["reporter_unit"] = me.unit
        values["reporter_name"] = me.name
    return kit.render(request, "oral.html", {"values": values, "errors": {}})


@router.post("/incidents", response_class=HTMLResponse)
async def form_submit(
    request: Request,
    client: TemporalClient,
    _sender: MaybePerson,  # counts an anonymous submission against the client's limit
    me: MaybeViewer,
    kit: PagesDep,
) -> Response:
    # Monitoring staff may report without an account; a signed-in person needs the CSRF token.
    values = await _posted_values(kit, request, me)
    values.pop(CSRF_FIELD, None)
    data, errors = _form_to_submission(values, kit.tz)
    status = 422
    received: list[uploads.Evidence] = []
    try:
        # Issue 19, item 5: evidence files are checked before anything starts; a refused file
        # refuses the report (with the other fields' errors), and nothing is started.
        received = await uploads.receive_evidence(kit.settings, await staff.read_form(request))
    except ServiceError as exc:
        status = exc.status if exc.status == 413 else 422
        for f in exc.fields:
            errors.setdefault(f.field, f.message)
    try:
        if errors:
            # Every field's error in one answer (issue 18): what the form could not read is
            # said above; the rest is checked as a submission would be, without starting one.
            uploads.drop_evidence(received)
            incidents.parse_submission(data, kit.roster, datetime.now(UTC))
        else:
            person = me.person_id if me else None
            evidence: list[Any] = []
            if received:
                try:
                    incidents.parse_submission(data, kit.roster, datetime.now(UTC))
                except ServiceError:
                    uploads.drop_evidence(received)
                    raise
                evidence = await run_in_threadpool(uploads.keep_evidence, kit.settings, received)
            submitted = await incidents.submit(
                client, kit.settings, kit.roster, data, submitted_by=person, evidence=evidence
            )
            if evidence and submitted.created:
                await run_in_threadpool(
                    uploads.record_evidence, kit.settings, submitted.view.id, evidence, person
                )
            view = submitted.view
            if me is None or not may_see(kit.roster, me.person_id, view):
                # Not theirs to read (R-SECRECY): confirm what was received, nothing more
                # (not even the title of an incident the same key or post already started).
                receipt = receipt_of(submitted, values.get("title", ""))
                return kit.render(request, "submitted.html", {"r": receipt}, 201)
            return RedirectResponse(f"/incidents/{view.id}", status_code=303)
    except ServiceError as exc:
        if exc.status != 422:
            raise
        for f in exc.fields:
            errors.setdefault(f.field, f.message)
    errors = dict(sorted(errors.items(), key=lambda e: FORM_ORDER.get(e[0], len(FORM_ORDER))))
    template = "oral.html" if values.get("variant") == "oral" else "form.html"
    return kit.render(request, template, {"values": values, "errors": errors}, status)


async def _posted_values(kit: Pages, request: Request, me: Viewer | None) -> dict[str, str]:
    """A page's POST open to anyone: same origin, and the CSRF token of the session when
    signed in."""
    kit.auth.check_origin(request)
    form = await staff.read_form(request)
    values = {k: str(v) for k, v in form.items() if not isinstance(v, UploadFile)}
    if me is not None:
        kit.auth.check_csrf(me, values.get(CSRF_FIELD))
    return values


EXPORT_LIMIT = 10_000  # far beyond a town's incidents; the file stays a few megabytes


def _listed(
    session: Session, kit: Pages, me: Viewer, f: PageFilter, *, limit: int, offset: int = 0
) -> list[Any]:
    """The list's incidents for these filters, only those the viewer may see (R-SECRECY)."""
    return list(
        incident_rows.list_incidents(
            session,
            **f.query(),
            involving=visible_to(kit.roster, me.person_id),
            limit=limit,
            offset=offset,
        )
    )


@router.get("/incidents", response_class=HTMLResponse)
def list_page(
    request: Request,
    me: PagePerson,
    kit: PagesDep,
    session: StoreSession,
    f: PageListFilter,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
) -> Response:
    chosen = f.chosen()
    rows = _listed(session, kit, me, f, limit=50, offset=(page - 1) * 50)
    access.record(request, me.person_id, "list")
    return kit.render(
        request,
        "list.html",
        {
            "rows": rows,
            "page": page,
            **chosen,
            "filter_query": urlencode({k: v for k, v in chosen.items() if v}),
        },
    )


@router.get("/incidents.xlsx")
def list_xlsx(
    request: Request, me: PagePerson, kit: PagesDep, session: StoreSession, f: PageListFilter
) -> Response:
    """The list as an Excel workbook (issue 19, item 2): the page's filters and search, every
    page of them, only what the viewer may see (R-SECRECY); times in the town's local time."""
    rows = _listed(session, kit, me, f, limit=EXPORT_LIMIT)
    access.record(request, me.person_id, "export")
    return list_workbook(kit, rows, f.chosen())


def list_workbook(kit: Pages, rows: list[Any], chosen: dict[str, str | None]) -> Response:
    """The listed incidents (already filtered to what the viewer may see) as an Excel download:
    the title row names the export's time and the filters; the file name the unit when
    filtered. The page's download and GET /api/incidents.xlsx answer with this."""
    now = datetime.now(kit.tz)
    note = f"导出于{now.strftime('%Y-%m-%d %H:%M')}" + "".join(
        f"，{label}：{text}" for label, text in _filter_labels(kit, chosen)
    )
    town = kit.roster.town
    table = sheets.incident_table(town, kit.roster, kit.tz, rows, title_note=note)
    unit_name = kit.roster.unit_name(chosen["unit"]) if chosen["unit"] else None
    name, fallback = sheets.incident_filename(town, unit_name, now.date(), "xlsx")
    return Response(
        sheets.xlsx_bytes(table),
        media_type=sheets.XLSX_MEDIA_TYPE,
        headers={"Content-Disposition": sheets.content_disposition(name, fallback)},
    )


def _filter_labels(kit: Pages, chosen: dict[str, str | None]) -> list[tuple[str, str]]:
    """The filters in force, in Chinese, for the export's title."""
    out: list[tuple[str, str]] = []
    if chosen["q"]:
        out.append(("搜索", chosen["q"]))
    if chosen["phase"]:
        out.append(("阶段", sheets.PHASE_LABELS.get(chosen["phase"], chosen["phase"])))
    if chosen["unit"]:
        out.append(("责任单位", kit.roster.unit_name(chosen["unit"])))
    for key, label, kind in (("severity", "等级", Severity), ("category", "类别", Category)):
        value = chosen[key]
        if value:
            out.append((label, kind(value).label if value in kind.__members__ else value))
    overdue = FLAGS.get((chosen["overdue"] or "").lower())
    if overdue is not None:
        out.append(("逾期", "仅逾期" if overdue else "未逾期"))
    drill = FLAGS.get((chosen["drill"] or "").lower())
    if drill is not None:
        out.append(("演练", "仅演练" if drill else "真实事件"))
    return out


@router.get("/incidents/{incident_id}", response_class=HTMLResponse)
async def incident_page(
    request: Request, incident_id: str, client: TemporalClient, me: PagePerson, kit: PagesDep
) -> Response:
    try:
        view = await visible_incident_page(request, incident_id, client, me)
    except ServiceError as exc:
        if exc.status != 404:
            raise
        # 归档 (issue 19, item 4): Temporal no longer holds it (its history past retention):
        # the page from the store and the archive, for those who may see it (R-SECRECY).
        await refuse_unless_in_store(request, kit, me.person_id, incident_id, exc)
        page = await run_in_threadpool(archive.archived_page, kit, me.person_id, incident_id)
        if page is None:
            raise
        access.record(request, me.person_id, "view", incident_id=incident_id)
        return kit.render(request, "archived.html", page)
    access.record(request, me.person_id, "view", incident_id=view.id)
    actions = staff.action_forms(kit.roster, me.person_id, view, kit.state.plan)
    stored = await run_in_threadpool(staff.stored_parts, kit, view)
    context = staff.page_context(
        kit,
        view,
        actions,
        kit.ui_for(me.person_id, view.id),
        may_attach=staff.may_attach(kit.roster, me.person_id, view),
        **stored,
    )
    return kit.render(request, "incident.html", context)


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
