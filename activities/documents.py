"""The incident's Word documents (issue 19, item 1), from the store's records, not the workflow's
history: the read model outlives Temporal's history retention, so a case closed years ago still
gives its documents. Here in activities/ (not starter/) since the `record` activity archives the
case file on close (activities/archive.py); the web app's downloads use the same builder.

- `written-report`: 舆情信息报告 (R-WRITTEN): what, where, when found, source and link, spread,
  severity and category, the measures taken, the reporting unit and person, the time.
- `summary`: 舆情处置情况报告 for 镇党政办 (R-SUMMARY): the course of events, the replies
  published, the deadline ledger with 按期/逾期, accountability and commendations, and a 经验教训
  placeholder, prefilled so the unit edits rather than writes from nothing.
- `progress`: 续报 (R-PROGRESS): the progress reports filed so far and what happened since.
- `case-file`: 处置台账, the whole file of one incident.
- `escalation`: 督办通知 (R-ESCALATE) for one escalation step: which deadline, since when overdue,
  which step, who was told and when, and each channel's delivery state.

Templates are Jinja in .docx (docxtpl), shipped in config/documents/ (written by
scripts/make_document_templates.py); a file of the same name in the folder
YUQING_DOCUMENT_TEMPLATES names replaces the shipped one. A template Jinja cannot read is a
`TemplateBroken` naming the file (a Chinese message on the page, the path in the log).

The fields a template gets: `i` (the incident: number, title, content, source, url, posted_at,
discovered_at, received_at, spread, severity, category, phase, reporter_unit, reporter_name,
responsible_unit, co_units, closed_at), `drill`, `today`, `generated_at`, `timeline`, `measures`,
`replies` (at, summary, and `detail`: the wording as published), `attachments` (name, kind, size, sha256, added_by, added_at, missing, and `image`: the picture
itself for an image whose file is on disk, placed by `render`, else ""),
`replies`, `deadlines` (title, rule, unit, due_at, met_at, state) and `ledger` (total, on_time,
late), `escalations`, `accountability`, `commendations`, `reported_at`, `progress` (count,
reports) and `since` (what happened since the last report), `office` and `party_office` (the
roster's unit names); the escalation notice also `e` and `deliveries` (recipient, channel, state,
sent_at). Times are the town's (Beijing time), as 2026年11月30日 09:05.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from docx.shared import Mm
from docxtpl import DocxTemplate, InlineImage
from jinja2 import Environment, Template, TemplateError
from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session

from config.settings import Settings
from plan import rules
from plan.enums import Category, Phase, Severity
from plan.incident import size_words
from plan.models import ATTACHMENT_TYPES
from plan.roster import CHANNEL_KINDS, Roster
from store import archives, incident_rows
from store import attachments as attachment_rows
from store.incident_rows import Involving
from store.models import CommendationRow, Delivery, InboxMessage, Incident

log = logging.getLogger("yuqing.documents")

SHIPPED = Path(__file__).resolve().parent.parent / "config" / "documents"
MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


@dataclass(frozen=True)
class Kind:
    template: str
    name: str  # the document's Chinese name, also its download's file name


KINDS: dict[str, Kind] = {
    "written-report": Kind("written_report.docx", "舆情信息报告"),
    "summary": Kind("summary_report.docx", "舆情处置情况报告"),
    "progress": Kind("progress_report.docx", "舆情信息续报"),
    "case-file": Kind("case_file.docx", "舆情处置台账"),
    "escalation": Kind("escalation_notice.docx", "督办通知"),
}
TEMPLATE_FILES = {k.template for k in KINDS.values()}
# The documents of an incident as a whole (the escalation notice is one per step).
INCIDENT_KINDS = ("written-report", "progress", "summary", "case-file")

DELIVERY_STATES = {
    "pending": "待发送",
    "sent": "已送达",
    "failed": "发送失败（重试中）",
    "given_up": "发送失败（已放弃）",
}
# Timeline kinds: the measures a written report lists, the replies, the progress reports.
NOT_MEASURES = {"reported", "lead", "deadline_warning", "deadline_missed", "escalated"}
REPLIES = {"reply_published", "facts_published"}
PROGRESS = {"progress"}
# A picture in the case file spans the type area's width at most (GB/T 9704: 156 mm).
IMAGE_WIDTH = Mm(150)
IMAGE_HEIGHT_MAX = Mm(200)


class TemplateBroken(Exception):
    """A template Jinja (or Word) cannot read: `message` says which, in Chinese, for the page."""

    def __init__(self, path: Path, detail: str) -> None:
        super().__init__(f"document template {path}: {detail}")
        self.path = path
        self.message = f"文书模板“{path.name}”有误，无法生成文书：{detail}。请修改该模板后重试。"


def template_path(settings: Settings, kind: str) -> Path:
    """The office's template when YUQING_DOCUMENT_TEMPLATES has one of that name, else the
    shipped one."""
    name = KINDS[kind].template
    folder = settings.document_templates
    if folder is not None and (folder / name).is_file():
        return folder / name
    return SHIPPED / name


class _CompilingOnce(Environment):
    """docxtpl compiles each part's XML into a Jinja template on every render (`from_string`),
    and that compile was a quarter of the worker's CPU when every close archived a case file
    (issue 21): a template's XML is the same each time, so its compiled form is kept (per
    source; a changed template file is new source)."""

    def __init__(self) -> None:
        super().__init__(autoescape=True)
        self._compiled: dict[str, Template] = {}

    def from_string(  # type: ignore[override]
        self, source: str, globals: Any = None, template_class: Any = None
    ) -> Template:
        if globals is not None or template_class is not None or not isinstance(source, str):
            return super().from_string(source, globals, template_class)
        found = self._compiled.get(source)
        if found is None:
            if len(self._compiled) > 64:
                self._compiled.clear()  # templates edited many times over: start again
            found = self._compiled[source] = super().from_string(source)
        return found


class _PatchingOnce(DocxTemplate):
    """docxtpl's clean-up of a part's XML (`patch_xml`: a dozen regular expressions over the
    whole part) depends on the XML alone: done once per source."""

    _patched: ClassVar[dict[str, str]] = {}

    def patch_xml(self, src_xml: str) -> str:
        found = self._patched.get(src_xml)
        if found is None:
            if len(self._patched) > 64:
                self._patched.clear()
            found = self._patched[src_xml] = super().patch_xml(src_xml)
        return found


JINJA = _CompilingOnce()


def render(settings: Settings, kind: str, context: dict[str, Any]) -> bytes:
    """The document as .docx bytes; a template that cannot be read is `TemplateBroken`."""
    path = template_path(settings, kind)
    try:
        template = _PatchingOnce(str(path))
        _place_images(template, context)
        template.render(context, JINJA, autoescape=True)
    except TemplateError as exc:
        line = getattr(exc, "lineno", None)
        detail = f"{exc.message or type(exc).__name__}" + (f"（第{line}行）" if line else "")
        log.error("document template %s cannot be rendered: %s", path, exc)
        raise TemplateBroken(path, detail) from exc
    except Exception as exc:  # not a .docx at all, or a part Word would not open
        log.error("document template %s cannot be read: %s", path, exc)
        raise TemplateBroken(path, "不是有效的DOCX文字文档") from exc
    out = io.BytesIO()
    template.save(out)
    return out.getvalue()


def _place_images(template: DocxTemplate, context: dict[str, Any]) -> None:
    """The attachments' pictures, which only the template being rendered can hold (docxtpl's
    InlineImage). WebP, which Word cannot show, goes in as PNG; a picture is scaled to the type
    area's width, or to a page's height when tall (a phone's long screenshot)."""
    for row in context.get("attachments", []):
        path = row.pop("image_path", None)
        row["image"] = ""
        if path is None:
            continue
        with Image.open(path) as picture:
            width, height = picture.size
            data = io.BytesIO()
            picture.save(data, format="PNG" if picture.format == "WEBP" else picture.format)
        data.seek(0)
        if height * IMAGE_WIDTH > width * IMAGE_HEIGHT_MAX:
            row["image"] = InlineImage(template, data, height=IMAGE_HEIGHT_MAX)
        else:
            row["image"] = InlineImage(template, data, width=IMAGE_WIDTH)


# ------------------------------------------------------------------ from the store


def visible_row(session: Session, incident_id: str, involving: Involving | None) -> Incident | None:
    """The incident's row when the person may see it (R-SECRECY, the lists' rule in SQL:
    `involving` None sees every incident), else None: the caller answers the 404 of an unknown id."""
    q = select(Incident).where(Incident.id == incident_id)
    if involving is not None:
        q = q.where(incident_rows.involving_clause(involving))
    return session.scalar(q)


class Builder:
    """The fields of an incident's documents, from its rows."""

    def __init__(
        self,
        session: Session,
        row: Incident,
        roster: Roster,
        tz: ZoneInfo,
        settings: Settings | None = None,
    ) -> None:
        self.s, self.row, self.roster, self.tz = session, row, roster, tz
        self.settings = settings  # where the attachments' files are; None: listed, not shown

    def t(self, at: datetime | None) -> str:
        return at.astimezone(self.tz).strftime("%Y年%m月%d日 %H:%M") if at else ""

    def unit(self, unit_id: str | None) -> str:
        return self.roster.unit_name(unit_id) if unit_id else "（未指定）"

    def person(self, person_id: str | None) -> str:
        return self.roster.person_name(person_id) if person_id else ""

    def people(self, joined: str) -> str:
        return "、".join(self.person(p.strip()) for p in joined.split(",") if p.strip())

    def incident(self) -> dict[str, Any]:
        r = self.row
        co = [u for u in r.co_units.split(",") if u]
        return {
            "id": r.id,
            "number": r.short_number or r.id,
            "title": r.title,
            "content": r.content,
            "source": r.source,
            "url": r.url or "",
            "posted_at": self.t(r.posted_at),
            "discovered_at": self.t(r.discovered_at),
            "received_at": self.t(r.received_at),
            "spread": "（请填写阅读、转发、评论等传播情况）",
            "severity": Severity(r.severity).label,
            "category": Category(r.category).label if r.category else "（待研判）",
            "phase": Phase(r.phase).label,
            "reporter_unit": self.unit(r.reporter_unit),
            "reporter_name": r.reporter_name or "",
            "responsible_unit": self.unit(r.responsible_unit),
            "co_units": "、".join(self.unit(u) for u in co),
            "closed_at": self.t(r.closed_at),
        }

    def events(self) -> list[dict[str, Any]]:
        return [
            {
                "at": self.t(e.at),
                "kind": e.kind,
                "actor": self.person(e.actor) if e.actor else "",
                "summary": e.summary,
                "detail": e.detail or "",
            }
            for e in incident_rows.timeline(self.s, incident_id=self.row.id)
        ]

    def attachments(self) -> list[dict[str, Any]]:
        """The incident's attachments (issue 19, item 3) as the case file lists them; an image
        whose file is on disk also by its path, for `render` to place the picture. A file gone
        from disk is listed as missing: the rest of the case file is still given."""
        out = []
        for a in attachment_rows.for_incident(self.s, self.row.id):
            path = attachment_rows.path_of(self.settings, a.sha256) if self.settings else None
            out.append(
                {
                    "name": a.name,
                    "kind": ATTACHMENT_TYPES.get(a.media_type, a.media_type),
                    "size": size_words(a.size),
                    "sha256": a.sha256,
                    "added_by": self.person(a.added_by) or a.added_by,
                    "added_at": self.t(a.added_at),
                    "missing": self.settings is not None and path is None,
                    "image_path": path if path and a.media_type.startswith("image/") else None,
                }
            )
        return out

    def deadlines(self) -> tuple[list[dict[str, Any]], dict[str, int]]:
        rows, on_time, late = [], 0, 0
        for d in incident_rows.deadlines(self.s, incident_id=self.row.id):
            if d.voided:
                state = "不计（误报撤销）"
            elif d.met_at is not None:
                state = "按期" if d.met_at <= d.due_at else "逾期"
            elif d.cancelled:
                state = "已取消"
            elif d.overdue:
                state = "逾期未完成"
            else:
                state = "未到期"
            on_time += state == "按期"
            late += state.startswith("逾期")
            rows.append(
                {
                    "key": d.key,
                    "title": d.title,
                    "rule": d.rule,
                    "unit": self.unit(d.unit),
                    "due_at": self.t(d.due_at),
                    "met_at": self.t(d.met_at),
                    "state": state,
                }
            )
        return rows, {"total": on_time + late, "on_time": on_time, "late": late}

    def context(self) -> dict[str, Any]:
        timeline = self.events()
        deadlines, ledger = self.deadlines()
        titles = {d["key"]: d["title"] for d in deadlines}
        progress = [e for e in timeline if e["kind"] in PROGRESS]
        written = [e for e in timeline if e["kind"] == "written_report"]
        last_report = self.row.received_at
        events = incident_rows.timeline(self.s, incident_id=self.row.id)
        for e in events:
            if e.kind in PROGRESS or e.kind == "written_report":
                last_report = max(last_report, e.at)
        now = datetime.now(self.tz)
        context: dict[str, Any] = {
            "i": self.incident(),
            "drill": self.row.drill,
            "office": self.unit(self.roster.roles.office),
            "party_office": self.unit(self.roster.roles.party_office),
            "today": now.strftime("%Y年%m月%d日"),
            "generated_at": self.t(now),
            "timeline": timeline,
            "measures": [e for e in timeline if e["kind"] not in NOT_MEASURES],
            "replies": [e for e in timeline if e["kind"] in REPLIES],
            "attachments": self.attachments(),
            "deadlines": deadlines,
            "ledger": ledger,
            "escalations": [
                {
                    "at": self.t(e.at),
                    "step": e.step,
                    "deadline": titles.get(e.deadline_key, e.deadline_key),
                    "targets": self.people(e.targets),
                    "summary": e.summary,
                    "signed": "；".join(
                        f"{r['person']}{r['state']}"
                        for r in self.receipts(e.deadline_key, e.step, e.targets, events)
                    ),
                }
                for e in incident_rows.escalations(self.s, incident_id=self.row.id)
            ],
            "accountability": [
                {
                    "kind": a.kind,
                    "unit": self.unit(a.unit),
                    "person": self.person(a.person),
                    "deadline": titles.get(a.deadline_key, a.deadline_key),
                    "due_at": self.t(a.due_at),
                    "reason": a.reason or "",
                    "voided": a.voided_at is not None,
                }
                for a in incident_rows.accountability(self.s, incident_id=self.row.id)
            ],
            "commendations": [
                {
                    "at": self.t(c.at),
                    "unit": self.unit(c.unit),
                    "person": self.person(c.person),
                    "reason": c.reason,
                }
                for c in self.s.scalars(
                    select(CommendationRow)
                    .where(CommendationRow.incident_id == self.row.id)
                    .order_by(CommendationRow.at)
                )
            ],
            "reported_at": written[-1]["at"] if written else self.t(self.row.received_at),
            "progress": {"count": len(progress), "reports": progress},
            "since": [
                e
                for e, raw in zip(timeline, events, strict=True)
                if raw.at >= last_report and raw.kind != "reported"
            ],
        }
        # 归档 (item 4): the retention redaction, recorded in the store, closes the timeline.
        redacted = archives.redaction(self.s, incident_id=self.row.id)
        if redacted is not None:
            context["timeline"] = [
                *timeline,
                {
                    "at": self.t(redacted.at),
                    "kind": "redacted",
                    "actor": "",
                    "summary": archives.describe(redacted),
                },
            ]
        return context

    def escalation(self, deadline_key: str, step: int) -> dict[str, Any] | None:
        """The fields of one step's 督办通知 (the latest of that deadline and step), or None."""
        found = [
            e
            for e in incident_rows.escalations(self.s, incident_id=self.row.id)
            if e.deadline_key == deadline_key and e.step == step
        ]
        deadline = next(
            (
                d
                for d in incident_rows.deadlines(self.s, incident_id=self.row.id)
                if d.key == deadline_key
            ),
            None,
        )
        if not found or deadline is None:
            return None
        e = found[-1]
        late = e.at - deadline.due_at
        context = self.context()
        context["e"] = {
            "deadline": deadline.title,
            "rule": deadline.rule,
            "unit": self.unit(deadline.unit or self.row.responsible_unit),
            "due_at": self.t(deadline.due_at),
            "at": self.t(e.at),
            # Since when overdue: the due time; how late at this step, when a minute or more.
            "late": rules.format_duration(late) if late >= timedelta(minutes=1) else "",
            "step": e.step,
            "summary": e.summary,
            "targets": self.people(e.targets),
        }
        context["deliveries"] = self.deliveries(e.at)
        events = incident_rows.timeline(self.s, incident_id=self.row.id)
        context["receipts"] = self.receipts(deadline_key, step, e.targets, events)
        return context

    def receipts(
        self, deadline_key: str, step: int, targets: str, events: Sequence[Any]
    ) -> list[dict[str, str]]:
        """签收 (issue 20) of a 督办 step, per person it went to: 已签收 and when, or 未签收; from
        the timeline's `signed` entries, whose detail names each message and who signed it."""
        key = f"{deadline_key}/{step}"
        signed: dict[str, datetime] = {}
        for e in events:
            if e.kind != "signed" or not e.detail:
                continue
            for line in e.detail.splitlines():
                what, _, who = line.partition("=")
                if what == key:
                    for person in who.split(","):
                        signed.setdefault(person, e.at)
        return [
            {
                "person": self.person(p),
                "state": f"已签收（{self.t(signed[p])}）" if p in signed else "未签收",
            }
            for p in (p.strip() for p in targets.split(","))
            if p
        ]

    def deliveries(self, at: datetime) -> list[dict[str, str]]:
        """Who the step's notification reached, by channel: the inbox (read or not) and each
        external delivery's state."""
        messages: Sequence[InboxMessage] = self.s.scalars(
            select(InboxMessage)
            .where(
                InboxMessage.incident_id == self.row.id,
                InboxMessage.rule == rules.R_ESCALATE,
                InboxMessage.created_at == at,
            )
            .order_by(InboxMessage.id)
        ).all()
        rows = [
            {
                "recipient": self.person(m.recipient),
                "channel": "站内消息",
                "state": "已读" if m.read_at else "未读",
                "sent_at": self.t(m.created_at),
            }
            for m in messages
        ]
        for key in dict.fromkeys(m.key for m in messages):
            for d in self.s.scalars(
                select(Delivery)
                .where(Delivery.key.startswith(key + "|", autoescape=True))
                .order_by(Delivery.id)
            ):
                who = d.recipient
                name = (
                    self.unit(who.removeprefix("unit:"))
                    if who.startswith("unit:")
                    else self.person(who)
                )
                rows.append(
                    {
                        "recipient": name,
                        "channel": CHANNEL_KINDS.get(d.kind or "", d.kind or "其他渠道"),
                        "state": DELIVERY_STATES.get(d.state, d.state),
                        "sent_at": self.t(d.sent_at),
                    }
                )
        return rows
