"""Delivering one notification through one external channel, from any workflow.

Retried with backoff until it is sent, refused (a non-retryable 4xx) or the give-up period ends;
a failure is recorded on its outbox row and the office is told which channel failed for whom.
Each delivery given up counts on the worker's Prometheus endpoint: `yuqing_deliveries_given_up`
by `channel` kind, `refused` (a refusal, or the give-up period ended) and `drill`.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from plan.outbox import DELIVERY_RETRY_MAX_INTERVAL, deliveries_for
    from plan.records import DeliverRequest, DeliveryFailure, Notification

# Writes to the read model and to people must eventually succeed: retried without limit, backing
# off to once a minute, so a database or network outage delays them but never loses them.
RETRY_FOREVER = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
)
ACTIVITY_TIMEOUT = timedelta(seconds=30)

# An external delivery: backing off to once every five minutes until the give-up period ends; a
# refusal is final. A receiver's Retry-After sets the next interval, up to the same five minutes.
DELIVERY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=DELIVERY_RETRY_MAX_INTERVAL,
    non_retryable_error_types=["DeliveryRefused"],
)

# External channels are tried on a task queue of their own (served by its own worker slots, see
# runtime/worker.py), so the retries of a receiver that is down never queue ahead of the inbox, the read
# model or an escalation record on the incident's queue. Workflows that scheduled deliveries before
# this replay without the marker and keep their deliveries on their own queue.
OWN_QUEUE_PATCH = "deliveries-on-their-own-task-queue"
DELIVERY_QUEUE_SUFFIX = "-deliveries"


def delivery_task_queue(task_queue: str) -> str:
    """The task queue external deliveries run on, beside a workflow task queue."""
    return task_queue + DELIVERY_QUEUE_SUFFIX


async def deliver(request: DeliverRequest, office: list[str], give_up_minutes: float) -> str | None:
    """Deliver; None when sent, else the reason it failed (already recorded and reported)."""
    own_queue = workflow.patched(OWN_QUEUE_PATCH)
    try:
        await workflow.execute_activity(
            "deliver",
            request,
            task_queue=delivery_task_queue(workflow.info().task_queue) if own_queue else None,
            start_to_close_timeout=timedelta(minutes=1),
            schedule_to_close_timeout=timedelta(minutes=give_up_minutes),
            retry_policy=DELIVERY_RETRY,
            summary=f"{request.note.rule} 发送：{request.channel.kind} → {request.recipient.name}"[
                :200
            ],
        )
        return None
    except ActivityError as err:
        cause = err.cause
        refused = isinstance(cause, ApplicationError) and cause.type == "DeliveryRefused"
        reason = str(cause.message if isinstance(cause, ApplicationError) else cause or err)
        if not refused:
            reason = f"{give_up_minutes:g}分钟内未能送达（{reason}）"
        # The workflow's meter: not counted again when the history replays.
        workflow.metric_meter().create_counter(
            "yuqing_deliveries_given_up", "External deliveries given up, by channel kind"
        ).add(
            1,
            {
                "channel": request.channel.kind,
                "refused": str(refused).lower(),
                "drill": str(request.note.drill).lower(),
            },
        )
        await workflow.execute_activity(
            "delivery_failed",
            DeliveryFailure(request=request, reason=reason, given_up=not refused, office=office),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=RETRY_FOREVER,
            summary=f"通知发送失败：{request.channel.kind} → {request.recipient.name}"[:200],
        )
        return reason


async def send_all(
    note: Notification, office: list[str], give_up_minutes: float, summary: str
) -> list[str | None]:
    """A notification outside an incident (a digest, a 通联测试): its inbox and outbox rows,
    then every external channel at once; each channel's failure reason, or None."""
    await workflow.execute_activity(
        "notify",
        note,
        start_to_close_timeout=ACTIVITY_TIMEOUT,
        retry_policy=RETRY_FOREVER,
        summary=summary[:200],
    )
    return list(
        await asyncio.gather(
            *(deliver(request, office, give_up_minutes) for request in deliveries_for(note))
        )
    )
