"""Signing in and out of the pages (starter/web/auth.py): the sign-in form, the sign-in with a
personal token (failures rate-limited, starter/web/limits.py), the one-time sign-in links in
messages, and signing out.

A link (/signin/<token>, minted by the `deliver` activity) is opened first by GET, which only
shows whom it signs in and where it leads: chat apps and mail scanners open links to preview them,
so a GET never uses one. The confirm page's POST carries the link token itself: that token is the
proof a cross-site form cannot forge (it would have to know it), and a browser's Origin of another
site is refused besides. The POST uses the link once and leads to its incident's page only,
whatever else the form says. Both sign-ins offer "在此设备上保持登录": a longer session, by choice.
"""

from __future__ import annotations

import secrets
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from store.credentials import LinkFound

from . import limits
from .auth import CSRF_FIELD, LOGIN_COOKIE, SESSION_COOKIE, safe_next
from .deps import MaybeViewer, PagesDep
from .pages import Pages

router = APIRouter(include_in_schema=False)  # pages: not the JSON API (issue 17)


@router.get("/login", response_class=HTMLResponse)
async def login_page(
    request: Request, kit: PagesDep, _: MaybeViewer, next: str | None = None
) -> Response:
    return login_form(kit, request, safe_next(next), error=None, status_code=200)


def login_form(
    kit: Pages, request: Request, target: str, *, error: str | None, status_code: int
) -> Response:
    nonce = secrets.token_urlsafe(32)
    response = kit.render(
        request,
        "login.html",
        {
            "next": target,
            "login_csrf": kit.auth.login_csrf_for(nonce),
            "error": error,
            "remember_days": f"{kit.settings.session_remember_days:g}",
        },
        status_code,
    )
    kit.auth.set_cookie(response, LOGIN_COOKIE, nonce, max_age=3600)
    return response


@router.post("/login", response_class=HTMLResponse)
async def login_submit(request: Request, kit: PagesDep, _: MaybeViewer) -> Response:
    auth = kit.auth
    auth.check_origin(request)
    values = {k: str(v) for k, v in (await request.form()).items()}
    auth.check_login_csrf(request, values.get(CSRF_FIELD))
    target = safe_next(values.get("next"))
    remember = values.get("remember") == "on"
    session_id = await run_in_threadpool(
        lambda: auth.sign_in(request, values.get("token", "").strip(), remember=remember)
    )
    if session_id is None:
        # Failures are limited, valid sign-ins never: staff behind one address (a NAT) do
        # not lock each other out (issue 15, finding 11; starter/web/limits.py).
        limits.count_failure(kit.state.login_failures, request, "登录失败")
        return login_form(
            kit, request, target, error="令牌无效、已过期或已吊销，请核对后重试", status_code=401
        )
    response = RedirectResponse(target, status_code=303)
    hours = auth.session_hours(remember)
    auth.set_cookie(response, SESSION_COOKIE, session_id, max_age=int(hours * 3600))
    auth.clear_cookie(response, LOGIN_COOKIE)
    return response


# --- one-time sign-in links ---

LINK_REFUSED = {
    "used": "此登录链接已使用过：每个登录链接只能登录一次。",
    "expired": "此登录链接已过期。",
    "revoked": "此登录链接已被吊销。",
}
LINK_UNKNOWN = "登录链接无效，请核对链接是否完整（可能被截断）。"


def link_page(
    kit: Pages, request: Request, token: str, found: LinkFound | None, *, status_code: int = 200
) -> Response:
    """The confirm page of a live link; else why it is refused (410 for a link that was good,
    404 for one that never was)."""
    error = None
    if found is None:
        error, status_code = LINK_UNKNOWN, 404
    elif found.state != "live":
        error, status_code = LINK_REFUSED[found.state], 410
    person = kit.roster.person(found.person_id) if found else None
    return kit.render(
        request,
        "signin_link.html",
        {
            "token": token if error is None else "",
            "person": person,
            "incident_id": found.incident_id if found else "",
            "error": error,
            "remember_days": f"{kit.settings.session_remember_days:g}",
        },
        status_code,
    )


@router.get("/signin/{token}", response_class=HTMLResponse)
async def open_link(request: Request, kit: PagesDep, _: MaybeViewer, token: str) -> Response:
    found = await run_in_threadpool(kit.auth.look_at_link, token)
    if found is None:
        limits.count_failure(kit.state.login_failures, request, "登录失败")
    return link_page(kit, request, token, found)


@router.post("/signin", response_class=HTMLResponse)
async def confirm_link(request: Request, kit: PagesDep, _: MaybeViewer) -> Response:
    auth = kit.auth
    auth.check_origin(request)
    values = {k: str(v) for k, v in (await request.form()).items()}
    token = values.get("token", "").strip()
    remember = values.get("remember") == "on"
    result = await run_in_threadpool(
        lambda: auth.sign_in_with_link(request, token, remember=remember) if token else None
    )
    if not isinstance(result, tuple):
        if result is None:
            limits.count_failure(kit.state.login_failures, request, "登录失败")
        return link_page(kit, request, token, result)
    session_id, link = result
    # Only the link's incident: never a `next` the form may carry.
    response = RedirectResponse(f"/incidents/{quote(link.incident_id, safe='')}", status_code=303)
    hours = auth.session_hours(remember)
    auth.set_cookie(response, SESSION_COOKIE, session_id, max_age=int(hours * 3600))
    return response


@router.post("/logout")
async def logout(request: Request, kit: PagesDep, me: MaybeViewer) -> Response:
    auth = kit.auth
    auth.check_origin(request)
    values = {k: str(v) for k, v in (await request.form()).items()}
    if me is not None:
        auth.check_csrf(me, values.get(CSRF_FIELD))
        await run_in_threadpool(auth.sign_out, request)
    response = RedirectResponse("/login", status_code=303)
    auth.clear_cookie(response, SESSION_COOKIE)
    return response
