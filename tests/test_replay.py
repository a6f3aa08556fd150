"""The replay gate: saved histories of complete incidents must replay against today's code, so a
change that would break running incidents fails here. Record them with
`python -m tests.record_histories` (see the README's contributing section)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from runtime.payloads import compact_data_converter
from tests.replay_mutants import WithoutRecord, WithoutRecordPatched
from workflows.incident import IncidentWorkflow

HISTORIES = sorted((Path(__file__).resolve().parent / "histories").glob("*.json"))


def test_histories_are_kept() -> None:
    assert {p.stem for p in HISTORIES} >= {
        "inquiry",
        "urgent",
        "withdrawn_lead",
        "attached",
        "signed",
    }


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_saved_history_replays(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    events = json.loads(text)["events"]
    # A complete incident: the history ends with the workflow's completion.
    assert events[-1]["eventType"] in (
        "EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED",
        "WorkflowExecutionCompleted",
    )
    history = WorkflowHistory.from_json(path.stem, text)
    replayer = Replayer(workflows=[IncidentWorkflow], data_converter=compact_data_converter)
    result = await replayer.replay_workflow(history)
    assert result.replay_failure is None


# The gate itself: a change that drops an activity fails replay unless it is behind patched().


async def _replay(workflow_class: type, path: Path) -> Exception | None:
    history = WorkflowHistory.from_json(path.stem, path.read_text(encoding="utf-8"))
    replayer = Replayer(workflows=[workflow_class], data_converter=compact_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    return result.replay_failure


# Histories of the steps written one activity after another (before ONE_WRITE_PATCH), where
# dropping `record` leaves a gap the replay must notice.
# Named, not "the first two": a history recorded later (with one write per step) would not do.
IN_STEPS = [p for p in HISTORIES if p.stem in ("continued", "fabrication")]


@pytest.mark.parametrize("path", IN_STEPS, ids=[p.stem for p in IN_STEPS])
async def test_the_gate_catches_a_removed_activity(path: Path) -> None:
    failure = await _replay(WithoutRecord, path)
    assert failure is not None, "replay passed although an activity was removed"
    assert "nondetermin" in str(failure).lower() or "Nondeterminism" in type(failure).__name__
    assert await _replay(WithoutRecordPatched, path) is None
