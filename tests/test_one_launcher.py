"""One way to start the stack (issue 16): devstack/ starts the processes for the end-to-end tests,
the reliability suite and the bench. This fails when tests/ or bench/ grow a launcher of their
own again (a `free_port`, a polling helper, a Process class or a `Popen` of their own), so the
three cannot drift apart; and when `make up` (scripts/up.sh) and devstack start the dev server
with different search attributes."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import devstack

ROOT = Path(__file__).resolve().parent.parent
# Helpers only devstack may define.
OWN_HELPERS = {"free_port", "port_open", "wait_until", "poll", "reserve_free_port"}
OWN_CLASSES = {"Process", "DevServer"}
# Calls that start a long-running child; one-shot commands (subprocess.run) are fine.
SPAWNS = {"Popen", "create_subprocess_exec", "create_subprocess_shell", "spawnv", "spawnl"}
USERS = ("tests/stack.py", "tests/reliability/harness.py", "bench/harness.py")


def launcher_code(source: str) -> list[str]:
    """What in `source` starts processes or duplicates devstack's helpers, as `line: what`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in OWN_HELPERS:
            found.append(f"{node.lineno}: defines {node.name}()")
        elif isinstance(node, ast.ClassDef) and node.name in OWN_CLASSES:
            found.append(f"{node.lineno}: defines class {node.name}")
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in SPAWNS:
                found.append(f"{node.lineno}: calls {name}()")
        elif isinstance(node, ast.Constant) and node.value == "start-dev":
            found.append(f"{node.lineno}: starts the Temporal dev server itself")
    return found


def python_files() -> list[Path]:
    files = [*(ROOT / "tests").rglob("*.py"), *(ROOT / "bench").rglob("*.py")]
    files.remove(Path(__file__).resolve())  # its mutant is a launcher on purpose
    assert len(files) > 20, files
    return sorted(files)


def test_tests_and_bench_start_processes_only_through_devstack() -> None:
    offenders = {
        str(path.relative_to(ROOT)): found
        for path in python_files()
        if (found := launcher_code(path.read_text(encoding="utf-8")))
    }
    assert not offenders, (
        "start processes and wait for them with devstack (Process, DevServer, worker, web, "
        f"free_port, wait_until, poll), not with helpers of your own: {offenders}"
    )


def test_the_three_stack_users_build_on_devstack() -> None:
    for rel in USERS:
        tree = ast.parse((ROOT / rel).read_text(encoding="utf-8"))
        imported = {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert "devstack" in imported, rel


def test_the_check_catches_a_launcher_of_its_own() -> None:
    mutant = """
import socket, subprocess

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

class Process:
    def start(self):
        self.proc = subprocess.Popen(["temporal", "server", "start-dev"])
"""
    found = {f.split(": ", 1)[1] for f in launcher_code(mutant)}
    assert found == {
        "defines free_port()",
        "defines class Process",
        "calls Popen()",
        "starts the Temporal dev server itself",
    }, found
    assert launcher_code("import subprocess\nsubprocess.run(['yuqing', 'migrate'])\n") == []


def test_make_up_and_devstack_start_the_dev_server_alike() -> None:
    """scripts/up.sh passes the dev server the same search attributes as devstack: both from
    workflows/search_attributes.py, up.sh through `yuqing search-attributes --cli-args`."""
    up = (ROOT / "scripts" / "up.sh").read_text(encoding="utf-8")
    lines = [
        line
        for line in up.splitlines()
        if "SEARCH_ATTRIBUTES=" in line or "SEARCH_ATTRIBUTE_ARGS <<<" in line
    ]
    assert len(lines) == 2, lines
    assert (
        '"${SEARCH_ATTRIBUTE_ARGS[@]}"' in up.split("server start-dev", 1)[1].split("wait_for")[0]
    )
    # The script's own lines, run: the array the dev server is given.
    script = (
        f"set -euo pipefail\nBIN={devstack.BIN}\n"
        + "\n".join(lines)
        + '\nprintf "%s\\n" "${SEARCH_ATTRIBUTE_ARGS[@]}"'
    )
    out = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=60, check=True
    ).stdout.split("\n")
    args = devstack.search_attribute_args()
    assert out[: len(args)] == args and len(args) == 16
