"""The staff's daily pages: the actions on an incident page, the inbox and 待办 (what my unit owes).

Which forms an incident page offers comes from the one table of actions (plan/actions.py `may`), the
same the workflow's update validators read: the page offers a person exactly what the incident
would accept from them. A form posted anyway is refused with the core's Chinese reason.
"""

from __future__ import annotations

import enum
import typing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException

from plan import todo
from plan.actions import ACTIONS, allows, place_of
from plan.models import IncidentState, IncidentView, Phase
from plan.roster import Role, Roster
from plan.spec import PlanSpec
from starter import incidents
from starter.errors import FIELD_LABELS
from starter.incidents import ServiceError
from store import incident_rows, notifications

from .deps import (
    CheckedForm,
    IncidentPagePerson,
    PagePerson,
    PagesDep,
    StoreSession,
    require_visible,
    visible_to,
)
from .lateness import span
from .limits import BodyTooLarge

HERE = Path(__file__).resolve().parent

router = APIRouter(include_in_schema=False)  # pages: not the JSON API (issue 17)


UNIT_FIELDS = {"responsible_unit", "unit", "units", "co_units"}
PERSON_FIELDS = {"spokesperson", "person", "participants", "persons"}
TRUE = ("on", "true", "1", "yes")
DRILL_FLAG = "【演练】"  # plan/messages.py heads a drill's subjects with it (for the channels)


# ---------------------------------------------------------------- which actions, which fields


def plausible_actions(roster: Roster, person_id: str, view: IncidentView) -> list[str]:
    """The actions the person may take now (in ACTIONS' order): exactly those the incident's
    core would accept from them with valid fields (plan/actions.py `may`, the same table the
    workflow's validators read)."""
    state = IncidentState.model_construct(
        **{name: getattr(view, name) for name in IncidentState.model_fields}
    )
    place = place_of(state, view.reporter_unit)
    return [name for name in ACTIONS if allows(name, roster, state, place, person_id)]


@dataclass
class FormField:
    name: str
    label: str
    kind: str  # text | textarea | select | multiselect | checkbox | list
    required: bool
    default: Any = None
    options: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class ActionForm:
    name: str
    label: str
    help: str
    fields: list[FormField]


def _enum_of(annotation: Any) -> type[enum.Enum] | None:
    for arg in (annotation, *typing.get_args(annotation)):
        if isinstance(arg, type) and issubclass(arg, enum.Enum):
            return arg
    return None


def _is_list(annotation: Any) -> bool:
    return typing.get_origin(annotation) is list


def _is_bool(annotation: Any) -> bool:
    return annotation is bool


def form_fields(model: type[BaseModel], roster: Roster) -> list[FormField]:
    units = [(u.id, u.name) for u in roster.units]
    people = [(p.id, f"{p.name}（{roster.unit_name(p.unit)}）") for p in roster.people]
    out: list[FormField] = []
    for name, info in model.model_fields.items():
        ann = info.annotation
        required = info.is_required()
        default = None if required or info.default_factory is not None else info.default
        label = FIELD_LABELS.get(name, name)
        choices = units if name in UNIT_FIELDS else people if name in PERSON_FIELDS else None
        enum_type = _enum_of(ann)
        if _is_bool(ann):
            f = FormField(name, label, "checkbox", False, bool(default))
        elif _is_list(ann):
            kind = "multiselect" if choices is not None else "list"
            f = FormField(name, label, kind, required, options=choices or [])
        elif enum_type is not None:
            opts = [(str(m.value), str(getattr(m, "label", m.value))) for m in enum_type]
            value = default.value if isinstance(default, enum.Enum) else default
            f = FormField(name, label, "select", required, value, opts)
        elif choices is not None:
            f = FormField(name, label, "select", required, default, choices)
        else:
            long = any(getattr(m, "max_length", 0) and m.max_length > 200 for m in info.metadata)
            kind = "textarea" if long and name != "url" else "text"
            f = FormField(name, label, kind, required, default)
        out.append(f)
    return out


def action_forms(
    roster: Roster, person_id: str, view: IncidentView, spec: PlanSpec
) -> list[ActionForm]:
    """The forms for the incident page's "我可以做的操作" section; the help names the periods
    of `spec`, the plan the app starts incidents under."""
    forms = []
    for name in plausible_actions(roster, person_id, view):
        model = ACTIONS[name].request
        help_text = ACTIONS[name].help_for(spec)
        fields = form_fields(model, roster)
        label = ACTIONS[name].label
        if name == "triage":
            # Start from what is known: the reporter's first guess, or the last triage.
            current = {
                "severity": view.severity.value if view.severity_assessed else None,
                "category": view.category.value if view.category else None,
                "responsible_unit": view.responsible_unit,
                "co_units": list(view.co_units),
            }
            for f in fields:
                if current.get(f.name):
                    f.default = current[f.name]
            if view.phase is not Phase.triage:
                label = "重新研判"
        forms.append(ActionForm(name, label, help_text, fields))
    return forms


def form_to_data(model: type[BaseModel], form: FormData) -> dict[str, Any]:
    """A posted form to the action's JSON shape: blank fields left out, lists from multi-selects
    or a comma list, unchecked checkboxes false."""
    data: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        ann = info.annotation
        if _is_bool(ann):
            data[name] = str(form.get(name, "")).strip().lower() in TRUE
        elif _is_list(ann):
            items: list[str] = []
            for raw in form.getlist(name):
                items += [p.strip() for p in str(raw).replace("，", ",").split(",")]
            items = [i for i in items if i]
            if items or name in form:
                data[name] = items
        else:
            value = str(form.get(name, "")).strip()
            if value:
                data[name] = value
    return data


# ---------------------------------------------------------------- incident actions


async def read_form(request: Request) -> FormData:
    """A posted form. Starlette refuses a field over 1 MB or over 1,000 fields, and a broken
    multipart body, with a bare 400 in English: here a 413 or a 400 with the page in Chinese.
    (The body as a whole is capped while it streams in: limits.BodyLimit.)"""
    try:
        return await request.form()
    except BodyTooLarge:
        raise
    except HTTPException as exc:
        detail = str(exc.detail)
        if "maximum size" in detail or "Too many" in detail:
            raise ServiceError(413, "提交内容过大，请精简后重试") from exc
        raise ServiceError(400, "表单内容无法解析，请刷新页面后重新提交") from exc


@router.post("/incidents/{incident_id}/actions/{name}", response_class=HTMLResponse)
async def act_from_page(
    request: Request,
    incident_id: str,
    name: str,
    me: IncidentPagePerson,
    kit: PagesDep,
) -> Response:
    await read_form(request)  # parsed once, then read again from the request's cache
    form = await kit.posted(request, me)
    entry = ACTIONS.get(name)
    if entry is None:
        raise ServiceError(404, f"未知操作“{name}”")
    client = await kit.state.temporal()
    # R-SECRECY: what the person may not see answers as an unknown id would (issue 15, finding 9).
    require_visible(kit.roster, me.person_id, await incidents.get(client, incident_id), incident_id)
    data = form_to_data(entry.request, form)
    try:
        await incidents.perform(client, incident_id, name, data, me.person_id, roster=kit.roster)
    except ServiceError as exc:
        view = await incidents.get(client, incident_id)
        forms = action_forms(kit.roster, me.person_id, view, kit.state.plan)
        for a in forms:
            if a.name == name:  # the refused form keeps what was typed
                for f in a.fields:
                    f.default = data.get(f.name)
        context = {
            "v": view,
            "ui_link": kit.ui_link(view.id),
            "actions": forms,
            "action_error": exc.message,
            "action_error_fields": [f.as_dict() for f in exc.fields],
            "action_failed": name,
        }
        return kit.render(request, "incident.html", context, exc.status)
    return RedirectResponse(
        f"/incidents/{quote(incident_id)}?" + urlencode({"done": name}), status_code=303
    )


# ---------------------------------------------------------------- inbox


@router.get("/inbox", response_class=HTMLResponse)
def inbox_page(request: Request, me: PagePerson, kit: PagesDep, session: StoreSession) -> Response:
    messages = [
        {
            "id": m.id,
            "incident_id": m.incident_id,
            "rule": m.rule,
            # One 演练 marker: the page tags a drill's line, so its subject's 【演练】 goes.
            "subject": m.subject.removeprefix(DRILL_FLAG) if m.drill else m.subject,
            "body": m.body,
            "drill": m.drill,
            "created_at": m.created_at,
            "read": m.read_at is not None,
        }
        for m in notifications.inbox(session, recipient=me.person_id)
    ]
    unread = sum(1 for m in messages if not m["read"])
    return kit.render(request, "inbox.html", {"messages": messages, "unread": unread})


@router.post("/inbox/read")
def inbox_mark_read(me: PagePerson, form: CheckedForm, session: StoreSession) -> Response:
    ids: list[int] | None = None
    if str(form.get("all", "")).strip().lower() not in TRUE:
        try:
            ids = [int(str(v)) for v in form.getlist("id")]
        except ValueError as exc:
            raise ServiceError(422, "消息编号应为数字") from exc
    notifications.mark_read(session, person=me.person_id, ids=ids)
    return RedirectResponse("/inbox", status_code=303)


# ---------------------------------------------------------------- 待办


# The 待办 page's sections (plan/todo.py kinds), in the order shown.
SECTIONS = [
    (todo.APPROVE, "todo-approve", "待我审批"),
    (todo.HANDLE, "todo-handle", "待我处理"),
    (todo.ESCALATED, "todo-escalated", "督办给我"),
]


def _due(
    due_at: datetime | None, overdue: bool, now: datetime, speedup: float | None
) -> dict[str, Any]:
    if due_at is None:
        return {"due_at": None, "due_iso": "", "overdue": False, "late": "", "left": ""}
    late = overdue or due_at <= now
    return {
        "due_at": due_at,
        "due_iso": due_at.astimezone(UTC).isoformat(),
        "overdue": late,
        "late": span(now - due_at, speedup) if late and due_at < now else "",
        "left": "" if late else span(due_at - now, speedup),
        "speedup": speedup or "",
    }


@router.get("/my", response_class=HTMLResponse)
def my_work(request: Request, me: PagePerson, kit: PagesDep, session: StoreSession) -> Response:
    """待办 (issue 18): what waits for me, by the action table (plan/todo.py, the rows the
    workflow writes): 待我审批, 待我处理, 督办给我 (R-ESCALATE), each with the deadline it meets;
    then my unit's other open deadlines. One indexed query each; R-SECRECY's filter on both."""
    roster = kit.roster
    office = Role.office in roster.roles_of(me.person_id)
    now = datetime.now(UTC)
    involving = visible_to(roster, me.person_id)
    found = incident_rows.waits_for(
        session, whose=incident_rows.whose(roster, me.person_id), involving=involving
    )
    sections: dict[str, list[dict[str, Any]]] = {kind: [] for kind, _, _ in SECTIONS}
    seen: set[tuple[str, str, str | None]] = set()
    for w, inc in found:
        key = (inc.id, w.action, w.deadline_key)
        if key in seen or w.kind not in sections:
            continue
        seen.add(key)
        speedup = inc.drill_speedup if inc.drill else None
        if w.kind == todo.ESCALATED:
            label = f"第{w.step}级督办"
        else:
            label = ACTIONS[w.action].label if w.action in ACTIONS else w.action
        sections[w.kind].append(
            {
                "incident_id": inc.id,
                "incident_title": inc.title,
                "drill": inc.drill,
                "action": w.action,
                "label": label,
                "title": w.deadline_title or "",
                "rule": (w.deadline_key or "").split("#")[0],
                "step": w.step,
                **_due(w.due_at, w.kind == todo.ESCALATED, now, speedup),
            }
        )
    shown = {(i, k) for i, _, k in seen}
    owed = incident_rows.owed_deadlines(
        session, unit=me.unit, include_unassigned=office, involving=involving
    )
    rows = []
    for d, inc in owed:
        if (inc.id, d.key) in shown:
            continue
        rows.append(
            {
                "incident_id": inc.id,
                "incident_title": inc.title,
                "drill": inc.drill,
                "title": d.title,
                "rule": d.rule,
                "unit": d.unit,
                "step": d.escalation_step,
                **_due(d.due_at, d.overdue, now, inc.drill_speedup if inc.drill else None),
            }
        )
    return kit.render(
        request,
        "my.html",
        {
            "sections": [
                (kind, anchor, heading, sections[kind]) for kind, anchor, heading in SECTIONS
            ],
            "rows": rows,
        },
    )
