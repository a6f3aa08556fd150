"""Finding 8 (issue 15): a request body is capped while it streams in, and an action's token is
checked before its body is read.

Each test streams a chunked body (no Content-Length) from a generator through the real app and
counts the bytes the app pulled before it answered: the honest measure of what it held in memory,
rather than the process's size."""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from temporalio.client import Client

from config.settings import Settings
from plan.roster import Roster
from starter.web.app import MAX_BODY, create_app
from starter.web.limits import MAX_FORM_BODY, MULTIPART_ROOM
from tests.test_api import csrf_in, token_for

CHUNK = 64 * 1024
EVIDENCE_CAP = Settings.model_fields["attachment_max_mb"].default * 1024 * 1024 + MULTIPART_ROOM
TOTAL = 64 * 1024 * 1024  # what the sender offers; far more than any cap


class Chunked:
    """A request body of `total` bytes in chunks, counting what was pulled."""

    def __init__(self, total: int = TOTAL, head: bytes = b"") -> None:
        self.total = total
        self.head = head
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self.head:
            self.pulled += len(self.head)
            yield self.head
        while self.pulled < self.total:
            self.pulled += CHUNK
            yield b"x" * CHUNK


@pytest.fixture
async def http(
    client: Client, settings: Settings, roster: Roster, executor: ThreadPoolExecutor
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, client=client, roster=roster)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        yield c


def assert_too_large(r: httpx.Response, body: Chunked, cap: int) -> None:
    assert r.status_code == 413, (r.status_code, r.text[:300])
    assert "请求内容过大" in r.text
    assert body.pulled <= cap + CHUNK, f"read {body.pulled} bytes before refusing"


async def test_anonymous_json_submissions_are_capped_while_streaming(
    http: httpx.AsyncClient,
) -> None:
    for path in ("/api/incidents", "/api/leads"):
        body = Chunked(head=b'{"title": "')
        r = await http.post(path, content=body, headers={"content-type": "application/json"})
        assert_too_large(r, body, MAX_BODY)
        assert r.json()["detail"].startswith("请求内容过大")


async def test_forms_are_capped_while_streaming(http: httpx.AsyncClient) -> None:
    form = {"content-type": "application/x-www-form-urlencoded"}
    body = Chunked(head=b"title=")
    assert_too_large(await http.post("/incidents", content=body, headers=form), body, MAX_FORM_BODY)
    login = await http.get("/login")
    body = Chunked(head=f"csrf_token={csrf_in(login.text)}&token=".encode())
    assert_too_large(await http.post("/login", content=body, headers=form), body, MAX_FORM_BODY)
    # The report form as multipart (issue 19, item 5: it takes screenshots and PDFs): a text
    # field stops at its own 1 MB (the multipart parser's cap on a field) ...
    multipart = {"content-type": "multipart/form-data; boundary=b"}
    body = Chunked(head=b'--b\r\ncontent-disposition: form-data; name="title"\r\n\r\n')
    r = await http.post("/incidents", content=body, headers=multipart)
    assert r.status_code == 413 and "内容过大" in r.text, r.text[:300]
    assert body.pulled <= MAX_FORM_BODY + 2 * CHUNK, f"read {body.pulled} bytes before refusing"
    # ... and files at the attachment cap, for all of them together, counted as they stream in.
    head = b'--b\r\ncontent-disposition: form-data; name="evidence"; filename="a.png"\r\n\r\n'
    body = Chunked(head=head)
    assert_too_large(
        await http.post("/incidents", content=body, headers=multipart), body, EVIDENCE_CAP
    )


async def test_a_declared_length_over_the_cap_is_refused_before_reading(
    http: httpx.AsyncClient,
) -> None:
    body = Chunked(total=MAX_BODY + CHUNK)
    r = await http.post(
        "/api/incidents",
        content=body,
        headers={"content-type": "application/json", "content-length": str(MAX_BODY + CHUNK)},
    )
    assert r.status_code == 413 and body.pulled == 0


async def test_an_action_checks_the_token_before_reading_the_body(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    path = "/api/incidents/YQ-20260101-000000000000/actions/triage"
    json = {"content-type": "application/json"}
    for headers in ({}, {"authorization": "Bearer yq_not_a_token"}):
        body = Chunked()
        r = await http.post(path, content=body, headers=json | headers)
        assert r.status_code == 401 and "令牌" in r.json()["detail"], r.text
        assert body.pulled == 0, f"read {body.pulled} bytes before checking the token"
    # Signed in, the body is still capped while it streams.
    body = Chunked(head=b'{"note": "')
    r = await http.post(path, content=body, headers=json | token_for(settings, "liu.yang"))
    assert_too_large(r, body, MAX_BODY)


async def test_an_action_body_is_still_validated_against_its_schema(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    """Authenticating first changes nothing for a signed-in caller: a bad body is a 422 naming
    the field, and the OpenAPI document keeps each action's own request schema."""
    office = token_for(settings, "liu.yang")
    r = await http.post(
        "/api/incidents/YQ-20260101-000000000000/actions/triage",
        json={"severity": "不存在"},
        headers=office,
    )
    assert r.status_code == 422 and {e["field"] for e in r.json()["errors"]} >= {"severity"}
    spec = (await http.get("/openapi.json")).json()
    route = spec["paths"]["/api/incidents/{incident_id}/actions/triage"]["post"]
    assert route["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/TriageRequest"
    )
