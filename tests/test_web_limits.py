"""Rate limits on the two doors open to anyone: failed sign-ins and anonymous submissions."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
from temporalio.client import Client

from plan.roster import Roster
from starter.web.app import create_app
from starter.web.limits import SlidingWindow
from store import incident_rows
from tests.conftest import make_settings
from tests.helpers import eventually, running_worker, stored, submission
from tests.test_api import csrf_in, token_for
from tests.test_web_auth import bare_token


def test_sliding_window_forgets_old_events() -> None:
    now = [0.0]
    window = SlidingWindow(limit=2, window=60, clock=lambda: now[0])
    window.hit("a")
    window.hit("a")
    assert window.retry_after("a") == 60 and window.retry_after("b") == 0
    now[0] = 30
    assert window.retry_after("a") == 30
    now[0] = 60.5
    assert window.retry_after("a") == 0
    assert SlidingWindow(limit=0, window=60).retry_after("a") == 0  # 0 turns it off


async def test_repeated_failed_sign_ins_are_stopped_per_address(
    client: Client, database_url: str, roster: Roster, executor: ThreadPoolExecutor
) -> None:
    settings = make_settings(database_url, login_failures_allowed=3)
    app = create_app(settings, client=client, roster=roster)
    good = bare_token(settings, "liu.yang")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as http:

        async def attempt(token: str) -> httpx.Response:
            login = await http.get("/login")
            data = {"csrf_token": csrf_in(login.text), "token": token}
            return await http.post("/login", data=data)

        for i in range(3):
            assert (await attempt(f"yq_guess{i}")).status_code == 401
        # Only failures are limited: a valid token still signs in (tests/security/test_tokens.py).
        blocked = await attempt("yq_guess-again")
        assert blocked.status_code == 429
        assert "登录失败过于频繁" in blocked.text and int(blocked.headers["retry-after"]) > 0
        # Another address is not affected (the window is per client): its failure is a 401.
        other = httpx.ASGITransport(app=app, client=("10.0.0.9", 1234))
        async with httpx.AsyncClient(transport=other, base_url="http://test") as elsewhere:
            for token, status in (("yq_guess-elsewhere", 401), (good, 303)):
                login = await elsewhere.get("/login")
                r = await elsewhere.post(
                    "/login", data={"csrf_token": csrf_in(login.text), "token": token}
                )
                assert r.status_code == status


async def test_anonymous_submissions_are_limited_known_senders_are_not(
    client: Client, database_url: str, roster: Roster, executor: ThreadPoolExecutor
) -> None:
    settings = make_settings(database_url, submissions_per_minute=2)
    app = create_app(settings, client=client, roster=roster)
    async with (
        running_worker(client, settings, executor),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http,
    ):
        for i in range(2):
            r = await http.post("/api/incidents", json=submission(title=f"限流测试{i}"))
            assert r.status_code == 201, r.text
        flood = await http.post("/api/incidents", json=submission(title="限流测试：第三条"))
        assert flood.status_code == 429 and "提交过于频繁" in flood.json()["detail"]
        assert "retry-after" in flood.headers
        form = await http.post("/incidents", data={"title": "表单也计入"})
        assert form.status_code == 429
        # A monitoring system with a personal token is known and goes through.
        known = await http.post(
            "/api/leads",
            json=submission(title="限流测试：监测系统"),
            headers=token_for(settings, "zhou.ting"),
        )
        assert known.status_code == 201, known.text

        def titles() -> set[str]:
            return {r.title for r in stored(settings.database_url, incident_rows.list_incidents)}

        await eventually(lambda: {"限流测试0", "限流测试1", "限流测试：监测系统"} <= titles())
        assert "限流测试：第三条" not in titles()
