"""Excel (.xlsx) and CSV tables for the office's files (issue 19, item 2): the accountability
report (R-ACCOUNT, R-COMMEND) and the incident list, from the web pages and the CLI.

A sheet has a title row (the town, the table's name and the period), the Chinese headers under
it (frozen, so they stay in view), the rows, and a 合计 row where sums make sense. Numbers are
numbers, rates are fractions shown as percentages ('0.0%'), times are Excel datetimes in the
town's local time (Excel has no time zones). Column widths fit the Chinese text (a CJK character
is about two Latin ones wide).

Downloads name the file in Chinese (the town, the table, the unit when filtered, the period) with
RFC 5987 `filename*=UTF-8''…` and an ASCII fallback for old clients (`content_disposition`).
"""

from __future__ import annotations

import csv
import io
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from urllib.parse import quote

from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter

from plan import rules
from plan.enums import Category, Severity
from plan.roster import Roster
from store.models import Incident

XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_MEDIA_TYPE = "text/csv; charset=utf-8"
PERCENT = "0.0%"
DATETIME = "yyyy-mm-dd hh:mm"
TOTAL = "合计"
MIN_WIDTH = 6
MAX_WIDTH = 60

Cell = str | int | float | bool | datetime | date | None


@dataclass
class Table:
    """One table: its title (the first row), headers, rows and an optional 合计 row; `formats`
    gives a column's number format by header (e.g. PERCENT, DATETIME)."""

    title: str
    headers: list[str]
    rows: list[list[Cell]]
    total: list[Cell] | None = None
    formats: dict[str, str] = field(default_factory=dict)
    sheet_name: str = "Sheet1"


def period_text(first: date, last: date) -> str:
    """A report period as its title and file name say it: 2026-11-01至2026-11-30."""
    return f"{first.isoformat()}至{last.isoformat()}"


def text_width(value: Cell, number_format: str | None = None) -> int:
    """About how many Latin characters wide a cell shows (CJK and full-width count two)."""
    if value is None:
        return 0
    if isinstance(value, datetime):
        return 16
    if isinstance(value, date):
        return 10
    if isinstance(value, float) and number_format == PERCENT:
        return 6
    text = str(value)
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def local_naive(moment: datetime | None, tz: Any) -> datetime | None:
    """An aware moment as the town's wall-clock time, without a zone (what Excel stores)."""
    if moment is None:
        return None
    return moment.astimezone(tz).replace(tzinfo=None, microsecond=0)


def xlsx_bytes(table: Table) -> bytes:
    """The table as an .xlsx file."""
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = table.sheet_name[:31]
    width = len(table.headers)
    sheet.append([_clean(table.title)])
    sheet.cell(row=1, column=1).font = Font(bold=True, size=14)
    if width > 1:
        sheet.merge_cells(start_row=1, start_column=1, end_row=1, end_column=width)
    sheet.append(table.headers)
    for c in range(1, width + 1):
        cell = sheet.cell(row=2, column=c)
        cell.font = Font(bold=True)
        cell.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
    body = list(table.rows) + ([table.total] if table.total is not None else [])
    for r, row in enumerate(body, start=3):
        sheet.append([_clean(v) for v in row])
        for c, value in enumerate(row, start=1):
            if isinstance(value, str) and value.startswith("="):
                # Text from a submission is text, never a formula (spreadsheet injection).
                sheet.cell(row=r, column=c).data_type = "s"
    formats = [table.formats.get(h) for h in table.headers]
    for r in range(3, 3 + len(body)):
        for c, number_format in enumerate(formats, start=1):
            if number_format:
                sheet.cell(row=r, column=c).number_format = number_format
    if table.total is not None:
        for c in range(1, width + 1):
            sheet.cell(row=2 + len(body), column=c).font = Font(bold=True)
    for c, header in enumerate(table.headers, start=1):
        widest = max(
            [text_width(header)] + [text_width(row[c - 1], formats[c - 1]) for row in body]
        )
        sheet.column_dimensions[get_column_letter(c)].width = min(
            MAX_WIDTH, max(MIN_WIDTH, widest + 2)
        )
    sheet.freeze_panes = "A3"  # the title and the headers stay in view
    if table.rows:
        sheet.auto_filter.ref = f"A2:{get_column_letter(width)}{2 + len(table.rows)}"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _clean(value: Cell) -> Cell:
    """Text without the control characters a worksheet cannot hold (openpyxl refuses them)."""
    return ILLEGAL_CHARACTERS_RE.sub("", value) if isinstance(value, str) else value


def csv_bytes(table: Table) -> bytes:
    """The table as CSV with a BOM (spreadsheet programs then read the Chinese right): the
    headers, the rows and the 合计 row; rates as text like 87.5%, times as 2026-11-30 09:00."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(table.headers)
    body = list(table.rows) + ([table.total] if table.total is not None else [])
    for row in body:
        writer.writerow(
            [_csv_cell(v, table.formats.get(h)) for h, v in zip(table.headers, row, strict=True)]
        )
    return ("\ufeff" + out.getvalue()).encode("utf-8")


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: Cell, number_format: str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value  # text stays text in a spreadsheet program (OWASP: CSV injection)
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, float) and number_format == PERCENT:
        return f"{value * 100:.1f}%"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return str(value)


def safe_name(text: str) -> str:
    """A file name's part without characters file systems refuse."""
    return "".join("_" if ch in '\\/:*?"<>|\r\n\t' else ch for ch in text).strip() or "_"


def content_disposition(filename: str, fallback: str) -> str:
    """`attachment` with the Chinese name (RFC 5987/6266) and an ASCII one for old clients."""
    ascii_name = fallback.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


def sum_column(rows: Sequence[Sequence[Cell]], index: int) -> int:
    """The 合计 of one integer column."""
    total = 0
    for r in rows:
        value = r[index]
        total += value if isinstance(value, int) else 0
    return total


# ------------------------------------------------------------ the accountability report

# R-ACCOUNT: the kinds of accountability record, in the report's column order.
ACCOUNT_KINDS = [rules.LATE_REPORT, rules.OVERDUE, rules.LATE_DISCOVERY, "谎报", "瞒报", "漏报"]
ACCOUNT_HEADERS = [
    "单位",
    "单位代码",
    "按期完成",
    "逾期完成",
    "未完成（已逾期）",
    "未到期",
    "按期完成率",
    *ACCOUNT_KINDS,
    "已作废（误报撤销）",
    "表扬",
]
ACCOUNT_NAME = "舆情处置问责统计"


def accountability_table(
    town: str, first: date, last: date, units: Sequence[dict[str, Any]]
) -> Table:
    """R-ACCOUNT / R-COMMEND: one row per unit (store/reporting.py `accountability_report`'s
    rows with `unit_name`, as GET /api/reports/accountability gives them; drills are already
    left out) and a 合计 row: the counts summed, the rate over all units' counted deadlines."""
    rows: list[list[Cell]] = []
    for u in units:
        records = u.get("records") or {}
        rate = u.get("on_time_rate")
        rows.append(
            [
                str(u.get("unit_name") or u["unit"]),
                str(u["unit"]),
                int(u["on_time"]),
                int(u["late"]),
                int(u["missed"]),
                int(u["pending"]),
                None if rate is None else float(rate),
                *(int(records.get(k, 0)) for k in ACCOUNT_KINDS),
                int(u.get("voided") or 0),
                len(u.get("commendations") or []),
            ]
        )
    on_time, late, missed = (sum_column(rows, i) for i in (2, 3, 4))
    counted = on_time + late + missed
    total: list[Cell] = [TOTAL, "", on_time, late, missed, sum_column(rows, 5)]
    total.append(round(on_time / counted, 4) if counted else None)
    total += [sum_column(rows, i) for i in range(7, len(ACCOUNT_HEADERS))]
    return Table(
        title=f"{town}{ACCOUNT_NAME}（{period_text(first, last)}，不含演练）",
        headers=ACCOUNT_HEADERS,
        rows=rows,
        total=total,
        formats={"按期完成率": PERCENT},
        sheet_name="问责统计",
    )


def accountability_filename(town: str, first: date, last: date, ext: str) -> tuple[str, str]:
    """The report's file name (清溪镇舆情问责统计_2026-11-01至2026-11-30.xlsx) and its ASCII
    fallback."""
    return (
        safe_name(f"{town}舆情问责统计_{period_text(first, last)}") + f".{ext}",
        f"accountability_{first.isoformat()}_{last.isoformat()}.{ext}",
    )


# ------------------------------------------------------------ the incident list

INCIDENT_HEADERS = [
    "短编号",
    "编号",
    "标题",
    "等级",
    "类别",
    "阶段",
    "责任单位",
    "报告单位",
    "发现时间",
    "报告时间",
    "下一期限",
    "是否逾期",
    "演练",
]
PHASE_LABELS = {
    "lead": "待确认线索",
    "triage": "待研判",
    "handling": "处置中",
    "tracking": "动态跟踪",
    "summary": "待总结",
    "closed": "已结案",
}
LIST_NAME = "舆情事件列表"


def _label(kind: type[Severity] | type[Category], value: str | None) -> str:
    if not value:
        return ""
    try:
        return kind(value).label
    except ValueError:
        return value


def incident_table(
    town: str, roster: Roster, tz: Any, incidents: Sequence[Incident], *, title_note: str
) -> Table:
    """The incident list as the viewer may see it (the caller applies R-SECRECY and the list's
    filters); times in the town's local time. `title_note` ends the title (the export's time and
    the filters)."""
    rows: list[list[Cell]] = [
        [
            i.short_number or "",
            i.id,
            i.title,
            _label(Severity, i.severity),
            _label(Category, i.category),
            PHASE_LABELS.get(i.phase, i.phase),
            roster.unit_name(i.responsible_unit) if i.responsible_unit else "",
            roster.unit_name(i.reporter_unit) if i.reporter_unit else "",
            local_naive(i.discovered_at, tz),
            local_naive(i.received_at, tz),
            local_naive(i.next_due_at, tz),
            "是" if i.overdue else "否",
            "演练" if i.drill else "",
        ]
        for i in incidents
    ]
    total: list[Cell] | None = None
    if rows:
        overdue = sum(1 for i in incidents if i.overdue)
        total = [TOTAL, f"{len(rows)}件", *[""] * 9, f"逾期{overdue}件", ""]
    return Table(
        title=f"{town}{LIST_NAME}（{title_note}）",
        headers=INCIDENT_HEADERS,
        rows=rows,
        total=total,
        formats={"发现时间": DATETIME, "报告时间": DATETIME, "下一期限": DATETIME},
        sheet_name="事件列表",
    )


def incident_filename(town: str, unit_name: str | None, day: date, ext: str) -> tuple[str, str]:
    """The list's file name (清溪镇舆情事件列表_村镇建设办_2026-11-30.xlsx) and its ASCII fallback."""
    unit_part = f"_{unit_name}" if unit_name else ""
    return (
        safe_name(f"{town}{LIST_NAME}{unit_part}_{day.isoformat()}") + f".{ext}",
        f"incidents_{day.isoformat()}.{ext}",
    )
