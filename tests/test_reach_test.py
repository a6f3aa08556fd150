"""The 通联测试 (issue 20, item 5): ReachTestWorkflow messages every leading-group member, office
member and unit head on each of their channels (on the time-skipping server, with real HTTP
receivers), the run's rows land in the store, 确认收到 from the inbox sets confirmed_at, and the
leading group's dashboard lists an unreachable leader with since when; the API starts one for the
office and the leader only; and `yuqing setup` twice leaves exactly one monthly schedule (on the
real dev server). Reach checks never count toward the accountability figures."""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from temporalio.client import Client
from typer.testing import CliRunner

from config.settings import Settings
from plan import reach_test
from plan.reach_test import Check, ReachTestInput, ReachTestOutcome
from plan.roster import Roster, load_roster
from starter.web.app import create_app
from store import notifications, reach_checks, reporting
from store.db import session_scope
from tests.conftest import EXAMPLE_ROSTER, make_settings
from tests.helpers import running_worker
from tests.test_api import csrf_in, sign_in, token_for
from tests.test_digest import Receiver
from workflows.reach_test import ReachTestWorkflow

TZ = "Asia/Shanghai"
LEADER, DEPUTY, OFFICE, STAFF = "wang.jianguo", "li.xiaomei", "liu.yang", "lin.feng"
runner = CliRunner()


@pytest.fixture
def good() -> Iterator[Receiver]:
    r = Receiver(204)
    yield r
    r.close()


@pytest.fixture
def refusing() -> Iterator[Receiver]:
    r = Receiver(400)
    yield r
    r.close()


def roster_with(tmp_path: Path, channels: dict[str, str]) -> Path:
    """The example town, with the given `channels = [...]` line for each person named."""
    text = EXAMPLE_ROSTER.read_text(encoding="utf-8")
    for person, line in channels.items():
        anchor = f'id = "{person}"\n'
        assert anchor in text, person
        text = text.replace(anchor, anchor + line + "\n", 1)
    path = tmp_path / "roster.toml"
    path.write_text(text, encoding="utf-8")
    load_roster(path)  # still valid
    return path


# ------------------------------------------------------------------ pure


def test_the_test_reaches_the_leading_group_its_office_and_the_units_heads(
    roster: Roster,
) -> None:
    people = reach_test.tested_people(roster)
    lg = roster.leading_group
    assert people[:2] == [LEADER, DEPUTY]
    assert set(lg.members) <= set(people)
    assert set(roster.members_of(roster.roles.office)) <= set(people)
    assert {u.head for u in roster.units} <= set(people)
    assert STAFF not in people and len(people) == len(set(people))
    note = reach_test.reach_test_note(
        roster, "reach-test-x", datetime(2026, 12, 1, 1, 30, tzinfo=UTC), TZ, "https://yq.gov.cn"
    )
    assert note.subject == "【通联测试】请确认收到" and note.link == "https://yq.gov.cn/inbox"
    assert "通联测试" in note.body and "确认收到" in note.body and "与任何舆情事件无关" in note.body
    assert note.incident_id == "reach-test" and note.key == "reach-test:reach-test-x"
    assert reach_test.run_of_key(note.key) == "reach-test-x"
    assert reach_test.run_of_key(note.key + "|wang.jianguo|webhook:w|failed") is None


def test_the_test_goes_by_sms_too_as_number_000_of_its_day(
    database_url: str, tmp_path: Path
) -> None:
    """A digest sends no SMS, the 通联测试 does: the leader's SMS channel is tested like any
    other, its template's variables number 000 of the day (town time) and 通联测试, never a name."""
    from activities.notify import NotifyActivities
    from plan.outbox import deliveries_for
    from tests.test_sms import MOBILE, TencentSms, roster_with_sms, sms_settings

    roster_file = roster_with_sms(tmp_path)
    at = datetime(2026, 11, 30, 17, 30, tzinfo=UTC)  # 12-01 01:30 in the town
    note = reach_test.reach_test_note(load_roster(roster_file), "r-sms", at, TZ, "http://x")
    (request,) = [d for d in deliveries_for(note) if d.channel.kind == "sms"]
    assert request.recipient.person_id == LEADER and MOBILE not in request.model_dump_json()
    provider = TencentSms()
    try:
        activities = NotifyActivities(
            database_url, roster_file=roster_file, sms=sms_settings(provider.endpoint)
        )
        activities.notify(note)
        assert activities.deliver(request) == "sent"
        (sent,) = provider.sent()
    finally:
        provider.close()
    assert sent.body["PhoneNumberSet"] == [MOBILE]
    assert sent.body["TemplateParamSet"] == ["2026", "1201", "000", "通联测试", "新通知"]


def test_a_retried_prepare_writes_each_row_once(database_url: str) -> None:
    """The activity's rows are keyed (run, person, channel): a retry adds nothing; settling
    again changes nothing."""
    from activities.reach_test import ReachTestActivities

    activities = ReachTestActivities(database_url, EXAMPLE_ROSTER)
    request = reach_test.ReachTestRequest(
        run_id="reach-test-retry", at=datetime.now(UTC), timezone=TZ, public_url="http://x"
    )
    first = activities.prepare_reach_test(request)
    again = activities.prepare_reach_test(request)
    assert first == again
    with session_scope(database_url) as s:
        rows = reach_checks.recent(s)
    people = reach_test.tested_people(load_roster(EXAMPLE_ROSTER))
    assert sorted(c.person for c in rows) == sorted(people)  # the inbox alone: one row each
    outcome = activities.settle_reach_test(reach_test.ReachTestSettle(run_id="reach-test-retry"))
    assert (outcome.people, outcome.inbox_only, outcome.sent) == (len(people), len(people), 0)


def _check(run: str, at: datetime, person: str, **kw: Any) -> Check:
    values: dict[str, Any] = {
        "kind": "webhook",
        "channel": "webhook:webhook",
        "state": "sent",
        "error": None,
        "confirmed_at": None,
    }
    values.update(kw)
    return Check(run_id=run, started_at=at, person=person, **values)


def test_since_when_is_the_first_failing_run_of_the_unbroken_streak(roster: Roster) -> None:
    """A leader reached in January, not confirming in February and failing in March is unreachable
    since February; the deputy who confirmed is reachable; a person yet to confirm the latest run
    has three days before being listed."""
    jan, feb, mar = (datetime(2026, m, 1, 1, 30, tzinfo=UTC) for m in (1, 2, 3))
    ok = {"confirmed_at": jan + timedelta(hours=1)}
    checks = [
        _check("r1", jan, LEADER, **ok),
        _check("r1", jan, DEPUTY, **ok),
        _check("r2", feb, LEADER),  # sent, never confirmed
        _check("r2", feb, DEPUTY, confirmed_at=feb + timedelta(hours=2)),
        _check("r3", mar, LEADER, state="failed", error="HTTP 400"),
        _check("r3", mar, DEPUTY),  # not confirmed yet
    ]
    soon = mar + timedelta(days=1)
    found = {u.person: u for u in reach_test.unreachable(checks, roster, soon)}
    assert found[LEADER].since == feb
    assert found[LEADER].reasons[0] == "推送接口（webhook:webhook）被拒收：HTTP 400"
    assert DEPUTY not in found
    later = {u.person: u for u in reach_test.unreachable(checks, roster, mar + timedelta(days=4))}
    assert later[DEPUTY].since == mar and later[DEPUTY].reasons == ("3天内未确认收到",)
    # The others of the example town have no channel outside the inbox, and no run yet.
    assert found["chen.zhiqiang"].since is None
    assert found["chen.zhiqiang"].reasons == (reach_test.NO_CHANNEL,)
    latest = reach_test.latest_run(checks)
    assert latest is not None and (latest.run_id, latest.people, latest.confirmed) == ("r3", 2, 0)


# ------------------------------------------------------------------ the workflow, the pages


async def run_test(client: Client, settings: Settings, run_id: str) -> ReachTestOutcome:
    return await client.execute_workflow(
        ReachTestWorkflow.run,
        ReachTestInput(timezone=TZ, public_url="https://yq.example.gov.cn"),
        id=run_id,
        task_queue=settings.temporal_task_queue,
        result_type=ReachTestOutcome,
    )


def rows_of(settings: Settings, run_id: str) -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    with session_scope(settings.database_url) as s:
        for c in reach_checks.recent(s):
            if c.run_id == run_id:
                out.setdefault(c.person, []).append((c.channel, c.state))
    return out


async def test_every_channel_is_tested_confirmed_from_the_inbox_and_shown_on_the_dashboard(
    client: Client,
    database_url: str,
    executor: ThreadPoolExecutor,
    good: Receiver,
    refusing: Receiver,
    tmp_path: Path,
) -> None:
    roster_file = roster_with(
        tmp_path,
        {
            LEADER: (
                f'channels = [{{ kind = "webhook", id = "hook-ok", url = "{good.url}" }}, '
                f'{{ kind = "webhook", id = "hook-bad", url = "{refusing.url}" }}]'
            ),
            DEPUTY: f'channels = [{{ kind = "webhook", url = "{good.url}" }}]',
        },
    )
    roster = load_roster(roster_file)
    settings = make_settings(database_url, roster_file=roster_file, timezone=TZ)
    tested = reach_test.tested_people(roster)
    app_ = create_app(settings, client=client, roster=roster)

    async with running_worker(client, settings, executor):
        first = await run_test(client, settings, "reach-test-first")
        # Each channel on its own: the leader's good hook sent, his bad one refused; the deputy's
        # sent; everyone else has the inbox alone.
        assert (first.people, first.sent, first.failed, first.pending) == (len(tested), 2, 1, 0)
        assert first.inbox_only == len(tested) - 2
        rows = rows_of(settings, "reach-test-first")
        assert set(rows) == set(tested)
        assert sorted(rows[LEADER]) == [("webhook:hook-bad", "failed"), ("webhook:hook-ok", "sent")]
        assert rows[DEPUTY] == [("webhook:webhook", "sent")]
        assert rows["chen.zhiqiang"] == [("inbox", "inbox_only")]
        # The receivers got the test and nothing of any incident; every tested person has it in
        # the inbox, and nobody else.
        bodies = [m["body"] for m in good.received]
        assert len(bodies) == 2 and {b["recipient"]["id"] for b in bodies} == {LEADER, DEPUTY}
        assert all(b["incident_id"] == "reach-test" for b in bodies)
        assert all(b["subject"] == "【通联测试】请确认收到" for b in bodies)
        assert len(refusing.received) == 1
        with session_scope(settings.database_url) as s:
            for person in tested:
                keys = [m.key for m in notifications.inbox(s, recipient=person)]
                assert keys.count("reach-test:reach-test-first") == 1, person
            assert not notifications.inbox(s, recipient=STAFF)
            # The office is told which channel failed for whom.
            told = notifications.inbox(s, recipient=OFFICE)
            assert any(m.subject == "通知发送失败：王建国（webhook）" for m in told)

        async with (
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app_), base_url="http://t") as dep,
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app_), base_url="http://t") as off,
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app_), base_url="http://t") as st,
        ):
            # 确认收到 needs the person signed in: without a session, to the sign-in page.
            r = await dep.post("/inbox/reach-confirm", data={})
            assert r.status_code == 303 and r.headers["location"].startswith("/login")
            await sign_in(dep, settings, DEPUTY)
            page = await dep.get("/inbox")
            assert page.status_code == 200 and "确认收到</button>" in page.text
            assert "不计入问责统计" in page.text
            r = await dep.post("/inbox/reach-confirm", data={"csrf_token": csrf_in(page.text)})
            assert r.status_code == 303 and r.headers["location"] == "/inbox"
            page = await dep.get("/inbox")
            assert "确认收到</button>" not in page.text and "已确认收到。" in page.text
            with session_scope(settings.database_url) as s:
                mine = [c for c in reach_checks.recent(s) if c.person == DEPUTY]
                assert mine and all(c.confirmed_at is not None for c in mine)
                (message,) = [
                    m
                    for m in notifications.inbox(s, recipient=DEPUTY)
                    if m.key == "reach-test:reach-test-first"
                ]
                assert message.read_at is not None  # confirmed: read
                assert all(
                    c.confirmed_at is None for c in reach_checks.recent(s) if c.person == LEADER
                )

            # A second run: the leader's bad hook fails again, so he is unreachable since the first.
            second = await run_test(client, settings, "reach-test-second")
            assert (second.sent, second.failed) == (2, 1)
            await sign_in(off, settings, OFFICE)
            dash = await off.get("/dashboard")
            assert dash.status_code == 200, dash.text
            section = dash.text.split('id="reach"')[1]
            assert "通联情况" in dash.text and "不计入问责统计" in section
            leader_row = re.search(r'<tr data-person="wang.jianguo">(.*?)</tr>', section, re.S)
            assert leader_row is not None
            assert "王建国" in leader_row.group(1) and "组长" in leader_row.group(1)
            assert "推送接口（webhook:hook-bad）被拒收" in leader_row.group(1)
            with session_scope(settings.database_url) as s:
                started = min(c.started_at for c in reach_checks.recent(s))
            since = started.astimezone(ZoneInfo(TZ)).strftime("%Y-%m-%d %H:%M")
            assert f"{since}的测试起" in leader_row.group(1)
            # The deputy confirmed the first run and has three days for the second.
            assert 'data-person="li.xiaomei"' not in section
            assert 'data-person="chen.zhiqiang"' in section  # the inbox alone
            assert 'id="reach-start"' in section  # the office may start one

            # Staff neither see the dashboard nor start a test; their inbox has no test.
            await sign_in(st, settings, STAFF)
            assert (await st.get("/dashboard")).status_code == 403
            staff_inbox = await st.get("/inbox")
            assert "确认收到</button>" not in staff_inbox.text

            # The API: the office and the leader start one; anyone else is refused.
            r = await off.post("/api/reach-tests", headers=token_for(settings, STAFF))
            assert r.status_code == 403 and "通联测试" in r.json()["detail"]
            r = await off.post("/api/reach-tests", headers=token_for(settings, DEPUTY))
            assert r.status_code == 403
            r = await off.post("/api/reach-tests", headers=token_for(settings, OFFICE))
            assert r.status_code == 201, r.text
            run_id = r.json()["run_id"]
            assert run_id.startswith("reach-test-") and "通联测试已发起" in r.json()["message"]
            handle = client.get_workflow_handle(run_id, result_type=ReachTestOutcome)
            third = await handle.result()
            assert third.people == len(tested)
            r = await off.post("/api/reach-tests", headers=token_for(settings, LEADER))
            assert r.status_code == 201, r.text
            run_id = r.json()["run_id"]
            handle = client.get_workflow_handle(run_id, result_type=ReachTestOutcome)
            await handle.result()
            r = await off.post("/api/reach-tests/confirm", headers=token_for(settings, LEADER))
            assert r.status_code == 200 and r.json()["run_id"] == run_id

    # Never an accountability figure: the report over the period has no row at all.
    with session_scope(settings.database_url) as s:
        now = datetime.now(UTC)
        report = reporting.accountability_report(
            s, start=now - timedelta(days=2), end=now + timedelta(days=2)
        )
        assert list(report) == []


# ------------------------------------------------------------------ the schedule


# `yuqing setup` twice leaves one yuqing-monthly-reach-test schedule: tests/test_digest.py
# test_schedules_send_the_digests_once_a_day, on the dev server it starts for the schedules.
