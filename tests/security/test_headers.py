"""Issue 15, finding 10: security headers on every answer, nothing confidential kept in a cache,
and the API docs (Swagger UI) served by this app itself: no script from a CDN, no inline script.
The browser side of the CSP (the pages still work under it) is in tests/test_browser.py."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client

from config.settings import Settings
from plan.roster import Roster
from starter.web.app import create_app
from tests.conftest import make_settings
from tests.helpers import app_over_asgi, submission
from tests.test_api import sign_in, token_for

TEMPLATES = Path(__file__).resolve().parents[2] / "starter" / "web" / "templates"
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I)
INLINE_STYLE = re.compile(r"<style\b|\sstyle=", re.I)
HANDLER = re.compile(r"\son[a-z]+\s*=", re.I)


@pytest.fixture
async def http(
    client: Client, settings: Settings, roster: Roster, executor: ThreadPoolExecutor
) -> AsyncIterator[httpx.AsyncClient]:
    async with app_over_asgi(client, settings, roster, executor) as c:
        yield c


def directives(response: httpx.Response) -> dict[str, str]:
    csp = response.headers.get("content-security-policy", "")
    out = {}
    for part in csp.split(";"):
        name, _, value = part.strip().partition(" ")
        if name:
            out[name] = value.strip()
    return out


def check_headers(response: httpx.Response) -> None:
    csp = directives(response)
    assert csp.get("default-src") == "'self'", csp
    assert csp.get("frame-ancestors") == "'none'", csp
    assert csp.get("object-src") == "'none'" and csp.get("base-uri") in ("'none'", "'self'"), csp
    for name in ("script-src", "style-src"):
        assert "'unsafe-inline'" not in csp.get(name, "") and "'unsafe-eval'" not in csp.get(
            name, ""
        ), csp
        assert "http" not in csp.get(name, ""), csp  # no other host
    assert response.headers.get("x-content-type-options") == "nosniff"
    assert response.headers.get("x-frame-options") == "DENY"
    # Not "no-referrer": a browser then sends `Origin: null` on same-site POSTs, which the
    # Origin check refuses. "same-origin" gives other sites nothing (no incident ids in URLs).
    assert response.headers.get("referrer-policy") == "same-origin"


def no_store(response: httpx.Response) -> bool:
    return "no-store" in response.headers.get("cache-control", "")


async def test_every_page_and_api_answer_has_the_headers_and_confidential_ones_no_store(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    office = token_for(settings, "liu.yang")
    r = await http.post(
        "/api/incidents", json=submission(), headers=token_for(settings, "zhou.ting")
    )
    assert r.status_code == 201, r.text
    incident_id = r.json()["id"]
    assert no_store(r)
    check_headers(r)

    api = [
        "/api/incidents",
        f"/api/incidents/{incident_id}",
        "/api/reports/accountability?start=2026-01-01&end=2026-01-31",
    ]
    for path in api:
        got = await http.get(path, headers=office)
        assert got.status_code == 200, (path, got.text[:200])
        check_headers(got)
        assert no_store(got), path
    refused = await http.get("/api/incidents")  # 401: an error answer has them too
    assert refused.status_code == 401
    check_headers(refused)
    assert no_store(refused)

    for path in ("/", "/login", "/report/oral"):
        got = await http.get(path)
        assert got.status_code == 200, path
        check_headers(got)

    await sign_in(http, settings, "liu.yang")
    pages = [
        "/incidents",
        f"/incidents/{incident_id}",
        "/inbox",
        "/my",
        "/dashboard",
        "/reports/accountability",
        "/reports/accountability.csv",
        "/reports/accountability.xlsx",  # the Excel exports (issue 19): never cached either
        "/incidents.xlsx",
    ]
    for path in pages:
        got = await http.get(path)
        assert got.status_code == 200, (path, got.text[:200])
        check_headers(got)
        assert no_store(got), path
        if "text/html" in got.headers["content-type"]:
            assert not INLINE_SCRIPT.search(got.text), path
            assert not INLINE_STYLE.search(got.text), path
            assert not HANDLER.search(got.text), path

    # Static files may be cached (they hold nothing confidential), and are nosniff too.
    css = await http.get("/static/style.css")
    assert css.status_code == 200 and not no_store(css)
    assert css.headers.get("x-content-type-options") == "nosniff"


def test_templates_have_no_inline_script_style_or_handlers() -> None:
    for template in sorted(TEMPLATES.glob("*.html")):
        text = template.read_text(encoding="utf-8")
        assert not INLINE_SCRIPT.search(text), template.name
        assert not INLINE_STYLE.search(text), template.name
        assert not HANDLER.search(text), template.name


async def test_hsts_only_when_served_over_https(
    client: Client, database_url: str, roster: Roster
) -> None:
    for public_url, expected in (
        ("https://yq.example.gov.cn", True),
        ("http://localhost:8000", False),
    ):
        app = create_app(
            make_settings(database_url, public_url=public_url), client=client, roster=roster
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            r = await c.get("/login")
        hsts = r.headers.get("strict-transport-security")
        if expected:
            assert hsts is not None and "max-age=31536000" in hsts, hsts
        else:
            assert hsts is None


async def test_api_docs_are_served_from_the_package_without_inline_script(
    client: Client, database_url: str, roster: Roster
) -> None:
    app = create_app(make_settings(database_url), client=client, roster=roster)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        docs = await c.get("/api/docs")
        assert docs.status_code == 200 and "text/html" in docs.headers["content-type"]
        check_headers(docs)
        assert "接口文档" in docs.text
        assert not INLINE_SCRIPT.search(docs.text) and not INLINE_STYLE.search(docs.text)
        assert not HANDLER.search(docs.text)
        refs = re.findall(r'(?:src|href)="([^"]+)"', docs.text)
        assert refs, docs.text
        refs = [r for r in refs if r != "data:,"]  # the empty favicon: no request at all
        assert not [r for r in refs if "//" in r], refs  # nothing from another host (no CDN)
        scripts = re.findall(r'<script[^>]*\bsrc="([^"]+)"', docs.text)
        assert any("swagger-ui-bundle" in s for s in scripts), scripts
        for ref in refs:
            got = await c.get(ref)
            assert got.status_code == 200, ref
            if ref.endswith(".js"):
                assert "javascript" in got.headers["content-type"], ref
            if ref.endswith(".css"):
                assert "text/css" in got.headers["content-type"], ref
        spec = await c.get("/openapi.json")
        assert spec.status_code == 200 and "/api/incidents" in spec.json()["paths"]
