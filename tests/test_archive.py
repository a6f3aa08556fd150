"""归档 (issue 19, item 4): when an incident closes, its case file (处置台账) is kept in the store
with its documents and attachments, independent of Temporal's history retention; after the
retention setting for the public's personal data (reporter names, post content and link) they are
redacted from the archive, and the redaction itself is recorded. Documents are built from the
store's records, which outlive the workflow histories.

The store tests run on SQLite and, with YUQING_TEST_DATABASE_URL, on PostgreSQL too."""

from __future__ import annotations

import hashlib
import io
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from docx import Document
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from typer.testing import CliRunner

from activities.archive import Archiver, apply_retention
from activities.record import RecordActivities
from config.settings import Settings, get_settings
from plan.models import TimelineEntry
from plan.records import RecordRequest, RetentionInput, RetentionRequest
from plan.roster import Roster
from starter import attachments as files
from starter.cli import app
from starter.web import access
from store import access_log, archives
from store import attachments as attachment_rows
from store.db import session_scope
from store.models import ArchiveRow, Incident, RedactionRow, TimelineEvent
from tests.conftest import make_settings
from tests.helpers import app_over_asgi, eventually, running_worker, submission, triage
from tests.test_api import sign_in, token_for
from tests.test_store import incident_row
from tests.test_web_chinese import english_in
from workflows.retention import RetentionWorkflow

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"

NOW = datetime.now(UTC).replace(microsecond=0)
POST = "网帖称东湖村主干道积水一周。"
URL = "https://weibo.example/post/1"
REPORTER = "王秀英"  # a member of the public, not on the roster
SAID = {"closed": "R-CLOSE 结案", "amendments_closed": "R-CLOSE 结案后补记期届满，不再接受补记"}
GONE = "YQ-20240301-ABCDEF012345"


def text_of(body: bytes) -> str:
    doc = Document(io.BytesIO(body))
    cells = [c.text for t in doc.tables for row in t.rows for c in row.cells]
    return "\n".join([p.text for p in doc.paragraphs] + cells)


def closed_request(
    incident_id: str, version: int, closed_at: datetime, *kinds: str, seq: int = 10
) -> RecordRequest:
    """A snapshot of a closed incident, with timeline entries of these kinds."""
    received = closed_at - timedelta(days=2)
    return RecordRequest(
        incident=incident_row(
            incident_id,
            version,
            reporter_name=REPORTER,
            phase="closed",
            closed_at=closed_at,
            discovered_at=received - timedelta(minutes=5),
            posted_at=received - timedelta(minutes=30),
            received_at=received,
            next_due_at=None,
            responsible_unit="cjb",
        ),
        deadlines=[],
        timeline=[
            TimelineEntry(seq=seq + n, at=closed_at, kind=k, actor=None, summary=SAID[k])
            for n, k in enumerate(kinds)
        ],
        accountability=[],
    )


def opened(incident_id: str, received: datetime) -> RecordRequest:
    """The first snapshot: reported by 周婷 (the timeline's actor is the name as given)."""
    return RecordRequest(
        incident=incident_row(
            incident_id,
            1,
            reporter_name=REPORTER,
            received_at=received,
            discovered_at=received - timedelta(minutes=5),
            posted_at=received - timedelta(minutes=30),
        ),
        deadlines=[],
        timeline=[
            TimelineEntry(
                seq=1,
                at=received,
                kind="reported",
                actor=REPORTER,
                summary="报告舆情（来源：微博）",
            )
        ],
        accountability=[],
    )


def record(settings: Settings, request: RecordRequest) -> None:
    """The `record` activity as the worker runs it (with the archiver)."""
    activities = RecordActivities(settings.database_url, settings.timezone, Archiver(settings))
    ActivityEnvironment().run(activities.record, request)


def held(url: str, incident_id: str) -> Sequence[ArchiveRow]:
    with session_scope(url) as s:
        return archives.versions(s, incident_id=incident_id)


def close_one(settings: Settings, incident_id: str, closed_at: datetime) -> None:
    record(settings, opened(incident_id, closed_at - timedelta(days=2)))
    record(settings, closed_request(incident_id, 2, closed_at, "closed"))


def test_the_case_file_is_archived_when_the_closure_is_recorded_R_CLOSE(
    store_url: str,
) -> None:
    """R-CLOSE: recording the closure archives the 处置台账 generated from the store's rows
    (opened with python-docx: its facts and the reporter are there); a retried write adds no
    second version, an older snapshot none either; the end of the amendment period archives
    again. Nothing is archived while the incident is open."""
    settings = make_settings(store_url)
    closed_at = NOW - timedelta(hours=1)
    record(settings, opened("YQ-A", closed_at - timedelta(days=2)))
    assert held(store_url, "YQ-A") == []

    closing = closed_request("YQ-A", 2, closed_at, "closed")
    record(settings, closing)
    [first] = held(store_url, "YQ-A")
    assert (first.reason, first.snapshot_version) == ("closed", 2)
    assert first.content is not None and first.size == len(first.content)
    text = text_of(first.content)
    assert "舆情处置台账" in text and "东湖村道路积水多日无人处理" in text
    assert REPORTER in text and POST in text and "村镇建设办" in text
    assert "R-CLOSE 结案" in text  # the timeline written in the same step

    record(settings, closing)  # a retry
    record(settings, closed_request("YQ-A", 1, closed_at))  # an older snapshot, late
    assert [a.id for a in held(store_url, "YQ-A")] == [first.id]

    end = closed_request("YQ-A", 3, closed_at + timedelta(days=30), "amendments_closed", seq=20)
    record(settings, end)
    record(settings, end)
    versions = held(store_url, "YQ-A")
    assert [(a.reason, a.snapshot_version) for a in versions] == [
        ("closed", 2),
        ("amendments_closed", 3),
    ]
    assert versions[0].content is not None  # the earlier version is kept as it was


def test_archiving_that_fails_never_fails_the_record_and_is_caught_up(
    store_url: str, tmp_path: Any
) -> None:
    """A case-file template the office broke does not hold up the incident's record (the write
    commits; the failure is logged); the daily run archives it once the template is fixed."""
    (tmp_path / "case_file.docx").write_bytes(b"not a docx")
    broken = make_settings(store_url, document_templates=tmp_path)
    record(broken, opened("YQ-B", NOW - timedelta(days=3)))
    record(broken, closed_request("YQ-B", 2, NOW - timedelta(days=1), "closed"))
    with session_scope(store_url) as s:
        row = s.get(Incident, "YQ-B")
        assert row is not None and row.phase == "closed"
        assert archives.unarchived(s) == ["YQ-B"]
    assert held(store_url, "YQ-B") == []

    outcome = apply_retention(make_settings(store_url), at=NOW, by="测试")
    assert outcome.archived == ["YQ-B"] and outcome.redacted == []
    assert [a.reason for a in held(store_url, "YQ-B")] == ["catch_up"]
    assert apply_retention(make_settings(store_url), at=NOW, by="测试").archived == []


def redactions(url: str) -> list[RedactionRow]:
    with session_scope(url) as s:
        return list(s.query(RedactionRow).order_by(RedactionRow.id))


def test_personal_data_is_redacted_after_the_retention_period_and_recorded(
    store_url: str,
) -> None:
    """Retention (YUQING_PERSONAL_DATA_RETENTION_DAYS, here 365): an incident closed 400 days ago
    loses the post's content and link and the reporter's name (row and timeline) to the marker;
    one closed 364 days ago keeps them. The redaction is recorded (when, which fields, under
    which setting, by whom) and shown in the re-generated case file, whose personal data is gone;
    the older archive versions' bytes are deleted. A second run redacts nothing and records
    nothing; a later snapshot write does not bring the data back."""
    settings = make_settings(store_url, personal_data_retention_days=365)
    close_one(settings, "YQ-OLD", NOW - timedelta(days=400))
    close_one(settings, "YQ-NEW", NOW - timedelta(days=364))

    outcome = apply_retention(settings, at=NOW, by="yuqing retention（测试）")
    assert outcome.redacted == ["YQ-OLD"] and outcome.failed == []

    with session_scope(store_url) as s:
        old, new = s.get(Incident, "YQ-OLD"), s.get(Incident, "YQ-NEW")
        assert old is not None and new is not None
        assert (old.content, old.url, old.reporter_name) == (archives.MARKER,) * 3
        assert old.title == "东湖村道路积水多日无人处理"  # the case's name stays
        assert (new.content, new.url, new.reporter_name) == (POST, URL, REPORTER)
        actors = {
            e.incident_id: e.actor
            for e in s.query(TimelineEvent).filter(TimelineEvent.kind == "reported")
        }
        assert actors == {"YQ-OLD": archives.MARKER, "YQ-NEW": REPORTER}

    [done] = redactions(store_url)
    assert done.incident_id == "YQ-OLD" and done.retention_days == 365
    assert done.fields == "content,url,reporter_name,timeline.actor"
    assert done.by == "yuqing retention（测试）" and done.at == NOW

    versions = held(store_url, "YQ-OLD")
    assert [a.reason for a in versions] == ["closed", "redacted"]
    assert versions[0].content is None and versions[0].purged_at == NOW  # old bytes deleted
    latest = versions[-1]
    assert latest.content is not None
    text = text_of(latest.content)
    assert REPORTER not in text and POST not in text and URL not in text
    assert archives.MARKER in text
    assert "按个人信息保存期限（结案后365天）删除公众个人信息" in text  # the record, in the ledger
    assert "舆情内容、原帖链接、报告人姓名" in text
    new_text = text_of(held(store_url, "YQ-NEW")[-1].content or b"")
    assert REPORTER in new_text and POST in new_text

    # Twice: redacted once, recorded once, archived once.
    again = apply_retention(settings, at=NOW + timedelta(hours=1), by="每日定时任务")
    assert again.redacted == [] and again.archived == []
    assert len(redactions(store_url)) == 1 and len(held(store_url, "YQ-OLD")) == 2

    # A late snapshot (an amendment written after the redaction) keeps the marker.
    record(settings, closed_request("YQ-OLD", 5, NOW - timedelta(days=400), seq=30))
    with session_scope(store_url) as s:
        old = s.get(Incident, "YQ-OLD")
        assert old is not None and old.content == archives.MARKER
        assert old.reporter_name == archives.MARKER and old.url == archives.MARKER
    amended = held(store_url, "YQ-OLD")[-1]
    assert amended.reason == "amended" and REPORTER not in text_of(amended.content or b"")


def test_retention_zero_keeps_personal_data(store_url: str) -> None:
    """YUQING_PERSONAL_DATA_RETENTION_DAYS=0: kept, nothing recorded."""
    settings = make_settings(store_url, personal_data_retention_days=0)
    close_one(settings, "YQ-KEEP", NOW - timedelta(days=4000))
    assert apply_retention(settings, at=NOW, by="测试").redacted == []
    assert redactions(store_url) == []
    with session_scope(store_url) as s:
        row = s.get(Incident, "YQ-KEEP")
        assert row is not None and row.content == POST


def test_the_daily_request_names_the_schedule() -> None:
    assert RetentionRequest(at=NOW).by == "每日定时任务"


# --- the workflow, the pages and the API ---


async def test_closing_the_incident_archives_its_case_file_and_again_after_the_amendment_period(
    time_env: WorkflowEnvironment,
    client: Client,
    settings: Settings,
    roster: Roster,
    executor: ThreadPoolExecutor,
) -> None:
    """R-CLOSE through the workflow: closing records the closure, and that write archives the
    case file (its reporter and facts in it); after the 30-day amendment period the end is
    written and archived too. The page of the closed incident offers the archive's download."""
    async with app_over_asgi(client, settings, roster, executor) as http:
        r = await http.post(
            "/api/incidents",
            json=submission(severity="major", reporter_name=REPORTER),
            headers=token_for(settings, "zhou.ting"),
        )
        assert r.status_code == 201, r.text
        incident_id = r.json()["id"]
        await triage(client, incident_id, severity="urgent", unit="cjb")
        staff, head = token_for(settings, "lin.feng"), token_for(settings, "sun.haitao")
        for action, data, headers in (
            ("draft-reply", {"text": "已组织抽排，今日内完成。"}, staff),
            ("approve-reply", {}, head),
            (
                "approve-release",
                {"spokesperson": "li.xiaomei"},
                token_for(settings, "wang.jianguo"),
            ),
            ("publish-reply", {"channel": "镇政府微博", "url": "https://weibo.example/r/1"}, staff),
            ("track", {"status": "subsided"}, staff),
            ("submit-summary", {"text": "发生、传播和处置情况及反思。"}, staff),
        ):
            r = await http.post(
                f"/api/incidents/{incident_id}/actions/{action}", json=data, headers=headers
            )
            assert r.status_code == 200, (action, r.text)
        assert r.json()["phase"] == "closed"

        [closing] = await eventually(lambda: list(held(settings.database_url, incident_id)))
        assert closing.reason == "closed"
        text = text_of(closing.content or b"")
        assert "东湖村道路积水多日无人处理" in text and REPORTER in text
        assert "影响学生上学" in text and "村镇建设办" in text

        await sign_in(http, settings, "liu.yang")
        page = await http.get(f"/incidents/{incident_id}")
        assert page.status_code == 200
        assert f"/incidents/{incident_id}/archive.docx" in page.text and "已归档" in page.text

        await time_env.sleep(timedelta(days=31))

        def ended() -> list[ArchiveRow]:
            return [
                a
                for a in held(settings.database_url, incident_id)
                if a.reason == "amendments_closed"
            ]

        [end] = await eventually(ended)
        assert "补记期届满" in text_of(end.content or b"")
        reasons = [a.reason for a in held(settings.database_url, incident_id)]
        assert reasons == ["closed", "amendments_closed"]


def gone_incident(settings: Settings, incident_id: str, closed_at: datetime) -> None:
    """A closed incident the store holds and Temporal does not (its history past retention)."""
    record(settings, opened(incident_id, closed_at - timedelta(days=2)))
    record(settings, closed_request(incident_id, 2, closed_at, "closed"))


def attach_file(settings: Settings, incident_id: str, tmp_path: Path) -> str:
    """A screenshot kept with the incident (the file under its hash, the row): its row's id."""
    body = b"%PDF-1.4 archived screenshot"
    digest = hashlib.sha256(body).hexdigest()
    temp = tmp_path / "upload.tmp"
    temp.write_bytes(body)
    files.keep(settings, temp, digest)
    with session_scope(settings.database_url) as s:
        row, _ = attachment_rows.add(
            s,
            incident_id=incident_id,
            sha256=digest,
            size=len(body),
            media_type="application/pdf",
            name="原帖截图",
            added_by="zhou.ting",
        )
    return row.id


async def test_an_incident_temporal_no_longer_holds_is_read_from_the_archive_R_SECRECY(
    client: Client,
    settings: Settings,
    roster: Roster,
    executor: ThreadPoolExecutor,
    tmp_path: Path,
) -> None:
    """The workflow is gone: the page falls back to the store with the note 已归档 (its facts,
    timeline and the archive's versions; no English), the archived case file downloads (page and
    API, in the access log as an export), as do the other documents. R-SECRECY: a unit with no
    part in it gets the 404 of an unknown id on the page, the download and the API (the refused
    attempt logged); anonymous the sign-in page or a 401."""
    gone_incident(settings, GONE, NOW - timedelta(days=60))
    screenshot = attach_file(settings, GONE, tmp_path)
    async with app_over_asgi(client, settings, roster, executor) as http:
        r = await http.get(f"/incidents/{GONE}/archive.docx")
        assert r.status_code == 303 and r.headers["location"].startswith("/login")
        assert (await http.get(f"/api/incidents/{GONE}/archive")).status_code == 401

        # 社会事务办 has no part in it.
        await sign_in(http, settings, "xu.lei")
        for path in (f"/incidents/{GONE}", f"/incidents/{GONE}/archive.docx"):
            r = await http.get(path)
            assert r.status_code == 404 and "不存在" in r.text, path
        r = await http.get(f"/api/incidents/{GONE}/archive", headers=token_for(settings, "xu.lei"))
        assert r.status_code == 404
        await access.flush(http._transport.app)  # type: ignore[attr-defined]
        with session_scope(settings.database_url) as s:
            refused = access_log.read(s, person_id="xu.lei", incident_id=GONE)
            # The page, the download, the API: each refused attempt noted, as for a live one.
            assert len(refused) == 3 and not any(e.granted for e in refused)

        # The office.
        await sign_in(http, settings, "liu.yang")
        page = await http.get(f"/incidents/{GONE}")
        assert page.status_code == 200, page.text
        assert (
            "已归档" in page.text
            and POST in page.text
            and "东湖村道路积水多日无人处理" in page.text
        )
        assert "结案归档" in page.text and f"/incidents/{GONE}/archive.docx" in page.text
        assert english_in(page.text) == []

        r = await http.get(f"/incidents/{GONE}/archive.docx")
        assert r.status_code == 200 and r.headers["content-type"] == DOCX
        assert "舆情处置台账（归档）" in unquote(r.headers["content-disposition"])
        [version] = held(settings.database_url, GONE)
        assert r.content == version.content and r.headers["x-content-sha256"] == version.sha256
        r = await http.get(
            f"/api/incidents/{GONE}/archive", headers=token_for(settings, "liu.yang")
        )
        assert r.status_code == 200 and REPORTER in text_of(r.content)
        r = await http.get(f"/incidents/{GONE}/documents/case-file.docx")
        assert r.status_code == 200
        # The API's incident read has no workflow to ask: its 404 names the archive, to those
        # who may see it only.
        r = await http.get(f"/api/incidents/{GONE}", headers=token_for(settings, "liu.yang"))
        assert r.status_code == 404 and "已归档" in r.json()["detail"]
        assert f"/api/incidents/{GONE}/archive" in r.json()["detail"]
        r = await http.get(f"/api/incidents/{GONE}", headers=token_for(settings, "xu.lei"))
        assert r.status_code == 404 and "已归档" not in r.json()["detail"]
        # Its attachments are kept, and still download (R-SECRECY asked of the store's row).
        assert "原帖截图" in page.text
        r = await http.get(f"/incidents/{GONE}/attachments/{screenshot}")
        assert r.status_code == 200 and r.content == b"%PDF-1.4 archived screenshot"
        r = await http.get(
            f"/api/incidents/{GONE}/attachments/{screenshot}",
            headers=token_for(settings, "xu.lei"),
        )
        assert r.status_code == 404
        await access.flush(http._transport.app)  # type: ignore[attr-defined]
        with session_scope(settings.database_url) as s:
            exports = access_log.read(s, person_id="liu.yang", action="export")
            assert {e.incident_id for e in exports} == {GONE} and len(exports) == 3

        # After the retention period: the page says so, and shows the marker.
        apply_retention(settings, at=NOW, by="每日定时任务")  # closed 60 days ago: kept
        assert POST in (await http.get(f"/incidents/{GONE}")).text
        later = make_settings(
            settings.database_url,
            personal_data_retention_days=30,
            temporal_task_queue=settings.temporal_task_queue,
        )
        assert apply_retention(later, at=NOW, by="每日定时任务").redacted == [GONE]
        page = await http.get(f"/incidents/{GONE}")
        assert POST not in page.text and REPORTER not in page.text and archives.MARKER in page.text
        assert "按个人信息保存期限（结案后30天）删除公众个人信息" in page.text
        assert "文件已按保存期限删除" in page.text
        assert english_in(page.text) == []
        r = await http.get(f"/incidents/{GONE}/archive.docx")
        assert REPORTER not in text_of(r.content) and archives.MARKER in text_of(r.content)


async def test_not_yet_archived_is_said_in_chinese(
    client: Client, settings: Settings, roster: Roster, executor: ThreadPoolExecutor
) -> None:
    """An incident in the store with no archive (open, or its archiving failed): 404 尚未归档."""
    record(settings, opened("YQ-OPEN", NOW - timedelta(days=1)))
    async with app_over_asgi(client, settings, roster, executor) as http:
        await sign_in(http, settings, "liu.yang")
        r = await http.get("/incidents/YQ-OPEN/archive.docx")
        assert r.status_code == 404 and "尚未归档" in r.text


async def test_the_daily_run_is_a_workflow_and_the_cli_runs_it_by_hand(
    client: Client, settings: Settings, executor: ThreadPoolExecutor, tmp_path: Any
) -> None:
    """RetentionWorkflow (the nightly schedule's) redacts what is past retention, recording the
    schedule as who did it; `yuqing retention --dry-run` lists, `yuqing retention` does it,
    naming the command in the record; both run twice change nothing more."""
    url = settings.database_url
    gone_incident(settings, "YQ-WF", NOW - timedelta(days=400))
    gone_incident(settings, "YQ-CLI", NOW - timedelta(days=400))
    async with running_worker(client, settings, executor):
        outcome = await client.execute_workflow(
            RetentionWorkflow.run,
            RetentionInput(),
            id=f"retention-{uuid.uuid4()}",
            task_queue=settings.temporal_task_queue,
        )
    assert sorted(outcome.redacted) == ["YQ-CLI", "YQ-WF"]
    assert {r.by for r in redactions(url)} == {"每日定时任务"}

    gone_incident(settings, "YQ-CLI2", NOW - timedelta(days=400))
    env = {
        "YUQING_DATABASE_URL": url,
        "YUQING_ROSTER_FILE": str(settings.roster_file),
        "YUQING_PERSONAL_DATA_RETENTION_DAYS": "365",
    }
    runner = CliRunner()
    get_settings.cache_clear()
    try:
        listed = runner.invoke(app, ["retention", "--dry-run"], env=env)
        assert listed.exit_code == 0, listed.output
        assert "待删除个人信息：1件：YQ-CLI2" in listed.output
        assert redaction_of(url, "YQ-CLI2") is None
        done = runner.invoke(app, ["retention"], env=env)
        assert done.exit_code == 0, done.output
        assert "删除个人信息：1件" in done.output and "YQ-CLI2" in done.output
        again = runner.invoke(app, ["retention"], env=env)
        assert "删除个人信息：0件" in again.output
    finally:
        get_settings.cache_clear()
    record_ = redaction_of(url, "YQ-CLI2")
    assert record_ is not None and record_.by.startswith("命令行 yuqing retention")
    assert len(redactions(url)) == 3


def redaction_of(url: str, incident_id: str) -> RedactionRow | None:
    with session_scope(url) as s:
        return archives.redaction(s, incident_id=incident_id)
