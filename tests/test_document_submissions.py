"""Documents as submissions (issue 19, item 5): R-WRITTEN's written report and R-SUMMARY's summary
may be an uploaded PDF or Word document (the generated draft offered first, to edit and upload)
as well as text; the public report form takes evidence files (screenshots, PDFs); and the CLI
attaches files (`yuqing attach`, `yuqing attachments`). Each on the time-skipping server with the
real app over ASGI and real files.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

from config.settings import Settings
from plan.roster import Roster
from starter import incidents
from starter.web.incident_pages import _form_to_submission
from store import notifications
from store.db import session_scope
from store.models import Incident
from tests.conftest import make_settings
from tests.helpers import app_over_asgi, eventually, publish, submit, triage
from tests.test_api import sign_in, token_for
from tests.test_attachments import files_in, pdf, png, rows, upload, word


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, attachment_dir=tmp_path / "attachments", attachment_max_mb=1)


@pytest.fixture
async def http(
    client: Client, settings: Settings, roster: Roster, executor: ThreadPoolExecutor
) -> AsyncIterator[httpx.AsyncClient]:
    async with app_over_asgi(client, settings, roster, executor) as c:
        yield c


def _deadline(view: Any, key: str) -> Any:
    return next(d for d in view.deadlines if d.key == key)


async def _upload(
    http: httpx.AsyncClient,
    settings: Settings,
    incident_id: str,
    name: str,
    content: bytes,
    who: str,
) -> dict[str, Any]:
    r = await upload(http, settings, incident_id, name, content, who)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _subsided(client: Client, settings: Settings, roster: Roster) -> str:
    """A hype incident on cjb, its reply published, tracked to subsided: R-SUMMARY owed."""
    view = await submit(client, settings, roster)
    await triage(client, view.id, unit="cjb")
    await publish(client, view.id, staff="lin.feng", head="sun.haitao")
    view = await incidents.act(client, view.id, "track", {"status": "subsided"}, "lin.feng")
    assert view.phase.value == "summary"
    return view.id


async def test_r_written_met_by_a_document_uploaded_from_the_incident_page(
    time_env: WorkflowEnvironment,
    http: httpx.AsyncClient,
    client: Client,
    settings: Settings,
    roster: Roster,
) -> None:
    """R-WRITTEN: after a phone report, the reporting unit downloads the generated draft (offered
    first), edits it and uploads it as the written report: the deadline is met as by text, the
    file is an attachment of the incident, and the timeline names it."""
    view = await submit(
        client,
        settings,
        roster,
        oral=True,
        reporter_unit="dhc",
        reporter_name="冯刚",
        submitted_by="feng.gang",
    )
    assert _deadline(view, "R-WRITTEN").open
    csrf = await sign_in(http, settings, "feng.gang")
    page = (await http.get(f"/incidents/{view.id}")).text
    form = page[page.index('id="action-file-written-report"') :]
    draft = form.index(f"/incidents/{view.id}/documents/written-report.docx")
    assert "下载草稿" in form and draft < form.index('type="file"')
    assert 'enctype="multipart/form-data"' in form[: form.index("</form>")]

    await time_env.sleep(timedelta(minutes=10))
    r = await http.post(
        f"/incidents/{view.id}/actions/file-written-report",
        data={"csrf_token": csrf},
        files={"document": ("书面信息.docx", word(), "application/octet-stream")},
    )
    assert r.status_code == 303, r.text
    after = await incidents.get(client, view.id)
    written = _deadline(after, "R-WRITTEN")
    assert written.state == "met" and written.met_at is not None
    assert written.met_at <= written.due_at
    [stored] = rows(settings, view.id)
    assert stored.name == "书面信息.docx" and stored.added_by == "feng.gang"
    assert after.written_report_document == stored.id
    entry = next(e for e in after.timeline if e.kind == "written_report")
    assert "书面信息.docx" in entry.summary and entry.actor == "feng.gang"
    page = (await http.get(f"/incidents/{view.id}")).text
    assert f"/incidents/{view.id}/attachments/{stored.id}" in page


async def test_r_summary_met_by_a_document_through_the_api(
    time_env: WorkflowEnvironment,
    http: httpx.AsyncClient,
    client: Client,
    settings: Settings,
    roster: Roster,
) -> None:
    """R-SUMMARY: the summary as a PDF attached through the API and named by `attachment_id`:
    met in time, the incident closed, 镇党政办 told of the document (its name, not its bytes)."""
    incident_id = await _subsided(client, settings, roster)
    doc = await _upload(http, settings, incident_id, "处置情况报告.pdf", pdf(), "lin.feng")
    await time_env.sleep(timedelta(hours=48))
    r = await http.post(
        f"/api/incidents/{incident_id}/actions/submit-summary",
        json={"attachment_id": doc["id"]},
        headers=token_for(settings, "lin.feng"),
    )
    assert r.status_code == 200, r.text
    assert r.json()["phase"] == "closed" and r.json()["summary_document"] == doc["id"]
    view = await incidents.get(client, incident_id)
    summary = _deadline(view, "R-SUMMARY")
    assert summary.state == "met" and summary.met_at is not None
    assert "处置情况报告.pdf" in next(e for e in view.timeline if e.kind == "summary").summary

    def told() -> list[Any]:
        with session_scope(settings.database_url) as s:
            got = notifications.inbox(s, recipient="zhou.wenbin")
            return [m for m in got if m.incident_id == incident_id and m.rule == "R-SUMMARY"]

    [message] = await eventually(told)
    assert "处置情况报告.pdf" in message.body


async def test_r_summary_refuses_an_image_another_incidents_file_and_nothing(
    http: httpx.AsyncClient, client: Client, settings: Settings, roster: Roster
) -> None:
    """R-SUMMARY: the document must be a PDF or Word document of this incident; an image, an
    attachment of another incident, or neither text nor a document is refused in Chinese, and
    the summary stays owed."""
    incident_id = await _subsided(client, settings, roster)
    other = await submit(client, settings, roster, url="https://weibo.example/post/other")
    image = await _upload(http, settings, incident_id, "截图.png", png(), "lin.feng")
    foreign = await _upload(http, settings, other.id, "别处.pdf", pdf(), "liu.yang")
    action = f"/api/incidents/{incident_id}/actions/submit-summary"
    headers = token_for(settings, "lin.feng")

    r = await http.post(action, json={"attachment_id": image["id"]}, headers=headers)
    assert r.status_code == 409 and "图片" in r.json()["detail"], r.text
    r = await http.post(action, json={"attachment_id": foreign["id"]}, headers=headers)
    assert r.status_code == 409 and "不是本事件的附件" in r.json()["detail"], r.text
    r = await http.post(action, json={}, headers=headers)
    assert r.status_code == 422, r.text
    assert any("文档" in e["message"] for e in r.json()["errors"]), r.text

    # The page: an image as the summary is refused there too, nothing submitted.
    csrf = await sign_in(http, settings, "lin.feng")
    r = await http.post(
        f"/incidents/{incident_id}/actions/submit-summary",
        data={"csrf_token": csrf},
        files={"document": ("照片.png", png(), "image/png")},
    )
    assert r.status_code == 422 and "不能是图片" in r.text, r.text
    view = await incidents.get(client, incident_id)
    assert view.phase.value == "summary" and _deadline(view, "R-SUMMARY").open


def _form(key: str) -> dict[str, str]:
    now = datetime.now(UTC).astimezone()
    return {
        "submission_key": key,
        "title": "东湖村道路积水网帖",
        "content": "网帖称东湖村主干道积水多日无人处理。",
        "source": "本地论坛",
        "discovered_at": (now - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M"),
        "reporter_unit": "yqb",
    }


async def test_report_form_with_a_screenshot_attaches_it_to_the_new_lead(
    http: httpx.AsyncClient, client: Client, settings: Settings
) -> None:
    """R-REPORT, R-OFFICE: an anonymous report with a screenshot of the post: the incident (a
    lead) starts with the screenshot attached, recorded as the reporter's (no person named), and
    the caller gets only the receipt."""
    r = await http.post(
        "/incidents",
        data=_form(uuid.uuid4().hex),
        files={"evidence": ("帖子截图.png", png(), "image/png")},
    )
    assert r.status_code == 201 and "报告已提交" in r.text, r.text
    found = re.search(r'id="incident-id">(YQ-[0-9A-F-]+)<', r.text)
    assert found
    incident_id = found.group(1)
    [stored] = rows(settings, incident_id)
    assert stored.name == "帖子截图.png" and stored.media_type == "image/png"
    assert stored.added_by == "anonymous"
    view = await incidents.get(client, incident_id)
    assert view.phase.value == "lead"
    entry = next(e for e in view.timeline if e.kind == "attached")
    assert entry.actor is None and "帖子截图.png" in entry.summary
    await sign_in(http, settings, "liu.yang")
    page = (await http.get(f"/incidents/{incident_id}")).text
    assert "帖子截图.png" in page and "未登录报告人" in page


async def test_report_form_bad_file_refuses_the_whole_submission(
    http: httpx.AsyncClient, client: Client, settings: Settings, roster: Roster
) -> None:
    """R-REPORT: a file that is not an image or PDF refuses the submission with a Chinese error
    naming the file; nothing is started, nothing stored, what was typed is kept."""
    key = uuid.uuid4().hex
    data = _form(key)
    for name, content in (("x.png", b"MZ\x90\x00 not an image"), ("x.docx", word())):
        r = await http.post(
            "/incidents", data=data, files={"evidence": (name, content, "image/png")}
        )
        assert r.status_code == 422, r.text
        assert "证据" in r.text and 'value="东湖村道路积水网帖"' in r.text
    assert files_in(settings) == []
    with session_scope(settings.database_url) as s:
        assert s.query(Incident).count() == 0
    # And nothing in Temporal: the key's incident was never started.
    shaped, _ = _form_to_submission(data, ZoneInfo(settings.timezone))
    sub = incidents.parse_submission(shaped, roster, datetime.now(UTC))
    with pytest.raises(RPCError):
        await client.get_workflow_handle(incidents.incident_id_for(sub)).describe()


class _Bridge(httpx.BaseTransport):
    """The CLI's synchronous httpx client, answered by the app over ASGI on the test's loop."""

    def __init__(self, http: httpx.AsyncClient, loop: asyncio.AbstractEventLoop) -> None:
        self.http, self.loop = http, loop

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()

        async def call() -> httpx.Response:
            got = await self.http.request(
                request.method, str(request.url), content=body, headers=request.headers
            )
            return httpx.Response(got.status_code, headers=got.headers, content=got.content)

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(30)


async def test_cli_attach_and_list(
    http: httpx.AsyncClient,
    client: Client,
    settings: Settings,
    roster: Roster,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`yuqing attach INCIDENT FILE` through the API with the user's token, then `yuqing
    attachments INCIDENT`; a bad file is refused with exit code 6 (invalid input)."""
    import starter.cli as cli

    view = await submit(client, settings, roster)
    loop = asyncio.get_running_loop()
    monkeypatch.setattr(
        cli, "_http", lambda: httpx.Client(base_url="http://test", transport=_Bridge(http, loop))
    )
    token = token_for(settings, "liu.yang")["Authorization"].removeprefix("Bearer ")
    report = tmp_path / "情况说明.pdf"
    report.write_bytes(pdf())
    runner = CliRunner()
    result = await asyncio.to_thread(
        runner.invoke, cli.app, ["attach", view.id, str(report), "--token", token]
    )
    assert result.exit_code == 0, result.output
    assert "已添加附件" in result.output and "情况说明.pdf" in result.output
    [stored] = rows(settings, view.id)
    assert stored.added_by == "liu.yang" and stored.id in result.output

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    result = await asyncio.to_thread(
        runner.invoke, cli.app, ["attach", view.id, str(bad), "--token", token]
    )
    assert result.exit_code == cli.EXIT_INVALID and "附件" in result.output, result.output

    result = await asyncio.to_thread(
        runner.invoke, cli.app, ["attachments", view.id, "--token", token]
    )
    assert result.exit_code == 0 and "情况说明.pdf" in result.output, result.output
    assert "PDF文档" in result.output
    missing = await asyncio.to_thread(
        runner.invoke, cli.app, ["attach", view.id, str(tmp_path / "nope.pdf"), "--token", token]
    )
    assert missing.exit_code != 0 and "文件" in missing.output


async def test_r_written_neither_text_nor_document_is_refused(
    http: httpx.AsyncClient, client: Client, settings: Settings, roster: Roster
) -> None:
    """R-WRITTEN: a written report with neither text nor a document is refused (422, Chinese),
    on the page as through the API; the deadline stays open."""
    view = await submit(
        client, settings, roster, oral=True, reporter_unit="dhc", submitted_by="feng.gang"
    )
    r = await http.post(
        f"/api/incidents/{view.id}/actions/file-written-report",
        json={},
        headers=token_for(settings, "feng.gang"),
    )
    assert r.status_code == 422 and "文档" in r.text, r.text
    # The message names the written report's text, not a reply's (回复内容 is draft-reply's).
    [error] = r.json()["errors"]
    assert error["field"] == "text" and error["label"] == "书面信息内容", error
    assert error["message"].startswith("书面信息内容：请填写文字内容"), error
    csrf = await sign_in(http, settings, "feng.gang")
    r = await http.post(
        f"/incidents/{view.id}/actions/file-written-report", data={"csrf_token": csrf}
    )
    assert r.status_code == 422 and "文档" in r.text, r.text
    assert "书面信息内容：" in r.text and "回复内容" not in r.text, r.text
    assert _deadline(await incidents.get(client, view.id), "R-WRITTEN").open
    # The CLI's option says so too.
    import starter.cli as cli

    shown = CliRunner().invoke(cli.app, ["file-written-report", "--help"], env={"COLUMNS": "200"})
    assert "书面信息内容" in shown.output and "回复内容" not in shown.output, shown.output
