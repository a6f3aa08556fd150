"""Digests for the leading group and the office, in Chinese: the daily one (open incidents,
deadlines due in the next 24 h, yesterday's misses) and the weekly accountability summary.

Pure: the facts are plain data the `build_digest` activity reads from the store; the functions here
decide the period, the notification key, the recipients and every word. Safe in the workflow
sandbox (no I/O).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field

from plan import rules
from plan.enums import Phase, Severity
from plan.models import Notification, Recipient
from plan.roster import Roster

DigestKind = Literal["daily", "weekly"]

DIGEST_INCIDENT_ID = "digest"  # the notification's incident id: a digest belongs to no incident
RULE_DAILY = rules.R_ORG  # 领导小组办公室 does the daily work and keeps the leading group informed
RULE_WEEKLY = rules.R_ACCOUNT  # per-unit on-time rates over a period are reported


# ------------------------------------------------------------------ inputs


class DigestInput(BaseModel):
    """DigestWorkflow's input. The roster is a snapshot, a file path the activity reads, or (both
    left out) the worker's own roster file. `day` fixes the digest's day (a re-run for a past
    day); by default it is the day the workflow started, in `timezone`."""

    kind: DigestKind
    timezone: str = "Asia/Shanghai"
    roster: Roster | None = None
    roster_file: str | None = None
    public_url: str = "http://localhost:8000"
    day: date | None = None
    delivery_give_up_minutes: float = 360.0


class DigestRequest(BaseModel):
    """What the `build_digest` activity is asked for: the kind, the digest's instant and day (both
    decided by the workflow) and where the roster comes from."""

    kind: DigestKind
    at: datetime
    day: date
    timezone: str
    roster: Roster | None = None
    roster_file: str | None = None
    public_url: str = "http://localhost:8000"


class DigestNote(Notification):
    """The digest as a notification, plus the office's people (told if a channel fails)."""

    office: list[str] = Field(default_factory=list)

    def notification(self) -> Notification:
        return Notification.model_validate(self.model_dump(exclude={"office"}))


class DigestOutcome(BaseModel):
    key: str
    recipients: int
    sent: int
    failed: int


# ------------------------------------------------------------------ facts (plain data)


class OpenIncident(BaseModel):
    id: str
    title: str
    severity: str
    phase: str
    responsible_unit: str | None = None
    next_due_at: datetime | None = None
    overdue: bool = False


class DueDeadline(BaseModel):
    incident_id: str
    incident_title: str
    title: str  # the deadline's title, with its rule ID
    unit: str | None = None
    due_at: datetime


class Miss(BaseModel):
    """An accountability record (R-ACCOUNT)."""

    incident_id: str
    incident_title: str
    rule: str
    kind: str  # 迟报 / 逾期 / 迟发现 / 谎报 / 瞒报 / 漏报
    unit: str
    due_at: datetime
    met_at: datetime | None = None
    recorded_at: datetime
    reason: str | None = None


class DailyFacts(BaseModel):
    day: date
    at: datetime  # the digest's instant: "the next 24 h" count from here
    open_incidents: list[OpenIncident] = Field(default_factory=list)
    due_soon: list[DueDeadline] = Field(default_factory=list)
    misses: list[Miss] = Field(default_factory=list)  # recorded yesterday, drills left out


class UnitFigures(BaseModel):
    """One row of store.reporting.accountability_report."""

    unit: str
    on_time: int = 0
    late: int = 0
    missed: int = 0
    pending: int = 0
    on_time_rate: float | None = None
    records: dict[str, int] = Field(default_factory=dict)
    commendations: list[dict[str, object]] = Field(default_factory=list)


class WeeklyFacts(BaseModel):
    start: date  # first day of the period
    end: date  # last day of the period (inclusive)
    units: list[UnitFigures] = Field(default_factory=list)


# ------------------------------------------------------------------ periods and keys


def local_day(at: datetime, tz: str) -> date:
    """The town's calendar day of an instant."""
    return at.astimezone(ZoneInfo(tz)).date()


def day_start(day: date, tz: str) -> datetime:
    """Local midnight at the start of `day`, as an aware instant."""
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(tz))


def yesterday_window(day: date, tz: str) -> tuple[datetime, datetime]:
    """[yesterday 00:00, today 00:00) in the town's zone."""
    return day_start(day - timedelta(days=1), tz), day_start(day, tz)


def week_window(day: date, tz: str) -> tuple[datetime, datetime]:
    """The last 7 days before `day`: [day - 7 00:00, day 00:00) in the town's zone."""
    return day_start(day - timedelta(days=7), tz), day_start(day, tz)


def digest_key(kind: DigestKind, day: date) -> str:
    """Unique per digest day (daily) or ISO week (weekly): a re-run the same day or week writes
    the same inbox rows and outbox keys, so nobody is told twice."""
    if kind == "daily":
        return f"digest:daily:{day.isoformat()}"
    year, week, _ = day.isocalendar()
    return f"digest:weekly:{year}-W{week:02d}"


def digest_recipients(roster: Roster) -> list[str]:
    """The leading group (leader, deputy, members), then the office's people."""
    lg = roster.leading_group
    ids = [lg.leader, lg.deputy, *lg.members, *roster.members_of(roster.roles.office)]
    return list(dict.fromkeys(ids))


def recipients_of(roster: Roster) -> list[Recipient]:
    """Recipients with their channels (by reference: the digest's result is in its workflow's
    history); the office's group channel too, if it has one."""
    roster = roster.public()
    out = []
    for pid in digest_recipients(roster):
        p = roster.person(pid)
        if p is not None:
            out.append(Recipient(person_id=p.id, name=p.name, channels=list(p.channels)))
    office = roster.unit(roster.roles.office)
    if office is not None and office.channels:
        out.append(
            Recipient(
                person_id=f"unit:{office.id}", name=office.name, channels=list(office.channels)
            )
        )
    return out


# ------------------------------------------------------------------ texts


def _local(at: datetime, tz: str) -> str:
    return at.astimezone(ZoneInfo(tz)).strftime("%m-%d %H:%M")


def _severity(value: str) -> str:
    try:
        return Severity(value).label
    except ValueError:
        return value


def _phase(value: str) -> str:
    try:
        return Phase(value).label
    except ValueError:
        return value


def _day(day: date) -> str:
    return f"{day.year}年{day.month}月{day.day}日"


def compose_daily(facts: DailyFacts, roster: Roster, tz: str) -> tuple[str, str]:
    """The daily digest: subject and body."""
    open_ = sorted(
        facts.open_incidents,
        key=lambda i: (not i.overdue, i.next_due_at is None, i.next_due_at or facts.at, i.id),
    )
    due = sorted(facts.due_soon, key=lambda d: (d.due_at, d.incident_id))
    misses = sorted(facts.misses, key=lambda m: (m.recorded_at, m.incident_id))
    overdue = sum(1 for i in open_ if i.overdue)
    subject = (
        f"【每日舆情简报】{_day(facts.day)}：在办{len(open_)}件"
        + (f"（逾期{overdue}件）" if overdue else "")
        + f"，24小时内到期{len(due)}项，昨日问责记录{len(misses)}条"
    )
    lines = [f"{roster.town}舆情应急处置每日简报（{_day(facts.day)}，不含演练）", ""]

    lines.append(f"一、在办舆情（{len(open_)}件）")
    if not open_:
        lines.append("  无")
    for n, i in enumerate(open_, 1):
        nxt = f"，下一期限{_local(i.next_due_at, tz)}" if i.next_due_at else ""
        flag = "【已逾期】" if i.overdue else ""
        lines.append(
            f"  {n}. {flag}{i.title}（{i.id}，{_severity(i.severity)}，{_phase(i.phase)}，"
            f"责任单位：{roster.unit_name(i.responsible_unit)}{nxt}）"
        )

    lines += ["", f"二、24小时内到期的期限（{len(due)}项）"]
    if not due:
        lines.append("  无")
    for n, d in enumerate(due, 1):
        left = rules.format_duration(max(d.due_at - facts.at, timedelta(0)))
        lines.append(
            f"  {n}. {_local(d.due_at, tz)}前（还剩{left}）{d.title}："
            f"{d.incident_title}（{d.incident_id}，责任单位：{roster.unit_name(d.unit)}）"
        )

    lines += ["", f"三、昨日问责记录（{len(misses)}条，{rules.R_ACCOUNT}）"]
    if not misses:
        lines.append("  无")
    for n, m in enumerate(misses, 1):
        late = (
            f"，晚{rules.format_duration(m.met_at - m.due_at)}"
            if m.met_at and m.met_at > m.due_at
            else ""
        )
        reason = f"，{m.reason}" if m.reason else ""
        lines.append(
            f"  {n}. {roster.unit_name(m.unit)} {m.kind}（{m.rule}，期限{_local(m.due_at, tz)}"
            f"{late}{reason}）：{m.incident_title}（{m.incident_id}）"
        )
    return subject, "\n".join(lines)


def compose_weekly(facts: WeeklyFacts, roster: Roster) -> tuple[str, str]:
    """The weekly accountability summary (R-ACCOUNT, R-COMMEND): subject and body."""
    period = f"{_day(facts.start)}至{_day(facts.end)}"
    units = sorted(facts.units, key=lambda u: u.unit)
    counted = [u.on_time + u.late + u.missed for u in units]
    total = sum(counted)
    on_time = sum(u.on_time for u in units)
    records = sum(sum(u.records.values()) for u in units)
    rate = f"{on_time / total * 100:.1f}%" if total else "-"
    subject = f"【每周问责汇总】{period}：按期率{rate}，问责记录{records}条"
    lines = [
        f"{roster.town}舆情应急处置每周问责汇总（{period}，不含演练）",
        f"全镇：到期{total}项，按期完成{on_time}项，按期率{rate}；问责记录{records}条。",
        "",
        "各单位：",
    ]
    if not units:
        lines.append("  该期间无记录")
    for u in units:
        unit_rate = "-" if u.on_time_rate is None else f"{u.on_time_rate * 100:.1f}%"
        recs = "、".join(f"{k}{v}次" for k, v in sorted(u.records.items())) or "无"
        lines.append(
            f"  {roster.unit_name(u.unit)}：按期{u.on_time}，逾期完成{u.late}，未完成{u.missed}，"
            f"进行中{u.pending}，按期率{unit_rate}；问责记录：{recs}；表彰{len(u.commendations)}次"
        )
    return subject, "\n".join(lines)


# ------------------------------------------------------------------ the short form for chat robots

BRIEF_TITLE = 30  # characters of an incident's title in a robot's line


def _short(title: str) -> str:
    title = " ".join(title.split())
    return title if len(title) <= BRIEF_TITLE else title[:BRIEF_TITLE] + "…"


def brief_daily(facts: DailyFacts, roster: Roster, tz: str) -> list[str]:
    """The daily digest for chat robots (R-SECRECY; the subject gives the counts): one line per
    open incident (its title clipped, its next deadline) and one per accountability record
    (without its reason). However many there are, each goes: the robots send as many messages
    as the lines need (activities/channels.py)."""
    open_ = sorted(
        facts.open_incidents,
        key=lambda i: (not i.overdue, i.next_due_at is None, i.next_due_at or facts.at, i.id),
    )
    misses = sorted(facts.misses, key=lambda m: (m.recorded_at, m.incident_id))
    lines = []
    for n, i in enumerate(open_, 1):
        nxt = f"，下一期限{_local(i.next_due_at, tz)}" if i.next_due_at else ""
        flag = "【已逾期】" if i.overdue else ""
        lines.append(
            f"在办{n}. {flag}{_short(i.title)}（{i.id}，{_severity(i.severity)}，"
            f"{roster.unit_name(i.responsible_unit)}{nxt}）"
        )
    for n, m in enumerate(misses, 1):
        lines.append(
            f"问责{n}. {roster.unit_name(m.unit)} {m.kind}（{m.rule}，期限{_local(m.due_at, tz)}）："
            f"{_short(m.incident_title)}（{m.incident_id}）"
        )
    return lines


def brief_weekly(facts: WeeklyFacts, roster: Roster) -> list[str]:
    """The weekly summary for chat robots: the figures of each unit, one line each."""
    lines = []
    for u in sorted(facts.units, key=lambda u: u.unit):
        unit_rate = "-" if u.on_time_rate is None else f"{u.on_time_rate * 100:.1f}%"
        records = sum(u.records.values())
        lines.append(
            f"{roster.unit_name(u.unit)}：按期{u.on_time}，逾期完成{u.late}，未完成{u.missed}，"
            f"按期率{unit_rate}，问责记录{records}条"
        )
    return lines


def digest_note(
    kind: DigestKind,
    day: date,
    at: datetime,
    subject: str,
    body: str,
    roster: Roster,
    public_url: str,
    brief: list[str] | None = None,
) -> DigestNote:
    """The digest as a notification to the leading group and the office; `brief`, its short form
    for chat robots."""
    base = public_url.rstrip("/")
    return DigestNote(
        key=digest_key(kind, day),
        incident_id=DIGEST_INCIDENT_ID,
        rule=RULE_DAILY if kind == "daily" else RULE_WEEKLY,
        recipients=recipients_of(roster),
        subject=subject,
        body=body,
        link=f"{base}/incidents",
        drill=False,
        sent_at=at,
        office=roster.members_of(roster.roles.office),
        brief=list(brief or []),
    )
