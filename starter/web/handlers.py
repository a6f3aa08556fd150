"""The app's exception handlers: what a refusal looks like, on a page (the error page, in Chinese)
and in the API (JSON naming the fields), and the redirect to the sign-in page for a page asked
without a session (deps.SignInRequired)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.routing import Match

from starter.errors import translate_errors
from starter.incidents import ServiceError

from . import limits
from .deps import SignInRequired, to_login
from .pages import pages


def _action_of(request: Request) -> str | None:
    """The staff action a request is for (…/actions/NAME): its fields may be named otherwise."""
    _, found, name = request.url.path.rpartition("/actions/")
    return name if found and name and "/" not in name else None


async def invalid(request: Request, exc: RequestValidationError) -> Response:
    fields = translate_errors(list(exc.errors()), _action_of(request))
    if not request.url.path.startswith("/api/"):  # a page: the error page, in Chinese
        kit = pages(request)
        message = "；".join(f.message for f in fields) or "请求内容有误"
        await kit.auth.current(request)  # the header's signed-in person, asked off the loop
        return kit.render(request, "error.html", {"status": 422, "message": message}, 422)
    body = {"detail": "请求内容有误", "errors": [f.as_dict() for f in fields]}
    return JSONResponse(body, status_code=422)


async def too_large(request: Request, exc: limits.BodyTooLarge) -> Response:
    return await service_error(request, ServiceError(413, str(exc.detail)))


async def service_error(request: Request, exc: ServiceError) -> Response:
    body = {"detail": exc.message, "errors": [f.as_dict() for f in exc.fields]}
    response: Response
    if request.url.path.startswith("/api/"):
        response = JSONResponse(body, status_code=exc.status)
    else:
        kit = pages(request)
        await kit.auth.current(request)  # the header's signed-in person, asked off the loop
        context = {"status": exc.status, "message": exc.message}
        response = kit.render(request, "error.html", context, exc.status)
    if isinstance(exc, limits.RateLimited):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


# Starlette's and FastAPI's own refusals (no such route, a method the path does not take, a body
# it cannot parse, such as one not in UTF-8), said in Chinese in the API's error body.
HTTP_MESSAGES = {
    400: "请求内容无法解析：请求体应为UTF-8编码的JSON",
    404: "接口不存在",
    405: "该地址不支持此请求方法",
}

# The same refusals on a page (anything outside /api/).
PAGE_MESSAGES = {
    400: "请求内容无法解析，请刷新页面后重试",
    404: "页面不存在，请检查地址是否正确",
    405: "该地址不支持此请求方法",
}


def allowed(request: Request) -> str:
    """Every method the path takes. Starlette's 405 names only the first route that matched the
    path (`OPTIONS /api/incidents` answered `Allow: POST`, without the list's GET)."""
    methods: set[str] = set()
    routes = list(request.app.router.routes)
    while routes:
        route = routes.pop()
        # An included router (this app includes them without a prefix): its own routes.
        inner = getattr(route, "original_router", None)
        if inner is not None:
            routes.extend(inner.routes)
            continue
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return ", ".join(sorted(methods))


async def http_error(request: Request, exc: HTTPException) -> Response:
    if exc.status_code == 405:
        exc = HTTPException(
            405, exc.detail, headers={**(exc.headers or {}), "Allow": allowed(request)}
        )
    if not request.url.path.startswith("/api/"):
        message = PAGE_MESSAGES.get(exc.status_code)
        if message is None:
            return await http_exception_handler(request, exc)
        # A page's refusal is a page in Chinese, like every other (issue 18).
        kit = pages(request)
        await kit.auth.current(request)  # the header's signed-in person, asked off the loop
        context = {"status": exc.status_code, "message": message}
        response = kit.render(request, "error.html", context, exc.status_code)
        response.headers.update(exc.headers or {})
        return response
    message = HTTP_MESSAGES.get(exc.status_code, str(exc.detail))
    body = {"detail": message, "errors": []}
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def sign_in_required(request: Request, exc: SignInRequired) -> Response:
    return to_login(exc.target)


# For FastAPI(exception_handlers=...): the exception's class to its handler.
HANDLERS: dict[int | type[Exception], Callable[[Request, Any], Coroutine[Any, Any, Response]]] = {
    RequestValidationError: invalid,
    limits.BodyTooLarge: too_large,
    ServiceError: service_error,
    HTTPException: http_error,
    SignInRequired: sign_in_required,
}
