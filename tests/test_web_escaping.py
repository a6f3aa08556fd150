"""Titles and contents with HTML, script tags and template syntax are shown as text everywhere."""

from __future__ import annotations

import httpx
from temporalio.client import Client

from config.settings import Settings
from starter import incidents
from store import incident_rows, notifications
from tests.helpers import eventually, stored, submission
from tests.test_api import http, sign_in, token_for  # noqa: F401  (http: the app and a worker)

HOSTILE_TITLE = '<script>alert("x")</script>{{ 7*7 }}{% if 1 %}IF{% endif %}'
HOSTILE_CONTENT = "<img src=x onerror=alert(1)> ${7*7} {{ config }}"


async def test_hostile_text_is_shown_as_text_on_every_page(
    http: httpx.AsyncClient,  # noqa: F811
    client: Client,
    settings: Settings,
) -> None:
    r = await http.post(
        "/api/incidents",
        json=submission(title=HOSTILE_TITLE, content=HOSTILE_CONTENT, severity="major"),
        headers=token_for(
            settings, "zhou.ting"
        ),  # the office's monitoring officer: answered in full
    )
    assert r.status_code == 201, r.text
    incident_id = r.json()["id"]
    # Stored as typed, not altered.
    assert r.json()["title"] == HOSTILE_TITLE
    await incidents.act(
        client,
        incident_id,
        "triage",
        {"severity": "major", "category": "hype", "responsible_unit": "cjb", "note": HOSTILE_TITLE},
        "liu.yang",
    )
    await eventually(lambda: stored(settings.database_url, incident_rows.list_incidents))
    await eventually(
        lambda: stored(settings.database_url, notifications.inbox, recipient="liu.yang")
    )
    await sign_in(http, settings, "liu.yang")
    pages = [
        f"/incidents/{incident_id}",
        "/incidents",
        "/my",
        "/inbox",
        "/dashboard",
    ]
    for path in pages:
        page = await http.get(path)
        assert page.status_code == 200, (path, page.status_code)
        html = page.text
        assert "<script>alert" not in html and "<img src=x" not in html, path
        if "alert(" in html:  # the title is shown here: as text, template syntax untouched
            assert "&lt;script&gt;" in html and "{{ 7*7 }}" in html, path
            assert "{% if 1 %}IF{% endif %}" in html, path
    detail = (await http.get(f"/incidents/{incident_id}")).text
    assert (
        "&lt;script&gt;" in detail and "{{ 7*7 }}" in detail and "{% if 1 %}IF{% endif %}" in detail
    )
    assert "&lt;img src=x onerror=alert(1)&gt;" in detail and "{{ config }}" in detail
    # The JSON API returns the text as data, and the CLI/API consumers get it unchanged.
    got = await http.get(f"/api/incidents/{incident_id}", headers=token_for(settings, "liu.yang"))
    assert got.json()["content"] == HOSTILE_CONTENT
