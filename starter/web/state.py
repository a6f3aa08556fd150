"""The app's state (settings, roster, the Temporal client, the plan, the codec, the limits on the
two doors open to anyone) and the bearer token check: what app.py, deps.py and the routers share,
in a module below them all, so none of them imports app.py."""

from __future__ import annotations

from fastapi import FastAPI
from temporalio.client import Client

from config.settings import Settings
from plan.roster import Roster
from plan.spec import plan_from
from runtime.client import codec_for, connect
from starter.incidents import ServiceError
from store import credentials
from store.db import session_scope

from . import limits


class AppState:
    def __init__(self, settings: Settings, roster: Roster, client: Client | None) -> None:
        self.settings = settings
        self.roster = roster
        self.client = client
        # The plan new incidents start under; the forms and help texts name its periods.
        self.plan = plan_from(settings.plan_file)
        # Read (and checked) once at start-up: the codec endpoint uses it on every UI request.
        self.codec = codec_for(settings)
        # The two doors open to anyone: token guessing and report floods (starter/web/limits.py).
        self.login_failures = limits.SlidingWindow(
            settings.login_failures_allowed, settings.login_window_minutes * 60
        )
        self.submissions = limits.SlidingWindow(settings.submissions_per_minute, 60)

    async def temporal(self) -> Client:
        if self.client is None:
            self.client = await connect(self.settings)
        return self.client


def request_state(app: FastAPI) -> AppState:
    state: AppState = app.state.yuqing
    return state


def authenticate(state: AppState, authorization: str | None) -> str:
    """The roster person behind a bearer token, or 401."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ServiceError(401, "需要登录：请在 Authorization 头中提供 Bearer 令牌")
    with session_scope(state.settings.database_url) as s:
        person = credentials.person_for_token(s, token=token.strip())
    if person is None or state.roster.person(person) is None:
        raise ServiceError(401, "令牌无效、已过期或已吊销")
    return person
