"""归档 (issue 19, item 4) on the web: the archived case file's download, and an incident's page
read from the store when Temporal no longer holds its workflow (its history past the namespace's
retention): the rows, the timeline, the attachments and the archive, marked 已归档.

Who may download or read is who may see the incident (R-SECRECY), asked of the store's row with
the lists' rule: anyone else gets the 404 of an unknown id (the refused attempt noted in the
access log), an anonymous page the sign-in page, the API without a token a 401. A download is an
`export` in the access log, a page a `view`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from activities import documents
from activities.archive import REASONS
from plan.enums import Phase
from plan.incident import size_words
from starter import sheets
from starter.incidents import ServiceError
from store import archives, incident_rows
from store.db import session_scope
from store.models import Incident

from . import access, attachments
from .deps import ApiPerson, DocumentedQuery, PagePerson, PagesDep, StoreSession, not_found
from .deps import visible_to as involving_of
from .documents import DOCX_ANSWER
from .pages import Pages

router = APIRouter(include_in_schema=False)  # the page's download
api_router = APIRouter()

NOT_ARCHIVED = "该事件尚未归档：结案后自动归档处置台账，请稍后再试"


def _row(request: Request, kit: Pages, session: Session, person: str, incident_id: str) -> Incident:
    """The incident's row when the person may see it (R-SECRECY), else the 404 of an unknown id,
    the refused attempt noted."""
    row = documents.visible_row(session, incident_id, involving_of(kit.roster, person))
    if row is None:
        if documents.visible_row(session, incident_id, None) is not None:
            access.record(request, person, "view", incident_id=incident_id, granted=False)
        raise not_found(incident_id)
    return row


def _download(
    request: Request, kit: Pages, session: Session, person: str, incident_id: str
) -> Response:
    row = _row(request, kit, session, person, incident_id)
    held = archives.latest(session, incident_id=row.id)
    if held is None or held.content is None:
        raise ServiceError(404, NOT_ARCHIVED)
    access.record(request, person, "export", incident_id=row.id)
    number = row.short_number or row.id
    name = f"{documents.KINDS['case-file'].name}（归档）-{number}.docx"
    return Response(
        held.content,
        media_type=documents.MEDIA_TYPE,
        headers={
            "Content-Disposition": sheets.content_disposition(name, f"archive-{number}.docx"),
            "X-Content-SHA256": held.sha256,
        },
    )


@router.get("/incidents/{incident_id}/archive.docx")
def archive_download(
    request: Request, incident_id: str, me: PagePerson, kit: PagesDep, session: StoreSession
) -> Response:
    """The archived 处置台账 (the newest version the store holds)."""
    return _download(request, kit, session, me.person_id, incident_id)


@api_router.get(
    "/api/incidents/{incident_id}/archive",
    responses=DOCX_ANSWER,
    response_class=Response,
    dependencies=[DocumentedQuery],
)
def api_archive(
    request: Request, incident_id: str, person: ApiPerson, kit: PagesDep, session: StoreSession
) -> Response:
    """The incident's archived case file (处置台账, .docx), kept in the store since its closure,
    whatever Temporal's history retention (404: not archived yet). `X-Content-SHA256` is the
    file's hash as archived. R-SECRECY: only staff who may see the incident (others: 404)."""
    return _download(request, kit, session, person, incident_id)


# ------------------------------------------------------------------ the pages


def archived_page(kit: Pages, person: str, incident_id: str) -> dict[str, Any] | None:
    """The archived page's fields, from the store (None: no such incident for this person,
    R-SECRECY). Blocking: the page runs it in the thread pool."""
    with session_scope(kit.settings.database_url) as s:
        row = documents.visible_row(s, incident_id, involving_of(kit.roster, person))
        if row is None:
            return None
        redaction = archives.redaction(s, incident_id=row.id)
        versions = [
            {
                "at": a.archived_at,
                "reason": REASONS.get(a.reason, a.reason),
                "size": size_words(a.size),
                "held": a.purged_at is None,
            }
            for a in archives.versions(s, incident_id=row.id, with_content=False)
        ]
        timeline = [
            {"at": e.at, "actor": e.actor, "summary": e.summary}
            for e in incident_rows.timeline(s, incident_id=row.id)
        ]
        facts = {
            "id": row.id,
            "short_number": row.short_number,
            "title": row.title,
            "content": row.content,
            "source": row.source,
            "url": row.url,
            "reporter_unit": row.reporter_unit,
            "reporter_name": row.reporter_name,
            "responsible_unit": row.responsible_unit,
            "phase": Phase(row.phase).label,
            "closed": row.phase == Phase.closed.value,
            "drill": row.drill,
            "received_at": row.received_at,
            "closed_at": row.closed_at,
        }
    if redaction is not None:
        timeline.append(
            {"at": redaction.at, "actor": None, "summary": archives.describe(redaction)}
        )
    return {
        "a": facts,
        "timeline": timeline,
        "versions": versions,
        "archived": any(v["held"] for v in versions),
        "redaction": archives.describe(redaction) if redaction is not None else None,
        "attachments": attachments.listed(kit.settings, incident_id),
        "marker": archives.MARKER,
    }
