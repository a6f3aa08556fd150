"""Browser tests: a real headless Chromium (Debian's, driven by Playwright's sync API) against the
real Temporal dev server, the worker and the web app as their own processes, as in test_e2e.

Skipped, loudly, when no Chromium or no Playwright is installed (.ci/run installs both). Each page
visited is saved as a screenshot in test-artifacts/screenshots/ (the user guide uses them)."""

from __future__ import annotations

import io
import re
import shutil
import sys
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from store import credentials
from store.db import session_scope
from tests.conftest import EXAMPLE_ROSTER, ROOT, start_dev_server
from tests.stack import running_stack, wait_until

SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
LEADER = "wang.jianguo"  # the leading group's leader in config/roster.example.toml
PARTY_OFFICE = "zhou.wenbin"  # 镇党政办 (party_office; also a member of the leading group)
OVERDUE_DRILL = "演练：桥梁裂缝视频传播"  # its page shows the deadline overdue and escalated
LEADER_DRILL = "演练：督办到组长"  # escalated to the leader: in his 督办给我
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    if Path("/usr/bin/chromium").exists():
        return "/usr/bin/chromium"
    return shutil.which("chromium")


def skip_reason() -> str | None:
    missing = []
    if chromium_path() is None:
        missing.append("no Chromium (/usr/bin/chromium or `chromium` on PATH)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package is not installed")
    if not missing:
        return None
    return (
        "!!! BROWSER TESTS SKIPPED: "
        + "; ".join(missing)
        + " — install Debian's chromium and fonts-wqy-microhei and `pip install -e '.[test]'`"
        + " (.ci/run does) !!!"
    )


def skip_loudly(reason: str) -> None:
    print(f"\n{reason}\n", file=sys.stderr)
    warnings.warn(reason, UserWarning, stacklevel=2)
    pytest.skip(reason)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def browser_dev_server() -> Any:
    reason = skip_reason()
    if reason:
        skip_loudly(reason)
    env = await start_dev_server()
    async with env:
        yield env


class Town:
    """The running app: its base URL, staff tokens and a JSON API client."""

    def __init__(self, url: str, tokens: dict[str, str]) -> None:
        self.url = url
        self.tokens = tokens
        self.api = httpx.Client(base_url=url, timeout=30)
        # Each person's browser state (the session cookie) after signing in through /login.
        self.signed: dict[str, Any] = {}
        self.drills: dict[str, str] = {}  # title → id, started with the town


@pytest.fixture(scope="module")
def town(
    browser_dev_server: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Town]:
    tmp_path = tmp_path_factory.mktemp("browser")
    roster_file = tmp_path / "roster.toml"
    roster_file.write_text(EXAMPLE_ROSTER.read_text(encoding="utf-8"), encoding="utf-8")
    with running_stack(
        browser_dev_server.client.service_client.config.target_host,
        tmp_path,
        roster_file,
        "browser",
    ) as stack:
        town = Town(stack.url, {})
        # Made in the store directly, as tests/test_authorisation.py does (a `yuqing` process
        # each cost half a second); tests/test_e2e.py runs `yuqing token create` itself.
        with session_scope(stack.env["YUQING_DATABASE_URL"]) as s:
            for person in ("zhou.ting", "liu.yang", "lin.feng", "sun.haitao", LEADER, PARTY_OFFICE):
                town.tokens[person] = credentials.create_token(s, person_id=person)
        # The drills two tests follow, started before any test: their plan time (an urgent
        # reply's 3 h in 3 s, then the escalation chain) passes while the tests before them run.
        for title in (OVERDUE_DRILL, LEADER_DRILL):
            town.drills[title] = start_drill(town, title)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        yield town
        town.api.close()


@pytest.fixture(scope="module")
def browser(town: Town) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def signed_in(browser: Any, town: Town, person: str, **device: Any) -> Any:
    """A fresh browser context (a desktop's, or `device`'s: viewport, is_mobile…) signed in as
    `person`: through the /login page the first time, then with the session cookie that sign-in
    got (a browser that stayed signed in), checked by opening 我的待办 without being sent to
    /login."""
    known = town.signed.get(person)
    context = browser.new_context(
        base_url=town.url,
        locale="zh-CN",
        timezone_id="Asia/Shanghai",
        storage_state=known,
        **device,
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    if known is not None:
        response = page.goto("/my")
        assert response is not None and response.ok, response and response.status
        assert urlsplit(page.url).path == "/my", page.url
        return page
    page.goto("/login")
    shot(page, "login")
    page.get_by_label("个人令牌").fill(town.tokens[person])
    page.get_by_role("button", name="登录", exact=True).click()
    page.wait_for_load_state()
    assert "/login" not in page.url, page.content()
    town.signed[person] = context.storage_state()
    return page


def fill_report(page: Any, title: str) -> None:
    page.get_by_label("标题").fill(title)
    page.get_by_label("内容摘要").fill("网友发帖称东湖村道路积水多日无人处理。")
    page.get_by_label("来源", exact=False).first.fill("微信公众号")
    page.get_by_label("发现时间").fill(datetime.now().strftime("%Y-%m-%dT%H:%M"))
    page.get_by_label("报告单位").select_option("yqb")


def submit_report(browser: Any, town: Town, title: str) -> str:
    page = signed_in(browser, town, "zhou.ting")
    page.goto("/")
    fill_report(page, title)
    shot(page, "form-filled")
    page.get_by_role("button", name="提交报告").click()
    # Signed-in staff land straight on the new incident's page.
    page.wait_for_url(re.compile(r"/incidents/YQ-[0-9A-F-]+$"))
    incident_id = page.locator("#incident-id").inner_text().strip()
    assert incident_id.startswith("YQ-") and page.url.endswith(f"/incidents/{incident_id}")
    assert title in page.locator("h1").inner_text()
    shot(page, "incident-monitoring")
    page.context.close()
    return incident_id


def test_monitoring_staff_signs_in_and_submits_through_the_form(browser: Any, town: Town) -> None:
    submit_report(browser, town, "浏览器测试：东湖村道路积水")


def test_empty_title_shows_the_chinese_message_and_keeps_the_input(
    browser: Any, town: Town
) -> None:
    page = signed_in(browser, town, "zhou.ting")
    page.goto("/")
    fill_report(page, "")
    page.get_by_label("发现时间").fill("2999-01-01T08:00")
    page.get_by_role("button", name="提交报告").click()
    page.wait_for_load_state()
    error = page.locator("#title-error")
    assert error.inner_text().strip() == "标题：必填"
    summary = page.locator(".error-summary")
    assert "提交未成功" in summary.inner_text()
    # Issue 18: every field's error at once, and the focus on the summary (static/focus.js).
    assert "发现时间不能晚于当前时间" in summary.inner_text()
    page.wait_for_function(
        "document.activeElement && document.activeElement.id === 'error-summary'"
    )
    assert page.get_by_label("标题").input_value() == ""
    assert page.get_by_label("内容摘要").input_value() == "网友发帖称东湖村道路积水多日无人处理。"
    assert page.locator("#source").input_value() == "微信公众号"
    assert page.get_by_label("发现时间").input_value()
    assert page.get_by_label("报告单位").input_value() == "yqb"
    shot(page, "form-invalid")
    page.context.close()


def test_a_phone_report_through_the_quick_form(browser: Any, town: Town) -> None:
    """R-WRITTEN, R-REPORT: the office, signed in, logs a phone report in a few fields; the call
    is the report, and the incident's ledger names the time the written report is due."""
    page = signed_in(browser, town, "liu.yang")
    context = page.context
    page.goto("/")
    page.locator("#oral-link").click()
    page.wait_for_url("**/report/oral")
    assert page.get_by_label("通话时间").input_value()  # prefilled with now
    page.get_by_label("事由").fill("浏览器测试：抖音传播桥梁裂缝视频")
    page.get_by_label("报告单位").select_option("dhc")
    page.get_by_label("报告人").fill("冯刚")
    assert page.get_by_label("舆情等级").input_value() == "urgent"
    shot(page, "oral-form")
    page.get_by_role("button", name="登记口头报告").click()
    page.wait_for_url(re.compile(r"/incidents/YQ-[0-9A-F-]+$"))
    assert "抖音传播桥梁裂缝视频" in page.locator("h1").inner_text()
    written = page.locator('[data-rule="R-WRITTEN"]').first
    assert written.is_visible() and "30分钟" in written.inner_text()
    shot(page, "oral-submitted")
    context.close()


def act(page: Any, action: str) -> Any:
    """The action's form on the incident page: the viewer's next step stands open on top; any
    other is a small form to open (issue 18)."""
    found = page.locator(f"#action-{action}")
    if found.evaluate("e => e.tagName") == "DETAILS":
        found.locator("summary").click()
    return found.locator("form")


def test_office_triages_unit_drafts_head_approves_unit_publishes(browser: Any, town: Town) -> None:
    incident_id = submit_report(browser, town, "浏览器测试：村道路灯损坏")
    url = f"/incidents/{incident_id}"

    page = signed_in(browser, town, "liu.yang")
    page.goto(url)
    shot(page, "incident-office")
    form = act(page, "triage")
    form.locator("#triage-severity").select_option("general")
    form.locator("#triage-category").select_option("inquiry")
    form.locator("#triage-responsible_unit").select_option("cjb")
    shot(page, "action-triage")
    form.get_by_role("button").click()
    page.wait_for_url(f"**{url}?done=triage#action-done")
    assert page.locator("#action-done").is_visible()
    assert page.locator("#action-done").inner_text() == "已完成操作：研判"
    # Post/redirect/get: a reload reads the page again and posts nothing.
    page.reload()
    assert page.locator("#action-done").is_visible()
    assert page.locator("#phase").inner_text().strip() == "处置中"
    shot(page, "incident-triaged")
    page.context.close()

    page = signed_in(browser, town, "lin.feng")
    page.goto(url)
    form = act(page, "draft-reply")
    form.locator("#draft-reply-text").fill("村建办已安排维修，今日内恢复照明。")
    shot(page, "action-draft-reply")
    form.get_by_role("button").click()
    page.wait_for_url(f"**{url}?done=draft-reply#action-done")
    assert "村建办已安排维修" in page.content()
    shot(page, "incident-drafted")
    page.context.close()

    page = signed_in(browser, town, "sun.haitao")
    page.goto(url)
    form = act(page, "approve-reply")
    # The draft stands inside the approval form, above 同意 / 退回 (issue 18).
    assert "村建办已安排维修" in form.locator("#approve-reply-draft").inner_text()
    assert page.locator("#status-banner").is_visible()
    shot(page, "action-approve-reply")
    form.get_by_role("button", name="同意").click()
    page.wait_for_url(f"**{url}?done=approve-reply#action-done")
    assert "已审定，待发布" in page.content()
    shot(page, "incident-approved")
    page.context.close()

    page = signed_in(browser, town, "lin.feng")
    page.goto(url)
    form = act(page, "publish-reply")
    form.locator("#publish-reply-channel").fill("镇政府微博")
    shot(page, "action-publish-reply")
    form.get_by_role("button").click()
    page.wait_for_url(f"**{url}?done=publish-reply#action-done")
    assert page.locator("#phase").inner_text().strip() == "动态跟踪"
    assert "已发布" in page.content()
    shot(page, "incident-published")
    page.context.close()


def start_drill(town: Town, title: str) -> str:
    """An urgent drill at 3600× (R-DRILL: an hour of the plan in a second), led by 村建办."""
    drill = town.api.post(
        "/api/incidents",
        json={
            "title": title,
            "content": "演练内容",
            "source": "抖音",
            "discovered_at": datetime.now(UTC).isoformat(),
            "reporter_unit": "yqb",
            "severity": "urgent",
            "responsible_unit": "cjb",
            "drill_speedup": 3600,
        },
    )
    assert drill.status_code == 201, drill.text
    return str(drill.json()["id"])


def test_drill_deadline_goes_overdue_and_escalation_appears(browser: Any, town: Town) -> None:
    drill_id = town.drills[OVERDUE_DRILL]

    page = signed_in(browser, town, "liu.yang")
    page.goto(f"/incidents/{drill_id}")
    shot(page, "drill-started")
    overdue_reply = page.locator('#deadlines tr[data-rule="R-REPLY"][data-state="overdue"]')
    escalations = page.get_by_role("heading", name="督办升级")
    deadline = time.monotonic() + 30
    while not (overdue_reply.count() and escalations.count()):
        assert time.monotonic() < deadline, "the drill never showed overdue and escalated"
        time.sleep(0.5)
        page.reload()
    assert "已逾期" in overdue_reply.inner_text()
    assert "overdue" in (overdue_reply.get_attribute("class") or "")
    shot(page, "drill-overdue-escalated")
    page.context.close()


def _bearer(town: Town, person: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {town.tokens[person]}"}


def _waits_in_my_work(page: Any, section: str, incident_id: str, action: str) -> Any:
    """The row of 待办's `section` for this incident and action, once the page shows it
    (the workflow writes the rows with each step: reload until it is there, 30 s at most)."""
    row = page.locator(f'#{section} tr[data-incident="{incident_id}"][data-action="{action}"]')
    deadline = time.monotonic() + 30
    page.goto("/my")
    while not row.count():
        assert time.monotonic() < deadline, f"{action} of {incident_id} never reached {section}"
        time.sleep(0.5)
        page.reload()
    return row


def test_my_work_shows_what_waits_for_the_office_the_head_and_the_leader(
    browser: Any, town: Town
) -> None:
    """Issue 18: the office's 待办 has the triage of a new incident; the head's, the approval of
    a draft (R-REVIEW); the leader's, the release of an urgent reply (R-RELEASE) under 待我审批,
    and a drill escalated to him (R-ESCALATE, level 3) under 督办给我, told in plan time; the
    navigation's badge counts them, with words for screen readers."""
    office = _bearer(town, "zhou.ting")
    created = town.api.post(
        "/api/incidents",
        headers=office,  # the office reports it: believed, so it waits for triage (issue 15)
        json={
            "title": "桥梁限行引发热议",
            "content": "网友质疑限行通告",
            "source": "微博",
            "discovered_at": datetime.now(UTC).isoformat(),
            "reporter_unit": "yqb",
            "severity": "urgent",
        },
    )
    assert created.status_code == 201, created.text
    real = created.json()["id"]

    page = signed_in(browser, town, "liu.yang")
    row = _waits_in_my_work(page, "todo-handle", real, "triage")
    assert "研判" in row.inner_text()
    badge = page.locator("#nav-my-count")
    assert int(badge.inner_text().strip().removesuffix("项待办")) >= 1
    assert page.locator("#nav-my-count .visually-hidden").inner_text() == "项待办"
    shot(page, "my-work-office")
    page.context.close()

    def act(person: str, name: str, body: dict[str, Any]) -> None:
        done = town.api.post(
            f"/api/incidents/{real}/actions/{name}", headers=_bearer(town, person), json=body
        )
        assert done.status_code == 200, done.text

    act(
        "liu.yang",
        "triage",
        {"severity": "urgent", "category": "hype", "responsible_unit": "cjb"},
    )
    act("lin.feng", "draft-reply", {"text": "限行系桥梁检测所需，预计三日后恢复。"})
    page = signed_in(browser, town, "sun.haitao")
    row = _waits_in_my_work(page, "todo-approve", real, "approve-reply")
    assert "审定回复" in row.inner_text() and "还剩" in row.inner_text()
    shot(page, "my-work-head")
    page.context.close()

    act("sun.haitao", "approve-reply", {"approve": True})
    drill_id = town.drills[LEADER_DRILL]

    page = signed_in(browser, town, LEADER)
    release = _waits_in_my_work(page, "todo-approve", real, "approve-release")
    assert "领导小组审定发布" in release.inner_text()
    escalated = _waits_in_my_work(page, "todo-escalated", drill_id, "escalated")
    # One row per deadline escalated to him: by now perhaps more than one, each told the same way.
    for text in escalated.all_inner_texts():
        assert "演练" in text and "督办" in text and "按演练时间" in text, text
        assert "【演练】" not in text
    assert int(page.locator("#nav-my-count").inner_text().strip().removesuffix("项待办")) >= 2
    shot(page, "my-work-leader")

    # R-DRILL: the dashboard follows drills when asked, each marked once, late in plan time.
    page.goto("/dashboard")
    assert drill_id not in page.locator("#overdue-count").locator("..").locator("..").inner_text()
    page.locator("#drills-toggle").click()
    page.wait_for_url("**/dashboard?drills=true")
    late = page.locator(f'#overdue tr:has(a[href="/incidents/{drill_id}"])')
    assert late.count() == 1, page.content()
    assert "按演练时间" in late.inner_text() and late.locator(".tag").inner_text() == "演练"
    assert page.locator(f'#escalations a[href="/incidents/{drill_id}"]').count() >= 1
    shot(page, "dashboard-drills")
    # One 演练 marker on the inbox's lines, not "演练 【演练】".
    page.goto("/inbox")
    assert int(page.locator("#nav-inbox-count").inner_text().strip().removesuffix("条未读")) >= 1
    assert page.locator("#inbox li .tag", has_text="演练").count() >= 1
    assert "【演练】" not in page.locator("#inbox").inner_text()
    page.context.close()


def test_pages_and_the_api_docs_work_under_the_content_security_policy(
    browser: Any, town: Town
) -> None:
    """Issue 15, finding 10: with the CSP on (self only, no inline script or style), no page the
    staff use reports a violation, the 待办 countdowns tick, and /api/docs renders Swagger UI from
    this site's own files: no request leaves for another host."""
    page = signed_in(browser, town, "liu.yang")
    violations: list[str] = []
    elsewhere: list[str] = []
    page.on(
        "console",
        lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None,
    )
    page.on(
        "request",
        lambda r: elsewhere.append(r.url) if not r.url.startswith(town.url) else None,
    )
    page.add_init_script(
        "document.addEventListener('securitypolicyviolation',"
        " e => console.log('Content Security Policy: ' + e.violatedDirective + ' ' + e.blockedURI));"
    )
    for path in ("/", "/incidents", "/my", "/inbox", "/dashboard", "/reports/accountability"):
        response = page.goto(path)
        assert response is not None and response.status == 200, path
        assert "default-src 'self'" in (response.headers.get("content-security-policy") or "")
        page.wait_for_load_state("networkidle")
    page.goto("/api/docs")
    page.locator(".opblock").first.wait_for()
    assert page.locator(".opblock").count() > 10
    assert "/api/incidents" in page.locator("#swagger-ui").inner_text()
    page.wait_for_load_state("networkidle")
    assert not violations, violations
    assert not elsewhere, elsewhere
    page.context.close()


def test_the_report_and_the_list_download_as_excel(browser: Any, town: Town) -> None:
    """Issue 19, item 2: the 导出电子表格 links download workbooks named in Chinese (the town, the
    table, the period) that open with a title row and the Chinese headers (R-ACCOUNT)."""
    from openpyxl import load_workbook

    page = signed_in(browser, town, "liu.yang")
    page.goto("/reports/accountability?start=2026-11-01&end=2026-11-30")
    with page.expect_download() as info:
        page.get_by_role("link", name="导出电子表格").click()
    download = info.value
    assert download.suggested_filename == "清溪镇舆情问责统计_2026-11-01至2026-11-30.xlsx"
    ws = load_workbook(io.BytesIO(Path(download.path()).read_bytes())).active
    assert ws is not None
    assert ws["A1"].value.startswith("清溪镇舆情处置问责统计（2026-11-01至2026-11-30")
    assert [c.value for c in ws[2]][:3] == ["单位", "单位代码", "按期完成"]
    assert ws.freeze_panes == "A3"

    page.goto("/incidents?drill=false")
    with page.expect_download() as info:
        page.get_by_role("link", name="导出电子表格").click()
    listed = info.value
    assert listed.suggested_filename.startswith("清溪镇舆情事件列表_")
    ws = load_workbook(io.BytesIO(Path(listed.path()).read_bytes())).active
    assert ws is not None and ws["A1"].value.startswith("清溪镇舆情事件列表（导出于")
    assert "演练：真实事件" in ws["A1"].value
    assert [c.value for c in ws[2]][:3] == ["短编号", "编号", "标题"]
    page.context.close()


DOCUMENTS = ROOT / "test-artifacts" / "documents"
# The documents the guide shows, rendered to images by `make guide-screenshots`
# (scripts/render_documents.sh): each name is `document-<kind>`.
DOCUMENT_IMAGES = (
    "document-written-report",
    "document-progress",
    "document-summary",
    "document-case-file",
    "document-escalation",
)


def _act(town: Town, incident_id: str, person: str, action: str, body: dict[str, Any]) -> Any:
    answer = town.api.post(
        f"/api/incidents/{incident_id}/actions/{action}", json=body, headers=_bearer(town, person)
    )
    assert answer.status_code == 200, (action, answer.text)
    return answer.json()


def complete_drill(town: Town, title: str) -> str:
    """An urgent drill taken through the whole plan over the API: triage, a reply reviewed
    (R-REVIEW), its wording approved (R-RELEASE) and published, subsided, summarised (R-SUMMARY).
    At 3600× its deadlines pass while it runs, so it also has escalations (R-ESCALATE)."""
    drill_id = start_drill(town, title)
    phase = town.api.get(f"/api/incidents/{drill_id}", headers=_bearer(town, "liu.yang")).json()
    if phase["phase"] == "lead":
        _act(town, drill_id, "liu.yang", "confirm-lead", {})
    triage = {"severity": "urgent", "category": "hype", "responsible_unit": "cjb"}
    _act(town, drill_id, "liu.yang", "triage", triage)
    deadline = time.monotonic() + 30
    while not town.api.get(f"/api/incidents/{drill_id}", headers=_bearer(town, "liu.yang")).json()[
        "escalations"
    ]:  # R-REPLY's hour passes in a second and escalates: its 督办通知 is one of the documents
        assert time.monotonic() < deadline, "the drill's missed reply never escalated"
        time.sleep(0.5)
    _act(town, drill_id, "lin.feng", "draft-reply", {"text": "已派人现场核查，今日答复。"})
    _act(town, drill_id, "sun.haitao", "approve-reply", {})
    _act(town, drill_id, LEADER, "approve-release", {"spokesperson": "li.xiaomei"})
    _act(town, drill_id, "lin.feng", "publish-reply", {"channel": "镇政府微博"})
    _act(town, drill_id, "lin.feng", "report-progress", {"text": "现场已设置警示，正在检测。"})
    _act(town, drill_id, "lin.feng", "track", {"status": "subsided"})
    done = _act(town, drill_id, "lin.feng", "submit-summary", {"text": "处置总结：已核查并答复。"})
    assert done["phase"] == "closed", done["phase"]
    return drill_id


def test_a_completed_drill_gives_each_document_in_one_click(browser: Any, town: Town) -> None:
    """Issue 19, "done when": from a completed drill, one click on the incident page gives each
    Word document (R-WRITTEN's report, the 续报 of R-PROGRESS, R-SUMMARY's report to 镇党政办,
    the case file, and R-ESCALATE's 督办通知), each opening in python-docx with the incident's
    values. The files are kept in test-artifacts/documents/ for `make guide-screenshots`."""
    from docx import Document

    title = "演练：桥梁裂缝视频传播（文书）"
    drill_id = complete_drill(town, title)
    page = signed_in(browser, town, "liu.yang")
    page.goto(f"/incidents/{drill_id}")
    escalation = page.locator("a", has_text="督办通知").first
    DOCUMENTS.mkdir(parents=True, exist_ok=True)
    # Each link, its document's section headings, and a value only this incident's record gives.
    links = {
        "written-report": ("舆情信息报告", ["一、舆情基本情况", "三、报送信息"], "抖音"),
        "progress": ("舆情信息续报", ["二、此前报告情况", "三、处置进展"], "现场已设置警示"),
        "summary": (
            "舆情处置情况报告（报镇党政办）",
            ["二、处置经过", "四、时限执行情况", "七、经验教训"],
            "平息后3日内报送书面总结（R-SUMMARY）",
        ),
        "case-file": ("舆情处置台账", ["二、时限台账", "四、督办情况"], "镇政府微博"),
    }
    for kind, (link, headings, expected) in links.items():
        with page.expect_download() as info:
            page.locator("#documents").get_by_role("link", name=link, exact=True).click()
        download = info.value
        assert download.suggested_filename.endswith(".docx"), download.suggested_filename
        path = DOCUMENTS / f"{kind}.docx"
        download.save_as(path)
        text = "\n".join(p.text for p in Document(str(path)).paragraphs) + "\n".join(
            cell.text
            for table in Document(str(path)).tables
            for row in table.rows
            for cell in row.cells
        )
        assert title in text, (kind, text[:300])
        for wanted in [*headings, expected]:
            assert wanted in text, (kind, wanted, text)
    with page.expect_download() as info:
        escalation.click()
    path = DOCUMENTS / "escalation.docx"
    info.value.save_as(path)
    notice = Document(str(path))
    text = "\n".join(p.text for p in notice.paragraphs) + "\n".join(
        cell.text for table in notice.tables for row in table.rows for cell in row.cells
    )
    assert "督办通知" in text and title in text, text[:300]
    shot(page, "drill-documents")
    page.context.close()


def test_the_guide_uses_screenshots_the_browser_tests_take() -> None:
    """docs/guide.zh.md shows pages the tests above photograph (`make guide-screenshots`)."""
    guide = (ROOT / "docs" / "guide.zh.md").read_text(encoding="utf-8")
    used = re.findall(r"\(screenshots/([a-z-]+)\.png\)", guide)
    assert len(used) >= 8
    source = Path(__file__).read_text(encoding="utf-8")
    # The layout test names its phone screenshots `phone-<page>-<role>` (look_at).
    phone_pages = {*PAGE_NAMES.values(), "incident", "form-invalid", "submitted"}
    phone = {f"phone-{page}-{role}" for page in phone_pages for role in ROLES}
    assert any(name in phone for name in used), "the guide shows no phone screenshot"
    for name in used:
        assert (ROOT / "docs" / "screenshots" / f"{name}.png").exists(), name
        taken = name in phone or f'"{name}"' in source
        assert taken, f"no browser test takes the screenshot {name}"


# Issue 18, items 2 and 9: every page, on a phone and on a desktop, as everyone who may see it,
# fits the screen and passes axe-core with no serious or critical violation.

PHONE: dict[str, Any] = {
    "viewport": {"width": 390, "height": 844},
    "is_mobile": True,
    "has_touch": True,
}
DESKTOP: dict[str, Any] = {"viewport": {"width": 1366, "height": 768}}
DEVICES = {"phone": PHONE, "desktop": DESKTOP}
# Who looks, by the role the phone screenshots are named after (`phone-<page>-<role>.png`).
ROLES: dict[str, str | None] = {
    "anonymous": None,
    "monitoring": "zhou.ting",
    "office": "liu.yang",
    "unit-staff": "lin.feng",
    "unit-head": "sun.haitao",
    "leader": "wang.jianguo",
    "party-office": "zhou.wenbin",
}
PAGE_NAMES = {
    "/": "form",
    "/report/oral": "oral",
    "/login": "login",
    "/incidents": "incidents",
    "/my": "my",
    "/inbox": "inbox",
    "/dashboard": "dashboard",
    "/reports/accountability": "report",
    "/access-log": "access-log",
}
# Every visible element whose box ends past the right edge of a `width` px wide screen (a page
# that overflows makes a phone zoom out, so the screen's width, not window.innerWidth, is the edge).
OVERFLOWING_JS = """(width) => {
  const out = [];
  for (const el of document.body.querySelectorAll('*')) {
    const box = el.getBoundingClientRect();
    if (box.width === 0 || box.height === 0 || box.right <= width + 1) continue;
    if (getComputedStyle(el).visibility === 'hidden') continue;
    const name = el.tagName.toLowerCase() + (el.id ? '#' + el.id : '')
      + [...el.classList].map(c => '.' + c).join('');
    out.push(name + ' right=' + Math.round(box.right)
      + ' «' + (el.textContent || '').trim().slice(0, 20) + '»');
  }
  if (document.documentElement.scrollWidth > width + 1)
    out.push('document scrollWidth=' + document.documentElement.scrollWidth);
  return out;
}"""
# What a finger taps: nav links, buttons, <details> summaries, form controls and checkbox labels
# are at least 44 px high (WCAG 2.5.5).
SMALL_TARGETS_JS = """() => {
  const out = [];
  const targets = document.querySelectorAll('header a, button, summary, select, textarea,'
    + ' input:not([type=hidden]):not([type=checkbox]):not([type=radio]),'
    + ' label:has(> input[type=checkbox])');
  for (const el of targets) {
    const box = el.getBoundingClientRect();
    if (box.width === 0 && box.height === 0) continue;
    if (box.height < 43.5 || box.width < 43.5)
      out.push(el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + ' '
        + Math.round(box.width) + 'x' + Math.round(box.height)
        + ' «' + (el.textContent || el.getAttribute('name') || '').trim().slice(0, 12) + '»');
  }
  return out;
}"""


@pytest.fixture(scope="module")
def handling_incident(browser: Any, town: Town) -> str:
    """An incident in handling with a drafted reply awaiting approval, so that its page shows
    the deadline ledger, a reply and the action forms."""
    incident_id = submit_report(browser, town, "浏览器测试：版面检查（手机与电脑）")
    url = f"/incidents/{incident_id}"
    page = signed_in(browser, town, "liu.yang")
    page.goto(url)
    form = act(page, "triage")
    form.locator("#triage-severity").select_option("general")
    form.locator("#triage-category").select_option("inquiry")
    form.locator("#triage-responsible_unit").select_option("cjb")
    form.get_by_role("button").click()
    page.wait_for_url(f"**{url}?done=triage#action-done")
    page.context.close()
    page = signed_in(browser, town, "lin.feng")
    page.goto(url)
    form = act(page, "draft-reply")
    form.locator("#draft-reply-text").fill(
        "村建办已安排维修，今日内恢复照明。详情见 https://www.example.gov.cn/qingxi/notices/"
        "2026/road-lights-repair-schedule-and-contacts-for-residents-of-donghu-village"
    )
    form.get_by_role("button").click()
    page.wait_for_url(f"**{url}?done=draft-reply#action-done")
    page.context.close()
    return incident_id


def look_at(page: Any, name: str, device: str, role: str) -> list[str]:
    """Check the page now shown: every <details> opened, no element past the screen's right edge,
    on a phone big enough tap targets (and a screenshot for the guide), and no serious or
    critical axe-core violation. Returns what is wrong."""
    from axe_playwright_python.sync_playwright import Axe

    page.eval_on_selector_all("details", "ds => ds.forEach(d => { d.open = true; })")
    width = DEVICES[device]["viewport"]["width"]
    problems = []
    if over := page.evaluate(OVERFLOWING_JS, width):
        problems.append(f"{name}: {len(over)} past the right edge: " + "; ".join(over[:5]))
    if device == "phone":
        if small := page.evaluate(SMALL_TARGETS_JS):
            problems.append(
                f"{name}: {len(small)} tap targets under 44 px: " + "; ".join(small[:5])
            )
        shot(page, f"phone-{name}-{role}")
    checked = Axe().run(page).response
    assert any(r["id"] == "color-contrast" for r in checked["passes"]), "axe-core checked nothing"
    for v in checked["violations"]:
        if v["impact"] in ("serious", "critical"):
            where = ", ".join(str(n["target"]) for n in v["nodes"][:3])
            problems.append(f"{name}: axe {v['id']} ({v['impact']}, {len(v['nodes'])}×): {where}")
    return problems


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("role", ROLES)
def test_every_page_fits_the_screen_and_passes_axe(
    browser: Any, town: Town, handling_incident: str, role: str, device: str
) -> None:
    """Issue 18: on a phone (390×844) and a desktop (1366×768), every page the header links to,
    the login page and the incident page (or, signed out, the submitted and the invalid report
    form) have no element past the screen's right edge and no serious or critical axe-core
    violation; on the phone every tap target is at least 44 px."""
    person = ROLES[role]
    options = DEVICES[device]
    if person is None:
        context = browser.new_context(
            base_url=town.url, locale="zh-CN", timezone_id="Asia/Shanghai", **options
        )
        context.set_default_timeout(15_000)
        page = context.new_page()
        page.goto("/")
    else:
        page = signed_in(browser, town, person, **options)
        page.goto("/")
    links = page.eval_on_selector_all(
        "header a[href^='/']", "as => as.map(a => a.getAttribute('href'))"
    )
    paths = [p for p in dict.fromkeys([*links, "/login"]) if not p.startswith("/api/")]
    problems: list[str] = []
    for path in paths:
        response = page.goto(path)
        assert response is not None and response.ok, (path, response and response.status)
        if path != "/login" and urlsplit(page.url).path == "/login":
            continue  # a page for the signed-in only: the login page, checked on its own
        name = PAGE_NAMES.get(path) or path.strip("/").replace("/", "-")
        problems += look_at(page, name, device, role)
    if person is None:
        page.goto("/")
        fill_report(page, "")
        page.get_by_role("button", name="提交报告").click()
        page.wait_for_load_state()
        problems += look_at(page, "form-invalid", device, role)
        fill_report(page, "浏览器测试：未登录报告的回执页")
        page.get_by_role("button", name="提交报告").click()
        page.locator("#receipt-message").wait_for()
        problems += look_at(page, "submitted", device, role)
    else:
        response = page.goto(f"/incidents/{handling_incident}")
        assert response is not None and response.ok, response and response.status
        problems += look_at(page, "incident", device, role)
    page.context.close()
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems)


# Issue 20, "done when": a drill escalated to the leader shows per person 已送达/已签收, and goes
# again on his next channel until he signs for it.

# The leader's own channels, in the roster's order: three webhooks to one local receiver.
LEADER_HOOKS = ("one", "two", "three")
# A 督办 message unsigned this long (plan time) goes again: 8 s at the drill's 3600×, room for
# the leader to sign in and sign between two rounds (the shipped plan's 30 minutes is 0.5 s).
RESEND_AFTER = "PT8H"
RESEND_SECONDS = 8.0  # RESEND_AFTER at 3600×


class SigningTown(Town):
    def __init__(self, url: str, receiver: Any) -> None:
        super().__init__(url, {})
        self.receiver = receiver

    def hooks(self, incident_id: str, *, resent: bool = False) -> list[tuple[str, dict[str, Any]]]:
        """What reached the leader's webhooks about the incident, in order: (channel id, payload);
        only the 督办 messages sent again (【未签收，再次通知】…), if `resent`."""
        out = []
        for hit in self.receiver.received():
            body = hit.json()
            if body["incident_id"] != incident_id or body["recipient"]["id"] != LEADER:
                continue
            if resent and not body["subject"].startswith("【未签收"):
                continue
            out.append((hit.path.strip("/"), body))
        return out


@pytest.fixture(scope="module")
def signing_town(
    browser_dev_server: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SigningTown]:
    """A town of its own (a worker, the web app and a store on the same dev server) whose leader
    has three webhook channels to a receiver on 127.0.0.1, under a plan whose 督办 messages go
    again after RESEND_AFTER: the other tests' town keeps the example roster and the shipped plan."""
    from tests.test_channels import Receiver

    tmp_path = tmp_path_factory.mktemp("signing")
    receiver = Receiver()
    leader = f'id = "{LEADER}"\n'
    hooks = ", ".join(
        f'{{ id = "{h}", kind = "webhook", url = "{receiver.base}/{h}" }}' for h in LEADER_HOOKS
    )
    roster = EXAMPLE_ROSTER.read_text(encoding="utf-8")
    assert leader in roster
    roster_file = tmp_path / "roster.toml"
    roster_file.write_text(
        roster.replace(leader, f"{leader}channels = [{hooks}]\n", 1), encoding="utf-8"
    )
    plan = (ROOT / "plan" / "plan-2024.toml").read_text(encoding="utf-8")
    assert 'resend_after = "PT30M"' in plan
    plan_file = tmp_path / "plan.toml"
    plan_file.write_text(
        plan.replace('resend_after = "PT30M"', f'resend_after = "{RESEND_AFTER}"', 1),
        encoding="utf-8",
    )
    try:
        with running_stack(
            browser_dev_server.client.service_client.config.target_host,
            tmp_path,
            roster_file,
            "browser-signing",
            {"YUQING_PLAN_FILE": str(plan_file)},
        ) as stack:
            town = SigningTown(stack.url, receiver)
            with session_scope(stack.env["YUQING_DATABASE_URL"]) as s:
                town.tokens["liu.yang"] = credentials.create_token(s, person_id="liu.yang")
            yield town
            town.api.close()
    finally:
        receiver.close()


def _receipt(town: Town, drill_id: str, key: str) -> dict[str, Any] | None:
    state = town.api.get(f"/api/incidents/{drill_id}", headers=_bearer(town, "liu.yang")).json()
    return next((r for r in state["receipts"] if r["key"] == key), None)


def test_the_leader_signs_for_an_escalation_that_goes_again_on_his_next_channel_until_then(
    browser: Any, signing_town: SigningTown
) -> None:
    """Issue 20, "done when": a drill's missed report (R-REPORT) escalates up to the leader
    (step 3). The 督办 message reaches him in the inbox and on each of his three channels; the
    签收情况 shows 已送达 and 未签收. Unsigned, it goes again after the plan's wait on his first
    channel, then on the second (the roster's order); he opens the one-time sign-in link of the
    second on his phone and signs for it there: the page shows 已签收 and the time, and the third
    channel's round never comes. The deadline is not met by signing (R-ESCALATE)."""
    town = signing_town
    drill_id = start_drill(town, "演练：督办签收")
    key = "R-REPORT/3"

    def about(body: dict[str, Any]) -> bool:  # this 督办 message, not another deadline's
        return "（R-REPORT）" in body["subject"] and "第3级督办" in body["subject"]

    def resent() -> list[tuple[str, dict[str, Any]]]:
        return [(h, b) for h, b in town.hooks(drill_id, resent=True) if about(b)]

    first = wait_until(
        lambda: {h for h, b in town.hooks(drill_id) if about(b)} >= set(LEADER_HOOKS) or None,
        what="the step-3 督办 message on each of the leader's channels",
    )
    assert first and not resent()

    # The office sees, on a phone, that it reached him and that he has not signed for it.
    page = signed_in(browser, town, "liu.yang", **PHONE)
    page.goto(f"/incidents/{drill_id}")
    row = page.locator(f'#receipts tr[data-receipt="{key}"][data-person="{LEADER}"]')
    deadline = time.monotonic() + 30
    reached_on = r"(?<!再次通知：)推送接口（(one|two|three)）已送达"
    while len(re.findall(reached_on, row.locator('td[data-label="送达"]').inner_text())) < 3:
        assert time.monotonic() < deadline, row.inner_text()
        time.sleep(0.3)
        page.reload()
    assert row.get_attribute("data-signed") == "no"
    assert "站内消息已送达" in row.inner_text() and "王建国" in row.inner_text()
    assert row.locator('td[data-label="签收"]').inner_text().strip() == "未签收"
    problems = look_at(page, "incident-receipts", "phone", "office")
    assert not problems, "\n".join(problems)
    page.context.close()

    # Not signed for within the plan's wait: again on his first channel, then on the second.
    wait_until(lambda: len(resent()) >= 2, within=4 * 8, what="two rounds of re-sending")
    second_round_seen = time.monotonic()
    assert [h for h, _ in resent()] == ["one", "two"], resent()
    receipt = _receipt(town, drill_id, key)
    assert receipt and receipt["rounds"] == 2 and receipt["signed"] == {}
    assert [line.split("|")[1] for line in receipt["resent"]] == [
        "webhook:one",
        "webhook:two",
    ], receipt["resent"]

    # He opens the one-time link of the message on his second channel, on his phone, and signs.
    link = resent()[1][1]["sign_in_link"]
    context = browser.new_context(
        base_url=town.url, locale="zh-CN", timezone_id="Asia/Shanghai", **PHONE
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto(link)
    page.get_by_role("button", name="以王建国的身份登录并查看事件").click()
    page.wait_for_url(f"**/incidents/{drill_id}")
    form = act(page, "sign-for")
    form.locator("select").select_option(key)
    shot(page, "action-sign-for")
    form.get_by_role("button").click()
    page.wait_for_url(f"**/incidents/{drill_id}?done=sign-for#action-done")
    signed_at = time.monotonic()
    assert signed_at - second_round_seen < RESEND_SECONDS, "signed too late to see re-sending stop"
    row = page.locator(f'#receipts tr[data-receipt="{key}"][data-person="{LEADER}"]')
    assert row.get_attribute("data-signed") == "yes"
    assert re.fullmatch(
        r"已签收 \d{4}-\d{2}-\d{2} \d{2}:\d{2}.*",
        row.locator('td[data-label="签收"]').inner_text().strip(),
    ), row.inner_text()
    # Each re-send's delivery is on the row too, by channel.
    reached = row.locator('td[data-label="送达"]').inner_text()
    assert "再次通知：推送接口（one）" in reached and "再次通知：推送接口（two）" in reached, (
        reached
    )
    problems = look_at(page, "incident-signed", "phone", "leader")
    assert not problems, "\n".join(problems)
    page.context.close()

    # The third channel's round would have come by now: nothing more went out for it.
    time.sleep(max(0.0, second_round_seen + RESEND_SECONDS + 2 - time.monotonic()))
    assert [h for h, _ in resent()] == ["one", "two"], resent()
    state = town.api.get(f"/api/incidents/{drill_id}", headers=_bearer(town, "liu.yang")).json()
    receipt = next(r for r in state["receipts"] if r["key"] == key)
    assert receipt["rounds"] == 2 and list(receipt["signed"]) == [LEADER]
    label = receipt["label"]
    told = [e["summary"] for e in state["timeline"] if e["kind"] == "resent"]
    told = [t for t in told if t.startswith(label)]
    assert len(told) == 2 and "第2次再次通知：王建国（推送接口）" in told[1], told
    assert any(e["kind"] == "signed" and e["actor"] == LEADER for e in state["timeline"])
    report = next(d for d in state["deadlines"] if d["key"].startswith("R-REPORT"))
    assert report["met_at"] is None and report["escalation_step"] == 3  # signing is not meeting
