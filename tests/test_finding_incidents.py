"""Issue 18, item 7: finding and naming incidents. A keyword search over title and content (and the
short number) in the list, on the page and the API, inside R-SECRECY's filter; a short number a
clerk can read out on the phone (2026-1130-007) beside the id on the list and the incident page;
the list links the title."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from activities.record import RecordActivities
from config.settings import Settings
from plan.records import RecordRequest
from plan.roster import Roster
from starter.web.app import create_app
from store import incident_rows
from store.db import session_scope
from tests.conftest import make_settings
from tests.helpers import app_over_asgi, eventually, submit
from tests.test_api import sign_in, token_for
from tests.test_store import incident_row

RECEIVED = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)  # 09:00 in Beijing


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture
async def http(settings: Settings, roster: Roster) -> AsyncIterator[httpx.AsyncClient]:
    """The app without Temporal: the list pages and the API's list read the store only."""
    app = create_app(settings, roster=roster)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


def seed(settings: Settings) -> dict[str, str]:
    """Three incidents; the last reported by 东湖村 (dhc), the others by the office. Their
    short numbers, by id."""
    seeds: list[tuple[str, dict[str, Any]]] = [
        ("yq-water", {"title": "东湖村道路积水", "content": "主干道积水一周"}),
        ("yq-fee", {"title": "学校收费", "content": "家长称 100% 多收费用"}),
        ("yq-noise", {"title": "夜间施工", "content": "西湖村工地噪音", "reporter_unit": "dhc"}),
    ]
    for incident_id, values in seeds:
        RecordActivities(settings.database_url).record(
            RecordRequest(
                incident=incident_row(incident_id, url=None, received_at=RECEIVED, **values),
                deadlines=[],
                timeline=[],
                accountability=[],
            )
        )
    with session_scope(settings.database_url) as s:
        return {i.id: i.short_number or "" for i in incident_rows.list_incidents(s)}


def ids_in(html: str) -> set[str]:
    return set(re.findall(r'href="/incidents/(yq-[a-z]+)"', html))


async def test_the_list_searches_title_and_content_and_links_the_title(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    numbers = seed(settings)
    assert numbers == {
        "yq-water": "2026-1130-001",
        "yq-fee": "2026-1130-002",
        "yq-noise": "2026-1130-003",
    }
    await sign_in(http, settings, "liu.yang")  # the office sees all
    page = await http.get("/incidents", params={"q": "积水"})
    assert page.status_code == 200 and ids_in(page.text) == {"yq-water"}
    assert 'name="q"' in page.text and 'value="积水"' in page.text
    assert '<a href="/incidents/yq-water">东湖村道路积水</a>' in page.text  # the title links
    assert "2026-1130-001" in page.text  # the short number beside the id
    assert '<table class="cards">' in page.text and 'data-label="标题"' in page.text
    assert ids_in((await http.get("/incidents", params={"q": "噪音"})).text) == {"yq-noise"}
    assert ids_in((await http.get("/incidents", params={"q": "湖村"})).text) == {
        "yq-water",
        "yq-noise",
    }
    # The short number as read out on the phone finds its incident.
    found = await http.get("/incidents", params={"q": "2026-1130-002"})
    assert ids_in(found.text) == {"yq-fee"}
    # `%` is a character, not a wildcard; paging keeps the search.
    assert ids_in((await http.get("/incidents", params={"q": "%"})).text) == {"yq-fee"}
    assert ids_in((await http.get("/incidents", params={"q": "无此事"})).text) == set()
    assert ids_in((await http.get("/incidents", params={"q": ""})).text) == set(numbers)


async def test_the_search_keeps_the_secrecy_filter(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    seed(settings)
    await sign_in(http, settings, "feng.gang")  # 东湖村: only what dhc is part of
    assert ids_in((await http.get("/incidents", params={"q": "湖村"})).text) == {"yq-noise"}
    assert ids_in((await http.get("/incidents", params={"q": "2026-1130-001"})).text) == set()
    api = await http.get(
        "/api/incidents", params={"q": "湖村"}, headers=token_for(settings, "feng.gang")
    )
    assert [i["id"] for i in api.json()["items"]] == ["yq-noise"]


async def test_the_api_lists_by_keyword_with_the_short_number(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    numbers = seed(settings)
    headers = token_for(settings, "liu.yang")
    r = await http.get("/api/incidents", params={"q": "收费"}, headers=headers)
    assert r.status_code == 200
    (item,) = r.json()["items"]
    assert (item["id"], item["short_number"]) == ("yq-fee", numbers["yq-fee"])
    r = await http.get("/api/incidents", params={"q": "x" * 101}, headers=headers)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "q"


async def test_the_four_lists_filter_alike(http: httpx.AsyncClient, settings: Settings) -> None:
    """The list page, its workbook, the API's list and its workbook take the same filters
    (starter/web/filters.py): severity and category narrow all four the same way."""
    from io import BytesIO

    from openpyxl import load_workbook

    for incident_id, severity, category in (
        ("yq-major", "major", "fabrication"),
        ("yq-minor", "general", "inquiry"),
    ):
        RecordActivities(settings.database_url).record(
            RecordRequest(
                incident=incident_row(
                    incident_id,
                    url=None,
                    received_at=RECEIVED,
                    severity=severity,
                    category=category,
                    title=f"标题{incident_id}",
                ),
                deadlines=[],
                timeline=[],
                accountability=[],
            )
        )
    headers = token_for(settings, "liu.yang")
    await sign_in(http, settings, "liu.yang")

    def in_workbook(body: bytes) -> set[str]:
        ws = load_workbook(BytesIO(body)).active
        assert ws is not None
        return {str(r[1]) for r in ws.iter_rows(min_row=3, values_only=True) if r[0] != "合计"}

    for params, expected in (
        ({"severity": "major"}, {"yq-major"}),
        ({"category": "inquiry"}, {"yq-minor"}),
        ({"severity": "major", "category": "inquiry"}, set()),
    ):
        page = await http.get("/incidents", params=params)
        assert ids_in(page.text) == expected, params
        api = await http.get("/api/incidents", params=params, headers=headers)
        assert {i["id"] for i in api.json()["items"]} == expected, params
        page_xlsx = await http.get("/incidents.xlsx", params=params)
        assert in_workbook(page_xlsx.content) == expected, params
        api_xlsx = await http.get("/api/incidents.xlsx", params=params, headers=headers)
        assert in_workbook(api_xlsx.content) == expected, params


@pytest.fixture
async def live(
    client: Client, settings: Settings, roster: Roster, executor: ThreadPoolExecutor
) -> AsyncIterator[httpx.AsyncClient]:
    async with app_over_asgi(client, settings, roster, executor) as c:
        yield c


async def test_the_incident_page_and_the_api_show_the_short_number(
    live: httpx.AsyncClient, client: Client, settings: Settings, roster: Roster
) -> None:
    view = await submit(client, settings, roster)

    def number() -> str | None:
        with session_scope(settings.database_url) as s:
            rows = incident_rows.list_incidents(s, text=view.id)
            return rows[0].short_number if rows else None

    short = await eventually(number)
    assert re.fullmatch(r"\d{4}-\d{4}-\d{3}", short)
    await sign_in(live, settings, "liu.yang")
    page = await live.get(f"/incidents/{view.id}")
    assert page.status_code == 200 and f'id="short-number">{short}<' in page.text
    got = await live.get(f"/api/incidents/{view.id}", headers=token_for(settings, "liu.yang"))
    assert got.json()["short_number"] == short
