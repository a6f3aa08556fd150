"""Schemathesis against the app in-process (issue 17, finding 2): every operation under /api, in
positive and negative mode, with all of Schemathesis's default checks (no server error, documented
status, content type and headers, response schema, schema-valid data accepted, schema-invalid data
rejected), a fixed seed and EXAMPLES examples per operation and mode; then stateful: the OpenAPI
links from a submission's `id` to reading the incident and to every staff action, so actions run
on real incidents and not only on unknown ids. Zero failures are required.

The app runs with a real Temporal server (the dev server) and the worker; the caller is the office
(`liu.yang`, who may read and act on every incident) by bearer token. Schemathesis calls the app
through its ASGI client from a thread of its own (its event loop, not the test's).

What the document cannot say, and is adjusted in generated *positive* cases (never a check turned
off; negative cases are sent as generated):

- Times relative to now and to each other (`discovered_at`, `posted_at`, `oral_reported_at`: not in
  the future, the post before its discovery, the call after it): JSON Schema has no "now", nor a
  comparison between two fields. Positive cases get times of the last hour, in order.
- People (`spokesperson`, `person`, `participants`, `persons`): the public document does not list
  the staff's names (units are listed: the public submission form offers them); positive cases name
  people of the roster.
- The report's and the access log's `start` not after `end`, and the report's at most ten years
  apart: a comparison of two parameters. Positive cases get them in order, and the same day when
  too far apart.

- An attachment's file (`POST /api/incidents/{id}/attachments`, issue 19) is checked by its content:
  an image, a PDF or a Word document, which a schema cannot say of a `format: binary` string.
  Positive cases send a small PNG (a different one each time, so most are new, not deduplicated).
- A submission's `submission_key` is made unique: a stateful scenario replayed would otherwise
  find the incident it made before (R-DEDUP), in a later phase.

Every call carries the office's valid token (a generated `Authorization` header is replaced): the
401s are tested in tests/test_api.py and tests/security/. Stateful failures are collected rather
than raised, since a scenario cannot be replayed on incidents it has already changed; and no
shrinking phase runs (each failure is reported as found).

Excluded operations: none under /api. (/healthz, /readyz and the pages are not under /api.)

About 40 seconds (28 operations, 2 modes, 20 examples each; 20 stateful scenarios of 10 calls), so
it is in the quick suite, not `make reliability`.
"""

from __future__ import annotations

import asyncio
import io
import random
import traceback
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from typing import Any

import hypothesis
import pytest_asyncio
import schemathesis

# Imported here, not lazily by schemathesis in the thread the calls run in: pytest rewrites
# schemathesis' modules (it is a pytest plugin), and CPython 3.11's `ast.parse` in one thread
# while another parses too fails with "AST constructor recursion depth mismatch" (seen in CI).
import schemathesis.transport.asgi
import schemathesis.transport.requests
import schemathesis.transport.wsgi
from hypothesis import HealthCheck
from PIL import Image
from schemathesis import Case, GenerationMode
from temporalio.client import Client

from config.settings import Settings
from plan.roster import Roster
from starter.incidents import PERSON_FIELDS
from starter.web.app import create_app
from starter.web.reports import MAX_PERIOD
from store import credentials
from store.db import session_scope
from tests.conftest import start_dev_server
from tests.helpers import running_worker

SEED = 17
EXAMPLES = 20
STATEFUL_EXAMPLES = 20
STEPS = 10  # calls per stateful scenario: a submission, then reads and actions on its incident
CALLER = "liu.yang"  # the office: reads every incident, takes most actions
SUBMISSIONS = ("/api/incidents", "/api/leads")
TIMES = ("posted_at", "discovered_at", "oral_reported_at")  # in this order


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client() -> AsyncIterator[Client]:
    """A dev server (the real CLI) for this module's two tests, each with a task queue and a store
    of its own: the time-skipping test server loses an update now and then under this load
    ("invalid history builder state for action")."""
    env = await start_dev_server()
    async with env:
        yield env.client


def _settings(examples: int) -> hypothesis.settings:
    return hypothesis.settings(
        max_examples=examples,
        stateful_step_count=STEPS,
        deadline=None,
        database=None,
        derandomize=False,
        report_multiple_bugs=True,
        suppress_health_check=list(HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )


def _png() -> bytes:
    """A small PNG of a random colour: a valid attachment by its content."""
    out = io.BytesIO()
    Image.new("RGB", (4, 4), tuple(random.randrange(256) for _ in range(3))).save(out, "PNG")
    return out.getvalue()


def adjust(roster: Roster) -> Callable[[Case], None]:
    """What positive cases need that the document cannot say (the module's docstring)."""
    people = sorted(p.id for p in roster.people)

    def fix(case: Case) -> None:
        meta = case.meta
        if meta is None or meta.generation.mode is not GenerationMode.POSITIVE:
            return
        body = case.body
        if isinstance(body, dict) and case.operation.path in SUBMISSIONS:
            # A new incident each time: a scenario replayed (to shrink it) starts afresh rather
            # than finding the incident it made before (R-DEDUP) in a later phase.
            body["submission_key"] = f"schemathesis-{uuid.uuid4().hex}"
        if isinstance(body, dict) and case.operation.path.endswith("/attachments"):
            body["file"] = _png()
            return
        if isinstance(body, dict) and case.operation.path == "/api/absences":
            # 代理: a period from now into the future, a stand-in of the leading group for the
            # caller (the office, which may declare for anyone: the person is the caller's own).
            now = datetime.now(UTC)
            body.pop("person", None)
            body["stand_in"] = roster.leading_group.deputy
            body.pop("starts_at", None)
            body["ends_at"] = (now + timedelta(hours=1)).isoformat()
            return
        if isinstance(body, dict):
            now = datetime.now(UTC)
            for minutes, name in zip((50, 40, 30), TIMES, strict=True):
                if isinstance(body.get(name), str):
                    body[name] = (now - timedelta(minutes=minutes)).isoformat()
            for name in PERSON_FIELDS:
                value = body.get(name)
                if isinstance(value, str):
                    body[name] = people[len(value) % len(people)]
                elif isinstance(value, list):
                    body[name] = [people[i % len(people)] for i in range(len(value))]
        query = case.query
        if isinstance(query, dict):
            start, end = query.get("start"), query.get("end")
            if isinstance(start, str) and isinstance(end, str) and start and end:
                first, last = sorted((date.fromisoformat(start), date.fromisoformat(end)))
                if last - first >= MAX_PERIOD:
                    last = first
                query["start"], query["end"] = first.isoformat(), last.isoformat()

    return fix


def run_operations(schema: Any, headers: dict[str, str], fix: Callable[[Case], None]) -> list[str]:
    """Every /api operation, positive then negative; the failures as Schemathesis reports them."""
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @hypothesis.seed(SEED)
            @_settings(EXAMPLES)
            @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
            def check(case: Case) -> None:
                fix(case)
                case.call_and_validate(headers=headers)

            try:
                check()
            except (Exception, BaseExceptionGroup) as exc:
                failures.append(_failure(f"{operation.label} [{mode.value}]", exc))
    return failures


def run_stateful(schema: Any, headers: dict[str, str], fix: Callable[[Case], None]) -> list[str]:
    """Submissions, then the linked reads and actions on the incidents they made. Failures are
    collected, not raised: a scenario depends on what the incidents did before, so Hypothesis
    could not replay one to shrink it."""
    failures: dict[str, str] = {}
    answered: dict[int, int] = {}  # the staff actions' status codes

    class Machine(schema.as_state_machine()):  # type: ignore[misc]
        def before_call(self, case: Case) -> None:
            fix(case)

        def after_call(self, response: Any, case: Case) -> None:
            super().after_call(response, case)
            if "/actions/" in case.operation.path:
                answered[response.status_code] = answered.get(response.status_code, 0) + 1

        def get_call_kwargs(self, case: Case) -> dict[str, Any]:
            return {"headers": headers}

        def validate_response(self, response: Any, case: Case, **kwargs: Any) -> None:
            try:
                super().validate_response(response, case, **kwargs)
            except (Exception, BaseExceptionGroup) as exc:
                for failure in getattr(exc, "exceptions", [exc]):
                    key = f"{case.operation.label}: {getattr(failure, 'title', type(failure))}"
                    failures.setdefault(key, _failure(f"stateful {key}", exc))

    try:
        hypothesis.seed(SEED)(lambda: Machine.run(settings=_settings(STATEFUL_EXAMPLES)))()
    except (Exception, BaseExceptionGroup) as exc:
        failures["stateful run"] = _failure("stateful run", exc)
    # Actions reached real incidents: taken (200), or refused by the workflow for its phase or
    # the caller's role (409, 403), not only the 404 of an unknown id.
    if not any(answered.get(code) for code in (200, 403, 409)):
        failures["links"] = f"no staff action reached an incident: {answered}"
    print("schemathesis: staff actions answered", dict(sorted(answered.items())))
    return list(failures.values())


def _failure(label: str, exc: BaseException) -> str:
    text = "".join(traceback.format_exception(exc, chain=False))
    return f"{label}: {text[-6000:]}"


async def _run(
    run: Callable[[Any, dict[str, str], Callable[[Case], None]], list[str]],
    client: Client,
    settings: Settings,
    roster: Roster,
    executor: ThreadPoolExecutor,
) -> list[str]:
    app = create_app(settings, client=client, roster=roster)
    with session_scope(settings.database_url) as s:
        token = credentials.create_token(s, person_id=CALLER)
    headers = {"Authorization": f"Bearer {token}"}
    async with running_worker(client, settings, executor):
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        schema = schema.include(path_regex="^/api/")
        return await asyncio.to_thread(run, schema, headers, adjust(roster))


async def test_every_operation_keeps_the_document(
    client: Client, settings: Settings, roster: Roster, executor: ThreadPoolExecutor
) -> None:
    failures = await _run(run_operations, client, settings, roster, executor)
    assert not failures, "\n\n".join(failures)


async def test_linked_actions_on_real_incidents_keep_the_document(
    client: Client, settings: Settings, roster: Roster, executor: ThreadPoolExecutor
) -> None:
    failures = await _run(run_stateful, client, settings, roster, executor)
    assert not failures, "\n\n".join(failures)
