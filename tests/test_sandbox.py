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
# What workflow code runs: every module of the project that workflows/*.py import, directly or
# through each other, found by walking the import statements (so a module a workflow starts to
# call is checked without anyone remembering to list it; a hand-written list left out
# plan/digest.py and plan/roster.py, issue 16).
WORKFLOW_ROOTS = sorted((ROOT / "workflows").glob("*.py"))
# Functions in those modules that read a file by design, and are called when the worker or the
# starter starts, outside any workflow (the workflows get the plan and the roster in their input).
LOADS_AT_START = {
    "plan/spec.py": {"load_spec"},  # the plan file
    "plan/roster.py": {"load_roster"},  # the roster file
}


def module_file(name: str, root: Path = ROOT) -> Path | None:
    """The project's file for a dotted module name, or None (a library, or not a module)."""
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_names(path: Path, root: Path = ROOT) -> set[str]:
    """Every dotted name an import statement in `path` may load (`from a import b`: a and a.b),
    relative imports resolved; under TYPE_CHECKING too, to be safe."""
    package = list(path.relative_to(root).with_suffix("").parts)[:-1]  # an __init__.py's own
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            up = package[: len(package) - node.level + 1] if node.level else []
            base = ".".join([*up, *([node.module] if node.module else [])])
            names.add(base)
            names |= {f"{base}.{a.name}" for a in node.names}
    return names


def imported_modules(roots: list[Path], root: Path = ROOT) -> list[Path]:
    """`roots` and every project module they import, transitively (with each package's
    __init__.py on the way, which runs on import too)."""
    seen: set[Path] = set()
    todo = list(roots)
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported_names(path, root):
            dotted = name.split(".")
            for i in range(1, len(dotted) + 1):
                found = module_file(".".join(dotted[:i]), root)
                if found is not None and found not in seen:
                    todo.append(found)
    return sorted(seen)


WORKFLOW_CODE = imported_modules(WORKFLOW_ROOTS)
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
# File reads and writes through a path object (pathlib's).
PATH_IO = {"read_text", "read_bytes", "write_text", "write_bytes"}
FORBIDDEN_MODULES = {
    "random",
    "secrets",
    "threading",
    "subprocess",
    "socket",
    "httpx",
    "sqlalchemy",
}


def nondeterministic(source: str, allowed: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """Each call or import in `source` that workflow code must not make, as 'line: what'; not
    those inside the top-level functions named in `allowed`."""
    tree = ast.parse(source)
    skip = [
        (node.lineno, node.end_lineno or node.lineno)
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name in allowed
    ]
    found = [f for f in _calls_and_imports(tree) if not any(a <= _line(f) <= b for a, b in skip)]
    return sorted(found, key=_line)


def _line(finding: str) -> int:
    return int(finding.split(":")[0])


def _calls_and_imports(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name) and f.id in {"open", "input"}:
                found.append(f"{node.lineno}: {f.id}()")
            elif isinstance(f, ast.Attribute) and f.attr in PATH_IO:
                found.append(f"{node.lineno}: .{f.attr}()")
            elif isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
                if (f.value.id, f.attr) in FORBIDDEN_CALLS:
                    found.append(f"{node.lineno}: {f.value.id}.{f.attr}()")
            elif (
                isinstance(f, ast.Attribute)
                and isinstance(f.value, ast.Attribute)
                and (f.value.attr, f.attr) in FORBIDDEN_CALLS
            ):
                found.append(f"{node.lineno}: {f.value.attr}.{f.attr}()")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if (node.value.id, node.attr) == ("os", "environ"):
                found.append(f"{node.lineno}: os.environ")
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            for name in names:
                if name and name.split(".")[0] in FORBIDDEN_MODULES:
                    found.append(f"{node.lineno}: import {name}")
    return found


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@pytest.mark.parametrize("path", WORKFLOW_CODE, ids=[_rel(p) for p in WORKFLOW_CODE])
def test_workflow_code_is_deterministic(path: Path) -> None:
    allowed = LOADS_AT_START.get(_rel(path), set())
    assert nondeterministic(path.read_text(encoding="utf-8"), allowed) == []


# The hand-written list this file used to check besides workflows/*.py (kept to show the gap).
OLD_PLAN_LIST = ("incident", "actions", "timers", "rules", "messages", "outbox", "models", "enums")


def test_the_check_covers_every_module_the_workflows_import() -> None:
    """The walk reaches what the hand-written list of plan modules left out (plan/digest.py,
    which the digest workflow calls; plan/roster.py, which the core and the outbox call), and
    the data contracts in plan/records.py; no module of the project outside plan/ and
    workflows/ runs in a workflow."""
    checked = {_rel(p) for p in WORKFLOW_CODE}
    old_list = {f"plan/{m}.py" for m in OLD_PLAN_LIST} | {_rel(p) for p in WORKFLOW_ROOTS}
    assert {"plan/digest.py", "plan/roster.py", "plan/records.py"} <= checked - old_list
    assert old_list <= checked
    outside = {c for c in checked if not c.startswith(("plan/", "workflows/"))}
    assert outside == set()
    # Each exemption names a function that is there and that reads a file (none stale).
    for rel, functions in LOADS_AT_START.items():
        assert rel in checked
        source = (ROOT / rel).read_text(encoding="utf-8")
        assert nondeterministic(source) != nondeterministic(source, functions), rel


def test_the_walk_follows_imports_transitively(tmp_path: Path) -> None:
    """A module reached only through another (absolute, relative, `from package import module`)
    is found; a library is not, nor a module nobody imports."""
    files = {
        "workflows/__init__.py": "",
        "workflows/w.py": "import json\nfrom plan import a\nfrom . import helper\n",
        "workflows/helper.py": "from plan.b import f\n",
        "plan/__init__.py": "",
        "plan/a.py": "from .c import g\n",
        "plan/b.py": "def f(): ...\n",
        "plan/c.py": "import datetime\ndef g(): return datetime.datetime.now()\n",
        "plan/unused.py": "",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text, encoding="utf-8")
    found = imported_modules([tmp_path / "workflows" / "w.py"], tmp_path)
    assert {p.relative_to(tmp_path).as_posix() for p in found} == {
        "workflows/__init__.py",
        "workflows/w.py",
        "workflows/helper.py",
        "plan/__init__.py",
        "plan/a.py",
        "plan/b.py",
        "plan/c.py",
    }
    assert nondeterministic((tmp_path / "plan/c.py").read_text()) == ["2: datetime.now()"]


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
        "    h = Path(x).read_text()\n"
    )
    assert nondeterministic(source) == [
        "1: import random",
        "5: datetime.now()",
        "6: time.time()",
        "7: uuid.uuid4()",
        "8: os.environ",
        "9: open()",
        "10: datetime.utcnow()",
        "11: .read_text()",
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
