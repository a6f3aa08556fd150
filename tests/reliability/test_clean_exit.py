"""Every process that talks to Temporal exits cleanly (issue 13).

Short-lived processes used to crash at interpreter exit about one time in eight: the SDK core's
thread that resolved the last awaited call was still inside Python when the interpreter finalised
(runtime/core_exit.py explains the race). Here `yuqing setup` and `yuqing export-history` each run
50 times against a real dev server, and a worker is started and stopped with SIGTERM 50 times (in
text and JSON logging, the latter with the core's log forwarding and Prometheus metrics on). Every
run must exit 0 with its whole expected output and nothing fatal on stderr. The three loops run side
by side, which loads the machine the way `make up` does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

import devstack
from tests.conftest import BIN, EXAMPLE_ROSTER, start_dev_server
from tests.reliability import figures
from tests.stack import free_port, wait_until
from workflows.search_attributes import SEARCH_ATTRIBUTES

RUNS = 50
SCHEDULES = (
    "yuqing-daily-digest",
    "yuqing-weekly-accountability",
    "yuqing-daily-retention",
    "yuqing-monthly-reach-test",
)


def base_env(address: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("YUQING_")}
    env.update(
        {
            "YUQING_TEMPORAL_ADDRESS": address,
            "YUQING_DATABASE_URL": f"sqlite:///{tmp_path / 'yuqing.db'}",
            "YUQING_ROSTER_FILE": str(EXAMPLE_ROSTER),
            "YUQING_TEMPORAL_TASK_QUEUE": f"clean-exit-{uuid.uuid4().hex[:8]}",
        }
    )
    return env


def problems_of_setup(run: subprocess.CompletedProcess[str], address: str) -> list[str]:
    lines = run.stdout.splitlines()
    found = []
    if not lines or lines[0] != f"Temporal {address}，命名空间 default":
        found.append(f"first line {lines[:1]}")
    for key in SEARCH_ATTRIBUTES:
        if not any(line.startswith(f"  搜索属性 {key.name}（") for line in lines):
            found.append(f"no line for search attribute {key.name}")
    for schedule in SCHEDULES:
        if not any(f"定时任务 {schedule}（" in line for line in lines):
            found.append(f"no line for schedule {schedule}")
    return found


def problems_of_export(run: subprocess.CompletedProcess[str]) -> list[str]:
    try:
        events = json.loads(run.stdout)["events"]
    except (ValueError, KeyError) as exc:
        return [f"output is not a history: {exc!r}"]
    if events[0]["eventType"] != "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED":
        return [f"first event {events[0]['eventType']}"]
    return []


def repeat(name: str, runs: int, once: Callable[[int], tuple[int, str, list[str]]]) -> list[str]:
    """Run `once` `runs` times; each answers (exit code, stderr, problems with its output)."""
    failures = []
    for i in range(runs):
        code, stderr, problems = once(i)
        if code != 0 or problems or "Fatal Python error" in stderr:
            failures.append(
                f"{name} run {i + 1}: exit {code}, {problems}, stderr {stderr[-400:]!r}"
            )
    return failures


async def test_processes_that_talk_to_temporal_exit_cleanly(tmp_path: Path) -> None:
    env_server = await start_dev_server()
    async with env_server:
        client = env_server.client
        address = client.service_client.config.target_host
        env = base_env(address, tmp_path)
        migrated = subprocess.run(
            [str(BIN / "yuqing"), "migrate"], env=env, cwd=tmp_path, capture_output=True, text=True
        )
        assert migrated.returncode == 0, migrated.stderr
        # A history to export: a workflow no worker serves still has its started event.
        exported_id = f"clean-exit-{uuid.uuid4().hex[:8]}"
        await client.start_workflow("Nobody", id=exported_id, task_queue="nobody-polls-this")

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [str(BIN / "yuqing"), *args],
                env=env,
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=120,
            )

        def setup_once(_: int) -> tuple[int, str, list[str]]:
            run = cli("setup")
            return run.returncode, run.stderr, problems_of_setup(run, address)

        def export_once(_: int) -> tuple[int, str, list[str]]:
            run = cli("export-history", exported_id)
            return run.returncode, run.stderr, problems_of_export(run)

        def worker_once(i: int) -> tuple[int, str, list[str]]:
            health = f"127.0.0.1:{free_port()}"
            worker_env = {**env, "YUQING_WORKER_HEALTH_BIND": health}
            if i % 2:  # JSON logs forward the core's log lines; metrics add a Prometheus exporter
                worker_env["YUQING_LOG_FORMAT"] = "json"
                worker_env["YUQING_METRICS_BIND"] = f"127.0.0.1:{free_port()}"
            log = tmp_path / f"worker-{i}.log"
            proc = (
                devstack.worker(worker_env, tmp_path, tmp_path, log_path=log, banners=False)
                .start()
                .popen
            )
            try:

                def healthy() -> bool:
                    if proc.poll() is not None:
                        return True  # exited early: reported below
                    try:
                        return httpx.get(f"http://{health}/healthz", timeout=5).status_code == 200
                    except httpx.HTTPError:
                        return False

                wait_until(healthy, within=60)
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                code = proc.wait(timeout=60)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            text = log.read_text(encoding="utf-8")
            problems = [] if "worker stopped" in text else ["no 'worker stopped' line"]
            return code, text, problems

        with ThreadPoolExecutor(max_workers=3) as pool:
            loops = [
                pool.submit(repeat, "yuqing setup", RUNS, setup_once),
                pool.submit(repeat, "yuqing export-history", RUNS, export_once),
                pool.submit(repeat, "worker SIGTERM", RUNS, worker_once),
            ]
            failures = [f for loop in loops for f in loop.result()]

    figures.add(
        "test_processes_that_talk_to_temporal_exit_cleanly",
        process_runs=3 * RUNS,
        unclean_exits=len(failures),
    )
    assert not failures, "\n".join(failures)
