"""The plan's pure rules: deadlines, drills, the escalation chain, recipients and the texts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from plan import messages, rules
from plan.models import (
    AccountabilityRecord,
    Deadline,
    IncidentView,
    Phase,
    Severity,
)
from plan.roster import Roster, parse_roster
from plan.spec import shipped
from tests.conftest import EXAMPLE_ROSTER

DISCOVERED = datetime(2026, 11, 29, 0, 30, tzinfo=UTC)
RECEIVED = DISCOVERED + timedelta(minutes=10)
OFFICE = ["liu.yang", "zhou.ting", "ma.chao"]  # 领导小组办公室 (yqb) in the example roster
LEADER = "wang.jianguo"
DEPUTY = "li.xiaomei"


# --- R-REPLY / R-REPORT ---


@pytest.mark.parametrize(
    ("severity", "hours"),
    [(Severity.general, 12), (Severity.major, 24), (Severity.urgent, 3)],
)
def test_reply_within_by_severity(severity: Severity, hours: int) -> None:
    """R-REPLY: 一般 12 h, 重大 24 h, 紧急 3 h in the shipped plan file, and in the title."""
    assert shipped().reply_within[severity] == timedelta(hours=hours)
    assert f"{hours}小时" in rules.reply_title(severity, shipped())
    # The plain words first, the code after them (issue 18).
    assert rules.reply_title(severity, shipped()).endswith(f"（{rules.R_REPLY}）")
    assert severity.label in rules.reply_title(severity, shipped())


def test_report_due_is_one_hour() -> None:
    """R-REPORT: 发现后立即报告，最迟不得超过1小时."""
    assert rules.report_due(DISCOVERED, RECEIVED, None) == DISCOVERED + timedelta(hours=1)
    assert rules.report_title(shipped()).endswith(f"（{rules.R_REPORT}）")
    assert "1小时" in rules.report_title(shipped())


# --- R-DRILL ---


def test_drill_divides_the_remaining_time() -> None:
    """R-DRILL: the time left from received_at runs speedup times faster."""
    speedup = 60.0
    due = rules.plan_due(DISCOVERED, shipped().reply_within[Severity.general], RECEIVED, speedup)
    remaining = DISCOVERED + timedelta(hours=12) - RECEIVED  # 11 h 50 min of plan time
    assert due == RECEIVED + remaining / speedup
    assert due == RECEIVED + timedelta(minutes=11, seconds=50)
    report = rules.report_due(DISCOVERED, RECEIVED, 3600)
    assert report == RECEIVED + timedelta(seconds=50 * 60 / 3600)


def test_drill_already_late_stays_late_by_the_same_plan_time() -> None:
    """R-DRILL: a drill reported 2 h after discovery has missed R-REPORT by 1 h of plan time."""
    speedup = 3600.0
    received = DISCOVERED + timedelta(hours=2)
    plain = rules.report_due(DISCOVERED, received, None)
    drill = rules.report_due(DISCOVERED, received, speedup)
    assert plain == received - timedelta(hours=1)
    assert drill < received  # still late
    assert drill == received - timedelta(seconds=1)
    assert (received - drill) * speedup == received - plain
    assert rules.lateness(drill, received) * speedup == timedelta(hours=1)


def test_drill_due_exactly_at_receipt_stays_there() -> None:
    """R-DRILL: a deadline falling due when the drill is received is due at once."""
    received = DISCOVERED + timedelta(hours=1)
    assert rules.report_due(DISCOVERED, received, 1000) == received


@pytest.mark.parametrize("speedup", [None, 0.0])
def test_no_speedup_is_plan_time(speedup: float | None) -> None:
    """R-DRILL: without a factor the plan's durations are used as they are."""
    assert rules.plan_due(DISCOVERED, timedelta(hours=3), RECEIVED, speedup) == (
        DISCOVERED + timedelta(hours=3)
    )


# --- R-ESCALATE ---


def test_escalation_chain_with_a_unit(roster: Roster) -> None:
    """R-ESCALATE: step 1 the unit's first-responsible person and head and the office (R-DUTY);
    step 2 the deputy leader; step 3 the leader, each after its configured wait."""
    waits = [timedelta(minutes=30), timedelta(minutes=45)]
    chain = rules.escalation_chain(roster, "sswb", waits, shipped())
    assert [s.step for s in chain] == [1, 2, 3]
    assert chain[0].targets == ("wu.fang", "huang.li", *OFFICE)
    assert chain[0].wait == timedelta(0)
    assert chain[1].targets == (DEPUTY,)
    assert chain[1].wait == timedelta(minutes=30)
    assert chain[2].targets == (LEADER,)
    assert chain[2].wait == timedelta(minutes=45)
    assert "副组长" in chain[1].label
    assert chain[2].label == "组长"


def test_escalation_chain_without_a_unit_goes_to_the_office(roster: Roster) -> None:
    """R-ESCALATE: before triage names a unit, step 1 is the office alone."""
    chain = rules.escalation_chain(
        roster, None, [timedelta(minutes=5), timedelta(minutes=7)], shipped()
    )
    assert chain[0].targets == tuple(OFFICE)
    assert chain[1].targets == (DEPUTY,)
    assert chain[2].targets == (LEADER,)
    # An unknown unit id behaves like no unit rather than failing.
    assert rules.escalation_chain(roster, "ghost", [], shipped())[0].targets == tuple(OFFICE)


def test_escalation_chain_targets_are_unique(roster: Roster) -> None:
    """R-ESCALATE: the office's own head is first-responsible and head; listed once."""
    chain = rules.escalation_chain(roster, "yqb", [], shipped())
    assert chain[0].targets == tuple(OFFICE)


@pytest.mark.parametrize(
    ("waits", "expected"),
    [
        ([], (timedelta(hours=1), timedelta(hours=1))),
        ([timedelta(minutes=20)], (timedelta(minutes=20), timedelta(minutes=20))),
        (
            [timedelta(minutes=20), timedelta(minutes=90)],
            (timedelta(minutes=20), timedelta(minutes=90)),
        ),
    ],
)
def test_escalation_waits(
    roster: Roster, waits: list[timedelta], expected: tuple[timedelta, timedelta]
) -> None:
    """R-ESCALATE: configurable waits; the default is an hour, one given wait serves both."""
    chain = rules.escalation_chain(roster, "cjb", waits, shipped())
    assert (chain[1].wait, chain[2].wait) == expected


# --- R-NOTIFY / R-DUTY ---


def test_notify_general_without_unit_is_the_office(roster: Roster) -> None:
    """R-NOTIFY: the office always; not the main leader for a general incident."""
    assert rules.notify_recipients(roster, Severity.general, None) == OFFICE


PUBLICITY = ["li.xiaomei", "he.jing"]  # 宣传部门 (roles.publicity) in the example roster


@pytest.mark.parametrize("severity", [Severity.major, Severity.urgent])
def test_notify_major_and_urgent_include_the_leader(roster: Roster, severity: Severity) -> None:
    """R-NOTIFY: 紧急、重大 … 立即向主要领导汇报, 同时向有关部门通报 (the publicity department)."""
    assert rules.notify_recipients(roster, severity, None) == [*OFFICE, LEADER, *PUBLICITY]
    assert rules.notify_recipients(roster, severity, "sswb") == [
        *OFFICE,
        LEADER,
        *PUBLICITY,
        "huang.li",
        "wu.fang",
        "xu.lei",
    ]
    # Incidents started before the publicity department was told keep their recipients.
    assert rules.notify_recipients(roster, severity, None, publicity=False) == [*OFFICE, LEADER]


def test_notify_the_responsible_unit(roster: Roster) -> None:
    """R-NOTIFY, R-DUTY: the unit's members, its head and first-responsible person first."""
    who = rules.notify_recipients(roster, Severity.general, "cjb")
    assert who == [*OFFICE, "sun.haitao", "lin.feng"]
    assert LEADER not in who
    # The leader is in the unit 镇政府: listed once for a major incident there.
    assert rules.notify_recipients(roster, Severity.major, "zfb") == [
        *OFFICE,
        LEADER,
        *PUBLICITY,
        "chen.zhiqiang",
    ]


def test_notify_first_responsible_from_another_unit() -> None:
    """R-DUTY: the first-responsible person is on every notification about the unit's incidents,
    even when the roster places them in another unit."""
    text = EXAMPLE_ROSTER.read_text(encoding="utf-8")
    old = 'head = "huang.li"\nfirst_responsible = "wu.fang"'
    assert text.count(old) == 1
    roster = parse_roster(text.replace(old, 'head = "huang.li"\nfirst_responsible = "he.jing"'))
    who = rules.notify_recipients(roster, Severity.general, "sswb")
    assert "he.jing" in who
    assert who[len(OFFICE) : len(OFFICE) + 2] == ["huang.li", "he.jing"]
    chain = rules.escalation_chain(roster, "sswb", [], shipped())
    assert chain[0].targets[:2] == ("he.jing", "huang.li")


# --- R-ACCOUNT ---


def test_accountable_person_is_the_first_responsible(roster: Roster) -> None:
    """R-ACCOUNT: 一岗双责 — the unit's first-responsible person answers for its misses."""
    assert rules.accountable_person(roster, "sswb") == "wu.fang"
    assert rules.accountable_person(roster, "yqb") == "liu.yang"
    assert rules.accountable_person(roster, "ghost") is None


def test_lateness() -> None:
    """R-ACCOUNT: how late; never negative."""
    due = DISCOVERED
    assert rules.lateness(due, due + timedelta(minutes=75)) == timedelta(minutes=75)
    assert rules.lateness(due, due - timedelta(minutes=5)) == timedelta(0)
    assert rules.lateness(due, due) == timedelta(0)


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(0), "0分钟"),
        (timedelta(seconds=59), "0分钟"),
        (timedelta(minutes=5), "5分钟"),
        (timedelta(hours=3), "3小时"),
        (timedelta(minutes=90), "1小时30分钟"),
        (timedelta(days=1), "1天"),
        (timedelta(days=1, hours=2), "1天2小时"),
        (timedelta(days=2, minutes=1), "2天1分钟"),
        (timedelta(hours=25, minutes=5, seconds=30), "1天1小时5分钟"),
    ],
)
def test_format_duration(delta: timedelta, text: str) -> None:
    assert rules.format_duration(delta) == text


# --- texts ---


@pytest.mark.parametrize(
    ("at", "text"),
    [
        (datetime(2026, 11, 29, 0, 30, tzinfo=UTC), "2026-11-29 08:30"),
        (datetime(2026, 11, 28, 16, 30, tzinfo=UTC), "2026-11-29 00:30"),
        (datetime(2026, 11, 29, 15, 59, tzinfo=UTC), "2026-11-29 23:59"),
        (datetime(2026, 11, 29, 8, 30, tzinfo=timezone(timedelta(hours=8))), "2026-11-29 08:30"),
    ],
)
def test_local_is_the_towns_time(at: datetime, text: str) -> None:
    """Store UTC, show Asia/Shanghai."""
    assert messages.local(at, "Asia/Shanghai") == text


def test_local_other_zone() -> None:
    assert messages.local(datetime(2026, 7, 1, 12, 0, tzinfo=UTC), "Europe/London") == (
        "2026-07-01 13:00"
    )


def _view(*, drill: bool = False) -> IncidentView:
    report = Deadline(
        key="R-REPORT#1",
        rule=rules.R_REPORT,
        title=rules.report_title(shipped()),
        due_at=DISCOVERED + timedelta(hours=1),
        met_at=DISCOVERED + timedelta(minutes=20),
        unit="yqb",
    )
    reply = Deadline(
        key="R-REPLY#1",
        rule=rules.R_REPLY,
        title=rules.reply_title(Severity.urgent, shipped()),
        due_at=DISCOVERED + timedelta(hours=3),
        overdue=True,
        unit="cjb",
        escalation_step=2,
    )
    late_met = Deadline(
        key="R-X#1",
        rule="R-X",
        title="R-X 已逾期后完成",
        due_at=DISCOVERED + timedelta(hours=4),
        met_at=DISCOVERED + timedelta(hours=5),
        overdue=True,
    )
    pending = Deadline(
        key="R-Y#1",
        rule="R-Y",
        title="R-Y 进行中的期限",
        due_at=DISCOVERED + timedelta(days=1),
    )
    return IncidentView(
        id="inc-1",
        title="东湖村道路积水",
        content="积水一周",
        source="微博",
        url=None,
        reporter_unit="yqb",
        reporter_name="周婷",
        discovered_at=DISCOVERED,
        posted_at=None,
        received_at=RECEIVED,
        phase=Phase.handling,
        severity=Severity.urgent,
        severity_assessed=True,
        category=None,
        responsible_unit="cjb",
        drill=drill,
        drill_speedup=60.0 if drill else None,
        plan_version=shipped().version,
        deadlines=[report, reply, late_met, pending],
        escalations=[],
        accountability=[
            AccountabilityRecord(
                deadline_key="R-REPLY#1",
                rule=rules.R_REPLY,
                kind=rules.OVERDUE,
                unit="cjb",
                person="sun.haitao",
                due_at=reply.due_at,
                recorded_at=reply.due_at,
            )
        ],
        replies=[],
        timeline=[],
    )


def test_ledger_lists_every_deadline(roster: Roster) -> None:
    """R-REPLY, R-REPORT, R-ESCALATE: the current-details ledger shows who owes what by when."""
    view = _view()
    ledger = messages.ledger(view, roster, "Asia/Shanghai")
    for d in view.deadlines:
        assert d.title in ledger
    lines = {d.key: next(x for x in ledger.splitlines() if d.title in x) for d in view.deadlines}
    assert "2026-11-29 09:30" in lines["R-REPORT#1"]  # due 01:30Z
    assert "已完成 2026-11-29 08:50" in lines["R-REPORT#1"]
    assert "逾期" not in lines["R-REPORT#1"]
    assert "2026-11-29 11:30" in lines["R-REPLY#1"]
    assert "**已逾期**，督办第2级" in lines["R-REPLY#1"]
    assert "已完成 2026-11-29 13:30（逾期）" in lines["R-X#1"]
    assert "进行中" in lines["R-Y#1"]
    assert "处置中" in ledger
    assert "紧急" in ledger
    assert "村镇建设办" in ledger
    assert "演练" not in ledger
    assert "**演练**" in messages.ledger(_view(drill=True), roster, "Asia/Shanghai")


def test_escalation_message(roster: Roster) -> None:
    """R-ESCALATE: the escalation notice names the deadline, its local due time and the step."""
    view = _view(drill=True)
    reply = view.deadlines[1]
    step = rules.escalation_chain(roster, "cjb", [], shipped())[1]
    subject, body = messages.escalation(view, roster, "Asia/Shanghai", reply, step, spec=shipped())
    assert subject.startswith("【演练】【紧急舆情】东湖村道路积水")
    assert "第2级督办" in subject
    assert "2026-11-29 11:30" in body
    assert "村镇建设办" in body
    assert f"督办第2级（共3级）：副组长（{rules.R_ESCALATE}）" in body


def test_reported_message_shows_the_reply_deadline(roster: Roster) -> None:
    """R-NOTIFY, R-REPLY: the report notice gives the reply deadline in the town's time."""
    subject, body = messages.reported(_view(), roster, "Asia/Shanghai", shipped())
    assert subject == "【紧急舆情】东湖村道路积水：新报告"
    assert "官方回复期限：2026-11-29 11:30" in body
    assert shipped().wording[rules.R_REPLY] in body
