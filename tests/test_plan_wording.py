"""Wording that names a duration follows the plan file (issue 14): a plan with odd periods
(R-REPLY general PT7H13M, …) and a four-step escalation chain is driven through the pure core
(plan/incident.py), and every title, timeline entry, message, form page and help text that states
a period says the plan's value, never the 2024 plan's numbers; the "（共N级）" count and the steps'
waits and labels follow the plan's chain. Core tests: no Temporal server, milliseconds."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from plan import messages, rules
from plan.actions import ACTIONS
from plan.enums import Category, Phase, Severity, TrackStatus
from plan.incident import Incident
from plan.models import IncidentInput, Submission
from plan.roster import Roster
from plan.spec import LEGACY_ESCALATION, LEGACY_WORDING, PlanSpec, load_spec, shipped
from starter import cli
from starter.web import staff
from starter.web.app import create_app
from tests.conftest import make_settings

START = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)
TZ = "Asia/Shanghai"

# The odd plan: every period differs from the 2024 plan's, none is phrased with its numbers.
ODD_PLAN = """
version = "odd.1"
name = "测试用预案"
discover_within = "PT41M"
report_within = "PT2H47M"
written_within = "PT17M"
stance_within = "PT58H"
summary_within = "P4D"
track_interval = "PT19H"
warn_at = 0.8

[reply_within]
general = "PT7H13M"
major = "PT19H29M"
urgent = "PT2H11M"

[progress_interval]
major = "PT20H"
urgent = "PT5H"

[[escalation]]
to = ["unit"]
wait = "PT0S"
label = "责任人及单位负责人"

[[escalation]]
to = ["office"]
wait = "PT17M"
label = "领导小组办公室督办"

[[escalation]]
to = ["deputy"]
wait = "PT19M"
label = "分管副组长"

[[escalation]]
to = ["leader"]
wait = "PT23M"
label = "组长亲自督办"

[wording]
R-REPORT = "发现舆情后最迟不得超过2小时47分钟报告"
R-REPLY = "一般舆情7小时13分钟内、重大舆情19小时29分钟内官方回复，紧急舆情2小时11分钟内回应"
R-WRITTEN = "口头报告后17分钟内报送书面信息"
R-STANCE = "应于58小时内作出表态性回复"
R-SUMMARY = "书面报告4日内报送镇党政办"
R-DISCOVER = "41分钟内必须发现负面网帖"
"""

# The 2024 plan's numbers as its wording phrased them: none may be left in a text of the odd plan.
OLD = ["半小时", "30分钟", "1小时", "12小时", "24小时", "3小时", "72小时", "3日", "三日", "共3级"]

NEW_TITLES = {
    "R-DISCOVER": "发帖后41分钟内发现（R-DISCOVER）",
    "R-REPORT": "发现后2小时47分钟内报告（R-REPORT）",
    "R-WRITTEN": "口头报告后17分钟内报送书面信息（R-WRITTEN）",
    "R-STANCE#1": "58小时内作出表态性回复（R-STANCE）",
    "R-SUMMARY": "平息后4日内报送书面总结（R-SUMMARY）",
}


@pytest.fixture
def odd_file(tmp_path: Path) -> Path:
    path = tmp_path / "plan-odd.toml"
    path.write_text(ODD_PLAN, encoding="utf-8")
    return path


@pytest.fixture
def odd(odd_file: Path) -> PlanSpec:
    return load_spec(odd_file)


def incident(spec: PlanSpec, roster: Roster, **fields: Any) -> Incident:
    values: dict[str, Any] = {
        "title": "东湖村道路积水",
        "content": "网帖内容",
        "source": "微博",
        "discovered_at": START - timedelta(hours=2, minutes=55),
        "reporter_unit": "yqb",
        **fields,
    }
    inp = IncidentInput(
        incident_id="YQ-wording",
        submission=Submission(**values),
        received_at=START,
        roster=roster,
        plan=spec,
        plan_version=spec.version,
        timezone=TZ,
    )
    c = Incident(inp, now=START)
    c.s.rules_version = 1
    c.open_incident()
    c.started = True
    return c


def act(c: Incident, name: str, **fields: Any) -> None:
    """The action by the first roster person the table lets take it."""
    actor = next(p.id for p in c.roster.people if c.allows(name, p.id))
    action = ACTIONS[name].command.model_validate({**fields, "actor": actor})
    c.check(name, action)
    c.apply(name, action, c.now)
    c.to_watch.clear()


def texts(c: Incident) -> list[str]:
    """Everything the core has people read: titles, the timeline, messages, the ledger."""
    s = c.s
    out = [d.title for d in s.deadlines]
    out += [e.summary for e in s.timeline]
    out += [e.summary for e in s.escalations]
    out += [m.subject + "\n" + m.body for m in s.pending_notifications]
    out.append(messages.ledger(c.view(), c.roster, TZ))
    return out


def assert_no_old_numbers(found: list[str]) -> None:
    for text in found:
        for old in OLD:
            assert old not in text, f"{old!r} in {text!r}"


def test_the_odd_plan_is_read_whole(odd: PlanSpec) -> None:
    assert odd.reply_within[Severity.general] == timedelta(hours=7, minutes=13)
    assert len(odd.escalation) == 4
    assert odd.wording["R-STANCE"] == "应于58小时内作出表态性回复"


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(hours=12), "12小时"),
        (timedelta(hours=24), "24小时"),
        (timedelta(hours=72), "3日"),
        (timedelta(days=4), "4日"),
        (timedelta(hours=50), "50小时"),
        (timedelta(hours=7, minutes=13), "7小时13分钟"),
        (timedelta(minutes=30), "30分钟"),
        (timedelta(hours=1), "1小时"),
        (timedelta(minutes=1, seconds=30), "1分钟30秒"),
    ],
)
def test_plan_duration(delta: timedelta, text: str) -> None:
    """One formatter for the plan's periods, reading as the plan's sentences do."""
    assert rules.plan_duration(delta) == text


def test_shipped_titles_keep_the_2024_wording() -> None:
    assert rules.reply_title(Severity.general, shipped()) == "一般舆情12小时内官方回复（R-REPLY）"
    assert rules.reply_title(Severity.urgent, shipped()) == "紧急舆情3小时内官方回复（R-REPLY）"
    assert rules.report_title(shipped()) == "发现后1小时内报告（R-REPORT）"
    titles = rules.titles(shipped())
    assert titles["R-STANCE"] == "3日内作出表态性回复（R-STANCE）"
    assert titles["R-WRITTEN"] == "口头报告后30分钟内报送书面信息（R-WRITTEN）"


def test_a_late_urgent_report_says_the_plans_periods(odd: PlanSpec, roster: Roster) -> None:
    """R-DISCOVER, R-REPORT, R-WRITTEN, R-REPLY, R-NOTIFY, R-STANCE: found late, reported late,
    phoned in, triaged, delayed, re-triaged: each title, entry and message states odd periods."""
    c = incident(
        odd,
        roster,
        posted_at=START - timedelta(hours=2, minutes=55) - timedelta(minutes=50),
        severity=Severity.urgent,
        oral=True,
        oral_reported_at=START - timedelta(minutes=2),
        responsible_unit="cjb",
    )
    summaries = [e.summary for e in c.s.timeline]
    assert "发帖后超过41分钟才发现（晚9分钟）（R-DISCOVER）" in summaries
    assert "迟报：发现后超过2小时47分钟才报告（晚8分钟）（R-REPORT）" in summaries
    assert c.deadline("R-REPLY#1").title == "紧急舆情2小时11分钟内官方回复（R-REPLY）"
    reported = next(m for m in c.s.pending_notifications if m.rule == rules.R_NOTIFY)
    assert odd.wording["R-REPLY"] in reported.body

    act(c, "triage", severity="general", category="hype", responsible_unit="cjb")
    assert c.deadline("R-REPLY#1").title == "一般舆情7小时13分钟内官方回复（R-REPLY）"
    act(c, "declare-delay", reason="需多部门调查")
    assert any("须58小时内作出表态性回复" in e.summary for e in c.s.timeline)
    act(c, "triage", severity="major", category="hype", responsible_unit="cjb")
    assert c.deadline("R-REPLY#1").title == "重大舆情19小时29分钟内官方回复（R-REPLY）"

    for key, title in NEW_TITLES.items():
        if c.find(key) is not None:
            assert c.deadline(key).title == title
    assert {"R-DISCOVER", "R-REPORT", "R-WRITTEN", "R-STANCE#1"} <= {d.key for d in c.s.deadlines}
    assert_no_old_numbers(texts(c))


def test_a_late_lead_and_the_summary_say_the_plans_periods(odd: PlanSpec, roster: Roster) -> None:
    """R-OFFICE, R-REPORT, R-TRACK, R-SUMMARY: a lead confirmed after the report period, then
    handled and calmed: the 迟报 note and the summary deadline state the odd periods."""
    c = incident(odd, roster, lead=True)
    c.advance(START)  # the report period ended 8 minutes ago
    act(c, "confirm-lead")
    assert (
        c.s.timeline[-1].summary == "办公室确认线索为舆情（已超过2小时47分钟，记迟报）（R-OFFICE）"
    )
    act(c, "triage", severity="general", category=Category.hype.value, responsible_unit="cjb")
    act(c, "draft-reply", text="官方回复")
    act(c, "approve-reply", approve=True)
    act(c, "publish-reply", channel="镇政府微博")
    act(c, "track", status=TrackStatus.subsided.value)
    assert c.s.phase is Phase.summary
    assert c.deadline("R-SUMMARY").title == NEW_TITLES["R-SUMMARY"]
    assert c.deadline("R-SUMMARY").due_at == c.now + timedelta(days=4)
    assert_no_old_numbers(texts(c))


def test_a_missed_reply_escalates_through_the_plans_chain(odd: PlanSpec, roster: Roster) -> None:
    """R-ESCALATE: the chain is the plan's: four steps at its waits (0, 17, 19, 23 minutes) to
    its targets with its labels, each message saying 第N级（共4级） and quoting the plan."""
    c = incident(odd, roster, severity=Severity.general, responsible_unit="cjb")
    act(c, "triage", severity="general", category="hype", responsible_unit="cjb")
    reply = c.deadline("R-REPLY#1")
    due = reply.due_at
    assert due == START - timedelta(hours=2, minutes=55) + timedelta(hours=7, minutes=13)
    c.advance(due + timedelta(minutes=59))
    steps = [e for e in c.s.escalations if e.deadline_key == "R-REPLY#1"]
    assert [e.step for e in steps] == [1, 2, 3, 4]
    assert [e.at - due for e in steps] == [timedelta(minutes=m) for m in (0, 17, 36, 59)]
    cjb = roster.unit("cjb")
    assert cjb is not None
    assert steps[0].targets == list(dict.fromkeys([cjb.first_responsible, cjb.head]))
    assert steps[1].targets == roster.members_of(roster.roles.office)
    assert steps[2].targets == [roster.leading_group.deputy]
    assert steps[3].targets == [roster.leading_group.leader]
    sent = [m for m in c.s.pending_notifications if m.rule == rules.R_ESCALATE]
    labels = [step.label for step in odd.escalation]
    for n, (m, label) in enumerate(zip(sent, labels, strict=True), start=1):
        assert f"第{n}级督办" in m.subject
        assert f"督办第{n}级（共4级）：{label}（R-ESCALATE）。" in m.body
        assert f"预案要求：{odd.wording['R-REPLY']}。" in m.body
    assert_no_old_numbers(texts(c))


def test_the_waits_setting_overrides_the_plans_waits(odd: PlanSpec, roster: Roster) -> None:
    """escalation_waits_minutes (drills, tests) replaces the waits of steps 2 on, the last
    repeating; the chain's steps, targets and labels stay the plan's."""
    chain = rules.escalation_chain(roster, "cjb", [timedelta(minutes=5)], odd)
    assert [s.wait for s in chain] == [timedelta(0)] + [timedelta(minutes=5)] * 3
    assert [s.label for s in chain] == [s.label for s in odd.escalation]
    assert {s.of for s in chain} == {4}
    # No unit yet: a step that would go to the unit alone goes to the office.
    office = tuple(roster.members_of(roster.roles.office))
    assert rules.escalation_chain(roster, None, [], odd)[0].targets == office


def test_a_two_step_chain_counts_two(odd: PlanSpec, roster: Roster) -> None:
    two = odd.model_copy(update={"escalation": odd.escalation[:2]})
    chain = rules.escalation_chain(roster, "cjb", [], two)
    view = incident(two, roster, severity=Severity.general, responsible_unit="cjb").view()
    reply = next(d for d in view.deadlines if d.rule == rules.R_REPLY)
    _, body = messages.escalation(view, roster, TZ, reply, chain[1], spec=two)
    assert "督办第2级（共2级）：领导小组办公室督办" in body


def test_incidents_started_before_keep_the_2024_chain_and_sentences() -> None:
    """A snapshot stored before the plan file carried the chain and the sentences (the saved
    histories' inputs) reads as the 2024.1 plan, which the shipped file states unchanged."""
    stored = shipped().model_dump(mode="json", exclude={"escalation", "wording"})
    old = PlanSpec.model_validate(stored)
    assert old.escalation == LEGACY_ESCALATION == shipped().escalation
    assert old.wording == LEGACY_WORDING == shipped().wording


def test_a_plan_file_must_state_its_chain_and_sentences(tmp_path: Path) -> None:
    path = tmp_path / "bare.toml"
    path.write_text(ODD_PLAN.split("[[escalation]]")[0], encoding="utf-8")
    with pytest.raises(ValueError, match="escalation, wording"):
        load_spec(path)


def test_help_texts_say_the_plans_periods(odd: PlanSpec, roster: Roster) -> None:
    """The action table's help (incident page forms, CLI) and the CLI's --help."""
    assert ACTIONS["declare-delay"].help_for(odd) == (
        "声明无法在回复期内办结，58小时内作表态性回复（R-STANCE）。"
    )
    c = incident(odd, roster, severity=Severity.general, responsible_unit="cjb")
    act(c, "triage", severity="general", category="hype", responsible_unit="cjb")
    forms = staff.action_forms(roster, "lin.feng", c.view(), odd)
    delay = next(f for f in forms if f.name == "declare-delay")
    assert "58小时内作表态性回复" in delay.help
    runner = CliRunner()
    try:
        cli.describe(odd)
        shown = runner.invoke(cli.app, ["declare-delay", "--help"], terminal_width=200)
    finally:
        cli.describe(shipped())
    assert shown.exit_code == 0, shown.output
    assert "58小时内作表态性回复" in shown.output
    assert "3日" not in shown.output
    default = runner.invoke(cli.app, ["declare-delay", "--help"], terminal_width=200)
    assert "3日内作表态性回复" in default.output


async def test_the_report_pages_say_the_plans_periods(
    odd_file: Path, database_url: str, roster: Roster
) -> None:
    """The report form and the phone-report form, on an app whose settings name the odd plan
    (YUQING_PLAN_FILE): the periods they state, and the severities' sentences."""
    settings = make_settings(database_url, plan_file=odd_file)
    app = create_app(settings, roster=roster)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        # As read: the rule codes are in small grey spans of their own (issue 18).
        form = re.sub(r"<[^>]+>", "", (await http.get("/")).text)
        oral = re.sub(r"<[^>]+>", "", (await http.get("/report/oral")).text)
    assert "最迟不得超过2小时47分钟（R-REPORT）" in form
    assert "17分钟内补报书面信息" in form and "须在17分钟内补报书面信息" in form
    assert "须在通话后17分钟内补报" in oral and "补报书面信息的17分钟从此时起算" in oral
    for page in (form, oral):
        assert "7小时13分钟内官方回复" in page
        assert "19小时29分钟内官方回复" in page
        assert "2小时11分钟内回应社会关切" in page
        visible = re.sub(r"<[^>]+>", "", page)
        assert_no_old_numbers([visible])
