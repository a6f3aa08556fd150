"""Issue 15, finding 11: failed sign-ins are limited, valid ones never (staff behind one NAT must not
lock each other out), and personal tokens expire: a default from the settings or
`yuqing token create --expires-days N`, refused on the API and at sign-in once past, shown by
`yuqing token list`, and given to tokens that existed before the migration."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import insert, select, update
from temporalio.client import Client
from typer.testing import CliRunner

from config.settings import Settings, get_settings
from plan.roster import Roster
from starter.cli import app as cli_app
from starter.web.app import create_app
from store import credentials
from store.db import session_scope
from store.migrate import upgrade
from store.models import ApiToken
from tests.conftest import EXAMPLE_ROSTER, make_settings
from tests.test_api import csrf_in


async def attempt(http: httpx.AsyncClient, token: str) -> httpx.Response:
    login = await http.get("/login")
    return await http.post("/login", data={"csrf_token": csrf_in(login.text), "token": token})


def new_token(settings: Settings, person: str, **kwargs: object) -> str:
    with session_scope(settings.database_url) as s:
        return credentials.create_token(s, person_id=person, **kwargs)  # type: ignore[arg-type]


async def test_failed_sign_ins_are_limited_valid_ones_never(
    client: Client, database_url: str, roster: Roster
) -> None:
    settings = make_settings(database_url, login_failures_allowed=3)
    app = create_app(settings, client=client, roster=roster)
    transport = httpx.ASGITransport(app=app)  # every request from one address (one NAT)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        for i in range(3):
            assert (await attempt(http, f"yq_guess{i}")).status_code == 401
        locked = await attempt(http, "yq_guess-again")
        assert locked.status_code == 429 and "登录失败过于频繁" in locked.text
        assert int(locked.headers["retry-after"]) > 0

        # A colleague behind the same address signs in with a valid token.
        colleague = await attempt(http, new_token(settings, "lin.feng"))
        assert colleague.status_code == 303, colleague.text
        http.cookies.clear()
        # Wrong tokens stay refused as too many while the window lasts.
        assert (await attempt(http, "yq_guess-more")).status_code == 429
        assert (await attempt(http, new_token(settings, "liu.yang"))).status_code == 303


async def test_an_expired_token_is_refused_on_the_api_and_at_sign_in(
    client: Client, settings: Settings, roster: Roster
) -> None:
    app = create_app(settings, client=client, roster=roster)
    fresh = new_token(settings, "liu.yang", days=30)
    old = new_token(settings, "liu.yang", days=30)
    with session_scope(settings.database_url) as s:
        rows = {r.id: r for r in s.scalars(select(ApiToken))}
        assert len(rows) == 2
        for row in rows.values():
            left = row.expires_at - datetime.now(UTC)
            assert timedelta(days=29, hours=23) < left <= timedelta(days=30)
        s.execute(
            update(ApiToken)
            .where(ApiToken.id == max(rows))
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    with session_scope(settings.database_url) as s:
        assert credentials.person_for_token(s, token=fresh) == "liu.yang"
        assert credentials.person_for_token(s, token=old) is None

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        ok = await http.get("/api/incidents", headers={"Authorization": f"Bearer {fresh}"})
        assert ok.status_code == 200, ok.text
        expired = await http.get("/api/incidents", headers={"Authorization": f"Bearer {old}"})
        assert expired.status_code == 401 and "已过期" in expired.json()["detail"]
        refused = await attempt(http, old)
        assert refused.status_code == 401 and "已过期" in refused.text
        assert (await attempt(http, fresh)).status_code == 303


def test_default_expiry_from_settings_and_the_cli(database_url: str) -> None:
    env = {
        "YUQING_DATABASE_URL": database_url,
        "YUQING_ROSTER_FILE": str(EXAMPLE_ROSTER),
        "YUQING_TOKEN": "",
        "YUQING_TOKEN_DAYS": "90",
    }
    runner = CliRunner()
    get_settings.cache_clear()
    try:
        default = runner.invoke(cli_app, ["token", "create", "lin.feng"], env=env)
        assert default.exit_code == 0, default.output
        short = runner.invoke(
            cli_app, ["token", "create", "liu.yang", "--expires-days", "7"], env=env
        )
        assert short.exit_code == 0, short.output
        assert "有效期至" in short.output  # said once, on stderr: stdout is the token alone
        token = short.stdout.strip()
        assert token.startswith("yq_") and "\n" not in token
        for bad in ("0", "-1", "3651"):
            refused = runner.invoke(
                cli_app, ["token", "create", "liu.yang", "--expires-days", bad], env=env
            )
            assert refused.exit_code != 0, bad

        now = datetime.now(UTC)
        with session_scope(database_url) as s:
            rows = {r.person_id: r for r in s.scalars(select(ApiToken))}
            assert credentials.person_for_token(s, token=token) == "liu.yang"
        assert abs(rows["lin.feng"].expires_at - (now + timedelta(days=90))) < timedelta(minutes=5)
        assert abs(rows["liu.yang"].expires_at - (now + timedelta(days=7))) < timedelta(minutes=5)

        with session_scope(database_url) as s:
            s.execute(
                update(ApiToken)
                .where(ApiToken.person_id == "lin.feng")
                .values(expires_at=now - timedelta(days=1))
            )
        listed = runner.invoke(cli_app, ["token", "list"], env=env)
        assert listed.exit_code == 0, listed.output
        lines = listed.output.strip().splitlines()
        assert lines[0].split("\t")[:5] == ["编号", "人员", "创建时间", "到期时间", "状态"]
        liu = next(line for line in lines if "liu.yang" in line)
        lin = next(line for line in lines if "lin.feng" in line)
        until = (now + timedelta(days=7)).astimezone(ZoneInfo("Asia/Shanghai"))
        assert until.strftime("%Y-%m-%d") in liu
        assert "有效" in liu and "已过期" in lin
    finally:
        get_settings.cache_clear()


def test_the_migration_gives_existing_tokens_an_expiry(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0006")
    from store.db import make_engine

    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(ApiToken.__table__).values(  # type: ignore[arg-type]
                    person_id="liu.yang",
                    token_hash="0" * 64,
                    label=None,
                    created_at=datetime(2025, 1, 1, tzinfo=UTC),
                )
            )
    finally:
        engine.dispose()
    upgrade(url)
    with session_scope(url) as s:
        row = s.scalars(select(ApiToken)).one()
        assert row.expires_at is not None
        left = row.expires_at - datetime.now(UTC)
        # A grace period from the upgrade on, never an expiry in the past that locks staff out.
        assert timedelta(days=179) < left <= timedelta(days=180)


@pytest.mark.parametrize("days", [0, -5])
def test_the_store_refuses_a_token_without_a_future(database_url: str, days: int) -> None:
    with session_scope(database_url) as s, pytest.raises(ValueError):
        credentials.create_token(s, person_id="liu.yang", days=days)
