"""Operations (issue 17, finding 6): incidents findable by their search attributes from the moment
they start, one list of those attributes everywhere, and the metrics operators alert on."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from plan.roster import Roster
from starter import incidents
from tests.conftest import make_settings, start_dev_server
from tests.helpers import submission


@pytest_asyncio.fixture(loop_scope="session")
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    env = await start_dev_server()
    async with env:
        yield env


async def test_an_incident_is_found_by_its_search_attributes_before_any_worker_runs(
    dev_server: WorkflowEnvironment, database_url: str, roster: Roster
) -> None:
    """No worker serves the task queue, so the workflow never runs its first upsert: the
    attributes must come with the start itself."""
    client = dev_server.client
    settings = make_settings(database_url)
    queue = settings.temporal_task_queue
    data = submission(
        title="启动即可检索", severity="major", category="hype", responsible_unit="cjb"
    )
    # submit() waits for the workflow's first answer, which no worker gives: it runs aside.
    submitting = asyncio.create_task(
        incidents.submit(client, settings, roster, data, submitted_by="zhou.ting")
    )
    try:
        queries = [
            f"TaskQueue = '{queue}' AND IncidentPhase = 'triage'",
            f"TaskQueue = '{queue}' AND IsDrill = false",
            f"TaskQueue = '{queue}' AND PlanVersion = '2024.1'",
            f"TaskQueue = '{queue}' AND IncidentSeverity = 'major' AND IncidentCategory = 'hype'",
            f"TaskQueue = '{queue}' AND ResponsibleUnit = 'cjb' AND Overdue = false",
        ]
        found: dict[str, list[str]] = {}
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            for q in queries:
                found[q] = [w.id async for w in client.list_workflows(q)]
            if all(len(ids) == 1 for ids in found.values()):
                break
            await asyncio.sleep(0.5)
        started = [w.id async for w in client.list_workflows(f"TaskQueue = '{queue}'")]
        assert len(started) == 1, started
        assert all(ids == started for ids in found.values()), found
        desc = await client.get_workflow_handle(started[0]).describe()
        attrs = {p.key.name: p.value for p in desc.typed_search_attributes}
        assert attrs["NextDeadlineAt"] is not None, attrs
    finally:
        submitting.cancel()
        with contextlib.suppress(BaseException):
            await submitting


# --- one list of search attributes ---

SEARCH_ATTRIBUTE_NAMES = (
    "IncidentPhase",
    "IncidentSeverity",
    "IncidentCategory",
    "ResponsibleUnit",
    "NextDeadlineAt",
    "Overdue",
    "IsDrill",
    "PlanVersion",
)


def test_every_place_derives_its_search_attributes_from_the_one_list() -> None:
    """workflows/search_attributes.py defines them; scripts/up.sh asks `yuqing search-attributes`,
    and devstack, `yuqing setup` and the test servers use the list: no other file of code names
    one (a new attribute added to the list reaches all of them)."""
    import subprocess

    import devstack
    from tests import conftest
    from tests.conftest import BIN, ROOT
    from workflows import search_attributes

    assert {k.name for k in search_attributes.SEARCH_ATTRIBUTES} == set(SEARCH_ATTRIBUTE_NAMES)
    up = (ROOT / "scripts" / "up.sh").read_text(encoding="utf-8")
    assert 'yuqing" search-attributes' in up
    named = [n for n in SEARCH_ATTRIBUTE_NAMES if n in up]
    assert not named, f"scripts/up.sh names {named} itself"
    printed = subprocess.run(
        [str(BIN / "yuqing"), "search-attributes", "--cli-args"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    assert printed == search_attributes.cli_args()
    assert devstack.search_attribute_args() == search_attributes.cli_args()
    assert {
        k.name: k.indexed_value_type for k in search_attributes.SEARCH_ATTRIBUTES
    } == conftest.SEARCH_ATTRIBUTES
    # No other code file spells an attribute's name: only the list, docs and tests' queries.
    own = ROOT / "workflows" / "search_attributes.py"
    spelled = []
    for folder in (
        "plan",
        "config",
        "store",
        "activities",
        "workflows",
        "runtime",
        "starter",
        "devstack",
        "scripts",
        "deploy",
        "bench",
    ):
        for path in sorted((ROOT / folder).rglob("*")):
            if (
                path.is_file()
                and path != own
                and path.suffix in {".py", ".sh", ".toml", ".yaml", ".yml", ""}
            ):
                text = path.read_text(encoding="utf-8", errors="replace")
                spelled += [
                    f"{path.relative_to(ROOT)}: {n}"
                    for n in SEARCH_ATTRIBUTE_NAMES
                    if f'"{n}"' in text or f"{n}=" in text
                ]
    conftest_text = (ROOT / "tests" / "conftest.py").read_text(encoding="utf-8")
    spelled += [
        f"tests/conftest.py: {n}" for n in SEARCH_ATTRIBUTE_NAMES if f'"{n}"' in conftest_text
    ]
    assert not spelled, spelled


# --- metrics operators alert on ---


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """A Prometheus text exposition: value by (name, labels)."""
    import re

    import httpx

    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for line in httpx.get(url, timeout=5).text.splitlines():
        found = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)", line)
        if not found or line.startswith("#"):
            continue
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', found.group(2) or ""))
        samples[(found.group(1), labels)] = float(found.group(3))
    return samples


def total(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    """The sum over the series of `name` (with or without a `_total` suffix) with `labels`."""
    wanted = set(labels.items())
    return sum(
        value
        for (n, ls), value in samples.items()
        if n in (name, f"{name}_total") and wanted <= set(ls)
    )


async def test_deliveries_escalations_and_misses_are_counted_for_prometheus(
    time_env: WorkflowEnvironment, database_url: str, roster: Roster, executor: Any
) -> None:
    """The worker's Prometheus endpoint (the SDK runtime's) counts deliveries sent, failed
    attempts and given up by channel kind, escalation steps and missed deadlines by rule."""
    from datetime import timedelta

    from temporalio.client import Client
    from temporalio.runtime import Runtime

    from runtime.observability import build_runtime
    from runtime.payloads import compact_data_converter
    from tests.helpers import eventually, running_worker
    from tests.helpers import submit as submit_incident
    from tests.stack import free_port
    from tests.test_channels import Receiver
    from tests.test_outbox import town, webhook

    bind = f"127.0.0.1:{free_port()}"
    settings = make_settings(database_url, metrics_bind=bind)
    runtime = build_runtime(settings)
    assert isinstance(runtime, Runtime)
    client = await Client.connect(
        time_env.client.service_client.config.target_host,
        namespace="default",
        data_converter=compact_data_converter,
        runtime=runtime,
    )
    ok, refusing = Receiver(200), Receiver(400)
    url = f"http://{bind}/metrics"
    try:
        roster, settings = town(settings, liu_yang=webhook(ok.url), zhou_ting=webhook(refusing.url))
        async with running_worker(client, settings, executor):
            await submit_incident(
                client, settings, roster, severity="urgent", responsible_unit="cjb"
            )
            sent = await eventually(
                lambda: (
                    (s := scrape(url))
                    and total(s, "yuqing_deliveries_sent", channel="webhook") >= 1
                    and total(s, "yuqing_deliveries_given_up", channel="webhook") >= 1
                    and s
                ),
                within=20,
            )
            assert total(sent, "yuqing_delivery_attempts_failed", channel="webhook") >= 1
            assert total(sent, "yuqing_deliveries_given_up", channel="webhook", refused="true") >= 1
            # R-REPLY (urgent: 3 hours) passes unmet: missed, then escalated (step 1).
            await time_env.sleep(timedelta(hours=3, minutes=1))
            later = await eventually(
                lambda: (
                    (s := scrape(url))
                    and total(s, "yuqing_escalation_steps", rule="R-REPLY", step="1") >= 1
                    and s
                ),
                within=20,
            )
        print(
            "\n".join(
                sorted(
                    f"{n} {sorted(ls)} {v}"
                    for (n, ls), v in later.items()
                    if n.startswith("yuqing_")
                )
            )
        )
        assert total(later, "yuqing_deadlines_missed", rule="R-REPLY", drill="false") >= 1
        assert total(later, "yuqing_escalation_steps", workflow_type="IncidentWorkflow") >= 1
    finally:
        ok.close()
        refusing.close()


# --- the web app's logs and request latencies ---


def test_yuqing_web_logs_json_redacted_and_measures_request_latency(tmp_path: Path) -> None:
    """`yuqing web` with YUQING_LOG_FORMAT=json: every line on its output is one JSON object, a
    token in a logged URL is redacted, and the request latency histogram (by route template and
    status) is on YUQING_WEB_METRICS_BIND."""
    import json
    import os
    import subprocess

    import httpx

    import devstack
    from tests.conftest import BIN, EXAMPLE_ROSTER
    from tests.stack import free_port, wait_until

    token = "yq_SeCrEtPeRsOnAlToKeN123"
    port, metrics_port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("YUQING_")}
    env.update(
        {
            "YUQING_DATABASE_URL": f"sqlite:///{tmp_path / 'yuqing.db'}",
            "YUQING_ROSTER_FILE": str(EXAMPLE_ROSTER),
            "YUQING_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",  # nothing: not needed here
            "YUQING_LOG_FORMAT": "json",
            "YUQING_WEB_METRICS_BIND": f"127.0.0.1:{metrics_port}",
        }
    )
    migrated = subprocess.run(
        [str(BIN / "yuqing"), "migrate"], env=env, cwd=tmp_path, capture_output=True, timeout=60
    )
    assert migrated.returncode == 0, migrated.stderr
    out, err = tmp_path / "web.out", tmp_path / "web.err"
    argv = [str(BIN / "yuqing"), "web", "--host", "127.0.0.1", "--port", str(port)]
    web = devstack.Process(
        "web", argv, env, tmp_path, tmp_path, log_path=out, stderr_path=err, banners=False
    ).start()
    try:

        def up() -> httpx.Response | None:
            assert web.alive(), err.read_text()
            try:
                return httpx.get(f"{base}/healthz", timeout=5)
            except httpx.HTTPError:
                return None

        wait_until(up, within=30)
        httpx.get(f"{base}/healthz?access_token={token}", timeout=5)
        refused = httpx.get(
            f"{base}/api/access-log", headers={"Authorization": f"Bearer {token}"}, timeout=5
        )
        assert refused.status_code == 401, refused.text
        missing = httpx.get(f"{base}/api/docs/assets/YQ-20260101-nothing.js", timeout=5)
        assert missing.status_code == 404

        def scraped() -> str | None:
            try:
                text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
            except httpx.HTTPError:
                return None
            return text if "yuqing_web_request_duration_seconds_count" in text else None

        text = wait_until(scraped, within=10)
    finally:
        web.stop()

    count = [
        ln for ln in text.splitlines() if ln.startswith("yuqing_web_request_duration_seconds_count")
    ]
    assert any(
        'route="/healthz"' in ln and 'status="200"' in ln and 'method="GET"' in ln for ln in count
    ), count
    # The route's template, never the id asked for.
    assert any('route="/api/docs/assets/{name}"' in ln and 'status="404"' in ln for ln in count), (
        count
    )
    assert "YQ-20260101" not in text
    assert "# TYPE yuqing_web_request_duration_seconds histogram" in text
    assert any(
        ln.startswith("yuqing_web_request_duration_seconds_bucket{") and 'le="+Inf"' in ln
        for ln in text.splitlines()
    )

    logged = out.read_text(encoding="utf-8") + err.read_text(encoding="utf-8")
    entries = []
    for line in logged.splitlines():
        if line.strip():
            entry = json.loads(line)  # a line that is not JSON fails here
            assert {"ts", "level", "logger", "message"} <= entry.keys(), entry
            entries.append(entry)
    access = [e["message"] for e in entries if e["logger"] == "uvicorn.access"]
    assert any("/healthz?access_token=[REDACTED]" in m for m in access), access
    assert token not in logged and "SeCrEt" not in logged
