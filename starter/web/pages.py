"""What every page needs, made once per app: the templates with their filters, sign-in, and the
small helpers the routers (incident_pages, staff, reports, audit, ...) share."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape
from starlette.datastructures import FormData

from plan import rules
from plan.actions import may_read_reports
from plan.models import Category, Severity
from starter.attachments import EVIDENCE_MAX
from starter.errors import FIELD_LABELS
from store import incident_rows
from store.db import session_scope

from .auth import CSRF_FIELD, Auth, Viewer

if TYPE_CHECKING:
    from .state import AppState

HERE = Path(__file__).resolve().parent

SOURCES = [
    "微博",
    "微信公众号",
    "抖音",
    "今日头条",
    "本地论坛",
    "12345热线",
    "上级交办",
    "舆情监测系统",
]


# A rule's code as the plan's rule list numbers it (R-REPLY, R-INQUIRY-OPINION): shown small and
# grey in one element class, so readers see the plain words first (issue 18).
# A code alone in full-width brackets, "（R-REPLY）", takes its brackets into the small grey span.
RULE_CODE = re.compile(r"（R-[A-Z]+(?:-[A-Z]+)*）|\bR-[A-Z]+(?:-[A-Z]+)*\b")
# Zones a Chinese reader calls by name; any other configured zone is named as configured.
ZONE_WORDS = {"Asia/Shanghai": "北京时间", "Asia/Chongqing": "北京时间", "PRC": "北京时间"}


def zone_words(zone: str) -> str:
    """How a page names the town's time zone: 北京时间 for China's zone (issue 18)."""
    return ZONE_WORDS.get(zone, f"{zone}时区")


def rule_code(code: str) -> Markup:
    return Markup('<span class="rule-code">{}</span>').format(code)


def with_rule_codes(text: object) -> Markup:
    """Plain text (a timeline line, an inbox subject, a help line), escaped, with every rule code in
    it wrapped in `<span class="rule-code">`."""
    escaped = str(escape("" if text is None else text))
    return Markup(RULE_CODE.sub(lambda m: str(rule_code(m.group(0))), escaped))


def rule_words(code: str | None) -> Markup:
    """A rule by its plain name, the code small after it: 预案：官方回复时限 R-REPLY."""
    if not code:
        return Markup("")
    name = rules.RULE_NAMES.get(code)
    if name is None:
        return rule_code(code)
    return Markup("预案：{} ").format(name) + rule_code(code)


class Pages:
    def __init__(self, state: AppState) -> None:
        self.state = state
        self.settings = state.settings
        self.roster = state.roster
        self.auth = Auth(self.settings, self.roster)
        self.tz = ZoneInfo(self.settings.timezone)
        self.templates = Jinja2Templates(directory=HERE / "templates")
        env = self.templates.env
        env.filters["local"] = self.local
        env.filters["duration"] = rules.format_duration
        env.filters["codes"] = with_rule_codes
        env.filters["rule"] = rule_words
        env.globals.update(
            roster=self.roster,
            severities=list(Severity),
            severity_sentences={
                s.value: rules.severity_explanation(s, state.plan) for s in Severity
            },
            # The plan's periods as its sentences say them, e.g. plan_words.report_within "1小时".
            plan_words=rules.duration_words(state.plan),
            # The drill speed-up's help (issue 18): a general reply's period at the default 60.
            drill_reply_general=rules.plan_duration(state.plan.reply_within[Severity.general] / 60),
            categories=list(Category),
            sources=SOURCES,
            labels=FIELD_LABELS,
            timezone=zone_words(self.settings.timezone),
            # Issue 19: the report form's evidence files, and every upload's cap.
            attachment_max_mb=self.settings.attachment_max_mb,
            evidence_max=EVIDENCE_MAX,
        )

    def local(self, value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
        return value.astimezone(self.tz).strftime(fmt) if value else ""

    def render(
        self, request: Request, name: str, context: dict[str, Any], status_code: int = 200
    ) -> Response:
        """A page with the signed-in person (or none) for the header: the one the route or the
        error handler looked up (`await auth.current(request)`); rendering asks no store."""
        context = {"me": self.auth.known(request), **context}
        return self.templates.TemplateResponse(request, name, context, status_code=status_code)

    def short_number(self, incident_id: str) -> str | None:
        """The incident's short number (2026-1130-007) from the read model; None before its
        first record. Blocking: a coroutine runs it in the thread pool."""
        with session_scope(self.settings.database_url) as s:
            return incident_rows.short_number_of(s, incident_id=incident_id)

    def ui_link(self, incident_id: str) -> str:
        base = self.settings.temporal_ui_url.rstrip("/")
        ns = quote(self.settings.temporal_namespace)
        return f"{base}/namespaces/{ns}/workflows/{quote(incident_id)}"

    def ui_for(self, person_id: str | None, incident_id: str) -> str | None:
        """The incident's page on the Temporal UI, for those the UI's gate lets in."""
        return self.ui_link(incident_id) if may_read_reports(self.roster, person_id) else None

    async def posted(self, request: Request, me: Viewer) -> FormData:
        """A signed-in person's form, after the Origin and CSRF checks."""
        self.auth.check_origin(request)
        form = await request.form()
        submitted = form.get(CSRF_FIELD)
        self.auth.check_csrf(me, submitted if isinstance(submitted, str) else None)
        return form


def pages(request: Request) -> Pages:
    found: Pages = request.app.state.pages
    return found
