"""Issue 18, item 8: one-time sign-in links on the pages. A link (minted by the `deliver` activity,
tests/test_channels.py) opens a confirm page only; the confirm, a POST carrying the link token,
signs in its person, once, and leads to its incident only. Refused after use, expiry or
revocation. "在此设备上保持登录" keeps a session longer, on the link's page and the sign-in page."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from config.settings import Settings
from plan.roster import Roster
from starter.cli import app as cli_app
from starter.web.app import create_app
from starter.web.auth import SESSION_COOKIE
from store import credentials
from store.db import session_scope
from store.models import SignInLink, WebSession
from tests.conftest import make_settings
from tests.test_api import csrf_in, sign_in, token_for


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture
async def http(settings: Settings, roster: Roster) -> AsyncIterator[httpx.AsyncClient]:
    async with browser(settings, roster) as c:
        yield c


def browser(settings: Settings, roster: Roster) -> httpx.AsyncClient:
    """Another device: its own cookies, the same app and store."""
    app = create_app(settings, roster=roster)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def link_for(settings: Settings, person: str, incident: str = "yq-1130-a", **kw: float) -> str:
    with session_scope(settings.database_url) as s:
        return credentials.create_link(s, person_id=person, incident_id=incident, **kw)


def cli(settings: Settings, *args: str) -> str:
    from config.settings import get_settings

    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(
            cli_app, list(args), env={"YUQING_DATABASE_URL": settings.database_url}
        )
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    return result.output


def state_of(settings: Settings, token: str) -> str | None:
    with session_scope(settings.database_url) as s:
        found = credentials.find_link(s, token=token)
    return found.state if found else None


async def confirm(http: httpx.AsyncClient, token: str, **extra: str) -> httpx.Response:
    return await http.post("/signin", data={"token": token, **extra})


def session_rows(settings: Settings) -> list[WebSession]:
    with session_scope(settings.database_url) as s:
        return list(s.scalars(select(WebSession).order_by(WebSession.id)))


async def test_opening_a_link_shows_a_confirm_page_and_neither_signs_in_nor_uses_it(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    """Chat apps open links to preview them: the GET only shows who and where."""
    token = link_for(settings, "liu.yang")
    for _ in range(3):
        page = await http.get(f"/signin/{token}")
        assert page.status_code == 200
        assert "以刘洋的身份登录并查看事件" in page.text
        assert 'action="/signin"' in page.text and 'method="post"' in page.text
        assert f'name="token" value="{token}"' in page.text
        assert "在此设备上保持登录" in page.text
        assert SESSION_COOKIE not in http.cookies
    assert state_of(settings, token) == "live"
    assert session_rows(settings) == []
    assert (await http.get("/incidents")).status_code == 303  # not signed in


async def test_the_confirm_signs_in_once_and_leads_to_that_incident_only(
    http: httpx.AsyncClient, settings: Settings, roster: Roster
) -> None:
    token = link_for(settings, "liu.yang", "yq-1130-a")
    r = await confirm(http, token, next="https://evil.example/", incident="yq-other")
    assert r.status_code == 303 and r.headers["location"] == "/incidents/yq-1130-a"
    assert SESSION_COOKIE in http.cookies
    page = await http.get("/incidents")
    assert page.status_code == 200 and "刘洋" in page.text
    (row,) = session_rows(settings)
    assert row.person_id == "liu.yang"
    assert row.expires_at - row.created_at == timedelta(hours=12)  # the default session
    assert state_of(settings, token) == "used"

    # A second use, on another device or the same, is refused with a clear message.
    async with browser(settings, roster) as other:
        again = await confirm(other, token)
        assert again.status_code == 410 and "此登录链接已使用过" in again.text
        assert SESSION_COOKIE not in other.cookies
        shown = await other.get(f"/signin/{token}")
        assert shown.status_code == 410 and "此登录链接已使用过" in shown.text
        assert 'action="/signin"' not in shown.text
    assert len(session_rows(settings)) == 1


async def test_a_link_signs_in_only_its_person_and_leaves_others_sessions(
    http: httpx.AsyncClient, settings: Settings, roster: Roster
) -> None:
    await sign_in(http, settings, "lin.feng")
    theirs = http.cookies[SESSION_COOKIE]
    async with browser(settings, roster) as phone:
        r = await confirm(phone, link_for(settings, "liu.yang"))
        assert r.status_code == 303
        assert "刘洋" in (await phone.get("/incidents")).text
    # lin.feng's own session is untouched.
    assert http.cookies[SESSION_COOKIE] == theirs
    page = await http.get("/incidents")
    assert page.status_code == 200 and "林峰" in page.text and "刘洋" not in page.text
    assert {r.person_id for r in session_rows(settings) if r.revoked_at is None} == {
        "lin.feng",
        "liu.yang",
    }


async def test_expired_revoked_and_unknown_links_are_refused(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    expired = link_for(settings, "liu.yang")
    with session_scope(settings.database_url) as s:
        s.execute(
            update(SignInLink)
            .where(SignInLink.person_id == "liu.yang")
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    revoked = link_for(settings, "liu.yang")
    assert "已吊销1个登录链接" in cli(settings, "link", "revoke", "liu.yang")
    for token, status, words in (
        (expired, 410, "此登录链接已过期"),
        (revoked, 410, "此登录链接已被吊销"),
        ("yql_not-a-link", 404, "登录链接无效"),
    ):
        shown = await http.get(f"/signin/{token}")
        assert shown.status_code == status and words in shown.text
        assert 'action="/signin"' not in shown.text
        r = await confirm(http, token)
        assert r.status_code == status and words in r.text
        assert SESSION_COOKIE not in http.cookies
        assert "个人令牌" in r.text  # how else to get in
    assert session_rows(settings) == []


async def test_revoking_a_persons_tokens_revokes_their_links(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    token = link_for(settings, "liu.yang")
    mine = link_for(settings, "lin.feng")
    cli(settings, "token", "revoke", "liu.yang")
    r = await confirm(http, token)
    assert r.status_code == 410 and "此登录链接已被吊销" in r.text
    assert state_of(settings, mine) == "live"


async def test_a_cross_site_confirm_is_refused(http: httpx.AsyncClient, settings: Settings) -> None:
    """The link token in the body is the proof (a forged form cannot know it); a browser's
    Origin of another site is refused besides, and the link stays unused."""
    token = link_for(settings, "liu.yang")
    r = await http.post(
        "/signin", data={"token": token}, headers={"origin": "https://evil.example"}
    )
    assert r.status_code == 403
    assert state_of(settings, token) == "live"
    assert (await http.post("/signin", data={})).status_code == 404


def max_age(response: httpx.Response) -> int:
    cookie = next(c for c in response.headers.get_list("set-cookie") if SESSION_COOKIE in c)
    found = re.search(r"max-age=(\d+)", cookie, re.IGNORECASE)
    assert found
    return int(found.group(1))


async def test_keep_me_signed_in_on_this_device(
    http: httpx.AsyncClient, settings: Settings, roster: Roster
) -> None:
    """By choice, on the link's confirm and on the sign-in page: a 30-day session."""
    r = await confirm(http, link_for(settings, "liu.yang"), remember="on")
    assert r.status_code == 303 and max_age(r) == 30 * 24 * 3600
    async with browser(settings, roster) as other:
        login = await other.get("/login")
        assert "在此设备上保持登录" in login.text
        bearer = token_for(settings, "lin.feng")["Authorization"].removeprefix("Bearer ")
        r2 = await other.post(
            "/login", data={"csrf_token": csrf_in(login.text), "token": bearer, "remember": "on"}
        )
        assert r2.status_code == 303 and max_age(r2) == 30 * 24 * 3600
    days = sorted(r.expires_at - r.created_at for r in session_rows(settings))
    assert days == [timedelta(days=30), timedelta(days=30)]


async def test_the_sign_in_page_says_how_to_get_in_without_a_command(
    http: httpx.AsyncClient,
) -> None:
    page = await http.get("/login")
    assert "yuqing token" not in page.text and "<code>" not in page.text
    assert "登录链接" in page.text and "个人令牌" in page.text
