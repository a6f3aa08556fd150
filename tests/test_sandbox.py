"""The worker passes our workflow modules through the sandbox (runtime.worker.WORKFLOW_RUNNER), so they are
not imported afresh for every workflow it starts or replays (docs/PERFORMANCE.md). A passed-through
module is the worker's own, and the sandbox no longer swaps the clock or `random` under it (the
same holds for plan/, passed through from the start). So the rule the sandbox enforced is checked
here instead, on the source: workflow code and the plan logic it calls never read the clock,
draw random numbers, sleep, read the environment or open files; they use `workflow.now()`,
`workflow.random()`, `workflow.sleep()` and their input. And what the workflow's write deltas
rely on (records of scalars only) is checked too."""

from __future__ import annotations

import ast
import uuid
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from runtime.worker import WORKFLOW_RUNNER
from tests import sandbox_probe
from tests.sandbox_probe import WhichModule

ROOT = Path(__file__).resolve().parent.parent
# What workflow code runs: the workflows package and the plan modules it calls (not plan/roster.py
# or plan/spec.py, which load files when the worker and the starter start, outside any workflow).
WORKFLOW_CODE = sorted(
    [*(ROOT / "workflows").glob("*.py")]
    + [
        ROOT / "plan" / f"{m}.py"
        for m in (
            "incident",
            "actions",
            "timers",
            "rules",
            "messages",
            "outbox",
            "models",
            "enums",
            "records",
        )
    ]
)
FORBIDDEN_CALLS = {
    ("datetime", "now"),
    ("datetime", "utcnow"),
    ("datetime", "today"),
    ("date", "today"),
    ("time", "time"),
    ("time", "time_ns"),
    ("time", "monotonic"),
    ("time", "perf_counter"),
    ("time", "sleep"),
    ("asyncio", "sleep"),
    ("uuid", "uuid1"),
    ("uuid", "uuid4"),
    ("os", "getenv"),
    ("os", "urandom"),
}
FORBIDDEN_MODULES = {
    "random",
    "secrets",
    "threading",
    "subprocess",
    "socket",
    "httpx",
    "sqlalchemy",
}


def nondeterministic(source: str) -> list[str]:
    """Each call or import in `source` that workflow code must not make, as 'line: what'."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
                if (f.value.id, f.attr) in FORBIDDEN_CALLS:
                    found.append(f"{node.lineno}: {f.value.id}.{f.attr}()")
            elif isinstance(f, ast.Attribute) and isinstance(f.value, ast.Attribute):
                if (f.value.attr, f.attr) in FORBIDDEN_CALLS:
                    found.append(f"{node.lineno}: {f.value.attr}.{f.attr}()")
            elif isinstance(f, ast.Name) and f.id in {"open", "input"}:
                found.append(f"{node.lineno}: {f.id}()")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if (node.value.id, node.attr) == ("os", "environ"):
                found.append(f"{node.lineno}: os.environ")
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            for name in names:
                if name and name.split(".")[0] in FORBIDDEN_MODULES:
                    found.append(f"{node.lineno}: import {name}")
    return sorted(found, key=lambda f: int(f.split(":")[0]))


@pytest.mark.parametrize("path", WORKFLOW_CODE, ids=[p.name for p in WORKFLOW_CODE])
def test_workflow_code_is_deterministic(path: Path) -> None:
    assert nondeterministic(path.read_text(encoding="utf-8")) == []


def test_the_check_finds_what_the_sandbox_used_to() -> None:
    source = (
        "import random\nfrom datetime import datetime\nimport time, uuid, os\n"
        "def f():\n"
        "    a = datetime.now()\n"
        "    b = time.time()\n"
        "    c = uuid.uuid4()\n"
        "    d = os.environ['X']\n"
        "    e = open('/etc/passwd')\n"
        "    g = datetime.datetime.utcnow()\n"
    )
    assert nondeterministic(source) == [
        "1: import random",
        "5: datetime.now()",
        "6: time.time()",
        "7: uuid.uuid4()",
        "8: os.environ",
        "9: open()",
        "10: datetime.utcnow()",
    ]


def test_the_worker_passes_only_our_workflow_modules_through() -> None:
    restrictions = WORKFLOW_RUNNER.restrictions
    assert "workflows" in restrictions.passthrough_modules
    assert not restrictions.passthrough_all_modules  # any other module is imported afresh


async def test_a_passed_through_module_is_the_workers_own(client: Client) -> None:
    queue = f"sandbox-{uuid.uuid4()}"
    runner = SandboxedWorkflowRunner(
        restrictions=WORKFLOW_RUNNER.restrictions.with_passthrough_modules("tests.sandbox_probe")
    )
    sandbox_probe.MARK = "set by the test"  # type: ignore[attr-defined]
    try:
        async with Worker(
            client, task_queue=queue, workflows=[WhichModule], workflow_runner=runner
        ):
            assert await client.execute_workflow(
                WhichModule.run, id=f"probe-{uuid.uuid4()}", task_queue=queue
            )
    finally:
        del sandbox_probe.MARK  # type: ignore[attr-defined]


def test_what_the_workflow_sends_as_changes_holds_scalars_only() -> None:
    """workflows/incident.py `Sent` keeps shallow copies of these to tell what changed since the
    last write; a list or a model inside one would change under the copy unnoticed."""
    from plan.models import AccountabilityRecord, Commendation, Deadline, Referral

    for model in (Deadline, AccountabilityRecord, Referral, Commendation):
        for name, field in model.model_fields.items():
            kind = str(field.annotation)
            assert not any(w in kind for w in ("list", "dict", "set", "plan.models")), (
                f"{model.__name__}.{name}: {kind}"
            )
