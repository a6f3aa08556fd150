"""Notifications in the read model: the in-app inbox (one row per message and person) and the
outbox of external deliveries (one row per delivery, the row that stops a retried activity from
sending twice). Written by activities/notify.py and activities/record.py (and `yuqing notify
test`), read by the staff's inbox page and the delivery checks.

Keyword-only arguments, one session per call site; every write is an upsert on a natural key.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from plan.models import DeliverRequest, Notification
from store._upsert import writes
from store.models import Delivery, InboxMessage, utcnow

# A unit's group channel as a recipient (plan.roster): it is told, but has no inbox of its own.
UNIT_RECIPIENT_PREFIX = "unit:"

# --- writes (activities) ---


def write_inbox(
    session: Session,
    *,
    key: str,
    incident_id: str,
    rule: str,
    recipient: str,
    subject: str,
    body: str,
    link: str,
    drill: bool,
    created_at: datetime,
) -> bool:
    """One inbox message per (key, recipient); False when it is already there."""
    w = writes(session.get_bind().dialect.name)
    row = {
        "key": key,
        "incident_id": incident_id,
        "rule": rule,
        "recipient": recipient,
        "subject": subject,
        "body": body,
        "link": link,
        "drill": drill,
        "created_at": created_at,
    }
    return session.execute(w.inbox_once, row).first() is not None


def write_notification(
    session: Session, *, note: Notification, deliveries: Sequence[DeliverRequest]
) -> None:
    """A notification's inbox rows (one per person; a unit's group channel has no inbox) and a
    pending outbox row for each external delivery: one statement each, whatever the number of
    recipients. Rows already there (a retried activity) are left as they are."""
    people = [
        r.person_id for r in note.recipients if not r.person_id.startswith(UNIT_RECIPIENT_PREFIX)
    ]
    w = writes(session.get_bind().dialect.name)
    if people:
        session.execute(
            w.inbox,
            [
                {
                    "key": note.key,
                    "incident_id": note.incident_id,
                    "rule": note.rule,
                    "recipient": person,
                    "subject": note.subject,
                    "body": note.body,
                    "link": note.link,
                    "drill": note.drill,
                    "created_at": note.sent_at,
                }
                for person in dict.fromkeys(people)
            ],
        )
    if deliveries:
        session.execute(
            w.outbox,
            [
                {
                    "key": d.key,
                    "incident_id": note.incident_id,
                    "rule": note.rule,
                    "recipient": d.recipient.person_id,
                    "kind": d.channel.kind,
                    "channel": d.target,
                    "state": "pending",
                    "attempts": 0,
                    "created_at": utcnow(),
                }
                for d in {d.key: d for d in deliveries}.values()
            ],
        )


# --- the inbox (the staff pages) ---


def inbox(session: Session, *, recipient: str, limit: int = 100) -> Sequence[InboxMessage]:
    return session.scalars(
        select(InboxMessage)
        .where(InboxMessage.recipient == recipient)
        .order_by(InboxMessage.created_at.desc(), InboxMessage.id.desc())
        .limit(limit)
    ).all()


def unread_count(session: Session, *, recipient: str) -> int:
    """The navigation's 收件箱 badge: the person's unread messages, one count query (the
    recipient's index)."""
    q = select(func.count()).where(
        InboxMessage.recipient == recipient, InboxMessage.read_at.is_(None)
    )
    return int(session.scalar(q) or 0)


def mark_read(session: Session, *, person: str, ids: Sequence[int] | None = None) -> int:
    """Mark the person's unread inbox messages read: those with `ids`, or all of them (None).
    Another person's messages are never touched; gives back how many changed."""
    q = select(InboxMessage).where(InboxMessage.recipient == person, InboxMessage.read_at.is_(None))
    if ids is not None:
        if not ids:
            return 0
        q = q.where(InboxMessage.id.in_(list(ids)))
    now = utcnow()
    rows = session.scalars(q).all()
    for row in rows:
        row.read_at = now
    return len(rows)


# --- the outbox (activities/notify.py delivers) ---


def outbox_row(
    session: Session,
    *,
    key: str,
    incident_id: str,
    rule: str,
    recipient: str,
    kind: str,
    target: str,
) -> Delivery:
    """The outbox row of one delivery, created pending the first time."""
    row = outbox_get(session, key=key)
    if row is None:
        row = Delivery(
            key=key,
            incident_id=incident_id,
            rule=rule,
            recipient=recipient,
            kind=kind,
            channel=target,
            state="pending",
            attempts=0,
        )
        session.add(row)
        session.flush()
    return row


def outbox_get(session: Session, *, key: str) -> Delivery | None:
    return session.scalar(select(Delivery).where(Delivery.key == key))


def outbox(
    session: Session, *, incident_id: str | None = None, state: str | None = None
) -> Sequence[Delivery]:
    q = select(Delivery).order_by(Delivery.id)
    if incident_id:
        q = q.where(Delivery.incident_id == incident_id)
    if state:
        q = q.where(Delivery.state == state)
    return session.scalars(q).all()


def reach(session: Session, note_keys: Sequence[str]) -> dict[tuple[str, str], list[Delivery]]:
    """签收's 已送达 (issue 20): per (notification key, recipient), the external deliveries of
    those notifications; a recipient with an inbox row and no external delivery has only the
    inbox (which is written with the step, so always delivered)."""
    out: dict[tuple[str, str], list[Delivery]] = {}
    prefixes = [Delivery.key.startswith(key + "|", autoescape=True) for key in note_keys]
    for d in session.scalars(select(Delivery).where(or_(*prefixes)).order_by(Delivery.id)):
        out.setdefault((d.key.split("|", 1)[0], d.recipient), []).append(d)
    return out


def deliveries(session: Session, *, key_prefix: str) -> Sequence[Delivery]:
    return session.scalars(
        select(Delivery).where(Delivery.key.startswith(key_prefix, autoescape=True))
    ).all()
