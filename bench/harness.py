"""The bench's processes: a Temporal dev server, our worker, the web app and the bare baseline's
worker, on free ports of 127.0.0.1, with a migrated store; all stopped on exit or failure.

Every child is started in a session of its own (a Ctrl-C in the terminal reaches only the bench,
which then stops them in order) and with a parent-death signal, so even a `kill -9` of the bench
does not leave them running. Logs go to files in the bench's temporary directory; on failure their
tails are printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import httpx
from temporalio.api.enums.v1 import IndexedValueType, TaskQueueKind, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from bench.bare_worker import create_marks_table, drop_marks_table
from config.settings import Settings
from plan.roster import Roster, load_roster
from runtime.client import connect
from store import service
from store.db import engine_for, session_scope
from store.migrate import upgrade
from workflows.incident import SEARCH_ATTRIBUTES

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ROSTER = ROOT / "config" / "roster.example.toml"
T = TypeVar("T")

CLI_TYPES = {
    IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD: "Keyword",
    IndexedValueType.INDEXED_VALUE_TYPE_BOOL: "Bool",
    IndexedValueType.INDEXED_VALUE_TYPE_DATETIME: "Datetime",
}
# The people the bench acts as: the office, the unit sswb's staff and head.
TOKEN_PEOPLE = ("liu.yang", "zhou.ting", "xu.lei", "huang.li")

PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the bench (the parent) dies, however it dies."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


async def poll(
    check: Callable[[], Awaitable[T]], *, within: float, every: float = 0.3, what: str
) -> T:
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not reached within {within:.0f}s (last: {value!r})")
        await asyncio.sleep(every)


class Process:
    """One child process with its output in a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    def check_running(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail(40)}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 15 s; only this process, by its pid."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def rss_bytes(self) -> int | None:
        """VmRSS from /proc/<pid>/status."""
        if self.proc is None:
            return None
        return rss_bytes(self.proc.pid)

    def cpu_seconds(self) -> float | None:
        return None if self.proc is None else cpu_seconds(self.proc.pid)

    def tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n".join(text[-lines:])


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of a process so far, from /proc/<pid>/stat."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"^VmRSS:\s+(\d+)\s+kB", status, re.MULTILINE)
    return int(found.group(1)) * 1024 if found else None


def machine() -> dict[str, Any]:
    """CPU model and count, RAM, OS, Python, temporalio and the dev server's version."""
    cpu_model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    ram = None
    with contextlib.suppress(OSError):
        found = re.search(r"^MemTotal:\s+(\d+)\s+kB", Path("/proc/meminfo").read_text(), re.M)
        ram = int(found.group(1)) * 1024 if found else None
    try:
        server = subprocess.run(
            [str(BIN / "temporal"), "--version"], capture_output=True, text=True, timeout=30
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        server = f"unknown ({exc})"
    return {
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "ram_bytes": ram,
        "os": platform.platform(),
        "python": platform.python_version(),
        "temporalio": metadata.version("temporalio"),
        "dev_server": server,
        "load_average_at_start": list(os.getloadavg()),
    }


def describe_machine(m: dict[str, Any]) -> str:
    ram = f"{m['ram_bytes'] / 2**30:.1f} GiB" if m.get("ram_bytes") else "unknown"
    load = ", ".join(f"{x:.2f}" for x in m["load_average_at_start"])
    return (
        f"machine: {m['cpu_model']} x {m['cpu_count']} CPUs ({m['cpus_usable']} usable), "
        f"{ram} RAM, {m['os']}\n"
        f"         Python {m['python']}, temporalio {m['temporalio']}, {m['dev_server']}\n"
        f"         load average at start: {load} (other work on the machine skews every figure)"
    )


@dataclass
class Stack:
    tmp: Path
    database_url: str
    bare_database_url: str
    backend: str
    settings: Settings
    roster: Roster
    client: Client
    web_url: str
    metrics_url: str
    bare_metrics_url: str
    tokens: dict[str, str]
    bare_task_queue: str
    temporal: Process
    worker: Process
    web: Process
    bare: Process

    def bearer(self, person: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[person]}"}

    def processes(self) -> list[Process]:
        return [self.temporal, self.worker, self.web, self.bare]

    def check_running(self) -> None:
        for p in self.processes():
            p.check_running()

    def rss(self) -> dict[str, int | None]:
        return {p.name: p.rss_bytes() for p in self.processes()}

    def cpu(self) -> dict[str, float | None]:
        """CPU seconds used so far by each process (and by the bench itself)."""
        used = {p.name: p.cpu_seconds() for p in self.processes()}
        used["bench"] = cpu_seconds(os.getpid())
        return used

    async def metric(self, name: str, *, bare: bool = False) -> float | None:
        """The sum of a Prometheus metric's samples on our worker's endpoint (or the bare
        worker's), any labels."""
        async with httpx.AsyncClient(timeout=10) as http:
            text = (await http.get(self.bare_metrics_url if bare else self.metrics_url)).text
        values = [
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " ")
        ]
        return sum(values) if values else None


async def _pollers(client: Client, task_queue: str) -> bool:
    request = DescribeTaskQueueRequest(
        namespace=client.namespace,
        task_queue=TaskQueue(name=task_queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    )
    response = await client.workflow_service.describe_task_queue(request)
    return len(response.pollers) > 0


@contextlib.asynccontextmanager
async def running_stack(
    database_url: str | None, *, keep: bool = False, bytecode_cache: bool = True
) -> AsyncIterator[Stack]:
    """Start everything; yield the stack; stop everything, whatever happened. The temporary
    directory (logs, databases) is removed unless `keep` or a failure.

    With `bytecode_cache` the Python processes may write and read bytecode (in the temporary
    directory, PYTHONPYCACHEPREFIX) even where PYTHONDONTWRITEBYTECODE is set, as a pip-installed
    release has its modules compiled: the workflow sandbox imports workflows/incident.py afresh for
    every workflow it starts or replays, and without bytecode that means compiling it each time."""
    tmp = Path(tempfile.mkdtemp(prefix="yuqing-bench-"))
    if database_url:
        backend = "postgresql" if "postgres" in database_url else "sqlite"
        bare_database_url = database_url  # its own table, bench_marks, dropped afterwards
    else:
        backend = "sqlite"
        database_url = f"sqlite:///{tmp / 'yuqing.db'}"
        bare_database_url = f"sqlite:///{tmp / 'bare.db'}"
    upgrade(database_url)
    create_marks_table(bare_database_url)
    with session_scope(database_url) as s:
        tokens = {p: service.create_token(s, person_id=p, label="bench") for p in TOKEN_PEOPLE}

    temporal_port = free_port()
    address = f"127.0.0.1:{temporal_port}"
    temporal_argv = [
        str(BIN / "temporal"),
        "server",
        "start-dev",
        "--headless",
        "--db-filename",
        str(tmp / "temporal.db"),
        "--ip",
        "127.0.0.1",
        "--port",
        str(temporal_port),
        "--http-port",
        str(free_port()),
        "--metrics-port",
        str(free_port()),
        "--log-level",
        "warn",
    ]
    for key in SEARCH_ATTRIBUTES:
        temporal_argv += ["--search-attribute", f"{key.name}={CLI_TYPES[key.indexed_value_type]}"]
    web_port = free_port()
    web_url = f"http://127.0.0.1:{web_port}"
    metrics_bind = f"127.0.0.1:{free_port()}"
    task_queue = f"bench-{uuid.uuid4().hex[:8]}"
    bare_task_queue = f"{task_queue}-bare"
    base_env = dict(os.environ)
    if bytecode_cache:
        base_env.pop("PYTHONDONTWRITEBYTECODE", None)
        base_env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    env = {
        **base_env,
        "YUQING_TEMPORAL_ADDRESS": address,
        "YUQING_TEMPORAL_TASK_QUEUE": task_queue,
        "YUQING_DATABASE_URL": database_url,
        "YUQING_ROSTER_FILE": str(ROSTER),
        "YUQING_SUBMISSIONS_PER_MINUTE": "0",
        "YUQING_API_URL": web_url,
        "YUQING_PUBLIC_URL": web_url,
        "YUQING_SECRET_KEY": uuid.uuid4().hex,  # else the web app writes data/secret_key
        "YUQING_METRICS_BIND": metrics_bind,
    }
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        temporal_address=address,
        temporal_task_queue=task_queue,
        database_url=database_url,
        roster_file=ROSTER,
        public_url=web_url,
        api_url=web_url,
        submissions_per_minute=0,
    )
    temporal = Process("temporal", temporal_argv, dict(os.environ), tmp)
    worker = Process("worker", [sys.executable, str(ROOT / "worker.py")], env, tmp)
    web = Process(
        "web",
        [
            str(BIN / "uvicorn"),
            "--factory",
            "starter.web.app:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(web_port),
            "--no-access-log",
        ],
        env,
        tmp,
    )
    bare_argv = [sys.executable, "-m", "bench.bare_worker", "--address", address]
    bare_argv += ["--task-queue", bare_task_queue, "--database-url", bare_database_url]
    bare_metrics_bind = f"127.0.0.1:{free_port()}"
    bare_argv += ["--metrics-bind", bare_metrics_bind]
    # As many workflows cached as ours keeps (settings, from YUQING_WORKER_CACHED_WORKFLOWS).
    bare_argv += ["--cached-workflows", str(settings.worker_cached_workflows)]
    bare = Process("bare-worker", bare_argv, env, tmp)
    processes = [temporal, worker, web, bare]
    failed = False
    try:
        temporal.start()

        async def frontend() -> Client | None:
            temporal.check_running()
            try:
                client = await connect(settings)
                await client.count_workflows()
                return client
            except Exception:  # still starting
                return None

        client = await poll(frontend, within=90, what="the Temporal dev server answering")
        worker.start()
        web.start()
        bare.start()

        async def web_ready() -> bool:
            web.check_running()
            try:
                async with httpx.AsyncClient(timeout=5) as http:
                    return (await http.get(f"{web_url}/healthz")).status_code == 200
            except httpx.HTTPError:
                return False

        await poll(web_ready, within=90, what="the web app answering /healthz")
        for proc, queue in ((worker, task_queue), (bare, bare_task_queue)):

            async def polling(proc: Process = proc, queue: str = queue) -> bool:
                proc.check_running()
                return await _pollers(client, queue)

            await poll(polling, within=90, what=f"{proc.name} polling {queue}")
        yield Stack(
            tmp=tmp,
            database_url=database_url,
            bare_database_url=bare_database_url,
            backend=backend,
            settings=settings,
            roster=load_roster(ROSTER),
            client=client,
            web_url=web_url,
            metrics_url=f"http://{metrics_bind}/metrics",
            bare_metrics_url=f"http://{bare_metrics_bind}/metrics",
            tokens=tokens,
            bare_task_queue=bare_task_queue,
            temporal=temporal,
            worker=worker,
            web=web,
            bare=bare,
        )
    except BaseException:
        failed = True
        raise
    finally:
        for p in reversed(processes):
            p.stop()
        if failed:
            for p in processes:
                print(f"----- {p.name} log (last lines) -----\n{p.tail()}", file=sys.stderr)
        if bare_database_url == database_url:
            with contextlib.suppress(Exception):
                drop_marks_table(bare_database_url)
        for url in {database_url, bare_database_url}:
            engine_for(url).dispose()
        if failed or keep:
            print(f"bench files kept in {tmp}", file=sys.stderr)
        else:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
