"""The whole system as separate processes for end-to-end and browser tests: the worker and the web
app (uvicorn) against a given Temporal dev server, with the `yuqing` CLI pointed at them."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

import devstack
from devstack import free_port, wait_until
from tests.conftest import BIN

__all__ = ["Stack", "free_port", "running_stack", "wait_until"]


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
    env = devstack.app_env(
        temporal_address=temporal_address,
        task_queue=task_queue,
        database_url=f"sqlite:///{tmp_path / 'yuqing.db'}",
        roster_file=roster_file,
        url=url,
        # Drill escalation steps every 60 plan-minutes: 1 s at a 3600x speed-up.
        YUQING_ESCALATION_WAITS_MINUTES="[60, 60]",
        **(extra_env or {}),
    )
    stack = Stack(env, url, tmp_path, httpx.Client(base_url=url, timeout=30))
    migrated = stack.cli("migrate")
    assert migrated.returncode == 0, migrated.stderr
    procs = [
        devstack.worker(env, tmp_path, banners=False),
        devstack.web(env, port, tmp_path, access_log=True, banners=False),
    ]
    try:
        for p in procs:
            p.start()

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
            p.stop()
        if any(p.returncode not in (None, 0, -15) for p in procs):
            print(*(p.tail(10_000) for p in procs))
