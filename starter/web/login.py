"""Signing in and out of the pages (starter/web/auth.py): the sign-in form, the sign-in with a
personal token (failures rate-limited, starter/web/limits.py) and signing out."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

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
        {"next": target, "login_csrf": kit.auth.login_csrf_for(nonce), "error": error},
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
    session_id = await run_in_threadpool(auth.sign_in, request, values.get("token", "").strip())
    if session_id is None:
        # Failures are limited, valid sign-ins never: staff behind one address (a NAT) do
        # not lock each other out (issue 15, finding 11; starter/web/limits.py).
        limits.count_failure(kit.state.login_failures, request, "登录失败")
        return login_form(
            kit, request, target, error="令牌无效、已过期或已吊销，请核对后重试", status_code=401
        )
    response = RedirectResponse(target, status_code=303)
    hours = kit.settings.session_hours
    auth.set_cookie(response, SESSION_COOKIE, session_id, max_age=int(hours * 3600))
    auth.clear_cookie(response, LOGIN_COOKIE)
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
