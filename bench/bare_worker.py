"""The bare baseline's worker (`python -m bench.bare_worker --address A --task-queue Q
--database-url U`): bench.bare's workflows, a no-op activity and one that writes a row to
`bench_marks`, with the same activity thread pool and limits as worker.py (and, with
--metrics-bind, the same Prometheus metrics). SIGTERM or SIGINT stops it."""

from __future__ import annotations

import argparse
import asyncio
import signal
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from sqlalchemy import DateTime, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from temporalio import activity
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from bench.bare import BareLifecycleWorkflow, BareTimerWorkflow, Mark
from runtime import core_exit
from store.db import engine_for, session_scope


class MarksBase(DeclarativeBase):
    pass


class BenchMark(MarksBase):
    __tablename__ = "bench_marks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workflow_id: Mapped[str] = mapped_column(String(100), unique=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    written_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


def create_marks_table(database_url: str) -> None:
    MarksBase.metadata.create_all(engine_for(database_url))


def drop_marks_table(database_url: str) -> None:
    MarksBase.metadata.drop_all(engine_for(database_url))


class BareActivities:
    def __init__(self, database_url: str) -> None:
        self.database_url = database_url

    @activity.defn(name="bench_noop")
    def noop(self) -> None:
        return None

    @activity.defn(name="bench_mark")
    def mark(self, mark: Mark) -> None:
        """One row, in a transaction of its own (as `escalate` writes an escalation step)."""
        with session_scope(self.database_url) as s:
            s.add(BenchMark(workflow_id=mark.workflow_id, at=mark.at, written_at=datetime.now(UTC)))


async def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bare_worker")
    parser.add_argument("--address", required=True)
    parser.add_argument("--task-queue", required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--metrics-bind", help="host:port for Prometheus metrics, as worker.py")
    parser.add_argument("--cached-workflows", type=int, default=1000, help="as worker.py's cache")
    args = parser.parse_args()
    runtime = None
    if args.metrics_bind:
        metrics = PrometheusConfig(bind_address=args.metrics_bind)
        runtime = Runtime(telemetry=TelemetryConfig(metrics=metrics))
    core_exit.guard()  # as runtime.client.connect: exit only once the core's threads left Python
    client = await Client.connect(
        args.address, data_converter=pydantic_data_converter, runtime=runtime
    )
    acts = BareActivities(args.database_url)
    with ThreadPoolExecutor(max_workers=16) as executor:
        worker = Worker(
            client,
            task_queue=args.task_queue,
            workflows=[BareLifecycleWorkflow, BareTimerWorkflow],
            # As worker.py passes workflows/ through: neither module is imported afresh per run.
            workflow_runner=SandboxedWorkflowRunner(
                restrictions=SandboxRestrictions.default.with_passthrough_modules("bench.bare")
            ),
            activities=[acts.noop, acts.mark],
            activity_executor=executor,
            max_concurrent_activities=16,  # as worker.py
            max_cached_workflows=args.cached_workflows,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        running = asyncio.create_task(worker.run())
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({running, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not running.done():
            await worker.shutdown()
        stopped.cancel()
        await running


if __name__ == "__main__":
    asyncio.run(main())
