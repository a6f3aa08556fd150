"""Adding a staff action is adding a row to the one table (plan/actions.py `ACTIONS`): a sample
action put there by this test only, with no other change to the code, shows up in the API's
OpenAPI document, the CLI's help, the incident page's forms for a person who may take it, and the
workflow's validator, which refuses it from a person who may not and accepts it from one who may.

What the table cannot hold is what the action *does*: the core's method named like the action
(plan/incident.py `Incident.note` here, set on the class by the test). The workflow reaches a
table-only action through its generic update `act` (workflows/incident.py); docs/ARCHITECTURE.md
lists what a real new action touches besides."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import pytest
from pydantic import BaseModel, ConfigDict, Field
from temporalio.client import Client
from typer.testing import CliRunner

import starter.cli
from config.settings import Settings
from plan.actions import ACTIONS, OPEN_PHASES, ActionRule, Who
from plan.incident import Incident
from plan.models import Action
from plan.roster import Roster
from starter import incidents
from starter.web.app import create_app
from tests.helpers import app_over_asgi
from tests.test_api import sign_in, token_for
from tests.test_web_staff import forms_on, new_incident

NAME = "note"
LABEL = "记录备注"
HELP = "办公室在事件上记录一条备注（示例操作，只在测试中存在）。"
WIDE = {"COLUMNS": "200"}
ROUTE = f"/api/incidents/{{incident_id}}/actions/{NAME}"


class NoteRequest(BaseModel):
    """The sample action's request: one text."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    text: str = Field(min_length=1, max_length=200)


class Note(NoteRequest, Action):
    pass


NOTE = ActionRule(NoteRequest, Note, LABEL, HELP, Who.office, OPEN_PHASES)


def _note(self: Incident, action: Note) -> None:
    """What the action does, in the core (a real action's method lives in plan/incident.py)."""
    self.event("noted", action.actor, f"备注：{action.text}")
    self.changed()


@contextmanager
def sample_action() -> Iterator[None]:
    """The sample action in the table (and its effect in the core) for the block only."""
    assert NAME not in ACTIONS and not hasattr(Incident, NAME)
    ACTIONS[NAME] = NOTE
    Incident.note = _note  # type: ignore[attr-defined]
    try:
        yield
    finally:
        del ACTIONS[NAME]
        del Incident.note  # type: ignore[attr-defined]


@pytest.fixture
def note() -> Iterator[None]:
    with sample_action():
        yield


def test_the_openapi_document_has_its_route_and_schema(settings: Settings, roster: Roster) -> None:
    before = create_app(settings, roster=roster).openapi()
    assert ROUTE not in before["paths"]  # the test's own control: nothing there by accident
    with sample_action():
        doc = create_app(settings, roster=roster).openapi()
    route = doc["paths"][ROUTE]["post"]
    body = route["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/NoteRequest"}
    schema = doc["components"]["schemas"]["NoteRequest"]
    assert schema["required"] == ["text"] and schema["properties"]["text"]["maxLength"] == 200
    assert {p["name"] for p in route["parameters"]} >= {"incident_id"}


def test_the_clis_help_lists_it() -> None:
    """The CLI builds its commands from the table when imported: a fresh import, as `yuqing`
    starts, with the sample in the table has the command."""
    runner = CliRunner()
    try:
        with sample_action():
            cli = importlib.reload(starter.cli)
            top = runner.invoke(cli.app, ["--help"], env=WIDE)
            own = runner.invoke(cli.app, [NAME, "--help"], env=WIDE)
    finally:
        cli = importlib.reload(starter.cli)  # the CLI as it was, without the sample
    assert top.exit_code == 0 and NAME in top.output.split(), top.output
    assert own.exit_code == 0, own.output
    assert "--text" in own.output and "incident_id" in own.output
    assert HELP[:8] in own.output and Who.office.value in own.output
    assert NAME not in runner.invoke(cli.app, ["--help"], env=WIDE).output.split()


@pytest.fixture
async def http(
    note: None, client: Client, settings: Settings, roster: Roster, executor: ThreadPoolExecutor
) -> AsyncIterator[httpx.AsyncClient]:
    async with app_over_asgi(client, settings, roster, executor) as c:
        yield c


async def test_the_page_offers_it_and_the_workflow_validates_it(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    # No update of its own: the starter sends it through the workflow's generic update.
    assert NAME not in incidents.UPDATES
    incident_id = await new_incident(http)
    page_url = f"/incidents/{incident_id}"

    # The page: the office's head (Who.office) is offered the form, the leader is not.
    await sign_in(http, settings, "wang.jianguo")
    page = await http.get(page_url)
    assert page.status_code == 200 and NAME not in forms_on(page.text)
    csrf = await sign_in(http, settings, "liu.yang")
    page = await http.get(page_url)
    assert NAME in forms_on(page.text), page.text
    assert LABEL in page.text and HELP in page.text and 'name="text"' in page.text

    # The workflow's validator refuses the leader (he may see the incident, not take this).
    api = f"/api/incidents/{incident_id}/actions/{NAME}"
    r = await http.post(api, json={"text": "不应记录"}, headers=token_for(settings, "wang.jianguo"))
    assert r.status_code == 403 and Who.office.value in r.text, r.text

    # …and accepts the office's head, from the page's form; the core records it.
    r = await http.post(
        f"{page_url}/actions/{NAME}", data={"csrf_token": csrf, "text": "已电话核实"}
    )
    assert (
        r.status_code == 303 and r.headers["location"] == f"{page_url}?done={NAME}#action-done"
    ), r.text
    r = await http.get(f"/api/incidents/{incident_id}", headers=token_for(settings, "liu.yang"))
    summaries = [e["summary"] for e in r.json()["timeline"]]
    assert "备注：已电话核实" in summaries and "备注：不应记录" not in summaries
