"""The model checker: the incident's pure core (plan/incident.py) driven through random sequences of
actions by random roster people and jumps of time, with the plan's invariants checked after every
step (issue 14). No Temporal server: a sequence takes milliseconds, so `make test` runs hundreds and
`make reliability` thousands (YUQING_TEST_DEPTH=deep, tests/conftest.py).

Each invariant is proven able to fail: the mutant tests at the end break the rule it guards (the
way tests/test_replay.py breaks the replay gate) and require the checker to catch it.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import Phase as Stage
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

import plan.actions as actions
import plan.incident as core
from plan import rules
from plan.actions import ACTIONS
from plan.enums import Category, Phase, ReplyKind, ReplyStatus, Severity, TrackStatus
from plan.incident import RULES_VERSION, Incident, Refusal
from plan.models import Absence, Absences, IncidentInput, Submission
from plan.roster import Roster, load_roster
from plan.spec import shipped
from tests.conftest import EXAMPLE_ROSTER, depth

ROSTER: Roster = load_roster(EXAMPLE_ROSTER)
PEOPLE = [p.id for p in ROSTER.people]
UNITS = [u.id for u in ROSTER.units]
START = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)

# The actions that carry an incident towards its close (withdrawing does not count).
PROGRESS = [
    "confirm-lead",
    "triage",
    "decide-adoption",
    "conclude",
    "draft-reply",
    "approve-reply",
    "countersign-reply",
    "approve-release",
    "publish-reply",
    "track",
    "submit-summary",
    "file-written-report",
    "report-progress",
]
# For each rule, the actions on the way to meeting its deadline.
REPLYING = {
    "confirm-lead",
    "triage",
    "draft-reply",
    "approve-reply",
    "countersign-reply",
    "approve-release",
    "publish-reply",
}
MEETS: dict[str, set[str]] = {
    rules.R_REPORT: {"confirm-lead"},
    rules.R_WRITTEN: {"file-written-report"},
    rules.R_PROGRESS: {"report-progress"},
    rules.R_REPLY: REPLYING | {"declare-delay"},
    rules.R_STANCE: REPLYING,
    rules.R_INQUIRY: REPLYING | {"conclude", "decide-adoption"},
    rules.R_TRACK: {"track"},
    rules.R_SUMMARY: {"submit-summary"} | REPLYING,
}


def candidates(name: str, core_: Incident) -> list[dict[str, Any]]:
    """Valid field sets for an action: if the table says a person may take it now, one of these
    must be accepted (what the page offers = what the core accepts)."""
    unit = core_.s.responsible_unit or "cjb"
    other, third = [u for u in UNITS if u != unit][:2]
    return {
        "confirm-lead": [{}],
        "triage": [
            {
                "severity": sev.value,
                "category": cat.value,
                "responsible_unit": unit if i % 3 else other,
                "co_units": [third] if i % 2 else [],
            }
            for i, (sev, cat) in enumerate((sev, cat) for sev in Severity for cat in Category)
        ],
        "file-written-report": [{"text": "书面信息"}],
        "report-progress": [{"text": "续报"}],
        "activate": [{"units": [other]}, {"persons": ["he.jing"]}],
        "consult": [{"topic": "会商", "decision": "继续观察"}],
        "return-to-office": [{"reason": "不属本单位职责"}],
        "declare-delay": [{"reason": "需多部门调查"}],
        "draft-reply": [{"text": "回复", "kind": k.value} for k in ReplyKind],
        "approve-reply": [{"approve": True}, {"approve": False, "comment": "请修改"}],
        "countersign-reply": [{"approve": True}, {"approve": False, "comment": "表述不准确"}],
        "approve-release": [{"approve": True, "spokesperson": "li.xiaomei"}],
        "publish-reply": [{"channel": "镇政府微博"}],
        "conclude": [{"note": "已办结"}],
        "decide-adoption": [{"adopted": True, "decision": "采纳"}],
        "report-spreading": [{"description": "仍在传播"}],
        "track": [{"status": s.value} for s in TrackStatus],
        "submit-summary": [{"text": "总结"}],
        "withdraw": [{"reason": "误报"}],
        "record-accountability": [
            {"kind": k, "unit": unit, "reason": "核实"} for k in ("谎报", "瞒报", "漏报")
        ],
        "commend": [{"unit": unit, "reason": "处置得力"}],
        "sign-for": [{}],
    }[name]


def command(name: str, fields: dict[str, Any], actor: str) -> Any:
    return ACTIONS[name].command.model_validate({**fields, "actor": actor})


def accepts(c: Incident, name: str, fields: dict[str, Any], actor: str) -> bool:
    try:
        c.check(name, command(name, fields, actor))
    except Refusal:
        return False
    return True


def new_incident(
    *,
    lead: bool,
    severity: Severity | None,
    oral: bool,
    drill: bool,
    late_minutes: int,
    trusted: bool = True,
) -> Incident:
    discovered = START - timedelta(minutes=late_minutes)
    sub = Submission(
        title="东湖村道路积水",
        content="网帖内容",
        source="微博",
        discovered_at=discovered,
        reporter_unit="dhc",  # 东湖村: a unit a false claim could name
        severity=severity,
        oral=oral and not lead,
        oral_reported_at=discovered + timedelta(minutes=late_minutes // 2)
        if oral and not lead
        else None,
        lead=lead,
        drill_speedup=3600 if drill else None,
    )
    inp = IncidentInput(
        incident_id="YQ-model",
        submission=sub,
        received_at=START,
        roster=ROSTER,
        plan=shipped(),
        plan_version=shipped().version,
        # A monitoring officer signed in, or an anonymous caller (a lead for the office).
        submitted_by="zhou.ting" if trusted else None,
    )
    c = Incident(inp, now=START)
    c.s.rules_version = RULES_VERSION  # today's rules, as a newly started workflow has them
    c.s.resend = True  # and 签收's re-sending (workflows/incident.py RESEND_PATCH)
    c.s.resend_steps = True  # of every step (RESEND_STEPS_PATCH)
    c.open_incident()
    c.started = True
    return c


def apply(c: Incident, name: str, fields: dict[str, Any], actor: str) -> None:
    c.apply(name, command(name, fields, actor), c.now)
    c.to_watch.clear()


# 代理: whom the chain reaches (units' heads, the office, the leading group), and who may stand in
# for each (their unit's people, the leading group).
_LEADING = [ROSTER.leading_group.leader, ROSTER.leading_group.deputy, *ROSTER.leading_group.members]
CHAIN_PEOPLE = sorted(
    {u.head for u in ROSTER.units}
    | {u.first_responsible for u in ROSTER.units}
    | set(ROSTER.members_of(ROSTER.roles.office))
    | set(_LEADING)
)
STAND_INS = {
    p: sorted(
        {*ROSTER.members_of(ROSTER.person(p).unit), *_LEADING} - {p}  # type: ignore[union-attr]
    )
    for p in CHAIN_PEOPLE
}


# How a unit that wants to close the incident goes about it: the first of these it may take.
CLOSING: list[tuple[str, dict[str, Any]]] = [
    ("submit-summary", {"text": "总结"}),
    ("publish-reply", {"channel": "镇政府微博"}),
    ("approve-release", {"approve": True, "spokesperson": "li.xiaomei"}),
    ("countersign-reply", {"approve": True}),
    ("approve-reply", {"approve": True}),
    ("draft-reply", {"text": "处理结果", "kind": "result"}),
    ("draft-reply", {"text": "官方回复", "kind": "official"}),
    ("track", {"status": "subsided"}),
    ("decide-adoption", {"adopted": True, "decision": "采纳"}),
    ("draft-reply", {"text": "表态", "kind": "stance"}),
    ("file-written-report", {"text": "书面信息"}),
    ("confirm-lead", {}),
    ("triage", {"severity": "general", "category": "hype", "responsible_unit": "cjb"}),
]


def fork(c: Incident) -> Incident:
    """A copy to explore from: its own state, the same input."""
    x = copy.copy(c)
    x.s = c.s.model_copy(deep=True)
    x.to_watch = []
    return x


def witnesses(c: Incident) -> list[str]:
    """People enough to try every action: the office, the leader, the unit's head and staff."""
    unit = c.s.responsible_unit
    co_heads = [u.head for u in map(ROSTER.unit, c.s.co_units) if u is not None]
    return ["liu.yang", "wang.jianguo", *(ROSTER.members_of(unit) if unit else []), *co_heads]


def shape_of(c: Incident) -> str:
    """What closing an incident depends on (not its timeline, consultations or progress)."""
    s = c.s
    return repr(
        (
            s.phase,
            s.severity,
            s.category,
            s.responsible_unit,
            s.co_units,
            s.reply_round,
            s.concluded_at is not None,
            s.adoption is not None,
            [
                (
                    r.kind,
                    r.status,
                    r.release_needed,
                    r.released_by is not None,
                    tuple(r.countersign_units),
                    tuple(sorted(r.countersigned)),
                )
                for r in s.replies
            ],
            [(d.key, d.open, d.overdue, d.replaced_by) for d in s.deadlines],
        )
    )


def closes(c: Incident, steps: int = 40) -> bool:
    """Some sequence of allowed actions (by anyone, with valid fields, time passing) ends in
    submit-summary: the one a unit wanting to close would take, greedily."""
    x = fork(c)
    for _ in range(steps):
        if x.s.phase is Phase.closed:
            return x.s.summary is not None
        for name, fields in CLOSING:
            actor = next((p for p in witnesses(x) if x.allows(name, p)), None)
            if actor is not None and accepts(x, name, fields, actor):
                apply(x, name, fields, actor)
                break
        else:
            x.advance(x.now + timedelta(hours=6))  # perhaps something waits for time
    return x.s.phase is Phase.closed and x.s.summary is not None


class IncidentMachine(RuleBasedStateMachine):
    """One incident, from its submission, through whatever staff and time do to it."""

    def __init__(self) -> None:
        super().__init__()
        self.c: Incident

    @initialize(
        lead=st.booleans(),
        severity=st.none() | st.sampled_from(list(Severity)),
        oral=st.booleans(),
        drill=st.booleans(),
        late_minutes=st.integers(0, 1_500),
        trusted=st.booleans(),
    )
    def submit(
        self,
        lead: bool,
        severity: Severity | None,
        oral: bool,
        drill: bool,
        late_minutes: int,
        trusted: bool,
    ) -> None:
        self.c = new_incident(
            lead=lead,
            severity=severity,
            oral=oral,
            drill=drill,
            late_minutes=late_minutes,
            trusted=trusted,
        )
        self.searched: set[str] = set()
        self._allowed: tuple[int, dict[str, list[str]]] = (-1, {})
        self.notes_seen = 0
        self.entries_seen = 0

    def allowed(self, name: str) -> list[str]:
        """Who may take an action now, by the table; worked out once per state version."""
        version = self.c.s.version
        if self._allowed[0] != version:
            self._allowed = (version, {})
        known = self._allowed[1]
        if name not in known:
            known[name] = [p for p in PEOPLE if self.c.allows(name, p)]
        return known[name]

    def anyone(self, name: str) -> bool:
        """Whether someone may take the action now (stops at the first)."""
        known = self._allowed[1] if self._allowed[0] == self.c.s.version else {}
        if name in known:
            return bool(known[name])
        return any(self.c.allows(name, p) for p in PEOPLE)

    @rule(
        name=st.sampled_from(list(ACTIONS)),
        person=st.sampled_from(PEOPLE),
        pick=st.integers(0, 50),
    )
    def act(self, name: str, person: str, pick: int) -> None:
        c = self.c
        options = candidates(name, c)
        fields = options[pick % len(options)]
        before = c.s.model_dump()
        allowed = c.allows(name, person)
        assert allowed == (c.may(name, person) is None)
        if allowed:
            # The page offers it to this person: some valid fields must be accepted.
            assert any(accepts(c, name, f, person) for f in options), (name, person, c.s.phase)
        if not accepts(c, name, fields, person):
            assert c.s.model_dump() == before, "a refused action changed the incident"
            return
        severity = c.s.severity
        acting_for = actions.acting_as(name, ROSTER, c.s, c.place(), person)
        entries = len(c.s.timeline)
        apply(c, name, fields, person)
        if acting_for is not None:
            # 代: what a stand-in does in the absent person's place is recorded as such.
            theirs = [e for e in c.s.timeline[entries:] if e.actor == person]
            recorded = theirs and all(e.for_person == acting_for for e in theirs)
            assert recorded, f"代 unrecorded: {name} by {person} for {acting_for}"
        if name == "publish-reply":
            reply = c.s.replies[-1]
            if rules.needs_release(severity):
                assert reply.released_by is not None, "R-RELEASE: published without approval"
            unsigned = set(c.s.co_units) - set(reply.countersigned)
            assert not unsigned, f"R-REVIEW: published without the countersign of {unsigned}"

    @rule(data=st.data())
    def act_as_allowed(self, data: st.DataObject) -> None:
        """An action someone may take now, by one of them: how staff actually move an incident."""
        names = [n for n in ACTIONS if self.anyone(n)]
        if not names:
            return
        # Mostly the steps that move an incident on; the rest (consult, commend, withdraw…) now
        # and then, and through `act` at random.
        onward = [n for n in names if n in PROGRESS or n in ("declare-delay", "conclude")]
        diligent = [n for n, _ in CLOSING if n in onward]
        how = data.draw(st.integers(0, 9), label="how")
        if diligent and how < 4:
            names = diligent[:1]  # the step a diligent unit takes next
        elif onward and how < 8:
            names = onward
        name = data.draw(st.sampled_from(names), label="action")
        person = data.draw(st.sampled_from(self.allowed(name)), label="by")
        self.act(name, person, data.draw(st.integers(0, 50), label="fields"))

    @rule(steps=st.integers(1, 8))
    def diligently(self, steps: int) -> None:
        """A unit that keeps going: the next few steps towards the close, as `closes` takes them
        (reaches the deep states, a published reply and after, within a short sequence)."""
        c = self.c
        for _ in range(steps):
            if c.s.phase is Phase.closed:
                return
            for name, fields in CLOSING:
                actor = next((p for p in witnesses(c) if c.allows(name, p)), None)
                if actor is not None and accepts(c, name, fields, actor):
                    apply(c, name, fields, actor)
                    break
            else:
                return

    @rule()
    def conclude_and_report_calm(self) -> None:
        """The unit concludes the case (办结) and reports it calm at once, before the result reply:
        the order in which a dead end once hid (issue 14, defect 5)."""
        for name, fields in (("conclude", {"note": "已办结"}), ("track", {"status": "subsided"})):
            people = self.allowed(name)
            if people and accepts(self.c, name, fields, people[0]):
                apply(self.c, name, fields, people[0])

    @rule(
        person=st.sampled_from(CHAIN_PEOPLE),
        pick=st.integers(0, 50),
        starts_in=st.sampled_from([0, 0, 30, 600]),
        hours=st.integers(1, 72),
    )
    def away(self, person: str, pick: int, starts_in: int, hours: int) -> None:
        """代理 (issue 20, item 3): someone the chain reaches declares an absence with a stand-in
        of their unit or the leading group, told to the incident as the store would tell it
        (the absences not yet over, a revision higher)."""
        c = self.c
        start = c.now + timedelta(minutes=starts_in)
        end = start + timedelta(hours=hours)
        held = [a for a in c.s.absences.items if a.ends_at > c.now and a.person != person]
        # As starter/standins.py allows: not a stand-in who is away then (so no loop of people
        # away for each other, which would leave nobody to tell).
        away_then = {a.person for a in held if a.starts_at < end and a.ends_at > start}
        stand_ins = [p for p in STAND_INS[person] if p not in away_then]
        if not stand_ins:
            return  # nobody of the unit or the leading group is there to stand in: refused
        new = Absence(
            id=len(c.s.absences.items) + 100 * (c.s.absences.revision + 1),
            person=person,
            stand_in=stand_ins[pick % len(stand_ins)],
            starts_at=start,
            ends_at=end,
        )
        c.absences_changed(Absences(revision=c.s.absences.revision + 1, items=[*held, new]))

    @rule(minutes=st.integers(1, 5_000))
    def wait(self, minutes: int) -> None:
        self.c.advance(self.c.now + timedelta(minutes=minutes))

    @invariant()
    def no_escalation_reaches_someone_away(self) -> None:
        """代理: a 督办 (an escalation step, its re-sends and repeats) goes to the stand-in of
        whoever is away when it is sent, never to them; and the receipt asks the stand-in."""
        c = self.c
        notes = c.s.pending_notifications
        for note in notes[self.notes_seen :]:
            if note.step:
                away = {p for p, _ in actions.stand_ins(c.s, note.sent_at)}
                reached = {r.person_id for r in note.recipients}
                assert not reached & away, f"R-ESCALATE to {reached & away}, away: {note.subject}"
        self.notes_seen = len(notes)
        for r in c.s.receipts:
            if r.step is not None:
                away = {p for p, _ in actions.stand_ins(c.s, r.at)}
                assert not set(r.persons) & away, f"{r.key} asks {set(r.persons) & away}"

    @invariant()
    def what_a_stand_in_does_is_recorded_as_theirs_for_the_absent(self) -> None:
        """代: an entry acted for someone names both, and the actor stood in for them then."""
        c = self.c
        for e in c.s.timeline[self.entries_seen :]:
            if e.for_person is not None:
                pairs = set(actions.stand_ins(c.s, e.at))
                assert (e.for_person, e.actor) in pairs, f"{e.actor} 代 {e.for_person}?"
                assert e.summary.startswith(f"（代{ROSTER.person_name(e.for_person)}）")
        self.entries_seen = len(c.s.timeline)

    @invariant()
    def one_record_and_one_chain_per_deadline(self) -> None:
        s = self.c.s
        keys = [a.deadline_key for a in s.accountability if not a.deadline_key.startswith("manual")]
        assert len(keys) == len(set(keys)), f"two records for one deadline: {keys}"
        for d in s.deadlines:
            steps = [e.step for e in s.escalations if e.deadline_key == d.key]
            assert steps == list(range(1, len(steps) + 1)), f"{d.key} chain {steps}"
            if d.joined is not None:
                assert d.key not in keys and not steps, f"{d.key} joined but recorded"

    @invariant()
    def records_only_for_misses(self) -> None:
        s = self.c.s
        by_key = {d.key: d for d in s.deadlines}
        for a in s.accountability:
            d = by_key.get(a.deadline_key)
            if d is not None:
                assert d.overdue, f"a record for {d.key}, which was never missed"
                met_in_time = d.met_at is not None and d.met_at < d.due_at
                assert not met_in_time, f"a record for {d.key}, met in time"

    @invariant()
    def an_untrusted_report_attributes_nothing(self) -> None:
        """Issue 15: what an anonymous caller states never puts a deadline or a record on a unit
        before the office has decided (confirm-lead, triage)."""
        c = self.c
        if rules.trusts(ROSTER, c.inp.submitted_by, c.sub.reporter_unit):
            return
        office = ROSTER.roles.office
        for key in ("R-DISCOVER", "R-WRITTEN"):
            assert c.find(key) is None, f"an untrusted report started {key}"
        report = c.find("R-REPORT")
        assert report is not None and report.unit == office
        assert report.anchor_at == c.inp.received_at, "R-REPORT counts from a stated time"
        for a in c.s.accountability:
            if a.deadline_key == "R-REPORT":
                assert a.unit == office, "an untrusted report planted a record"

    @invariant()
    def a_false_alarm_counts_nowhere(self) -> None:
        s = self.c.s
        if s.phase is Phase.closed and s.close_reason is not None:
            for a in s.accountability:
                by_hand = a.deadline_key.startswith("manual")
                assert by_hand or a.voided_at is not None, f"R-ACCOUNT: {a.deadline_key} counts"
            assert all(d.voided for d in s.deadlines), "R-ACCOUNT: a false alarm's deadline counts"

    @invariant()
    def replies_released_for_their_severity(self) -> None:
        for r in self.c.s.replies:
            if r.status is ReplyStatus.approved and r.released_by is None:
                assert r.release_needed == rules.needs_release(self.c.s.severity)

    @invariant()
    def every_open_deadline_can_be_worked_on(self) -> None:
        c = self.c
        if c.s.phase is Phase.closed:
            return
        for d in c.s.deadlines:
            if not d.open or d.rule not in MEETS:
                continue
            assert any(self.anyone(n) for n in MEETS[d.rule]), (
                f"nobody can work towards {d.key} in phase {c.s.phase}"
            )

    @invariant()
    def no_dead_end(self) -> None:
        # Searching is the costly check: once per shape of the incident (what closing depends
        # on), not again after a consultation or a progress report.
        c = self.c
        if c.s.phase is Phase.closed:
            return
        shape = shape_of(c)
        if shape in self.searched:
            return
        self.searched.add(shape)
        assert closes(c), f"no way to close from phase {c.s.phase}"


# The full depth, 2000 sequences, runs in `make reliability` (YUQING_TEST_DEPTH=deep); `make test`
# runs 400 (some 10 000 steps) of the same derandomised search.
DEEP_EXAMPLES = 2000
SETTINGS = settings(
    max_examples=depth(quick=400, deep=DEEP_EXAMPLES),
    stateful_step_count=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def test_the_plan_holds_over_random_sequences() -> None:
    """R-RELEASE, R-ACCOUNT, R-ESCALATE, R-CLOSE: thousands of steps (tens of thousands deep),
    every invariant each time."""
    run_state_machine_as_test(IncidentMachine, settings=SETTINGS)


# --- mutants: each invariant catches a break of the rule it guards ---

# A mutant only has to be caught, not explained: no shrinking. At every depth the search may go as
# far as the deep run's: it stops at the first catch, so a catch costs what it costs either way.
MUTANT_SETTINGS = settings(SETTINGS, max_examples=DEEP_EXAMPLES, phases=[Stage.generate])


@contextmanager
def mutated(target: Any, name: str, replacement: Any) -> Iterator[None]:
    original = getattr(target, name)
    setattr(target, name, replacement)
    try:
        yield
    finally:
        setattr(target, name, original)


def _caught(match: str) -> None:
    with pytest.raises(AssertionError, match=match):
        run_state_machine_as_test(IncidentMachine, settings=MUTANT_SETTINGS)


def test_mutant_publish_without_release_is_caught() -> None:
    """R-RELEASE judged by the severity at approval, as before issue 14."""

    def publish(s: Any, roster: Any, tz: str) -> str | None:
        current = actions.current_reply(s)
        if current is None or current.status is not ReplyStatus.approved:
            return "未审定"
        return actions._unsigned(s, roster)  # the countersign kept: only the release goes

    with replaced("publish-reply", when=publish):
        _caught("R-RELEASE")


@contextmanager
def replaced(*names: str, **changes: Any) -> Iterator[None]:
    """The table with some entries' fields replaced (dataclasses.replace), restored after."""
    originals = {name: ACTIONS[name] for name in names}
    for name, rule_ in originals.items():
        ACTIONS[name] = dataclasses.replace(rule_, **changes)
    try:
        yield
    finally:
        ACTIONS.update(originals)


def test_mutant_second_record_after_a_lowered_severity_is_caught() -> None:
    """R-ACCOUNT: a re-triage that starts a missed deadline afresh (before issue 14)."""
    original = Incident._move_reply_deadlines

    def move(self: Incident) -> None:
        d = self.find(f"R-REPLY#{self.s.reply_round}")
        if d is not None and d.overdue:
            d.overdue = False
            d.escalation_step = 0
            d.last_step_at = None
            d.version += 1
        original(self)

    with mutated(Incident, "_move_reply_deadlines", move):
        _caught("two records for one deadline|chain")


def test_mutant_record_for_a_deadline_met_in_time_is_caught() -> None:
    """R-ACCOUNT: a timer that fires for a deadline already met."""
    original = core.next_event

    def next_event(d: Any, steps: Any, now: Any, **kw: Any) -> Any:
        if d.met_at is not None and not d.overdue and d.met_at < d.due_at:
            return core.Next("miss", d.due_at, summary=d.title)
        return original(d, steps, now, **kw)

    with mutated(core, "next_event", next_event):
        _caught("met in time|never missed|two records|chain")


def test_mutant_dead_end_after_subsiding_is_caught() -> None:
    """R-CLOSE: replies only while handling and tracking (before issue 14)."""
    replies = (
        "draft-reply",
        "approve-reply",
        "countersign-reply",
        "approve-release",
        "publish-reply",
    )
    machine = _subsided_with_a_result_owed()  # the rule as it is: no dead end
    machine.every_open_deadline_can_be_worked_on()
    machine.no_dead_end()
    with replaced(*replies, phases=(Phase.handling, Phase.tracking)):
        machine = _subsided_with_a_result_owed()
        with pytest.raises(AssertionError, match=r"no way to close|nobody can work"):
            machine.every_open_deadline_can_be_worked_on()
            machine.no_dead_end()


def _subsided_with_a_result_owed() -> IncidentMachine:
    """The sequence the audit found, through the machine's own rules (the catch must not hang on
    a random draw: which sequences Hypothesis draws depends on every module loaded, as it seeds
    its values with their constants)."""
    machine = IncidentMachine()
    machine.submit(lead=False, severity=None, oral=False, drill=False, late_minutes=0, trusted=True)
    c = machine.c
    triage = {"severity": "general", "category": "inquiry", "responsible_unit": "cjb"}
    apply(c, "triage", triage, "liu.yang")
    apply(c, "draft-reply", {"text": "处理意见", "kind": "official"}, "lin.feng")
    apply(c, "approve-reply", {"approve": True}, "sun.haitao")
    apply(c, "publish-reply", {"channel": "镇政府微博"}, "lin.feng")
    machine.conclude_and_report_calm()
    assert c.s.phase is Phase.summary
    return machine


def test_mutant_page_offering_what_the_core_refuses_is_caught() -> None:
    """What the page offers = what the core accepts: a field check the table does not know."""
    original = Incident._fields_refusal

    def fields(self: Incident, name: str, action: Any) -> str | None:
        if name == "consult":
            return "mutant: never"
        return original(self, name, action)

    with mutated(Incident, "_fields_refusal", fields):
        _caught("consult")


def test_mutant_publish_without_countersign_is_caught() -> None:
    """R-REVIEW 经各部门负责人审定: publishing on the lead unit head's approval alone."""

    def publish(s: Any, roster: Any, tz: str) -> str | None:
        current = actions.current_reply(s)
        if current is None or current.status is not ReplyStatus.approved:
            return "未审定"
        if rules.needs_release(s.severity) and current.released_by is None:
            return "未经领导小组审定"
        return None

    with replaced("publish-reply", when=publish):
        _caught("R-REVIEW")


def test_mutant_false_alarm_records_kept_in_the_figures_is_caught() -> None:
    """R-ACCOUNT: a withdrawal that leaves the false alarm's records counting (before issue 14)."""
    original = Incident.withdraw

    def withdraw(self: Incident, action: Any) -> None:
        version, self.s.rules_version = self.s.rules_version, 1
        try:
            original(self, action)
        finally:
            self.s.rules_version = version

    with mutated(Incident, "withdraw", withdraw):
        _caught("R-ACCOUNT")


def test_mutant_anonymous_report_believed_is_caught() -> None:
    """Issue 15: a core that believes every submission's stated times and units."""
    with mutated(Incident, "untrusted", property(lambda self: False)):
        _caught("untrusted|R-REPORT")


def test_mutant_escalation_to_someone_away_is_caught() -> None:
    """代理: a 督办 that ignores who is away reaches the absent person."""
    with mutated(core.Incident, "_routed", lambda self, person_id: person_id):
        _caught("R-ESCALATE to|asks")


def test_mutant_stand_in_unrecorded_is_caught() -> None:
    """代: a stand-in's approval recorded as if they acted in their own right."""

    def apply_(self: Incident, name: str, action: Any, now: datetime) -> None:
        self.now = now
        getattr(self, name.replace("-", "_"))(action)

    with mutated(core.Incident, "apply", apply_):
        _caught("代 unrecorded")
