"""Small helpers the tests share: running a worker, submitting, polling the store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
from temporalio.client import Client

from config.settings import Settings
from plan.models import IncidentView
from plan.roster import Roster
from runtime.worker import build_delivery_worker, build_worker
from starter import incidents
from starter.web.app import create_app
from store.db import session_scope

T = TypeVar("T")


@asynccontextmanager
async def running_worker(
    client: Client, settings: Settings, executor: ThreadPoolExecutor
) -> AsyncIterator[None]:
    with ThreadPoolExecutor(max_workers=16, thread_name_prefix="deliver") as delivering:
        async with (
            build_worker(client, settings, executor=executor),
            build_delivery_worker(client, settings, executor=delivering),
        ):
            yield


@asynccontextmanager
async def app_over_asgi(
    client: Client,
    settings: Settings,
    roster: Roster,
    executor: ThreadPoolExecutor,
    *,
    raise_app_exceptions: bool = True,
) -> AsyncIterator[httpx.AsyncClient]:
    """The web app in-process, called over ASGI, with the worker running: what the web tests
    talk to. `raise_app_exceptions=False` answers a crash as the 500 a client would see."""
    app = create_app(settings, client=client, roster=roster)
    async with running_worker(client, settings, executor):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            yield c


def submission(**overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    data: dict[str, Any] = {
        "title": "东湖村道路积水多日无人处理",
        "content": "网帖称东湖村主干道积水一周，影响学生上学，质疑镇政府不作为。",
        "source": "微博",
        "discovered_at": (now - timedelta(minutes=5)).isoformat(),
        "reporter_unit": "yqb",
        "reporter_name": "周婷",
        "url": "https://weibo.example/post/1",
    }
    data.update(overrides)
    return data


async def submit(
    client: Client,
    settings: Settings,
    roster: Roster,
    *,
    submitted_by: str | None = "zhou.ting",
    **overrides: Any,
) -> IncidentView:
    """Submit as a signed-in monitoring officer of the office (周婷, trusted for any reporting
    unit); `submitted_by=None` submits anonymously (a lead for the office, issue 15)."""
    result = await incidents.submit(
        client, settings, roster, submission(**overrides), submitted_by=submitted_by
    )
    return result.view


async def finished(client: Client, incident_id: str) -> IncidentView:
    """Wait for the incident's workflow to end, then its final view (the workflow returns only
    how it ended, plan/models.py IncidentDone; a query of the finished workflow gives the view)."""
    from workflows.incident import IncidentWorkflow

    done = await client.get_workflow_handle_for(IncidentWorkflow.run, incident_id).result()
    assert done.incident_id == incident_id
    return await incidents.get(client, incident_id)


async def eventually(check: Callable[[], T], *, within: float = 15.0) -> T:
    """Poll `check` until it returns something truthy (activities run asynchronously to the test)."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s; last value: {value!r}")
        await asyncio.sleep(0.05)


async def publish(
    client: Client,
    incident_id: str,
    *,
    staff: str,
    head: str,
    release: bool = False,
    kind: str = "official",
    text: str = "已安排抽排积水，今日完成。",
) -> IncidentView:
    """Draft, approve (R-REVIEW), for major and urgent have the leading group approve the wording
    (R-RELEASE), and publish."""
    await incidents.act(client, incident_id, "draft-reply", {"text": text, "kind": kind}, staff)
    await incidents.act(client, incident_id, "approve-reply", {}, head)
    if release:
        await incidents.act(
            client, incident_id, "approve-release", {"spokesperson": "li.xiaomei"}, "wang.jianguo"
        )
    return await incidents.act(
        client, incident_id, "publish-reply", {"channel": "镇政府微博"}, staff
    )


async def triage(
    client: Client,
    incident_id: str,
    *,
    severity: str = "general",
    category: str = "hype",
    unit: str = "cjb",
    co_units: list[str] | None = None,
    actor: str = "liu.yang",
) -> IncidentView:
    """Triage as the office. The default category is hype, not inquiry: an inquiry owes its
    opinion by the end of the day it was found (R-INQUIRY), an instant that moves with the wall
    clock the test servers start from, so a test not about R-INQUIRY would pass or fail by the
    hour it runs at. Tests about inquiries say so and are written for any hour."""
    data: dict[str, Any] = {"severity": severity, "category": category, "responsible_unit": unit}
    if co_units:
        data["co_units"] = co_units
    return await incidents.act(client, incident_id, "triage", data, actor)


def stored(url: str, query: Callable[..., Sequence[T]], **kw: Any) -> list[T]:
    """Rows from the read model through one store query (`incident_rows.timeline`, ...), in a session of their own."""
    with session_scope(url) as s:
        return list(query(s, **kw))
