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
from plan.spec import PlanSpec


def local(at: datetime, tz: str) -> str:
    """An instant as the town reads it: 2026-11-29 14:30 in its zone."""
    return at.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M")


def _head(view: IncidentView) -> str:
    return ("【演练】" if view.drill else "") + f"【{view.severity.label}舆情】{view.title}"


def reported(view: IncidentView, roster: Roster, tz: str, spec: PlanSpec) -> tuple[str, str]:
    reply = next(d for d in reversed(view.deadlines) if d.rule == rules.R_REPLY)
    wording = spec.wording.get(rules.R_REPLY)
    subject = f"{_head(view)}：新报告"
    body = (
        f"{roster.unit_name(view.reporter_unit)}报告舆情：{view.title}\n"
        f"来源：{view.source}\n"
        f"责任单位：{roster.unit_name(view.responsible_unit)}\n"
        f"官方回复期限：{local(reply.due_at, tz)}" + (f"（{wording}）" if wording else "") + "\n"
        "请领导小组办公室及时研判。"
    )
    return subject, body


def assigned(view: IncidentView, roster: Roster, tz: str) -> tuple[str, str]:
    reply = next(d for d in reversed(view.deadlines) if d.rule == rules.R_REPLY)
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


def countersign_requested(
    view: IncidentView, roster: Roster, units: tuple[str, ...] | list[str]
) -> tuple[str, str]:
    subject = f"{_head(view)}：回复稿待会签"
    names = "、".join(roster.unit_name(u) for u in units)
    body = (
        f"{roster.unit_name(view.responsible_unit)}的回复稿已经单位负责人审定，请协办单位（{names}）"
        f"负责人会签（{rules.R_REVIEW} 经各部门负责人审定）；不同意的请说明理由。"
    )
    return subject, body


def countersign_refused(
    view: IncidentView, roster: Roster, units: str, reason: str
) -> tuple[str, str]:
    subject = f"{_head(view)}：回复稿会签被退回"
    body = f"{units}负责人不同意会签，回复稿退回重新起草（{rules.R_REVIEW}）：{reason}"
    return subject, body


def _late(view: IncidentView, d: Deadline, now: datetime) -> str:
    """How late: a drill's in plan time (R-DRILL: real lateness × its speedup; "已逾期0分钟" in
    real time means nothing at 3600×), labelled as such."""
    late = rules.lateness(d.due_at, now)
    if view.drill and view.drill_speedup:
        return rules.format_duration(late * view.drill_speedup) + "（按演练时间）"
    return rules.format_duration(late)


def escalation(
    view: IncidentView,
    roster: Roster,
    tz: str,
    d: Deadline,
    step: rules.EscalationStep,
    now: datetime | None = None,
    *,
    spec: PlanSpec,
) -> tuple[str, str]:
    subject = f"{_head(view)}：{d.title}已逾期（第{step.step}级督办）"
    late = _late(view, d, now) if now else ""
    wording = spec.wording.get(d.rule)
    body = (
        f"{d.title}，期限{local(d.due_at, tz)}，尚未完成"
        + (f"，已逾期{late}" if late else "")
        + "。\n"
        + (f"预案要求：{wording}。\n" if wording else "")
        + f"责任单位：{roster.unit_name(d.unit)}。\n"
        f"督办第{step.step}级（共{step.of}级）：{step.label}（{rules.R_ESCALATE}）。"
    )
    return subject, body


def brief_deadline(deadlines: list[Deadline], rule: str, d: Deadline | None) -> Deadline | None:
    """The deadline a message is about: `d`, else the incident's open one under the message's
    rule, else its open reply deadline (a lead's: its report deadline) when there is one."""
    if d is not None:
        return d
    wanted = [rule, rules.R_REPORT] if rule == rules.R_OFFICE else [rule, rules.R_REPLY]
    for r in wanted:
        found = [x for x in deadlines if x.rule == r and x.open]
        if found:
            return found[-1]
    return None


# SMS (issue 20): each deadline in a word or two, by its key's part before "#". Tencent Cloud SMS
# takes at most 6 characters in a notification template's variable (activities/channels.py,
# SmsSender), so each name here is at most 6; a deadline not listed is "处置期限".
SMS_DEADLINE_NAMES = {
    rules.R_DISCOVER: "发现舆情",
    rules.R_REPORT: "报告",
    rules.R_WRITTEN: "书面报告",
    rules.R_REPLY: "官方回复",
    rules.R_STANCE: "表态回复",
    rules.R_PROGRESS: "续报进展",
    rules.R_TRACK: "动态跟踪",
    rules.R_SUMMARY: "书面总结",
    "R-INQUIRY-OPINION": "处理意见",
    "R-INQUIRY-RESULT": "处理结果",
}


def sms_deadline_name(key: str) -> str:
    """A deadline's name in an SMS, from its key ("R-REPLY#2" → 官方回复); "" for none."""
    if not key:
        return ""
    return SMS_DEADLINE_NAMES.get(key.partition("#")[0], "处置期限")


def brief(
    deadlines: list[Deadline],
    tz: str,
    rule: str,
    d: Deadline | None = None,
    step: rules.EscalationStep | None = None,
    now: datetime | None = None,
) -> list[str]:
    """The short form for chat robots (R-SECRECY: WeCom, DingTalk and Feishu group robots are
    third parties): the rule, the deadline the message is about and when it falls due (late by
    how much, at `now`), and the escalation step. With the subject (what happened, in one line)
    and the link it is all a robot is sent; the body stays behind sign-in.

    The deadline is `brief_deadline`'s."""
    lines = [f"规则：{rule}"]
    d = brief_deadline(deadlines, rule, d)
    if d is not None:
        when = f"期限：{d.title}，{local(d.due_at, tz)}"
        if d.met_at is None and now is not None and now > d.due_at:
            when += f"，已逾期{rules.format_duration(rules.lateness(d.due_at, now))}"
        lines.append(when)
    if step is not None:
        lines.append(f"督办：第{step.step}级（共{step.of}级），{step.label}")
    return lines


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
        if d.cancelled:
            state = "已取消"
        elif d.met_at is not None:
            state = f"已完成 {local(d.met_at, tz)}" + ("（逾期）" if d.overdue else "")
        elif d.overdue:
            state = f"**已逾期**，督办第{d.escalation_step}级"
        elif d.replaced_by:
            state = "已声明延期，仍须完成（不计时）"
        else:
            state = "进行中"
        lines.append(f"| {d.title} | {local(d.due_at, tz)} | {state} |")
    return "\n".join(lines)


def lead(view: IncidentView, roster: Roster, tz: str) -> tuple[str, str]:
    report = next(d for d in view.deadlines if d.rule == rules.R_REPORT)
    subject = f"{_head(view)}：监测线索待确认"
    body = (
        f"监测系统报送线索：{view.title}（来源：{view.source}）。\n"
        f"请领导小组办公室研判确认，须于{local(report.due_at, tz)}前确认上报（{rules.R_OFFICE}、{rules.R_REPORT}）。"
    )
    return subject, body


def activated(view: IncidentView, roster: Roster, units: str) -> tuple[str, str]:
    subject = f"{_head(view)}：领导小组启动应急预案"
    body = f"领导小组决定启动应急预案，{units}介入处置（{rules.R_ACTIVATE}）。请按领导小组部署开展工作。"
    return subject, body


def returned(view: IncidentView, roster: Roster, unit: str | None, reason: str) -> tuple[str, str]:
    subject = f"{_head(view)}：{roster.unit_name(unit)}退回，请重新研判"
    body = f"{roster.unit_name(unit)}认为本事件不属本单位职责，退回办公室：{reason}\n各项期限仍从发现时间起算。"
    return subject, body


def release_requested(view: IncidentView, roster: Roster) -> tuple[str, str]:
    subject = f"{_head(view)}：回复口径待领导小组审定"
    body = (
        f"{roster.unit_name(view.responsible_unit)}的回复稿已经单位负责人审定，"
        f"请领导小组审定发布口径并确定发布人（{rules.R_RELEASE}）。"
    )
    return subject, body


def referral(view: IncidentView, roster: Roster, rule: str, reason: str) -> tuple[str, str]:
    dept = "监察执法部门" if rule == rules.R_FABRICATION else "执纪执法部门"
    subject = f"{_head(view)}：商请{dept}依纪依法查处"
    body = f"事件：{view.title}\n情况：{reason}\n请{dept}依纪依法查处（{rule}）。"
    return subject, body


def severity_raised(view: IncidentView, roster: Roster, tz: str) -> tuple[str, str]:
    reply = next(d for d in reversed(view.deadlines) if d.rule == rules.R_REPLY)
    subject = f"{_head(view)}：升级为{view.severity.label}舆情"
    body = (
        f"领导小组办公室重新研判为{view.severity.label}舆情（{rules.R_NOTIFY}）。\n"
        f"责任单位：{roster.unit_name(view.responsible_unit)}，"
        f"官方回复期限：{local(reply.due_at, tz)}（{rules.R_REPLY}）。"
    )
    return subject, body


def flared(view: IncidentView, roster: Roster, tz: str) -> tuple[str, str]:
    reply = next(d for d in reversed(view.deadlines) if d.rule == rules.R_REPLY)
    subject = f"{_head(view)}：舆情再次升温"
    body = (
        f"动态跟踪发现舆情再次升温（{rules.R_TRACK}），事件回到处置阶段。\n"
        f"新一轮官方回复须于{local(reply.due_at, tz)}前发布（{rules.R_REPLY}）。"
    )
    return subject, body


def summary(
    view: IncidentView, roster: Roster, text: str | None, document: str | None = None
) -> tuple[str, str]:
    """R-SUMMARY's message to 镇党政办: the text, and the document's name when it was given as
    one (issue 19: the file is read on the incident page, never sent in a message)."""
    subject = f"{_head(view)}：处置工作书面总结"
    body = f"{roster.unit_name(view.responsible_unit)}报送书面总结（{rules.R_SUMMARY}）："
    if document is not None:
        body += f"\n以文档报送：{document}（请在事件页面的附件中查阅）"
    if text is not None:
        body += f"\n{text}"
    return subject, body


def warning(view: IncidentView, roster: Roster, tz: str, d: Deadline) -> tuple[str, str]:
    subject = f"{_head(view)}：临期提醒 {d.title}"
    body = (
        f"{d.title}，期限{local(d.due_at, tz)}，请按时完成，逾期将升级督办（{rules.R_ESCALATE}）。"
    )
    return subject, body
