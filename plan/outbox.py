"""Which external deliveries a notification makes (pure, so the workflow can decide them)."""

from __future__ import annotations

from datetime import timedelta

from plan.models import DeliverRequest, Notification
from plan.roster import channel_target

# The longest the delivery retry policy waits between two attempts (workflows/delivery.py), and so
# the longest a receiver's Retry-After may hold a delivery back (activities/notify.py).
DELIVERY_RETRY_MAX_INTERVAL = timedelta(minutes=5)

# The incident id of the 通联测试's messages (issue 20, item 5; plan/reach.py): they belong to no
# incident, yet go through every channel a person has, SMS too (as `yuqing notify test` does, its
# SMS carries number 000 of the day and the words 通联测试: activities/notify.py).
REACH_TEST_ID = "reach-test"
REACH_TEST_SMS_WORD = "通联测试"  # the SMS template's deadline word (within its 6 characters)


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
            tests_channels = note.incident_id == REACH_TEST_ID
            if channel.kind == "sms" and not (about_one_incident(note) or tests_channels):
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
