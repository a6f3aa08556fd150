"""The outbox at work: IncidentWorkflow on the time-skipping test server with real receivers on
127.0.0.1. Deliveries are background activities, retried with backoff until they succeed, are
refused, or the give-up period ends; each message reaches a receiver once (by webhook-id), and
nothing the plan decides (inbox, escalation record) waits for a channel."""

from __future__ import annotations

import asyncio
import socket
import tempfile
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from config.settings import Settings
from plan.roster import Roster, parse_roster
from starter import incidents
from store import incident_rows, notifications
from store.db import session_scope
from store.models import Delivery, InboxMessage
from tests.conftest import EXAMPLE_ROSTER, make_settings
from tests.helpers import eventually, running_worker, stored, submit, triage
from tests.test_channels import Receiver

OFFICE = ["liu.yang", "zhou.ting", "ma.chao"]
SSWB = ["huang.li", "wu.fang", "xu.lei"]  # 社会事务办: head huang.li, first responsible wu.fang


def town(settings: Settings, **channels: str) -> tuple[Roster, Settings]:
    """The example roster with channels added (person or unit id → TOML inline tables), and the
    settings with it as the worker's roster file: deliveries name their channels by reference,
    and the worker finds the channel in its own roster."""
    text = EXAMPLE_ROSTER.read_text(encoding="utf-8")
    for ident, tables in channels.items():
        line = f'id = "{ident.replace("_", ".")}"\n'
        assert text.count(line) == 1, ident
        text = text.replace(line, f"{line}channels = [{tables}]\n")
    roster = parse_roster(text, source="test roster")
    path = Path(tempfile.mkdtemp(prefix="yuqing-roster-")) / "roster.toml"
    path.write_text(text, encoding="utf-8")
    return roster, settings.model_copy(update={"roster_file": path})


def webhook(url: str) -> str:
    return f'{{ kind = "webhook", url = "{url}" }}'


def outbox(url: str, incident_id: str) -> list[Delivery]:
    return stored(url, notifications.outbox, incident_id=incident_id)


def inbox_of(url: str, incident_id: str) -> list[InboxMessage]:
    with session_scope(url) as s:
        return list(
            s.scalars(
                select(InboxMessage)
                .where(InboxMessage.incident_id == incident_id)
                .order_by(InboxMessage.id)
            )
        )


def failure_notes(url: str, incident_id: str) -> dict[str, list[InboxMessage]]:
    """The office's inbox messages about failed deliveries, by person."""
    out: dict[str, list[InboxMessage]] = {}
    for m in inbox_of(url, incident_id):
        if m.key.endswith("|failed"):
            out.setdefault(m.recipient, []).append(m)
    return out


@asynccontextmanager
async def clock_running(
    time_env: WorkflowEnvironment, step: timedelta = timedelta(seconds=2)
) -> AsyncIterator[None]:
    """Move the test server's clock on by `step` every tenth of a second (about 20x), so retry
    back-offs and a give-up period pass quickly while the test polls."""

    async def tick() -> None:
        while True:
            await time_env.sleep(step)
            await asyncio.sleep(0.1)

    task = asyncio.create_task(tick())
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


class Tracking(ThreadPoolExecutor):
    """An activity executor that knows whether any activity is running."""

    def __init__(self, max_workers: int) -> None:
        super().__init__(max_workers=max_workers)
        self.running = 0
        self.lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        def run() -> Any:
            with self.lock:
                self.running += 1
            try:
                return fn(*args, **kwargs)
            finally:
                with self.lock:
                    self.running -= 1

        return super().submit(run)

    def idle(self) -> bool:
        with self.lock:
            return self.running == 0


def one_row(url: str, incident_id: str, state: str) -> Delivery | None:
    found = outbox(url, incident_id)
    return found[0] if len(found) == 1 and found[0].state == state else None


async def test_retried_until_accepted_exactly_once(
    time_env: WorkflowEnvironment,
    client: Client,
    settings: Settings,
    executor: ThreadPoolExecutor,
) -> None:
    """A receiver that answers 500, 500, then 200 accepts the message once: three requests under
    one webhook-id, and the outbox row ends sent after 3 attempts."""
    r = Receiver(500, 500, 200)
    try:
        roster, settings = town(settings, liu_yang=webhook(r.url))
        async with running_worker(client, settings, executor):
            view = await submit(client, settings, roster)
            # The inbox is written at once, whatever the channel does.
            await eventually(
                lambda: stored(settings.database_url, notifications.inbox, recipient="liu.yang")
            )
            async with clock_running(time_env):
                row = await eventually(lambda: one_row(settings.database_url, view.id, "sent"))
        assert (row.recipient, row.kind, row.channel) == ("liu.yang", "webhook", "webhook:webhook")
        assert (row.attempts, row.last_error) == (3, None)
        hits = r.received()
        assert [h.status for h in hits] == [500, 500, 200]
        assert len({h.headers["webhook-id"] for h in hits}) == 1
        assert list(r.accepted().values()) == [1]
        assert hits[0].json()["recipient"] == {"id": "liu.yang", "name": "刘洋"}
        assert failure_notes(settings.database_url, view.id) == {}
    finally:
        r.close()


async def test_receiver_down_then_back(
    time_env: WorkflowEnvironment,
    client: Client,
    settings: Settings,
    executor: ThreadPoolExecutor,
) -> None:
    """Nothing listens on the receiver's port for a while (connections refused, retried); once a
    server is started on that port it gets the message, once."""
    reserved = socket.socket()
    reserved.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    port = int(reserved.getsockname()[1])
    url = f"http://127.0.0.1:{port}/hook"
    r: Receiver | None = None
    try:
        roster, settings = town(settings, liu_yang=webhook(url))
        async with running_worker(client, settings, executor):
            view = await submit(client, settings, roster)
            async with clock_running(time_env):
                down = await eventually(
                    lambda: [
                        d
                        for d in outbox(settings.database_url, view.id)
                        if d.state == "pending" and d.attempts >= 3
                    ]
                )
            assert down[0].last_error is not None and "ConnectError" in down[0].last_error
            reserved.close()
            r = Receiver(200, port=port)
            async with clock_running(time_env):
                row = await eventually(lambda: one_row(settings.database_url, view.id, "sent"))
        assert row.attempts >= 3 and row.last_error is None
        (hit,) = r.received()
        assert hit.path == "/hook" and hit.status == 200
        assert r.accepted() == {hit.headers["webhook-id"]: 1}
        assert failure_notes(settings.database_url, view.id) == {}
    finally:
        reserved.close()
        if r is not None:
            r.close()


async def test_refused_is_not_retried_and_the_office_is_told(
    client: Client,
    settings: Settings,
    executor: ThreadPoolExecutor,
) -> None:
    """A receiver answering 400 is asked once: the row is failed, each office person has an
    inbox message naming the channel and the person, and the timeline says so."""
    r = Receiver(400)
    try:
        roster, settings = town(settings, liu_yang=webhook(r.url))
        url = settings.database_url
        async with running_worker(client, settings, executor):
            view = await submit(client, settings, roster)
            notes = await eventually(
                lambda: (n := failure_notes(url, view.id)) and set(n) == set(OFFICE) and n
            )
            timeline = await eventually(
                lambda: [
                    e
                    for e in stored(url, incident_rows.timeline, incident_id=view.id)
                    if e.kind == "delivery_failed"
                ]
            )
            view = await incidents.get(client, view.id)
        (row,) = outbox(url, view.id)
        assert (row.state, row.attempts) == ("failed", 1)
        assert row.last_error is not None and "HTTP 400" in row.last_error
        # delivery_failed runs only once the activity is finished for good: no retry is coming.
        assert len(r.received()) == 1
        assert r.accepted() == {}
        for pid in OFFICE:
            (msg,) = notes[pid]
            assert msg.subject == "通知发送失败：刘洋（webhook）"
            assert "被拒收" in msg.body and "webhook:webhook" in msg.body
        (entry,) = timeline
        assert "刘洋" in entry.summary and "HTTP 400" in entry.summary
        assert [e.kind for e in view.timeline].count("delivery_failed") == 1
    finally:
        r.close()


async def test_given_up_after_the_give_up_period(
    time_env: WorkflowEnvironment,
    client: Client,
    database_url: str,
    executor: ThreadPoolExecutor,
) -> None:
    """A receiver that answers 503 for the whole give-up period: retried until it ends, then the
    row is given_up and the office is told."""
    settings = make_settings(database_url, delivery_give_up_minutes=0.2)
    r = Receiver(503)
    try:
        roster, settings = town(settings, liu_yang=webhook(r.url))
        async with running_worker(client, settings, executor):
            view = await submit(client, settings, roster)
            async with clock_running(time_env):
                notes = await eventually(
                    lambda: (
                        (n := failure_notes(database_url, view.id)) and set(n) == set(OFFICE) and n
                    )
                )
                row = await eventually(lambda: one_row(database_url, view.id, "given_up"))
                # The timeline entry follows once the failure is recorded.
                entries = await eventually(
                    lambda: [
                        e for e in timeline_of(database_url, view.id) if e.kind == "delivery_failed"
                    ]
                )
        hits = r.received()
        assert len(hits) >= 2 and {h.status for h in hits} == {503}
        assert len({h.headers["webhook-id"] for h in hits}) == 1
        assert row.attempts == len(hits)
        assert row.last_error is not None and "0.2分钟内未能送达" in row.last_error
        for pid in OFFICE:
            (msg,) = notes[pid]
            assert "多次重试后放弃" in msg.body and "HTTP 503" in msg.body
        (entry,) = entries
        assert "0.2分钟内未能送达" in entry.summary
    finally:
        r.close()


def timeline_of(url: str, incident_id: str) -> list:  # type: ignore[type-arg]
    with session_scope(url) as s:
        return list(incident_rows.timeline(s, incident_id=incident_id))


async def test_given_up_while_the_receiver_holds_the_request(
    time_env: WorkflowEnvironment,
    client: Client,
    database_url: str,
) -> None:
    """A receiver that holds the request for the whole give-up period: the workflow gives up and
    tells the office; when the held attempt finally fails, the row must stay given_up. (The test
    server does not skip time while an activity runs, so the period here is 3 real seconds.)"""
    settings = make_settings(
        database_url, delivery_give_up_minutes=0.05, webhook_timeout_seconds=60.0
    )
    r = Receiver(503)
    r.gate.clear()
    try:
        roster, settings = town(settings, liu_yang=webhook(r.url))
        with Tracking(max_workers=16) as own:
            async with running_worker(client, settings, own):
                view = await submit(client, settings, roster)
                async with clock_running(time_env):
                    await eventually(
                        lambda: (
                            (n := failure_notes(database_url, view.id)) and set(n) == set(OFFICE)
                        )
                    )
                row = one_row(database_url, view.id, "given_up")
                assert row is not None and row.attempts == 1
                (held,) = r.received()
                assert held.status == 0  # still held: the period ended during the attempt
                r.gate.set()
                # Wait for the held attempt to finish while the worker runs (a worker shutting
                # down would cancel it instead).
                await eventually(lambda: own.idle())
        assert r.received()[0].status == 503
        (row,) = outbox(database_url, view.id)
        assert row.state == "given_up"
    finally:
        r.close()


async def test_escalation_is_recorded_before_any_delivery_succeeds(
    client: Client,
    database_url: str,
    executor: ThreadPoolExecutor,
) -> None:
    """R-ESCALATE never waits on a channel: while the receiver holds every request, the deadline
    passes (a drill at 43200x: 12 plan-hours in a second), the escalation step is recorded and
    its inbox message written; only then is the receiver released, and each message is
    accepted once."""
    settings = make_settings(database_url, webhook_timeout_seconds=60.0)
    r = Receiver(200)
    r.gate.clear()
    try:
        roster, settings = town(settings, liu_yang=webhook(r.url))
        async with running_worker(client, settings, executor):
            view = await submit(client, settings, roster, drill_speedup=43200)
            await eventually(r.received)  # the report's message is held at the receiver
            esc = await eventually(
                lambda: stored(database_url, incident_rows.escalations, incident_id=view.id)
            )
            step1 = await eventually(
                lambda: [
                    m
                    for m in stored(database_url, notifications.inbox, recipient="liu.yang")
                    if "第1级" in m.subject
                ]
            )
            # Every request is still held; nothing has been delivered.
            held = r.received()
            deliveries = outbox(database_url, view.id)
            assert held and {h.status for h in held} == {0}
            assert deliveries and {d.state for d in deliveries} == {"pending"}
            assert esc[0].step == 1 and "liu.yang" in esc[0].targets.split(",")
            assert step1[0].incident_id == view.id

            r.gate.set()
            done = await eventually(
                lambda: (
                    (d := outbox(database_url, view.id))
                    and all(x.state == "sent" for x in d)
                    and any(x.key.startswith(step1[0].key + "|") for x in d)  # the step's own
                    and d
                )
            )
        assert set(r.accepted().values()) == {1}
        assert len(r.accepted()) == len(done)
    finally:
        r.close()


async def test_unit_group_and_first_responsible_hear_everything_about_the_unit(
    time_env: WorkflowEnvironment,
    client: Client,
    settings: Settings,
    executor: ThreadPoolExecutor,
) -> None:
    """R-DUTY: with a group channel on 社会事务办 (Unit.channels, a WeCom robot) and a webhook for
    its first-responsible person wu.fang, every notification about the unit (report, assignment,
    review request, deadline warning, every escalation step) reaches wu.fang once, and the group
    hears once whatever the unit's head is told. (Step 1, which wu.fang does not sign for, goes
    to her once more after the plan's 30 minutes: issue 20's re-send, her webhook being her one
    channel.)"""
    group = Receiver((200, {"errcode": 0, "errmsg": "ok"}), path="/cgi-bin/webhook/send")
    duty = Receiver(200)
    try:
        roster, settings = town(
            settings,
            sswb=f'{{ kind = "wecom", url = "{group.url}?key=sswb-group" }}',
            wu_fang=webhook(duty.url),
        )
        url = settings.database_url
        async with running_worker(client, settings, executor):
            view = await submit(client, settings, roster, responsible_unit="sswb")
            await triage(client, view.id, category="hype", unit="sswb")
            await incidents.act(
                client, view.id, "draft-reply", {"text": "正在核实，将尽快答复。"}, "xu.lei"
            )
            # The reply deadline (12 h) passes unmet: warning, then the whole escalation chain.
            await time_env.sleep(timedelta(hours=15))
            await eventually(
                lambda: (
                    [e.step for e in stored(url, incident_rows.escalations, incident_id=view.id)]
                    == [1, 2, 3]
                )
            )
            view = await incidents.get(client, view.id)
            assert view.notify_seq == 8  # 7, and step 1 again to wu.fang (未签收)

            def settled() -> list[Delivery] | None:
                keys = {m.key for m in inbox_of(url, view.id)}
                found = outbox(url, view.id)
                if len(keys) == 8 and found and all(d.state == "sent" for d in found):
                    return found
                return None

            deliveries = await eventually(settled)

        told: dict[str, set[str]] = {}  # notification key → who was told
        for m in inbox_of(url, view.id):
            told.setdefault(m.key, set()).add(m.recipient)
        for d in deliveries:
            told.setdefault(d.key.split("|")[0], set()).add(d.recipient)
        # Every notification about the incident reaches wu.fang, escalations to the deputy
        # and the leader included; the unit's group hears what its head is told.
        assert len(told) == 8
        assert {k for k, who in told.items() if "wu.fang" in who} == set(told)
        resent = [k for k, who in told.items() if who == {"wu.fang"}]
        assert len(resent) == 1 and resent[0].endswith(":R-ESCALATE")
        head_told = {k for k, who in told.items() if "huang.li" in who}
        assert len(head_told) == 5
        assert {k for k, who in told.items() if "unit:sswb" in who} == head_told

        wu = stored(url, notifications.inbox, recipient="wu.fang")
        assert sorted(m.rule for m in wu) == sorted(
            [
                "R-NOTIFY",
                "R-NOTIFY",
                "R-REVIEW",
                "R-REPLY",
                "R-ESCALATE",
                "R-ESCALATE",
                "R-ESCALATE",
                "R-ESCALATE",
            ]
        )
        assert sum("未签收，再次通知" in m.subject for m in wu) == 1
        assert any("第1级" in m.subject for m in wu)

        # Each message reached each endpoint once, the group's in the robot's own format.
        assert sorted(r.recipient for r in deliveries) == ["unit:sswb"] * 5 + ["wu.fang"] * 8
        assert len(duty.accepted()) == 8 and set(duty.accepted().values()) == {1}
        hits = group.received()
        assert len(hits) == 5 and {h.status for h in hits} == {200}
        assert all(h.query == {"key": ["sswb-group"]} for h in hits)
        assert all(h.json()["msgtype"] == "markdown" for h in hits)
        assert len({h.json()["markdown"]["content"] for h in hits}) == 5
    finally:
        group.close()
        duty.close()
