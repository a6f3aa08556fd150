"""The staff pages: actions from the incident page, the inbox and 待办, over ASGI against the
time-skipping server and a real database."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from config.settings import Settings
from plan.roster import Roster
from starter.web.staff import plausible_actions
from store import credentials
from store.db import session_scope
from store.models import DeadlineRow, InboxMessage
from tests.helpers import app_over_asgi, eventually, submission
from tests.test_api import sign_in


@pytest.fixture
async def http(
    client: Client, settings: Settings, roster: Roster, executor: ThreadPoolExecutor
) -> AsyncIterator[httpx.AsyncClient]:
    async with app_over_asgi(client, settings, roster, executor) as c:
        yield c


async def new_incident(http: httpx.AsyncClient, **change: str) -> str:
    """Reported by the office's monitoring officer with her token (believed, issue 15)."""
    state = http._transport.app.state.yuqing  # type: ignore[attr-defined]
    with session_scope(state.settings.database_url) as s:
        token = credentials.create_token(s, person_id="zhou.ting")
    r = await http.post(
        "/api/incidents",
        json=submission(**change),
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def notice_of(html: str) -> str:
    found = re.search(r'id="action-done"[^>]*>([^<]*)<', html)
    return found.group(1) if found else ""


def forms_on(html: str) -> set[str]:
    return set(re.findall(r'id="action-([a-z-]+)"', html))


async def test_office_triages_unit_drafts_head_approves_from_the_page(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    incident_id = await new_incident(http)
    page_url = f"/incidents/{incident_id}"

    csrf = await sign_in(http, settings, "liu.yang")
    page = await http.get(page_url)
    assert page.status_code == 200 and "下一步：研判" in page.text
    assert "triage" in forms_on(page.text) and "draft-reply" not in forms_on(page.text)
    r = await http.post(
        f"{page_url}/actions/triage",
        data={
            "csrf_token": csrf,
            "severity": "major",
            "category": "inquiry",
            "responsible_unit": "cjb",
            "co_units": ["pcs"],
        },
    )
    # Post/redirect/get, landing at the notice, which names the action in Chinese (issue 18).
    location = f"{page_url}?done=triage#action-done"
    assert r.status_code == 303 and r.headers["location"] == location, r.text
    page = await http.get(r.headers["location"])
    assert "已完成操作：研判" in page.text and "处置中" in page.text
    assert 'id="action-done"' in page.text and "triage" not in notice_of(page.text)
    assert "派出所" in page.text or "pcs" in page.text

    csrf = await sign_in(http, settings, "lin.feng")
    page = await http.get(page_url)
    assert "draft-reply" in forms_on(page.text) and "triage" not in forms_on(page.text)
    r = await http.post(
        f"{page_url}/actions/draft-reply",
        data={"csrf_token": csrf, "text": "已组织抽排，今日内完成。", "kind": "official"},
    )
    assert r.status_code == 303, r.text

    csrf = await sign_in(http, settings, "sun.haitao")
    page = await http.get(page_url)
    assert "approve-reply" in forms_on(page.text)
    r = await http.post(
        f"{page_url}/actions/approve-reply", data={"csrf_token": csrf, "approve": "on"}
    )
    assert r.status_code == 303, r.text
    page = await http.get(page_url)
    assert "已审定，待发布" in page.text


async def test_wrong_role_is_refused_in_chinese_and_nothing_changes(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    incident_id = await new_incident(http, reporter_unit="cjb", reporter_name="林峰")
    page_url = f"/incidents/{incident_id}"
    csrf = await sign_in(http, settings, "xu.lei")
    # xu.lei's unit has no part in it: R-SECRECY refuses before anything is tried, as for an
    # unknown id (404).
    triage = {"severity": "urgent", "category": "inquiry", "responsible_unit": "cjb"}
    r = await http.post(f"{page_url}/actions/triage", data={"csrf_token": csrf, **triage})
    assert r.status_code == 404 and "不存在" in r.text

    # The reporting unit's staff sees the page, but triage is the office's: the workflow refuses.
    csrf = await sign_in(http, settings, "lin.feng")
    page = await http.get(page_url)
    assert page.status_code == 200 and "triage" not in forms_on(page.text)
    r = await http.post(f"{page_url}/actions/triage", data={"csrf_token": csrf, **triage})
    assert r.status_code == 403 and "办公室" in r.text and 'id="action-error"' in r.text
    got = await http.get(page_url)
    assert "待研判" in got.text

    # Missing CSRF token: 403; anonymous: to the sign-in page.
    r = await http.post(f"{page_url}/actions/report-spreading", data={"description": "x"})
    assert r.status_code == 403 and "CSRF" in r.text
    http.cookies.clear()
    r = await http.post(f"{page_url}/actions/triage", data=triage)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")


def test_plausible_actions_by_phase_and_role(roster: Roster) -> None:
    from plan.models import IncidentView

    now = datetime.now(UTC)
    view = IncidentView(
        id="YQ-1",
        title="t",
        content="c",
        source="微博",
        url=None,
        reporter_unit="yqb",
        reporter_name=None,
        discovered_at=now,
        posted_at=None,
        received_at=now,
        drill=False,
        drill_speedup=None,
        plan_version="1",
    )
    assert "triage" in plausible_actions(roster, "liu.yang", view)
    assert "triage" not in plausible_actions(roster, "lin.feng", view)
    assert "draft-reply" not in plausible_actions(roster, "lin.feng", view)


async def test_inbox_lists_and_marks_read(http: httpx.AsyncClient, settings: Settings) -> None:
    with session_scope(settings.database_url) as s:
        for n in (1, 2):
            s.add(
                InboxMessage(
                    key=f"test-{n}",
                    incident_id="YQ-TEST",
                    rule="R-REPLY",
                    recipient="liu.yang",
                    subject=f"请按期回复 {n}",
                    body="<script>alert(1)</script>",
                    link="http://localhost/incidents/YQ-TEST",
                    drill=False,
                    created_at=datetime.now(UTC) + timedelta(seconds=n),
                )
            )
    assert (await http.get("/inbox")).status_code == 303
    csrf = await sign_in(http, settings, "liu.yang")
    page = await http.get("/inbox")
    assert page.status_code == 200 and 'href="/inbox"' in page.text and 'href="/my"' in page.text
    assert '<strong class="subject">请按期回复 1</strong>' in page.text
    assert page.text.index("请按期回复 2") < page.text.index("请按期回复 1")  # newest first
    assert "<script>alert(1)" not in page.text
    with session_scope(settings.database_url) as s:
        first = s.query(InboxMessage).filter_by(key="test-1").one().id
    assert (await http.post("/inbox/read", data={"id": str(first)})).status_code == 403
    r = await http.post("/inbox/read", data={"csrf_token": csrf, "id": str(first)})
    assert r.status_code == 303 and r.headers["location"] == "/inbox"
    page = await http.get("/inbox")
    assert '<span class="subject">请按期回复 1</span>' in page.text
    assert '<strong class="subject">请按期回复 2</strong>' in page.text
    await http.post("/inbox/read", data={"csrf_token": csrf, "all": "1"})
    page = await http.get("/inbox")
    assert 'id="unread-count">0<' in page.text


async def test_inbox_groups_the_messages_of_one_drill_step(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    """Issue 18, item 6: at 3600× a drill's step tells a person several things at one instant
    (escalations of two deadlines, say); the inbox shows them as one group with one 演练 marker
    and one button that marks them all read. Another step, or a real incident, stays apart."""
    step = datetime.now(UTC).replace(microsecond=0)
    rows = [
        ("d1", "YQ-DRILL", True, step, "第3级督办：报告"),
        ("d2", "YQ-DRILL", True, step, "第3级督办：回复"),
        ("d3", "YQ-DRILL", True, step - timedelta(seconds=1), "第2级督办：回复"),
        ("r1", "YQ-REAL", False, step - timedelta(seconds=2), "请按期回复"),
        ("r2", "YQ-REAL", False, step - timedelta(seconds=2), "请按期报告"),
    ]
    with session_scope(settings.database_url) as s:
        for key, incident_id, drill, at, subject in rows:
            s.add(
                InboxMessage(
                    key=key,
                    incident_id=incident_id,
                    rule="R-ESCALATE",
                    recipient="liu.yang",
                    subject=("【演练】" if drill else "") + subject,
                    body="正文",
                    link=f"http://localhost/incidents/{incident_id}",
                    drill=drill,
                    created_at=at,
                )
            )
    csrf = await sign_in(http, settings, "liu.yang")
    page = (await http.get("/inbox")).text
    # A group with unread messages ends with its one form.
    groups = re.findall(r'<li class="group[^"]*">(.*?</form>)', page, re.S)
    assert len(groups) == 1, page
    assert "同一演练步骤的2条通知" in groups[0]
    assert "第3级督办：报告" in groups[0] and "第3级督办：回复" in groups[0]
    assert "第2级督办" not in groups[0] and "请按期" not in groups[0]
    assert groups[0].count('class="tag"') == 1 and "【演练】" not in page
    with session_scope(settings.database_url) as s:
        ids = {m.key: m.id for m in s.query(InboxMessage)}
    form = re.search(r'<form[^>]*id="read-group-[^"]*">(.*?)</form>', groups[0], re.S)
    assert form is not None
    assert sorted(re.findall(r'name="id" value="(\d+)"', form.group(1))) == sorted(
        [str(ids["d1"]), str(ids["d2"])]
    )
    r = await http.post(
        "/inbox/read", data={"csrf_token": csrf, "id": [str(ids["d1"]), str(ids["d2"])]}
    )
    assert r.status_code == 303
    with session_scope(settings.database_url) as s:
        read = {m.key for m in s.query(InboxMessage) if m.read_at is not None}
    assert read == {"d1", "d2"}


async def test_my_work_shows_overdue_in_red_and_countdowns(
    http: httpx.AsyncClient, settings: Settings, time_env: WorkflowEnvironment
) -> None:
    now = datetime.now(UTC)
    ids = [
        await new_incident(http, discovered_at=(now - timedelta(minutes=m)).isoformat())
        for m in (50, 1)
    ]
    await sign_in(http, settings, "liu.yang")

    def owed() -> list[DeadlineRow]:
        with session_scope(settings.database_url) as s:
            return list(
                s.query(DeadlineRow)
                .filter(DeadlineRow.incident_id.in_(ids), DeadlineRow.met_at.is_(None))
                .filter((DeadlineRow.unit == "yqb") | DeadlineRow.unit.is_(None))
                .order_by(DeadlineRow.due_at)
                .all()
            )

    await eventually(lambda: len(owed()) >= 2)
    rows = owed()
    page = await http.get("/my")
    assert page.status_code == 200 and 'data-due="' in page.text and "已逾期" not in page.text
    assert rows[0].title in re.sub(r"<[^>]+>", "", page.text)  # the rule code in a span of its own

    gap = rows[0].due_at - datetime.now(UTC) + timedelta(minutes=1)
    await time_env.sleep(gap)
    await eventually(lambda: any(r.overdue for r in owed()), within=30)
    page = await http.get("/my")
    assert 'class="overdue"' in page.text and "已逾期" in page.text
    # Red by the stylesheet, not inline styles (the CSP allows none).
    assert '<td class="late"' in page.text and 'style="' not in page.text
    assert "#owed td.late" in (await http.get("/static/style.css")).text
    assert 'data-due="' in page.text  # a later one still counts down
    assert "/static/countdown.js" in page.text
    js = await http.get("/static/countdown.js")
    assert js.status_code == 200 and "data-due" in js.text


async def test_next_step_on_top_approval_buttons_and_few_spokespeople(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    """Issue 18, item 3: the status line and the viewer's one next step on top; 同意 / 退回 with
    the draft inside the form; 退回 without a comment refused in Chinese (R-REVIEW); the
    spokesperson (R-RELEASE) chosen among the leading group, the units' heads and the publicity
    unit, the deputy leader first."""
    incident_id = await new_incident(http, severity="major")
    page_url = f"/incidents/{incident_id}"
    csrf = await sign_in(http, settings, "liu.yang")
    triage = {"severity": "major", "category": "hype", "responsible_unit": "cjb"}
    r = await http.post(f"{page_url}/actions/triage", data={"csrf_token": csrf, **triage})
    assert r.status_code == 303
    csrf = await sign_in(http, settings, "lin.feng")
    draft = {"csrf_token": csrf, "text": "已组织抽排，今日内完成。", "kind": "official"}
    assert (await http.post(f"{page_url}/actions/draft-reply", data=draft)).status_code == 303
    # The draft now waits on the head: redrafting is offered, but is not the next step.
    page = (await http.get(page_url)).text
    assert "draft-reply" in forms_on(page) and "下一步：起草回复" not in page

    csrf = await sign_in(http, settings, "sun.haitao")
    page = (await http.get(page_url)).text
    banner = re.search(r'id="status-banner">([^<]*)<', page)
    assert banner and "村镇建设办（孙海涛）须发布官方回复" in banner.group(1), banner
    assert "期限" in banner.group(1) and "还剩" in banner.group(1)
    top = page[: page.index('id="my-actions"')]
    assert 'class="action primary" id="action-approve-reply"' in top
    assert "下一步：审定回复" in top and "已组织抽排，今日内完成。" in top
    assert 'name="approve" value="on"' in top and 'name="approve" value="off"' in top
    assert 'type="checkbox" id="approve-reply-approve"' not in page
    # 退回 without a comment: refused in Chinese, the error summary on top with the form.
    r = await http.post(
        f"{page_url}/actions/approve-reply", data={"csrf_token": csrf, "approve": "off"}
    )
    assert r.status_code in (409, 422) and "退回回复稿须说明理由" in r.text
    assert r.text.index('id="action-error"') < r.text.index('id="action-approve-reply"')
    assert "data-focus" in r.text and "/static/focus.js" in r.text
    r = await http.post(
        f"{page_url}/actions/approve-reply", data={"csrf_token": csrf, "approve": "on"}
    )
    assert r.status_code == 303

    await sign_in(http, settings, "wang.jianguo")
    page = (await http.get(page_url)).text
    select = re.search(r'<select id="approve-release-spokesperson".*?</select>', page, re.S)
    assert select, page
    offered = [v for v in re.findall(r'<option value="([^"]*)"', select.group(0)) if v]
    roster = http._transport.app.state.yuqing.roster  # type: ignore[attr-defined]
    lg = roster.leading_group
    expected = {lg.leader, lg.deputy, *lg.members, "sun.haitao"}
    expected |= set(roster.members_of(roster.roles.publicity))
    assert set(offered) == expected and len(offered) < len(roster.people)
    assert re.search(rf'<option value="{lg.deputy}" selected>', select.group(0))


async def test_submission_errors_come_all_at_once(http: httpx.AsyncClient) -> None:
    """Issue 18, item 5: a form with a missing title and a discovery time in the future answers
    both at once (the future-date error used to come only once the others were fixed)."""
    form = {"content": "内容", "source": "微博", "reporter_unit": "yqb"}
    form["discovered_at"] = "2999-01-01T08:00"
    r = await http.post("/incidents", data=form)
    assert r.status_code == 422
    summary = r.text[r.text.index('class="error-summary"') :]
    summary = summary[: summary.index("</div>")]
    assert "标题" in summary and "发现时间不能晚于当前时间" in summary
    r = await http.post("/incidents", data={**form, "discovered_at": "昨天"})
    assert "时间格式不正确" in r.text and "标题" in r.text


def test_status_line_says_who_owes_what_by_when_and_how_far_escalated(roster: Roster) -> None:
    """Issue 18, item 3: 已逾期 · 社会事务办（吴芳）须发布官方回复 · 期限 13:47 · 已督办至组长
    (R-REPLY missed, R-ESCALATE at its last step; the first-responsible person answers, R-DUTY)."""
    from zoneinfo import ZoneInfo

    from plan import rules
    from plan.enums import Severity
    from plan.models import Deadline, IncidentView, Phase
    from plan.spec import shipped
    from starter.web.staff import status_banner

    tz = ZoneInfo("Asia/Shanghai")
    now = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)  # 14:00 in the town
    due = datetime(2026, 11, 30, 5, 47, tzinfo=UTC)  # 13:47
    reply = Deadline(
        key="R-REPLY#1",
        rule=rules.R_REPLY,
        title=rules.reply_title(Severity.urgent, shipped()),
        due_at=due,
        overdue=True,
        unit="sswb",
        escalation_step=len(shipped().escalation),
    )
    view = IncidentView(
        id="YQ-1",
        title="t",
        content="c",
        source="微博",
        url=None,
        reporter_unit="yqb",
        reporter_name=None,
        discovered_at=due - timedelta(hours=3),
        posted_at=None,
        received_at=due - timedelta(hours=3),
        drill=False,
        drill_speedup=None,
        plan_version="1",
        phase=Phase.handling,
        responsible_unit="sswb",
        deadlines=[reply],
    )
    banner = status_banner(roster, view, shipped(), tz, now)
    assert banner.overdue
    assert (
        " · ".join(banner.parts)
        == "已逾期 · 社会事务办（吴芳）须发布官方回复 · 期限 13:47 · 已督办至组长"
    )
    reply.overdue, reply.escalation_step = False, 0
    reply.due_at = now + timedelta(hours=1)
    banner = status_banner(roster, view, shipped(), tz, now)
    assert not banner.overdue and banner.parts[0] == "还剩1小时" and banner.parts[2] == "期限 15:00"
