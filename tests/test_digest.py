"""Digests and schedules: the texts (pure), the daily and weekly digests started by real Temporal
Schedules on the real dev server with an in-process worker, and `yuqing notify test` against real
HTTP receivers."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client, ScheduleActionExecutionStartWorkflow, ScheduleHandle
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

from config.settings import get_settings
from plan import digest
from plan.models import AccountabilityRecord, Deadline
from plan.records import IncidentRow, RecordRequest
from plan.roster import Roster, load_roster
from starter.cli import TEST_SUBJECT, app
from starter.schedules import (
    DAILY_SCHEDULE_ID,
    REACH_TEST_SCHEDULE_ID,
    RETENTION_SCHEDULE_ID,
    WEEKLY_SCHEDULE_ID,
    ensure_schedules,
)
from store import incident_rows, notifications
from store.db import session_scope
from tests.conftest import EXAMPLE_ROSTER, make_settings, start_dev_server
from tests.helpers import eventually, running_worker, submit
from workflows.search_attributes import SEARCH_ATTRIBUTES

TZ = "Asia/Shanghai"
runner = CliRunner()


class Receiver:
    """A webhook endpoint on 127.0.0.1 that keeps every POST and answers `status`."""

    def __init__(self, status: int = 204) -> None:
        self.received: list[dict[str, Any]] = []
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                with lock:
                    outer.received.append({"headers": dict(self.headers), "body": json.loads(body)})
                self.send_response(status)
                if status >= 400:
                    payload = b'{"error": "bad hook"}'
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                else:
                    self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def roster_with_hooks(tmp_path: Path, hooks: dict[str, str]) -> Path:
    """The example town, with a webhook channel for each person in `hooks`."""
    text = EXAMPLE_ROSTER.read_text(encoding="utf-8")
    for person, url in hooks.items():
        anchor = f'id = "{person}"\n'
        assert anchor in text, person
        text = text.replace(
            anchor, anchor + f'channels = [{{ kind = "webhook", url = "{url}" }}]\n', 1
        )
    path = tmp_path / "roster.toml"
    path.write_text(text, encoding="utf-8")
    load_roster(path)  # still valid
    return path


# ------------------------------------------------------------------ (a) the texts, pure


@pytest.fixture(scope="module")
def town() -> Roster:
    return load_roster(EXAMPLE_ROSTER)


AT = datetime(2026, 11, 30, 0, 0, tzinfo=UTC)  # 08:00 in the town


def test_keys_are_per_day_and_per_iso_week() -> None:
    monday, wednesday = date(2026, 11, 30), date(2026, 12, 2)
    assert digest.digest_key("daily", monday) == "digest:daily:2026-11-30"
    assert digest.digest_key("daily", wednesday) != digest.digest_key("daily", monday)
    assert digest.digest_key("weekly", monday) == "digest:weekly:2026-W49"
    assert digest.digest_key("weekly", wednesday) == digest.digest_key("weekly", monday)
    assert digest.digest_key("weekly", monday - timedelta(days=1)) == "digest:weekly:2026-W48"


def test_periods_are_the_towns_calendar_days() -> None:
    # 23:30 UTC on the 29th is already the 30th in the town.
    assert digest.local_day(datetime(2026, 11, 29, 23, 30, tzinfo=UTC), TZ) == date(2026, 11, 30)
    start, end = digest.yesterday_window(date(2026, 11, 30), TZ)
    assert start == datetime(2026, 11, 28, 16, 0, tzinfo=UTC)
    assert end == datetime(2026, 11, 29, 16, 0, tzinfo=UTC)
    start, end = digest.week_window(date(2026, 11, 30), TZ)
    assert end - start == timedelta(days=7)
    assert start.astimezone(ZoneInfo(TZ)).date() == date(2026, 11, 23)


def test_recipients_are_the_leading_group_and_the_office(town: Roster) -> None:
    ids = digest.digest_recipients(town)
    lg = town.leading_group
    assert ids[:2] == [lg.leader, lg.deputy]
    assert set(lg.members) <= set(ids)
    assert set(town.members_of(town.roles.office)) <= set(ids)
    assert len(ids) == len(set(ids))
    assert "lin.feng" not in ids  # unit staff are not on the digest


def test_daily_digest_text(town: Roster) -> None:
    facts = digest.DailyFacts(
        day=date(2026, 11, 30),
        at=AT,
        open_incidents=[
            digest.OpenIncident(
                id="YQ-1",
                title="东湖村道路积水",
                severity="major",
                phase="handling",
                responsible_unit="cjb",
                next_due_at=AT + timedelta(hours=5),
            ),
            digest.OpenIncident(
                id="YQ-2",
                title="卫生院排队过长",
                severity="general",
                phase="triage",
                next_due_at=AT - timedelta(hours=1),
                overdue=True,
            ),
        ],
        due_soon=[
            digest.DueDeadline(
                incident_id="YQ-1",
                incident_title="东湖村道路积水",
                title="R-REPLY 重大舆情24小时内官方回复",
                unit="cjb",
                due_at=AT + timedelta(hours=5),
            )
        ],
        misses=[
            digest.Miss(
                incident_id="YQ-3",
                incident_title="桥梁裂缝视频",
                rule="R-REPORT",
                kind="迟报",
                unit="yqb",
                due_at=AT - timedelta(hours=20),
                met_at=AT - timedelta(hours=18),
                recorded_at=AT - timedelta(hours=18),
            )
        ],
    )
    subject, body = digest.compose_daily(facts, town, TZ)
    assert subject == (
        "【每日舆情简报】2026年11月30日：在办2件（逾期1件），24小时内到期1项，昨日问责记录1条"
    )
    assert body.startswith("清溪镇舆情应急处置每日简报（2026年11月30日，不含演练）")
    # The overdue incident comes first, flagged; units by name, times in the town's zone.
    assert body.index("【已逾期】卫生院排队过长") < body.index("东湖村道路积水（YQ-1")
    assert "东湖村道路积水（YQ-1，重大，处置中，责任单位：村镇建设办，下一期限11-30 13:00）" in body
    assert "11-30 13:00前（还剩5小时）R-REPLY 重大舆情24小时内官方回复：东湖村道路积水" in body
    assert "舆情应急处置工作领导小组办公室 迟报（R-REPORT，期限11-29 12:00，晚2小时）" in body


def test_daily_digest_with_nothing_to_report(town: Roster) -> None:
    subject, body = digest.compose_daily(digest.DailyFacts(day=date(2026, 11, 30), at=AT), town, TZ)
    assert "在办0件" in subject and "逾期" not in subject
    assert body.count("  无") == 3


def test_weekly_summary_text(town: Roster) -> None:
    facts = digest.WeeklyFacts(
        start=date(2026, 11, 23),
        end=date(2026, 11, 29),
        units=[
            digest.UnitFigures(
                unit="sswb", on_time=1, on_time_rate=1.0, commendations=[{"reason": "处置得力"}]
            ),
            digest.UnitFigures(
                unit="cjb", on_time=2, late=1, missed=1, on_time_rate=0.5, records={"逾期": 2}
            ),
        ],
    )
    subject, body = digest.compose_weekly(facts, town)
    assert subject == "【每周问责汇总】2026年11月23日至2026年11月29日：按期率60.0%，问责记录2条"
    assert "全镇：到期5项，按期完成3项，按期率60.0%；问责记录2条。" in body
    assert (
        "村镇建设办：按期2，逾期完成1，未完成1，进行中0，按期率50.0%；问责记录：逾期2次；表彰0次"
        in body
    )
    assert (
        "社会事务办：按期1，逾期完成0，未完成0，进行中0，按期率100.0%；问责记录：无；表彰1次"
        in body
    )
    assert body.index("村镇建设办") < body.index("社会事务办")  # by unit id
    empty = digest.compose_weekly(
        digest.WeeklyFacts(start=date(2026, 11, 23), end=date(2026, 11, 29)), town
    )
    assert "按期率-" in empty[0] and "该期间无记录" in empty[1]


def test_digest_note_is_a_notification_for_the_day(town: Roster) -> None:
    note = digest.digest_note(
        "daily", date(2026, 11, 30), AT, "主题", "正文", town, "https://yq.example/"
    )
    plain = note.notification()
    assert type(plain).__name__ == "Notification" and "office" not in plain.model_dump()
    assert plain.key == "digest:daily:2026-11-30" and plain.link == "https://yq.example/incidents"
    assert [r.person_id for r in plain.recipients] == digest.digest_recipients(town)
    assert note.office == town.members_of("yqb") and plain.drill is False


# ------------------------------------------------------------------ (b) schedules on the dev server


@pytest.fixture
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    env = await start_dev_server()
    async with env:
        yield env


async def schedule_ids(client: Client) -> set[str]:
    return {s.id async for s in await client.list_schedules()}


async def run_and_wait(handle: ScheduleHandle, client: Client) -> digest.DigestOutcome:
    """Trigger the schedule, wait for the run it starts and return that run's outcome."""
    before = len((await handle.describe()).info.recent_actions)
    await handle.trigger()
    deadline = time.monotonic() + 15
    while True:
        actions = (await handle.describe()).info.recent_actions
        if len(actions) > before:
            break
        assert time.monotonic() < deadline, "the schedule started nothing"
        await asyncio.sleep(0.1)
    started = actions[-1].action
    assert isinstance(started, ScheduleActionExecutionStartWorkflow)
    run = client.get_workflow_handle(
        started.workflow_id,
        run_id=started.first_execution_run_id,
        result_type=digest.DigestOutcome,
    )
    return await asyncio.wait_for(run.result(), 20)


def digest_inbox(database_url: str, person: str, key: str) -> list[Any]:
    with session_scope(database_url) as s:
        return [m for m in notifications.inbox(s, recipient=person) if m.key == key]


def seed_misses(database_url: str, today: date) -> None:
    """Two incidents written as the record activity writes them: a real one with a 迟报 recorded
    yesterday, and a drill whose miss (also yesterday) must stay out of the digests."""
    noon_yesterday = datetime.combine(
        today - timedelta(days=1), datetime.min.time(), tzinfo=ZoneInfo(TZ)
    ) + timedelta(hours=12)
    for incident_id, title, drill in (
        ("YQ-SEED-LATE", "镇中学食堂饭菜质量投诉", False),
        ("YQ-SEED-DRILL", "演练：桥梁裂缝视频传播", True),
    ):
        due = noon_yesterday - timedelta(hours=2)
        row = IncidentRow(
            id=incident_id,
            version=1,
            title=title,
            content="网帖内容",
            source="微博",
            url=None,
            reporter_unit="sswb",
            reporter_name=None,
            responsible_unit="sswb",
            severity="general",
            category="inquiry",
            phase="closed",
            drill=drill,
            discovered_at=due - timedelta(hours=1),
            posted_at=None,
            received_at=noon_yesterday,
            next_due_at=None,
            overdue=False,
            closed_at=noon_yesterday,
            plan_version="2024",
        )
        deadline = Deadline(
            key="R-REPORT",
            rule="R-REPORT",
            title="R-REPORT 发现后1小时内报告",
            due_at=due,
            met_at=noon_yesterday,
            overdue=True,
            unit="sswb",
        )
        record = AccountabilityRecord(
            deadline_key="R-REPORT",
            rule="R-REPORT",
            kind="迟报",
            unit="sswb",
            person="wu.fang",
            due_at=due,
            recorded_at=noon_yesterday,
            met_at=noon_yesterday,
        )
        with session_scope(database_url) as s:
            incident_rows.record(
                s,
                request=RecordRequest(
                    incident=row, deadlines=[deadline], timeline=[], accountability=[record]
                ),
            )


async def test_schedules_send_the_digests_once_a_day(
    dev_server: WorkflowEnvironment,
    database_url: str,
    executor: Any,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    client = dev_server.client
    roster_file = roster_with_hooks(tmp_path, {"liu.yang": receiver.url})
    roster = load_roster(roster_file)
    settings = make_settings(database_url, roster_file=roster_file, timezone=TZ)
    today = digest.local_day(datetime.now(UTC), TZ)
    seed_misses(database_url, today)

    async with running_worker(client, settings, executor):
        # A real incident: its workflow writes the read model (open, R-REPLY due within 24 h).
        view = await submit(client, settings, roster, title="东湖村道路积水多日无人处理")

        def recorded() -> bool:
            with session_scope(database_url) as s:
                return bool(incident_rows.deadlines(s, incident_id=view.id))

        await eventually(recorded)
        with session_scope(database_url) as s:
            reply = next(
                d for d in incident_rows.deadlines(s, incident_id=view.id) if d.rule == "R-REPLY"
            )
            assert reply.due_at < datetime.now(UTC) + timedelta(hours=24)

        # Idempotent: a second call (and `yuqing setup`) updates, the list holds exactly these.
        assert await ensure_schedules(client, settings) == [
            (DAILY_SCHEDULE_ID, "created"),
            (WEEKLY_SCHEDULE_ID, "created"),
            (RETENTION_SCHEDULE_ID, "created"),
            (REACH_TEST_SCHEDULE_ID, "created"),
        ]
        assert await ensure_schedules(client, settings) == [
            (DAILY_SCHEDULE_ID, "updated"),
            (WEEKLY_SCHEDULE_ID, "updated"),
            (RETENTION_SCHEDULE_ID, "updated"),
            (REACH_TEST_SCHEDULE_ID, "updated"),
        ]
        env = {
            "YUQING_TEMPORAL_ADDRESS": client.service_client.config.target_host,
            "YUQING_TEMPORAL_TASK_QUEUE": settings.temporal_task_queue,
            "YUQING_DATABASE_URL": database_url,
            "YUQING_ROSTER_FILE": str(roster_file),
            "YUQING_TIMEZONE": TZ,
        }
        get_settings.cache_clear()
        try:
            setup = await asyncio.to_thread(runner.invoke, app, ["setup"], env=env)
        finally:
            get_settings.cache_clear()
        assert setup.exit_code == 0, setup.output
        assert "搜索属性 Overdue（Bool）：已存在" in setup.output
        assert f"定时任务 {DAILY_SCHEDULE_ID}" in setup.output and "已更新" in setup.output
        deadline = time.monotonic() + 15
        while (ids := await schedule_ids(client)) != {
            DAILY_SCHEDULE_ID,
            WEEKLY_SCHEDULE_ID,
            RETENTION_SCHEDULE_ID,
            REACH_TEST_SCHEDULE_ID,
        }:
            assert time.monotonic() < deadline, ids
            await asyncio.sleep(0.2)

        daily = client.get_schedule_handle(DAILY_SCHEDULE_ID)
        described = await daily.describe()
        assert described.schedule.spec.time_zone_name == TZ
        next_run = described.info.next_action_times[0].astimezone(ZoneInfo(TZ))
        assert (next_run.hour, next_run.minute) == (8, 0)
        weekly_next = (await client.get_schedule_handle(WEEKLY_SCHEDULE_ID).describe()).info
        first = weekly_next.next_action_times[0].astimezone(ZoneInfo(TZ))
        assert (first.isoweekday(), first.hour, first.minute) == (1, 8, 30)
        # 归档 (issue 19, item 4): the retention run, nightly at 02:30 in the town's zone.
        nightly = (await client.get_schedule_handle(RETENTION_SCHEDULE_ID).describe()).info
        at = nightly.next_action_times[0].astimezone(ZoneInfo(TZ))
        assert (at.hour, at.minute) == (2, 30)
        # 通联测试 (issue 20, item 5): monthly, the 1st at 09:30; `yuqing setup` says so, and
        # after the setups above there is exactly one such schedule (the set just checked).
        assert f"定时任务 {REACH_TEST_SCHEDULE_ID}（通联测试，每月1日09:30" in setup.output
        reach = (await client.get_schedule_handle(REACH_TEST_SCHEDULE_ID).describe()).info
        at = reach.next_action_times[0].astimezone(ZoneInfo(TZ))
        assert (at.day, at.hour, at.minute) == (1, 9, 30)

        # The daily digest: the leader and the office read the open incident, its deadline and
        # yesterday's miss (the drill's left out); liu.yang's webhook gets it once.
        key = digest.digest_key("daily", today)
        outcome = await run_and_wait(daily, client)
        assert outcome.key == key and outcome.sent == 1 and outcome.failed == 0
        for person in ("wang.jianguo", "liu.yang"):
            (message,) = digest_inbox(database_url, person, key)
            assert message.subject.startswith("【每日舆情简报】")
            assert "东湖村道路积水多日无人处理" in message.body
            due_section = message.body.split("二、")[1].split("三、")[0]
            assert reply.title in due_section and view.id in due_section
            misses = message.body.split("三、")[1]
            assert "镇中学食堂饭菜质量投诉" in misses and "社会事务办 迟报" in misses
            assert "桥梁裂缝" not in message.body
        assert digest_inbox(database_url, "lin.feng", key) == []

        # Triggered again the same day: a second run, but no second message anywhere.
        again = await run_and_wait(daily, client)
        assert again.key == key
        assert len((await daily.describe()).info.recent_actions) == 2
        for person in ("wang.jianguo", "liu.yang"):
            assert len(digest_inbox(database_url, person, key)) == 1
        hooks = [m for m in receiver.received if m["body"]["incident_id"] == "digest"]
        assert len(hooks) == 1 and hooks[0]["body"]["subject"].startswith("【每日舆情简报】")

        # The weekly summary: accountability_report's per-unit figures of the last 7 days.
        weekly = await run_and_wait(client.get_schedule_handle(WEEKLY_SCHEDULE_ID), client)
        assert weekly.key == digest.digest_key("weekly", today)
        (summary,) = digest_inbox(database_url, "wang.jianguo", weekly.key)
        assert summary.subject.startswith("【每周问责汇总】")
        assert "社会事务办：" in summary.body and "问责记录：迟报1次" in summary.body


async def test_setup_registers_missing_search_attributes(database_url: str) -> None:
    """`yuqing setup` on a namespace without the incidents' search attributes registers them,
    then (run again) finds them and only updates the schedules."""
    env_server = await start_dev_server(search_attributes=False)
    async with env_server:
        client = env_server.client
        env = {
            "YUQING_TEMPORAL_ADDRESS": client.service_client.config.target_host,
            "YUQING_TEMPORAL_TASK_QUEUE": "tq-setup",
            "YUQING_DATABASE_URL": database_url,
            "YUQING_ROSTER_FILE": str(EXAMPLE_ROSTER),
        }
        get_settings.cache_clear()
        try:
            first = await asyncio.to_thread(runner.invoke, app, ["setup"], env=env)
            second = await asyncio.to_thread(runner.invoke, app, ["setup"], env=env)
        finally:
            get_settings.cache_clear()
        assert first.exit_code == 0, first.output
        for key in SEARCH_ATTRIBUTES:
            assert f"搜索属性 {key.name}（" in first.output
        assert "搜索属性 NextDeadlineAt（Datetime）：已注册" in first.output
        # Two digests, the nightly 归档 run and the monthly 通联测试.
        assert first.output.count("：已创建") == 4
        assert second.exit_code == 0, second.output
        assert "已注册" not in second.output and second.output.count("：已存在") == len(
            SEARCH_ATTRIBUTES
        )
        assert second.output.count("：已更新") == 4
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace="default")
        )
        assert {k.name for k in SEARCH_ATTRIBUTES} <= set(listed.custom_attributes)
        assert listed.custom_attributes["Overdue"] == IndexedValueType.INDEXED_VALUE_TYPE_BOOL


# ------------------------------------------------------------------ (c) yuqing notify test


def test_notify_test_reports_each_channel(
    database_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    refusing = Receiver(status=400)
    try:
        roster_file = roster_with_hooks(
            tmp_path, {"liu.yang": receiver.url, "lin.feng": refusing.url}
        )
        env = {"YUQING_DATABASE_URL": database_url, "YUQING_ROSTER_FILE": str(roster_file)}
        get_settings.cache_clear()
        try:
            ok = runner.invoke(app, ["notify", "test", "liu.yang"], env=env)
            bad = runner.invoke(app, ["notify", "test", "lin.feng"], env=env)
            unknown = runner.invoke(app, ["notify", "test", "nobody"], env=env)
        finally:
            get_settings.cache_clear()
    finally:
        refusing.close()

    assert ok.exit_code == 0, ok.output
    assert "站内信  OK" in ok.output
    assert f"webhook:{receiver.url}  OK" in ok.output
    (hook,) = receiver.received
    assert hook["body"]["subject"] == TEST_SUBJECT
    assert hook["body"]["recipient"] == {"id": "liu.yang", "name": "刘洋"}
    with session_scope(database_url) as s:
        (inbox,) = notifications.inbox(s, recipient="liu.yang")
    assert inbox.subject == TEST_SUBJECT and "刘洋" in inbox.body

    assert bad.exit_code == 1, bad.output
    assert f"webhook:{refusing.url}  失败：HTTP 400" in bad.output
    assert len(refusing.received) == 1 and "1个渠道发送失败" in bad.output

    assert unknown.exit_code == 1 and "人员“nobody”不在名册中" in unknown.output
