"""待办 from the action table (issue 18): the rows plan/todo.py `waits` writes for an incident's
state are exactly what the workflow would accept and owes, for every person of the roster, over
the model checker's random states (tests/test_model.py). And R-ESCALATE: an overdue deadline's
escalation targets have it under 督办给我 while it is open."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import Phase as Stage
from hypothesis import settings
from hypothesis.stateful import invariant, run_state_machine_as_test

from plan import todo
from plan.actions import ACTIONS, Place, Who
from plan.enums import Phase, Severity
from tests.conftest import depth
from tests.test_model import PEOPLE, ROSTER, SETTINGS, IncidentMachine, apply, new_incident


def _listed(waits: list[todo.Wait], name: str, person: str) -> bool:
    return any(w.action == name and todo.matches(w, ROSTER, person) for w in waits)


class TodoMachine(IncidentMachine):
    @invariant()
    def todo_is_what_the_core_accepts(self) -> None:
        """R-REVIEW, R-RELEASE, R-OFFICE: listed in 待办 ⇔ `allows` (the workflow's validator's
        table) and owed; the rows name only rows' kinds of the table."""
        c = self.c
        waits = todo.waits(c.s, c.roster, c.place(), c.tz)
        for name, item in todo.TODO.items():
            owed = c.s.phase is not Phase.closed and item.owed(c.s)
            for person in PEOPLE:
                expected = owed and c.allows(name, person)
                assert _listed(waits, name, person) == expected, (name, person, c.s.phase)
        assert {w.action for w in waits} <= set(todo.TODO) | {todo.ESCALATED}
        assert all(w.kind == todo.TODO[w.action].kind for w in waits if w.action in todo.TODO)

    @invariant()
    def escalations_reach_their_targets(self) -> None:
        """R-ESCALATE: every target of a step taken on an open overdue deadline has it in 待办."""
        c = self.c
        waits = todo.waits(c.s, c.roster, c.place(), c.tz)
        for d in c.s.deadlines:
            open_late = d.open and d.overdue and c.s.phase is not Phase.closed
            for esc in c.s.escalations:
                if esc.deadline_key != d.key or esc.step > d.escalation_step:
                    continue
                for target in esc.targets:
                    found = any(
                        w.kind == todo.ESCALATED and w.deadline_key == d.key and w.person == target
                        for w in waits
                    )
                    assert found == (open_late and d.escalation_step > 0), (d.key, target)


def test_todo_lists_what_the_workflow_accepts() -> None:
    # 300 sequences in `make reliability` (YUQING_TEST_DEPTH=deep), 100 in `make test`.
    examples = depth(quick=100, deep=300)
    run_state_machine_as_test(TodoMachine, settings=settings(SETTINGS, max_examples=examples))


def test_each_todo_action_is_in_the_table() -> None:
    assert set(todo.TODO) <= set(ACTIONS)


def test_a_release_waits_for_the_leader_and_a_draft_for_the_head() -> None:
    """The issue's scenario, in the core: an urgent reply drafted and approved by the unit waits
    for the leading group's approve-release (待我审批 for the leader, not for the head)."""
    c = new_incident(lead=False, severity=Severity.urgent, oral=False, drill=False, late_minutes=0)
    assert _listed(todo.waits(c.s, c.roster, c.place()), "triage", "liu.yang")
    assert not _listed(todo.waits(c.s, c.roster, c.place()), "triage", "lin.feng")
    apply(
        c,
        "triage",
        {"severity": "urgent", "category": "hype", "responsible_unit": "cjb"},
        "liu.yang",
    )
    w = todo.waits(c.s, c.roster, c.place())
    assert _listed(w, "draft-reply", "lin.feng")
    assert not _listed(w, "triage", "liu.yang")
    apply(c, "draft-reply", {"text": "回复", "kind": "official"}, "lin.feng")
    w = todo.waits(c.s, c.roster, c.place())
    assert _listed(w, "approve-reply", "sun.haitao")
    assert not _listed(w, "approve-reply", "lin.feng")
    reply = next(x for x in w if x.action == "approve-reply")
    assert reply.deadline_key and reply.deadline_key.startswith("R-REPLY") and reply.due_at
    apply(c, "approve-reply", {"approve": True}, "sun.haitao")
    w = todo.waits(c.s, c.roster, c.place())
    assert _listed(w, "approve-release", "wang.jianguo")
    assert not _listed(w, "approve-release", "sun.haitao")
    assert all(x.kind == todo.APPROVE for x in w if x.action == "approve-release")


def test_an_escalation_reaches_the_leader_until_the_deadline_is_met() -> None:
    """R-ESCALATE: the leader, reached at a step of the chain, has it under 督办给我."""
    c = new_incident(lead=False, severity=Severity.urgent, oral=False, drill=False, late_minutes=0)
    apply(
        c,
        "triage",
        {"severity": "urgent", "category": "hype", "responsible_unit": "cjb"},
        "liu.yang",
    )
    c.advance(c.now + timedelta(days=3))
    w = todo.waits(c.s, c.roster, c.place())
    late = [x for x in w if x.kind == todo.ESCALATED]
    assert late, [d.key for d in c.s.deadlines]
    assert any(x.person == ROSTER.leading_group.leader for x in late)


def test_mutant_head_rows_for_the_whole_unit_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The invariant can fail: 待办 offering the head's approval to the unit's staff."""
    real = todo.who_rows

    def loose(
        who: Who, place: Place, roster: Any = None
    ) -> list[tuple[str | None, bool, str | None, str | None]]:
        return [(u, False, r, p) for u, _head, r, p in real(who, place, roster)]

    monkeypatch.setattr(todo, "who_rows", loose)
    with pytest.raises(AssertionError):
        run_state_machine_as_test(
            TodoMachine, settings=settings(SETTINGS, max_examples=300, phases=[Stage.generate])
        )
