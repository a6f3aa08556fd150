"""Issue 15, finding 5: the Temporal UI without sign-in and with its write actions on.

The real dev server with its Web UI, behind the gate `make up` puts in front of it
(starter/web/ui_gate.py): nobody gets in without a yuqing sign-in of the office or the leading
group; nobody can terminate, signal or otherwise write through it; the UI is told write actions
are off. The incident page and the API show the Temporal link only to those the gate lets in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from config.settings import Settings
from plan.roster import Roster
from runtime.payloads import compact_data_converter
from starter.web.app import create_app
from starter.web.auth import SESSION_COOKIE
from starter.web.ui_gate import create_gate
from store import credentials
from store.db import session_scope
from tests.conftest import binary
from tests.helpers import running_worker, submit, triage
from tests.stack import free_port
from workflows.search_attributes import SEARCH_ATTRIBUTES


@pytest.fixture
async def ui_server() -> AsyncIterator[tuple[WorkflowEnvironment, int]]:
    port = free_port()
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=binary("temporal"),
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_log_level="error",
        data_converter=compact_data_converter,
        ui=True,
        ui_port=port,
    )
    async with env:
        yield env, port


def _session(settings: Settings, person: str) -> str:
    with session_scope(settings.database_url) as s:
        return credentials.create_session(s, person_id=person, hours=1)


async def test_the_temporal_ui_needs_a_reader_and_refuses_writes(
    ui_server: tuple[WorkflowEnvironment, int],
    settings: Settings,
    roster: Roster,
    executor: ThreadPoolExecutor,
) -> None:
    env, port = ui_server
    client = env.client
    gate = create_gate(settings, roster=roster, upstream=f"http://127.0.0.1:{port}")
    async with running_worker(client, settings, executor):
        view = await submit(client, settings, roster)
        await triage(client, view.id, severity="general", unit="cjb")
        workflows = f"/api/v1/namespaces/default/workflows/{view.id}"
        async with (
            gate.router.lifespan_context(gate),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=gate), base_url="http://gate", timeout=30
            ) as http,
        ):
            # No sign-in: nothing of the UI, not even its page.
            anonymous = await http.get("/")
            assert anonymous.status_code == 401 and "请先登录" in anonymous.text
            assert (await http.get(workflows)).status_code == 401
            # Staff with no standing: refused.
            http.cookies.set(SESSION_COOKIE, _session(settings, "lin.feng"))
            assert (await http.get(workflows)).status_code == 403

            # The office: reads the UI and the incident's history, and may query it.
            http.cookies.set(SESSION_COOKIE, _session(settings, "liu.yang"))
            page = await http.get("/")
            assert page.status_code == 200 and "<html" in page.text.lower()
            # The UI server may have dialled the frontend before it listened: it retries with
            # a back-off, so wait for its first good answer.
            for _ in range(240):
                described = await http.get(workflows)
                if described.status_code == 200:
                    break
                await asyncio.sleep(0.25)
            assert described.status_code == 200, described.text
            assert view.id in described.text
            ui_settings = (await http.get("/api/v1/settings")).json()
            assert ui_settings["DisableWriteActions"] is True

            # Every write is refused at the gate: the incident runs on.
            for method, path, body in (
                ("POST", f"{workflows}/terminate", {"reason": "x"}),
                ("POST", f"{workflows}/signal/related_reported", {}),
                ("POST", f"{workflows}/cancel", {}),
                ("POST", f"{workflows}/reset", {}),
                ("POST", f"{workflows}/update/withdraw", {}),
                ("DELETE", workflows, None),
                ("POST", "/api/v1/namespaces/default/batch-operations/x", {}),
            ):
                refused = await http.request(method, path, json=body)
                assert refused.status_code == 403, (method, path, refused.text)
                assert "只读" in refused.json()["message"]
    described_now = await client.get_workflow_handle(view.id).describe()
    assert described_now.status == WorkflowExecutionStatus.RUNNING


async def test_the_temporal_link_is_shown_only_to_those_the_gate_lets_in(
    ui_server: tuple[WorkflowEnvironment, int],
    settings: Settings,
    roster: Roster,
    executor: ThreadPoolExecutor,
) -> None:
    env, _port = ui_server
    app = create_app(settings, client=env.client, roster=roster)
    async with running_worker(env.client, settings, executor):
        view = await submit(env.client, settings, roster)
        await triage(env.client, view.id, severity="general", unit="cjb")
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t", timeout=30
        ) as http:
            http.cookies.set(SESSION_COOKIE, _session(settings, "lin.feng"))
            staff_page = await http.get(f"/incidents/{view.id}")
            assert staff_page.status_code == 200 and "Temporal UI" not in staff_page.text
            http.cookies.set(SESSION_COOKIE, _session(settings, "liu.yang"))
            office_page = await http.get(f"/incidents/{view.id}")
            assert office_page.status_code == 200 and "Temporal UI" in office_page.text
