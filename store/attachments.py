"""Attachments' metadata (issue 19): one row per file added to an incident, and where its file
lies (`path_of`: the web app writes the files, the documents built by activities read them). The web app writes a
row after the file is on disk and before the workflow records the reference; a refused update
takes its row back (`remove`), leaving at most a file no row names (harmless: the same content
added again finds it there)."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from config.settings import Settings
from store.models import AttachmentRow


def file_path(root: Path, sha256: str) -> Path:
    assert re.fullmatch(r"[0-9a-f]{64}", sha256), sha256  # a hash, never a name
    return root / sha256[:2] / sha256


def path_of(settings: Settings, sha256: str) -> Path | None:
    """The file of this content, or None when it is not on disk (deleted or lost)."""
    path = file_path(settings.attachment_folder(), sha256)
    return path if path.is_file() else None


@dataclass(frozen=True)
class Attachment:
    """What the pages and the API show of one attachment."""

    id: str
    incident_id: str
    sha256: str
    size: int
    media_type: str
    name: str
    added_by: str
    added_at: datetime


def _of(row: AttachmentRow) -> Attachment:
    return Attachment(
        row.id,
        row.incident_id,
        row.sha256,
        row.size,
        row.media_type,
        row.display_name,
        row.added_by,
        row.added_at,
    )


def find(session: Session, incident_id: str, sha256: str) -> Attachment | None:
    row = session.scalars(
        select(AttachmentRow).where(
            AttachmentRow.incident_id == incident_id, AttachmentRow.sha256 == sha256
        )
    ).first()
    return _of(row) if row else None


def add(
    session: Session,
    *,
    incident_id: str,
    sha256: str,
    size: int,
    media_type: str,
    name: str,
    added_by: str,
    now: datetime | None = None,
    id: str | None = None,
) -> tuple[Attachment, bool]:
    """The incident's row for this content: (the row, whether it is new). The same content added
    to the same incident again gives back the first row (deduplicated by hash). `id` is given
    when the workflow already names the file (the report form's evidence, issue 19)."""
    found = find(session, incident_id, sha256)
    if found is not None:
        return found, False
    row = AttachmentRow(
        id=id or uuid.uuid4().hex,
        incident_id=incident_id,
        sha256=sha256,
        size=size,
        media_type=media_type,
        display_name=name,
        added_by=added_by,
        added_at=now or datetime.now(UTC),
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:  # the same content at the same moment from another request
        again = find(session, incident_id, sha256)
        assert again is not None
        return again, False
    return _of(row), True


def get(session: Session, incident_id: str, attachment_id: str) -> Attachment | None:
    row = session.get(AttachmentRow, attachment_id)
    return _of(row) if row is not None and row.incident_id == incident_id else None


def for_incident(session: Session, incident_id: str) -> list[Attachment]:
    rows = session.scalars(
        select(AttachmentRow)
        .where(AttachmentRow.incident_id == incident_id)
        .order_by(AttachmentRow.added_at, AttachmentRow.id)
    )
    return [_of(r) for r in rows]


def remove(session: Session, attachment_id: str) -> None:
    """Take back a row whose workflow update was refused (the file stays: harmless)."""
    session.execute(delete(AttachmentRow).where(AttachmentRow.id == attachment_id))
