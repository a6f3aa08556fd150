"""The leading group's pages: the accountability report (HTML, SVG chart, CSV), the dashboard and
the incident list's filters, over ASGI against the time-skipping server and a real database."""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
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
            r = await office.get("/reports/accountability")
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
            for path in ("/reports/accountability", "/reports/accountability.csv", "/dashboard"):
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
