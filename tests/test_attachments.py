"""Attachments on an incident (issue 19, item 3): images, PDFs and Word documents, checked by their
content (never their name or declared type), size-capped while they stream in, stored once under
their sha256, shown and served only to those who may see the incident (R-SECRECY), and recorded on
the incident's timeline through the workflow's `attach` action (a reference, never the contents).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docx
import httpx
import pytest
from PIL import Image
from pypdf import PdfWriter
from temporalio.client import Client

from config.settings import Settings
from plan.roster import Roster
from store import attachments as stored_attachments
from store.db import session_scope
from tests.conftest import make_settings
from tests.helpers import app_over_asgi
from tests.test_api import sign_in, token_for
from tests.test_web_staff import new_incident

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


def pdf() -> bytes:
    out = io.BytesIO()
    writer = PdfWriter()
    writer.add_blank_page(width=72, height=72)
    writer.write(out)
    return out.getvalue()


def word() -> bytes:
    out = io.BytesIO()
    document = docx.Document()
    document.add_paragraph("书面情况报告")
    document.save(out)
    return out.getvalue()


def plain_zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("readme.txt", "not a word document")
    return out.getvalue()


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, attachment_dir=tmp_path / "attachments", attachment_max_mb=1)


@pytest.fixture
async def http(
    client: Client, settings: Settings, roster: Roster, executor: ThreadPoolExecutor
) -> AsyncIterator[httpx.AsyncClient]:
    async with app_over_asgi(client, settings, roster, executor) as c:
        yield c


def files_in(settings: Settings) -> list[Path]:
    root = settings.attachment_dir
    assert root is not None
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def rows(settings: Settings, incident_id: str) -> list[stored_attachments.Attachment]:
    with session_scope(settings.database_url) as s:
        return stored_attachments.for_incident(s, incident_id)


async def upload(
    http: httpx.AsyncClient,
    settings: Settings,
    incident_id: str,
    name: str,
    content: bytes,
    person: str = "liu.yang",
    declared: str = "application/octet-stream",
) -> httpx.Response:
    return await http.post(
        f"/api/incidents/{incident_id}/attachments",
        files={"file": (name, content, declared)},
        headers=token_for(settings, person),
    )


async def test_from_the_page_and_the_api_listed_and_on_the_timeline(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    incident_id = await new_incident(http)
    page_url = f"/incidents/{incident_id}"
    csrf = await sign_in(http, settings, "liu.yang")
    page = await http.get(page_url)
    assert 'id="attach-form"' in page.text and 'enctype="multipart/form-data"' in page.text

    # The page's form (CSRF as every form), post/redirect/get.
    r = await http.post(
        f"{page_url}/attachments",
        data={"csrf_token": csrf},
        files={"file": ("现场照片.png", png(), "image/png")},
    )
    assert r.status_code == 303, r.text
    assert r.headers["location"] == f"{page_url}?done=attach#action-done"
    # Without the CSRF token: refused, nothing more stored.
    r = await http.post(f"{page_url}/attachments", files={"file": ("x.png", png(), "image/png")})
    assert r.status_code in (400, 403)

    # The API, with a bearer token: a PDF and a Word document.
    r = await upload(http, settings, incident_id, "情况说明.pdf", pdf())
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["media_type"] == "application/pdf" and body["name"] == "情况说明.pdf"
    assert body["added_by"] == "liu.yang" and len(body["sha256"]) == 64
    r = await upload(http, settings, incident_id, "书面报告.docx", word())
    assert r.status_code == 201 and r.json()["media_type"] == DOCX, r.text

    # Listed on the page with who added it; on the timeline, through the workflow.
    page = await http.get(page_url)
    for name in ("现场照片.png", "情况说明.pdf", "书面报告.docx"):
        assert name in page.text
    got = await http.get(f"/api/incidents/{incident_id}", headers=token_for(settings, "liu.yang"))
    summaries = [e["summary"] for e in got.json()["timeline"]]
    assert any("现场照片.png" in s and "附件" in s for s in summaries), summaries
    assert sum("附件" in s for s in summaries) == 3
    listed = got.json()["attachments"]
    assert [a["name"] for a in listed] == ["现场照片.png", "情况说明.pdf", "书面报告.docx"]
    assert all(a["download_url"].endswith(a["id"]) for a in listed)
    assert len(rows(settings, incident_id)) == 3 and len(files_in(settings)) == 3


async def test_the_content_decides_not_the_name_or_declared_type(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    incident_id = await new_incident(http)
    cases = [
        ("photo.png", b"just some text, not an image", "image/png"),
        ("broken.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "image/png"),
        ("report.pdf", b"%PDF-1.7\n" + b"garbage " * 100, "application/pdf"),
        ("report.docx", plain_zip(), DOCX),
        ("page.html", b"<html><script>alert(1)</script></html>", "text/html"),
    ]
    for name, content, declared in cases:
        r = await upload(http, settings, incident_id, name, content, declared=declared)
        assert r.status_code == 422, (name, r.text)
        assert "附件" in r.json()["detail"], r.text
    assert rows(settings, incident_id) == [] and files_in(settings) == []


async def test_oversize_is_refused_and_nothing_stored(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    incident_id = await new_incident(http)
    big = png() + b"\x00" * (1024 * 1024 + 1)
    r = await upload(http, settings, incident_id, "big.png", big)
    assert r.status_code == 413 and "1MB" in r.json()["detail"], r.text
    # Far past it: the request's own cap (limits.BodyLimit) stops it while it streams in.
    r = await upload(http, settings, incident_id, "bigger.png", big + b"\x00" * 200_000)
    assert r.status_code == 413 and "附件过大（上限1MB）" in r.json()["detail"], r.text
    assert rows(settings, incident_id) == [] and files_in(settings) == []


async def test_a_name_with_path_characters_is_only_display_text(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    incident_id = await new_incident(http)
    r = await upload(http, settings, incident_id, "../../etc/passwd", png())
    assert r.status_code == 201, r.text
    body = r.json()
    assert "/" not in body["name"] and "\\" not in body["name"] and ".." not in body["name"]
    assert body["name"] == "passwd"
    long = "很长的名字" * 100 + ".png"
    r = await upload(http, settings, incident_id, long, pdf())
    assert r.status_code == 201 and len(r.json()["name"]) <= 120, r.text
    # Stored under the content's hash only.
    names = {p.name for p in files_in(settings)}
    assert names == {body["sha256"], r.json()["sha256"]}


async def test_only_those_who_may_see_the_incident(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    incident_id = await new_incident(http)
    r = await upload(http, settings, incident_id, "a.png", png())
    assert r.status_code == 201
    attachment = r.json()["id"]
    api_file = f"/api/incidents/{incident_id}/attachments/{attachment}"

    # R-SECRECY: an outsider learns nothing (404, as for the incident), uploads nothing.
    outsider = await upload(http, settings, incident_id, "b.pdf", pdf(), person="xu.lei")
    assert outsider.status_code == 404, outsider.text
    got = await http.get(api_file, headers=token_for(settings, "xu.lei"))
    assert got.status_code == 404
    # Anonymous: 401 on the API, to the sign-in page on the pages.
    anonymous = await http.post(
        f"/api/incidents/{incident_id}/attachments", files={"file": ("c.png", png(), "image/png")}
    )
    assert anonymous.status_code == 401
    assert (await http.get(api_file)).status_code == 401
    page_file = f"/incidents/{incident_id}/attachments/{attachment}"
    r = await http.get(page_file)
    assert r.status_code in (303, 307) and "/login" in r.headers["location"]
    await sign_in(http, settings, "xu.lei")
    assert (await http.get(page_file)).status_code == 404
    assert len(rows(settings, incident_id)) == 1


async def test_download_headers_and_the_access_log(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    incident_id = await new_incident(http)
    content = pdf()
    r = await upload(http, settings, incident_id, '情况 说明".pdf', content, declared="text/html")
    assert r.status_code == 201
    attachment = r.json()["id"]
    got = await http.get(
        f"/api/incidents/{incident_id}/attachments/{attachment}",
        headers=token_for(settings, "liu.yang"),
    )
    assert got.status_code == 200 and got.content == content
    assert got.headers["content-type"] == "application/pdf"
    assert got.headers["x-content-type-options"] == "nosniff"
    disposition = got.headers["content-disposition"]
    assert disposition.startswith("attachment;") and "filename*=UTF-8''" in disposition
    assert '"' not in disposition.split("filename*=")[1]
    await sign_in(http, settings, "liu.yang")
    page_got = await http.get(f"/incidents/{incident_id}/attachments/{attachment}")
    assert page_got.status_code == 200 and page_got.content == content
    log = await http.get(
        "/api/access-log", params={"incident": incident_id}, headers=token_for(settings, "liu.yang")
    )
    assert sum(i["action"] == "download" for i in log.json()["items"]) == 2, log.text


async def test_the_same_content_is_stored_once(http: httpx.AsyncClient, settings: Settings) -> None:
    first_incident = await new_incident(http)
    second_incident = await new_incident(http, title="另一条舆情")
    content = png()
    first = await upload(http, settings, first_incident, "a.png", content)
    again = await upload(http, settings, first_incident, "same.png", content)
    other = await upload(http, settings, second_incident, "b.png", content)
    assert first.status_code == 201 and again.status_code == 200 and other.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert first.json()["sha256"] == other.json()["sha256"]
    assert len(files_in(settings)) == 1
    assert len(rows(settings, first_incident)) == 1 and len(rows(settings, second_incident)) == 1


async def test_a_file_lost_on_disk(http: httpx.AsyncClient, settings: Settings) -> None:
    incident_id = await new_incident(http)
    r = await upload(http, settings, incident_id, "lost.png", png())
    attachment = r.json()["id"]
    for path in files_in(settings):
        path.unlink()
    got = await http.get(
        f"/api/incidents/{incident_id}/attachments/{attachment}",
        headers=token_for(settings, "liu.yang"),
    )
    assert got.status_code == 410 and "附件文件已丢失" in got.json()["detail"], got.text
    await sign_in(http, settings, "liu.yang")
    page = await http.get(f"/incidents/{incident_id}")
    assert page.status_code == 200 and "lost.png" in page.text and "文件已丢失" in page.text


async def test_the_workflow_decides_who_may_attach_and_a_refusal_keeps_no_row(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    """The `attach` row of plan/actions.py UPLOADS (Who.attaching): the leader may attach; a
    member of the leading group may see the incident but not attach (403 from the workflow's
    validator). The refused upload's row is taken back; its file stays on disk, named by no row
    and served to nobody (harmless), and the same content added by someone who may finds it."""
    incident_id = await new_incident(http)
    member = await upload(http, settings, incident_id, "m.png", png(), person="chen.zhiqiang")
    assert member.status_code == 403 and "附件" not in member.json()["detail"], member.text
    assert "领导小组组长" in member.json()["detail"]
    assert rows(settings, incident_id) == [] and len(files_in(settings)) == 1
    leader = await upload(http, settings, incident_id, "l.png", png(), person="wang.jianguo")
    assert leader.status_code == 201, leader.text
    assert len(rows(settings, incident_id)) == 1 and len(files_in(settings)) == 1
    # No page form for the member; the form for the leader.
    await sign_in(http, settings, "chen.zhiqiang")
    page = await http.get(f"/incidents/{incident_id}")
    assert page.status_code == 200 and 'id="attach-form"' not in page.text
    assert "l.png" in page.text  # those who may see it see its attachments


async def test_the_history_holds_a_reference_never_the_contents(
    http: httpx.AsyncClient, settings: Settings, client: Client
) -> None:
    """R-SECRECY: histories are kept for years; an attachment's entry in one is its id, hash,
    type, size and display name, never a byte of the file."""
    from tests.security.test_secrets_in_history import leaked

    marker = "MARKER-7f3a-不应进入历史"
    out = io.BytesIO()
    writer = PdfWriter()
    writer.add_blank_page(width=72, height=72)
    writer.add_metadata({"/Title": marker, "/Author": "13900000001"})
    writer.write(out)
    incident_id = await new_incident(http)
    r = await upload(http, settings, incident_id, "书面报告.pdf", out.getvalue())
    assert r.status_code == 201, r.text
    history = (await client.get_workflow_handle(incident_id).fetch_history()).to_json()
    assert leaked(history, {r.json()["sha256"], "书面报告.pdf"}) == [
        r.json()["sha256"],
        "书面报告.pdf",
    ]
    assert leaked(history, {marker, "13900000001", "MARKER-7f3a"}) == []


async def test_a_zip_that_unpacks_too_large_is_refused_unopened(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    """python-docx reads a package into memory: a small ZIP that unpacks huge is refused first."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", b"\x00" * (300 * 1024 * 1024))
    assert len(out.getvalue()) < 1024 * 1024
    incident_id = await new_incident(http)
    r = await upload(http, settings, incident_id, "bomb.docx", out.getvalue())
    assert r.status_code == 422 and "解压后过大" in r.json()["detail"], r.text
    assert files_in(settings) == []


async def test_the_page_form_refuses_in_chinese_and_stores_nothing(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    incident_id = await new_incident(http)
    csrf = await sign_in(http, settings, "liu.yang")
    r = await http.post(
        f"/incidents/{incident_id}/attachments",
        data={"csrf_token": csrf},
        files={"file": ("照片.png", b"MZ\x90\x00 not an image", "image/png")},
    )
    assert r.status_code == 422 and "附件类型不受支持" in r.text, r.text
    r = await http.post(f"/incidents/{incident_id}/attachments", data={"csrf_token": csrf})
    assert r.status_code == 422 and "请选择要上传的附件文件" in r.text, r.text
    assert rows(settings, incident_id) == [] and files_in(settings) == []


async def test_the_case_file_includes_the_attachments(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    """Issue 19, item 3: the 处置台账 lists every attachment (name, type, size, who added it and
    when, its SHA-256) and shows the pictures themselves: a WebP, which Word cannot show, as PNG;
    a file lost on disk is listed as lost and the rest of the case file is still given."""
    incident_id = await new_incident(http)
    webp = io.BytesIO()
    Image.new("RGB", (40, 300), (30, 30, 200)).save(webp, "WEBP")  # a phone's tall screenshot
    for name, content in (
        ("帖子截图.png", png()),
        ("长截图.webp", webp.getvalue()),
        ("情况说明.pdf", pdf()),
    ):
        r = await upload(http, settings, incident_id, name, content)
        assert r.status_code in (200, 201), (name, r.text)
    stored = {a.name: a for a in rows(settings, incident_id)}
    # A fourth, whose file is then lost on disk.
    lost = io.BytesIO()
    Image.new("RGB", (8, 8), (0, 160, 0)).save(lost, "PNG")
    r = await upload(http, settings, incident_id, "已删帖.jpg", lost.getvalue())
    assert r.status_code == 201, r.text
    lost_sha = r.json()["sha256"]
    (settings.attachment_dir / lost_sha[:2] / lost_sha).unlink()  # type: ignore[operator]

    await sign_in(http, settings, "liu.yang")
    got = await http.get(f"/incidents/{incident_id}/documents/case-file.docx")
    assert got.status_code == 200, got.text
    doc = docx.Document(io.BytesIO(got.content))
    text = "\n".join(p.text for p in doc.paragraphs)
    assert "八、附件" in text
    for name in ("帖子截图.png", "长截图.webp", "情况说明.pdf"):
        assert name in text, name
        assert stored[name].sha256 in text, name
    assert "PNG图片" in text and "WebP图片" in text and "PDF文档" in text
    assert "已删帖.jpg" in text and "文件缺失" in text
    # Two pictures (the PNG and the WebP), placed as PNG; none for the PDF or the lost file.
    pictures = [rel.target_part for rel in doc.part.rels.values() if rel.reltype.endswith("/image")]
    assert len(pictures) == 2, pictures
    assert all(p.content_type == "image/png" for p in pictures)
    shapes = doc.inline_shapes
    assert len(shapes) == 2
    assert all(s.width <= docx.shared.Mm(150) + 1 for s in shapes)
    assert all(s.height <= docx.shared.Mm(200) + 1 for s in shapes)
