"""The leading group's pages: the accountability report (HTML, SVG chart, CSV), the dashboard and
the incident list's filters, over ASGI against the time-skipping server and a real database."""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import httpx
from openpyxl import load_workbook
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from config.settings import Settings
from plan.roster import Roster
from starter import incidents
from starter.web.app import create_app
from starter.web.charts import on_time_bars
from store import incident_rows, reporting
from store.db import session_scope
from tests.helpers import eventually, publish, running_worker, submit, triage
from tests.test_api import sign_in

SVG = "{http://www.w3.org/2000/svg}"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def download_name(r: httpx.Response) -> str:
    """The Chinese file name of a download (RFC 5987 filename*), checking the ASCII fallback."""
    header = r.headers["content-disposition"]
    assert header.startswith('attachment; filename="') and header.isascii()
    return unquote(header.split("filename*=UTF-8''", 1)[1])


def test_chart_is_well_formed_with_one_escaped_bar_per_unit() -> None:
    svg = on_time_bars([("村镇建设办", 0.5), ("<script>alert(1)</script>&", 1.0), ("无事", None)])
    root = ET.fromstring(svg)  # well-formed XML
    assert root.tag == f"{SVG}svg"
    bars = root.findall(f".//{SVG}rect")
    assert len(bars) == 3
    widths = [float(b.get("width", "0")) for b in bars]
    assert widths[0] > 0 and abs(widths[1] - 2 * widths[0]) < 0.01 and widths[2] == 0
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "<script>alert(1)</script>&" in texts and "50.0%" in texts and "100.0%" in texts
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert len(ET.fromstring(on_time_bars([])).findall(f".//{SVG}rect")) == 0


async def _client(app: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")  # type: ignore[arg-type]


async def test_report_csv_and_dashboard_for_the_office_and_403_for_staff(
    time_env: WorkflowEnvironment,
    client: Client,
    settings: Settings,
    roster: Roster,
    executor: ThreadPoolExecutor,
) -> None:
    app = create_app(settings, client=client, roster=roster)
    async with running_worker(client, settings, executor):
        missed = await submit(
            client, settings, roster, severity="urgent", responsible_unit="cjb", title="<b>积水</b>"
        )
        met = await submit(client, settings, roster, title="按期回复的事件")
        await triage(client, met.id, unit="sswb")
        await publish(client, met.id, staff="xu.lei", head="huang.li")
        await incidents.act(
            client,
            met.id,
            "commend",
            {"unit": "sswb", "person": "xu.lei", "reason": "及时回应"},
            "wang.jianguo",
        )
        await submit(client, settings, roster, severity="urgent", drill_speedup=3600)
        await time_env.sleep(timedelta(hours=3, minutes=5))

        def missed_recorded() -> bool:
            with session_scope(settings.database_url) as s:
                return any(
                    a.kind == "逾期" for a in incident_rows.accountability(s, incident_id=missed.id)
                )

        await eventually(missed_recorded)

        def escalated() -> bool:
            with session_scope(settings.database_url) as s:
                return bool(incident_rows.escalations(s, incident_id=missed.id))

        await eventually(escalated)

        today = datetime.now(UTC).date()
        params = {
            "start": (today - timedelta(days=1)).isoformat(),
            "end": (today + timedelta(days=2)).isoformat(),
        }
        async with await _client(app) as office, await _client(app) as staff:
            # Not signed in: to the sign-in page.
            for path in ("/reports/accountability", "/reports/accountability.xlsx"):
                r = await office.get(path)
                assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
            await sign_in(office, settings, "liu.yang")
            await sign_in(staff, settings, "lin.feng")

            page = await office.get("/reports/accountability", params=params)
            assert page.status_code == 200, page.text
            assert "村镇建设办" in page.text and "社会事务办" in page.text
            assert 'href="/dashboard"' in page.text and "问责统计" in page.text
            svg = re.search(r"<svg.*?</svg>", page.text, re.S)
            assert svg is not None
            root = ET.fromstring(svg.group(0))
            assert len(root.findall(f".//{SVG}rect")) >= 2
            assert "0.0%" in page.text and "100.0%" in page.text

            # Defaults: the last 30 days in the town's zone.
            default = await office.get("/reports/accountability")
            assert default.status_code == 200 and 'name="start"' in default.text
            bad = await office.get("/reports/accountability", params={"start": "x"})
            assert bad.status_code == 422 and "日期格式不正确" in bad.text

            got = await office.get("/reports/accountability.csv", params=params)
            assert got.status_code == 200 and got.headers["content-type"].startswith("text/csv")
            assert got.content.startswith(b"\xef\xbb\xbf")
            rows = list(csv.reader(io.StringIO(got.content.decode("utf-8-sig"))))
            assert rows[0][:3] == ["单位", "单位代码", "按期完成"] and "瞒报" in rows[0]
            by_unit = {r[1]: dict(zip(rows[0], r, strict=True)) for r in rows[1:]}
            assert by_unit["cjb"]["未完成（已逾期）"] == "1" and by_unit["cjb"]["逾期"] == "1"
            assert by_unit["cjb"]["按期完成率"] == "0.0%"
            assert by_unit["sswb"]["表扬"] == "1" and by_unit["sswb"]["按期完成率"] == "100.0%"
            period = f"{params['start']}至{params['end']}"
            assert download_name(got) == f"清溪镇舆情问责统计_{period}.csv"
            assert rows[-1][0] == "合计" and int(rows[-1][2]) == sum(int(r[2]) for r in rows[1:-1])

            # Excel (issue 19, item 2): the same figures, numbers as numbers (R-ACCOUNT).
            assert (
                'href="/reports/accountability.xlsx?' in page.text and "导出电子表格" in page.text
            )
            book = await office.get("/reports/accountability.xlsx", params=params)
            assert book.status_code == 200 and book.headers["content-type"] == XLSX
            assert download_name(book) == f"清溪镇舆情问责统计_{period}.xlsx"
            ws = load_workbook(io.BytesIO(book.content)).active
            assert ws is not None and ws.freeze_panes == "A3"
            assert ws["A1"].value.startswith(f"清溪镇舆情处置问责统计（{period}")
            headers = [c.value for c in ws[2]]
            assert headers == rows[0]
            cells = {r[1].value or r[0].value: r for r in ws.iter_rows(min_row=3)}
            col = {h: i for i, h in enumerate(headers)}
            cjb, sswb, total = cells["cjb"], cells["sswb"], cells["合计"]
            assert cjb[col["未完成（已逾期）"]].value == 1 and cjb[col["逾期"]].value == 1
            rate = sswb[col["按期完成率"]]
            assert rate.value == 1 and rate.number_format == "0.0%"
            assert cjb[col["按期完成率"]].value == 0
            units = [r for k, r in cells.items() if k != "合计"]
            for h in ("按期完成", "未完成（已逾期）", "逾期", "表扬"):
                assert total[col[h]].value == sum(r[col[h]].value for r in units), h
            # The drill's missed deadline is left out (R-DRILL): one missed in all, cjb's.
            assert total[col["未完成（已逾期）"]].value == 1

            dash = await office.get("/dashboard")
            assert dash.status_code == 200, dash.text
            assert f'href="/incidents/{missed.id}"' in dash.text
            assert "<b>积水</b>" not in dash.text and "&lt;b&gt;积水&lt;/b&gt;" in dash.text
            with session_scope(settings.database_url) as s:
                counts = reporting.incident_counts(s)
                overdue = reporting.overdue_now(s)
                assert all(not i.drill for i in overdue)
                escalations = reporting.escalations_since(
                    s, since=datetime.now(UTC) - timedelta(days=7)
                )
            assert sum(counts["phase"].values()) == 2  # the drill is left out
            assert counts["severity"].get("urgent") == 1
            urgent = re.search(r'data-severity="urgent">.*?class="count">(\d+)<', dash.text)
            assert urgent is not None and urgent.group(1) == "1"
            shown = re.search(r'id="overdue-count">(\d+)<', dash.text)
            assert shown is not None and int(shown.group(1)) == len(overdue) >= 1
            esc = re.search(r'id="escalation-count">(\d+)<', dash.text)
            assert esc is not None and int(esc.group(1)) == len(escalations) >= 1

            # Overdue filter on the list.
            only = await office.get("/incidents", params={"overdue": "true", "drill": "false"})
            assert f'href="/incidents/{missed.id}"' in only.text
            assert f'href="/incidents/{met.id}"' not in only.text

            # Unit staff: refused, and no links in the header.
            paths = ("/reports/accountability", "/reports/accountability.csv", "/dashboard")
            for path in (*paths, "/reports/accountability.xlsx"):
                r = await staff.get(path)
                assert r.status_code == 403 and "仅对领导小组" in r.text, path
            assert 'href="/dashboard"' not in (await staff.get("/incidents")).text


async def test_list_filters_narrow_the_rows(
    client: Client, settings: Settings, roster: Roster, executor: ThreadPoolExecutor
) -> None:
    app = create_app(settings, client=client, roster=roster)
    async with running_worker(client, settings, executor):
        general = await submit(client, settings, roster, severity="general", title="一般事件")
        major = await submit(client, settings, roster, title="重大事件")
        await triage(client, major.id, severity="major", category="hype", unit="cjb")
        drill = await submit(client, settings, roster, title="演练事件", drill_speedup=60)

        def listed() -> bool:
            with session_scope(settings.database_url) as s:
                rows = incident_rows.list_incidents(s)
                return len(rows) == 3 and any(r.category == "hype" for r in rows)

        await eventually(listed)
        async with await _client(app) as office:
            await sign_in(office, settings, "liu.yang")

            async def ids(**params: str) -> set[str]:
                r = await office.get("/incidents", params=params)
                assert r.status_code == 200, r.text
                return set(re.findall(r'<a href="/incidents/([^"]+)">', r.text))

            assert {general.id, major.id, drill.id} <= await ids()
            assert await ids(severity="major") == {major.id}
            assert await ids(category="hype") == {major.id}
            assert await ids(drill="true") == {drill.id}
            assert drill.id not in await ids(drill="false")
            assert await ids(overdue="true") == set()
            assert await ids(severity="major", unit="sswb") == set()
            page = await office.get("/incidents", params={"severity": "major", "page": "2"})
            assert 'href="?severity=major&amp;page=1"' in page.text
            assert 'value="major" selected' in page.text
            assert (
                'href="/incidents.xlsx?severity=major"' in page.text and "导出电子表格" in page.text
            )

            async def exported(who: httpx.AsyncClient, **params: str) -> tuple[str, list[Any]]:
                r = await who.get("/incidents.xlsx", params=params)
                assert r.status_code == 200 and r.headers["content-type"] == XLSX, r.text
                ws = load_workbook(io.BytesIO(r.content)).active
                assert ws is not None and ws.freeze_panes == "A3"
                assert [c.value for c in ws[2]][:3] == ["短编号", "编号", "标题"]
                rows = [r for r in ws.iter_rows(min_row=3) if r[0].value != "合计"]
                return download_name(r), rows

            # The list's filters apply to the export (issue 19, item 2).
            name, rows = await exported(office, severity="major", unit="cjb")
            assert [r[1].value for r in rows] == [major.id]
            assert name.startswith("清溪镇舆情事件列表_村镇建设办_") and name.endswith(".xlsx")
            found = rows[0][8]
            assert isinstance(found.value, datetime) and found.value.tzinfo is None
            assert found.is_date and "yyyy" in found.number_format
            assert rows[0][3].value == "重大" and rows[0][6].value == "村镇建设办"
            _, everything = await exported(office)
            assert {general.id, major.id, drill.id} <= {r[1].value for r in everything}
            _, drills = await exported(office, drill="true")
            assert [(r[1].value, r[12].value) for r in drills] == [(drill.id, "演练")]
            _, searched = await exported(office, q="重大")
            assert [r[1].value for r in searched] == [major.id]

            # R-SECRECY: a unit's staff export only what they may see, as their list shows.
            async with await _client(app) as staff, await _client(app) as nobody:
                await sign_in(staff, settings, "lin.feng")
                _, theirs = await exported(staff)
                assert {r[1].value for r in theirs} == await_ids(await staff.get("/incidents"))
                assert major.id in {r[1].value for r in theirs}
                assert general.id not in {r[1].value for r in theirs}
                r = await nobody.get("/incidents.xlsx")
                assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")


def await_ids(r: httpx.Response) -> set[str]:
    """The incident ids a list page links to."""
    return set(re.findall(r'<a href="/incidents/([^"]+)">', r.text))
