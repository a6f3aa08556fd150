"""Rate limits for the two doors open to anyone: sign-in (guessing tokens) and submission
(flooding the office with reports). Per client address, in this process's memory: each web process
counts for itself, which is enough to make a flood visible and short-answered. Behind a reverse
proxy run uvicorn with --proxy-headers (and --forwarded-allow-ips) so the address is the client's.

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

from starter.incidents import ServiceError


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


def count_failure(window: SlidingWindow, request: Request, what: str) -> None:
    """A failed attempt: a 429 when the client is already over the limit, else counted."""
    refuse_if_limited(window, request, what)
    window.hit(client_key(request))
