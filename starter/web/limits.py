"""Rate limits for the two doors open to anyone: sign-in (guessing tokens) and submission
(flooding the office with reports). Per client address, in this process's memory: each web process
counts for itself, which is enough to make a flood visible and short-answered. Behind a reverse
proxy run uvicorn with --proxy-headers (and --forwarded-allow-ips) so the address is the client's.

And the cap on request bodies (`BodyLimit`), counted while the body streams in, so a chunked body
without a Content-Length is refused after its first bytes over the cap, never read whole.

At sign-in only failures are limited, valid sign-ins never: colleagues behind one address (a NAT)
do not lock each other out. Wrong tokens from an address over the limit answer 429 and are not
counted further (memory stays bounded). A token carries 256 random bits, so guessing was never
the risk the limit guards against; it keeps a flood of attempts short-answered and visible.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

from fastapi import Request
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from starter.incidents import ServiceError

# Request body caps in bytes, by path. A JSON request (a submission, a staff action) is text, never
# this large; a form carries the same text URL-encoded (a Chinese character is 9 bytes there); the
# codec endpoint carries the Temporal UI's payloads.
MAX_JSON_BODY = 256 * 1024
MAX_FORM_BODY = 1024 * 1024
MAX_CODEC_BODY = 4 * 1024 * 1024


class SlidingWindow:
    """At most `limit` events per key within `window` seconds."""

    def __init__(
        self, limit: int, window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._events: dict[str, deque[float]] = {}

    def _recent(self, key: str) -> deque[float]:
        events = self._events.get(key, deque())
        cutoff = self.clock() - self.window
        while events and events[0] <= cutoff:
            events.popleft()
        if not events:
            self._events.pop(key, None)  # forget quiet clients, so memory stays bounded
        return events

    def retry_after(self, key: str) -> float:
        """Seconds until `key` may act again; 0 when it may now."""
        events = self._recent(key)
        if self.limit <= 0 or len(events) < self.limit:
            return 0.0
        return max(0.0, events[0] + self.window - self.clock())

    def hit(self, key: str) -> None:
        events = self._recent(key)
        events.append(self.clock())
        self._events[key] = events


class RateLimited(ServiceError):
    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(429, message)
        self.retry_after = retry_after


def client_key(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def refuse_if_limited(window: SlidingWindow, request: Request, what: str) -> None:
    """A 429 with the wait in Chinese when the client is over the limit."""
    wait = window.retry_after(client_key(request))
    if wait > 0:
        minutes = max(1, math.ceil(wait / 60))
        raise RateLimited(f"{what}过于频繁，请{minutes}分钟后再试", math.ceil(wait))


class BodyTooLarge(HTTPException):
    """Raised from `receive` when a body passes its cap. An HTTPException, so FastAPI's own body
    reading passes it on (it turns other errors into a 400); the app answers it in Chinese."""

    def __init__(self, limit: int, message: str | None = None) -> None:
        super().__init__(413, message or f"请求内容过大（上限{limit // 1024}KB），请精简后重试")
        self.limit = limit


# An attachment's upload (issue 19): the file's own cap (YUQING_ATTACHMENT_MAX_MB, checked again
# on the file as it is written) and room for the multipart headers and the CSRF field.
MULTIPART_ROOM = 64 * 1024


# Page forms that carry a file of their own (issue 19, item 5): the written report and the
# summary as a document, and the public report form's evidence (all its files together).
UPLOAD_FORMS = ("/actions/file-written-report", "/actions/submit-summary")


REPORT_FORM = "/incidents"  # open to anyone: only a multipart body (with files) gets the cap


def is_upload(path: str) -> bool:
    if path == REPORT_FORM:
        return True
    if path.startswith("/incidents/") and path.endswith(UPLOAD_FORMS):
        return True
    return path.startswith(("/api/incidents/", "/incidents/")) and path.endswith("/attachments")


def caps(attachment_max_mb: int) -> Callable[[str], int]:
    """`body_cap`, with uploads of attachments capped at their own size."""
    upload = attachment_max_mb * 1024 * 1024 + MULTIPART_ROOM

    def cap(path: str) -> int:
        return upload if is_upload(path) else body_cap(path)

    return cap


def body_cap(path: str) -> int:
    if path.startswith("/codec/"):
        return MAX_CODEC_BODY
    if path.startswith("/api/"):
        return MAX_JSON_BODY
    return MAX_FORM_BODY


class BodyLimit:
    """ASGI middleware: counts the bytes of every request body as the app pulls them and raises
    BodyTooLarge at the first chunk past the cap (or at once, unread, when the declared
    Content-Length is past it). Whatever reads the body (request.body(), request.form(), FastAPI's
    body parameters, a multipart parse) reads through it, so no route can be forgotten."""

    def __init__(self, app: ASGIApp, cap: Callable[[str], int] = body_cap) -> None:
        self.app = app
        self.cap = cap

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.cap(scope.get("path", ""))
        declared = _content_length(scope)
        seen = 0

        path = scope.get("path", "")
        message_of = None
        if path == REPORT_FORM and not _multipart(scope):
            limit = min(limit, body_cap(path))  # a report without files: a form's cap
        elif path == REPORT_FORM:
            mb = (limit - MULTIPART_ROOM) // (1024 * 1024)
            message_of = f"请求内容过大（截图或证据文件合计上限{mb}MB），请压缩后重试"
        elif is_upload(path):
            mb = (limit - MULTIPART_ROOM) // (1024 * 1024)
            message_of = f"附件过大（上限{mb}MB），请压缩后重试"

        async def capped() -> Message:
            nonlocal seen
            if declared is not None and declared > limit:
                raise BodyTooLarge(limit, message_of)
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit, message_of)
            return message

        await self.app(scope, capped, send)


def _multipart(scope: Scope) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            return value.lower().startswith(b"multipart/form-data")
    return False


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def count_failure(window: SlidingWindow, request: Request, what: str) -> None:
    """A failed attempt: a 429 when the client is already over the limit, else counted."""
    refuse_if_limited(window, request, what)
    window.hit(client_key(request))
