"""ReachTestWorkflow: the 通联测试 (issue 20, item 5), started by a Temporal Schedule monthly
(starter/schedules.py) or on demand (`yuqing reach-test`, POST /api/reach-tests).

The run's id is its workflow id. `prepare_reach_test` reads the worker's roster and writes the run's
rows; the incidents' `notify` and `deliver` activities send the message to every leading-group
member, office member and unit head, on each of their channels separately (keys: run + person +
channel, so a re-run sends nothing twice); then `settle_reach_test` copies each channel's outcome
from the outbox to the run's rows. Waiting for the people to confirm is not the workflow's: they
confirm from their inbox whenever they read it, and the dashboard reads the rows.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from plan.reach_test import (
        ReachTestInput,
        ReachTestNote,
        ReachTestOutcome,
        ReachTestRequest,
        ReachTestSettle,
    )
    from workflows.delivery import ACTIVITY_TIMEOUT, RETRY_FOREVER, send_all

# Reading the roster and the store: retried for a while (a database outage), never for a broken
# roster.
PREPARE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    non_retryable_error_types=["RosterError"],
)


@workflow.defn
class ReachTestWorkflow:
    """Write the run's rows, send the test on every channel, then record each channel's outcome."""

    @workflow.run
    async def run(self, inp: ReachTestInput) -> ReachTestOutcome:
        info = workflow.info()
        run_id = info.workflow_id
        built: ReachTestNote = await workflow.execute_activity(
            "prepare_reach_test",
            ReachTestRequest(
                run_id=run_id,
                at=info.workflow_start_time,
                timezone=inp.timezone,
                public_url=inp.public_url,
            ),
            result_type=ReachTestNote,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            schedule_to_close_timeout=timedelta(hours=2),
            retry_policy=PREPARE_RETRY,
            summary=f"通联测试（{inp.by}）",
        )
        note = built.notification()
        await send_all(
            note,
            built.office,
            inp.delivery_give_up_minutes,
            f"通联测试 站内消息：{len(note.recipients)}人",
        )
        return await workflow.execute_activity(
            "settle_reach_test",
            ReachTestSettle(run_id=run_id),
            result_type=ReachTestOutcome,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=RETRY_FOREVER,
            summary="通联测试 记录各渠道结果",
        )
