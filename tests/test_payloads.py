"""Compact payloads (runtime/payloads.py, issue 21): the workflow's own inputs leave out fields at
their defaults and read back the same; what other programs read stays whole; and no default of a
compact model changes unnoticed, since a saved history's payload means it."""

from __future__ import annotations

import json
import typing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from pydantic_core import PydanticUndefined, to_json
from temporalio.client import WorkflowHistory

from plan import digest, models, reach_test, records
from plan.models import ActionDone, IncidentInput, IncidentView, Phase, Submission
from runtime.payloads import COMPACT_FLAG, compact_data_converter, is_compact

HISTORIES = Path(__file__).parent / "histories"
DEFAULTS = Path(__file__).parent / "payload_defaults.json"

COMPACT_MODELS = [
    models.IncidentInput,
    models.Absences,
    models.DeliverRequest,
    models.Notification,
    records.RecordRequest,
    records.EscalateRequest,
]


# Written whole whatever their value (a model_serializer writes them again): the default is the
# shipped plan file as it is now, which may change under a running incident.
ALWAYS_WRITTEN = {"plan.models.IncidentInput.plan"}


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def reachable(roots: list[type[BaseModel]]) -> list[type[BaseModel]]:
    """Every model a compact payload can hold, the roots included (each once, by name)."""
    seen: dict[str, type[BaseModel]] = {}
    todo = list(roots)
    while todo:
        model = todo.pop()
        name = f"{model.__module__}.{model.__qualname__}"
        if name in seen:
            continue
        seen[name] = model
        for sub in model.__subclasses__():
            todo.append(sub)
        for field_name, field in model.model_fields.items():
            if f"{name}.{field_name}" not in ALWAYS_WRITTEN:
                todo += _models_in(field.annotation)
    return [seen[k] for k in sorted(seen)]


# Compact by inheritance (Notification's): named so the walk finds them however many modules
# the test run has imported.
SUBCLASSES = [digest.DigestNote, reach_test.ReachTestNote]


def defaults() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for model in reachable(COMPACT_MODELS + SUBCLASSES):
        for name, field in model.model_fields.items():
            if f"{model.__module__}.{model.__qualname__}.{name}" in ALWAYS_WRITTEN:
                continue
            if field.default is not PydanticUndefined:
                value = field.default
            elif field.default_factory is not None:
                value = field.default_factory()  # type: ignore[call-arg]
            else:
                continue
            key = f"{model.__module__}.{model.__qualname__}.{name}"
            out[key] = json.loads(to_json(value))
    return out


def test_no_default_of_a_compact_payload_changes_unnoticed() -> None:
    """A compact payload reads back with each left-out field at its default: changing a default
    changes what every saved history says. Add a field instead; a new field only (its default
    then read from older payloads) is written here by `pytest --update-payload-defaults`."""
    now = defaults()
    kept = json.loads(DEFAULTS.read_text())
    changed = {k: (kept[k], now[k]) for k in kept.keys() & now.keys() if kept[k] != now[k]}
    assert not changed, f"defaults changed (saved history payloads would change meaning): {changed}"
    gone = kept.keys() - now.keys()
    added = now.keys() - kept.keys()
    assert not gone and not added, (
        f"fields with defaults added {sorted(added)} or removed {sorted(gone)}: check they are "
        f"new fields (not renamed), then write {DEFAULTS.name} again: "
        f"python -c 'import tests.test_payloads as t; t.write()'"
    )


def write() -> None:
    DEFAULTS.write_text(json.dumps(defaults(), ensure_ascii=False, indent=1, sort_keys=True) + "\n")


def test_the_compact_models_are_the_ones_marked() -> None:
    marked = {
        m
        for m in reachable([BaseModel])  # type: ignore[list-item]
        if m.__module__.startswith("plan.") and m.__dict__.get(COMPACT_FLAG)
    }
    assert marked == set(COMPACT_MODELS)


ACTIVITY_INPUTS: dict[str, type[BaseModel]] = {
    "record": records.RecordRequest,
    "escalate": records.EscalateRequest,
    "notify": models.Notification,
    "deliver": models.DeliverRequest,
}


def _saved_payloads() -> list[tuple[str, type[BaseModel], bytes]]:
    """Every payload of a compact model in the saved histories: start and continue-as-new
    inputs, activity inputs, the absences signal."""
    out = []
    for path in sorted(HISTORIES.glob("*.json")):
        history = WorkflowHistory.from_json(path.stem, path.read_text())
        for i, e in enumerate(history.events):
            found: list[tuple[type[BaseModel], Any]] = []
            if e.HasField("workflow_execution_started_event_attributes"):
                a = e.workflow_execution_started_event_attributes
                found.append((models.IncidentInput, a.input))
            elif e.HasField("workflow_execution_continued_as_new_event_attributes"):
                a2 = e.workflow_execution_continued_as_new_event_attributes
                found.append((models.IncidentInput, a2.input))
            elif e.HasField("activity_task_scheduled_event_attributes"):
                a3 = e.activity_task_scheduled_event_attributes
                if a3.activity_type.name in ACTIVITY_INPUTS:
                    found.append((ACTIVITY_INPUTS[a3.activity_type.name], a3.input))
            elif e.HasField("workflow_execution_signaled_event_attributes"):
                a4 = e.workflow_execution_signaled_event_attributes
                if a4.signal_name == "absences_changed":
                    found.append((models.Absences, a4.input))
            for model, payloads in found:
                out += [(f"{path.stem}-{i}", model, p.data) for p in payloads.payloads]
    return out


SAVED = _saved_payloads()


@pytest.mark.parametrize(("model", "data"), [s[1:] for s in SAVED], ids=[s[0] for s in SAVED])
def test_a_saved_payload_written_compactly_reads_back_the_same(
    model: type[BaseModel], data: bytes
) -> None:
    """Every compact model's payload in the saved histories (their roster snapshots with
    channels in full and by reference, notifications, deliveries, continued states), written
    compactly, reads back equal and is no longer than before."""
    value = model.model_validate_json(data)
    converter = compact_data_converter.payload_converter
    (payload,) = converter.to_payloads([value])
    assert len(payload.data) <= len(value.model_dump_json().encode())
    (back,) = converter.from_payloads([payload], [model])
    assert back == value


def test_the_saved_payloads_cover_every_compact_model() -> None:
    assert {m for _, m, _ in SAVED} == set(COMPACT_MODELS)


def test_the_plan_is_written_even_when_it_is_the_shipped_one() -> None:
    """Its default is the shipped plan file as it is now: an incident started with it must keep
    it when the file changes (a new plan version), so it is never left out."""
    from plan.roster import load_roster
    from plan.spec import shipped
    from tests.conftest import EXAMPLE_ROSTER
    from tests.helpers import submission

    inp = IncidentInput(
        incident_id="YQ-1",
        submission=Submission.model_validate(submission()),
        received_at=datetime(2026, 12, 1, tzinfo=UTC),
        roster=load_roster(EXAMPLE_ROSTER).public(),
    )
    assert inp.plan == shipped()
    (payload,) = compact_data_converter.payload_converter.to_payloads([inp])
    assert json.loads(payload.data)["plan"] == json.loads(shipped().model_dump_json())
    # A plan of its own is written whole too, its fields at PlanSpec's defaults included.
    own = shipped().model_copy(update={"version": "2025.1"})
    (payload,) = compact_data_converter.payload_converter.to_payloads(
        [inp.model_copy(update={"plan": own})]
    )
    assert json.loads(payload.data)["plan"] == json.loads(own.model_dump_json())


def test_what_other_programs_read_stays_whole() -> None:
    """A query's view, an update's answer: every field, defaults included."""
    assert not is_compact(IncidentView.model_construct())
    done = ActionDone(incident_id="YQ-1", run_id="r", version=1, phase=Phase.triage, latest=None)
    (payload,) = compact_data_converter.payload_converter.to_payloads([done])
    assert json.loads(payload.data)["latest"] is None


def test_equal_rosters_and_plans_read_back_as_one_object() -> None:
    """Issue 21: every cached workflow keeps its input for the life of its run; the roster
    snapshot and the plan, equal across nearly all of a town's incidents, are one object."""
    data = [d for _, m, d in SAVED if m is IncidentInput]
    converter = compact_data_converter.payload_converter
    a = converter.from_payloads(
        converter.to_payloads([IncidentInput.model_validate_json(data[0])]), [IncidentInput]
    )[0]
    b = converter.from_payloads(
        converter.to_payloads([IncidentInput.model_validate_json(data[0])]), [IncidentInput]
    )[0]
    assert a == b and a is not b
    assert a.roster is b.roster and a.plan is b.plan
    # A different roster stays its own.
    other = a.roster.model_copy(update={"town": "别的镇"})
    c = converter.from_payloads(
        converter.to_payloads([a.model_copy(update={"roster": other})]), [IncidentInput]
    )[0]
    assert c.roster == other and c.roster is not a.roster


def test_only_frozen_models_are_shared() -> None:
    from runtime.payloads import one_copy

    with pytest.raises(TypeError, match="not frozen"):
        one_copy(IncidentView.model_construct())
