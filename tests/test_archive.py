"""归档 (issue 19, item 4): when an incident closes, its case file (处置台账) is kept in the store
with its documents and attachments, independent of Temporal's history retention; after the
retention setting for the public's personal data (reporter names, post content and link) they are
redacted from the archive, and the redaction itself is recorded. Documents are built from the
store's records, which outlive the workflow histories.

The store tests run on SQLite and, with YUQING_TEST_DATABASE_URL, on PostgreSQL too."""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from docx import Document
from temporalio.testing import ActivityEnvironment

from activities.archive import Archiver, RetentionRequest, apply_retention
from activities.record import RecordActivities
from config.settings import Settings
from plan.models import TimelineEntry
from plan.records import RecordRequest
from store import archives
from store.db import session_scope
from store.models import ArchiveRow, Incident, RedactionRow, TimelineEvent
from tests.conftest import make_settings
from tests.test_store import incident_row

NOW = datetime.now(UTC).replace(microsecond=0)
POST = "网帖称东湖村主干道积水一周。"
URL = "https://weibo.example/post/1"
REPORTER = "周婷"


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
            TimelineEntry(seq=seq + n, at=closed_at, kind=k, actor=None, summary=f"记录{k}")
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
    assert "记录closed" in text  # the timeline written in the same step

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
