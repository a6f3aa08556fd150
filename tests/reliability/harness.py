"""The reliability suite's machinery: the whole system as real processes on 127.0.0.1 that a test
can kill and start again, a Standard Webhooks receiver that can go down and come back on the same
port, and the checks that every notification the workflows decided reached the inbox, the outbox
and the receiver exactly once.

- `DevServer`: the Temporal CLI dev server with a database FILE, so it can be stopped (SIGTERM or
  SIGKILL) and started again on the same file and port without losing a workflow.
- `Process`: the worker (`python worker.py`) and the web app (uvicorn), each restartable.
- `Receiver`: a ThreadingHTTPServer that checks each request's signature and keeps its webhook-id
  and body.
- `reliability_stack`: all of the above plus a fresh store (SQLite, or PostgreSQL when
  YUQING_TEST_DATABASE_URL is set), a roster copy whose escalation recipients have webhook
  channels, and staff tokens. Every process is killed afterwards, even on failure (and by the
  kernel if the test run itself is killed); the processes' logs are printed when the test failed
  and kept in test-artifacts/reliability/NAME/ with the Temporal database.
- `check_deliveries`: the inbox, the outbox and the receiver compared, as the figures count them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select
from temporalio.client import Client, WorkflowExecutionStatus

import devstack
from activities.channels import sign_standard
from devstack import BIN, ROOT, DevServer, ProcessDied, free_port, poll, port_open
from store import credentials
from store.db import engine_for, session_scope
from store.migrate import upgrade
from store.models import Delivery, EscalationRow, InboxMessage
from tests.conftest import EXAMPLE_ROSTER, _drop_postgres, _fresh_postgres, _postgres_url

ARTIFACTS = ROOT / "test-artifacts" / "reliability"

OFFICE = ["liu.yang", "zhou.ting", "ma.chao"]
UNIT = "cjb"  # 村镇建设办: head and first-responsible sun.haitao, staff lin.feng
UNIT_HEAD = "sun.haitao"
UNIT_STAFF = "lin.feng"
DEPUTY = "li.xiaomei"
LEADER = "wang.jianguo"
# Everyone an R-REPLY escalation reaches (R-ESCALATE steps 1-3, R-DUTY) gets a webhook.
WEBHOOK_PEOPLE = [UNIT_HEAD, *OFFICE, DEPUTY, LEADER]
TOKEN_PEOPLE = [*OFFICE, UNIT_HEAD, UNIT_STAFF, DEPUTY, LEADER]
NAMES = {
    "liu.yang": "刘洋",
    UNIT_HEAD: "孙海涛",
    UNIT_STAFF: "林峰",
    DEPUTY: "李晓梅",
    LEADER: "王建国",
}

# The processes (devstack: one launcher for the tests, the reliability suite and the bench) die
# with the test run even when it is killed (SIGKILL from the kernel when the thread that started
# them exits), so no server outlives a crashed or interrupted run.
__all__ = ["BIN", "ROOT", "DevServer", "Process", "ProcessDied", "free_port", "poll", "port_open"]


def secret_for(person: str) -> str:
    """A per-person Standard Webhooks secret: whsec_ + base64 of 24 bytes."""
    raw = hashlib.sha256(f"reliability:{person}".encode()).digest()[:24]
    return "whsec_" + base64.b64encode(raw).decode()


# The id the roster declares for each person's webhook (outbox keys name channels by it).
HOOK_ID = "reliability-hook"


def webhook_id_for(delivery_key: str) -> str:
    """What the sender puts in webhook-id for an outbox row (activities.channels.webhook_id)."""
    return "msg_" + hashlib.sha256(delivery_key.encode()).hexdigest()[:32]


def roster_with_webhooks(url: str, path: Path) -> Path:
    """The example town, with a webhook channel for each person an escalation reaches."""
    text = EXAMPLE_ROSTER.read_text(encoding="utf-8")
    for person in WEBHOOK_PEOPLE:
        line = f'id = "{person}"\n'
        assert text.count(line) == 1, person
        channel = (
            f'channels = [{{ kind = "webhook", id = "{HOOK_ID}", url = "{url}", '
            f'secret = "{secret_for(person)}" }}]'
        )
        text = text.replace(line, f"{line}{channel}\n")
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------- processes


# One restartable process of the stack; its output in a log file that survives restarts.
Process = devstack.Process


# ---------------------------------------------------------------- the webhook receiver


@dataclass
class Received:
    webhook_id: str
    timestamp: str
    signature_ok: bool
    body: dict[str, Any]
    at: float

    def logical(self) -> tuple[str, ...]:
        """One logical notification: incident, rule, (deadline and step are in the) subject,
        recipient and channel."""
        b = self.body
        return (b["incident_id"], b["rule"], b["subject"], b["recipient"]["id"], "webhook")


class Receiver:
    """A Standard Webhooks endpoint on a fixed port that can be taken down and brought back."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None
        self.downs = 0

    def start(self) -> None:
        assert self.server is None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                ident = self.headers.get("webhook-id", "")
                stamp = self.headers.get("webhook-timestamp", "")
                data = json.loads(body)
                person = data.get("recipient", {}).get("id", "")
                expected = sign_standard(secret_for(person), ident, stamp, body)
                ok = hmac.compare_digest(expected, self.headers.get("webhook-signature", ""))
                with outer.lock:
                    outer.received.append(Received(ident, stamp, ok, data, time.monotonic()))
                self.send_response(204 if ok else 401)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.server = server
        self.thread = threading.Thread(target=server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Down: the port refuses connections until `start` again."""
        if self.server is None:
            return
        self.server.shutdown()
        self.server.server_close()
        self.server = None
        self.downs += 1

    def snapshot(self) -> list[Received]:
        with self.lock:
            return list(self.received)


# ---------------------------------------------------------------- the stack


@dataclass
class Stack:
    tmp: Path
    database_url: str
    backend: str  # "sqlite" or "postgresql"
    temporal: DevServer
    worker: Process
    web: Process
    receiver: Receiver
    http: httpx.AsyncClient
    client: Client
    tokens: dict[str, str]
    task_queue: str
    worker_health: str  # host:port of the worker's /healthz
    faults: list[str] = field(default_factory=list)
    submissions_retried: int = 0

    def bearer(self, person: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[person]}"}

    def fault(self, what: str) -> None:
        self.faults.append(what)
        print(f"[{_now()}] FAULT {len(self.faults)}: {what}", flush=True)

    async def web_ready(self, within: float = 60.0) -> None:
        async def ready() -> bool:
            self.web.check_running()
            try:
                return (await self.http.get("/readyz")).status_code == 200
            except httpx.HTTPError:
                return False

        await poll(ready, within=within, every=0.3, what="the web app ready (/readyz)")

    def check_processes(self) -> None:
        for p in (self.temporal, self.worker, self.web):
            p.check_running()

    async def worker_ready(self, within: float = 60.0) -> None:
        """The worker's /healthz says it runs and reaches the Temporal frontend."""

        async def healthy() -> bool:
            self.worker.check_running()
            try:
                r = await self.http.get(f"http://{self.worker_health}/healthz", timeout=5)
                return r.status_code == 200
            except httpx.HTTPError:
                return False

        await poll(healthy, within=within, every=0.3, what="the worker healthy (/healthz)")

    async def restart_temporal(self, sig: signal.Signals, down_for: float) -> None:
        self.fault(f"Temporal dev server {sig.name}, down {down_for:g}s, restarted on its db file")
        self.temporal.signal(sig)
        await asyncio.sleep(down_for)
        self.temporal.start()
        self.client = await self.temporal.ready()
        await self.worker_ready()

    async def kill_worker(self, down_for: float) -> None:
        self.fault(f"worker kill -9, down {down_for:g}s, started again")
        self.worker.signal(signal.SIGKILL)
        await asyncio.sleep(down_for)
        self.worker.start()
        await self.worker_ready()

    # --- incidents

    async def submit_drill(self, n: int, speedup: float | None, *, tag: str) -> str:
        """An urgent incident for the unit, as the office's monitor reports it (with a token, so
        the anonymous rate limit does not apply); a drill when `speedup` is given."""
        report = {
            "title": f"{'演练' if speedup else ''}{tag}第{n}号：桥梁裂缝视频传播",
            "content": f"可靠性测试（{tag}）第{n}号事件。",
            "source": "抖音",
            "discovered_at": datetime.now(UTC).isoformat(),
            "reporter_unit": "yqb",
            "reporter_name": "周婷",
            "severity": "urgent",
            "responsible_unit": UNIT,
            "drill_speedup": speedup,
            "submission_key": f"{tag}-{n}-{uuid.uuid4().hex}",
        }
        for attempt in range(5):
            try:
                r = await self.http.post(
                    "/api/incidents", json=report, headers=self.bearer("zhou.ting")
                )
            except httpx.TransportError as exc:
                print(f"submission {tag} {n}: {type(exc).__name__} {exc}", flush=True)
                r = None
            if r is not None and r.status_code in (200, 201):
                return str(r.json()["id"])
            # A late first answer (503, the incident is started) or a dropped connection: the
            # same report again finds its incident (R-DEDUP by submission_key).
            assert r is None or r.status_code == 503, r.text
            self.submissions_retried += 1
            await asyncio.sleep(1 + attempt)
        raise AssertionError(f"submission {tag} {n} unanswered after 5 attempts")

    async def submit_drills(self, count: int, speedup: float, *, tag: str) -> list[str]:
        limit = asyncio.Semaphore(8)

        async def one(n: int) -> str:
            async with limit:
                return await self.submit_drill(n, speedup, tag=tag)

        return list(await asyncio.gather(*(one(n) for n in range(1, count + 1))))

    async def views(self, ids: Iterable[str]) -> dict[str, dict[str, Any] | int]:
        """GET /api/incidents/{id} as the office: the JSON, or the status when not 200."""
        limit = asyncio.Semaphore(8)

        async def one(incident_id: str) -> tuple[str, dict[str, Any] | int]:
            async with limit:
                for attempt in range(3):  # a read may be retried: a dropped connection is no answer
                    try:
                        r = await self.http.get(
                            f"/api/incidents/{incident_id}", headers=self.bearer("liu.yang")
                        )
                        break
                    except httpx.TransportError as exc:
                        print(f"GET {incident_id}: {type(exc).__name__} {exc}", flush=True)
                        if attempt == 2:
                            raise
                        await asyncio.sleep(1)
                return incident_id, (dict(r.json()) if r.status_code == 200 else r.status_code)

        return dict(await asyncio.gather(*(one(i) for i in ids)))

    async def act(
        self, incident_id: str, action: str, person: str, body: dict[str, Any]
    ) -> httpx.Response:
        return await self.http.post(
            f"/api/incidents/{incident_id}/actions/{action}",
            json=body,
            headers=self.bearer(person),
        )

    async def statuses(self, ids: Iterable[str]) -> dict[str, WorkflowExecutionStatus | None]:
        async def one(incident_id: str) -> tuple[str, WorkflowExecutionStatus | None]:
            desc = await self.client.get_workflow_handle(incident_id).describe()
            return incident_id, desc.status

        return dict(await asyncio.gather(*(one(i) for i in ids)))

    # --- the store

    def rows(self, model: Any, ids: Iterable[str]) -> list[Any]:
        wanted = list(ids)
        with session_scope(self.database_url) as s:
            return list(
                s.scalars(select(model).where(model.incident_id.in_(wanted)).order_by(model.id))
            )

    def reply_steps_recorded(self, ids: Iterable[str]) -> dict[str, list[int]]:
        """The escalations table's R-REPLY#1 steps per incident."""
        out: dict[str, list[int]] = {i: [] for i in ids}
        for row in self.rows(EscalationRow, out):
            if row.deadline_key == "R-REPLY#1":
                out[row.incident_id].append(row.step)
        return {i: sorted(steps) for i, steps in out.items()}


@contextlib.asynccontextmanager
async def reliability_stack(
    name: str, extra_env: dict[str, str] | None = None
) -> AsyncIterator[Stack]:
    """The whole system for one test; every process stopped afterwards, logs printed on failure.
    Logs and the Temporal database stay in test-artifacts/reliability/NAME/."""
    tmp = ARTIFACTS / name
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    base = _postgres_url()
    pg_name: str | None = None
    if base:
        database_url, pg_name = _fresh_postgres(base)
        backend = "postgresql"
    else:
        database_url = f"sqlite:///{tmp / 'yuqing.db'}"
        backend = "sqlite"
    upgrade(database_url)
    with session_scope(database_url) as s:
        tokens = {p: credentials.create_token(s, person_id=p) for p in TOKEN_PEOPLE}

    receiver = Receiver()
    roster = roster_with_webhooks(receiver.url, tmp / "roster.toml")
    temporal = DevServer(tmp, tmp / "temporal.db")
    web_port = free_port()
    url = f"http://127.0.0.1:{web_port}"
    task_queue = f"reliability-{name}"
    worker_health = f"127.0.0.1:{free_port()}"
    env = devstack.app_env(
        temporal_address=temporal.address,
        task_queue=task_queue,
        database_url=database_url,
        roster_file=roster,
        url=url,
        YUQING_ESCALATION_WAITS_MINUTES="[60, 60]",
        YUQING_WEBHOOK_TIMEOUT_SECONDS="5",
        YUQING_WORKER_HEALTH_BIND=worker_health,
        **(extra_env or {}),
    )
    worker = devstack.worker(env, tmp)
    web = devstack.web(env, web_port, tmp)
    processes: list[Process] = [temporal, worker, web]
    http = httpx.AsyncClient(base_url=url, timeout=60)
    failed = False
    try:
        receiver.start()
        temporal.start()
        client = await temporal.ready()
        worker.start()
        web.start()
        stack = Stack(
            tmp,
            database_url,
            backend,
            temporal,
            worker,
            web,
            receiver,
            http,
            client,
            tokens,
            task_queue,
            worker_health,
        )
        await stack.web_ready()
        await stack.worker_ready()
        yield stack
        for p in processes:
            p.check_running()
    except BaseException:
        failed = True
        raise
    finally:
        await http.aclose()
        for p in reversed(processes):
            with contextlib.suppress(Exception):
                p.stop()
        receiver.stop()
        if failed or any(p.unexpected_exits for p in processes):
            for p in processes:
                print(f"\n----- {p.name} log (last lines; all of it in {p.log_path}) -----")
                print(p.tail(200))
        engine_for.cache_clear()
        if base and pg_name:
            _drop_postgres(base, pg_name)


# ---------------------------------------------------------------- postgres


def restart_postgres() -> str | None:
    """Restart the local PostgreSQL server; None when done, else why it could not be."""
    attempts: list[list[str]] = []
    clusters = (
        subprocess.run(
            ["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=False
        )
        if shutil.which("pg_lsclusters")
        else None
    )
    if clusters is not None and clusters.returncode == 0:
        for line in clusters.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[2] == "5432":
                attempts.append(["pg_ctlcluster", parts[0], parts[1], "restart"])
    attempts.append(["service", "postgresql", "restart"])
    reasons = []
    for argv in attempts:
        if not shutil.which(argv[0]):
            reasons.append(f"{argv[0]}: not installed")
            continue
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode == 0:
            return None
        reasons.append(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.strip()[:200]}")
    return "; ".join(reasons)


# ---------------------------------------------------------------- the checks


@dataclass
class DeliveryReport:
    expected: int = 0  # webhook deliveries the inbox says were decided
    outbox_rows: int = 0
    received: int = 0  # logical notifications that arrived
    duplicated: int = 0  # extra webhook-ids for one logical notification
    redelivered: int = 0  # the same webhook-id arriving again
    missed: int = 0  # expected but never arrived
    problems: list[str] = field(default_factory=list)

    def figures(self) -> dict[str, int]:
        return {
            "notifications_expected": self.expected,
            "notifications_received": self.received,
            "notifications_duplicated": self.duplicated,
            "notifications_redelivered": self.redelivered,
            "notifications_missed": self.missed,
        }


def missing_from_inbox(stack: Stack, views: dict[str, dict[str, Any]]) -> list[str]:
    """Notifications a workflow decided (keys n1..n{notify_seq}) that are not in the inbox."""
    notes: dict[str, set[str]] = defaultdict(set)
    for m in stack.rows(InboxMessage, views):
        if not m.key.endswith("|failed"):
            notes[m.incident_id].add(m.key.split(":")[1])
    problems = []
    for incident_id, view in views.items():
        decided = {f"n{i}" for i in range(1, int(view["notify_seq"]) + 1)}
        absent = decided - notes[incident_id]
        if absent:
            problems.append(f"{incident_id}: notifications not in the inbox: {sorted(absent)}")
    return problems


def check_deliveries(stack: Stack, views: dict[str, dict[str, Any]]) -> DeliveryReport:
    """Every notification the workflows decided is in the inbox; each inbox message to a person
    with a webhook is an outbox row, `sent`, that arrived exactly once (by webhook-id); the
    receiver got nothing else."""
    report = DeliveryReport()
    ids = list(views)
    inbox = stack.rows(InboxMessage, ids)
    outbox = [d for d in stack.rows(Delivery, ids) if d.kind == "webhook"]
    received = [r for r in stack.receiver.snapshot() if r.body.get("incident_id") in views]
    other = [r for r in stack.receiver.snapshot() if r.body.get("incident_id") not in views]

    # 1. The inbox has every notification each workflow decided (keys n1..n{notify_seq}).
    report.problems += missing_from_inbox(stack, views)
    failures = [m for m in inbox if m.key.endswith("|failed")]
    if failures:
        report.problems.append(f"{len(failures)} delivery-failure notes in the office's inbox")

    # 2. Each inbox message to a person with a webhook has its outbox row, and nothing else does.
    want = {
        f"{m.key}|{m.recipient}|webhook:{HOOK_ID}"  # by the channel's id, never its URL
        for m in inbox
        if m.recipient in WEBHOOK_PEOPLE and not m.key.endswith("|failed")
    }
    report.expected = len(want)
    report.outbox_rows = len(outbox)
    keys = Counter(d.key for d in outbox)
    if set(keys) != want:
        report.problems.append(
            f"outbox rows without an inbox message: {len(set(keys) - want)}, "
            f"inbox messages without an outbox row: {len(want - set(keys))}"
        )
    not_sent = Counter(d.state for d in outbox if d.state != "sent")
    if not_sent:
        report.problems.append(f"outbox rows not sent: {dict(not_sent)}")

    # 3. The receiver: exactly once per row by webhook-id, nothing foreign, signatures valid.
    by_id: dict[str, list[Received]] = defaultdict(list)
    for r in received:
        by_id[r.webhook_id].append(r)
    row_ids = {webhook_id_for(k): k for k in keys}
    report.redelivered = sum(len(v) - 1 for v in by_id.values())
    foreign = set(by_id) - set(row_ids)
    if foreign or other:
        report.problems.append(
            f"the receiver got {len(foreign)} webhook-ids not in the outbox and "
            f"{len(other)} requests about other incidents"
        )
    bad = [r.webhook_id for r in received if not r.signature_ok]
    if bad:
        report.problems.append(f"{len(bad)} requests with a bad signature")
    logical: dict[tuple[str, ...], set[str]] = defaultdict(set)
    for r in received:
        logical[r.logical()].add(r.webhook_id)
    report.duplicated = sum(len(v) - 1 for v in logical.values())
    arrived = set(by_id) & set(row_ids)
    report.received = len({row_ids[i] for i in arrived} & want)
    report.missed = len(want) - report.received
    if report.duplicated:
        report.problems.append(f"{report.duplicated} logical notifications under a second id")
    if report.missed:
        report.problems.append(f"{report.missed} expected notifications never arrived")
    return report


def _now() -> str:
    return datetime.now().strftime("%H:%M:%S.%f")[:-3]
