"""Which external deliveries a notification makes (pure, so the workflow can decide them)."""

from __future__ import annotations

from datetime import timedelta

from plan.models import DeliverRequest, Notification
from plan.roster import channel_target

# The longest the delivery retry policy waits between two attempts (workflows/delivery.py), and so
# the longest a receiver's Retry-After may hold a delivery back (activities/notify.py).
DELIVERY_RETRY_MAX_INTERVAL = timedelta(minutes=5)


def delivery_key(note_key: str, recipient: str, target: str) -> str:
    """The outbox key: notification (incident, rule, round, step) + recipient + channel."""
    return f"{note_key}|{recipient}|{target}"


def about_one_incident(note: Notification) -> bool:
    """Whether a notification leads to one incident's page (a digest's leads to the list)."""
    return note.link.rstrip("/").endswith(f"/incidents/{note.incident_id}")


def deliveries_for(note: Notification) -> list[DeliverRequest]:
    """Every external delivery a notification makes, in a stable order. An SMS is about one
    incident (its short number, the deadline, the step: activities/channels.py, SmsSender): a
    digest, which is about many, goes to a person's other channels and the inbox only."""
    out = []
    for r in note.recipients:
        for channel in r.channels:
            if channel.kind == "inbox":
                continue
            if channel.kind == "sms" and not about_one_incident(note):
                continue
            target = channel_target(channel)
            out.append(
                DeliverRequest(
                    key=delivery_key(note.key, r.person_id, target),
                    note=note,
                    recipient=r,
                    channel=channel,
                    target=target,
                )
            )
    return out
