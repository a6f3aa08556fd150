"""Validation errors in Chinese, each naming its field, for the form, the API and the CLI."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

FIELD_LABELS = {
    "key": "通知",
    "title": "标题",
    "content": "内容摘要",
    "source": "来源",
    "discovered_at": "发现时间",
    "reporter_unit": "报告单位",
    "url": "原帖链接",
    "posted_at": "发帖时间",
    "reporter_name": "报告人",
    "severity": "舆情等级",
    "category": "舆情类别",
    "responsible_unit": "责任单位",
    "oral": "电话口头报告",
    "drill_speedup": "演练加速倍数",
    "submission_key": "提交编号",
    "text": "回复内容",
    "approve": "审定意见",
    "comment": "说明",
    "channel": "发布渠道",
    "note": "备注",
    "actor": "操作人",
    "co_units": "协办单位",
    "units": "介入单位",
    "topic": "会商议题",
    "decision": "决定",
    "participants": "参加人员",
    "persons": "介入人员",
    "reason": "理由",
    "kind": "类型",
    "spokesperson": "发布人",
    "adopted": "是否采纳",
    "description": "情况说明",
    "status": "跟踪结论",
    "unit": "单位",
    "person": "人员",
    "oral_reported_at": "口头报告时间",
    "lead": "监测线索",
    "start": "开始日期",
    "end": "结束日期",
    "body": "请求内容",
    "page": "页码",
    "offset": "起始位置",
    "limit": "每页条数",
    "attachment_id": "附件编号",
    "document": "文档",
    "evidence": "证据文件",
    "stand_in": "代理人",
    "starts_at": "开始时间",
    "ends_at": "结束时间",
}
# A field whose common label names the wrong thing in one action: `text` is a reply's 回复内容 in
# draft-reply, but the written report's, the 续报's or the summary's in theirs. The API's 422, the
# pages' errors and forms (starter/web/staff.py) and the CLI's help use these.
ACTION_FIELD_LABELS: dict[tuple[str, str], str] = {
    ("file-written-report", "text"): "书面信息内容",
    ("report-progress", "text"): "续报内容",
    ("submit-summary", "text"): "总结内容",
    ("publish-reply", "url"): "已发布回复的链接",
}


def field_label(field: str, action: str | None = None) -> str:
    """What the field is called: in `action`, if it says something else there."""
    named = ACTION_FIELD_LABELS.get((action, field)) if action else None
    return named or FIELD_LABELS.get(field, field)


@dataclass
class FieldError:
    field: str
    message: str
    label: str | None = None  # the field's name where it differs from FIELD_LABELS' (an action's)

    def as_dict(self) -> dict[str, str]:
        return {
            "field": self.field,
            "label": self.label or FIELD_LABELS.get(self.field, self.field),
            "message": self.message,
        }


def _message(kind: str, ctx: dict[str, object], raw: str) -> str:
    messages = {
        "missing": "必填",
        "string_too_short": "不能为空",
        "string_too_long": f"不能超过{ctx.get('max_length')}个字",
        "string_type": "应为文字",
        "bool_parsing": "应为是或否",
        "bool_type": "应为是或否",
        "float_parsing": "应为数字",
        "float_type": "应为数字",
        "greater_than_equal": f"不能小于{ctx.get('ge')}",
        "less_than_equal": f"不能大于{ctx.get('le')}",
        "enum": f"应为以下之一：{ctx.get('expected')}",
        "datetime_parsing": "时间格式不正确，应为ISO 8601格式并带时区，如 2026-11-29T08:30:00+08:00",
        "datetime_from_date_parsing": "时间格式不正确，应为ISO 8601格式并带时区",
        "datetime_type": "时间格式不正确",
        "timezone_aware": "时间须带时区，如 +08:00",
        "extra_forbidden": "不是可接受的字段",
        "model_type": "格式不正确",
        "dict_type": "格式不正确",
        "json_invalid": "不是有效的JSON",
        "model_attributes_type": "应为JSON对象",
        "list_type": "应为列表",
        "too_long": f"不能超过{ctx.get('max_length')}项",
        "too_short": f"至少{ctx.get('min_length')}项",
        "string_unicode": "含有无效字符",
    }
    if kind == "value_error":
        if "posted_at" in raw:
            return "发帖时间不能晚于发现时间"
        if "http" in raw:
            return "链接须以 http:// 或 https:// 开头"
        said = raw.removeprefix("Value error, ")
        if any(ord(c) > 0x2E80 for c in said):
            return said  # a model's own check, already in Chinese
        return "取值不正确"
    if kind not in messages and any(ord(c) > 0x2E80 for c in raw):
        return raw  # a model's own check (PydanticCustomError), already in Chinese
    return messages.get(kind, "取值不正确")


def translate(exc: ValidationError, action: str | None = None) -> list[FieldError]:
    return translate_errors(list(exc.errors()), action)


def translate_errors(errors: list[Any], action: str | None = None) -> list[FieldError]:
    """pydantic (or FastAPI request) errors → Chinese messages naming the field (as `action`,
    when they are a staff action's, calls it)."""
    out: list[FieldError] = []
    for err in errors:
        loc = [
            str(p)
            for p in err["loc"]
            if not isinstance(p, int) and p not in ("body", "query", "path", "header")
        ]
        named = str((err.get("ctx") or {}).get("field") or "")  # a model's check naming its field
        field = loc[0] if loc else (named or ("posted_at" if "posted_at" in err["msg"] else ""))
        field = field or "body"  # the request as a whole (not JSON, not an object)
        label = field_label(field, action)
        text = _message(err["type"], dict(err.get("ctx") or {}), str(err["msg"]))
        out.append(FieldError(field, f"{label}：{text}", label))
    return out
