"""The plan's rules as data and pure functions: deadlines, anchors and the escalation chain.

Each rule ID matches ../shared/plan/RULES.md. Durations are the plan's own numbers; drills divide
them by their speed-up factor (R-DRILL), nothing else changes them.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from plan.enums import Category, Severity
from plan.roster import Role, Roster
from plan.spec import PlanSpec, Target, shipped

R_ORG = "R-ORG"
R_ACTIVATE = "R-ACTIVATE"
R_RELEASE = "R-RELEASE"
R_CONSULT = "R-CONSULT"
R_ASSIGNED = "R-ASSIGNED"
R_OFFICE = "R-OFFICE"
R_DISCOVER = "R-DISCOVER"
R_REPORT = "R-REPORT"
R_NOTIFY = "R-NOTIFY"
R_WRITTEN = "R-WRITTEN"
R_PROGRESS = "R-PROGRESS"
R_REVIEW = "R-REVIEW"
R_INQUIRY = "R-INQUIRY"
R_HYPE = "R-HYPE"
R_FABRICATION = "R-FABRICATION"
R_SUGGESTION = "R-SUGGESTION"
R_SECRECY = "R-SECRECY"
R_REPLY = "R-REPLY"
R_STANCE = "R-STANCE"
R_TRACK = "R-TRACK"
R_SUMMARY = "R-SUMMARY"
R_ESCALATE = "R-ESCALATE"
R_ACCOUNT = "R-ACCOUNT"
R_COMMEND = "R-COMMEND"
R_DUTY = "R-DUTY"
R_DRILL = "R-DRILL"
R_DEDUP = "R-DEDUP"
R_CLOSE = "R-CLOSE"

# Each rule in plain words, for pages that name a rule (issue 18): the code follows, small.
RULE_NAMES: dict[str, str] = {
    R_ORG: "组织体系",
    R_ACTIVATE: "启动应急预案",
    R_RELEASE: "领导小组审定发布口径",
    R_CONSULT: "及时会商",
    R_ASSIGNED: "上级交办事项",
    R_OFFICE: "办公室确认监测线索",
    R_DISCOVER: "半小时内发现",
    R_REPORT: "发现后1小时内报告",
    R_NOTIFY: "及时通报",
    R_WRITTEN: "口头报告后30分钟内报送书面信息",
    R_PROGRESS: "及时续报进展",
    R_REVIEW: "单位负责人审定回复",
    R_INQUIRY: "询问类当日回复",
    R_HYPE: "恶意传播告知真相并商请查处",
    R_FABRICATION: "澄清事实并商请查处",
    R_SUGGESTION: "采纳建议并回复",
    R_SECRECY: "保密",
    R_REPLY: "按期官方回复",
    R_STANCE: "3日内表态性回复",
    R_TRACK: "动态跟踪",
    R_SUMMARY: "3日内报送书面总结",
    R_ESCALATE: "逾期督办",
    R_ACCOUNT: "问责",
    R_COMMEND: "表彰",
    R_DUTY: "第一责任人",
    R_DRILL: "应急演练",
    R_DEDUP: "重复报告合并",
    R_CLOSE: "结案",
}

LEADING_CODE = re.compile(r"(R-[A-Z]+(?:-[A-Z]+)*) (.+)", re.S)


def code_last(text: str) -> str:
    """A line that leads with its rule's code, with the code moved to its end: readers see the
    plain words first (issue 18). "R-TRACK 跟踪检查：已平息" → "跟踪检查：已平息（R-TRACK）"."""
    found = LEADING_CODE.fullmatch(text)
    return f"{found.group(2)}（{found.group(1)}）" if found else text


# Accountability kinds (R-ACCOUNT)
LATE_REPORT = "迟报"
OVERDUE = "逾期"
LATE_DISCOVERY = "迟发现"

# Which kind a missed deadline of each rule is recorded as.
MISS_KIND: dict[str, str] = {
    R_REPORT: LATE_REPORT,
    R_WRITTEN: LATE_REPORT,
    R_PROGRESS: LATE_REPORT,
    R_SUMMARY: LATE_REPORT,
    R_DISCOVER: LATE_DISCOVERY,
}


def miss_kind(rule: str) -> str:
    return MISS_KIND.get(rule, OVERDUE)


def plan_due(
    anchor: datetime, duration: timedelta, received_at: datetime, speedup: float | None
) -> datetime:
    """The instant a deadline falls due: anchor + duration.

    A drill (R-DRILL) runs the plan's time faster from the moment it was received: plan time
    that had already passed at receipt (an anchor before it) is kept as it was, so a drill that
    was late when reported is late by the same plan time, and everything after receipt is divided
    by the speed-up factor.
    """
    due = anchor + duration
    if not speedup:
        return due
    pivot = max(anchor, received_at)
    return pivot + (due - pivot) / speedup


def report_due(
    discovered_at: datetime,
    received_at: datetime,
    speedup: float | None,
    spec: PlanSpec | None = None,
) -> datetime:
    """R-REPORT's deadline under `spec` (the shipped plan if None)."""
    spec = shipped() if spec is None else spec
    return plan_due(discovered_at, spec.report_within, received_at, speedup)


def end_of_day(at: datetime, tz: str) -> datetime:
    """当日内: the first instant of the next calendar day in the town's zone."""
    zone = ZoneInfo(tz)
    local = at.astimezone(zone)
    midnight = datetime(local.year, local.month, local.day, tzinfo=zone) + timedelta(days=1)
    # Re-resolve through the zone so a DST change on that night still lands on local midnight.
    return datetime(midnight.year, midnight.month, midnight.day, tzinfo=zone)


def same_day_due(
    anchor: datetime, received_at: datetime, speedup: float | None, tz: str
) -> datetime:
    """R-INQUIRY: by the end of the anchor's calendar day (a drill runs the rest of it faster)."""
    return plan_due(anchor, end_of_day(anchor, tz) - anchor, received_at, speedup)


def progress_interval(spec: PlanSpec, severity: Severity) -> timedelta | None:
    """R-PROGRESS applies to major and urgent incidents only."""
    return spec.progress_interval.get(severity)


def needs_release(severity: Severity) -> bool:
    """R-RELEASE: the leading group approves wording and spokesperson for major and urgent."""
    return severity in (Severity.major, Severity.urgent)


def referral_contact(roster: Roster, category: Category) -> tuple[str, str]:
    """R-HYPE goes to 执纪执法部门, R-FABRICATION to 监察执法部门: (rule, person)."""
    if category is Category.fabrication:
        return R_FABRICATION, roster.roles.supervision_contact
    return R_HYPE, roster.roles.discipline_contact


def trusts(roster: Roster, person_id: str | None, reporter_unit: str) -> bool:
    """Whether a submission's stated times and units may attribute deadlines and records: sent by
    a signed-in member of the reporting unit, or by the office keying in a report it received.
    Anything else (anonymous, or a person naming another unit) is a lead for the office (R-OFFICE)."""
    if person_id is None or roster.person(person_id) is None:
        return False
    return roster.belongs_to(person_id, reporter_unit) or Role.office in roster.roles_of(person_id)


def can_view(roster: Roster, person_id: str, units: set[str], people: Collection[str] = ()) -> bool:
    """R-SECRECY: an incident's content is for staff with a role on it: the office, the leading
    group, the publicity department, 镇党政办, the contacts, the units it involves and the
    persons the leading group named to step in (R-ACTIVATE)."""
    if person_id in people and roster.person(person_id) is not None:
        return True
    roles = roster.roles_of(person_id)
    if not roles:
        return False
    standing = {
        Role.office,
        Role.leader,
        Role.deputy,
        Role.member,
        Role.publicity,
        Role.party_office,
        Role.discipline,
        Role.supervision,
    }
    if roles & standing:
        return True
    p = roster.person(person_id)
    return p is not None and p.unit in units


# --- Wording that names a duration: always the incident's plan data, phrased by plan_duration. ---


def plan_duration(delta: timedelta) -> str:
    """A period the plan sets, as its sentences say it: PT12H → 12小时, PT72H → 3日,
    PT7H13M → 7小时13分钟, PT30M → 30分钟. Whole days from two on read as days; anything else in
    hours and minutes (and seconds, should a plan file give them)."""
    days, rest = divmod(delta, timedelta(days=1))
    if days >= 2 and not rest:
        return f"{days}日"
    hours, rest = divmod(delta, timedelta(hours=1))
    mins, rest = divmod(rest, timedelta(minutes=1))
    secs = int(rest.total_seconds())
    parts = [f"{hours}小时"] if hours else []
    if mins:
        parts.append(f"{mins}分钟")
    if secs or not parts:
        parts.append(f"{secs}秒")
    return "".join(parts)


def duration_words(spec: PlanSpec) -> dict[str, str]:
    """Every period of the plan, phrased: for templates, help texts and titles."""
    words = {
        name: plan_duration(getattr(spec, name))
        for name in (
            "discover_within",
            "report_within",
            "written_within",
            "stance_within",
            "summary_within",
            "track_interval",
        )
    }
    for severity, within in spec.reply_within.items():
        words[f"reply_{severity.value}"] = plan_duration(within)
    for severity, every in spec.progress_interval.items():
        words[f"progress_{severity.value}"] = plan_duration(every)
    return words


def reply_title(severity: Severity, spec: PlanSpec) -> str:
    within = plan_duration(spec.reply_within[severity])
    return f"{severity.label}舆情{within}内官方回复（{R_REPLY}）"


def report_title(spec: PlanSpec) -> str:
    return f"发现后{plan_duration(spec.report_within)}内报告（{R_REPORT}）"


def titles(spec: PlanSpec) -> dict[str, str]:
    """The deadlines' titles (R-REPLY and R-REPORT: reply_title, report_title)."""
    w = duration_words(spec)
    return {
        R_DISCOVER: f"发帖后{w['discover_within']}内发现（{R_DISCOVER}）",
        R_WRITTEN: f"口头报告后{w['written_within']}内报送书面信息（{R_WRITTEN}）",
        R_PROGRESS: f"续报处置进展（{R_PROGRESS}）",
        R_STANCE: f"{w['stance_within']}内作出表态性回复（{R_STANCE}）",
        R_TRACK: f"动态跟踪检查（{R_TRACK}）",
        R_SUMMARY: f"平息后{w['summary_within']}内报送书面总结（{R_SUMMARY}）",
        "R-INQUIRY-OPINION": f"发现当日内回复处理意见（{R_INQUIRY}）",
        "R-INQUIRY-RESULT": f"办结当日内回复处理结果（{R_INQUIRY}）",
    }


def severity_explanation(severity: Severity, spec: PlanSpec) -> str:
    """One sentence from the plan per severity, for the forms, with this plan's periods."""
    w = duration_words(spec)
    return {
        Severity.general: f"影响有限的一般性网络舆情：{w['reply_general']}内官方回复（R-REPLY）。",
        Severity.major: f"影响较大的重大网络舆情：{w['reply_major']}内官方回复，"
        "口径和发布人须经领导小组审定，并立即向主要领导汇报。",
        Severity.urgent: f"可能迅速扩散、须立即处置的紧急舆情：{w['reply_urgent']}内回应社会关切，"
        f"可先电话口头报告，{w['written_within']}内补报书面信息。",
    }[severity]


# --- R-ESCALATE: the chain is the plan's data (PlanSpec.escalation), each step a wait and whom. ---


@dataclass(frozen=True)
class EscalationStep:
    step: int
    wait: timedelta  # after the deadline (step 1) or after the previous step
    label: str
    targets: tuple[str, ...]
    of: int  # the chain's length (共N级)


def escalation_chain(
    roster: Roster,
    unit_id: str | None,
    waits: list[timedelta],
    spec: PlanSpec,
) -> list[EscalationStep]:
    """The plan's chain with this incident's people: "unit" is the responsible unit's
    first-responsible person and head (none while no unit is responsible: a step left with no
    one goes to the office). `waits`, when given (the escalation_waits_minutes setting, for
    drills and tests), replace the waits of steps 2 on, the last one repeating."""
    office = roster.members_of(roster.roles.office)
    unit = roster.unit(unit_id) if unit_id else None
    lg = roster.leading_group
    whom: dict[Target, list[str]] = {
        Target.unit: [unit.first_responsible, unit.head] if unit else [],
        Target.office: list(office),
        Target.deputy: [lg.deputy],
        Target.leader: [lg.leader],
    }
    chain = []
    for n, step in enumerate(spec.escalation, start=1):
        wait = step.wait
        if n > 1 and waits:
            wait = waits[min(n - 2, len(waits) - 1)]
        targets = [pid for t in step.to for pid in whom[t]] or list(office)
        chain.append(EscalationStep(n, wait, step.label, _unique(targets), len(spec.escalation)))
    return chain


def notify_recipients(
    roster: Roster, severity: Severity, unit_id: str | None, *, publicity: bool = True
) -> list[str]:
    """R-NOTIFY: the office; for major and urgent the main leader (立即向主要领导汇报) and the
    publicity department (同时向有关部门通报; `publicity=False` for incidents started before it
    was told); the responsible unit (R-DUTY: its first-responsible person always)."""
    ids = list(roster.members_of(roster.roles.office))
    if severity in (Severity.major, Severity.urgent):
        ids.append(roster.leading_group.leader)
        if publicity:
            ids.extend(roster.members_of(roster.roles.publicity))
    if unit_id:
        ids.extend(roster.members_of(unit_id))
    return list(_unique(ids))


def accountable_person(roster: Roster, unit_id: str) -> str | None:
    """一岗双责: the unit's first-responsible person answers for its misses."""
    u = roster.unit(unit_id)
    return u.first_responsible if u else None


def lateness(due_at: datetime, at: datetime) -> timedelta:
    return max(at - due_at, timedelta(0))


def format_duration(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    days, rem = divmod(minutes, 24 * 60)
    hours, mins = divmod(rem, 60)
    parts = []
    if days:
        parts.append(f"{days}天")
    if hours:
        parts.append(f"{hours}小时")
    if mins or not parts:
        parts.append(f"{mins}分钟")
    return "".join(parts)


def _unique(ids: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(ids))
