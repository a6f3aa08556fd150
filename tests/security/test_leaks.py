"""Issue 15, finding 9: what a signed-in person with no role on an incident learns, and inputs that
used to end in a 500.

- A person who may not see an incident (R-SECRECY) gets the very answer a nonexistent id gets
  (404, same body), on the pages and the API, for reading it and for acting on it: no responsible
  unit, no phase, and no way to tell that the id exists.
- Pages and offsets near 10^21, and report periods out to year 1 or 9999, are refused with a 422 in
  Chinese instead of overflowing the database or the date arithmetic.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from temporalio.client import Client

from config.settings import Settings
from plan.roster import Roster
from tests.helpers import app_over_asgi, submission
from tests.test_api import sign_in, token_for

MISSING = "YQ-20260101-FFFFFFFFFFFF"
HUGE = str(10**21)


@pytest.fixture
async def app_http(
    client: Client, settings: Settings, roster: Roster, executor: ThreadPoolExecutor
) -> AsyncIterator[httpx.AsyncClient]:
    """The real app over ASGI; an exception in it comes back as the 500 a browser would get."""
    async with app_over_asgi(client, settings, roster, executor, raise_app_exceptions=False) as c:
        yield c


async def triaged_incident(http: httpx.AsyncClient, settings: Settings) -> str:
    """An incident led by 村镇建设办 (cjb), in handling: its unit and phase are what must not leak."""
    office = token_for(settings, "liu.yang")
    r = await http.post(
        "/api/incidents", json=submission(), headers=token_for(settings, "zhou.ting")
    )
    assert r.status_code == 201, r.text
    incident_id = str(r.json()["id"])
    triage = {"severity": "general", "category": "inquiry", "responsible_unit": "cjb"}
    r = await http.post(f"/api/incidents/{incident_id}/actions/triage", json=triage, headers=office)
    assert r.status_code == 200, r.text
    assert r.json()["phase"] == "handling"
    return incident_id


def same_answer(real: httpx.Response, real_id: str, missing: httpx.Response) -> None:
    """The refusal for an incident one may not see is the answer for an id that does not exist."""
    assert real.status_code == missing.status_code == 404, (real.status_code, real.text)
    assert real.text.replace(real_id, "ID") == missing.text.replace(MISSING, "ID")
    for leak in ("村镇建设办", "cjb", "处置中", "handling", "R-SECRECY", "无权"):
        assert leak not in real.text, leak


async def test_api_answers_404_for_what_the_caller_may_not_see(
    app_http: httpx.AsyncClient, settings: Settings
) -> None:
    incident_id = await triaged_incident(app_http, settings)
    outsider = token_for(settings, "xu.lei")  # 社会事务办: no part in it

    read = await app_http.get(f"/api/incidents/{incident_id}", headers=outsider)
    nothing = await app_http.get(f"/api/incidents/{MISSING}", headers=outsider)
    same_answer(read, incident_id, nothing)

    # Acting on it: refused as not found before the workflow, whose reasons name unit and phase.
    draft = {"text": "已安排抽排积水。"}
    acted = await app_http.post(
        f"/api/incidents/{incident_id}/actions/draft-reply", json=draft, headers=outsider
    )
    nothing = await app_http.post(
        f"/api/incidents/{MISSING}/actions/draft-reply", json=draft, headers=outsider
    )
    same_answer(acted, incident_id, nothing)

    # The responsible unit's staff reads it as before.
    unit = await app_http.get(
        f"/api/incidents/{incident_id}", headers=token_for(settings, "lin.feng")
    )
    assert unit.status_code == 200


async def test_pages_answer_404_for_what_the_viewer_may_not_see(
    app_http: httpx.AsyncClient, settings: Settings
) -> None:
    incident_id = await triaged_incident(app_http, settings)
    csrf = await sign_in(app_http, settings, "xu.lei")

    page = await app_http.get(f"/incidents/{incident_id}")
    nothing = await app_http.get(f"/incidents/{MISSING}")
    same_answer(page, incident_id, nothing)
    assert "徐磊" in page.text  # still a page of the site, with who is signed in

    form = {"csrf_token": csrf, "text": "已安排抽排积水。"}
    acted = await app_http.post(f"/incidents/{incident_id}/actions/draft-reply", data=form)
    nothing = await app_http.post(f"/incidents/{MISSING}/actions/draft-reply", data=form)
    same_answer(acted, incident_id, nothing)


async def test_huge_pages_and_offsets_are_a_422_in_chinese(
    app_http: httpx.AsyncClient, settings: Settings
) -> None:
    office = token_for(settings, "liu.yang")
    for query in (f"offset={HUGE}", "offset=1000001", f"limit=50&offset={HUGE}"):
        r = await app_http.get(f"/api/incidents?{query}", headers=office)
        assert r.status_code == 422, (query, r.status_code, r.text[:200])
        body = r.json()
        assert body["errors"] and all(
            any(ord(c) > 0x2E80 for c in e["message"]) for e in body["errors"]
        ), body
        assert any("起始位置" in e["message"] for e in body["errors"]), body
    ok = await app_http.get("/api/incidents?offset=1000", headers=office)
    assert ok.status_code == 200 and ok.json()["items"] == []

    await sign_in(app_http, settings, "liu.yang")
    for page in (HUGE, "20001", "0", "-1"):
        r = await app_http.get(f"/incidents?page={page}")
        assert r.status_code == 422, (page, r.status_code, r.text[:200])
        assert "页码" in r.text
        assert "text/html" in r.headers["content-type"]  # a page, not JSON, for the browser
    assert (await app_http.get("/incidents?page=20000")).status_code == 200


@pytest.mark.parametrize(
    ("start", "end", "words"),
    [
        ("0001-01-01", "9999-12-31", "2000"),
        ("1999-12-31", "2000-01-02", "2000"),
        ("2099-12-31", "2101-01-01", "2100"),
        ("2000-01-01", "2100-12-31", "年"),  # within the years, but far too long a period
    ],
)
async def test_report_periods_are_bounded(
    app_http: httpx.AsyncClient, settings: Settings, start: str, end: str, words: str
) -> None:
    office = token_for(settings, "liu.yang")
    period = {"start": start, "end": end}
    api = await app_http.get("/api/reports/accountability", params=period, headers=office)
    assert api.status_code == 422, (api.status_code, api.text[:300])
    assert words in api.json()["detail"] and any(ord(c) > 0x2E80 for c in api.json()["detail"])

    await sign_in(app_http, settings, "liu.yang")
    page = await app_http.get("/reports/accountability", params=period)
    assert page.status_code == 422, (page.status_code, page.text[:300])
    assert words in page.text
    for path in ("/reports/accountability.csv", "/reports/accountability.xlsx"):
        exported = await app_http.get(path, params=period)
        assert exported.status_code == 422, (path, exported.status_code, exported.text[:300])
    book = await app_http.get("/api/reports/accountability.xlsx", params=period, headers=office)
    assert book.status_code == 422 and words in book.json()["detail"]

    fine = {"start": "2026-01-01", "end": "2026-12-31"}
    assert (await app_http.get("/reports/accountability", params=fine)).status_code == 200
    r = await app_http.get("/api/reports/accountability", params=fine, headers=office)
    assert r.status_code == 200, r.text
