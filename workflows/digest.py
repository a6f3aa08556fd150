"""DigestWorkflow: the daily digest or the weekly accountability summary, started by a Temporal
Schedule (starter/schedules.py) or by hand.

The workflow decides the digest's instant and day (when it started, in the town's zone); the
`build_digest` activity reads the store and the roster and composes the texts; the incidents'
`notify` and `deliver` activities send it. The notification key is the digest's day (or ISO week),
so a re-run that day or week writes no second inbox message and sends nothing twice.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from plan.digest import DigestInput, DigestNote, DigestOutcome, DigestRequest, local_day
    from workflows.delivery import ACTIVITY_TIMEOUT, send_all

# Reading the store: retried for a while (a database outage), never for a broken roster.
BUILD_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    non_retryable_error_types=["RosterError"],
)


@workflow.defn
class DigestWorkflow:
    """Build the digest, write the inbox and outbox rows, then deliver each external channel."""

    @workflow.run
    async def run(self, inp: DigestInput) -> DigestOutcome:
        at = workflow.info().workflow_start_time
        day = inp.day or local_day(at, inp.timezone)
        label = "每日舆情简报" if inp.kind == "daily" else "每周问责汇总"
        built: DigestNote = await workflow.execute_activity(
            "build_digest",
            DigestRequest(
                kind=inp.kind,
                at=at,
                day=day,
                timezone=inp.timezone,
                roster=inp.roster,
                roster_file=inp.roster_file,
                public_url=inp.public_url,
            ),
            result_type=DigestNote,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            schedule_to_close_timeout=timedelta(hours=2),
            retry_policy=BUILD_RETRY,
            summary=f"生成{label}（{day.isoformat()}）",
        )
        note = built.notification()
        failures = await send_all(
            note, built.office, inp.delivery_give_up_minutes, f"{note.rule} 通知：{note.subject}"
        )
        return DigestOutcome(
            key=note.key,
            recipients=len(note.recipients),
            sent=sum(1 for f in failures if f is None),
            failed=sum(1 for f in failures if f is not None),
        )
