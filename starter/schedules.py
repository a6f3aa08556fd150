"""Temporal Schedules that start DigestWorkflow: the daily digest at 08:00 and the weekly
accountability summary on Mondays at 08:30, in the town's zone; and RetentionWorkflow, the daily
归档 run at 02:30 (issue 19, item 4); and ReachTestWorkflow, the monthly 通联测试 (issue 20, item 5;
YUQING_REACH_TEST_CRON, the 1st at 09:30 by default). `ensure_schedules` creates them,
or updates them to the current settings when they exist (a paused schedule stays paused), so
`yuqing setup` can run on every start."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from config.settings import Settings
from plan.digest import DigestInput, DigestKind
from plan.reach_test import ReachTestInput
from plan.records import RetentionInput
from workflows.digest import DigestWorkflow
from workflows.reach_test import ReachTestWorkflow
from workflows.retention import RetentionWorkflow

DAILY_SCHEDULE_ID = "yuqing-daily-digest"
WEEKLY_SCHEDULE_ID = "yuqing-weekly-accountability"
RETENTION_SCHEDULE_ID = "yuqing-daily-retention"
# At night, in the town's zone: archive what is missing, redact what is past retention.
RETENTION_CRON = "30 2 * * *"
RETENTION_LABEL = "每日归档与个人信息保存期限检查，每天02:30"
REACH_TEST_SCHEDULE_ID = "yuqing-monthly-reach-test"


@dataclass(frozen=True)
class DigestSchedule:
    id: str
    kind: DigestKind
    cron: str
    label: str


SCHEDULES = (
    DigestSchedule(DAILY_SCHEDULE_ID, "daily", "0 8 * * *", "每日舆情简报，每天08:00"),
    DigestSchedule(WEEKLY_SCHEDULE_ID, "weekly", "30 8 * * 1", "每周问责汇总，每周一08:30"),
)


def digest_schedule(spec: DigestSchedule, settings: Settings) -> Schedule:
    """The schedule as the settings describe it. The roster is left out of the input: the
    worker's own roster file is read when the digest is built, so roster edits take effect."""
    return Schedule(
        action=ScheduleActionStartWorkflow(
            DigestWorkflow.run,
            DigestInput(
                kind=spec.kind,
                timezone=settings.timezone,
                public_url=settings.public_url,
                delivery_give_up_minutes=settings.delivery_give_up_minutes,
            ),
            id=spec.id,  # each run's workflow id is this plus the scheduled time
            task_queue=settings.temporal_task_queue,
            static_summary=spec.label,
        ),
        spec=ScheduleSpec(cron_expressions=[spec.cron], time_zone_name=settings.timezone),
    )


def retention_schedule(settings: Settings) -> Schedule:
    """The daily 归档 run; the retention period is the worker's setting, read when it runs."""
    return Schedule(
        action=ScheduleActionStartWorkflow(
            RetentionWorkflow.run,
            RetentionInput(),
            id=RETENTION_SCHEDULE_ID,
            task_queue=settings.temporal_task_queue,
            static_summary=RETENTION_LABEL,
        ),
        spec=ScheduleSpec(cron_expressions=[RETENTION_CRON], time_zone_name=settings.timezone),
    )


def reach_test_label(settings: Settings) -> str:
    cron = settings.reach_test_cron
    if cron == "30 9 1 * *":
        return "通联测试，每月1日09:30"
    return f"通联测试，按 {cron}"


def reach_test_input(settings: Settings, by: str) -> ReachTestInput:
    return ReachTestInput(
        timezone=settings.timezone,
        public_url=settings.public_url,
        delivery_give_up_minutes=settings.delivery_give_up_minutes,
        by=by,
    )


def reach_test_schedule(settings: Settings) -> Schedule:
    """The monthly 通联测试; who is tested is the worker's roster, read when it runs."""
    return Schedule(
        action=ScheduleActionStartWorkflow(
            ReachTestWorkflow.run,
            reach_test_input(settings, "每月定时任务"),
            id=REACH_TEST_SCHEDULE_ID,  # each run's workflow id is this plus the scheduled time
            task_queue=settings.temporal_task_queue,
            static_summary=reach_test_label(settings),
        ),
        spec=ScheduleSpec(
            cron_expressions=[settings.reach_test_cron], time_zone_name=settings.timezone
        ),
    )


async def start_reach_test(client: Client, settings: Settings, *, by: str) -> str:
    """A 通联测试 now (on demand); gives back its run id (the workflow id). `by` says who asked
    by role, never by name: the input stays free of personal data."""
    stamp = datetime.now(ZoneInfo(settings.timezone)).strftime("%Y%m%d-%H%M%S")
    run_id = f"reach-test-{stamp}-{uuid.uuid4().hex[:4]}"
    await client.start_workflow(
        ReachTestWorkflow.run,
        reach_test_input(settings, by),
        id=run_id,
        task_queue=settings.temporal_task_queue,
        static_summary=f"通联测试（{by}）",
    )
    return run_id


async def ensure_schedules(client: Client, settings: Settings) -> list[tuple[str, str]]:
    """Create the schedules, or update the ones that exist; returns (id, "created"|"updated")."""
    wanted = [(spec.id, digest_schedule(spec, settings)) for spec in SCHEDULES]
    wanted.append((RETENTION_SCHEDULE_ID, retention_schedule(settings)))
    wanted.append((REACH_TEST_SCHEDULE_ID, reach_test_schedule(settings)))
    done = []
    for schedule_id, schedule in wanted:
        try:
            await client.create_schedule(schedule_id, schedule)
            done.append((schedule_id, "created"))
        except ScheduleAlreadyRunningError:

            def update(current: ScheduleUpdateInput, new: Schedule = schedule) -> ScheduleUpdate:
                new.state = current.description.schedule.state  # keep paused / notes as they are
                return ScheduleUpdate(schedule=new)

            await client.get_schedule_handle(schedule_id).update(update)
            done.append((schedule_id, "updated"))
    return done
