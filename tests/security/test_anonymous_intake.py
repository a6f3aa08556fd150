"""Issue 15, findings 1 and 2: anonymous input is untrusted.

1. Re-submitting a report (same submission key or content) read the whole live incident back.
   An anonymous caller gets only the incident id, whether it was new, and a receipt.
2. Anonymous reports planted accountability records: a backdated report created 迟发现 and 迟报
   against any unit, an urgent one with a unit started 3-hour deadlines against it. Anonymous
   submissions are leads for the office (R-OFFICE): R-REPORT runs on the office from receipt; the
   times and units claimed are shown, never attributed. A signed-in reporter is believed.

Through the real HTTP app, a worker and the time-skipping server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from config.settings import Settings
from starter import incidents
from store import incident_rows
from store.db import session_scope
from tests.helpers import eventually, submission
from tests.test_api import http, token_for  # noqa: F401  (http: the app and a worker)

RECEIPT = {"id", "created", "received_at", "message"}


def backdated(**overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "title": "东湖村卫生院收费乱象",
        "content": "网帖称卫生院乱收费，联系人王某，电话13800000000。",
        "severity": "urgent",
        "responsible_unit": "cjb",
        "reporter_unit": "dhc",
        "discovered_at": (now - timedelta(hours=3)).isoformat(),
        "posted_at": (now - timedelta(hours=5)).isoformat(),
        "url": "https://weibo.example/post/backdated",
        "submission_key": "key-anon-1",
    }
    return submission(**{**values, **overrides})


async def test_an_anonymous_resubmission_reads_nothing_back(
    http: httpx.AsyncClient,  # noqa: F811
    settings: Settings,
) -> None:
    office = token_for(settings, "liu.yang")
    # The office reports first, and triages with notes and a draft reply.
    first = await http.post(
        "/api/incidents", json=submission(submission_key="same-key"), headers=office
    )
    assert first.status_code == 201
    incident_id = first.json()["id"]
    assert first.json()["content"]  # the office may read what it reported
    triage = {"severity": "major", "category": "inquiry", "responsible_unit": "cjb"}
    triaged = await http.post(
        f"/api/incidents/{incident_id}/actions/triage",
        json={**triage, "note": "内部研判意见"},
        headers=office,
    )
    assert triaged.status_code == 200, triaged.text

    # An anonymous caller sends the same key (any content): only the id and a receipt.
    again = await http.post(
        "/api/incidents", json=submission(submission_key="same-key", title="随便写的")
    )
    assert again.status_code == 200
    answer = again.json()
    assert set(answer) == RECEIPT and answer["id"] == incident_id and answer["created"] is False
    for secret in ("内部研判意见", "东湖村道路积水", "liu.yang", "temporal", "cjb"):
        assert secret not in again.text, secret

    # A new anonymous report about the same post: a new lead, and still only a receipt (never
    # the id of the confidential incident about that post).
    other = await http.post("/api/incidents", json=submission(submission_key="another"))
    assert other.status_code == 201 and set(other.json()) == RECEIPT
    assert incident_id not in other.text
    lead = await http.post("/api/leads", json=submission(submission_key="lead-key"))
    assert lead.status_code == 201 and set(lead.json()) == RECEIPT

    # Staff with no part in an incident get the receipt too, not the incident.
    outsider = await http.post(
        "/api/incidents",
        json=submission(submission_key="same-key"),
        headers=token_for(settings, "zheng.lei"),
    )
    assert set(outsider.json()) == RECEIPT

    # The page form, anonymous: a receipt page naming what they typed, not the incident.
    page = await http.post(
        "/incidents",
        data={**{k: str(v) for k, v in submission(submission_key="same-key").items()}},
    )
    assert page.status_code == 201 and incident_id in page.text
    assert "内部研判意见" not in page.text and "Temporal" not in page.text


async def test_an_anonymous_backdated_report_plants_no_record(
    time_env: WorkflowEnvironment,
    http: httpx.AsyncClient,  # noqa: F811
    client: Client,
    settings: Settings,
) -> None:
    sent = await http.post("/api/incidents", json=backdated())
    assert sent.status_code == 201 and set(sent.json()) == RECEIPT
    view = await incidents.get(client, sent.json()["id"])
    # A lead for the office: nothing counts from the claimed times, no unit owes anything.
    assert view.phase.value == "lead" and view.lead
    assert view.responsible_unit is None and not view.severity_assessed
    assert view.accountability == []
    report = view.deadline("R-REPORT")
    assert report is not None and report.unit == "yqb" and report.anchor_at == view.received_at
    assert all(d.unit in (None, "yqb") for d in view.deadlines), view.deadlines
    assert all(d.anchor_at is None or d.anchor_at >= view.received_at for d in view.deadlines)
    assert view.stated_reporter_unit == "dhc" and view.reporter_unit == "yqb"

    # Hours pass: whatever is missed is the office's, never the claimed units'.
    await time_env.sleep(timedelta(hours=4))
    later = await incidents.get(client, view.id)
    assert {a.unit for a in later.accountability} <= {"yqb"}
    withdrawn = await incidents.act(
        client, view.id, "withdraw", {"reason": "核实为误报"}, "liu.yang"
    )
    assert all(a.voided_at is not None for a in withdrawn.accountability)

    def stored() -> list[Any]:
        with session_scope(settings.database_url) as s:
            return list(incident_rows.accountability(s, incident_id=view.id))

    rows = await eventually(lambda: [r for r in stored() if r.voided_at] or not stored() or None)
    assert all(r.unit == "yqb" for r in rows if r is not True)


async def test_a_signed_in_reporter_is_believed_for_their_own_unit(
    http: httpx.AsyncClient,  # noqa: F811
    client: Client,
    settings: Settings,
) -> None:
    """What a signed-in reporter states for their own unit counts (a late report is 迟报 on
    their unit); naming another unit they are not part of, it is a lead like an anonymous one."""
    own = await http.post(
        "/api/incidents",
        json=backdated(submission_key="key-own"),
        headers=token_for(settings, "feng.gang"),
    )
    assert own.status_code == 201
    view = await incidents.get(client, own.json()["id"])
    assert view.phase.value == "triage" and view.responsible_unit == "cjb"
    assert {("迟报", "dhc"), ("迟发现", "dhc")} <= {(a.kind, a.unit) for a in view.accountability}

    elsewhere = await http.post(
        "/api/incidents",
        json=backdated(submission_key="key-else", reporter_unit="pcs"),
        headers=token_for(settings, "feng.gang"),
    )
    other = await incidents.get(client, elsewhere.json()["id"])
    assert other.phase.value == "lead" and other.accountability == []
