"""The worker: runs IncidentWorkflow and its activities on the task queue from settings. Started by
`yuqing worker` and by `python worker.py` (scripts/up.sh, the deploy units), both calling `run`.

Observability (runtime/observability.py), from settings: Temporal SDK metrics for Prometheus at
http://YUQING_METRICS_BIND/metrics, `GET /healthz` on YUQING_WORKER_HEALTH_BIND, and log lines as
text or JSON (YUQING_LOG_FORMAT) with secrets redacted. SIGTERM or SIGINT shuts the worker down
and the process exits 0."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.archive import Archiver, RetentionActivities
from activities.channels import SmsSettings, SmtpSettings
from activities.digest import DigestActivities
from activities.notify import NotifyActivities
from activities.reach_test import ReachTestActivities
from activities.record import RecordActivities
from config.settings import Settings, get_settings
from plan.roster import load_roster
from plan.spec import shipped
from runtime.client import connect
from runtime.observability import HealthServer, build_runtime, configure_logging, secret_values
from workflows.delivery import delivery_task_queue
from workflows.digest import DigestWorkflow
from workflows.incident import IncidentWorkflow
from workflows.reach_test import ReachTestWorkflow
from workflows.retention import RetentionWorkflow

# Our workflow modules hold no state of their own (constants, classes, functions), so the sandbox
# need not import them afresh for every workflow it starts or replays: that took a third of the
# worker's time and about 200 KiB per cached workflow (docs/PERFORMANCE.md). The sandbox still
# refuses what workflow code must not call (the clock, randomness, I/O: tests/test_sandbox.py).
WORKFLOW_RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules("workflows")
)


def _notify_activities(settings: Settings) -> NotifyActivities:
    return NotifyActivities(
        settings.database_url,
        settings.webhook_timeout_seconds,
        SmtpSettings.from_settings(settings),
        roster_file=settings.roster_file,
        # Links only to an address the operator set: never to the default localhost.
        sign_in_url=settings.public_url if "public_url" in settings.model_fields_set else None,
        sign_in_hours=settings.sign_in_link_hours,
        sms=SmsSettings.from_settings(settings),
        timezone=settings.timezone,
    )


def build_worker(
    client: Client,
    settings: Settings,
    *,
    task_queue: str | None = None,
    executor: ThreadPoolExecutor,
) -> Worker:
    """The workflows and the activities that write what they decide (and `deliver`, for
    deliveries scheduled on this queue before they had a queue of their own)."""
    # Incidents started before the input carried the plan take the shipped one (plan/models.py):
    # read it here, outside any workflow, as importing plan/spec.py once did.
    shipped()
    records = RecordActivities(settings.database_url, settings.timezone, Archiver(settings))
    retention = RetentionActivities(settings)
    notify = _notify_activities(settings)
    digests = DigestActivities(settings.database_url, settings.roster_file)
    reach = ReachTestActivities(settings.database_url, settings.roster_file)
    return Worker(
        client,
        task_queue=task_queue or settings.temporal_task_queue,
        workflows=[IncidentWorkflow, DigestWorkflow, RetentionWorkflow, ReachTestWorkflow],
        workflow_runner=WORKFLOW_RUNNER,
        activities=[
            records.record,
            records.escalate,
            notify.notify,
            notify.deliver,
            notify.delivery_failed,
            digests.build_digest,
            retention.apply_retention,
            reach.prepare_reach_test,
            reach.settle_reach_test,
        ],
        activity_executor=executor,
        max_concurrent_activities=16,
        max_cached_workflows=settings.worker_cached_workflows,
    )


def build_delivery_worker(
    client: Client,
    settings: Settings,
    *,
    task_queue: str | None = None,
    executor: ThreadPoolExecutor,
) -> Worker:
    """External channels on their own task queue (workflows/delivery.py), with their own slots
    and threads: a receiver that is down, and its retries, never hold up the inbox."""
    notify = _notify_activities(settings)
    return Worker(
        client,
        task_queue=delivery_task_queue(task_queue or settings.temporal_task_queue),
        activities=[notify.deliver],
        activity_executor=executor,
        max_concurrent_activities=16,
    )


async def main() -> None:
    settings = get_settings()
    # Never log the settings object: it holds the SMTP password, codec keys, the API key.
    configure_logging(settings.log_format, secrets=secret_values(settings))
    log = logging.getLogger("yuqing.worker")
    load_roster(settings.roster_file)  # a broken roster stops the worker here, naming the entry
    runtime = build_runtime(settings)
    client = await connect(settings, runtime=runtime)
    if settings.metrics_bind:
        log.info("metrics on http://%s/metrics", settings.metrics_bind)
    with (
        ThreadPoolExecutor(max_workers=16) as executor,
        ThreadPoolExecutor(max_workers=16, thread_name_prefix="deliver") as delivering,
    ):
        worker = build_worker(client, settings, executor=executor)
        deliveries = build_delivery_worker(client, settings, executor=delivering)
        health = None
        if settings.worker_health_bind:
            health = HealthServer(
                settings.worker_health_bind,
                client=client,
                worker=worker,
                task_queue=settings.temporal_task_queue,
                namespace=settings.temporal_namespace,
            )
        await run_until_signalled(worker, health, log, settings, others=[deliveries])


async def run_until_signalled(
    worker: Worker,
    health: HealthServer | None,
    log: logging.Logger,
    settings: Settings,
    *,
    others: Sequence[Worker] = (),
) -> None:
    """Run the worker (and `others`) until one fails or SIGTERM / SIGINT arrives; then shut them
    down (in-flight activities are cancelled and retried elsewhere) and stop the health endpoint,
    so the process exits 0 on a signal."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    received: list[str] = []

    def on_signal(sig: signal.Signals) -> None:
        received.append(sig.name)
        stop.set()

    if health is not None:
        await health.start()  # a port in use stops the worker here, before it polls
        log.info("health on http://%s/healthz", settings.worker_health_bind)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    workers = [worker, *others]
    runs = [asyncio.create_task(w.run()) for w in workers]
    stopped = asyncio.create_task(stop.wait())
    try:
        log.info(
            "worker on %s, namespace %s, task queues %s",
            settings.temporal_address,
            settings.temporal_namespace,
            ", ".join(w.task_queue for w in workers),
        )
        await asyncio.wait({*runs, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if received:
            log.info("%s received: shutting down the worker", received[0])
            if health is not None:
                health.stopping = True
        for w, run in zip(workers, runs, strict=True):
            if not run.done():
                await w.shutdown()
        for run in runs:
            await run  # re-raises a worker failure
        log.info("worker stopped")
    finally:
        stopped.cancel()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if health is not None:
            await health.close()


def run() -> None:
    """The worker process's entry point."""
    asyncio.run(main())
