"""Browser tests: a real headless Chromium (Debian's, driven by Playwright's sync API) against the
real Temporal dev server, the worker and the web app as their own processes, as in test_e2e.

Skipped, loudly, when no Chromium or no Playwright is installed (.ci/run installs both). Each page
visited is saved as a screenshot in test-artifacts/screenshots/ (the user guide uses them)."""

from __future__ import annotations

import re
import shutil
import sys
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from tests.conftest import EXAMPLE_ROSTER, ROOT, start_dev_server
from tests.stack import running_stack

SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
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
        for person in ("zhou.ting", "liu.yang", "lin.feng", "sun.haitao"):
            made = stack.cli("token", "create", person)
            assert made.returncode == 0, made.stderr
            town.tokens[person] = made.stdout.strip()
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


def signed_in(browser: Any, town: Town, person: str) -> Any:
    """A fresh browser context signed in as `person` through the /login page."""
    context = browser.new_context(base_url=town.url, locale="zh-CN", timezone_id="Asia/Shanghai")
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto("/login")
    shot(page, "login")
    page.get_by_label("个人令牌").fill(town.tokens[person])
    page.get_by_role("button", name="登录", exact=True).click()
    page.wait_for_load_state()
    assert "/login" not in page.url, page.content()
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


def test_drill_deadline_goes_overdue_and_escalation_appears(browser: Any, town: Town) -> None:
    drill = town.api.post(
        "/api/incidents",
        json={
            "title": "演练：桥梁裂缝视频传播",
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
    drill_id = drill.json()["id"]

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


def test_the_guide_uses_screenshots_the_browser_tests_take() -> None:
    """docs/guide.zh.md shows pages the tests above photograph (`make guide-screenshots`)."""
    guide = (ROOT / "docs" / "guide.zh.md").read_text(encoding="utf-8")
    used = re.findall(r"\(screenshots/([a-z-]+)\.png\)", guide)
    assert len(used) >= 8
    source = Path(__file__).read_text(encoding="utf-8")
    for name in used:
        assert (ROOT / "docs" / "screenshots" / f"{name}.png").exists(), name
        assert f'"{name}"' in source, f"no browser test takes the screenshot {name}"
