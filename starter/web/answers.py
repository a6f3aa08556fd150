"""What the API and the pages tell a caller about an incident: the whole incident to someone who
may read it (R-SECRECY), and to anyone else who submitted a report only a receipt."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from plan.models import IncidentView
from starter import incidents


def receipt_of(submitted: incidents.Submitted, title: str | None) -> dict[str, Any]:
    """What a caller who may not read the incident is told: its id, whether their submission
    started it, when this submission was received, and what happens next (in Chinese)."""
    if submitted.created:
        message = "报告已收到，领导小组办公室将尽快核实研判。请记下事件编号。"
    else:
        message = (
            "该报告此前已提交（同一提交编号或相同内容），未重复立案；领导小组办公室将一并核实研判。"
        )
    return {
        "id": submitted.view.id,
        "created": submitted.created,
        "received_at": datetime.now(UTC),
        "title": title,
        "message": message,
    }


def incident_json(view: IncidentView, ui_link: str | None) -> dict[str, Any]:
    data = view.model_dump(mode="json")
    nxt = view.next_deadline()
    data["overdue"] = view.overdue
    data["next_deadline"] = nxt.model_dump(mode="json") if nxt else None
    data["temporal_ui"] = ui_link
    return data
