"""The plan's rules as data and pure functions: deadlines, anchors and the escalation chain.

Each rule ID matches ../shared/plan/RULES.md. Durations are the plan's own numbers; drills divide
them by their speed-up factor (R-DRILL), nothing else changes them.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from plan.enums import Category, Severity
from plan.roster import Role, Roster
from plan.spec import SHIPPED, PlanSpec

PLAN_VERSION = SHIPPED.version

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

RULE_WORDING: dict[str, str] = {
    "R-REPORT": "发现重大舆情后，应立即向领导小组办公室报告，最迟不得超过1小时",
    "R-REPLY": "一般性网络舆情12小时内、重大网络舆情24小时内官方回复，紧急舆情3小时内回应社会关切",
    "R-WRITTEN": "紧急情况下可电话口头报告，并在30分钟内报送书面信息",
    "R-PROGRESS": "应急处置过程中，要及时续报事件处置进展和可能衍生的新情况",
    "R-STANCE": "无法在规定回复期内处理完毕的，应于3日内作出表态性回复",
    "R-INQUIRY": "要在发现当日内回复处理意见并在办结之日内回复处理结果",
    "R-TRACK": "对突发重大舆情及处置后的事态实行动态跟踪",
    "R-SUMMARY": "舆情平稳后，将应对处置工作书面报告三日内报送镇党政办",
    "R-DISCOVER": "半小时内必须发现有关网站、论坛、微博的负面网帖",
}

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
    spec: PlanSpec = SHIPPED,
) -> datetime:
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


def reply_title(severity: Severity) -> str:
    hours = {Severity.general: "12小时", Severity.major: "24小时", Severity.urgent: "3小时"}[
        severity
    ]
    return f"{R_REPLY} {severity.label}舆情{hours}内官方回复"


def report_title() -> str:
    return f"{R_REPORT} 发现后1小时内报告"


TITLES: dict[str, str] = {
    R_DISCOVER: f"{R_DISCOVER} 发帖后半小时内发现",
    R_WRITTEN: f"{R_WRITTEN} 口头报告后30分钟内报送书面信息",
    R_PROGRESS: f"{R_PROGRESS} 续报处置进展",
    R_STANCE: f"{R_STANCE} 3日内作出表态性回复",
    R_TRACK: f"{R_TRACK} 动态跟踪检查",
    R_SUMMARY: f"{R_SUMMARY} 平息后三日内报送书面总结",
    "R-INQUIRY-OPINION": f"{R_INQUIRY} 发现当日内回复处理意见",
    "R-INQUIRY-RESULT": f"{R_INQUIRY} 办结当日内回复处理结果",
}


# --- R-ESCALATE: the chain is data, each step a wait and its targets. ---


@dataclass(frozen=True)
class EscalationStep:
    step: int
    wait: timedelta  # after the deadline (step 1) or after the previous step
    label: str
    targets: tuple[str, ...]


def escalation_chain(
    roster: Roster,
    unit_id: str | None,
    waits: list[timedelta],
) -> list[EscalationStep]:
    """Step 1: the unit's first-responsible person and head, and the office; then the deputy
    leader; then the leader. Without a responsible unit yet, step 1 goes to the office alone."""
    office = roster.members_of(roster.roles.office)
    unit = roster.unit(unit_id) if unit_id else None
    first = ([unit.first_responsible, unit.head] if unit else []) + office
    lg = roster.leading_group
    w2 = waits[0] if waits else timedelta(hours=1)
    w3 = waits[1] if len(waits) > 1 else w2
    return [
        EscalationStep(1, timedelta(0), "责任人、单位负责人及领导小组办公室", _unique(first)),
        EscalationStep(2, w2, "副组长", (lg.deputy,)),
        EscalationStep(3, w3, "组长", (lg.leader,)),
    ]


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
