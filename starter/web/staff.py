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
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from plan import reach_test, rules, todo
from plan.actions import ACTIONS, UPLOADS, allows, may, place_of
from plan.enums import ReplyStatus
from plan.models import DOCUMENT_TYPES, IncidentState, IncidentView, Phase
from plan.outbox import REACH_TEST_ID
from plan.roster import Role, Roster
from plan.spec import PlanSpec
from starter import incidents
from starter.errors import ACTION_FIELD_LABELS, FIELD_LABELS
from starter.incidents import ServiceError
from store import archives, incident_rows, notifications, reach_checks
from store.db import session_scope

from . import attachments as uploads  # not spelt as store/attachments.py
from . import receipts
from .deps import (
    CheckedForm,
    IncidentPagePerson,
    PagePerson,
    PagesDep,
    StoreSession,
    require_visible,
    visible_to,
)
from .forms import read_form
from .lateness import span
from .pages import Pages

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
    place = place_of(state, view.reporter_unit, datetime.now(UTC))  # 代理: who stands in now
    return [name for name in ACTIONS if allows(name, roster, state, place, person_id)]


def may_attach(roster: Roster, person_id: str, view: IncidentView) -> bool:
    """Issue 19: whether the page offers the person the attachment form (the `attach` row of
    plan/actions.py `UPLOADS`, which the workflow checks the same way)."""
    state = IncidentState.model_construct(
        **{name: getattr(view, name) for name in IncidentState.model_fields}
    )
    place = place_of(state, view.reporter_unit, datetime.now(UTC))
    return allows("attach", roster, state, place, person_id)


@dataclass
class FormField:
    name: str
    label: str
    kind: str  # text | textarea | select | multiselect | checkbox | list | file
    required: bool
    default: Any = None
    options: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class ActionForm:
    name: str
    label: str
    help: str
    fields: list[FormField]
    # The reply a decision is about (approve, countersign, release): shown inside the form.
    draft: str | None = None
    # 同意 / 退回 as two buttons instead of a checkbox (the approve field of the request).
    decision: bool = False
    # Issue 19, item 5: the generated draft to download first (its address and title), when the
    # material may be uploaded as a document.
    draft_url: str | None = None
    draft_title: str | None = None

    @property
    def upload(self) -> bool:
        return any(f.kind == "file" for f in self.fields)


# Fields whose common label (starter/errors.py FIELD_LABELS) says the wrong thing in one action:
# what the errors call them too (ACTION_FIELD_LABELS), and the forms' hints.
ACTION_LABELS: dict[tuple[str, str], str] = {
    **ACTION_FIELD_LABELS,
    ("publish-reply", "channel"): "发布渠道（如镇政府微博）",
    ("approve-reply", "comment"): "意见（退回时必填）",
    ("countersign-reply", "comment"): "意见（不同意时必填）",
    ("approve-release", "comment"): "意见（退回时必填）",
    ("sign-for", "key"): "签收哪一项（不选则全部签收）",
}
# Issue 19, item 5: the actions whose written material may be an uploaded document (the
# request's `attachment_id`, a file input on the page): the generated draft each offers first
# (starter/documents.py kind) and what the material is called.
DOCUMENT_FIELD = "document"
DOCUMENT_ACTIONS = {
    "file-written-report": ("written-report", "书面信息", "舆情信息报告"),
    "submit-summary": ("summary", "书面总结", "舆情处置情况报告"),
}
DOCUMENT_ACCEPT = (
    ".pdf,.docx,application/pdf,"
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
)

# Fields chosen from what the incident holds for the viewer (action_forms fills the options).
VIEW_CHOICES = {("sign-for", "key")}
# The actions decided with 同意 / 退回 (their request's `approve` field), and what 退回 is called.
DECISIONS = {"approve-reply": "退回", "countersign-reply": "不同意", "approve-release": "退回"}

# Which of the viewer's actions is the one the page puts first: what the incident waits for,
# earliest step of the plan first (issue 18). Re-triage, consulting, commending and the like are
# never the one thing to do next.
PRIMARY = (
    "confirm-lead",
    "triage",
    "file-written-report",
    "approve-reply",
    "countersign-reply",
    "approve-release",
    "publish-reply",
    "draft-reply",
    "conclude",
    "decide-adoption",
    "track",
    "submit-summary",
    "report-progress",
)


# A reply in these states waits on someone else (R-REVIEW, R-RELEASE).
WAITING = (ReplyStatus.drafted, ReplyStatus.approved)


def primary_action(forms: list[ActionForm], view: IncidentView) -> str | None:
    """The one action the viewer most likely came to take, or None."""
    offered = {f.name for f in forms}
    for name in PRIMARY:
        if name not in offered:
            continue
        if name == "triage" and view.phase is not Phase.triage:
            continue  # 重新研判 is a correction, not the next step
        if name == "draft-reply" and view.replies and view.replies[-1].status in WAITING:
            continue  # a draft is with the head or the leading group: redrafting is not next
        if name == "report-progress" and not any(
            d.open and d.rule == rules.R_PROGRESS for d in view.deadlines
        ):
            continue
        return name
    return None


def spokespeople(roster: Roster, view: IncidentView) -> list[str]:
    """R-RELEASE 确定发布人: the leading group, the heads of the units on the incident and the
    publicity unit's people; the deputy leader (分管宣传) first. Not the whole roster: the
    spokesperson speaks for the town (issue 18)."""
    lg = roster.leading_group
    ids = [lg.deputy, lg.leader, *lg.members]
    for unit_id in (view.responsible_unit, *view.co_units, *view.activated_units):
        unit = roster.unit(unit_id) if unit_id else None
        if unit is not None:
            ids.append(unit.head)
    if roster.roles.publicity:
        ids += roster.members_of(roster.roles.publicity)
    return list(dict.fromkeys(i for i in ids if roster.person(i) is not None))


def _enum_of(annotation: Any) -> type[enum.Enum] | None:
    for arg in (annotation, *typing.get_args(annotation)):
        if isinstance(arg, type) and issubclass(arg, enum.Enum):
            return arg
    return None


def _is_list(annotation: Any) -> bool:
    return typing.get_origin(annotation) is list


def _is_bool(annotation: Any) -> bool:
    return annotation is bool


def person_option(roster: Roster, person_id: str) -> tuple[str, str]:
    p = roster.person(person_id)
    return (person_id, f"{p.name}（{roster.unit_name(p.unit)}）" if p else person_id)


def form_fields(model: type[BaseModel], roster: Roster, action: str = "") -> list[FormField]:
    units = [(u.id, u.name) for u in roster.units]
    people = [person_option(roster, p.id) for p in roster.people]
    out: list[FormField] = []
    for name, info in model.model_fields.items():
        if name == "attachment_id" and action in DOCUMENT_ACTIONS:
            what = DOCUMENT_ACTIONS[action][1]
            label = f"或上传{what}文档（PDF或DOCX，可为修改后的草稿）"
            out.append(FormField(DOCUMENT_FIELD, label, "file", False))
            continue
        ann = info.annotation
        required = info.is_required()
        default = None if required or info.default_factory is not None else info.default
        label = ACTION_LABELS.get((action, name)) or FIELD_LABELS.get(name, name)
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
        elif (action, name) in VIEW_CHOICES:
            f = FormField(name, label, "select", required, default, [])
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
        fields = form_fields(model, roster, name)
        label = ACTIONS[name].label
        draft = view.replies[-1].text if name in DECISIONS and view.replies else None
        if name in DECISIONS:
            fields = [f for f in fields if f.name != "approve"]  # the 同意 / 退回 buttons
        if name == "approve-release":
            for f in fields:
                if f.name == "spokesperson":
                    f.options = [person_option(roster, p) for p in spokespeople(roster, view)]
                    f.default = roster.leading_group.deputy
        if name == "sign-for":
            for f in fields:  # the messages still to sign for, by what they were
                f.options = [(r.key, r.label) for r in view.receipts if person_id in r.unsigned()]
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
        form = ActionForm(name, label, help_text, fields, draft, name in DECISIONS)
        if name in DOCUMENT_ACTIONS:
            kind, _, title = DOCUMENT_ACTIONS[name]
            # The file input after the text box: the draft first, then what was written.
            form.fields.sort(key=lambda f: f.kind == "file")
            form.draft_url = f"/incidents/{quote(view.id)}/documents/{kind}.docx"
            form.draft_title = title
        forms.append(form)
    return forms


def form_to_data(model: type[BaseModel], form: FormData) -> dict[str, Any]:
    """A posted form to the action's JSON shape: blank fields left out, lists from multi-selects
    or a list separated by 、 or commas, unchecked checkboxes false."""
    data: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        ann = info.annotation
        if _is_bool(ann):
            data[name] = str(form.get(name, "")).strip().lower() in TRUE
        elif _is_list(ann):
            items: list[str] = []
            for raw in form.getlist(name):
                items += [
                    p.strip() for p in str(raw).replace("，", ",").replace("、", ",").split(",")
                ]
            items = [i for i in items if i]
            if items or name in form:
                data[name] = items
        else:
            value = str(form.get(name, "")).strip()
            if value:
                data[name] = value
    return data


# ---------------------------------------------------------------- incident actions


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
        upload = form.get(DOCUMENT_FIELD) if name in DOCUMENT_ACTIONS else None
        if isinstance(upload, UploadFile) and upload.filename:
            # The other fields first (a placeholder id): a refusal stores nothing.
            placeholder = {**data, "attachment_id": "0" * 32}
            incidents.parse_action(name, placeholder, me.person_id, roster=kit.roster)
            data["attachment_id"] = await _document(kit, incident_id, name, me.person_id, upload)
        await incidents.perform(client, incident_id, name, data, me.person_id, roster=kit.roster)
    except ServiceError as exc:
        view = await incidents.get(client, incident_id)
        forms = action_forms(kit.roster, me.person_id, view, kit.state.plan)
        for a in forms:
            if a.name == name:  # the refused form keeps what was typed
                for f in a.fields:
                    f.default = data.get(f.name)
        stored = await run_in_threadpool(stored_parts, kit, view)
        context = page_context(
            kit,
            view,
            forms,
            kit.ui_for(me.person_id, view.id),
            may_attach=may_attach(kit.roster, me.person_id, view),
            **stored,
        )
        context |= {
            "action_error": exc.message,
            "action_error_fields": [f.as_dict() for f in exc.fields],
            "action_failed": name,
            "primary": name,  # the refused form stays on top, beside its errors
        }
        return kit.render(request, "incident.html", context, exc.status)
    # Post/redirect/get, landing at the notice: a refresh reads the page, never posts again.
    return RedirectResponse(
        f"/incidents/{quote(incident_id)}?" + urlencode({"done": name}) + "#action-done",
        status_code=303,
    )


async def _document(
    kit: Pages, incident_id: str, name: str, person_id: str, upload: UploadFile
) -> str:
    """Issue 19, item 5: the written report or summary uploaded as a document. Asked first
    whether the person may take the action now (nothing stored if not; its other fields are
    checked before, by the caller); then the file is
    checked (a PDF or Word document, by content), kept and attached to the incident as every
    attachment (starter/web/attachments.py); its id goes with the action. Were the action then
    refused after all, the file stays attached: a file of the incident, shown with the rest."""
    client = await kit.state.temporal()
    view = await incidents.get(client, incident_id)
    state = IncidentState.model_construct(
        **{n: getattr(view, n) for n in IncidentState.model_fields}
    )
    refused = may(
        name,
        kit.roster,
        state,
        place_of(state, view.reporter_unit, datetime.now(UTC)),
        person_id,
        kit.settings.timezone,
    )
    if refused is not None:
        raise ServiceError(403 if refused.kind == "forbidden" else 409, refused.message)
    what = DOCUMENT_ACTIONS[name][1]
    attachment, _ = await uploads.add(
        kit,
        incident_id,
        person_id,
        upload,
        field=DOCUMENT_FIELD,
        allowed=DOCUMENT_TYPES,
        refusal=f"{what}须为PDF或DOCX文档，不能是图片（图片可作为附件另行上传）",
    )
    return str(attachment.id)


def done_notice(name: str | None) -> str | None:
    """The notice after an action, in the action's Chinese label (issue 18)."""
    if not name:
        return None
    entry = ACTIONS.get(name) or UPLOADS.get(name)
    return f"已完成操作：{entry.label}" if entry else "操作已完成"


# ---------------------------------------------------------------- what to do next


@dataclass
class Banner:
    """The incident page's status line (issue 18): overdue or not, who owes what by when, and
    how far the escalation has gone, e.g. 已逾期 · 社会事务办（吴芳）须发布官方回复 · 期限 13:47 ·
    已督办至组长."""

    overdue: bool
    parts: list[str]


# What an open deadline asks of its unit, by the deadline's key (before '#') or rule.
OWES = {
    rules.R_REPORT: "确认并上报",
    rules.R_WRITTEN: "报送书面信息",
    rules.R_PROGRESS: "续报处置进展",
    rules.R_REPLY: "发布官方回复",
    rules.R_STANCE: "作出表态性回复",
    "R-INQUIRY-OPINION": "回复处理意见",
    "R-INQUIRY-RESULT": "回复处理结果",
    rules.R_TRACK: "动态跟踪检查",
    rules.R_SUMMARY: "报送书面总结",
}


def status_banner(
    roster: Roster, view: IncidentView, spec: PlanSpec, tz: ZoneInfo, now: datetime | None = None
) -> Banner:
    now = now or datetime.now(UTC)
    if view.phase is Phase.closed:
        return Banner(False, [view.phase.label, "没有未完成的期限"])
    owed = [d for d in view.deadlines if d.open]
    if not owed:
        return Banner(False, [f"当前阶段：{view.phase.label}", "没有未完成的期限"])
    d = min(owed, key=lambda d: (not (d.overdue or d.due_at <= now), d.due_at))
    overdue = d.overdue or d.due_at <= now
    unit = d.unit or roster.roles.office
    person = rules.accountable_person(roster, unit) if unit else None
    who = roster.unit_name(unit) + (f"（{roster.person_name(person)}）" if person else "")
    what = OWES.get(d.key.split("#")[0]) or OWES.get(d.rule) or f"完成“{d.title}”"
    if view.phase is Phase.lead:
        what = "确认监测线索"  # R-OFFICE: the office confirms before anything else is owed
    elif view.phase is Phase.triage and d.unit is None:
        what = "研判并指定责任单位"  # no unit owes the reply yet; its deadline is shown
    due = d.due_at.astimezone(tz)
    shown = due.strftime("%H:%M" if due.date() == now.astimezone(tz).date() else "%m月%d日 %H:%M")
    parts = ["已逾期" if overdue else f"还剩{rules.format_duration(d.due_at - now)}"]
    parts += [f"{who}须{what}", f"期限 {shown}"]
    if d.escalation_step and 0 < d.escalation_step <= len(spec.escalation):
        parts.append(f"已督办至{spec.escalation[d.escalation_step - 1].label}")
    elif overdue:
        parts.append("即将督办")
    return Banner(overdue, parts)


def page_context(
    kit: Pages,
    view: IncidentView,
    forms: list[ActionForm],
    ui_link: str | None,
    *,
    short_number: str | None = None,
    attachments: list[dict[str, Any]] | None = None,
    may_attach: bool = False,
    receipts: list[Any] | None = None,
    archived_at: datetime | None = None,
) -> dict[str, Any]:
    """What incident.html needs: the incident, its short number, the status line, the viewer's
    one primary action on top and the others below, and its attachments (issue 19)."""
    return {
        "attachments": attachments or [],
        "receipts": receipts or [],
        "archived_at": archived_at,
        "may_attach": may_attach,
        "attachment_max_mb": kit.settings.attachment_max_mb,
        "v": view,
        "short_number": short_number,
        "ui_link": ui_link,
        "actions": forms,
        "primary": primary_action(forms, view),
        "banner": status_banner(kit.roster, view, kit.state.plan, kit.tz),
        "done_notice": done_notice,
        "decisions": DECISIONS,
        "document_accept": DOCUMENT_ACCEPT,
        "absences": absences_shown(view, datetime.now(UTC)),
    }


def absences_shown(view: IncidentView, now: datetime) -> list[dict[str, Any]]:
    """代理 (issue 20, item 3): the absences the incident holds that are not over, in force
    first, as the page lists them."""
    items = sorted(
        (a for a in view.absences.items if a.ends_at > now),
        key=lambda a: (not a.covers(now), a.starts_at),
    )
    return [{"a": a, "in_force": a.covers(now)} for a in items]


def stored_parts(kit: Pages, view: IncidentView) -> dict[str, Any]:
    """What the incident page shows from the store beside the workflow's view, read in one
    session (one hop to the thread pool): the short number, the attachments, who each 交办/督办
    message reached (签收), and when the case file was last archived."""
    with session_scope(kit.settings.database_url) as s:
        held = archives.latest(s, incident_id=view.id)
        return {
            "short_number": incident_rows.short_number_of(s, incident_id=view.id),
            "attachments": uploads.listed_in(s, kit.settings, view.id),
            "receipts": receipts.receipts(s, kit.roster, view, kit.tz),
            "archived_at": held.archived_at if held is not None else None,
        }


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
            # 通联测试 (issue 20, item 5): the run this message tests, for its 确认收到.
            "reach_run": reach_test.run_of_key(m.key) if m.incident_id == REACH_TEST_ID else None,
        }
        for m in notifications.inbox(session, recipient=me.person_id)
    ]
    unread = sum(1 for m in messages if not m["read"])
    context = {
        "messages": messages,
        "groups": drill_steps(messages),
        "unread": unread,
        "reach_test_id": REACH_TEST_ID,
        "reach_latest": reach_checks.latest_run_of(session, person_id=me.person_id),
        "reach_awaiting": reach_checks.awaiting_confirmation(session, person_id=me.person_id),
    }
    return kit.render(request, "inbox.html", context)


def drill_steps(messages: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The inbox's lines, newest first, with the messages of one drill step together (issue 18,
    item 6): at 3600× one timer tells a person several things at one workflow instant (the
    notifications' `sent_at`), and a drill's inbox would otherwise be a wall of near-copies. A
    real incident's messages stay one a line."""
    groups: list[list[dict[str, Any]]] = []
    for m in messages:
        last = groups[-1][-1] if groups else None
        same_step = (
            last is not None
            and m["drill"]
            and last["drill"]
            and m["incident_id"] == last["incident_id"]
            and m["created_at"] == last["created_at"]
        )
        if same_step:
            groups[-1].append(m)
        else:
            groups.append([m])
    return groups


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
