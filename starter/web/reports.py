"""The leading group's pages: the accountability report (R-ACCOUNT, R-COMMEND) with its server-side
SVG chart and its CSV and Excel exports (starter/sheets.py, issue 19 item 2), and the dashboard
(领导小组看板).

Only the office, the leading group and 镇党政办 may read them (the same roles as the report API);
the server refuses everyone else with 403. Drills are left out of every figure.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup
from sqlalchemy.orm import Session

from plan import reach_test as reach_plan
from plan.actions import may_read_reports, may_start_reach_test
from plan.models import Severity
from plan.roster import Roster
from starter import sheets
from starter.incidents import ServiceError
from store import reach_checks, reporting

from . import access
from .auth import Viewer
from .charts import on_time_bars
from .deps import PagePerson, PagesDep, StoreSession
from .lateness import span
from .pages import Pages

HERE = Path(__file__).resolve().parent
REFUSED = "问责统计与领导小组看板仅对领导小组、领导小组办公室和镇党政办开放"
KINDS = sheets.ACCOUNT_KINDS
PHASES = sheets.PHASE_LABELS
CSV_HEADER = sheets.ACCOUNT_HEADERS

router = APIRouter(include_in_schema=False)  # pages: not the JSON API (issue 17)


def may_see_reports(roster: Roster, person_id: str | None) -> bool:
    """The office, the leading group and 镇党政办."""
    return may_read_reports(roster, person_id)


async def report_reader(me: PagePerson, pages: PagesDep) -> Viewer:
    """The signed-in person, with a role that may read these pages; else 403."""
    if not may_see_reports(pages.roster, me.person_id):
        raise ServiceError(403, REFUSED)
    return me


ReportReader = Annotated[Viewer, Depends(report_reader)]


def _render(
    request: Request, pages: Pages, me: Viewer, name: str, context: dict[str, Any], status: int
) -> Response:
    return pages.templates.TemplateResponse(
        request, name, {"me": me, **context}, status_code=status
    )


# Report periods: dates a town's records can have, and at most ten years at once. Without bounds,
# 0001-01-01..9999-12-31 overflowed the date arithmetic (a 500; issue 15, finding 9).
EARLIEST_DAY = date(2000, 1, 1)
LATEST_DAY = date(2100, 12, 31)
MAX_PERIOD_YEARS = 10
MAX_PERIOD = timedelta(days=366 * MAX_PERIOD_YEARS)


def period_problem(first: date, last: date) -> str | None:
    """Why a report period (inclusive town dates) is refused, in Chinese; None when it is fine."""
    if not (EARLIEST_DAY <= first <= LATEST_DAY and EARLIEST_DAY <= last <= LATEST_DAY):
        return (
            f"日期应在{EARLIEST_DAY.isoformat()}至{LATEST_DAY.isoformat()}之间"
            f"（{EARLIEST_DAY.year}年至{LATEST_DAY.year}年）"
        )
    if last < first:
        return "结束日期不能早于开始日期"
    if last - first >= MAX_PERIOD:
        return f"统计期间不能超过{MAX_PERIOD_YEARS}年，请缩短开始日期至结束日期的间隔"
    return None


def _period(pages: Pages, start: str | None, end: str | None) -> tuple[date, date, str | None]:
    """The report's dates (town dates, inclusive); the last 30 days by default."""
    today = datetime.now(pages.tz).date()
    default_start, default_end = today - timedelta(days=29), today
    try:
        first = date.fromisoformat(start) if start else default_start
        last = date.fromisoformat(end) if end else default_end
    except ValueError:
        return default_start, default_end, "日期格式不正确，应为 YYYY-MM-DD"
    return first, last, period_problem(first, last)


def _report_rows(s: Session, pages: Pages, first: date, last: date) -> list[dict[str, Any]]:
    """The report's rows (asks the store: for a plain-`def` route, run in the thread pool)."""
    begin = datetime(first.year, first.month, first.day, tzinfo=pages.tz)
    finish = datetime(last.year, last.month, last.day, tzinfo=pages.tz) + timedelta(days=1)
    raw = reporting.accountability_report(s, start=begin, end=finish)
    rows = []
    for r in raw:
        r["unit_name"] = pages.roster.unit_name(str(r["unit"]))
        records = r["records"]
        commendations = r["commendations"]
        assert isinstance(records, dict) and isinstance(commendations, list)
        rate = r["on_time_rate"]
        rows.append(
            {
                "raw": r,
                "unit": r["unit"],
                "unit_name": r["unit_name"],
                "on_time": r["on_time"],
                "late": r["late"],
                "missed": r["missed"],
                "pending": r["pending"],
                "rate": rate,
                "rate_text": "—" if rate is None else f"{float(rate) * 100:.1f}%",  # type: ignore[arg-type]
                "records": [int(records.get(k, 0)) for k in KINDS],
                "voided": r["voided"],
                "commendations": commendations,
                "commended": "、".join(
                    pages.roster.person_name(c.get("person"))
                    or pages.roster.unit_name(str(r["unit"]))
                    for c in commendations
                ),
            }
        )
    return rows


@router.get("/reports/accountability", response_class=HTMLResponse)
def accountability_page(
    request: Request,
    me: ReportReader,
    pages: PagesDep,
    session: StoreSession,
    start: str | None = None,
    end: str | None = None,
) -> Response:
    first, last, error = _period(pages, start, end)
    rows = [] if error else _report_rows(session, pages, first, last)
    access.record(request, me.person_id, "report")
    chart = on_time_bars([(r["unit_name"], r["rate"]) for r in rows])
    context = {
        "start": start if error and start else first.isoformat(),
        "end": end if error and end else last.isoformat(),
        "error": error,
        "rows": rows,
        "kinds": KINDS,
        "chart": Markup(chart),  # built from escaped text only (charts.on_time_bars)
        "export_query": urlencode({"start": first.isoformat(), "end": last.isoformat()}),
    }
    return _render(request, pages, me, "reports.html", context, 422 if error else 200)


def _report_file(
    request: Request,
    me: Viewer,
    pages: Pages,
    session: Session,
    start: str | None,
    end: str | None,
    ext: str,
) -> Response:
    first, last, error = _period(pages, start, end)
    if error:
        raise ServiceError(422, error)
    return report_file(request, me.person_id, pages, session, first, last, ext)


def report_file(
    request: Request,
    person_id: str | None,
    pages: Pages,
    session: Session,
    first: date,
    last: date,
    ext: str,
) -> Response:
    """The report (a checked period) as a file, `ext` csv or xlsx, named in Chinese with the
    town and the period; the export is noted in the access log. The pages' downloads and the
    API's (GET /api/reports/accountability.xlsx) answer with this."""
    access.record(request, person_id, "export")
    units = [r["raw"] for r in _report_rows(session, pages, first, last)]
    table = sheets.accountability_table(pages.roster.town, first, last, units)
    name, fallback = sheets.accountability_filename(pages.roster.town, first, last, ext)
    if ext == "xlsx":
        body, media_type = sheets.xlsx_bytes(table), sheets.XLSX_MEDIA_TYPE
    else:
        body, media_type = sheets.csv_bytes(table), sheets.CSV_MEDIA_TYPE
    return Response(
        body,
        media_type=media_type,
        headers={"Content-Disposition": sheets.content_disposition(name, fallback)},
    )


@router.get("/reports/accountability.csv")
def accountability_csv(
    request: Request,
    me: ReportReader,
    pages: PagesDep,
    session: StoreSession,
    start: str | None = None,
    end: str | None = None,
) -> Response:
    """The report as CSV, with a 合计 row (R-ACCOUNT; drills left out)."""
    return _report_file(request, me, pages, session, start, end, "csv")


@router.get("/reports/accountability.xlsx")
def accountability_xlsx(
    request: Request,
    me: ReportReader,
    pages: PagesDep,
    session: StoreSession,
    start: str | None = None,
    end: str | None = None,
) -> Response:
    """The report as an Excel workbook (issue 19, item 2; R-ACCOUNT, drills left out)."""
    return _report_file(request, me, pages, session, start, end, "xlsx")


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard_page(
    request: Request,
    me: ReportReader,
    pages: PagesDep,
    session: StoreSession,
    drills: bool = False,
    reach_test: str | None = None,
) -> Response:
    """The leading group's dashboard; `drills` follows drills too (R-DRILL: each marked 演练,
    its lateness in plan time), which the figures otherwise leave out; `reach_test`, the run a
    通联测试 the viewer just started has (its id shown)."""
    access.record(request, me.person_id, "report")
    now = datetime.now(UTC)
    since = datetime.now(pages.tz) - timedelta(days=7)
    counts = reporting.incident_counts(session, drills=drills)
    overdue = list(reporting.overdue_now(session, drills=drills))
    escalations = [
        {
            "incident_id": e.incident_id,
            "title": title,
            "rule": e.rule,
            "step": e.step,
            "at": e.at,
            "summary": e.summary,
            "drill": e.drill,
            "targets": "、".join(pages.roster.person_name(t) for t in e.targets.split(",") if t),
        }
        for e, title in reporting.escalations_since(session, since=since, drills=drills)
    ]
    overdue_rows = [
        {
            "id": i.id,
            "title": i.title,
            "severity": i.severity,
            "phase": i.phase,
            "unit": i.responsible_unit,
            "due": i.next_due_at,
            "drill": i.drill,
            "late": span(now - i.next_due_at, i.drill_speedup if i.drill else None)
            if i.next_due_at is not None and i.next_due_at < now
            else "",
        }
        for i in overdue
    ]
    context = {
        "by_phase": [(label, counts["phase"].get(p, 0), p) for p, label in PHASES.items()],
        "by_severity": [
            (sev.label, counts["severity"].get(sev.value, 0), sev.value) for sev in Severity
        ],
        "phases": PHASES,
        "overdue": overdue_rows,
        "escalations": escalations,
        "drills": drills,
        **reach_section(session, pages, me.person_id, now),
        "reach_started": reach_test if reach_test and reach_test.startswith("reach-test-") else "",
    }
    return _render(request, pages, me, "dashboard.html", context, 200)


def reach_section(session: Session, pages: Pages, person_id: str, now: datetime) -> dict[str, Any]:
    """通联情况 (issue 20, item 5): who of the leading group, its office and the units' heads is
    unreachable, why and since when, from the 通联测试's rows (never from, nor into, the
    accountability figures); and whether this viewer may start a test now."""
    checks = reach_checks.recent(session)
    return {
        "reach_latest": reach_plan.latest_run(checks),
        "reach_unreachable": reach_plan.unreachable(checks, pages.roster, now),
        "reach_confirm_days": reach_plan.CONFIRM_WITHIN.days,
        "reach_may_start": may_start_reach_test(pages.roster, person_id),
    }
