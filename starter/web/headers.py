"""Security headers on every answer (issue 15, finding 10).

- Content-Security-Policy: this site's own scripts, styles, images and fonts only; no inline script
  or style, no eval, no plugins, no <base>, forms post here only, and no other site may frame a page
  (frame-ancestors 'none'; X-Frame-Options DENY for older browsers). The templates carry no inline
  script, style or event handler (tests/security/test_headers.py keeps it so); the server-side SVG
  charts use presentation attributes, which CSP does not govern. `data:` images are allowed for the
  icons inside Swagger UI's stylesheet.
- X-Content-Type-Options: nosniff.
- Referrer-Policy: same-origin. Not no-referrer: under it a browser sends `Origin: null` with the
  site's own form POSTs, which the Origin check (starter/web/auth.py) rightly refuses.
- Cache-Control: no-store on everything but static files: pages and API answers carry incidents,
  names, reports and CSRF tokens, none of which belongs in a browser's or a proxy's cache.
- Strict-Transport-Security when the site is served over https (YUQING_PUBLIC_URL https://…).

A pure ASGI middleware: it edits the response's start message only, so streamed bodies stay
streamed.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
HSTS = "max-age=31536000"  # a year; no includeSubDomains: other hosts of the town are not ours
CACHEABLE = ("/static/", "/api/docs/assets/")  # public files, nothing confidential


class SecurityHeaders:
    def __init__(self, app: ASGIApp, *, https: bool) -> None:
        self.app = app
        self.https = https

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cacheable = str(scope.get("path", "")).startswith(CACHEABLE)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Content-Security-Policy", CSP)
                headers.setdefault("X-Frame-Options", "DENY")
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "same-origin")
                headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
                headers.setdefault(
                    "Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()"
                )
                if not cacheable:
                    headers["Cache-Control"] = "no-store"
                    headers.setdefault("Pragma", "no-cache")
                if self.https:
                    headers.setdefault("Strict-Transport-Security", HSTS)
            await send(message)

        await self.app(scope, receive, send_with_headers)
