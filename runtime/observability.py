"""Observability for the worker: log lines (text or JSON, secrets redacted), Temporal SDK metrics
for Prometheus, and a health endpoint.

- `configure_logging("text" | "json")`: "text" is the classic `time level logger message` line;
  "json" is one object per line with `ts` (ISO-8601, UTC), `level`, `logger`, `message`, and for
  every record logged from a workflow or an activity (temporalio's `workflow.logger` and
  `activity.logger`) the `incident_id` (the workflow id: the incident, or the digest for a digest
  workflow), `workflow_type` and `activity_type`; a traceback goes in `exc`. Either way a
  redaction filter removes bearer tokens, `yq_` personal tokens, `whsec_` secrets, secrets in
  robot URLs, and the literal values of the secret settings, from messages and tracebacks.
- `build_runtime(settings)`: a Temporal Runtime exporting SDK metrics on `metrics_bind`
  (http://host:port/metrics), and in JSON mode forwarding the SDK core's own log lines through
  Python logging so that every line stays JSON.
- `Histogram` and `MetricsServer`: a latency histogram in Prometheus' text format, served on a
  bind of its own (`GET /metrics`) — the web app's request latencies (starter/web/metrics.py).
- `HealthServer`: `GET /healthz` → 200 `{"status": "ok", "task_queue", "namespace"}` while the
  worker runs and the Temporal frontend answers, 503 with a `reason` otherwise; 404 elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.client import Client
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    PrometheusConfig,
    Runtime,
    TelemetryConfig,
)
from temporalio.worker import Worker

from config.settings import Settings

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
REDACTED = "[REDACTED]"

log = logging.getLogger("yuqing.observability")

# --- redaction ---

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # Authorization: Bearer <token> (and any other "Bearer <token>")
    (re.compile(r"(?i)\b(bearer\s+)[^\s'\",;]+"), r"\1" + REDACTED),
    # yuqing personal tokens (store.credentials: "yq_" + token_urlsafe)
    (re.compile(r"\byq_[A-Za-z0-9_\-]+"), "yq_" + REDACTED),
    # Standard Webhooks endpoint secrets
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=_\-]+"), "whsec_" + REDACTED),
    # Secrets in URLs: WeCom ?key=, DingTalk ?access_token= and &sign=, generic token/secret params
    (
        re.compile(
            r"(?i)([?&](?:key|access_token|token|sign|signature|secret|api_key|apikey|password)=)"
            r"[^&\s'\"#]+"
        ),
        r"\1" + REDACTED,
    ),
    # Feishu custom bot: the hook id in the path is the credential
    (re.compile(r"(/open-apis/bot/v2/hook/)[A-Za-z0-9_\-]+"), r"\1" + REDACTED),
    # user:password@ in URLs (database URLs, SMTP URLs)
    (re.compile(r"(://[^/\s:@]+:)[^@\s/]+@"), r"\1" + REDACTED + "@"),
]


class Redactor:
    """Replaces known secret shapes and the literal values of secret settings in text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret that contains another is replaced whole; very short values
        # would redact ordinary words and are not secrets worth the name.
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text


class RedactingFilter(logging.Filter):
    """A handler filter: renders the message and the traceback once, redacted, onto the record."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redact = redactor
        self._tracebacks = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken %-format: keep the template, never the arguments
            message = str(record.msg)
        record.msg = self.redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._tracebacks.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


def secret_values(settings: Settings) -> list[str]:
    """The values of the secret settings, for literal redaction (they are never logged)."""
    values = [settings.smtp_password, settings.temporal_api_key, settings.secret_key]
    codec_texts = [settings.codec_keys or ""]
    if settings.codec_keys_file:
        # A missing file is the codec's to report (without its content).
        with contextlib.suppress(OSError):
            codec_texts.append(settings.codec_keys_file.read_text(encoding="utf-8"))
    for text in codec_texts:
        for entry in text.replace(",", "\n").splitlines():
            entry = entry.strip()
            if entry:
                values.append(entry)
                values.append(entry.partition(":")[2].strip())
    return [v for v in values if v]


# --- formatting ---


def _temporal_context(record: logging.LogRecord) -> tuple[dict[str, Any], Mapping[str, Any] | None]:
    """Fields for the record's workflow or activity, and the details dict the SDK appended."""
    activity = getattr(record, "temporal_activity", None)
    if isinstance(activity, Mapping):
        fields = {
            "incident_id": activity.get("workflow_id"),
            "workflow_type": activity.get("workflow_type"),
            "activity_type": activity.get("activity_type"),
            "attempt": activity.get("attempt"),
        }
        return {k: v for k, v in fields.items() if v is not None}, activity
    workflow = getattr(record, "temporal_workflow", None)
    if isinstance(workflow, Mapping):
        fields = {
            "incident_id": workflow.get("workflow_id"),
            "workflow_type": workflow.get("workflow_type"),
            "update": workflow.get("update_name"),
        }
        return {k: v for k, v in fields.items() if v is not None}, workflow
    return {}, None


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        context, details = _temporal_context(record)
        if details is not None:
            # The SDK's adapters also append " ({...details...})" to the message; in JSON the
            # details are fields of their own.
            suffix = f" ({dict(details)})"
            if message.endswith(suffix):
                message = message[: -len(suffix)]
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
            **context,
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(
    format: str = "text", *, secrets: Iterable[str] = (), level: int = logging.INFO
) -> None:
    """Send all log records to stderr as text or JSON lines, secrets redacted. Idempotent."""
    if format not in LOG_FORMATS:
        raise ValueError(f"log format {format!r}: expected one of {', '.join(LOG_FORMATS)}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if format == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RedactingFilter(Redactor(secrets)))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)
    # uvicorn's own lines (the web app's start, errors and access log, with each request's URL)
    # go through the same handler, as JSON when asked and redacted, not through uvicorn's format.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        own = logging.getLogger(name)
        for old in own.handlers[:]:
            own.removeHandler(old)
        own.propagate = True
    # httpx logs every request URL at INFO, and robot URLs carry their credentials: the
    # activities log each delivery themselves, by channel kind and recipient.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# --- metrics ---


def settle_heap() -> None:
    """Once a long-running process has started: what it made while starting (its modules, the
    app and its schemas, the worker's workflow definitions) lives as long as it does, so it is
    taken out of the garbage collector's reach. A full collection walked all of it, a pause of
    over 100 ms in the web app every few hundred requests (issue 21: the list page's p99)."""
    gc.collect()
    gc.freeze()


def parse_bind(value: str) -> tuple[str, int]:
    """ "host:port" (or "[v6]:port") → (host, port)."""
    host, sep, port = value.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r}: expected host:port")
    return host.strip("[]"), int(port)


def build_runtime(settings: Settings) -> Runtime | None:
    """A Runtime for the worker's client, or None for the SDK's default one.

    With `metrics_bind` it exports the SDK's metrics for Prometheus; with JSON logs the SDK core's
    own log lines (WARN and up) are forwarded to the `temporalio.core` logger instead of being
    printed in core's own format."""
    json_logs = settings.log_format == "json"
    if not settings.metrics_bind and not json_logs:
        return None
    metrics = None
    if settings.metrics_bind:
        parse_bind(settings.metrics_bind)
        metrics = PrometheusConfig(bind_address=settings.metrics_bind)
    logging_config = LoggingConfig.default
    if json_logs:
        logging_config = LoggingConfig(
            filter=LoggingConfig.default.filter,
            forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
        )
    return Runtime(telemetry=TelemetryConfig(logging=logging_config, metrics=metrics))


# Prometheus' default buckets (seconds).
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Histogram:
    """A histogram by label values, rendered in Prometheus' text exposition format. Meant for
    one event loop (observed and rendered on it), so it takes no lock."""

    def __init__(
        self,
        name: str,
        help: str,
        labels: tuple[str, ...],
        buckets: tuple[float, ...] = DEFAULT_BUCKETS,
    ) -> None:
        self.name = name
        self.help = help
        self.labels = labels
        self.buckets = tuple(sorted(buckets))
        # label values → (counts per bucket, count, sum)
        self._series: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}

    def observe(self, values: tuple[str, ...], seconds: float) -> None:
        counts, totals = self._series.setdefault(values, ([0] * len(self.buckets), [0.0, 0.0]))
        for i, bound in enumerate(self.buckets):
            if seconds <= bound:
                counts[i] += 1
        totals[0] += 1
        totals[1] += seconds

    def render(self) -> str:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        for values, (counts, (count, total)) in sorted(self._series.items()):
            labels = ",".join(
                f'{k}="{_label_value(v)}"' for k, v in zip(self.labels, values, strict=True)
            )
            for bound, n in zip(self.buckets, counts, strict=True):
                lines.append(f'{self.name}_bucket{{{labels},le="{bound:g}"}} {n}')
            lines.append(f'{self.name}_bucket{{{labels},le="+Inf"}} {count:g}')
            lines.append(f"{self.name}_count{{{labels}}} {count:g}")
            lines.append(f"{self.name}_sum{{{labels}}} {total:.6f}")
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Answer:
    """One plain HTTP/1.1 answer of the operator endpoints (metrics, health)."""

    status: str
    content_type: str
    payload: bytes
    extra_headers: str = ""


class Endpoint:
    """An operator endpoint (metrics, health) on a bind of its own: read one request line
    (headers ignored, 5 s each), answer it with `_answer`, close. All they need, without a web
    framework in the worker."""

    what = "operator"

    def __init__(self, bind: str) -> None:
        self.host, self.port = parse_bind(bind)
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _answer(self, method: str, path: str) -> Answer:
        raise NotImplementedError

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5)
            for _ in range(100):  # headers, ignored
                line = await asyncio.wait_for(reader.readline(), 5)
                if line in (b"\r\n", b"\n", b""):
                    break
            parts = request.decode("latin-1").split()
            method, path = (parts[0], parts[1].split("?")[0]) if len(parts) >= 2 else ("", "")
            a = await self._answer(method, path)
            head = (
                f"HTTP/1.1 {a.status}\r\nContent-Type: {a.content_type}\r\n"
                f"Content-Length: {len(a.payload)}\r\nCache-Control: no-store\r\n"
                f"{a.extra_headers}Connection: close\r\n\r\n"
            ).encode()
            writer.write(head if method == "HEAD" else head + a.payload)
            await writer.drain()
        except (TimeoutError, ConnectionError, ValueError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("%s request failed", self.what)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()


class MetricsServer(Endpoint):
    """`GET /metrics` (Prometheus' text format) on a bind of its own, one request per connection;
    404 elsewhere. `render` is called on the event loop for each scrape."""

    what = "metrics"

    def __init__(self, bind: str, render: Callable[[], str]) -> None:
        super().__init__(bind)
        self.render = render

    async def _answer(self, method: str, path: str) -> Answer:
        if path != "/metrics":
            return Answer("404 Not Found", "text/plain", b"not found\n")
        if method not in ("GET", "HEAD"):
            return Answer("405 Method Not Allowed", "text/plain", b"", "Allow: GET, HEAD\r\n")
        return Answer("200 OK", "text/plain; version=0.0.4; charset=utf-8", self.render().encode())


# --- health ---


class HealthServer(Endpoint):
    """`GET /healthz` for the worker, on a small asyncio HTTP/1.1 server (one request per
    connection). The frontend check is cached for `cache_seconds` so probes stay cheap."""

    what = "health"

    def __init__(
        self,
        bind: str,
        *,
        client: Client,
        worker: Worker,
        task_queue: str,
        namespace: str,
        cache_seconds: float = 5.0,
        check_timeout: float = 2.0,
    ) -> None:
        super().__init__(bind)
        self.client = client
        self.worker = worker
        self.task_queue = task_queue
        self.namespace = namespace
        self.cache_seconds = cache_seconds
        self.check_timeout = check_timeout
        self.stopping = False
        self._checked: tuple[float, str | None] | None = None  # (monotonic time, failure reason)
        self._lock = asyncio.Lock()

    async def _frontend_problem(self) -> str | None:
        """None when the Temporal frontend answers its health check, else why not (cached)."""
        async with self._lock:
            now = time.monotonic()
            if self._checked and now - self._checked[0] < self.cache_seconds:
                return self._checked[1]
            problem: str | None = None
            try:
                serving = await asyncio.wait_for(
                    self.client.service_client.check_health(
                        timeout=timedelta(seconds=self.check_timeout)
                    ),
                    self.check_timeout + 1,
                )
                if not serving:
                    problem = "temporal frontend is not serving"
            except Exception as exc:
                problem = f"temporal frontend unreachable: {type(exc).__name__}: {exc}"[:300]
            self._checked = (time.monotonic(), problem)
            return problem

    async def status(self) -> tuple[int, dict[str, Any]]:
        body: dict[str, Any] = {"task_queue": self.task_queue, "namespace": self.namespace}
        reason: str | None = None
        if self.stopping or self.worker.is_shutdown:
            reason = "worker is shutting down"
        elif not self.worker.is_running:
            reason = "worker is not running"
        else:
            reason = await self._frontend_problem()
        if reason:
            return 503, {"status": "unavailable", "reason": reason, **body}
        return 200, {"status": "ok", **body}

    async def _answer(self, method: str, path: str) -> Answer:
        extra = ""
        if path != "/healthz":
            code, body = 404, {"status": "not found"}
        elif method not in ("GET", "HEAD"):
            code, body, extra = 405, {"status": "method not allowed"}, "Allow: GET, HEAD\r\n"
        else:
            code, body = await self.status()
        reasons = {200: "OK", 404: "Not Found", 405: "Method Not Allowed"}
        payload = json.dumps(body, ensure_ascii=False).encode()
        status = f"{code} {reasons.get(code, 'Service Unavailable')}"
        return Answer(status, "application/json", payload, extra)
