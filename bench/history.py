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
    }


def lifecycle_plan(history: WorkflowHistory) -> LifecyclePlan:
    """Segment the history at each accepted update: the activities scheduled in it, grouped by the
    workflow task that scheduled them (one batch, run in parallel), the search-attribute upserts,
    and the timers it started and cancelled. A timer that fired becomes a short timer in the plan."""
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
            segments[-1].upserts += 1
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


def payloads(message: Message) -> tuple[int, int]:
    """(count, bytes) of every Payload inside a proto message: data plus metadata keys and values."""
    if message.DESCRIPTOR.full_name == PAYLOAD:
        meta = sum(len(k) + len(v) for k, v in message.metadata.items())  # type: ignore[attr-defined]
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
            dn, ds = payloads(item)
            n += dn
            size += ds
    return n, size


def sizes(history: WorkflowHistory) -> dict[str, Any]:
    """Events, the history as JSON (what `temporal workflow show -o json` gives) and its payloads,
    also by event type (EVENT_TYPE_ left off)."""
    count = total = 0
    by_type: Counter[str] = Counter()
    for e in history.events:
        n, size = payloads(e)
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
