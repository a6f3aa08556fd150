"""R-SECRECY, R-ACTIVATE: the lists show someone exactly the incidents the incident page lets them
read. The page asks starter/web/deps.py (`involved_units` and the persons named by activation);
the lists ask the store's filter, which must be the same rule: a unit the leading group brought
in, and a person it named, find the incident in their list (the store's query, the JSON API the
CLI uses, the HTML list); a unit with no part in it does not, nor does the named person's unit.

Through the real HTTP app, a worker and the time-skipping server, on each store backend (SQLite,
and PostgreSQL when YUQING_TEST_DATABASE_URL is set)."""

from __future__ import annotations

import httpx
import pytest
from temporalio.client import Client

from config.settings import Settings
from plan.roster import Roster
from starter import incidents
from starter.web.deps import visible_to
from store import incident_rows
from store.db import session_scope
from tests.conftest import make_settings
from tests.helpers import eventually, stored, submit, triage
from tests.test_api import http, sign_in, token_for  # noqa: F401  (http: the app and a worker)

BROUGHT_IN_UNIT = "yjb"  # 应急管理办, no part in the incident until the leading group adds it
IN_BROUGHT_IN_UNIT = "zheng.lei"  # its head
NAMED = "xu.lei"  # 社会事务办 staff, named in person
NAMED_PERSONS_UNIT_MATE = "wu.fang"  # 社会事务办 too, not named: the naming is personal
UNRELATED = "feng.gang"  # 东湖村, no part in it


@pytest.fixture
def settings(store_url: str) -> Settings:
    """The app's and the worker's settings on this backend (conftest's are SQLite only)."""
    return make_settings(store_url)


def listed(settings: Settings, roster: Roster, person: str) -> set[str]:
    """The incidents the store lists for `person`, asked as the web's lists ask it."""
    with session_scope(settings.database_url) as s:
        rows = incident_rows.list_incidents(s, involving=visible_to(roster, person), limit=500)
        return {r.id for r in rows}


async def test_a_unit_and_a_person_brought_in_find_the_incident_in_their_lists(
    http: httpx.AsyncClient,  # noqa: F811
    client: Client,
    settings: Settings,
    roster: Roster,
) -> None:
    view = await submit(client, settings, roster)
    await triage(client, view.id, severity="major", unit="cjb")
    activated = await incidents.act(
        client,
        view.id,
        "activate",
        {"units": [BROUGHT_IN_UNIT], "persons": [NAMED], "note": "应急、社会事务介入"},
        "wang.jianguo",
    )
    assert activated.activated_units == [BROUGHT_IN_UNIT]
    assert activated.activated_persons == [NAMED]
    # The activation's snapshot is in the read model (the timeline is written with it).
    await eventually(
        lambda: any(
            e.kind == "activated"
            for e in stored(settings.database_url, incident_rows.timeline, incident_id=view.id)
        )
    )

    seeing = (IN_BROUGHT_IN_UNIT, NAMED)
    not_seeing = (UNRELATED, NAMED_PERSONS_UNIT_MATE)
    # The incident page: deps lets the brought-in unit and the named person read it.
    for person in (*seeing, *not_seeing):
        r = await http.get(f"/api/incidents/{view.id}", headers=token_for(settings, person))
        assert r.status_code == (200 if person in seeing else 404), (person, r.text)

    # The store's list, as the web asks it.
    found = {
        person: view.id in listed(settings, roster, person) for person in (*seeing, *not_seeing)
    }
    # The JSON API's list (the CLI's `yuqing list`).
    api = {}
    for person in (*seeing, *not_seeing):
        r = await http.get(
            "/api/incidents", params={"limit": 500}, headers=token_for(settings, person)
        )
        assert r.status_code == 200, r.text
        api[person] = view.id in {i["id"] for i in r.json()["items"]}
    # The HTML list.
    page = {}
    for person in (*seeing, *not_seeing):
        await sign_in(http, settings, person)
        r = await http.get("/incidents")
        assert r.status_code == 200, r.text
        page[person] = f'href="/incidents/{view.id}"' in r.text

    expected = {person: person in seeing for person in (*seeing, *not_seeing)}
    assert (found, api, page) == (expected, expected, expected), {
        "store": found,
        "api": api,
        "page": page,
    }
