"""One way to start the stack: the parts `make up` starts (the Temporal dev server with the
incident search attributes, the worker, the web app, the Temporal UI gate) as child processes on
127.0.0.1, for the end-to-end tests (tests/stack.py), the reliability suite
(tests/reliability/harness.py) and the bench (bench/harness.py).

- `free_port`, `port_open`: a free TCP port of 127.0.0.1, and whether something listens on one.
- `wait_until` (blocking) and `poll` (async): call a check until it answers something truthy;
  `NotReached` (an AssertionError) names what was awaited and the last answer.
- `Process`: one child process with its output in a log file that survives restarts; started in a
  session of its own (a Ctrl-C in the terminal reaches only the parent) and with a parent-death
  signal (no child outlives a killed parent); stopped by SIGTERM, then SIGKILL; its exit code.
- `DevServer`, `worker`, `web`, `ui_gate`: the parts, with configurable ports and environment;
  `app_env`: the environment the worker and the web app read their settings from.

Nothing here imports tests/ or bench/; scripts/up.sh starts the same parts for `make up` (with pid
files, so it can be re-run).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from temporalio.client import Client

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
EXAMPLE_ROSTER = ROOT / "config" / "roster.example.toml"
T = TypeVar("T")

__all__ = [
    "BIN",
    "EXAMPLE_ROSTER",
    "ROOT",
    "DevServer",
    "NotReached",
    "Process",
    "ProcessDied",
    "app_env",
    "cpu_seconds",
    "free_port",
    "http_ok",
    "poll",
    "port_open",
    "rss_bytes",
    "search_attribute_args",
    "stop_all",
    "ui_gate",
    "wait_until",
    "web",
    "worker",
]


# ---------------------------------------------------------------- ports and waiting


def free_port() -> int:
    """A TCP port of 127.0.0.1 nothing listens on (the kernel's pick; free when asked)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


class NotReached(AssertionError):
    """A condition waited for (`wait_until`, `poll`) was not reached in time."""


def _not_reached(what: str | None, within: float, value: object) -> NotReached:
    if what is None:
        return NotReached(f"not reached within {within}s: {value!r}")
    return NotReached(f"{what}: not reached within {within:.0f}s (last: {value!r})")


def wait_until(
    check: Callable[[], T | None],
    within: float = 30.0,
    *,
    every: float = 0.2,
    what: str | None = None,
) -> T:
    """Call `check` until it returns something truthy, and return that; `NotReached` after
    `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise _not_reached(what, within, value)
        time.sleep(every)


async def poll(
    check: Callable[[], Awaitable[T | None]], *, within: float, every: float = 1.0, what: str
) -> T:
    """Await `check` until it returns something truthy; fail naming `what` and the last value."""
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise _not_reached(what, within, value)
        await asyncio.sleep(every)


def http_ok(url: str, timeout: float = 5.0) -> bool:
    """Whether GET `url` answers 200 (False on any transport error)."""
    import httpx

    try:
        return httpx.get(url, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


# ---------------------------------------------------------------- processes


class ProcessDied(RuntimeError):
    """A process exited when it was expected to run."""


PR_SET_PDEATHSIG = 1


def _die_with_parent(sig: signal.Signals) -> Callable[[], None]:
    def preexec() -> None:
        """In the child, before exec: `sig` when the parent (the thread that started the child)
        dies, however it dies."""
        with contextlib.suppress(Exception):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(sig))

    return preexec


class Process:
    """One restartable child process; its output goes to a log file that survives restarts.

    `log_path` defaults to LOG_DIR/NAME.log; with `stderr_path` standard error goes to a file of
    its own. With `banners`, each start and each signal sent is noted in the log."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: Mapping[str, str],
        log_dir: Path,
        cwd: Path = ROOT,
        *,
        log_path: Path | None = None,
        stderr_path: Path | None = None,
        banners: bool = True,
        new_session: bool = True,
        parent_death_signal: signal.Signals | None = signal.SIGKILL,
    ) -> None:
        self.name = name
        self.argv = argv
        self.env = dict(env)
        self.cwd = cwd
        self.log_path = log_path or log_dir / f"{name}.log"
        self.stderr_path = stderr_path
        self.banners = banners
        self.new_session = new_session
        self.parent_death_signal = parent_death_signal
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.unexpected_exits: list[int] = []

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def returncode(self) -> int | None:
        """The exit code once it has exited (negative: the signal that ended it), else None."""
        return None if self.proc is None else self.proc.poll()

    @property
    def popen(self) -> subprocess.Popen[bytes]:
        """The running (or exited) child; only after `start`."""
        assert self.proc is not None, f"{self.name} was never started"
        return self.proc

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> Process:
        assert not self.alive(), f"{self.name} is already running"
        self.starts += 1
        if self.banners:
            self._note(f"start {self.starts}", prefix="\n")
        with contextlib.ExitStack() as files:
            log = files.enter_context(open(self.log_path, "ab"))
            err: Any = subprocess.STDOUT
            if self.stderr_path is not None:
                err = files.enter_context(open(self.stderr_path, "ab"))
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdout=log,
                stderr=err,
                start_new_session=self.new_session,
                preexec_fn=(
                    _die_with_parent(self.parent_death_signal)
                    if self.parent_death_signal is not None
                    else None
                ),
            )
        return self

    def signal(self, sig: signal.Signals, *, wait: float = 15.0) -> int | None:
        """Send `sig` to this process (only this one, by its pid) and wait for it to exit;
        SIGKILL when it still runs after `wait` seconds. Answers the exit code."""
        assert self.proc is not None
        if self.banners:
            self._note(f"sending {sig.name}")
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            if self.banners:
                self._note(f"still running {wait:.0f}s after {sig.name}: SIGKILL")
            self.proc.kill()
            return self.proc.wait(timeout=10)

    def stop(self, wait: float = 10.0) -> int | None:
        """SIGTERM if running, then SIGKILL after `wait` seconds; a no-op when it is not running.
        An exit other than 0, SIGTERM or SIGKILL before the stop is kept in `unexpected_exits`.
        Answers the exit code (None if never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM, wait=wait)
        elif self.proc.returncode not in (0, -signal.SIGTERM, -signal.SIGKILL):
            self.unexpected_exits.append(self.proc.returncode)
        return self.proc.returncode

    def wait(self, timeout: float | None = None) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def check_running(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise ProcessDied(
                f"{self.name} exited unexpectedly with {self.proc.returncode}:\n{self.tail(60)}"
            )

    def tail(self, lines: int = 120) -> str:
        if not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def rss_bytes(self) -> int | None:
        """VmRSS from /proc/<pid>/status."""
        return None if self.proc is None else rss_bytes(self.proc.pid)

    def cpu_seconds(self) -> float | None:
        return None if self.proc is None else cpu_seconds(self.proc.pid)

    def _note(self, what: str, prefix: str = "") -> None:
        stamp = datetime.now().strftime("%H:%M:%S.%f")[:-3]
        with open(self.log_path, "ab") as log:
            log.write(f"{prefix}===== {self.name}: {what} at {stamp} =====\n".encode())


def stop_all(processes: Iterable[Process]) -> None:
    """Stop each (in the order given), whatever the others do."""
    for p in processes:
        with contextlib.suppress(Exception):
            p.stop()


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


# ---------------------------------------------------------------- the parts


def search_attribute_args() -> list[str]:
    """--search-attribute NAME=TYPE for each of the incident workflow's search attributes."""
    from workflows.search_attributes import cli_args

    return cli_args()


class DevServer(Process):
    """The Temporal CLI dev server on a database file (so it can be stopped any way and started
    again without losing a workflow), with the incident search attributes. Headless unless
    `ui_port` is given (the UI then listens on 127.0.0.1 only, as `make up` has it)."""

    def __init__(
        self,
        log_dir: Path,
        db_file: Path | None = None,
        *,
        port: int | None = None,
        ui_port: int | None = None,
        ui_codec_endpoint: str | None = None,
        log_level: str = "warn",
        env: Mapping[str, str] | None = None,
        name: str = "temporal",
        **options: Any,
    ) -> None:
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.ui_port = ui_port
        argv = [str(BIN / "temporal"), "server", "start-dev"]
        argv += ["--db-filename", str(db_file or log_dir / "temporal.db")]
        argv += ["--ip", "127.0.0.1", "--port", str(self.port)]
        if ui_port is None:
            argv += ["--headless"]
        else:
            argv += ["--ui-ip", "127.0.0.1", "--ui-port", str(ui_port), "--ui-disable-news-fetch"]
            if ui_codec_endpoint:
                argv += ["--ui-codec-endpoint", ui_codec_endpoint]
        argv += ["--http-port", str(free_port()), "--metrics-port", str(free_port())]
        argv += ["--log-level", log_level, *search_attribute_args()]
        super().__init__(name, argv, dict(os.environ if env is None else env), log_dir, **options)

    async def ready(
        self,
        within: float = 60.0,
        *,
        connect: Callable[[], Awaitable[Client]] | None = None,
        every: float = 0.3,
    ) -> Client:
        """Wait until the frontend answers a real request; answers a client (by `connect`, else
        `Client.connect(address)`)."""

        async def connected() -> Client | None:
            self.check_running()
            if not port_open(self.port):
                return None
            try:
                client = await (connect() if connect else Client.connect(self.address))
                await client.count_workflows()
                return client
            except Exception:  # still starting: any RPC error means try again
                return None

        return await poll(connected, within=within, every=every, what="the dev server answering")


def app_env(
    *,
    temporal_address: str,
    task_queue: str,
    database_url: str,
    url: str,
    roster_file: Path = EXAMPLE_ROSTER,
    base: Mapping[str, str] | None = None,
    **extra: str,
) -> dict[str, str]:
    """The environment the worker and the web app read their settings from: `base` (default this
    process's environment) with the Temporal frontend, the task queue, the store, the roster and
    the web app's URL (API and public); `extra` adds or overrides YUQING_* variables."""
    return {
        **(os.environ if base is None else base),
        "YUQING_TEMPORAL_ADDRESS": temporal_address,
        "YUQING_TEMPORAL_TASK_QUEUE": task_queue,
        "YUQING_DATABASE_URL": database_url,
        "YUQING_ROSTER_FILE": str(roster_file),
        "YUQING_API_URL": url,
        "YUQING_PUBLIC_URL": url,
        **extra,
    }


def worker(
    env: Mapping[str, str], log_dir: Path, cwd: Path = ROOT, *, name: str = "worker", **options: Any
) -> Process:
    """The worker (`python worker.py`), as `make up` runs it."""
    return Process(name, [sys.executable, str(ROOT / "worker.py")], env, log_dir, cwd, **options)


def _uvicorn(factory: str, host: str, port: int, access_log: bool) -> list[str]:
    argv = [str(BIN / "uvicorn"), "--factory", factory, "--host", host, "--port", str(port)]
    return argv if access_log else [*argv, "--no-access-log"]


def web(
    env: Mapping[str, str],
    port: int,
    log_dir: Path,
    *,
    host: str = "127.0.0.1",
    access_log: bool = False,
    name: str = "web",
    **options: Any,
) -> Process:
    """The web app (uvicorn, starter.web.app:create_app)."""
    argv = _uvicorn("starter.web.app:create_app", host, port, access_log)
    return Process(name, argv, env, log_dir, **options)


def ui_gate(
    env: Mapping[str, str],
    port: int,
    log_dir: Path,
    *,
    host: str = "127.0.0.1",
    access_log: bool = False,
    name: str = "ui",
    **options: Any,
) -> Process:
    """The Temporal UI gate (starter.web.ui_gate:create_gate) in front of the dev server's UI
    (YUQING_TEMPORAL_UI_UPSTREAM in `env`)."""
    argv = _uvicorn("starter.web.ui_gate:create_gate", host, port, access_log)
    return Process(name, argv, env, log_dir, **options)
