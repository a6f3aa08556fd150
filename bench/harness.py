"""The bench's processes: a Temporal dev server, our worker, the web app and the bare baseline's
worker, on free ports of 127.0.0.1, with a migrated store; all stopped on exit or failure. The
processes are started by devstack/, the launcher the tests and the reliability suite use too.

Every child is started in a session of its own (a Ctrl-C in the terminal reaches only the bench,
which then stops them in order) and with a parent-death signal, so even a `kill -9` of the bench
does not leave them running. Logs go to files in the bench's temporary directory; on failure their
tails are printed.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool
from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

import devstack
from bench.bare_worker import create_marks_table, drop_marks_table
from config.settings import Settings
from devstack import BIN, ROOT, Process, cpu_seconds, free_port, poll, rss_bytes
from plan.roster import Roster, load_roster
from runtime.client import codec_for, connect
from store import credentials
from store.db import engine_for, normalise_url, session_scope
from store.migrate import upgrade

__all__ = ["BIN", "ROOT", "Process", "Stack", "cpu_seconds", "free_port", "poll", "rss_bytes"]

ROSTER = ROOT / "config" / "roster.example.toml"
# The people the bench acts as: the office, the unit sswb's staff and head.
TOKEN_PEOPLE = ("liu.yang", "zhou.ting", "xu.lei", "huang.li")
# How each child is started (devstack.Process): a session of its own, SIGTERM when the bench
# dies, no banners in the logs; stopped by SIGTERM, then SIGKILL after 15 s.
CHILD: dict[str, Any] = {"banners": False, "parent_death_signal": signal.SIGTERM}
STOP_WAIT = 15.0
# Where `--store auto` looks for PostgreSQL (as CI does, .ci/run) unless --database-url or
# YUQING_BENCH_DATABASE_URL names a server: trust auth on this machine kind.
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
BENCH_DATABASE_ENV = "YUQING_BENCH_DATABASE_URL"


@dataclass
class StoreChoice:
    """Which store the bench runs on: `backend` sqlite or postgresql; for PostgreSQL `server` is
    the URL the scratch database is created from (CREATE DATABASE yuqing_bench_<pid>), for SQLite
    `url` is a file given by --database-url (else a file in the temporary directory)."""

    backend: str
    why: str
    server: str | None = None
    url: str | None = None


def postgres_answers(url: str, timeout: int = 3) -> str | None:
    """None when a PostgreSQL answers at `url`, else why not."""
    try:
        engine = create_engine(
            make_url(normalise_url(url)), connect_args={"connect_timeout": timeout}
        )
        try:
            with engine.connect() as conn:
                conn.execute(text("select 1"))
        finally:
            engine.dispose()
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


def choose_store(store: str, database_url: str | None) -> StoreChoice:
    """`store`: auto, sqlite or postgres. `database_url` (or YUQING_BENCH_DATABASE_URL): a
    PostgreSQL server to make a scratch database on, or a SQLite file to use as it is."""
    url = database_url or os.environ.get(BENCH_DATABASE_ENV) or None
    source = "--database-url" if database_url else BENCH_DATABASE_ENV if url else "default"
    if url and url.startswith("sqlite"):
        if store == "postgres":
            raise SystemExit(f"--store postgres, but the {source} URL is SQLite")
        return StoreChoice("sqlite", f"SQLite file from {source}", url=url)
    if store == "sqlite":
        return StoreChoice("sqlite", "--store sqlite: a SQLite file in the temporary directory")
    server = url or DEFAULT_POSTGRES
    shown = make_url(normalise_url(server)).render_as_string(hide_password=True)
    failed = postgres_answers(server)
    if failed is None:
        return StoreChoice(
            "postgresql",
            f"PostgreSQL answers at {shown} ({source}): a scratch database on it",
            server=server,
        )
    if store == "postgres" or url:
        raise SystemExit(f"PostgreSQL at {shown} does not answer: {failed}")
    return StoreChoice("sqlite", f"no PostgreSQL at {shown} ({failed}): SQLite instead")


@contextlib.contextmanager
def scratch_postgres(server: str) -> Iterator[str]:
    """A new database yuqing_bench_<pid> on the server, dropped afterwards (WITH (FORCE): even
    while a stopped process's connection lingers)."""
    base = make_url(normalise_url(server))
    name = f"yuqing_bench_{os.getpid()}"

    def admin(sql: str) -> None:
        # A connection of its own each time: the server may have restarted in between.
        engine = create_engine(base, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        try:
            with engine.connect() as conn:
                conn.execute(text(sql))
        finally:
            engine.dispose()

    drop = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
    admin(drop)
    admin(f'CREATE DATABASE "{name}"')
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        engine_for.cache_clear()
        for attempt in range(5):
            try:
                admin(drop)
                break
            except Exception as exc:
                print(f"dropping {name} failed ({type(exc).__name__}); again", file=sys.stderr)
                if attempt == 4:
                    print(f"WARNING: drop the database {name} by hand", file=sys.stderr)
                time.sleep(2)


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
    bare_web: Process
    bare_web_url: str
    cached_workflows: (
        int  # the worker's workflow cache (YUQING_WORKER_CACHED_WORKFLOWS), the bare's too
    )

    def bearer(self, person: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[person]}"}

    def processes(self) -> list[Process]:
        return [self.temporal, self.worker, self.web, self.bare, self.bare_web]

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


@contextlib.contextmanager
def _environ(env: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.asynccontextmanager
async def running_stack(
    choice: StoreChoice, *, keep: bool = False, bytecode_cache: bool = True
) -> AsyncIterator[Stack]:
    """The stack on the chosen store: for PostgreSQL on a scratch database, dropped afterwards."""
    if choice.server:
        with scratch_postgres(choice.server) as url:
            async with _running_stack(url, "postgresql", keep, bytecode_cache) as stack:
                yield stack
    else:
        async with _running_stack(choice.url, "sqlite", keep, bytecode_cache) as stack:
            yield stack


# The payload codec is off in the bench (payload bytes are measured as they are in clear): no
# keys from the environment; an .env file that sets some makes the bench stop (see below).
CODEC_OFF = {"YUQING_CODEC_KEYS": ""}


@contextlib.asynccontextmanager
async def _running_stack(
    database_url: str | None, backend: str, keep: bool, bytecode_cache: bool
) -> AsyncIterator[Stack]:
    """Start everything; yield the stack; stop everything, whatever happened. The temporary
    directory (logs, databases) is removed unless `keep` or a failure.

    With `bytecode_cache` the Python processes may write and read bytecode (in the temporary
    directory, PYTHONPYCACHEPREFIX) even where PYTHONDONTWRITEBYTECODE is set, as a pip-installed
    release has its modules compiled: the workflow sandbox imports workflows/incident.py afresh for
    every workflow it starts or replays, and without bytecode that means compiling it each time."""
    tmp = Path(tempfile.mkdtemp(prefix="yuqing-bench-"))
    if database_url:
        bare_database_url = database_url  # its own table, bench_marks, dropped afterwards
    else:
        database_url = f"sqlite:///{tmp / 'yuqing.db'}"
        bare_database_url = f"sqlite:///{tmp / 'bare.db'}"
    upgrade(database_url)
    create_marks_table(bare_database_url)
    with session_scope(database_url) as s:
        tokens = {p: credentials.create_token(s, person_id=p, label="bench") for p in TOKEN_PEOPLE}

    web_port = free_port()
    web_url = f"http://127.0.0.1:{web_port}"
    metrics_bind = f"127.0.0.1:{free_port()}"
    task_queue = f"bench-{uuid.uuid4().hex[:8]}"
    bare_task_queue = f"{task_queue}-bare"
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("YUQING_CODEC_KEYS")}
    if bytecode_cache:
        base_env.pop("PYTHONDONTWRITEBYTECODE", None)
        base_env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    temporal = devstack.DevServer(tmp, tmp / "temporal.db", env=dict(os.environ), **CHILD)
    address = temporal.address
    env = devstack.app_env(
        base=base_env,
        temporal_address=address,
        task_queue=task_queue,
        database_url=database_url,
        roster_file=ROSTER,
        url=web_url,
        YUQING_SUBMISSIONS_PER_MINUTE="0",
        YUQING_SECRET_KEY=uuid.uuid4().hex,  # else the web app writes data/secret_key
        YUQING_METRICS_BIND=metrics_bind,
        **CODEC_OFF,
    )
    # What the worker and the web app will read (this environment and ROOT/.env, from ROOT).
    with _environ(env), contextlib.chdir(ROOT):
        theirs = Settings()
    if codec_for(theirs) is not None:
        raise SystemExit(
            "the payload codec would be on (codec keys in .env?): the bench needs it off"
        )
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
    worker = devstack.worker(env, tmp, **CHILD)
    web = devstack.web(env, web_port, tmp, **CHILD)
    bare_argv = [sys.executable, "-m", "bench.bare_worker", "--address", address]
    bare_argv += ["--task-queue", bare_task_queue, "--database-url", bare_database_url]
    bare_metrics_bind = f"127.0.0.1:{free_port()}"
    bare_argv += ["--metrics-bind", bare_metrics_bind]
    # As many workflows cached as ours keeps (settings, from YUQING_WORKER_CACHED_WORKFLOWS).
    bare_argv += ["--cached-workflows", str(theirs.worker_cached_workflows)]
    bare = Process("bare-worker", bare_argv, env, tmp, **CHILD)
    # The bare submission baseline: a minimal ASGI app (bench/bare_web.py) under uvicorn, as ours
    # is served, starting bare workflows on the bare worker's task queue.
    bare_web_port = free_port()
    bare_web_env = {
        **env,
        "BENCH_BARE_TEMPORAL_ADDRESS": address,
        "BENCH_BARE_TASK_QUEUE": bare_task_queue,
    }
    bare_web_argv = [str(BIN / "uvicorn"), "--factory", "bench.bare_web:create_app"]
    bare_web_argv += ["--host", "127.0.0.1", "--port", str(bare_web_port), "--no-access-log"]
    bare_web = Process("bare-web", bare_web_argv, bare_web_env, tmp, **CHILD)
    bare_web_url = f"http://127.0.0.1:{bare_web_port}"
    processes = [temporal, worker, web, bare, bare_web]
    failed = False
    try:
        temporal.start()
        client = await temporal.ready(90, connect=lambda: connect(settings))
        worker.start()
        web.start()
        bare.start()
        bare_web.start()

        for proc, url in ((web, web_url), (bare_web, bare_web_url)):

            async def web_ready(proc: Process = proc, url: str = url) -> bool:
                proc.check_running()
                try:
                    async with httpx.AsyncClient(timeout=5) as http:
                        return (await http.get(f"{url}/healthz")).status_code == 200
                except httpx.HTTPError:
                    return False

            await poll(web_ready, within=90, every=0.3, what=f"{proc.name} answering /healthz")
        for proc, queue in ((worker, task_queue), (bare, bare_task_queue)):

            async def polling(proc: Process = proc, queue: str = queue) -> bool:
                proc.check_running()
                return await _pollers(client, queue)

            await poll(polling, within=90, every=0.3, what=f"{proc.name} polling {queue}")
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
            bare_web=bare_web,
            bare_web_url=bare_web_url,
            cached_workflows=theirs.worker_cached_workflows,
        )
    except BaseException:
        failed = True
        raise
    finally:
        for p in reversed(processes):
            p.stop(STOP_WAIT)
        if failed:
            for p in processes:
                print(f"----- {p.name} log (last lines) -----\n{p.tail(40)}", file=sys.stderr)
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
