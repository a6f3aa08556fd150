"""The OpenAPI document says what the API answers (issue 17, finding 1); Schemathesis holds the
app to it (tests/test_schemathesis.py). These are the quick checks, without Temporal."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from openpyxl import load_workbook

from config.settings import Settings
from plan.actions import ACTIONS
from plan.roster import Roster
from starter.web.app import create_app
from tests.test_api import token_for

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@pytest.fixture
async def http(settings: Settings, roster: Roster) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, roster=roster)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


async def _document(http: httpx.AsyncClient) -> dict[str, Any]:
    r = await http.get("/openapi.json")
    assert r.status_code == 200
    doc: dict[str, Any] = r.json()
    return doc


async def test_refusals_are_documented_with_the_real_body(http: httpx.AsyncClient) -> None:
    doc = await _document(http)
    schemas = doc["components"]["schemas"]
    api = {p: ops for p, ops in doc["paths"].items() if p.startswith("/api/")}
    assert "HTTPValidationError" not in str(api)  # FastAPI's 422, not the body the API sends
    assert set(schemas["ApiError"]["required"]) == {"detail", "errors"}
    error = {"$ref": "#/components/schemas/ApiError"}
    expected = {
        ("get", "/api/incidents"): {"400", "401", "422"},
        ("get", "/api/incidents/{incident_id}"): {"401", "404", "503"},
        ("get", "/api/reports/accountability"): {"401", "403", "422"},
        ("get", "/api/reports/accountability.xlsx"): {"401", "403", "422"},
        ("get", "/api/incidents.xlsx"): {"400", "401", "422"},
        ("get", "/api/access-log"): {"401", "403", "422"},
        ("post", "/api/incidents"): {"200", "201", "413", "422", "429", "503"},
        ("post", "/api/leads"): {"200", "201", "413", "422", "429", "503"},
    }
    for name in ACTIONS:
        path = f"/api/incidents/{{incident_id}}/actions/{name}"
        expected[("post", path)] = {"401", "403", "404", "409", "413", "422", "503"}
    for (method, path), codes in expected.items():
        responses = doc["paths"][path][method]["responses"]
        assert codes <= set(responses), (method, path)
        for code in codes - {"200", "201"}:
            assert responses[code]["content"]["application/json"]["schema"] == error


async def test_submissions_bearer_and_pages_in_the_document(http: httpx.AsyncClient) -> None:
    doc = await _document(http)
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for path in ("/api/incidents", "/api/leads"):
        post = doc["paths"][path]["post"]
        body = post["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": "#/components/schemas/Submission"}
        assert {} in post["security"]  # anonymous submissions are allowed
        assert (
            "post_action_triage" in str(post["responses"]["201"]["links"])
            or post["responses"]["201"]["links"]
        )
    get = doc["paths"]["/api/incidents"]["get"]
    assert get["security"] == [{"HTTPBearer": []}]
    assert not any(p["name"].lower() == "authorization" for p in get.get("parameters", []))
    # The pages answer HTML: they are not part of the JSON API's document.
    documented = ("/api/", "/healthz", "/readyz", "/codec/")  # the codec: the Temporal UI's JSON
    assert not [p for p in doc["paths"] if not p.startswith(documented)]
    submission = doc["components"]["schemas"]["Submission"]["properties"]
    assert "pattern" in submission["title"]  # one line, no control characters
    units = doc["components"]["schemas"]["Submission"]["properties"]["reporter_unit"]
    assert "yqb" in units["enum"]


async def test_refusals_in_chinese(http: httpx.AsyncClient, settings: Settings) -> None:
    office = token_for(settings, "liu.yang")
    r = await http.options("/api/incidents")
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, POST"
    assert r.json() == {"detail": "该地址不支持此请求方法", "errors": []}
    r = await http.post(
        "/api/incidents/YQ-X/actions/withdraw",
        content=b"\xff\xfe{",
        headers={**office, "content-type": "application/json"},
    )
    assert r.status_code == 400
    assert r.json()["detail"].startswith("请求内容无法解析")
    r = await http.get("/api/nothing-here")
    assert (r.status_code, r.json()["detail"]) == (404, "接口不存在")
    # A query parameter the document does not name: refused, after the token.
    assert (await http.get("/api/incidents?phsae=closed")).status_code == 401
    r = await http.get("/api/incidents?phsae=closed", headers=office)
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "phsae"
    assert (await http.get("/api/incidents?phase=closed", headers=office)).status_code == 200
    r = await http.get("/api/incidents?phase=closed&phase=triage", headers=office)
    assert (r.status_code, r.json()["errors"][0]["field"]) == (422, "phase")
    r = await http.get("/api/access-log?start=20240101", headers=office)
    assert r.status_code == 422


async def test_the_report_workbook_is_documented_as_xlsx_and_answers_so(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    """Issue 19, item 2: GET /api/reports/accountability.xlsx is a binary answer with the Excel
    media type (R-ACCOUNT); refused as the JSON report is."""
    doc = await _document(http)
    ok = doc["paths"]["/api/reports/accountability.xlsx"]["get"]["responses"]["200"]
    assert list(ok["content"]) == [XLSX]
    assert ok["content"][XLSX]["schema"] == {"type": "string", "format": "binary"}
    period = {"start": "2026-11-01", "end": "2026-11-30"}
    path = "/api/reports/accountability.xlsx"
    assert (await http.get(path, params=period)).status_code == 401
    staff = await http.get(path, params=period, headers=token_for(settings, "lin.feng"))
    assert staff.status_code == 403 and staff.json()["detail"].startswith("问责统计仅对")
    office = token_for(settings, "liu.yang")
    bad = await http.get(path, params={"start": "2026-11-30", "end": "2026-11-01"}, headers=office)
    assert bad.status_code == 422
    r = await http.get(path, params=period, headers=office)
    assert r.status_code == 200 and r.headers["content-type"] == XLSX
    assert "filename*=UTF-8''" in r.headers["content-disposition"]
    ws = load_workbook(io.BytesIO(r.content)).active
    assert ws is not None
    assert ws["A1"].value.startswith("清溪镇舆情处置问责统计（2026-11-01至2026-11-30")
    assert ws.cell(row=2, column=1).value == "单位"


async def test_the_list_workbook_is_documented_as_xlsx_and_needs_a_token(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    """GET /api/incidents.xlsx (issue 19): binary, Excel's media type; a token required."""
    doc = await _document(http)
    ok = doc["paths"]["/api/incidents.xlsx"]["get"]["responses"]["200"]
    assert list(ok["content"]) == [XLSX]
    assert (await http.get("/api/incidents.xlsx")).status_code == 401
    r = await http.get(
        "/api/incidents.xlsx", params={"unit": "cjb"}, headers=token_for(settings, "lin.feng")
    )
    assert r.status_code == 200 and r.headers["content-type"] == XLSX
    ws = load_workbook(io.BytesIO(r.content)).active
    assert ws is not None and ws["A1"].value.startswith("清溪镇舆情事件列表（导出于")
    assert [c.value for c in ws[2]][:2] == ["短编号", "编号"]
