"""The JSON API's contract as its OpenAPI document says it (issue 17): the error body every refusal
has (`ApiError`, what handlers.py writes), the refusals each route may answer, the submissions'
request body (the routes read it raw, so FastAPI cannot see it), and what the server checks beyond
the models' own schema (control characters, line breaks in a title, web links, roster units),
written into the document by `openapi_for` when the app builds it.

The bearer token is the `HTTPBearer` security scheme (deps.py `ApiPerson`); a submission may be
sent with one or without.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field

from plan.actions import ACTIONS
from plan.models import SHORT_MAX, Submission
from plan.roster import Roster
from starter import sheets
from starter.incidents import PERSON_FIELDS
from starter.incidents import UNIT_FIELDS as ACTION_UNIT_FIELDS


class FieldProblem(BaseModel):
    """One refused field: its name in the request, its Chinese label, and what is wrong."""

    field: str = Field(description="请求中的字段名（查询参数、路径参数或请求体字段）")
    label: str = Field(description="字段的中文名称")
    message: str = Field(description="错误说明（中文）")


class ApiError(BaseModel):
    """Every refusal of the API: a message in Chinese, and the fields it names (maybe none)."""

    detail: str = Field(description="错误说明（中文）")
    errors: list[FieldProblem] = Field(description="有问题的字段；与具体字段无关时为空列表")


WHAT = {
    400: "请求无法解析（例如请求体不是UTF-8编码）",
    401: "缺少 Bearer 令牌，或令牌无效、已过期、已吊销",
    403: "无权执行：角色不允许该操作或读取该内容",
    404: "事件不存在，或调用者无权查看（二者答复相同）",
    409: "事件当前阶段不接受该操作，或流程已结束",
    413: "请求体过大",
    422: "请求内容有误：逐字段说明",
    429: "匿名提交过于频繁；Retry-After 头给出可再次提交的秒数",
    500: "文书模板有误，无法生成文书（说明中给出模板文件名）",
    503: "事件状态暂时无法读取（Temporal 繁忙或不可达），请稍后重试",
}


def refusals(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route: each status it may refuse with, with the ApiError body."""
    answers: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        answer: dict[str, Any] = {"model": ApiError, "description": WHAT[code]}
        if code == 429:
            answer["headers"] = {
                "Retry-After": {"description": "秒数", "schema": {"type": "integer"}}
            }
        answers[code] = answer
    return answers


# Every route of the API may be asked with an unparsable body or without a token.
AUTHENTICATED = (400, 401, 422)
READ = refusals(*AUTHENTICATED)
READ_ONE = refusals(*AUTHENTICATED, 404, 503)
REPORT = refusals(*AUTHENTICATED, 403)
XLSX = sheets.XLSX_MEDIA_TYPE
# A report as an Excel workbook (issue 19, item 2): a binary answer, not JSON.
REPORT_XLSX: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Excel 工作簿（.xlsx）；文件名见 Content-Disposition（RFC 5987 filename*）",
        "content": {XLSX: {"schema": {"type": "string", "format": "binary"}}},
    },
    **REPORT,
}
# The incident list as an Excel workbook: what the caller may see (R-SECRECY).
LIST_XLSX: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Excel 工作簿（.xlsx）：调用者可见的事件；文件名见 Content-Disposition",
        "content": {XLSX: {"schema": {"type": "string", "format": "binary"}}},
    },
    **READ,
}
ACTION = refusals(*AUTHENTICATED, 403, 404, 409, 413, 503)

_SUBMISSION_ANSWER = {
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SubmissionAnswer"}}}
}
SUBMIT: dict[int | str, dict[str, Any]] = {
    201: {"description": "新事件已受理", **_SUBMISSION_ANSWER},
    200: {"description": "相同提交已受理过（R-DEDUP）：返回原事件", **_SUBMISSION_ANSWER},
    **refusals(400, 413, 422, 429, 503),
}


def submission_body(description: str) -> dict[str, Any]:
    """The `openapi_extra` of a submission route: its JSON body is a `Submission` (read raw)."""
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/Submission"}}
            },
        },
        # Anonymous, or a monitoring system / staff with a token (known, not rate-limited).
        "security": [{}, {"HTTPBearer": []}],
    }


# What the server checks beyond the models' schema, as JSON Schema patterns (starter.incidents).
# The models strip whitespace first (pydantic: Unicode White_Space), so a control character that
# is whitespace (\v, \f, a line break in a title) may lead or trail: it never reaches the check.
_WS = r"[\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
NO_CONTROL = rf"^{_WS}*[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]*{_WS}*$"
# A title is one line: neither a control character nor a line break (a tab is neither).
ONE_LINE = rf"^{_WS}*[^\u0000-\u0008\u000a-\u001f\u007f\u0085\u2028\u2029]*{_WS}*$"
# A link: blank (no link), or http:// or https:// (lower case, as the server compares).
WEB_LINK = r"^\s*(https?://[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]*)?$"
# Not blank once stripped: a character Python's str.strip() keeps (the models strip whitespace;
# ECMA's \S would count U+0085 as text, Python strips it, and U+FEFF the other way round).
NOT_BLANK = (
    r"[^\u0009-\u000d\u001c-\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
)
UNIT_FIELDS = (*ACTION_UNIT_FIELDS, "reporter_unit")


# A town date of a report: 2000 to 2100 (starter/web/reports.py `period_problem`); the start not
# after the end, and at most ten years apart, are said in the description (two parameters).
REPORT_DAY = r"^(20[0-9]{2}|2100)-[0-9]{2}-[0-9]{2}$"
# A date of the access log's filters: YYYY-MM-DD, nothing else (starter/web/audit.py `filters`).
ISO_DAY = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"

# Rules over more than one field of a request, as JSON Schema.
WHOLE_REQUEST: dict[str, dict[str, Any]] = {
    # R-ACTIVATE: at least one unit or one person steps in (plan/models.py ActivateRequest).
    "ActivateRequest": {
        "anyOf": [
            {"required": ["units"], "properties": {"units": {"minItems": 1}}},
            {"required": ["persons"], "properties": {"persons": {"minItems": 1}}},
        ]
    },
}


def openapi_for(app: FastAPI, roster: Roster) -> dict[str, Any]:
    """The app's OpenAPI document (built once): FastAPI's, with the contract above added."""
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(
        title=app.title,
        version=app.version,
        description=DESCRIPTION,
        routes=app.routes,
    )
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    submission = Submission.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, schema in submission.pop("$defs", {}).items():
        schemas.setdefault(name, schema)
    # R-WRITTEN: the time of an oral report only with one (starter.incidents.parse_submission).
    submission["if"] = {
        "properties": {"oral_reported_at": {"type": "string"}},
        "required": ["oral_reported_at"],
    }
    submission["then"] = {"properties": {"oral": {"const": True}}, "required": ["oral"]}
    schemas["Submission"] = submission
    schemas["SubmissionAnswer"] = SUBMISSION_ANSWER
    units = sorted(u.id for u in roster.units)
    request_names = {rule.request.__name__ for rule in ACTIONS.values()} | {
        "Submission",
        "AbsenceRequest",
    }
    for name in request_names:
        _server_rules(schemas[name], units)
        schemas[name].update(WHOLE_REQUEST.get(name, {}))
    _links(doc)
    app.openapi_schema = doc
    return doc


DESCRIPTION = """舆情应急处置系统的 JSON 接口。

- 认证：`Authorization: Bearer <个人令牌>`（右上角 Authorize）。提交舆情（`POST /api/incidents`、
  `POST /api/leads`）可匿名，匿名提交按来源地址限频（429）。
- 每个拒绝都是同一形状的 JSON：`{"detail": "中文说明", "errors": [{"field", "label", "message"}]}`。
- 无权查看的事件与不存在的事件答复相同（404）。
- 时间均为带时区的 ISO 8601；发现、发帖、口头报告时间不得晚于当前时间，不得早于 2000-01-01，
  口头报告时间不得早于发现时间；问责统计的开始日期不得晚于结束日期。
"""

SUBMISSION_ANSWER: dict[str, Any] = {
    "title": "SubmissionAnswer",
    "description": "能查看该事件的调用者得到事件全文；其他调用者（匿名者等）只得到编号、是否新建与回执。",
    "type": "object",
    "required": ["id"],
    "properties": {
        "id": {"type": "string", "description": "事件编号"},
        "created": {"type": "boolean"},
        "received_at": {"type": "string", "format": "date-time"},
        "message": {"type": "string"},
    },
}


def _server_rules(schema: dict[str, Any], units: list[str]) -> None:
    """Patterns and descriptions for what starter.incidents refuses beyond the model's schema."""
    for name, prop in schema.get("properties", {}).items():
        strings = [s for s in _variants(prop) if s.get("type") == "string" and "format" not in s]
        arrays = [s for s in _variants(prop) if s.get("type") == "array"]
        items = [i for a in arrays if (i := a.get("items", {})).get("type") == "string"]
        for s in strings + items:
            if name in (*PERSON_FIELDS, "stand_in"):
                s.setdefault("maxLength", SHORT_MAX)
            if name in UNIT_FIELDS:
                s["enum"] = units
                continue
            if "enum" in s:
                continue
            s["pattern"] = {"title": ONE_LINE, "url": WEB_LINK}.get(name, NO_CONTROL)
            if s.get("minLength", 0) >= 1 and name != "url":
                s["allOf"] = [{"pattern": NOT_BLANK}]
        if name in UNIT_FIELDS:
            prop["description"] = "名册中的单位编号"
        elif name in PERSON_FIELDS:
            prop["description"] = "名册中的人员编号"
        elif name == "stand_in":
            prop["description"] = "名册中的人员编号：不在岗人员的同单位人员或领导小组成员"
        elif name == "title":
            prop["description"] = "一行文字：不含换行与控制字符"
        elif strings or items:
            prop.setdefault("description", "不含控制字符（换行、制表符除外）")


def _variants(prop: dict[str, Any]) -> list[dict[str, Any]]:
    return [prop, *prop.get("anyOf", [])]


def _links(doc: dict[str, Any]) -> None:
    """A new incident's `id` leads to reading it and to each staff action on it."""
    paths = doc["paths"]
    links: dict[str, Any] = {}
    for path, ops in paths.items():
        if not path.startswith("/api/incidents/{incident_id}"):
            continue
        for method, op in ops.items():
            name = op["operationId"]
            links[name] = {
                "operationId": name,
                "parameters": {"incident_id": "$response.body#/id"},
                "description": f"{method.upper()} {path}：对新事件",
            }
    for path in ("/api/incidents", "/api/leads"):
        for status in ("200", "201"):
            paths[path]["post"]["responses"][status]["links"] = links
