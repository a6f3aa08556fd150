"""The incident's Word documents as downloads (issue 19, item 1): the page's 文书 section links
here, and the API gives the same files by bearer token.

Built from the store (activities/documents.py), so a case Temporal no longer holds still has its
documents. Who may download is who may see the incident (R-SECRECY), asked of the store's row with
the lists' rule: anyone else gets the 404 of an unknown id (the refused attempt noted), an
anonymous page the sign-in page, the API without a token a 401. Every download is an `export` in
the access log.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from activities import documents
from starter.incidents import ServiceError

from . import access, contract
from .deps import (
    ApiPerson,
    DocumentedQuery,
    PagePerson,
    PagesDep,
    StoreSession,
    not_found,
    visible_to,
)
from .pages import Pages

router = APIRouter(include_in_schema=False)  # the pages' downloads
api_router = APIRouter()

IncidentKind = Literal["written-report", "progress", "summary", "case-file"]
DOCX_ANSWER: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Word 文书（.docx），由事件记录生成",
        "content": {documents.MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
    },
    **contract.refusals(*contract.AUTHENTICATED, 404, 500),
}
KIND_PARAM: Any = Path(
    description="文书种类：written-report 舆情信息报告，progress 续报，"
    "summary 处置情况报告，case-file 处置台账"
)


def attachment(name: str, fallback: str) -> str:
    """Content-Disposition with the Chinese name (RFC 5987) and an ASCII fallback."""
    ascii_name = re.sub(r"[^A-Za-z0-9._-]", "_", fallback)
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


def _builder(
    request: Request, kit: Pages, session: Session, person: str, incident_id: str
) -> documents.Builder:
    row = documents.visible_row(session, incident_id, visible_to(kit.roster, person))
    if row is None:
        if documents.visible_row(session, incident_id, None) is not None:
            access.record(request, person, "view", incident_id=incident_id, granted=False)
        raise not_found(incident_id)
    return documents.Builder(session, row, kit.roster, kit.tz, kit.settings)


def _answer(
    request: Request,
    kit: Pages,
    person: str,
    builder: documents.Builder,
    kind: str,
    context: dict[str, Any],
) -> Response:
    try:
        body = documents.render(kit.settings, kind, context)
    except documents.TemplateBroken as exc:
        raise ServiceError(500, exc.message) from exc
    access.record(request, person, "export", incident_id=builder.row.id)
    number = builder.row.short_number or builder.row.id
    name = documents.KINDS[kind].name
    return Response(
        body,
        media_type=documents.MEDIA_TYPE,
        headers={
            "Content-Disposition": attachment(f"{name}-{number}.docx", f"{kind}-{number}.docx")
        },
    )


@router.get("/incidents/{incident_id}/documents/{kind}.docx")
def document_download(
    request: Request,
    incident_id: str,
    kind: str,
    me: PagePerson,
    kit: PagesDep,
    session: StoreSession,
) -> Response:
    builder = _builder(request, kit, session, me.person_id, incident_id)
    if kind not in documents.INCIDENT_KINDS:
        raise ServiceError(404, "没有这种文书")
    return _answer(request, kit, me.person_id, builder, kind, builder.context())


@router.get("/incidents/{incident_id}/documents/escalation/{deadline_key}/{step}.docx")
def escalation_notice(
    request: Request,
    incident_id: str,
    deadline_key: str,
    step: int,
    me: PagePerson,
    kit: PagesDep,
    session: StoreSession,
) -> Response:
    """R-ESCALATE: the 督办通知 of one step of one deadline."""
    builder = _builder(request, kit, session, me.person_id, incident_id)
    context = builder.escalation(deadline_key, step)
    if context is None:
        raise ServiceError(404, "没有这一级督办记录")
    return _answer(request, kit, me.person_id, builder, "escalation", context)


@api_router.get(
    "/api/incidents/{incident_id}/documents/{kind}",
    responses=DOCX_ANSWER,
    response_class=Response,
    dependencies=[DocumentedQuery],
)
def api_document(
    request: Request,
    incident_id: str,
    kind: Annotated[IncidentKind, KIND_PARAM],
    person: ApiPerson,
    kit: PagesDep,
    session: StoreSession,
) -> Response:
    """An incident's Word document (R-WRITTEN, R-PROGRESS, R-SUMMARY, the case file), from its
    record in the store. R-SECRECY: only staff with a role on it (others: 404)."""
    builder = _builder(request, kit, session, person, incident_id)
    return _answer(request, kit, person, builder, kind, builder.context())


@api_router.get(
    "/api/incidents/{incident_id}/documents/escalation/{deadline_key}/{step}",
    responses=DOCX_ANSWER,
    response_class=Response,
    dependencies=[DocumentedQuery],
)
def api_escalation_notice(
    request: Request,
    incident_id: str,
    deadline_key: Annotated[str, Path(description="逾期期限的键（见事件的 deadlines）")],
    step: Annotated[int, Path(ge=1, le=100, description="督办级别")],
    person: ApiPerson,
    kit: PagesDep,
    session: StoreSession,
) -> Response:
    """R-ESCALATE: the 督办通知 of one escalation step, from the store (404: no such step)."""
    builder = _builder(request, kit, session, person, incident_id)
    context = builder.escalation(deadline_key, step)
    if context is None:
        raise ServiceError(404, "没有这一级督办记录")
    return _answer(request, kit, person, builder, "escalation", context)
