"""The access log in the store: append and read, nothing else. There is deliberately no function
that changes or removes a row, and the table's triggers (migration 0007) refuse UPDATE and DELETE
from anyone else too."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from store.models import AccessLogRow

ACTIONS = ("view", "list", "export", "report", "decode", "encode", "audit")


@dataclass(frozen=True)
class AccessEntry:
    """One read: who (a roster person id), what kind of read, of which resource (a path, with the
    incident's id when it is one incident), when, from which client address, and whether it was
    allowed (False: refused, logged so that attempts show too)."""

    at: datetime
    person_id: str | None
    action: str
    resource: str
    incident_id: str | None = None
    client: str | None = None
    granted: bool = True

    def row(self) -> dict[str, object]:
        return {
            "at": self.at,
            "person_id": self.person_id and self.person_id[:200],
            "action": self.action[:20],
            "resource": self.resource[:500],
            "incident_id": self.incident_id and self.incident_id[:64],
            "client": self.client and self.client[:100],
            "granted": self.granted,
        }


def append(session: Session, entries: Sequence[AccessEntry]) -> None:
    """Add entries in one INSERT."""
    if entries:
        session.execute(insert(AccessLogRow), [e.row() for e in entries])


def read(
    session: Session,
    *,
    person_id: str | None = None,
    action: str | None = None,
    incident_id: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> Sequence[AccessLogRow]:
    """Entries, the newest first; `start` inclusive, `end` exclusive."""
    q = select(AccessLogRow)
    if person_id:
        q = q.where(AccessLogRow.person_id == person_id)
    if action:
        q = q.where(AccessLogRow.action == action)
    if incident_id:
        q = q.where(AccessLogRow.incident_id == incident_id)
    if start is not None:
        q = q.where(AccessLogRow.at >= start)
    if end is not None:
        q = q.where(AccessLogRow.at < end)
    q = q.order_by(AccessLogRow.at.desc(), AccessLogRow.id.desc()).limit(limit).offset(offset)
    return session.scalars(q).all()
