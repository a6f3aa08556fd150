"""The 通联测试 (issue 20, item 5): a scheduled test that every leading-group member and unit head
is reached on each of their own channels, and signs for it.

ReachTestWorkflow (workflows/reach_test.py) runs it monthly (a Temporal Schedule) or on demand. The
`prepare_reach_test` activity reads the worker's roster and builds the message here: one notification
to the people `tested_people` names, sent through the outbox like any other (one delivery per person
and channel, keyed by the run), so a channel that fails shows as failed, channel by channel. Each
person confirms from their inbox (确认收到, signed in). `unreachable` reads the runs' rows and says who
is not reached now, why, and since when (the first run of the unbroken streak of failing runs).

Reach checks are their own rows (store/reach_checks.py): they never count toward accountability
figures (R-ACCOUNT reads the accountability table only), and the message carries no incident
content. Pure: safe in the workflow sandbox (no I/O, no clock: `now` is always passed in).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field

from plan import rules
from plan.models import Notification, Recipient
from plan.outbox import REACH_TEST_ID, deliveries_for
from plan.roster import CHANNEL_KINDS, Roster

RULE = rules.R_ORG  # the roster's people and their channels (R-ORG)
SUBJECT = "【通联测试】请确认收到"
# How long a person has to confirm before the latest run counts them unreached (an older run
# unconfirmed counts at once: the next run came first).
CONFIRM_WITHIN = timedelta(days=3)

# The states of a check: the outbox's (pending, sent, failed, given_up), and a person whom no
# channel of their own outside the inbox reaches (plan/reach.py `reachable`).
INBOX_ONLY = "inbox_only"
FAILED_STATES = frozenset({"failed", "given_up"})
NO_CHANNEL = "名册中没有站外通知渠道（只有站内消息）"
STATE_LABELS = {
    "pending": "发送中",
    "sent": "已送达",
    "failed": "被拒收",
    "given_up": "多次重试后放弃",
    INBOX_ONLY: "仅站内消息",
}


# ------------------------------------------------------------------ the workflow's data


class ReachTestInput(BaseModel):
    """ReachTestWorkflow's input: no person, no channel, no secret. The worker's own roster file
    is read when the test is built, so roster edits take effect."""

    timezone: str = "Asia/Shanghai"
    public_url: str = "http://localhost:8000"
    delivery_give_up_minutes: float = 360.0
    by: str = "每月定时任务"


class ReachTestRequest(BaseModel):
    """What `prepare_reach_test` is asked for: the run (its workflow id) and its instant."""

    run_id: str
    at: datetime
    timezone: str
    public_url: str


class ReachTestNote(Notification):
    """The test's message, plus the office's people (told if a channel fails)."""

    office: list[str] = Field(default_factory=list)

    def notification(self) -> Notification:
        return Notification.model_validate(self.model_dump(exclude={"office"}))


class ReachTestSettle(BaseModel):
    """`settle_reach_test`: copy each delivery's outcome from the outbox to the run's checks."""

    run_id: str


class ReachTestOutcome(BaseModel):
    run_id: str
    people: int = 0
    sent: int = 0
    failed: int = 0
    pending: int = 0
    inbox_only: int = 0


# ------------------------------------------------------------------ who, and the message


def tested_people(roster: Roster) -> list[str]:
    """The leading group (组长, 副组长, members), its office's people and every unit's head, in
    that order, each once."""
    lg = roster.leading_group
    ids = [
        lg.leader,
        lg.deputy,
        *lg.members,
        *roster.members_of(roster.roles.office),
        *(u.head for u in roster.units),
    ]
    return [p for p in dict.fromkeys(ids) if roster.person(p) is not None]


def standing(roster: Roster, person_id: str) -> str:
    """Why a person is tested, in words (the dashboard's 身份)."""
    lg = roster.leading_group
    parts = []
    if person_id == lg.leader:
        parts.append("组长")
    if person_id == lg.deputy:
        parts.append("副组长")
    if person_id in lg.members:
        parts.append("领导小组成员")
    person = roster.person(person_id)
    if person is not None and person.unit == roster.roles.office:
        parts.append("领导小组办公室")
    parts += [f"{u.name}负责人" for u in roster.units if u.head == person_id]
    return "、".join(parts)


def reach_test_key(run_id: str) -> str:
    """The notification key of a run: with the person and the channel, each delivery's key."""
    return f"{REACH_TEST_ID}:{run_id}"


def run_of_key(key: str) -> str | None:
    """The run a 通联测试 message's key names (None for any other message)."""
    prefix = f"{REACH_TEST_ID}:"
    if not key.startswith(prefix) or "|" in key:  # "…|failed": the office told of a failure
        return None
    return key.removeprefix(prefix)


def reach_test_note(
    roster: Roster, run_id: str, at: datetime, timezone: str, public_url: str
) -> ReachTestNote:
    """The message: to each tested person, on each of their channels (by reference), saying it
    is a 通联测试 and asking them to sign in and confirm; nothing about any incident."""
    public = roster.public()
    recipients = []
    for pid in tested_people(public):
        person = public.person(pid)
        assert person is not None
        recipients.append(
            Recipient(person_id=pid, name=person.name, channels=list(person.channels))
        )
    stamp = at.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M")
    body = (
        f"这是{roster.town}舆情应急处置系统的通联测试（{stamp}发出），用于确认名册中登记的"
        "每个通知渠道都能联系到您。本消息与任何舆情事件无关，无需处置。\n"
        "请登录系统，在收件箱中点击本条消息的“确认收到”。每个渠道各发一条，确认一次即可。"
        f"\n{CONFIRM_WITHIN.days}天内未确认的，领导小组看板将显示为联系不上。"
        "通联测试不计入问责统计。"
    )
    return ReachTestNote(
        key=reach_test_key(run_id),
        incident_id=REACH_TEST_ID,
        rule=RULE,
        recipients=recipients,
        subject=SUBJECT,
        body=body,
        link=f"{public_url.rstrip('/')}/inbox",
        drill=False,
        sent_at=at,
        brief=["通联测试，与任何舆情事件无关。", "请登录系统，在收件箱中点击“确认收到”。"],
        deadline="通联测试",
        office=roster.members_of(roster.roles.office),
    )


@dataclass(frozen=True)
class PlannedCheck:
    """One row of a run before it is sent: a person and one channel (or the inbox alone)."""

    person: str
    kind: str
    channel: str  # the channel's target ("email:email"), or "inbox"
    delivery_key: str | None
    state: str


def planned_checks(note: Notification) -> list[PlannedCheck]:
    """A run's rows: one per external delivery (pending), and one `inbox_only` row for a person
    with no channel of their own outside the inbox."""
    out: list[PlannedCheck] = []
    deliveries = deliveries_for(note)
    for r in note.recipients:
        mine = [d for d in deliveries if d.recipient.person_id == r.person_id]
        out += [PlannedCheck(r.person_id, d.channel.kind, d.target, d.key, "pending") for d in mine]
        if not mine:
            out.append(PlannedCheck(r.person_id, "inbox", "inbox", None, INBOX_ONLY))
    return out


# ------------------------------------------------------------------ who is unreachable


@dataclass(frozen=True)
class Check:
    """A stored row of a run (store/reach_checks.py), as the dashboard reads it."""

    run_id: str
    started_at: datetime
    person: str
    kind: str
    channel: str
    state: str
    error: str | None
    confirmed_at: datetime | None


@dataclass(frozen=True)
class Unreachable:
    person: str
    name: str
    standing: str
    reasons: tuple[str, ...]
    since: datetime | None  # the first failing run of the current streak; None: never tested


@dataclass(frozen=True)
class LatestRun:
    run_id: str
    started_at: datetime
    people: int
    confirmed: int


def _reasons(
    checks: Sequence[Check], started_at: datetime, latest: bool, now: datetime
) -> list[str]:
    """Why a person was not reached in one run (empty: reached, or not known yet)."""
    reasons = []
    for c in checks:
        if c.state == INBOX_ONLY:
            reasons.append(NO_CHANNEL)
        elif c.state in FAILED_STATES:
            what = f"{CHANNEL_KINDS.get(c.kind, c.kind)}（{c.channel}）{STATE_LABELS[c.state]}"
            reasons.append(f"{what}：{c.error}" if c.error else what)
    confirmed = any(c.confirmed_at is not None for c in checks)
    if not confirmed and (not latest or now - started_at >= CONFIRM_WITHIN):
        reasons.append(f"{CONFIRM_WITHIN.days}天内未确认收到" if latest else "未确认收到")
    return reasons


def runs_of(checks: Sequence[Check]) -> list[tuple[str, datetime, dict[str, list[Check]]]]:
    """The runs, newest first: (run id, started at, each person's rows)."""
    runs: dict[str, tuple[datetime, dict[str, list[Check]]]] = {}
    for c in checks:
        runs.setdefault(c.run_id, (c.started_at, {}))[1].setdefault(c.person, []).append(c)
    ordered = sorted(runs.items(), key=lambda item: (item[1][0], item[0]), reverse=True)
    return [(run_id, started, people) for run_id, (started, people) in ordered]


def latest_run(checks: Sequence[Check]) -> LatestRun | None:
    runs = runs_of(checks)
    if not runs:
        return None
    run_id, started, people = runs[0]
    confirmed = sum(1 for rows in people.values() if any(c.confirmed_at for c in rows))
    return LatestRun(run_id, started, len(people), confirmed)


def unreachable(checks: Sequence[Check], roster: Roster, now: datetime) -> list[Unreachable]:
    """Who of the people tested the roster names now is not reached: in the latest run that
    included them, a channel failed, they have no channel outside the inbox, or they did not
    confirm (within CONFIRM_WITHIN, or before the next run); and since when. A person no run has
    tested yet is listed only when the roster gives them no channel outside the inbox."""
    runs = runs_of(checks)
    out = []
    for pid in tested_people(roster):
        mine = [(started, people[pid]) for _, started, people in runs if pid in people]
        since: datetime | None = None
        reasons: list[str] = []
        if mine:
            newest = mine[0][0] == runs[0][1]
            reasons = _reasons(mine[0][1], mine[0][0], newest, now)
            if not reasons:
                continue
            since = mine[0][0]
            for started, rows in mine[1:]:
                if not _reasons(rows, started, False, now):
                    break
                since = started
        else:
            person = roster.person(pid)
            if person is not None and any(c.kind != "inbox" for c in person.channels):
                continue
            reasons = [NO_CHANNEL]
        out.append(
            Unreachable(pid, roster.person_name(pid), standing(roster, pid), tuple(reasons), since)
        )
    return out
