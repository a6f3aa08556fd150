"""Sign-in for the HTML pages (R-SECRECY enforced by the server).

Staff sign in with their personal token, or with a one-time sign-in link from a message on their
own channel (store/credentials.py; starter/web/login.py: opening it shows a confirm page, only the
confirm's POST uses it), and get a server-side session behind the `yuqing_session`
cookie (HttpOnly, SameSite=Strict, Secure over https); only the session id's SHA-256 is stored. Every
form that POSTs carries a CSRF token, an HMAC of the session id under the server's secret key, and a
POST whose Origin names another host is refused. The JSON API never reads the cookie: it keeps
bearer tokens, so it needs no CSRF token.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import Request, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from config.settings import Settings
from plan.roster import Roster
from starter.incidents import ServiceError
from store import credentials, incident_rows, notifications
from store.db import session_scope

from .visibility import visible_to

SESSION_COOKIE = "yuqing_session"
LOGIN_COOKIE = "yuqing_login"  # a pre-sign-in nonce, so the sign-in form has a CSRF token too
SECRET_FILE = Path("data") / "secret_key"
CSRF_FIELD = "csrf_token"
BADGE_CAP = 100  # the 待办 badge counts this far and then says "99+"

CSRF_REFUSED = "表单安全令牌缺失或无效（CSRF），请刷新页面后重新提交"
ORIGIN_REFUSED = "请求来源与本站不一致，已拒绝（跨站请求）"


def load_secret(settings: Settings, path: Path = SECRET_FILE) -> bytes:
    """YUQING_SECRET_KEY, or a random key generated once and kept in data/secret_key."""
    if settings.secret_key:
        return settings.secret_key.encode()
    if path.exists():
        existing = path.read_text(encoding="utf-8").strip()
        if existing:
            return existing.encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(secrets.token_urlsafe(48))
    try:
        os.link(tmp, path)  # atomic: a second process starting at once keeps the first key
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_text(encoding="utf-8").strip().encode()


@dataclass(frozen=True)
class Viewer:
    """The signed-in person of a request."""

    person_id: str
    name: str
    unit: str
    unit_name: str
    session_id: str
    csrf: str
    # The navigation's badges: what waits for the person (待办) and their unread messages.
    todo: int = 0
    unread: int = 0


class Auth:
    def __init__(self, settings: Settings, roster: Roster) -> None:
        self.settings = settings
        self.roster = roster
        self.secret = load_secret(settings)
        self.secure = settings.public_url.lower().startswith("https")

    # ------------------------------------------------------------ tokens

    def _mac(self, purpose: str, value: str) -> str:
        return hmac.new(self.secret, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()

    def csrf_for(self, session_id: str) -> str:
        return self._mac("csrf", session_id)

    def login_csrf_for(self, nonce: str) -> str:
        return self._mac("login", nonce)

    # ------------------------------------------------------------ who is asking

    async def current(self, request: Request) -> Viewer | None:
        """`viewer`, for a coroutine: the store is asked in the thread pool, never on the event
        loop; the answer is kept in request.state like `viewer`'s."""
        if hasattr(request.state, "viewer"):
            cached: Viewer | None = request.state.viewer
            return cached
        return await run_in_threadpool(self.viewer, request)

    def known(self, request: Request) -> Viewer | None:
        """The viewer this request already looked up (`current` or `viewer`), without asking
        the store: for rendering, after the route or handler has awaited `current`."""
        found: Viewer | None = getattr(request.state, "viewer", None)
        return found

    def viewer(self, request: Request) -> Viewer | None:
        """The person behind the session cookie, looked up once per request. It opens a store
        session: a coroutine awaits `current` instead (or runs this in a thread)."""
        if hasattr(request.state, "viewer"):
            cached: Viewer | None = request.state.viewer
            return cached
        found: Viewer | None = None
        session_id = request.cookies.get(SESSION_COOKIE)
        if session_id and not request.url.path.startswith("/api/"):
            todo = unread = 0
            with session_scope(self.settings.database_url) as s:
                person_id = credentials.person_for_session(s, session_id=session_id)
                person = self.roster.person(person_id) if person_id else None
                if person is not None:
                    todo, unread = self.badges(s, person.id)
            if person is not None:
                found = Viewer(
                    person_id=person.id,
                    name=person.name,
                    unit=person.unit,
                    unit_name=self.roster.unit_name(person.unit),
                    session_id=session_id,
                    csrf=self.csrf_for(session_id),
                    todo=todo,
                    unread=unread,
                )
        request.state.viewer = found
        return found

    def badges(self, s: Session, person_id: str) -> tuple[int, int]:
        """What waits for the person (待办, of the incidents they may see: R-SECRECY) and their
        unread messages: one count query each, for the navigation on every signed-in page."""
        whose = incident_rows.whose(self.roster, person_id)
        involving = visible_to(self.roster, person_id)
        todo = incident_rows.count_waits(s, whose=whose, involving=involving, cap=BADGE_CAP)
        return todo, notifications.unread_count(s, recipient=person_id)

    # ------------------------------------------------------------ checks on POSTs from pages

    def check_origin(self, request: Request) -> None:
        """A browser names the page's origin on every POST; another host's page is refused."""
        origin = request.headers.get("origin")
        if origin is None:
            return
        host = request.headers.get("host", "").lower()
        if origin == "null" or urlsplit(origin).netloc.lower() != host:
            raise ServiceError(403, ORIGIN_REFUSED)

    def check_csrf(self, viewer: Viewer, submitted: str | None) -> None:
        if not submitted or not hmac.compare_digest(submitted, viewer.csrf):
            raise ServiceError(403, CSRF_REFUSED)

    def check_login_csrf(self, request: Request, submitted: str | None) -> None:
        nonce = request.cookies.get(LOGIN_COOKIE)
        if not nonce or not submitted:
            raise ServiceError(403, CSRF_REFUSED)
        if not hmac.compare_digest(submitted, self.login_csrf_for(nonce)):
            raise ServiceError(403, CSRF_REFUSED)

    # ------------------------------------------------------------ cookies

    def set_cookie(self, response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            httponly=True,
            samesite="strict",
            secure=self.secure,
        )

    def clear_cookie(self, response: Response, name: str) -> None:
        response.delete_cookie(name, path="/", httponly=True, samesite="strict", secure=self.secure)

    # ------------------------------------------------------------ sign in and out

    def session_hours(self, remember: bool) -> float:
        """How long a new session lasts: "在此设备上保持登录" chosen, YUQING_SESSION_REMEMBER_DAYS;
        else YUQING_SESSION_HOURS."""
        return self.settings.session_remember_days * 24 if remember else self.settings.session_hours

    def sign_in(self, request: Request, token: str, *, remember: bool = False) -> str | None:
        """A fresh session for the token's person, or None. A session cookie the browser sent
        before is ended, never reused (no session fixation)."""
        with session_scope(self.settings.database_url) as s:
            person_id = credentials.person_for_token(s, token=token)
            if person_id is None or self.roster.person(person_id) is None:
                return None
            return self._new_session(s, request, person_id, remember)

    def _new_session(self, s: Session, request: Request, person_id: str, remember: bool) -> str:
        old = request.cookies.get(SESSION_COOKIE)
        if old:
            credentials.end_session(s, session_id=old)
        return credentials.create_session(
            s, person_id=person_id, hours=self.session_hours(remember)
        )

    def look_at_link(self, token: str) -> credentials.LinkFound | None:
        """What a sign-in link is, without using it (the confirm page a GET shows)."""
        with session_scope(self.settings.database_url) as s:
            return credentials.find_link(s, token=token)

    def sign_in_with_link(
        self, request: Request, token: str, *, remember: bool = False
    ) -> tuple[str, credentials.LinkFound] | credentials.LinkFound | None:
        """Use a live link once: a fresh session for its person, and the link (its incident is
        where to go). Else the link as found (used, expired, revoked: why it was refused), or
        None for an unknown one. A person no longer in the roster is refused before the link
        is used."""
        with session_scope(self.settings.database_url) as s:
            found = credentials.find_link(s, token=token)
            if found is None or found.state != "live":
                return found
            if self.roster.person(found.person_id) is None:
                return credentials.LinkFound(found.person_id, found.incident_id, "revoked")
            used = credentials.use_link(s, token=token)
            if used is None:  # used (or revoked) by another request in the meantime
                return credentials.find_link(s, token=token)
            return self._new_session(s, request, used.person_id, remember), used

    def sign_out(self, request: Request) -> None:
        session_id = request.cookies.get(SESSION_COOKIE)
        if session_id:
            with session_scope(self.settings.database_url) as s:
                credentials.end_session(s, session_id=session_id)


def safe_next(target: str | None, default: str = "/incidents") -> str:
    """Only a path on this site: never another host (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target
