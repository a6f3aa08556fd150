"""What people read: notification texts and the workflow's current-details ledger, in Chinese.

Pure functions of the incident view and the roster, so the workflow decides every word and the
history shows exactly what was sent.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from plan import rules
from plan.models import Deadline, IncidentView
from plan.roster import Roster


def local(at: datetime, tz: str) -> str:
    """An instant as the town reads it: 2026-11-29 14:30 in its zone."""
    return at.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M")


def _head(view: IncidentView) -> str:
    return ("【演练】" if view.drill else "") + f"【{view.severity.label}舆情】{view.title}"


def reported(view: IncidentView, roster: Roster, tz: str) -> tuple[str, str]:
    reply = next(d for d in view.deadlines if d.rule == rules.R_REPLY)
    subject = f"{_head(view)}：新报告"
    body = (
        f"{roster.unit_name(view.reporter_unit)}报告舆情：{view.title}\n"
        f"来源：{view.source}\n"
        f"责任单位：{roster.unit_name(view.responsible_unit)}\n"
        f"官方回复期限：{local(reply.due_at, tz)}（{rules.RULE_WORDING[rules.R_REPLY]}）\n"
        "请领导小组办公室及时研判。"
    )
    return subject, body


def assigned(view: IncidentView, roster: Roster, tz: str) -> tuple[str, str]:
    reply = next(d for d in view.deadlines if d.rule == rules.R_REPLY)
    category = view.category.label if view.category else "未定"
    subject = f"{_head(view)}：已交{roster.unit_name(view.responsible_unit)}处置"
    body = (
        f"领导小组办公室研判：{view.severity.label}舆情，类别：{category}。\n"
        f"责任单位：{roster.unit_name(view.responsible_unit)}，"
        f"须于{local(reply.due_at, tz)}前发布经单位负责人审定的官方回复（{rules.R_REPLY}）。"
    )
    return subject, body


def review_requested(view: IncidentView, roster: Roster) -> tuple[str, str]:
    subject = f"{_head(view)}：回复稿待审定"
    body = f"{roster.unit_name(view.responsible_unit)}已起草官方回复，请单位负责人审定（{rules.R_REVIEW}）。"
    return subject, body


def escalation(
    view: IncidentView, roster: Roster, tz: str, d: Deadline, step: rules.EscalationStep
) -> tuple[str, str]:
    subject = f"{_head(view)}：{d.title}已逾期（第{step.step}级督办）"
    body = (
        f"{d.title}，期限{local(d.due_at, tz)}，尚未完成。\n"
        f"责任单位：{roster.unit_name(d.unit)}。\n"
        f"{rules.R_ESCALATE} 第{step.step}级：{step.label}。"
    )
    return subject, body


def ledger(view: IncidentView, roster: Roster, tz: str) -> str:
    """The Temporal UI's current details: phase and who owes what by when, in Markdown."""
    lines = [
        f"**阶段**：{view.phase.label}　**等级**：{view.severity.label}"
        f"　**责任单位**：{roster.unit_name(view.responsible_unit)}"
        + ("　**演练**" if view.drill else ""),
        "",
        "| 规则 | 期限 | 状态 |",
        "|---|---|---|",
    ]
    for d in view.deadlines:
        if d.met_at is not None:
            state = f"已完成 {local(d.met_at, tz)}" + ("（逾期）" if d.overdue else "")
        elif d.overdue:
            state = f"**已逾期**，督办第{d.escalation_step}级"
        else:
            state = "进行中"
        lines.append(f"| {d.title} | {local(d.due_at, tz)} | {state} |")
    return "\n".join(lines)
