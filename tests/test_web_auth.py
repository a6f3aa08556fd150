"""Sign-in, sessions, CSRF and R-SECRECY on the HTML pages, over ASGI against the time-skipping
server and a real database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import update
from temporalio.client import Client
from typer.testing import CliRunner

from config.settings import Settings
from plan.roster import Roster
from starter.cli import app as cli_app
from starter.web.app import create_app
from starter.web.auth import SESSION_COOKIE, safe_next
from store import credentials, incident_rows
from store.db import session_scope
from store.models import WebSession, utcnow
from tests.conftest import EXAMPLE_ROSTER, make_settings
from tests.helpers import app_over_asgi, eventually, submission
from tests.test_api import csrf_in, sign_in, token_for


@pytest.fixture
async def http(
    client: Client, settings: Settings, roster: Roster, executor: ThreadPoolExecutor
) -> AsyncIterator[httpx.AsyncClient]:
    async with app_over_asgi(client, settings, roster, executor) as c:
        yield c


def bare_token(settings: Settings, person: str) -> str:
    return token_for(settings, person)["Authorization"].removeprefix("Bearer ")


async def post_login(http: httpx.AsyncClient, token: str) -> httpx.Response:
    login = await http.get("/login")
    assert login.status_code == 200 and "个人令牌" in login.text
    return await http.post("/login", data={"csrf_token": csrf_in(login.text), "token": token})


async def test_sign_in_with_a_good_and_a_bad_token(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    r = await post_login(http, "yq_not-a-token")
    assert r.status_code == 401 and "令牌无效、已过期或已吊销" in r.text
    assert SESSION_COOKIE not in http.cookies
    assert (await http.get("/incidents")).status_code == 303

    r = await post_login(http, bare_token(settings, "liu.yang"))
    assert r.status_code == 303 and r.headers["location"] == "/incidents"
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE))
    flags = [part.strip().lower() for part in cookie.split(";")]
    assert "httponly" in flags and "samesite=strict" in flags and "path=/" in flags
    assert "secure" not in flags  # public_url is http here
    page = await http.get("/incidents")
    assert page.status_code == 200
    assert "刘洋" in page.text
    assert "舆情应急处置工作领导小组办公室" in page.text and "退出" in page.text
    # The stored row has only the hash of the session id.
    with session_scope(settings.database_url) as s:
        rows = s.query(WebSession).all()
        assert len(rows) == 1 and rows[0].person_id == "liu.yang"
        assert rows[0].session_hash != http.cookies[SESSION_COOKIE]
        assert rows[0].expires_at - rows[0].created_at == timedelta(hours=12)


async def test_sign_in_form_needs_its_csrf_token_and_the_cookie_is_secure_over_https(
    database_url: str, roster: Roster
) -> None:
    app = create_app(
        make_settings(database_url, public_url="https://yq.example.gov.cn"), roster=roster
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://test") as http:
        settings = make_settings(database_url)
        token = bare_token(settings, "liu.yang")
        r = await http.post("/login", data={"token": token})
        assert r.status_code == 403 and "CSRF" in r.text
        r = await post_login(http, token)
        assert r.status_code == 303
        cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE))
        assert "secure" in [part.strip().lower() for part in cookie.split(";")]


async def test_no_session_fixation(http: httpx.AsyncClient, settings: Settings) -> None:
    planted = "attacker-chosen-session-id"
    http.cookies.set(SESSION_COOKIE, planted, domain="test.local")
    assert (await post_login(http, bare_token(settings, "liu.yang"))).status_code == 303
    first = http.cookies[SESSION_COOKIE]
    assert first != planted
    # Signing in again gives a fresh id and ends the one the browser sent.
    assert (await post_login(http, bare_token(settings, "liu.yang"))).status_code == 303
    second = http.cookies[SESSION_COOKIE]
    assert second != first
    http.cookies.clear()
    http.cookies.set(SESSION_COOKIE, first, domain="test.local")
    assert (await http.get("/incidents")).status_code == 303
    http.cookies.clear()
    http.cookies.set(SESSION_COOKIE, second, domain="test.local")
    assert (await http.get("/incidents")).status_code == 200


async def test_logout_ends_the_session(http: httpx.AsyncClient, settings: Settings) -> None:
    csrf = await sign_in(http, settings, "lin.feng")
    session_id = http.cookies[SESSION_COOKIE]
    assert (await http.post("/logout")).status_code == 403  # no CSRF token
    r = await http.post("/logout", data={"csrf_token": csrf})
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert SESSION_COOKIE not in http.cookies
    home = await http.get("/")
    assert "登录" in home.text and "退出" not in home.text
    http.cookies.set(SESSION_COOKIE, session_id, domain="test.local")
    assert (await http.get("/incidents")).status_code == 303  # the old value is useless


async def test_revoking_tokens_ends_sessions(http: httpx.AsyncClient, settings: Settings) -> None:
    await sign_in(http, settings, "lin.feng")
    assert (await http.get("/incidents")).status_code == 200
    with session_scope(settings.database_url) as s:
        assert credentials.revoke_tokens(s, person_id="lin.feng") >= 1
    r = await http.get("/incidents")
    assert r.status_code == 303 and r.headers["location"].startswith("/login")


async def test_an_expired_session_goes_back_to_sign_in(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    await sign_in(http, settings, "liu.yang")
    with session_scope(settings.database_url) as s:
        s.execute(update(WebSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    r = await http.get("/incidents", params={"phase": "triage"})
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=%2Fincidents%3Fphase%3Dtriage"
    login = await http.get(r.headers["location"])
    assert 'name="next" value="/incidents?phase=triage"' in login.text


def test_next_stays_on_this_site() -> None:
    assert safe_next("/incidents/YQ-1") == "/incidents/YQ-1"
    for evil in ("https://evil.example/", "//evil.example/", "/\\evil.example", None, ""):
        assert safe_next(evil) == "/incidents"


def _form(key: str, **extra: str) -> dict[str, str]:
    data = submission()
    return {
        "submission_key": key,
        "title": data["title"],
        "content": data["content"],
        "source": data["source"],
        "discovered_at": "",
        "reporter_unit": "cjb",
        **extra,
    }


async def test_csrf_and_origin_on_the_submission_form(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    now = datetime.now(UTC).astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%dT%H:%M")
    # Anonymous monitoring staff may report, but not from another site's page.
    r = await http.post(
        "/incidents",
        data=_form("a" * 32, discovered_at=now),
        headers={"origin": "https://evil.example"},
    )
    assert r.status_code == 403 and "跨站" in r.text

    csrf = await sign_in(http, settings, "lin.feng")
    page = await http.get("/")
    assert '<option value="cjb" selected>' in page.text  # reporter unit defaults to the person's
    assert "林峰" in page.text and "村镇建设办" in page.text
    r = await http.post("/incidents", data=_form("b" * 32, discovered_at=now))
    assert r.status_code == 403 and "CSRF" in r.text
    r = await http.post("/incidents", data=_form("c" * 32, discovered_at=now, csrf_token="x" * 64))
    assert r.status_code == 403
    r = await http.post(
        "/incidents",
        data=_form("d" * 32, discovered_at=now, csrf_token=csrf),
        headers={"origin": "https://evil.example"},
    )
    assert r.status_code == 403 and "跨站" in r.text
    with session_scope(settings.database_url) as s:
        assert list(incident_rows.list_incidents(s)) == []
    r = await http.post(
        "/incidents",
        data=_form("e" * 32, discovered_at=now, csrf_token=csrf),
        headers={"origin": "http://test"},
    )
    assert r.status_code == 303 and r.headers["location"].startswith("/incidents/YQ-")


async def test_pages_show_only_what_the_role_may_see(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    """R-SECRECY on the pages: the office sees all, a unit only its own, for others the incident
    does not exist (404, as an unknown id)."""
    monitor = token_for(settings, "zhou.ting")  # the office's monitoring officer: believed
    cjb = (
        await http.post("/api/incidents", json=submission(responsible_unit="cjb"), headers=monitor)
    ).json()["id"]
    yjb = (
        await http.post(
            "/api/incidents",
            json=submission(responsible_unit="yjb", url="https://weibo.example/post/2"),
            headers=monitor,
        )
    ).json()["id"]

    def recorded() -> bool:
        with session_scope(settings.database_url) as s:
            return {i.id for i in incident_rows.list_incidents(s)} == {cjb, yjb}

    await eventually(recorded)

    assert (await http.get(f"/incidents/{cjb}")).status_code == 303
    await sign_in(http, settings, "liu.yang")
    listing = (await http.get("/incidents")).text
    assert cjb in listing and yjb in listing
    assert (await http.get(f"/incidents/{yjb}")).status_code == 200

    http.cookies.clear()
    await sign_in(http, settings, "lin.feng")
    listing = (await http.get("/incidents")).text
    assert cjb in listing and yjb not in listing
    assert (await http.get(f"/incidents/{cjb}")).status_code == 200
    denied = await http.get(f"/incidents/{yjb}")
    assert denied.status_code == 404 and "不存在" in denied.text

    http.cookies.clear()
    await sign_in(http, settings, "xu.lei")
    listing = (await http.get("/incidents")).text
    assert cjb not in listing and yjb not in listing
    denied = await http.get(f"/incidents/{cjb}")
    assert denied.status_code == 404 and "不存在" in denied.text
    assert "徐磊" in denied.text  # the header still shows who is signed in


def test_cli_token_list(database_url: str) -> None:
    from config.settings import get_settings

    env = {
        "YUQING_DATABASE_URL": database_url,
        "YUQING_ROSTER_FILE": str(EXAMPLE_ROSTER),
        "YUQING_TOKEN": "",
    }
    runner = CliRunner()
    get_settings.cache_clear()
    try:
        assert runner.invoke(cli_app, ["token", "list"], env=env).output.strip() == "暂无令牌"
        token = runner.invoke(cli_app, ["token", "create", "lin.feng"], env=env).stdout.strip()
        runner.invoke(cli_app, ["token", "create", "liu.yang"], env=env)
        runner.invoke(cli_app, ["token", "revoke", "liu.yang"], env=env)
        listed = runner.invoke(cli_app, ["token", "list"], env=env)
        assert listed.exit_code == 0, listed.output
        lines = listed.output.strip().splitlines()
        assert lines[0].split("\t")[:5] == ["编号", "人员", "创建时间", "到期时间", "状态"]
        assert "liu.yang（刘洋）" in lines[1] and "已吊销" in lines[1]
        assert "lin.feng（林峰）" in lines[2] and "有效" in lines[2]
        assert token not in listed.output  # the token itself is never shown
    finally:
        get_settings.cache_clear()
