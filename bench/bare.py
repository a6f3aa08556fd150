"""The bare baseline: workflows with no logic, doing the same amount of Temporal work as ours.

- `BareLifecycleWorkflow` takes a `LifecyclePlan` counted from one of our completed incidents
  (bench.history.lifecycle_plan; each bare incident of the lifecycle step replays the plan of one
  of ours from the same run, so the totals match): it accepts `plan.updates` updates whose handler only counts, and
  after each one (and once at the start, as ours opens its incident) its main loop runs that
  segment's search-attribute upserts (ours keeps the Temporal UI's columns current: a Temporal
  step like a timer) and no-op activities, batch after batch, each batch in parallel. Timers follow ours segment by segment, from a second loop so
  that an update cancels them at once, as a moved or met deadline cancels ours: a "long" timer
  (one hour) is started where ours started one and cancelled in the segment where ours was
  cancelled, or left open at completion as ours was; a timer that fired in ours is a short one
  (0.1 s) here, firing early. It completes when the last update's segment is done.
- `BareTimerWorkflow` sleeps until an instant (one timer), upserts a search attribute (as ours
  marks the incident overdue) and then runs one activity that writes a row (`bench_marks`) with the workflow's time at that moment, through SQLAlchemy like the store's
  writes: the baseline of an escalation step (a timer, then I/O).

Their worker and activities are in bench.bare_worker (kept out of this module, which the workflow
sandbox imports afresh for each run, as it does workflows/incident.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from workflows.search_attributes import SA_PHASE

# The bench's dev server registers ours; the baseline writes one of them with values of its own.
BARE_STEP = SA_PHASE

# As ours (workflows/delivery.py): retried without limit, 30 s per attempt.
RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
)
ACTIVITY_TIMEOUT = timedelta(seconds=30)
LONG_TIMER = timedelta(hours=1)
SHORT_TIMER = timedelta(seconds=0.1)


@dataclass
class Segment:
    """What follows one update (segment 0: the start)."""

    batches: list[int] = field(default_factory=list)  # activity batches, each run in parallel
    long_timers: int = 0  # started here; cancelled later (see `cancel`) or left open
    short_timers: int = 0  # started here; they fire (early)
    cancel: list[int] = field(default_factory=list)  # long timers (by start order) cancelled here
    upserts: int = 0  # search-attribute upserts (ours keeps the Temporal UI's columns current)
    patches: int = 0  # version markers (ours' `workflow.patched`: a marker in the history each)
    local_activities: int = 0  # ours' local activities (a marker each), run one after another


@dataclass
class LifecyclePlan:
    updates: int
    segments: list[Segment]  # updates + 1 of them


@dataclass
class Mark:
    workflow_id: str
    at: datetime  # workflow time after the timer


@workflow.defn
class BareLifecycleWorkflow:
    def __init__(self) -> None:
        self.accepted = 0
        self.upserted = 0
        self.patched = 0
        self.timers: list[asyncio.Task[None]] = []
        self.short: list[asyncio.Task[None]] = []

    @workflow.query
    def count(self) -> int:
        """What ours answers `view` with: here only the count (the submit path queries once)."""
        return self.accepted

    @workflow.update
    def step(self) -> int:
        self.accepted += 1
        return self.accepted

    @workflow.run
    async def run(self, plan: LifecyclePlan) -> int:
        timers = asyncio.create_task(self._timers(plan))
        await self._activities(plan.segments[0])
        done = 0
        while done < plan.updates:
            await workflow.wait_condition(lambda done=done: self.accepted > done)
            done += 1
            await self._activities(plan.segments[done])
        await timers
        # Every timer that fired in ours fires here too, even one started in the last segment.
        await asyncio.gather(*self.short)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.accepted

    async def _activities(self, segment: Segment) -> None:
        for _ in range(segment.patches):
            self.patched += 1
            workflow.patched(f"bare-{self.patched}")
        for _ in range(segment.upserts):
            # One keyword each time, a new value (as ours writes only what changed).
            self.upserted += 1
            workflow.upsert_search_attributes([BARE_STEP.value_set(f"bare-{self.upserted}")])
        for _ in range(segment.local_activities):
            await workflow.execute_local_activity(
                "bench_noop", start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=RETRY
            )
        for size in segment.batches:
            await asyncio.gather(
                *(
                    workflow.execute_activity(
                        "bench_noop", start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=RETRY
                    )
                    for _ in range(size)
                )
            )

    async def _timers(self, plan: LifecyclePlan) -> None:
        for i, segment in enumerate(plan.segments):
            if i:
                await workflow.wait_condition(lambda i=i: self.accepted >= i)
            for index in segment.cancel:
                self.timers[index].cancel()
            for _ in range(segment.long_timers):
                self.timers.append(asyncio.create_task(_sleep(LONG_TIMER)))
            for _ in range(segment.short_timers):
                self.short.append(asyncio.create_task(_sleep(SHORT_TIMER)))


async def _sleep(duration: timedelta) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        await workflow.sleep(duration)


@workflow.defn
class BareTimerWorkflow:
    @workflow.run
    async def run(self, t0: datetime) -> None:
        wait = t0 - workflow.now()
        if wait > timedelta(0):
            await workflow.sleep(wait)
        # Ours marks the incident overdue in the same workflow task (a search-attribute upsert).
        workflow.upsert_search_attributes([BARE_STEP.value_set("bare-overdue")])
        await workflow.execute_activity(
            "bench_mark",
            Mark(workflow_id=workflow.info().workflow_id, at=workflow.now()),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=RETRY,
        )
