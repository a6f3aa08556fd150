"""Issue 15, finding 4: the codec endpoint encrypts and decrypts only for the roles that may read
every incident (R-SECRECY), and with codec keys set the worker refuses a payload that is not
encrypted, so a plain input forged straight into Temporal cannot act."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from config.settings import Settings
from plan.models import IncidentInput
from plan.roster import Roster
from plan.spec import plan_from
from runtime.client import data_converter
from runtime.codec import new_key_entry
from starter import incidents
from starter.web.app import create_app
from store import incident_rows
from store.db import session_scope
from tests.conftest import make_settings
from tests.helpers import eventually, running_worker, submission
from tests.test_api import sign_in, token_for
from workflows.incident import IncidentWorkflow

PLAIN = {
    "metadata": {"encoding": base64.b64encode(b"json/plain").decode()},
    "data": base64.b64encode("东湖村积水".encode()).decode(),
}


@pytest.fixture
def keyed(database_url: str) -> Settings:
    return make_settings(database_url, codec_keys=new_key_entry("k1"))


@pytest.fixture
async def web(keyed: Settings, roster: Roster) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(keyed, roster=roster)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


async def test_codec_endpoint_only_for_roles_that_may_read_every_incident(
    web: httpx.AsyncClient, keyed: Settings, roster: Roster
) -> None:
    office = token_for(keyed, "liu.yang")
    sealed = await web.post("/codec/encode", json={"payloads": [PLAIN]}, headers=office)
    assert sealed.status_code == 200, sealed.text
    encrypted = sealed.json()["payloads"][0]
    opened = await web.post("/codec/decode", json={"payloads": [encrypted]}, headers=office)
    assert opened.status_code == 200 and opened.json()["payloads"][0]["data"] == PLAIN["data"]
    # The leading group may read every incident too.
    leader = token_for(keyed, "wang.jianguo")
    r = await web.post("/codec/decode", json={"payloads": [encrypted]}, headers=leader)
    assert r.status_code == 200

    # A staff member with no standing role (refused by the API for an incident of another unit)
    # is refused by the codec too, by token and by browser session, for both operations.
    staff = token_for(keyed, "lin.feng")
    for op in ("decode", "encode"):
        body = {"payloads": [encrypted if op == "decode" else PLAIN]}
        r = await web.post(f"/codec/{op}", json=body, headers=staff)
        assert r.status_code == 403, (op, r.text)
        assert "无权" in r.json()["detail"] and "东湖村" not in r.text
    await sign_in(web, keyed, "lin.feng")
    r = await web.post("/codec/decode", json={"payloads": [encrypted]})
    assert r.status_code == 403 and PLAIN["data"] not in r.text
    # Anonymous: still 401.
    async with httpx.AsyncClient(transport=web._transport, base_url="http://test") as anon:
        r = await anon.post("/codec/decode", json={"payloads": [encrypted]})
        assert r.status_code == 401


def _plain_input(settings: Settings, roster: Roster, title: str) -> IncidentInput:
    received = datetime.now(UTC)
    sub = incidents.parse_submission(submission(title=title), roster, received)
    plan = plan_from(settings.plan_file)
    return IncidentInput(
        incident_id=incidents.incident_id_for(sub),
        submission=sub,
        received_at=received,
        submitted_by=None,
        roster=roster,
        plan=plan,
        plan_version=plan.version,
        timezone=settings.timezone,
        escalation_waits_minutes=settings.escalation_waits_minutes,
        public_url=settings.public_url,
        search_attributes=settings.search_attributes,
        related=[],
        continue_as_new_after=settings.continue_as_new_after,
        delivery_give_up_minutes=settings.delivery_give_up_minutes,
    )


async def _events(client: Client, workflow_id: str) -> list[Any]:
    return [e async for e in client.get_workflow_handle(workflow_id).fetch_history_events()]


async def test_worker_with_keys_refuses_a_plain_input_and_runs_an_encrypted_one(
    time_env: WorkflowEnvironment, keyed: Settings, roster: Roster, executor: ThreadPoolExecutor
) -> None:
    plain_client = time_env.client  # no codec: what a forged start through Temporal sends
    codec_client = Client(**{**plain_client.config(), "data_converter": data_converter(keyed)})
    assert codec_client.data_converter.payload_codec is not None
    async with running_worker(codec_client, keyed, executor):
        forged = _plain_input(keyed, roster, f"伪造的明文事件 {uuid.uuid4().hex[:6]}")
        await plain_client.start_workflow(
            IncidentWorkflow.run,
            forged,
            id=forged.incident_id,
            task_queue=keyed.temporal_task_queue,
        )

        async def task_failed() -> bool:
            kinds = [e.event_type for e in await _events(plain_client, forged.incident_id)]
            assert EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED not in kinds, "plain input ran"
            return EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED in kinds

        deadline = time.monotonic() + 20
        while not await task_failed():
            assert time.monotonic() < deadline, "the worker never refused the plain input"
            await asyncio.sleep(0.2)

        # The encrypted one (what the app, the API and the CLI send) runs and is recorded.
        done = await incidents.submit(codec_client, keyed, roster, submission(title="加密事件"))
        await eventually(lambda: _stored(keyed, done.view.id))
        await asyncio.sleep(1.0)  # give the forged one every chance to have written
        assert not _stored(keyed, forged.incident_id)
        kinds = [e.event_type for e in await _events(plain_client, forged.incident_id)]
        assert EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED not in kinds
        await plain_client.get_workflow_handle(forged.incident_id).terminate("测试结束")


async def test_refusing_plain_payloads_can_be_turned_off(
    time_env: WorkflowEnvironment, database_url: str, roster: Roster, executor: ThreadPoolExecutor
) -> None:
    """While workflows started before the codec was turned on still run, an operator sets
    YUQING_CODEC_REFUSE_PLAIN=false and the worker reads their plain payloads."""
    lenient = make_settings(database_url, codec_keys=new_key_entry("k1"), codec_refuse_plain=False)
    plain_client = time_env.client
    codec_client = Client(**{**plain_client.config(), "data_converter": data_converter(lenient)})
    async with running_worker(codec_client, lenient, executor):
        old = _plain_input(lenient, roster, "编码启用前的事件")
        await plain_client.start_workflow(
            IncidentWorkflow.run, old, id=old.incident_id, task_queue=lenient.temporal_task_queue
        )
        await eventually(lambda: _stored(lenient, old.incident_id))


def _stored(settings: Settings, incident_id: str) -> bool:
    with session_scope(settings.database_url) as s:
        return any(r.id == incident_id for r in incident_rows.list_incidents(s, limit=500))
