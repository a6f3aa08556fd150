"""Attachments on an incident (issue 19, item 3): uploaded from the incident page (a multipart form,
CSRF as every form) or the API (bearer token), downloaded by those who may see the incident.

An upload, in order: R-SECRECY (the caller may see the incident, else 404 as for an unknown id);
the file streamed to a temporary file (413 past YUQING_ATTACHMENT_MAX_MB; limits.BodyLimit caps
the request as a whole); its content checked (starter/attachments.py: 422 unless an image, a PDF
or a Word document); kept under its sha256 (stored once); its row in the store; then the
workflow's `attach` action (plan/actions.py `UPLOADS`), which puts a reference on the timeline and
refuses what the table refuses (who, phase). A refused update takes the row back and leaves the
file: harmless, named by no row, found again by the same content.

A download says `attachment` with the name as RFC 5987 `filename*`, the stored media type (never
text/html: only the types content checks give) and `nosniff`; it is in the access log. A file
gone from disk answers 410 with a Chinese message; the page still lists it, marked lost.

Two more ways in (issue 19, item 5): the written report and the summary uploaded as a document
from their forms (starter/web/staff.py: `add` with `allowed` PDF/DOCX, then the action names the
attachment), and the public report form's evidence (`receive_evidence`: every file checked before
the incident starts, kept and named in its input, its rows written after the start as the
reporter's, or `anonymous`).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from temporalio.client import Client

from config.settings import Settings
from plan.incident import size_words
from plan.models import ATTACHMENT_TYPES, AttachRequest
from starter import attachments as files
from starter import incidents
from starter.errors import FieldError
from starter.incidents import ServiceError
from store import attachments as rows
from store.db import session_scope

from . import access, contract
from .deps import (
    ApiPerson,
    IncidentPagePerson,
    PagePerson,
    PagesDep,
    TemporalClient,
    refuse_unless_in_store,
    require_visible,
)
from .forms import read_form
from .pages import Pages

router = APIRouter()
pages_router = APIRouter(include_in_schema=False)

FIELD = "file"
UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [FIELD],
                    "properties": {
                        FIELD: {
                            "type": "string",
                            "format": "binary",
                            "description": "图片（PNG、JPEG、WebP）、PDF或DOCX文字文档，"
                            "按文件内容识别（不看文件名和声明的类型）",
                        }
                    },
                }
            }
        },
    }
}
ATTACHMENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "incident_id", "sha256", "size", "media_type", "name", "added_by"],
    "properties": {
        "id": {"type": "string"},
        "incident_id": {"type": "string"},
        "sha256": {"type": "string"},
        "size": {"type": "integer"},
        "media_type": {"type": "string", "enum": sorted(ATTACHMENT_TYPES)},
        "name": {"type": "string", "description": "原文件名（仅作显示，已去除路径字符）"},
        "added_by": {"type": "string"},
        "added_at": {"type": "string", "format": "date-time"},
        "download_url": {"type": "string"},
    },
}
_ANSWER = {"content": {"application/json": {"schema": ATTACHMENT_SCHEMA}}}
UPLOADED: dict[int | str, dict[str, Any]] = {
    201: {"description": "附件已添加，并记入事件时间线", **_ANSWER},
    200: {"description": "相同内容的附件已在该事件上：返回原附件", **_ANSWER},
    **contract.refusals(*contract.AUTHENTICATED, 403, 404, 409, 413, 503),
}
FILE_CONTENT = {t: {"schema": {"type": "string", "format": "binary"}} for t in ATTACHMENT_TYPES}
DOWNLOAD: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "附件文件（Content-Disposition: attachment）",
        "content": FILE_CONTENT,
        "headers": {
            "Content-Disposition": {"schema": {"type": "string"}},
            "X-Content-Type-Options": {"schema": {"type": "string"}},
        },
    },
    410: {"model": contract.ApiError, "description": "附件文件已丢失（记录仍在）"},
    **contract.refusals(*contract.AUTHENTICATED, 404, 503),
}


def as_json(a: rows.Attachment) -> dict[str, Any]:
    return {
        "id": a.id,
        "incident_id": a.incident_id,
        "sha256": a.sha256,
        "size": a.size,
        "media_type": a.media_type,
        "name": a.name,
        "added_by": a.added_by,
        "added_at": a.added_at.isoformat(),
        "download_url": f"/api/incidents/{quote(a.incident_id)}/attachments/{a.id}",
    }


def of_incident(settings: Settings, incident_id: str) -> list[dict[str, Any]]:
    """The API's list of an incident's attachments (GET /api/incidents/{id})."""
    with session_scope(settings.database_url) as s:
        return [as_json(a) for a in rows.for_incident(s, incident_id)]


def listed(settings: Settings, incident_id: str) -> list[dict[str, Any]]:
    """The incident page's list: each attachment, and whether its file is still on disk."""
    with session_scope(settings.database_url) as s:
        return listed_in(s, settings, incident_id)


def listed_in(s: Session, settings: Settings, incident_id: str) -> list[dict[str, Any]]:
    """`listed`, in a session the caller holds."""
    found = rows.for_incident(s, incident_id)
    return [
        {
            "id": a.id,
            "name": a.name,
            "kind": ATTACHMENT_TYPES.get(a.media_type, a.media_type),
            "size": size_words(a.size),
            "added_by": a.added_by,
            "added_at": a.added_at,
            "lost": rows.path_of(settings, a.sha256) is None,
        }
        for a in found
    ]


async def _file_of(form: Any) -> UploadFile:
    upload = form.get(FIELD)
    if not isinstance(upload, UploadFile):
        problem = FieldError(FIELD, "附件：请选择要上传的文件")
        raise ServiceError(422, "请选择要上传的附件文件", [problem])
    return upload


async def add(
    kit: Pages,
    incident_id: str,
    person: str,
    upload: UploadFile,
    *,
    field: str = FIELD,
    allowed: Collection[str] | None = None,
    refusal: str = "",
) -> tuple[Any, bool]:
    """Store the file and its row, then record the reference through the workflow; the caller
    has checked that `person` may see the incident. With `allowed`, a file of another type is
    refused (422, `refusal`) before anything is kept (issue 19, item 5: a document only)."""
    settings = kit.settings
    try:
        temp, sha256, size = await files.receive(settings, upload)
    except files.TooLarge as exc:
        raise ServiceError(413, str(exc), [FieldError(field, str(exc))]) from exc
    if size == 0:
        temp.unlink(missing_ok=True)
        raise ServiceError(422, "附件是空文件，请重新选择", [FieldError(field, "附件：空文件")])
    try:
        kept = await run_in_threadpool(
            files.check_and_keep, settings, temp, sha256, size, allowed, refusal
        )
    except files.Refused as exc:
        raise ServiceError(422, str(exc), [FieldError(field, f"附件：{exc}")]) from exc
    name = files.display_name(upload.filename)

    def remember() -> tuple[rows.Attachment, bool]:
        with session_scope(settings.database_url) as s:
            return rows.add(
                s,
                incident_id=incident_id,
                sha256=kept.sha256,
                size=kept.size,
                media_type=kept.media_type,
                name=name,
                added_by=person,
            )

    attachment, created = await run_in_threadpool(remember)
    if not created:
        return attachment, False
    data = {
        "attachment_id": attachment.id,
        "sha256": attachment.sha256,
        "media_type": attachment.media_type,
        "size": attachment.size,
        "name": attachment.name,
    }
    client = await kit.state.temporal()
    try:
        await incidents.perform(client, incident_id, "attach", data, person, roster=kit.roster)
    except ServiceError as exc:
        if exc.status != 503:  # refused for sure: take the row back (the file stays, harmless)

            def forget() -> None:
                with session_scope(settings.database_url) as s:
                    rows.remove(s, attachment.id)

            await run_in_threadpool(forget)
        raise
    return attachment, True


@router.post(
    "/api/incidents/{incident_id}/attachments",
    status_code=201,
    responses=UPLOADED,
    openapi_extra=UPLOAD_BODY,
    tags=["attachments"],
    summary="添加附件",
)
async def api_upload(
    request: Request, incident_id: str, client: TemporalClient, person: ApiPerson, kit: PagesDep
) -> Response:
    """A file added to the incident: images (PNG, JPEG, WebP), PDF or Word (.docx), by content."""
    require_visible(kit.roster, person, await incidents.get(client, incident_id), incident_id)
    upload = await _file_of(await read_form(request))
    attachment, created = await add(kit, incident_id, person, upload)
    return JSONResponse(as_json(attachment), status_code=201 if created else 200)


async def _may_download(
    request: Request, kit: Pages, client: Client, person: str, incident_id: str
) -> None:
    """The incident's view decides who may download (R-SECRECY); when the workflow is gone (an
    archived incident), its row in the store does, by the same rule."""
    try:
        require_visible(kit.roster, person, await incidents.get(client, incident_id), incident_id)
    except ServiceError as exc:
        if exc.status != 404:
            raise
        await refuse_unless_in_store(request, kit, person, incident_id, exc)


def _download(
    request: Request, kit: Pages, person: str, incident_id: str, attachment_id: str
) -> Response:
    with session_scope(kit.settings.database_url) as s:
        attachment = rows.get(s, incident_id, attachment_id)
    if attachment is None:
        raise ServiceError(404, f"附件“{attachment_id}”不存在")
    access.record(request, person, "download", incident_id=incident_id, resource=attachment.id)
    path = rows.path_of(kit.settings, attachment.sha256)
    if path is None:
        raise ServiceError(410, f"附件文件已丢失（{attachment.name}），请联系管理员或重新上传")
    disposition = f"attachment; filename*=UTF-8''{quote(attachment.name, safe='')}"
    return FileResponse(
        path,
        media_type=attachment.media_type,
        headers={"Content-Disposition": disposition, "X-Content-Type-Options": "nosniff"},
    )


@router.get(
    "/api/incidents/{incident_id}/attachments/{attachment_id}",
    responses=DOWNLOAD,
    response_class=Response,
    tags=["attachments"],
    summary="下载附件",
)
async def api_download(
    request: Request,
    incident_id: str,
    attachment_id: str,
    client: TemporalClient,
    person: ApiPerson,
    kit: PagesDep,
) -> Response:
    await _may_download(request, kit, client, person, incident_id)
    return await run_in_threadpool(_download, request, kit, person, incident_id, attachment_id)


@pages_router.post("/incidents/{incident_id}/attachments")
async def page_upload(
    request: Request, incident_id: str, me: IncidentPagePerson, kit: PagesDep
) -> Response:
    """The incident page's form: post/redirect/get to the page's notice, as the action forms."""
    await read_form(request)  # parsed once (the body capped), then read from the cache
    form = await kit.posted(request, me)  # the Origin and CSRF checks
    client = await kit.state.temporal()
    view = await incidents.get(client, incident_id)
    require_visible(kit.roster, me.person_id, view, incident_id)
    await add(kit, incident_id, me.person_id, await _file_of(form))
    return RedirectResponse(
        f"/incidents/{quote(incident_id)}?done=attach#action-done", status_code=303
    )


@pages_router.get("/incidents/{incident_id}/attachments/{attachment_id}")
async def page_download(
    request: Request, incident_id: str, attachment_id: str, me: PagePerson, kit: PagesDep
) -> Response:
    await _may_download(request, kit, await kit.state.temporal(), me.person_id, incident_id)
    return await run_in_threadpool(
        _download, request, kit, me.person_id, incident_id, attachment_id
    )


# ---------------------------------------------------------------- the report form's evidence

EVIDENCE_FIELD = "evidence"
ANONYMOUS = "anonymous"  # the row's `added_by` for a file an anonymous reporter sent


@dataclass
class Evidence:
    """A file the report form received and found acceptable, not yet kept: its temporary file
    and the reference the workflow will hold."""

    temp: Path
    ref: AttachRequest


def _evidence_error(status: int, message: str) -> ServiceError:
    return ServiceError(status, message, [FieldError(EVIDENCE_FIELD, f"证据文件：{message}")])


async def receive_evidence(settings: Settings, form: Any) -> list[Evidence]:
    """Issue 19, item 5: the public report form's files (screenshots, PDFs), each received and
    checked by its content before anything is started; all of them under one upload's cap.
    A refused file refuses them all (ServiceError naming the file), nothing left behind."""
    uploads = [u for u in form.getlist(EVIDENCE_FIELD) if isinstance(u, UploadFile) and u.filename]
    if len(uploads) > files.EVIDENCE_MAX:
        raise _evidence_error(422, f"最多{files.EVIDENCE_MAX}个文件")
    got: list[Evidence] = []
    total = 0
    try:
        for upload in uploads:
            name = files.display_name(upload.filename)
            try:
                temp, sha256, size = await files.receive(settings, upload)
            except files.TooLarge as exc:
                raise _evidence_error(413, f"“{name}”：{exc}") from exc
            total += size
            got.append(Evidence(temp, _placeholder(sha256, size, name)))
            if size == 0:
                raise _evidence_error(422, f"“{name}”是空文件")
            if total > settings.attachment_max_mb * 1024 * 1024:
                raise _evidence_error(413, f"合计超过{settings.attachment_max_mb}MB，请压缩后重试")
            refusal = "只接受截图（PNG、JPEG、WebP）或PDF"
            try:
                media_type = await run_in_threadpool(
                    files.check, temp, files.EVIDENCE_TYPES, refusal
                )
            except files.Refused as exc:
                raise _evidence_error(422, f"“{name}”：{exc}") from exc
            got[-1].ref = got[-1].ref.model_copy(update={"media_type": media_type})
    except BaseException:
        for e in got:
            e.temp.unlink(missing_ok=True)
        raise
    unique: dict[str, Evidence] = {}
    for e in got:  # the same file twice: attached once
        if e.ref.sha256 in unique:
            e.temp.unlink(missing_ok=True)
        else:
            unique[e.ref.sha256] = e
    return list(unique.values())


def _placeholder(sha256: str, size: int, name: str) -> AttachRequest:
    return AttachRequest.model_construct(
        attachment_id=uuid.uuid4().hex,
        sha256=sha256,
        media_type="application/pdf",
        size=max(size, 1),
        name=name,
    )


def drop_evidence(received: list[Evidence]) -> None:
    for e in received:
        e.temp.unlink(missing_ok=True)


def keep_evidence(settings: Settings, received: list[Evidence]) -> list[AttachRequest]:
    """The checked files kept under their hashes: the references the workflow starts with."""
    for e in received:
        files.keep(settings, e.temp, e.ref.sha256)
    return [AttachRequest.model_validate(e.ref.model_dump()) for e in received]


def record_evidence(
    settings: Settings, incident_id: str, refs: list[AttachRequest], person: str | None
) -> None:
    """The rows of the evidence the new incident started with (the workflow already names
    them): the reporter's, or `anonymous` (never a unit's or person's for an anonymous caller)."""
    with session_scope(settings.database_url) as s:
        for ref in refs:
            rows.add(
                s,
                incident_id=incident_id,
                sha256=ref.sha256,
                size=ref.size,
                media_type=ref.media_type,
                name=ref.name,
                added_by=person or ANONYMOUS,
                id=ref.attachment_id,
            )
