"""Observability of the worker, as its own process against the real Temporal dev server: Temporal
SDK metrics for Prometheus, the health endpoint, JSON log lines an operator can grep by incident id,
no secret in any of them, and a clean exit on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

import devstack
from config.settings import Settings
from plan.roster import Roster
from runtime.client import connect
from starter import incidents
from tests.conftest import BIN, EXAMPLE_ROSTER, ROOT, start_dev_server
from tests.helpers import submission
from tests.stack import free_port, wait_until

SECRET = "smtp-pa55-very-secret"


@pytest.fixture
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    env = await start_dev_server()
    async with env:
        yield env


def json_lines(*files: Path) -> list[dict[str, Any]]:
    """Every line of the files, each of which must be one JSON object."""
    entries = []
    for f in files:
        for line in f.read_text(encoding="utf-8").splitlines():
            if line.strip():
                entry = json.loads(line)  # a line that is not JSON fails the test here
                assert isinstance(entry, dict), line
                entries.append(entry)
    return entries


def get(url: str) -> httpx.Response | None:
    """The response, or None when nothing answers."""
    try:
        return httpx.get(url, timeout=5)
    except httpx.HTTPError:
        return None


def answering(url: str, status: int) -> httpx.Response | None:
    r = get(url)
    return r if r is not None and r.status_code == status else None


async def test_worker_metrics_health_and_json_logs(
    dev_server: WorkflowEnvironment, roster: Roster, tmp_path: Path
) -> None:
    address = dev_server.client.service_client.config.target_host
    task_queue = "observability"
    database_url = f"sqlite:///{tmp_path / 'yuqing.db'}"
    metrics_url = f"http://127.0.0.1:{free_port()}"
    health_url = f"http://127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("YUQING_")}
    env.update(
        {
            "YUQING_TEMPORAL_ADDRESS": address,
            "YUQING_TEMPORAL_TASK_QUEUE": task_queue,
            "YUQING_DATABASE_URL": database_url,
            "YUQING_ROSTER_FILE": str(EXAMPLE_ROSTER),
            "YUQING_METRICS_BIND": metrics_url.removeprefix("http://"),
            "YUQING_WORKER_HEALTH_BIND": health_url.removeprefix("http://"),
            "YUQING_LOG_FORMAT": "json",
            "YUQING_SMTP_PASSWORD": SECRET,
        }
    )
    # cwd: the test's directory, so no developer's .env is read
    migrated = subprocess.run(
        [str(BIN / "yuqing"), "migrate"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert migrated.returncode == 0, migrated.stderr
    out, err = tmp_path / "worker.out", tmp_path / "worker.err"
    proc = (
        devstack.worker(env, tmp_path, tmp_path, log_path=out, stderr_path=err, banners=False)
        .start()
        .popen
    )
    try:
        # Healthy once the worker runs and the frontend answers.
        def healthy() -> httpx.Response | None:
            assert proc.poll() is None, err.read_text()
            return answering(f"{health_url}/healthz", 200)

        r = wait_until(healthy, within=20)
        assert r.json() == {"status": "ok", "task_queue": task_queue, "namespace": "default"}
        assert r.headers["content-type"] == "application/json"
        missing = get(f"{health_url}/metrics")
        assert missing is not None and missing.status_code == 404

        # An incident: the worker runs its activities and logs them by incident id.
        settings = Settings(
            temporal_address=address,
            temporal_task_queue=task_queue,
            database_url=database_url,
            roster_file=EXAMPLE_ROSTER,
        )
        client = await connect(settings)
        submitted = await incidents.submit(
            client, settings, roster, submission(), submitted_by="zhou.ting"
        )
        incident_id = submitted.view.id

        def activity_lines() -> list[dict[str, Any]] | None:
            lines = [
                e
                for e in json_lines(out, err)
                if e.get("incident_id") == incident_id and e.get("activity_type")
            ]
            ran = {e["activity_type"] for e in lines}
            return lines if "record" in ran else None

        lines = wait_until(activity_lines, within=15)
        recorded = next(e for e in lines if e["activity_type"] == "record")
        assert recorded["message"].startswith("recorded "), recorded
        # One write per step: the R-NOTIFY notification was written with the read model.
        assert "1 notifications" in recorded["message"], recorded
        assert recorded["level"] == "INFO" and recorded["logger"] == "temporalio.activity"
        assert recorded["workflow_type"] == "IncidentWorkflow"
        assert recorded["ts"].endswith("Z") and "T" in recorded["ts"]
        assert "workflow_id" not in recorded["message"]  # the SDK's suffix became fields

        # Prometheus: the SDK's own metrics, for the workflow tasks and activities just run.
        def metrics() -> str | None:
            m = get(f"{metrics_url}/metrics")
            if m is None or m.status_code != 200:
                return None
            names = {line.split("{")[0].split(" ")[0] for line in m.text.splitlines()}
            wanted = {"temporal_activity_execution_latency_bucket", "temporal_workflow_completed"}
            return m.text if any(n in names for n in wanted) else None

        text = wait_until(metrics, within=10)
        names = {
            line.split("{")[0].split(" ")[0]
            for line in text.splitlines()
            if line.startswith("temporal_")
        }
        assert "temporal_activity_execution_latency_bucket" in names, sorted(names)
        assert "temporal_workflow_task_execution_latency_bucket" in names, sorted(names)
        assert "temporal_request" in names, sorted(names)
        print("metrics:", ", ".join(sorted(names)))

        # SIGTERM: the worker shuts down, the health endpoint with it, and the exit code is 0.
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0, err.read_text()
        assert get(f"{health_url}/healthz") is None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    entries = json_lines(out, err)
    assert any(e["message"] == "worker stopped" for e in entries), entries[-5:]
    assert all({"ts", "level", "logger", "message"} <= e.keys() for e in entries)
    logged = out.read_text(encoding="utf-8") + err.read_text(encoding="utf-8")
    assert SECRET not in logged


REDACTION_SCRIPT = textwrap.dedent(
    """
    import logging, sys
    from runtime.observability import configure_logging
    configure_logging(sys.argv[1], secrets=["smtp-pa55-very-secret", "x"])
    log = logging.getLogger("yuqing.test")
    log.info("request with Authorization: Bearer %s", "yq_AbC-123_def")
    log.info("token yq_Zz9-8 and webhook secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    log.info("POST https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-7xxx&x=1")
    log.info("POST https://oapi.dingtalk.com/robot/send?access_token=abc123&timestamp=1&sign=s1g")
    log.info("POST https://open.feishu.cn/open-apis/bot/v2/hook/2f5e-41aa ok")
    log.info("smtp login with %s", "smtp-pa55-very-secret")
    try:
        raise RuntimeError("refused: Bearer yq_InTraceback")
    except RuntimeError:
        log.exception("delivery failed")
    """
)


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_log_lines_are_redacted(fmt: str) -> None:
    run = subprocess.run(
        [sys.executable, "-c", REDACTION_SCRIPT, fmt],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    logged = run.stderr
    for secret in (
        "yq_AbC-123_def",
        "yq_Zz9-8",
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "693a91f6",
        "abc123",
        "s1g",
        "2f5e-41aa",
        "smtp-pa55-very-secret",
        "yq_InTraceback",
    ):
        assert secret not in logged, (secret, logged)
    assert "Authorization: Bearer [REDACTED]" in logged
    assert "&x=1" in logged and "timestamp=1" in logged  # only the secrets go
    if fmt == "json":
        entries = [json.loads(line) for line in logged.splitlines()]
        assert len(entries) == 7
        assert entries[0]["message"] == "request with Authorization: Bearer [REDACTED]"
        assert entries[5]["message"] == "smtp login with [REDACTED]"
        assert "incident_id" not in entries[0]
        assert entries[6]["level"] == "ERROR" and "RuntimeError" in entries[6]["exc"]
        assert "Traceback" in entries[6]["exc"]
    else:
        assert " INFO yuqing.test request with Authorization: Bearer [REDACTED]" in logged


async def test_health_answers_503_when_the_frontend_is_gone(tmp_path: Path) -> None:
    server = await start_dev_server()
    health_url = f"http://127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("YUQING_")}
    env.update(
        {
            "YUQING_TEMPORAL_ADDRESS": server.client.service_client.config.target_host,
            "YUQING_TEMPORAL_TASK_QUEUE": "observability-503",
            "YUQING_DATABASE_URL": f"sqlite:///{tmp_path / 'yuqing.db'}",
            "YUQING_ROSTER_FILE": str(EXAMPLE_ROSTER),
            "YUQING_WORKER_HEALTH_BIND": health_url.removeprefix("http://"),
        }
    )
    log = tmp_path / "worker.log"
    proc = devstack.worker(env, tmp_path, tmp_path, log_path=log, banners=False).start().popen
    server_up = True
    try:
        # Generous waits: on a loaded 2-core machine the worker takes a while to start.
        wait_until(lambda: answering(f"{health_url}/healthz", 200), within=60)
        await server.shutdown()
        server_up = False
        # The frontend check is cached for 5 s: 503 within that and the check's own timeout.
        r = wait_until(lambda: answering(f"{health_url}/healthz", 503), within=30)
        body = r.json()
        assert body["status"] == "unavailable" and "frontend" in body["reason"], body
        assert body["task_queue"] == "observability-503"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if server_up:
            await server.shutdown()


async def test_the_web_app_takes_its_start_up_objects_out_of_the_collectors_reach(
    settings: Settings,
) -> None:
    """Issue 21: a full garbage collection walked every object the web app made while starting,
    a pause of over 100 ms on one request in a few hundred (the list page's p99); the app's
    start freezes them (gc.freeze), so collections walk only what requests make."""
    import gc

    from starter.web.app import create_app

    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    app = create_app(settings)
    try:
        async with app.router.lifespan_context(app):
            assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()
