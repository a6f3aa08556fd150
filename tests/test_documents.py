"""The incident's Word documents (issue 19, item 1): built from the store's records (which outlive
Temporal's history retention), from templates the office can replace (YUQING_DOCUMENT_TEMPLATES),
formatted after GB/T 9704-2012; downloaded from the incident page by those who may see it."""

from __future__ import annotations

import io
import logging
import shutil
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote, unquote
from zoneinfo import ZoneInfo

import pytest
from docx import Document
from docx.document import Document as DocumentObject
from docx.oxml.ns import qn
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities import documents
from config.settings import Settings
from plan.roster import Roster
from starter import incidents
from starter.web import access
from store import access_log, incident_rows
from store.db import session_scope
from tests.conftest import make_settings
from tests.helpers import app_over_asgi, eventually, publish, submit, triage
from tests.test_api import sign_in, token_for

SHIPPED = Path(documents.__file__).resolve().parent.parent / "config" / "documents"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
TOWN = ZoneInfo("Asia/Shanghai")


def east_asia(element: object) -> str | None:
    fonts = element.find(qn("w:rPr") + "/" + qn("w:rFonts"))  # type: ignore[attr-defined]
    return None if fonts is None else fonts.get(qn("w:eastAsia"))


def assert_gbt9704(doc: DocumentObject) -> None:
    """A4, the standard's margins, 小标宋 2号 title, 仿宋_GB2312 3号 body, 黑体 headings, and a
    PAGE field in the footer."""
    section = doc.sections[0]
    size = (section.page_width, section.page_height)
    assert [round(x.cm, 2) for x in size] == [21.0, 29.7]  # Word keeps twips
    margins = (section.top_margin, section.bottom_margin, section.left_margin, section.right_margin)
    assert [round(x.cm, 2) for x in margins] == [3.7, 3.5, 2.8, 2.6]
    styles = doc.styles
    assert east_asia(styles["Normal"].element) == "仿宋_GB2312"
    assert styles["Normal"].font.size.pt == 16
    assert east_asia(styles["Title"].element) == "方正小标宋简体"
    assert styles["Title"].font.size.pt == 22
    assert east_asia(styles["Heading 1"].element) == "黑体"
    title = doc.paragraphs[0]
    assert title.style.name == "Title" and title.alignment == 1  # centred
    assert all(east_asia(r._r) == "方正小标宋简体" for r in title.runs)
    body = [p for p in doc.paragraphs if p.style.name == "Normal" and p.text.strip()]
    assert body and all(east_asia(r._r) == "仿宋_GB2312" for p in body for r in p.runs)
    footer = doc.sections[0].footer.paragraphs[0]
    assert "PAGE" in footer._p.xml and footer.text.startswith("—")


def headings(doc: DocumentObject) -> list[str]:
    return [p.text for p in doc.paragraphs if p.style.name == "Heading 1"]


def text_of(doc: DocumentObject) -> str:
    cells = [c.text for t in doc.tables for row in t.rows for c in row.cells]
    return "\n".join([p.text for p in doc.paragraphs] + cells)


@pytest.mark.parametrize("name", sorted(documents.TEMPLATE_FILES))
def test_shipped_templates_follow_gbt9704(name: str) -> None:
    doc = Document(str(SHIPPED / name))
    assert_gbt9704(doc)


def test_a_broken_template_is_named_in_a_clear_error(
    tmp_path: Path, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "written_report.docx").write_bytes((SHIPPED / "summary_report.docx").read_bytes())
    shutil.copy(SHIPPED / "written_report.docx", tmp_path / "ok.docx")
    broken = Document(str(SHIPPED / "written_report.docx"))
    broken.add_paragraph("{{ i.title ")  # an unclosed field
    broken.save(str(tmp_path / "written_report.docx"))
    settings = make_settings(database_url, document_templates=tmp_path)
    with caplog.at_level(logging.ERROR), pytest.raises(documents.TemplateBroken) as raised:
        documents.render(settings, "written-report", {"i": {}})
    assert "written_report.docx" in str(raised.value)
    assert "文书模板" in raised.value.message and "written_report.docx" in raised.value.message
    assert str(tmp_path) in caplog.text


def test_a_template_in_the_setting_folder_replaces_the_shipped_one(
    tmp_path: Path, database_url: str
) -> None:
    """Only the files the office put there: the others stay the shipped ones."""
    doc = Document(str(SHIPPED / "written_report.docx"))
    doc.add_paragraph("本单位自定义落款")
    doc.save(str(tmp_path / "written_report.docx"))
    settings = make_settings(database_url, document_templates=tmp_path)
    assert documents.template_path(settings, "written-report") == tmp_path / "written_report.docx"
    assert documents.template_path(settings, "summary") == SHIPPED / "summary_report.docx"


def local(at: object) -> str:
    return at.astimezone(TOWN).strftime("%Y年%m月%d日 %H:%M")  # type: ignore[attr-defined]


async def test_documents_from_the_record_for_those_who_may_see_it(
    time_env: WorkflowEnvironment,
    client: Client,
    settings: Settings,
    roster: Roster,
    executor: ThreadPoolExecutor,
    tmp_path: Path,
) -> None:
    """R-WRITTEN, R-SUMMARY, R-PROGRESS, R-ESCALATE: every document from the store's rows; the
    office downloads them, another unit's staff gets the 404 of an unknown id, anonymous the
    sign-in page; each download is in the access log."""
    async with app_over_asgi(client, settings, roster, executor) as http:
        view = await submit(
            client, settings, roster, severity="urgent", responsible_unit="cjb", title="积水无人管"
        )
        met = await submit(client, settings, roster, title="按期回复的事件")
        await triage(client, met.id, unit="sswb")
        await publish(client, met.id, staff="xu.lei", head="huang.li", text="已安排抽排积水。")
        await time_env.sleep(timedelta(hours=3, minutes=5))

        def escalated() -> list[object]:
            with session_scope(settings.database_url) as s:
                return list(incident_rows.escalations(s, incident_id=view.id))

        first = (await eventually(escalated))[0]
        base = f"/incidents/{view.id}/documents"
        # 签收 (issue 20): the unit's head signs for step 1; the others it went to have not.
        step_key = f"{first.deadline_key}/{first.step}"  # type: ignore[attr-defined]
        await incidents.act(client, view.id, "sign-for", {"key": step_key}, "sun.haitao")

        def signed_in_store() -> list[object]:
            with session_scope(settings.database_url) as s:
                rows = incident_rows.timeline(s, incident_id=view.id)
                return [e for e in rows if e.kind == "signed"]

        await eventually(signed_in_store)

        # Anonymous: to the sign-in page; the API without a token: 401.
        r = await http.get(f"{base}/written-report.docx")
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
        r = await http.get(f"/api/incidents/{view.id}/documents/written-report")
        assert r.status_code == 401

        # Another unit's staff: the 404 of an unknown id (R-SECRECY), on the page and the API.
        await sign_in(http, settings, "xu.lei")
        r = await http.get(f"{base}/written-report.docx")
        assert r.status_code == 404
        page = await http.get(f"/incidents/{met.id}")
        assert f"/incidents/{met.id}/documents/summary.docx" in page.text
        r = await http.get(
            f"/api/incidents/{view.id}/documents/summary", headers=token_for(settings, "xu.lei")
        )
        assert r.status_code == 404

        # The office: every document.
        await sign_in(http, settings, "liu.yang")
        page = await http.get(f"/incidents/{view.id}")
        assert "文书" in page.text and f"{base}/case-file.docx" in page.text
        key = quote(first.deadline_key, safe="")  # type: ignore[attr-defined]
        notice = f"{base}/escalation/{key}/{first.step}.docx"  # type: ignore[attr-defined]
        assert notice in page.text

        r = await http.get(f"{base}/written-report.docx")
        assert r.status_code == 200 and r.headers["content-type"] == DOCX
        disposition = r.headers["content-disposition"]
        assert disposition.startswith("attachment; filename=")
        assert "舆情信息报告" in unquote(disposition.split("filename*=UTF-8''")[1])
        doc = Document(io.BytesIO(r.content))
        assert_gbt9704(doc)
        assert doc.paragraphs[0].text == "舆情信息报告"
        assert headings(doc) == ["一、舆情基本情况", "二、已采取的处置措施", "三、报送信息"]
        text = text_of(doc)
        assert "积水无人管" in text and "村镇建设办" in text and "紧急" in text
        assert "舆情应急处置工作领导小组办公室" in text  # the reporting unit, by name
        assert local(view.discovered_at) in text  # Beijing time
        assert "https://weibo.example/post/1" in text and "周婷" in text

        r = await http.get(f"{base}/summary.docx")
        doc = Document(io.BytesIO(r.content))
        assert_gbt9704(doc)
        assert "积水无人管" in doc.paragraphs[0].text
        assert "七、经验教训" in headings(doc) and "四、时限执行情况" in headings(doc)
        text = text_of(doc)
        assert "逾期" in text and "镇党政办" in text

        r = await http.get(f"/incidents/{met.id}/documents/summary.docx")
        text = text_of(Document(io.BytesIO(r.content)))
        assert "按期" in text and "发布官方回复（镇政府微博）" in text and "社会事务办" in text
        # The reply as published: its wording is kept with the publication in the store.
        assert "回复内容：已安排抽排积水。" in text
        r = await http.get(f"/incidents/{met.id}/documents/case-file.docx")
        assert "回复内容：已安排抽排积水。" in text_of(Document(io.BytesIO(r.content)))

        r = await http.get(notice)
        assert r.status_code == 200, r.text
        doc = Document(io.BytesIO(r.content))
        assert_gbt9704(doc)
        assert doc.paragraphs[0].text == "督办通知"
        text = text_of(doc)
        assert f"第{first.step}级" in text and local(first.at) in text  # type: ignore[attr-defined]
        assert "二、通知对象及送达情况" in headings(doc)
        assert "站内消息" in text and "刘洋" in text  # who was told, by channel
        assert "三、签收情况" in headings(doc)
        receipts = {
            row.cells[0].text: row.cells[1].text for table in doc.tables[1:] for row in table.rows
        }
        assert receipts["孙海涛"].startswith("已签收（") and receipts["刘洋"] == "未签收", receipts
        assert "舆情应急处置工作领导小组办公室" in text  # signed by the office
        r = await http.get(f"{base}/escalation/no-such-deadline/1.docx")
        assert r.status_code == 404

        r = await http.get(f"{base}/progress.docx")
        doc = Document(io.BytesIO(r.content))
        assert_gbt9704(doc)
        assert doc.paragraphs[0].text == "舆情信息续报" and "三、处置进展" in headings(doc)

        r = await http.get(f"{base}/case-file.docx")
        doc = Document(io.BytesIO(r.content))
        assert doc.paragraphs[0].text == "舆情处置台账"
        assert headings(doc)[:4] == ["一、基本情况", "二、时限台账", "三、处置经过", "四、督办情况"]
        assert "签收：孙海涛已签收（" in text_of(doc) and "刘洋未签收" in text_of(doc)

        r = await http.get(f"{base}/no-such-kind.docx")
        assert r.status_code == 404

        # The API: the same document by bearer token.
        r = await http.get(
            f"/api/incidents/{view.id}/documents/written-report",
            headers=token_for(settings, "liu.yang"),
        )
        assert r.status_code == 200 and r.headers["content-type"] == DOCX
        assert Document(io.BytesIO(r.content)).paragraphs[0].text == "舆情信息报告"
        r = await http.get(
            f"/api/incidents/{view.id}/documents/escalation/{key}/{first.step}",  # type: ignore[attr-defined]
            headers=token_for(settings, "liu.yang"),
        )
        assert (
            r.status_code == 200
            and Document(io.BytesIO(r.content)).paragraphs[0].text == "督办通知"
        )

        # A template the office broke: a Chinese message naming it, not a crash.
        broken = Document(str(SHIPPED / "case_file.docx"))
        broken.add_paragraph("{% if %}")
        broken.save(str(tmp_path / "case_file.docx"))
        settings.document_templates = tmp_path
        r = await http.get(f"{base}/case-file.docx")
        assert r.status_code == 500 and "文书模板“case_file.docx”有误" in r.text
        assert (await http.get(f"{base}/summary.docx")).status_code == 200  # the others: shipped

        await access.flush(http._transport.app)  # type: ignore[attr-defined]
        with session_scope(settings.database_url) as s:
            entries = access_log.read(s, person_id="liu.yang", action="export", incident_id=view.id)
            refused = access_log.read(s, person_id="xu.lei", incident_id=view.id)
        assert any(e.resource == f"{base}/written-report.docx" for e in entries)
        assert any(not e.granted for e in refused)


def test_the_shipped_templates_are_package_data_and_regenerate_alike(tmp_path: Path) -> None:
    """An installed app finds them (pyproject's package-data), and the script in scripts/ writes
    the same documents as the ones committed (text and styles; Word's timestamps aside)."""
    import runpy
    import tomllib

    pyproject = tomllib.loads((SHIPPED.parent.parent / "pyproject.toml").read_text("utf-8"))
    assert "documents/*.docx" in pyproject["tool"]["setuptools"]["package-data"]["config"]
    script = SHIPPED.parent.parent / "scripts" / "make_document_templates.py"
    runpy.run_path(str(script), run_name="templates")["main"](tmp_path)
    for name in documents.TEMPLATE_FILES:
        fresh, shipped = Document(str(tmp_path / name)), Document(str(SHIPPED / name))
        assert text_of(fresh) == text_of(shipped), (
            f"{name}: rerun scripts/make_document_templates.py"
        )


def test_documents_need_only_the_store(database_url: str, roster: Roster) -> None:
    """An incident Temporal no longer holds (its history past retention): the store's rows alone
    give its documents. R-SUMMARY's ledger says 按期 for a deadline met in time, 逾期 for one met
    late, 逾期未完成 for one still open past due, and counts them."""
    from datetime import UTC, datetime

    from store import migrate
    from store.models import DeadlineRow, Incident

    migrate.upgrade(database_url)
    found = datetime(2024, 3, 1, 1, 30, tzinfo=UTC)  # 09:30 in Beijing
    with session_scope(database_url) as s:
        s.add(
            Incident(
                id="YQ-OLD",
                version=1,
                title="三年前的旧案<b>&",  # XML-escaped into the document
                content="旧帖",
                source="论坛",
                url=None,
                reporter_unit="yqb",
                reporter_name="周婷",
                responsible_unit="cjb",
                co_units="pcs",
                severity="major",
                category="inquiry",
                phase="closed",
                drill=False,
                discovered_at=found,
                received_at=found,
                overdue=False,
                closed_at=found + timedelta(days=5),
                plan_version="2024",
                short_number="2024-0301-001",
            )
        )
        s.flush()  # the incident before its deadlines (foreign keys)
        for key, due, met, overdue in (
            ("R-REPORT", 1, 0.5, False),
            ("R-REPLY", 2, 5, False),
            ("R-SUMMARY", 3, None, True),
        ):
            s.add(
                DeadlineRow(
                    incident_id="YQ-OLD",
                    key=key,
                    rule=key,
                    title=f"{key}期限",
                    unit="cjb",
                    due_at=found + timedelta(hours=due),
                    met_at=found + timedelta(hours=met) if met is not None else None,
                    overdue=overdue,
                    escalation_step=0,
                )
            )
    settings = make_settings(database_url)
    with session_scope(database_url) as s:
        row = documents.visible_row(s, "YQ-OLD", None)
        assert row is not None
        builder = documents.Builder(s, row, roster, TOWN)
        context = builder.context()
    assert context["ledger"] == {"total": 3, "on_time": 1, "late": 2}
    states = [d["state"] for d in context["deadlines"]]
    assert states == ["按期", "逾期", "逾期未完成"]
    doc = Document(io.BytesIO(documents.render(settings, "summary", context)))
    text = text_of(doc)
    assert "三年前的旧案<b>&" in doc.paragraphs[0].text and "2024年03月01日 09:30" in text
    assert "村镇建设办" in text and "清溪派出所" in text and "重大" in text
    assert "共3项，按期1项，逾期2项。" in text
    # R-SECRECY in SQL: another unit's staff does not find it; the co-handling unit does.
    with session_scope(database_url) as s:
        assert documents.visible_row(s, "YQ-OLD", incident_rows.Involving("sswb", "xu.lei")) is None
        assert documents.visible_row(s, "YQ-OLD", incident_rows.Involving("pcs", "x")) is not None
