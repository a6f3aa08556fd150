"""The worker: runs IncidentWorkflow and its activities on the task queue from settings."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from temporalio.client import Client
from temporalio.worker import Worker

from activities.channels import SmtpSettings
from activities.digest import DigestActivities
from activities.notify import NotifyActivities
from activities.record import RecordActivities
from config.settings import Settings, get_settings
from plan.roster import load_roster
from starter.client import connect
from workflows.digest import DigestWorkflow
from workflows.incident import IncidentWorkflow


def build_worker(
    client: Client,
    settings: Settings,
    *,
    task_queue: str | None = None,
    executor: ThreadPoolExecutor,
) -> Worker:
    records = RecordActivities(settings.database_url)
    notify = NotifyActivities(
        settings.database_url,
        settings.webhook_timeout_seconds,
        SmtpSettings(
            host=settings.smtp_host,
            port=settings.smtp_port,
            starttls=settings.smtp_starttls,
            username=settings.smtp_username,
            password=settings.smtp_password,
            sender=settings.smtp_from,
        ),
    )
    digests = DigestActivities(settings.database_url, settings.roster_file)
    return Worker(
        client,
        task_queue=task_queue or settings.temporal_task_queue,
        workflows=[IncidentWorkflow, DigestWorkflow],
        activities=[
            records.record,
            records.escalate,
            notify.notify,
            notify.deliver,
            notify.delivery_failed,
            digests.build_digest,
        ],
        activity_executor=executor,
        max_concurrent_activities=16,
    )


async def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = get_settings()
    load_roster(settings.roster_file)  # a broken roster stops the worker here, naming the entry
    client = await connect(settings)
    with ThreadPoolExecutor(max_workers=16) as executor:
        worker = build_worker(client, settings, executor=executor)
        logging.getLogger("yuqing.worker").info(
            "worker on %s, task queue %s", settings.temporal_address, settings.temporal_task_queue
        )
        await worker.run()


if __name__ == "__main__":
    asyncio.run(main())
