"""The plan's rules as data and pure functions: deadlines, anchors and the escalation chain.

Each rule ID matches ../shared/plan/RULES.md. Durations are the plan's own numbers; drills divide
them by their speed-up factor (R-DRILL), nothing else changes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from plan.models import Severity
from plan.roster import Roster

PLAN_VERSION = "2024-xx-town-v1"

R_REPORT = "R-REPORT"
R_NOTIFY = "R-NOTIFY"
R_REVIEW = "R-REVIEW"
R_REPLY = "R-REPLY"
R_ESCALATE = "R-ESCALATE"
R_ACCOUNT = "R-ACCOUNT"
R_ORG = "R-ORG"

# R-REPORT: 发现重大舆情后 … 立即报告，最迟不得超过1小时
REPORT_WITHIN = timedelta(hours=1)

# R-REPLY: 一般性网络舆情12小时内官方回复; 重大网络舆情24小时内; 紧急舆情于3小时内
REPLY_WITHIN: dict[Severity, timedelta] = {
    Severity.general: timedelta(hours=12),
    Severity.major: timedelta(hours=24),
    Severity.urgent: timedelta(hours=3),
}

RULE_WORDING: dict[str, str] = {
    R_REPORT: "发现舆情后立即报告，最迟不得超过1小时",
    R_REPLY: "一般性网络舆情12小时内、重大网络舆情24小时内官方回复，紧急舆情3小时内回应社会关切",
}

# Accountability kinds (R-ACCOUNT)
LATE_REPORT = "迟报"
OVERDUE = "逾期"


def scaled(duration: timedelta, speedup: float | None) -> timedelta:
    """R-DRILL: a drill runs the plan's durations divided by its speed-up factor."""
    return duration / speedup if speedup else duration


def plan_due(
    anchor: datetime, duration: timedelta, received_at: datetime, speedup: float | None
) -> datetime:
    """The instant a deadline falls due: anchor + duration.

    A drill (R-DRILL) keeps the plan time that had passed when it was received and runs the rest
    faster: the remaining time from received_at is divided by the speed-up factor, so a drill that
    was already late when reported is late by the same plan time, and the future passes quickly.
    """
    due = anchor + duration
    if not speedup:
        return due
    return received_at + (due - received_at) / speedup


def report_due(discovered_at: datetime, received_at: datetime, speedup: float | None) -> datetime:
    return plan_due(discovered_at, REPORT_WITHIN, received_at, speedup)


def reply_due(
    discovered_at: datetime, severity: Severity, received_at: datetime, speedup: float | None
) -> datetime:
    return plan_due(discovered_at, REPLY_WITHIN[severity], received_at, speedup)


def reply_title(severity: Severity) -> str:
    hours = {Severity.general: "12小时", Severity.major: "24小时", Severity.urgent: "3小时"}[
        severity
    ]
    return f"{R_REPLY} {severity.label}舆情{hours}内官方回复"


def report_title() -> str:
    return f"{R_REPORT} 发现后1小时内报告"


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


def notify_recipients(roster: Roster, severity: Severity, unit_id: str | None) -> list[str]:
    """R-NOTIFY: the office; the main leader for major and urgent; the responsible unit (R-DUTY:
    its first-responsible person always)."""
    ids = list(roster.members_of(roster.roles.office))
    if severity in (Severity.major, Severity.urgent):
        ids.append(roster.leading_group.leader)
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
