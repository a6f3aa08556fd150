"""The whole system as separate processes for end-to-end and browser tests: the worker and the web
app (uvicorn) against a given Temporal dev server, with the `yuqing` CLI pointed at them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import BIN, ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Any, within: float = 30.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {within}s: {value!r}")
        time.sleep(0.2)


@dataclass
class Stack:
    env: dict[str, str]
    url: str
    cwd: Path
    api: httpx.Client

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "yuqing"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=self.cwd,
        )


@contextmanager
def running_stack(
    temporal_address: str,
    tmp_path: Path,
    roster_file: Path,
    task_queue: str,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Stack]:
    """Migrate a fresh SQLite store, start the worker and the web app, wait until the app answers;
    stop both afterwards (and print their logs if either failed)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "YUQING_TEMPORAL_ADDRESS": temporal_address,
        "YUQING_TEMPORAL_TASK_QUEUE": task_queue,
        "YUQING_DATABASE_URL": f"sqlite:///{tmp_path / 'yuqing.db'}",
        "YUQING_ROSTER_FILE": str(roster_file),
        "YUQING_API_URL": url,
        "YUQING_PUBLIC_URL": url,
        # Drill escalation steps every 60 plan-minutes: 1 s at a 3600x speed-up.
        "YUQING_ESCALATION_WAITS_MINUTES": "[60, 60]",
        **(extra_env or {}),
    }
    stack = Stack(env, url, tmp_path, httpx.Client(base_url=url, timeout=30))
    migrated = stack.cli("migrate")
    assert migrated.returncode == 0, migrated.stderr
    logs = {name: open(tmp_path / f"{name}.log", "w") for name in ("worker", "web")}  # noqa: SIM115
    procs = [
        subprocess.Popen(
            [sys.executable, str(ROOT / "worker.py")],
            env=env,
            stdout=logs["worker"],
            stderr=subprocess.STDOUT,
        ),
        subprocess.Popen(
            [str(BIN / "uvicorn"), "--factory", "starter.web.app:create_app", "--port", str(port)],
            env=env,
            stdout=logs["web"],
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        ),
    ]
    try:

        def healthy() -> bool:
            try:
                return stack.api.get("/healthz").status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy)
        yield stack
    finally:
        stack.api.close()
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        for f in logs.values():
            f.close()
        if any(p.returncode not in (0, -15) for p in procs):
            print((tmp_path / "worker.log").read_text(), (tmp_path / "web.log").read_text())
