"""Reading workflow histories: what one of ours did (for the bare baseline's plan) and how big it is."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory

from bench.bare import LifecyclePlan, Segment

PAYLOAD = "temporal.api.common.v1.Payload"
PATCH_MARKER = "core_patch"  # workflow.patched; a local activity's marker is another
# The search attribute the SDK upserts with each patch (so the bare's patches make those upserts).
CHANGE_VERSION = "TemporalChangeVersion"


# The Temporal steps the lifecycle's baseline makes as ours did, which must match in total over a
# run (exactly, but for `STEP_TOLERANCE`), and those whose number depends on timing (how effects
# and completions group into workflow tasks), which must match within `TIMING_TOLERANCE`.
EXACT_STEPS = (
    "updates_accepted",
    "activities_scheduled",
    "timers_started",
    "timers_fired",
    "timers_canceled",
    "search_attribute_upserts",
    "markers",
)
TIMING_STEPS = ("workflow_tasks", "events")
STEP_TOLERANCE = 0.0
# Ours' activities write to the store, so their completions come later than the bare's no-ops and
# share a workflow task with the next update less often: ours has some 16-23 % more workflow tasks
# (each 3 events; about 2 more per lifecycle incident) for the same commands, the more so the quieter
# the machine. That difference is part of what ours costs; it is shown, and bounded.
TIMING_TOLERANCE = 0.10  # events
TASK_TOLERANCE = 0.30  # workflow tasks


def counts(history: WorkflowHistory) -> dict[str, int]:
    """The events that the baseline has to match, and the total."""
    by_type = Counter(EventType.Name(e.event_type) for e in history.events)
    return {
        "events": len(history.events),
        "updates_accepted": by_type["EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED"],
        "activities_scheduled": by_type["EVENT_TYPE_ACTIVITY_TASK_SCHEDULED"],
        "timers_started": by_type["EVENT_TYPE_TIMER_STARTED"],
        "timers_fired": by_type["EVENT_TYPE_TIMER_FIRED"],
        "timers_canceled": by_type["EVENT_TYPE_TIMER_CANCELED"],
        "search_attribute_upserts": by_type["EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES"],
        "workflow_tasks": by_type["EVENT_TYPE_WORKFLOW_TASK_COMPLETED"],
        # Neither side should have these; counted so that a difference shows where it comes from.
        "workflow_tasks_failed": by_type["EVENT_TYPE_WORKFLOW_TASK_FAILED"]
        + by_type["EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT"],
        "activities_failed_or_timed_out": by_type["EVENT_TYPE_ACTIVITY_TASK_FAILED"]
        + by_type["EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT"],
        "markers": by_type["EVENT_TYPE_MARKER_RECORDED"],
        "signals": by_type["EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED"],
        "children": by_type["EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED"],
    }


def totals(all_counts: list[dict[str, int]]) -> dict[str, int]:
    """The sum of `counts` over many histories."""
    total: Counter[str] = Counter()
    for c in all_counts:
        total.update(c)
    return dict(total)


def compare_totals(
    ours: dict[str, int],
    bare: dict[str, int],
    *,
    step_tolerance: float = STEP_TOLERANCE,
    timing_tolerance: float = TIMING_TOLERANCE,
    task_tolerance: float = TASK_TOLERANCE,
) -> list[dict[str, Any]]:
    """Each step's totals side by side, with the relative difference (bare - ours) / ours and
    whether it is within its tolerance."""
    rows = []
    for key in (*EXACT_STEPS, *TIMING_STEPS, "workflow_tasks_failed", "signals"):
        o, b = ours.get(key, 0), bare.get(key, 0)
        tolerance = (
            task_tolerance
            if key == "workflow_tasks"
            else timing_tolerance
            if key in TIMING_STEPS
            else step_tolerance
        )
        diff = (b - o) / o if o else (0.0 if b == o else float("inf"))
        rows.append(
            {
                "step": key,
                "ours": o,
                "bare": b,
                "difference": diff,
                "tolerance": tolerance,
                "ok": abs(diff) <= tolerance + 1e-12,
            }
        )
    return rows


def lifecycle_plan(history: WorkflowHistory) -> LifecyclePlan:
    """Segment the history at each accepted update: the activities scheduled in it, grouped by the
    workflow task that scheduled them (one batch, run in parallel), the search-attribute upserts,
    and the timers it started and cancelled, the version markers (`workflow.patched`) and local
    activities. A timer that fired becomes a short timer in the plan."""
    segments = [Segment()]
    batches: list[dict[int, int]] = [{}]
    started: dict[str, int] = {}  # timer id -> segment
    fired: set[str] = set()
    canceled: dict[str, int] = {}  # timer id -> segment
    for e in history.events:
        kind = e.event_type
        if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            segments.append(Segment())
            batches.append({})
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            task = e.activity_task_scheduled_event_attributes.workflow_task_completed_event_id
            batches[-1][task] = batches[-1].get(task, 0) + 1
        elif kind == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            fields = e.upsert_workflow_search_attributes_event_attributes.search_attributes
            if set(fields.indexed_fields) != {CHANGE_VERSION}:  # else the patch's own upsert
                segments[-1].upserts += 1
        elif kind == EventType.EVENT_TYPE_MARKER_RECORDED:
            if e.marker_recorded_event_attributes.marker_name == PATCH_MARKER:
                segments[-1].patches += 1
            else:
                segments[-1].local_activities += 1
        elif kind == EventType.EVENT_TYPE_TIMER_STARTED:
            started[e.timer_started_event_attributes.timer_id] = len(segments) - 1
        elif kind == EventType.EVENT_TYPE_TIMER_FIRED:
            fired.add(e.timer_fired_event_attributes.timer_id)
        elif kind == EventType.EVENT_TYPE_TIMER_CANCELED:
            canceled[e.timer_canceled_event_attributes.timer_id] = len(segments) - 1
    for segment, grouped in zip(segments, batches, strict=True):
        segment.batches = list(grouped.values())
    long_index = 0
    for timer_id, seg in started.items():  # in start order
        if timer_id in fired:
            segments[seg].short_timers += 1
            continue
        segments[seg].long_timers += 1
        if timer_id in canceled:
            segments[canceled[timer_id]].cancel.append(long_index)
        long_index += 1
    return LifecyclePlan(updates=len(segments) - 1, segments=segments)


def payloads(message: Message, encodings: Counter[str] | None = None) -> tuple[int, int]:
    """(count, bytes) of every Payload inside a proto message: data plus metadata keys and values;
    each payload's `encoding` counted into `encodings` (binary/encrypted: the codec was on)."""
    if message.DESCRIPTOR.full_name == PAYLOAD:
        metadata = message.metadata  # type: ignore[attr-defined]
        if encodings is not None:
            encodings[metadata.get("encoding", b"").decode(errors="replace")] += 1
        meta = sum(len(k) + len(v) for k, v in metadata.items())
        return 1, len(message.data) + meta  # type: ignore[attr-defined]
    n = size = 0
    for fd, value in message.ListFields():
        if fd.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        items: Any
        if fd.message_type.GetOptions().map_entry:
            value_field = fd.message_type.fields_by_name["value"]
            if value_field.type != FieldDescriptor.TYPE_MESSAGE:
                continue
            items = value.values()
        elif fd.is_repeated:
            items = value
        else:
            items = [value]
        for item in items:
            dn, ds = payloads(item, encodings)
            n += dn
            size += ds
    return n, size


def sizes(history: WorkflowHistory) -> dict[str, Any]:
    """Events, the history as JSON (what `temporal workflow show -o json` gives) and its payloads,
    also by event type (EVENT_TYPE_ left off)."""
    count = total = 0
    by_type: Counter[str] = Counter()
    encodings: Counter[str] = Counter()
    for e in history.events:
        n, size = payloads(e, encodings)
        count += n
        total += size
        if size:
            by_type[EventType.Name(e.event_type).removeprefix("EVENT_TYPE_")] += size
    return {
        "events": len(history.events),
        "json_bytes": len(history.to_json().encode()),
        "payloads": count,
        "payload_bytes": total,
        "payload_bytes_by_event": dict(by_type),
        "encodings": dict(encodings),
    }


def after_timer(history: WorkflowHistory, t0: datetime) -> dict[str, float]:
    """Seconds after t0 (server event times) of what follows the first timer that fires: the
    workflow task that handles it (started, completed), then each activity type's first run after
    it (scheduled, started, completed), in the order they were scheduled."""
    out: dict[str, float] = {}
    events = list(history.events)
    fired = next(
        (i for i, e in enumerate(events) if e.event_type == EventType.EVENT_TYPE_TIMER_FIRED), None
    )
    if fired is None:
        return out

    def at(e: Any) -> float:
        return (e.event_time.ToDatetime(tzinfo=UTC) - t0).total_seconds()

    out["timer_fired"] = at(events[fired])
    scheduled: dict[int, str] = {}  # event id -> activity type
    for e in events[fired + 1 :]:
        kind = e.event_type
        if kind == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            out.setdefault("workflow_task_started", at(e))
        elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            out.setdefault("workflow_task_completed", at(e))
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            name = e.activity_task_scheduled_event_attributes.activity_type.name
            if f"{name}_scheduled" not in out:
                scheduled[e.event_id] = name
                out[f"{name}_scheduled"] = at(e)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            name = scheduled.get(e.activity_task_started_event_attributes.scheduled_event_id, "")
            if name:
                out[f"{name}_started"] = at(e)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            name = scheduled.get(e.activity_task_completed_event_attributes.scheduled_event_id, "")
            if name:
                out[f"{name}_completed"] = at(e)
    return out
