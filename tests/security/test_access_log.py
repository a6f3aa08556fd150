"""Issue 15, finding 12: a record of who looked. Incident pages and API reads, lists, CSV exports,
report pages and codec decodes each leave an entry (who, what, when, from where); the office and
the leading group read the log (page and API), nobody else; nothing changes or removes an entry,
in the app or in the store; and writing the log never slows or fails the read."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from temporalio.client import Client

from config.settings import Settings
from plan.roster import Roster
from runtime.codec import new_key_entry
from starter.web.app import create_app
from store.db import session_scope
from tests.conftest import make_settings
from tests.helpers import running_worker, submission
from tests.test_api import sign_in, token_for

PLAIN = {
    "metadata": {"encoding": base64.b64encode(b"json/plain").decode()},
    "data": base64.b64encode("东湖村积水".encode()).decode(),
}


# --------------------------------------------------------------------- the store


def test_the_store_appends_and_never_changes_or_removes(store_url: str) -> None:
    from store import access_log
    from store.access_log import AccessEntry

    now = datetime.now(UTC)
    entries = [
        AccessEntry(
            now - timedelta(hours=2), "liu.yang", "view", "/incidents/YQ-1", "YQ-1", "10.0.0.1"
        ),
        AccessEntry(
            now - timedelta(hours=1),
            "lin.feng",
            "view",
            "/api/incidents/YQ-1",
            "YQ-1",
            "10.0.0.2",
            False,
        ),
        AccessEntry(now, "liu.yang", "export", "/reports/accountability.csv?start=2026-11-01"),
    ]
    with session_scope(store_url) as s:
        access_log.append(s, entries)
    with session_scope(store_url) as s:
        everything = access_log.read(s)
        assert [r.action for r in everything] == ["export", "view", "view"]  # newest first
        assert everything[0].at == now and everything[0].at.tzinfo is not None
        refused = access_log.read(s, person_id="lin.feng")
        assert [(r.incident_id, r.client, r.granted) for r in refused] == [
            ("YQ-1", "10.0.0.2", False)
        ]
        assert [r.person_id for r in access_log.read(s, incident_id="YQ-1")] == [
            "lin.feng",
            "liu.yang",
        ]
        assert len(access_log.read(s, start=now - timedelta(minutes=90), end=now)) == 1
        assert len(access_log.read(s, action="export")) == 1
    assert not any(hasattr(access_log, name) for name in ("update", "delete", "remove", "purge"))

    # Append-only in the database itself: UPDATE and DELETE are refused, whoever sends them.
    for statement in (
        "UPDATE access_log SET person_id = 'nobody'",
        "DELETE FROM access_log WHERE person_id = 'lin.feng'",
        "DELETE FROM access_log",
    ):
        with pytest.raises(DBAPIError, match="append-only"), session_scope(store_url) as s:
            s.execute(text(statement))
    with session_scope(store_url) as s:
        assert len(access_log.read(s)) == 3
        assert {r.person_id for r in access_log.read(s)} == {"liu.yang", "lin.feng"}


# --------------------------------------------------------------------- through the app


@pytest.fixture
def keyed(database_url: str) -> Settings:
    return make_settings(database_url, codec_keys=new_key_entry("k1"))


@pytest.fixture
async def town(
    client: Client, keyed: Settings, roster: Roster, executor: ThreadPoolExecutor
) -> AsyncIterator[Any]:
    from runtime.client import data_converter

    codec_client = Client(**{**client.config(), "data_converter": data_converter(keyed)})
    app = create_app(keyed, client=codec_client, roster=roster)
    async with running_worker(codec_client, keyed, executor):
        yield app


def _http(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_reads_are_logged_and_the_log_is_for_the_office_and_leading_group(
    town: Any, keyed: Settings
) -> None:
    office, staff = token_for(keyed, "liu.yang"), token_for(keyed, "lin.feng")
    async with _http(town) as api, _http(town) as office_pages, _http(town) as staff_pages:
        r = await api.post("/api/incidents", json=submission(title="访问记录测试：东湖村积水"))
        assert r.status_code == 201, r.text
        incident_id = r.json()["id"]

        # What the office reads: the incident by API and page, the list, a report, the CSV,
        # the dashboard, a codec decode.
        assert (await api.get(f"/api/incidents/{incident_id}", headers=office)).status_code == 200
        assert (await api.get("/api/incidents", headers=office)).status_code == 200
        await sign_in(office_pages, keyed, "liu.yang")
        assert (await office_pages.get(f"/incidents/{incident_id}")).status_code == 200
        assert (await office_pages.get("/reports/accountability")).status_code == 200
        csv = await office_pages.get("/reports/accountability.csv")
        assert csv.status_code == 200
        # The Excel exports (issue 19, item 2) are exports too: the report's and the list's.
        for path in ("/reports/accountability.xlsx", "/incidents.xlsx"):
            assert (await office_pages.get(path)).status_code == 200, path
        assert (await office_pages.get("/dashboard")).status_code == 200
        sealed = await api.post("/codec/encode", json={"payloads": [PLAIN]}, headers=office)
        opened = await api.post("/codec/decode", json=sealed.json(), headers=office)
        assert opened.status_code == 200
        # A staff member with no role on it is refused (it does not exist for them: 404, finding
        # 9), and the attempt is logged.
        refused = await api.get(f"/api/incidents/{incident_id}", headers=staff)
        assert refused.status_code == 404
        await sign_in(staff_pages, keyed, "lin.feng")
        assert (await staff_pages.get(f"/incidents/{incident_id}")).status_code == 404

        # The office reads the log by API: who, what, which incident, when, from where.
        got = await api.get("/api/access-log", headers=office, params={"limit": 500})
        assert got.status_code == 200, got.text
        items = got.json()["items"]
        seen = {(i["person_id"], i["action"], i["incident_id"], i["granted"]) for i in items}
        assert {
            ("liu.yang", "view", incident_id, True),
            ("liu.yang", "list", None, True),
            ("liu.yang", "report", None, True),
            ("liu.yang", "export", None, True),
            ("liu.yang", "decode", None, True),
            ("lin.feng", "view", incident_id, False),
        } <= seen, seen
        views = [i for i in items if i["action"] == "view" and i["person_id"] == "liu.yang"]
        assert len(views) == 2  # the API read and the page
        assert {i["resource"] for i in views} == {
            f"/api/incidents/{incident_id}",
            f"/incidents/{incident_id}",
        }
        for i in items:
            assert i["client"] == "127.0.0.1"
            at = datetime.fromisoformat(i["at"])
            assert abs(datetime.now(UTC) - at) < timedelta(minutes=5)
        exported = sorted(i["resource"] for i in items if i["action"] == "export")
        assert [r.split("?")[0] for r in exported] == [
            "/incidents.xlsx",
            "/reports/accountability.csv",
            "/reports/accountability.xlsx",
        ]
        assert next(i for i in items if i["person_id"] == "lin.feng")["person_name"] == "林峰"

        # Filters.
        only = await api.get("/api/access-log", headers=office, params={"person": "lin.feng"})
        assert {(i["person_id"], i["granted"]) for i in only.json()["items"]} == {
            ("lin.feng", False)
        }
        exports = await api.get("/api/access-log", headers=office, params={"action": "export"})
        assert [i["action"] for i in exports.json()["items"]] == ["export"] * 3
        by_incident = await api.get(
            "/api/access-log", headers=office, params={"incident": incident_id}
        )
        assert {i["incident_id"] for i in by_incident.json()["items"]} == {incident_id}
        today = datetime.now(UTC).date()
        future = {"start": (today + timedelta(days=2)).isoformat()}
        assert (await api.get("/api/access-log", headers=office, params=future)).json()[
            "items"
        ] == []
        bad = await api.get("/api/access-log", headers=office, params={"action": "delete"})
        assert bad.status_code == 422 and "类型" in bad.json()["detail"]
        bad = await api.get("/api/access-log", headers=office, params={"start": "x"})
        assert bad.status_code == 422 and "日期格式不正确" in bad.json()["detail"]
        # Reading the log is logged too.
        audits = await api.get("/api/access-log", headers=office, params={"action": "audit"})
        assert audits.json()["items"] and all(
            i["person_id"] == "liu.yang" for i in audits.json()["items"]
        )

        # Nobody else reads it: no token 401, staff 403, and the leading group may.
        assert (await api.get("/api/access-log")).status_code == 401
        denied = await api.get("/api/access-log", headers=staff)
        assert denied.status_code == 403 and "领导小组" in denied.json()["detail"]
        assert (await staff_pages.get("/access-log")).status_code == 403
        async with _http(town) as anonymous:
            r = await anonymous.get("/access-log")
            assert r.status_code == 303 and r.headers["location"].startswith("/login")
        leader = token_for(keyed, "wang.jianguo")
        assert (await api.get("/api/access-log", headers=leader)).status_code == 200

        # The page: zh-CN, filters, one labelled line per field for a phone's width.
        page = await office_pages.get("/access-log", params={"incident": incident_id})
        assert page.status_code == 200, page.text
        assert '<html lang="zh-CN">' in page.text and "访问记录" in page.text
        assert 'name="person"' in page.text and 'name="action"' in page.text
        assert 'name="start"' in page.text and 'name="end"' in page.text
        assert "查看事件" in page.text and "刘洋" in page.text and "拒绝" in page.text
        assert 'data-label="来源地址">127.0.0.1' in page.text
        assert 'class="cards access-log"' in page.text and 'id="nav-access-log"' in page.text
        css = (await office_pages.get("/static/style.css")).text  # tables as cards on a phone
        assert "@media (max-width: 599.98px)" in css and "table.cards td::before" in css
        bad_page = await office_pages.get("/access-log", params={"end": "2026-13-01"})
        assert bad_page.status_code == 422 and "日期格式不正确" in bad_page.text
        staff_home = await staff_pages.get("/incidents")
        assert 'id="nav-access-log"' not in staff_home.text

        # Never editable: no route but GET, and writes are refused.
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            r = await api.request(method, "/api/access-log", headers=office)
            assert r.status_code == 405, (method, r.status_code)
        for route in town.routes:
            if isinstance(route, APIRoute) and "access-log" in route.path:
                assert route.methods <= {"GET", "HEAD"}, route


async def test_the_log_never_slows_or_fails_a_read(
    town: Any, keyed: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from store import access_log

    office = token_for(keyed, "liu.yang")
    async with _http(town) as api:
        r = await api.post("/api/incidents", json=submission(title="写日志失败也不影响查看"))
        incident_id = r.json()["id"]

        # A store that answers slowly: the read does not wait for the log.
        real = access_log.append

        def slow(*args: Any, **kwargs: Any) -> None:
            time.sleep(3)
            real(*args, **kwargs)

        monkeypatch.setattr(access_log, "append", slow)
        started = time.monotonic()
        r = await api.get(f"/api/incidents/{incident_id}", headers=office)
        assert r.status_code == 200 and time.monotonic() - started < 1.5

        # A store that fails: the read is answered, the failure logged.
        def broken(*_: Any, **__: Any) -> None:
            raise RuntimeError("database is locked")

        await asyncio.sleep(4)  # the slow write has finished
        monkeypatch.setattr(access_log, "append", broken)
        with caplog.at_level(logging.ERROR, logger="yuqing.access"):
            r = await api.get(f"/api/incidents/{incident_id}", headers=office)
            assert r.status_code == 200 and r.json()["id"] == incident_id
            await asyncio.sleep(1.0)
        assert any("could not write" in m for m in caplog.messages), caplog.messages

        # Once the store works again, the entries kept are written.
        monkeypatch.undo()
        got = await api.get("/api/access-log", headers=office, params={"incident": incident_id})
        views = [i for i in got.json()["items"] if i["action"] == "view"]
        assert len(views) == 2, views
