"""RetentionWorkflow: the daily 归档 run (issue 19, item 4), started by a Temporal Schedule
(starter/schedules.py) or by hand.

One activity, `apply_retention`, does the work in the store: closed incidents whose archiving
failed are archived, and those closed longer ago than YUQING_PERSONAL_DATA_RETENTION_DAYS have
the public's personal data redacted, the redaction recorded and the case file archived again. The
instant is the workflow's start, so a retried activity decides as the first attempt did; every
write is keyed, so a second run the same day changes nothing.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from plan.records import RetentionInput, RetentionOutcome, RetentionRequest

RETENTION_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
)


@workflow.defn
class RetentionWorkflow:
    """Archive what is missing, then redact what is past the retention period."""

    @workflow.run
    async def run(self, inp: RetentionInput) -> RetentionOutcome:
        at = workflow.info().workflow_start_time
        return await workflow.execute_activity(
            "apply_retention",
            RetentionRequest(at=at, by=inp.by),
            result_type=RetentionOutcome,
            start_to_close_timeout=timedelta(minutes=30),
            schedule_to_close_timeout=timedelta(hours=6),
            retry_policy=RETENTION_RETRY,
            summary="归档与个人信息保存期限检查",
        )
