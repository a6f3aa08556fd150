"""The web app and JSON API over ASGI, against the time-skipping server and a real database."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from temporalio import workflow
from temporalio.client import Client

from config.settings import Settings
from plan import rules
from plan.enums import Category, Severity
from plan.roster import Roster
from plan.spec import shipped
from starter import incidents
from starter.web.app import create_app
from store import credentials, incident_rows
from store.db import session_scope
from tests.helpers import app_over_asgi, eventually, submission


@pytest.fixture
async def http(
    client: Client, settings: Settings, roster: Roster, executor: ThreadPoolExecutor
) -> AsyncIterator[httpx.AsyncClient]:
    async with app_over_asgi(client, settings, roster, executor) as c:
        yield c


def token_for(settings: Settings, person: str) -> dict[str, str]:
    with session_scope(settings.database_url) as s:
        return {"Authorization": f"Bearer {credentials.create_token(s, person_id=person)}"}


def csrf_in(html: str) -> str:
    """The page's own form's token (the header's 退出 form comes first when signed in)."""
    found = re.findall(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no csrf token on the page"
    return str(found[-1])


async def sign_in(http: httpx.AsyncClient, settings: Settings, person: str) -> str:
    """Sign in to the pages with a fresh personal token; gives back the session's CSRF token."""
    token = token_for(settings, person)["Authorization"].removeprefix("Bearer ")
    login = await http.get("/login")
    r = await http.post(
        "/login", data={"csrf_token": csrf_in(login.text), "token": token, "next": "/incidents"}
    )
    assert r.status_code == 303 and r.headers["location"] == "/incidents", r.text
    return csrf_in((await http.get("/")).text)


async def test_submit_read_and_act_through_the_api(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    """R-REPLY through the API: 201 with the deadline, the state read back, staff actions by token."""
    discovered = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=3)
    # A monitoring officer of the office, with a token: believed, and answered in full.
    r = await http.post(
        "/api/incidents",
        json=submission(severity="major", discovered_at=discovered.isoformat()),
        headers=token_for(settings, "zhou.ting"),
    )
    assert r.status_code == 201, r.text
    body = r.json()
    incident_id = body["id"]
    reply = next(d for d in body["deadlines"] if d["rule"] == "R-REPLY")
    assert datetime.fromisoformat(reply["due_at"]) == discovered + timedelta(hours=24)
    assert reply["met_at"] is None and reply["overdue"] is False
    assert body["temporal_ui"].endswith(f"/workflows/{incident_id}")

    assert (await http.get(f"/api/incidents/{incident_id}")).status_code == 401
    # R-SECRECY: a unit with no part in it may not read it (for it, the id does not exist: 404);
    # the office may.
    outsider = await http.get(
        f"/api/incidents/{incident_id}", headers=token_for(settings, "xu.lei")
    )
    assert outsider.status_code == 404 and "不存在" in outsider.json()["detail"]
    got = (
        await http.get(f"/api/incidents/{incident_id}", headers=token_for(settings, "liu.yang"))
    ).json()
    assert got["phase"] == "triage" and got["severity"] == "major"
    assert got["timeline"][0]["kind"] == "reported"

    # No token, a bad token: 401 and nothing changes.
    triage = {"severity": "urgent", "category": "inquiry", "responsible_unit": "cjb"}
    assert (
        await http.post(f"/api/incidents/{incident_id}/actions/triage", json=triage)
    ).status_code == 401
    bad = {"Authorization": "Bearer yq_nope"}
    r = await http.post(f"/api/incidents/{incident_id}/actions/triage", json=triage, headers=bad)
    assert r.status_code == 401
    # Wrong role, from someone who may read it (宣传办): 403 with the reason in Chinese.
    r = await http.post(
        f"/api/incidents/{incident_id}/actions/triage",
        json=triage,
        headers=token_for(settings, "he.jing"),
    )
    assert r.status_code == 403 and "办公室" in r.json()["detail"]
    # From a unit with no part in it (yet): the incident does not exist for it (R-SECRECY).
    r = await http.post(
        f"/api/incidents/{incident_id}/actions/triage",
        json=triage,
        headers=token_for(settings, "lin.feng"),
    )
    assert r.status_code == 404 and "不存在" in r.json()["detail"]

    office = token_for(settings, "liu.yang")
    r = await http.post(f"/api/incidents/{incident_id}/actions/triage", json=triage, headers=office)
    assert r.status_code == 200, r.text
    reply = next(d for d in r.json()["deadlines"] if d["rule"] == "R-REPLY")
    assert datetime.fromisoformat(reply["due_at"]) == discovered + timedelta(hours=3)

    staff, head = token_for(settings, "lin.feng"), token_for(settings, "sun.haitao")
    actions = [
        ("draft-reply", {"text": "已组织抽排，今日内完成。"}, staff),
        ("approve-reply", {}, head),
        ("approve-release", {"spokesperson": "li.xiaomei"}, token_for(settings, "wang.jianguo")),
        ("publish-reply", {"channel": "镇政府微博", "url": "https://weibo.example/reply/1"}, staff),
        ("track", {"status": "subsided"}, staff),
        ("submit-summary", {"text": "发生、传播和处置情况及反思。"}, staff),
    ]
    for action, data, headers in actions:
        r = await http.post(
            f"/api/incidents/{incident_id}/actions/{action}", json=data, headers=headers
        )
        assert r.status_code == 200, (action, r.text)
    assert r.json()["phase"] == "closed"
    r = await http.post(
        f"/api/incidents/{incident_id}/actions/draft-reply", json={"text": "再来"}, headers=staff
    )
    assert r.status_code == 409 and "结案" in r.json()["detail"]

    listed = await eventually(
        lambda: [i for i in _list(settings) if i.id == incident_id and i.phase == "closed"]
    )
    assert listed
    r = await http.get("/api/incidents", params={"phase": "closed"}, headers=office)
    assert [i["id"] for i in r.json()["items"]] == [incident_id]
    # A unit sees the incidents it is involved in, and no others (R-SECRECY).
    mine = await http.get("/api/incidents", headers=token_for(settings, "lin.feng"))
    assert [i["id"] for i in mine.json()["items"]] == [incident_id]
    other = await http.get("/api/incidents", headers=token_for(settings, "xu.lei"))
    assert other.json()["items"] == []


def _list(settings: Settings) -> list:  # type: ignore[type-arg]
    with session_scope(settings.database_url) as s:
        return list(incident_rows.list_incidents(s))


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"title": ""}, "title", "标题"),
        ({"discovered_at": "yesterday"}, "discovered_at", "发现时间"),
        ({"discovered_at": "2026-11-29T08:00:00"}, "discovered_at", "时区"),
        ({"reporter_unit": "nowhere"}, "reporter_unit", "名册"),
        ({"severity": "catastrophic"}, "severity", "舆情等级"),
        ({"unexpected": 1}, "unexpected", "不是可接受的字段"),
        ({"url": "javascript:alert(1)"}, "url", "http"),
        ({"title": "长" * 201}, "title", "200"),
    ],
)
async def test_invalid_submissions_are_refused_in_chinese(
    http: httpx.AsyncClient, settings: Settings, change: dict[str, object], field: str, words: str
) -> None:
    r = await http.post("/api/incidents", json=submission(**change))
    assert r.status_code == 422
    errors = r.json()["errors"]
    assert any(e["field"] == field and words in e["message"] for e in errors), errors
    assert _list(settings) == []


async def test_bad_bodies(http: httpx.AsyncClient, settings: Settings) -> None:
    r = await http.post(
        "/api/incidents", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422 and "JSON" in r.json()["detail"]
    r = await http.post("/api/incidents", json=[1, 2])
    assert r.status_code == 422
    r = await http.post("/api/incidents", content=b"x" * (300 * 1024))
    assert r.status_code == 413
    future = datetime.now(UTC) + timedelta(days=1)
    r = await http.post("/api/incidents", json=submission(discovered_at=future.isoformat()))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "discovered_at"
    posted = datetime.now(UTC)
    r = await http.post(
        "/api/incidents",
        json=submission(
            discovered_at=(posted - timedelta(hours=1)).isoformat(), posted_at=posted.isoformat()
        ),
    )
    assert r.status_code == 422 and "发帖时间不能晚于发现时间" in r.text
    office = token_for(settings, "liu.yang")
    assert (await http.get("/api/incidents/YQ-MISSING", headers=office)).status_code == 404


async def test_form_submits_and_shows_the_incident(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    """Monitoring staff may report without signing in and get a confirmation with the incident
    id; reading the incident page needs sign-in (R-SECRECY)."""
    page = await http.get("/")
    assert page.status_code == 200 and "报告舆情" in page.text
    # The plan's severities and categories, a sentence each.
    for severity in Severity:
        explanation = rules.severity_explanation(severity, shipped())
        # As read: the rule code in its small grey span (issue 18).
        visible = re.sub(r'<span class="rule-code">([^<]*)</span>', r"\1", page.text)
        assert f"<strong>{severity.label}</strong>：{explanation}" in visible
    for category in Category:
        assert f"<strong>{category.label}</strong>：{category.explanation}" in page.text
    key = re.search(r'name="submission_key" value="([0-9a-f]+)"', page.text)
    assert key
    now_local = datetime.now(UTC).astimezone().strftime("%Y-%m-%dT%H:%M")
    form = {
        "submission_key": key.group(1),
        "title": "学校食堂卫生问题网帖",
        "content": "家长在本地论坛发帖反映学校食堂卫生问题。",
        "source": "本地论坛",
        "discovered_at": datetime.now(UTC).astimezone(_shanghai()).strftime("%Y-%m-%dT%H:%M"),
        "reporter_unit": "yqb",
        "severity": "general",
    }
    assert now_local
    r = await http.post("/incidents", data=form)
    assert r.status_code == 201 and "报告已提交" in r.text
    found = re.search(r'id="incident-id">(YQ-[0-9A-F-]+)<', r.text)
    assert found
    location = f"/incidents/{found.group(1)}"
    # A double click sends the same key: the same incident, not a second one (R-DEDUP).
    again = await http.post("/incidents", data=form)
    assert found.group(1) in again.text
    anonymous = await http.get(location)
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login")
    await sign_in(http, settings, "liu.yang")
    detail = await http.get(location)
    assert detail.status_code == 200
    assert "学校食堂卫生问题网帖" in detail.text and "一般舆情12小时内官方回复" in detail.text
    assert "在 Temporal UI 中查看" in detail.text
    # Signed in, the form leads straight to the incident page.
    page = await http.get("/")
    csrf = re.findall(r'name="csrf_token" value="([^"]+)"', page.text)[-1]
    signed_form = {**form, "submission_key": "second-report", "title": "另一条", "csrf_token": csrf}
    r = await http.post("/incidents", data=signed_form)
    assert r.status_code == 303 and r.headers["location"].startswith("/incidents/YQ-")


async def test_form_shows_errors_and_keeps_input(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    form = {
        "title": "保留我输入的标题",
        "content": "",
        "source": "微博",
        "discovered_at": "",
        "reporter_unit": "",
    }
    r = await http.post("/incidents", data=form)
    assert r.status_code == 422
    assert 'value="保留我输入的标题"' in r.text
    for words in ("内容摘要：必填", "发现时间：必填", "报告单位：必填"):
        assert words in r.text
    assert _list(settings) == []


async def test_quick_oral_report_form(http: httpx.AsyncClient, settings: Settings) -> None:
    """R-WRITTEN: the 电话口头报告 form asks only what a call gives, prefills the times, and the
    confirmation names the written report's deadline, 30 minutes from the call."""
    page = await http.get("/report/oral")
    assert page.status_code == 200 and "电话口头报告" in page.text
    assert 'name="variant" value="oral"' in page.text
    prefilled = re.search(
        r'id="oral_reported_at" name="oral_reported_at" type="datetime-local" value="([^"]+)"',
        page.text,
    )
    assert prefilled and prefilled.group(1)
    key = re.search(r'name="submission_key" value="([0-9a-f]+)"', page.text)
    assert key
    assert 'href="/report/oral"' in (await http.get("/")).text  # offered from the full form

    tz = _shanghai()
    call = datetime.now(tz).replace(second=0, microsecond=0) - timedelta(minutes=4)
    seen = call - timedelta(minutes=6)
    form = {
        "variant": "oral",
        "submission_key": key.group(1),
        "title": "东湖村道路积水视频在抖音传播",
        "reporter_unit": "dhc",
        "reporter_name": "冯刚",
        "severity": "urgent",
        "discovered_at": seen.strftime("%Y-%m-%dT%H:%M"),
        "oral_reported_at": call.strftime("%Y-%m-%dT%H:%M"),
    }
    # A call before the post was found is refused and the form keeps what was typed.
    early = {**form, "oral_reported_at": (seen - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M")}
    r = await http.post("/incidents", data=early)
    assert r.status_code == 422 and "口头报告时间不能早于发现时间" in r.text
    assert (
        'value="东湖村道路积水视频在抖音传播"' in r.text and 'name="variant" value="oral"' in r.text
    )
    assert _list(settings) == []
    missing = await http.post("/incidents", data={**form, "oral_reported_at": ""})
    assert missing.status_code == 422 and "口头报告时间：请填写" in missing.text

    # Anonymous: a receipt, and a lead for the office; the stated call time is shown to the
    # office and trusted for nothing (issue 15): no R-WRITTEN on the unit it names.
    r = await http.post("/incidents", data=form)
    assert r.status_code == 201, r.text
    incident_id = re.search(r'id="incident-id">(YQ-[0-9A-F-]+)<', r.text)
    assert incident_id
    office = token_for(settings, "liu.yang")
    got = (await http.get(f"/api/incidents/{incident_id.group(1)}", headers=office)).json()
    assert got["oral"] is True and got["phase"] == "lead" and got["source"] == "电话口头报告"
    assert datetime.fromisoformat(got["oral_reported_at"]) == call
    assert not [d for d in got["deadlines"] if d["rule"] == "R-WRITTEN"]

    # Signed in as the reporting unit's head: the call is the report (R-REPORT) and the written
    # report is owed 30 minutes from it (R-WRITTEN), named on the page.
    csrf = await sign_in(http, settings, "feng.gang")
    signed = {**form, "submission_key": key.group(1) + "0", "csrf_token": csrf}
    r = await http.post("/incidents", data=signed)
    assert r.status_code == 303, r.text
    incident_id = re.search(r"/incidents/(YQ-[0-9A-F-]+)", r.headers["location"])
    assert incident_id
    got = (await http.get(f"/api/incidents/{incident_id.group(1)}", headers=office)).json()
    assert got["severity"] == "urgent"
    written = next(d for d in got["deadlines"] if d["rule"] == "R-WRITTEN")
    assert datetime.fromisoformat(written["due_at"]) == call + timedelta(minutes=30)
    assert datetime.fromisoformat(written["anchor_at"]) == call
    report = next(d for d in got["deadlines"] if d["rule"] == "R-REPORT")
    assert datetime.fromisoformat(report["met_at"]) == call
    page = await http.get(f"/incidents/{incident_id.group(1)}")
    due = (call + timedelta(minutes=30)).strftime("%Y-%m-%d %H:%M")
    assert "R-WRITTEN" in page.text and due in page.text
    # The reporting unit files the written report from the incident page (R-WRITTEN met).
    assert "/actions/file-written-report" in page.text
    done = await http.post(
        f"/incidents/{incident_id.group(1)}/actions/file-written-report",
        data={"csrf_token": csrf, "text": "书面信息：抖音视频播放量约两万。"},
    )
    assert done.status_code == 303, done.text
    got = (await http.get(f"/api/incidents/{incident_id.group(1)}", headers=office)).json()
    assert next(d for d in got["deadlines"] if d["rule"] == "R-WRITTEN")["state"] == "met"


async def test_oral_report_time_through_the_api(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    """oral_reported_at must belong to an oral report, not lie in the future, and not precede
    the discovery: each is a 422 naming the field, and nothing starts."""
    now = datetime.now(UTC).replace(microsecond=0)
    base = submission(discovered_at=(now - timedelta(minutes=10)).isoformat())
    cases = [
        ({"oral_reported_at": now.isoformat()}, "仅电话口头报告需要填写"),
        (
            {"oral": True, "oral_reported_at": (now + timedelta(hours=1)).isoformat()},
            "不能晚于当前时间",
        ),
        (
            {"oral": True, "oral_reported_at": (now - timedelta(hours=1)).isoformat()},
            "不能早于发现时间",
        ),
    ]
    for extra, words in cases:
        r = await http.post("/api/incidents", json={**base, **extra})
        assert r.status_code == 422 and words in r.text, r.text
        assert any(e["field"] == "oral_reported_at" for e in r.json()["errors"]), r.text
    assert _list(settings) == []


def _shanghai():  # type: ignore[no-untyped-def]
    from zoneinfo import ZoneInfo

    return ZoneInfo("Asia/Shanghai")


async def test_every_action_has_its_own_route_and_schema(http: httpx.AsyncClient) -> None:
    """Each staff action is POST /api/incidents/{id}/actions/{name} with its own request schema."""
    from plan.actions import ACTIONS

    spec = (await http.get("/openapi.json")).json()
    for name, rule in ACTIONS.items():
        request_model = rule.request
        route = spec["paths"][f"/api/incidents/{{incident_id}}/actions/{name}"]["post"]
        ref = route["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith(f"/{request_model.__name__}"), (name, ref)
        schema = spec["components"]["schemas"][request_model.__name__]
        assert "actor" not in schema["properties"]  # who acts comes from the token, never the body
    assert "/api/leads" in spec["paths"] and "/api/reports/accountability" in spec["paths"]


async def test_ledger_lists_every_deadline_with_rule_anchor_due_and_state(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    """The deadline ledger: rule ID, the instant it counts from, due time and state."""
    discovered = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=40)
    posted = discovered - timedelta(minutes=50)
    r = await http.post(
        "/api/incidents",
        json=submission(
            severity="major",
            oral=True,
            discovered_at=discovered.isoformat(),
            posted_at=posted.isoformat(),
        ),
        headers=token_for(settings, "zhou.ting"),
    )
    assert r.status_code == 201, r.text
    office = token_for(settings, "liu.yang")
    body = (await http.get(f"/api/incidents/{r.json()['id']}", headers=office)).json()
    ledger = {d["rule"]: d for d in body["deadlines"]}
    assert set(ledger) == {"R-DISCOVER", "R-REPORT", "R-WRITTEN", "R-REPLY", "R-PROGRESS"}
    assert ledger["R-DISCOVER"]["state"] == "met_late"  # found 50 minutes after posting
    assert datetime.fromisoformat(ledger["R-DISCOVER"]["anchor_at"]) == posted
    assert ledger["R-REPORT"]["state"] == "met"
    assert datetime.fromisoformat(ledger["R-REPLY"]["anchor_at"]) == discovered
    assert ledger["R-REPLY"]["anchor_label"] == "发现时间"
    for d in body["deadlines"]:
        assert {"rule", "anchor_at", "due_at", "state"} <= set(d)
    await sign_in(http, settings, "liu.yang")
    page = await http.get(f"/incidents/{body['id']}")
    for d in body["deadlines"]:
        assert f'data-rule="{d["rule"]}" data-state="{d["state"]}"' in page.text


@workflow.defn(name="NotAnIncident")
class NotAnIncident:
    """Answers no `view` query, like an incident whose history no longer replays."""

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)


async def test_an_unreadable_incident_is_a_clear_503(
    http: httpx.AsyncClient, client: Client, settings: Settings
) -> None:
    """A query the worker cannot answer is a 503 naming the incident, never a bare 500."""
    from temporalio.worker import UnsandboxedWorkflowRunner, Worker

    queue = f"other-{settings.temporal_task_queue}"
    runner = UnsandboxedWorkflowRunner()  # the test module is no workflow module
    async with Worker(client, task_queue=queue, workflows=[NotAnIncident], workflow_runner=runner):
        await client.start_workflow("NotAnIncident", id="YQ-BROKEN", task_queue=queue)
        r = await http.get("/api/incidents/YQ-BROKEN", headers=token_for(settings, "liu.yang"))
        assert r.status_code == 503 and "YQ-BROKEN" in r.json()["detail"]
        await sign_in(http, settings, "liu.yang")
        page = await http.get("/incidents/YQ-BROKEN")
        assert page.status_code == 503 and "无法读取" in page.text
        await client.get_workflow_handle("YQ-BROKEN").terminate()


async def test_health_and_readiness(http: httpx.AsyncClient, settings: Settings) -> None:
    """/healthz: the process answers; /readyz: the store and Temporal answer too."""
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    ready = await http.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ok"}


async def test_readiness_names_what_is_missing(client: Client) -> None:
    from tests.conftest import make_settings

    broken = make_settings("postgresql://nobody@127.0.0.1:1/none")  # nothing listens on port 1
    app = create_app(broken, client=client)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        ready = await c.get("/readyz")
    assert ready.status_code == 503 and set(ready.json()["problems"]) == {"database"}


async def test_an_action_accepted_but_not_read_back_says_so(
    http: httpx.AsyncClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The action's answer is small (ActionDone); the API reads the incident back with a query.
    When that read fails the action still happened: 200 with what the workflow answered and a
    message, never a 5xx that would make the caller do it again."""
    office = token_for(settings, "liu.yang")
    r = await http.post("/api/incidents", json=submission(), headers=office)
    incident_id = r.json()["id"]

    readable = incidents.get

    async def unreadable(client: Client, incident_id: str, run_id: str | None = None) -> Any:
        if run_id is None:  # the R-SECRECY check before the action reads it as usual
            return await readable(client, incident_id)
        raise incidents.ServiceError(503, f"事件“{incident_id}”的状态暂时无法读取")

    monkeypatch.setattr(incidents, "get", unreadable)
    triage = {"severity": "general", "category": "inquiry", "responsible_unit": "sswb"}
    r = await http.post(f"/api/incidents/{incident_id}/actions/triage", json=triage, headers=office)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] is True and body["id"] == incident_id
    assert body["phase"] == "handling" and "已受理" in body["message"]
    monkeypatch.undo()
    again = await http.get(f"/api/incidents/{incident_id}", headers=office)
    assert again.json()["responsible_unit"] == "sswb"
