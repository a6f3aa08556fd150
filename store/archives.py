"""归档 (issue 19, item 4): a closed incident's archived case file, and the retention redaction of
the public's personal data, in the store (activities/archive.py generates the files).

The archive lives here, not in Temporal: a closed incident's history goes after the namespace's
retention, its rows and archived case file stay. The public's personal data in an incident's rows
is the post's content and link and the reporter's name (also the actor of the `reported` timeline
entry); `redact` replaces them with `MARKER` once, records the redaction, and deletes the bytes of
the archive versions written before it. Keyword-only arguments, one session per call site.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import exists, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, defer

from store.models import ArchiveRow, Incident, RedactionRow, TimelineEvent

MARKER = "〔已按保存期限删除〕"
# What a redaction replaces, and how the record names it (the ledger, the page).
FIELD_LABELS = {
    "content": "舆情内容",
    "url": "原帖链接",
    "reporter_name": "报告人姓名",
    "timeline.actor": "时间线中的报告人",
}
# The timeline entries whose actor is the reporter as they gave their name (free text).
REPORTER_KINDS = ("reported",)
CLOSED = "closed"


# --- the archive's versions ---


def find(
    session: Session, *, incident_id: str, snapshot_version: int, reason: str
) -> ArchiveRow | None:
    return session.scalars(
        select(ArchiveRow).where(
            ArchiveRow.incident_id == incident_id,
            ArchiveRow.snapshot_version == snapshot_version,
            ArchiveRow.reason == reason,
        )
    ).first()


def versions(
    session: Session, *, incident_id: str, with_content: bool = True
) -> Sequence[ArchiveRow]:
    """Every archive version of the incident, the oldest first (purged ones too); without
    `with_content` the bytes are not loaded (a list of versions)."""
    q = select(ArchiveRow).where(ArchiveRow.incident_id == incident_id).order_by(ArchiveRow.id)
    if not with_content:
        q = q.options(defer(ArchiveRow.content, raiseload=True))
    return session.scalars(q).all()


def newest_version(session: Session, *, incident_id: str) -> int | None:
    """The newest snapshot version archived (None: never archived)."""
    return session.scalar(
        select(func.max(ArchiveRow.snapshot_version)).where(ArchiveRow.incident_id == incident_id)
    )


def latest(session: Session, *, incident_id: str) -> ArchiveRow | None:
    """The newest version whose file is still held (None: not archived yet)."""
    return session.scalars(
        select(ArchiveRow)
        .where(ArchiveRow.incident_id == incident_id, ArchiveRow.purged_at.is_(None))
        .order_by(ArchiveRow.id.desc())
        .limit(1)
    ).first()


def add(
    session: Session,
    *,
    incident_id: str,
    snapshot_version: int,
    reason: str,
    body: bytes,
    now: datetime,
) -> tuple[ArchiveRow, bool]:
    """Keep one version of the case file: (the row, whether it is new). The same (incident,
    snapshot version, reason) again gives back the first row, its bytes unchanged."""
    found = find(session, incident_id=incident_id, snapshot_version=snapshot_version, reason=reason)
    if found is not None:
        return found, False
    row = ArchiveRow(
        incident_id=incident_id,
        snapshot_version=snapshot_version,
        reason=reason,
        archived_at=now,
        sha256=hashlib.sha256(body).hexdigest(),
        size=len(body),
        content=body,
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:  # the same version written at the same moment by a retry
        again = find(
            session, incident_id=incident_id, snapshot_version=snapshot_version, reason=reason
        )
        assert again is not None
        return again, False
    return row, True


def unarchived(session: Session) -> list[str]:
    """Closed incidents with no archive version of their current snapshot (a write whose
    archiving failed, incidents closed before archiving): the daily run archives them."""
    newest = (
        select(ArchiveRow.id)
        .where(
            ArchiveRow.incident_id == Incident.id,
            ArchiveRow.snapshot_version >= Incident.version,
        )
        .exists()
    )
    return list(
        session.scalars(
            select(Incident.id).where(Incident.phase == CLOSED, ~newest).order_by(Incident.id)
        )
    )


# --- the retention redaction ---


def redaction(session: Session, *, incident_id: str) -> RedactionRow | None:
    return session.scalars(
        select(RedactionRow).where(RedactionRow.incident_id == incident_id)
    ).first()


def due_for_redaction(session: Session, *, closed_before: datetime) -> list[str]:
    """Closed incidents closed at or before `closed_before` and not yet redacted."""
    done = exists().where(RedactionRow.incident_id == Incident.id)
    return list(
        session.scalars(
            select(Incident.id)
            .where(
                Incident.phase == CLOSED,
                Incident.closed_at.is_not(None),
                Incident.closed_at <= closed_before,
                ~done,
            )
            .order_by(Incident.closed_at, Incident.id)
        )
    )


def apply_markers(session: Session, *, incident_id: str) -> list[str]:
    """Replace the incident's personal data with MARKER; the fields that held any (already
    marked ones count: a later snapshot may have written them back)."""
    row = session.get(Incident, incident_id)
    if row is None:
        return []
    fields = ["content"]
    row.content = MARKER
    if row.url:
        row.url = MARKER
        fields.append("url")
    if row.reporter_name:
        row.reporter_name = MARKER
        fields.append("reporter_name")
    actors = session.execute(
        update(TimelineEvent)
        .where(
            TimelineEvent.incident_id == incident_id,
            TimelineEvent.kind.in_(REPORTER_KINDS),
            TimelineEvent.actor.is_not(None),
        )
        .values(actor=MARKER)
        .execution_options(synchronize_session=False)
    )
    if actors.rowcount:  # type: ignore[attr-defined]
        fields.append("timeline.actor")
    session.flush()
    return fields


def reapply_if_redacted(session: Session, *, incident_id: str) -> bool:
    """After a snapshot write: a redacted incident stays redacted (a write during the amendment
    period, or a late retry, carries the workflow's copy of the data). True when it applied."""
    if redaction(session, incident_id=incident_id) is None:
        return False
    apply_markers(session, incident_id=incident_id)
    return True


def redact(
    session: Session, *, incident_id: str, retention_days: int, by: str, now: datetime
) -> RedactionRow | None:
    """Redact one closed incident's personal data and record it, once (None: already done, or
    no such closed incident). The archive versions written before lose their bytes; the caller
    then archives the redacted case file."""
    row = session.get(Incident, incident_id, with_for_update=True)
    if row is None or row.phase != CLOSED:
        return None
    if redaction(session, incident_id=incident_id) is not None:
        return None
    fields = apply_markers(session, incident_id=incident_id)
    record = RedactionRow(
        incident_id=incident_id,
        at=now,
        fields=",".join(fields),
        retention_days=retention_days,
        by=by[:200],
    )
    try:
        with session.begin_nested():
            session.add(record)
    except IntegrityError:  # another run redacted it at the same moment
        return None
    session.execute(
        update(ArchiveRow)
        .where(ArchiveRow.incident_id == incident_id, ArchiveRow.purged_at.is_(None))
        .values(content=None, purged_at=now)
        .execution_options(synchronize_session=False)
    )
    return record


def describe(record: RedactionRow) -> str:
    """The redaction as the timeline, the page and the ledger say it."""
    labels = "、".join(FIELD_LABELS.get(f, f) for f in record.fields.split(",") if f)
    return (
        f"按个人信息保存期限（结案后{record.retention_days}天）删除公众个人信息：{labels}，"
        f"以“{MARKER}”代替；执行：{record.by}"
    )
