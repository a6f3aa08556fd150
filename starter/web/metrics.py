"""Request latencies of the web app for Prometheus: `yuqing_web_request_duration_seconds`, a
histogram by method, route template (`/api/incidents/{incident_id}`, never the id asked for;
`unmatched` for a path no route has) and status. Served on YUQING_WEB_METRICS_BIND
(`GET /metrics`, a bind of its own like the worker's YUQING_METRICS_BIND), not on the app's port.
"""

from __future__ import annotations

import time

from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runtime.observability import Histogram

NAME = "yuqing_web_request_duration_seconds"


def request_latency() -> Histogram:
    return Histogram(
        NAME,
        "Web app request latency in seconds, by method, route template and status",
        ("method", "route", "status"),
    )


class RequestMetrics:
    """ASGI middleware (outermost): times each HTTP request until its response is sent."""

    def __init__(self, app: ASGIApp, *, histogram: Histogram) -> None:
        self.app = app
        self.histogram = histogram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception before the response starts

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.histogram.observe(
                (scope["method"], route_of(scope), str(status)), time.perf_counter() - started
            )


def route_of(scope: Scope) -> str:
    """The matched route's template (the router sets it on the shared scope), a mount's path
    (`/static`), or `unmatched`."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    app = scope.get("app")
    for candidate in getattr(getattr(app, "router", None), "routes", ()):
        if isinstance(candidate, Mount) and scope["path"].startswith(candidate.path + "/"):
            return candidate.path
    return "unmatched"
