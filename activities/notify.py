"""The `notify` activity: the in-app inbox always, then each recipient's external channels.

The inbox is written (and committed) first, so a person sees the message even while a webhook is
down. Each external delivery has a row keyed by (notification key, recipient, channel); a retried
activity skips what was already sent. Webhooks follow the Standard Webhooks headers (webhook-id,
webhook-timestamp, and webhook-signature when the channel has a secret)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import httpcore  # noqa: F401  (httpx imports it lazily; loading it from several activity threads at once can hang)
import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.messages import Notification, Recipient
from plan.roster import WebhookChannel
from store import service
from store.db import session_scope


class NotifyActivities:
    def __init__(self, database_url: str, webhook_timeout: float = 10.0) -> None:
        self.database_url = database_url
        self.webhook_timeout = webhook_timeout

    @activity.defn(name="notify")
    def notify(self, note: Notification) -> int:
        """Deliver one notification; returns the number of external deliveries made now."""
        with session_scope(self.database_url) as session:
            for r in note.recipients:
                service.write_inbox(
                    session,
                    key=note.key,
                    incident_id=note.incident_id,
                    rule=note.rule,
                    recipient=r.person_id,
                    subject=note.subject,
                    body=note.body,
                    link=note.link,
                    drill=note.drill,
                    created_at=note.sent_at,
                )
        sent = 0
        retryable: list[str] = []
        permanent: list[str] = []
        with httpx.Client(timeout=self.webhook_timeout) as client:
            for r in note.recipients:
                for channel in r.channels:
                    if not isinstance(channel, WebhookChannel):
                        continue
                    outcome = self._webhook(client, note, r, channel)
                    if outcome == "sent":
                        sent += 1
                    elif outcome.startswith("retry:"):
                        retryable.append(f"{r.person_id}: {outcome[6:]}")
                    elif outcome.startswith("failed:"):
                        permanent.append(f"{r.person_id}: {outcome[7:]}")
        if retryable:
            raise ApplicationError("webhook delivery will be retried: " + "; ".join(retryable))
        if permanent:
            raise ApplicationError(
                "webhook refused: " + "; ".join(permanent),
                non_retryable=True,
                type="WebhookRefused",
            )
        return sent

    def _webhook(
        self, client: httpx.Client, note: Notification, r: Recipient, channel: WebhookChannel
    ) -> str:
        with session_scope(self.database_url) as session:
            row = service.delivery(
                session, key=note.key, recipient=r.person_id, channel=channel.url
            )
            if row.state in ("sent", "failed"):
                return "done"
            row.attempts += 1
        webhook_id = "msg_" + hashlib.sha256(f"{note.key}|{r.person_id}".encode()).hexdigest()[:32]
        body = json.dumps(
            {
                "type": "yuqing.notification",
                "incident_id": note.incident_id,
                "rule": note.rule,
                "recipient": {"id": r.person_id, "name": r.name},
                "subject": note.subject,
                "body": note.body,
                "link": note.link,
                "drill": note.drill,
                "sent_at": note.sent_at.isoformat(),
            },
            ensure_ascii=False,
        ).encode()
        timestamp = str(int(time.time()))
        headers = {
            "content-type": "application/json; charset=utf-8",
            "webhook-id": webhook_id,
            "webhook-timestamp": timestamp,
        }
        if channel.secret:
            headers["webhook-signature"] = sign(channel.secret, webhook_id, timestamp, body)
        try:
            response = client.post(channel.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return self._finish(
                note, r, channel, "pending", f"{type(exc).__name__}: {exc}", "retry"
            )
        if response.is_success:
            return self._finish(note, r, channel, "sent", None, "sent")
        error = f"HTTP {response.status_code}"
        if response.status_code == 429 or response.status_code >= 500:
            return self._finish(note, r, channel, "pending", error, "retry")
        return self._finish(note, r, channel, "failed", error, "failed")

    def _finish(
        self,
        note: Notification,
        r: Recipient,
        channel: WebhookChannel,
        state: str,
        error: str | None,
        outcome: str,
    ) -> str:
        with session_scope(self.database_url) as session:
            row = service.delivery(
                session, key=note.key, recipient=r.person_id, channel=channel.url
            )
            row.state = state
            row.last_error = error
            if state == "sent":
                row.sent_at = service.utcnow()
        return outcome if error is None else f"{outcome}:{error}"


def sign(secret: str, webhook_id: str, timestamp: str, body: bytes) -> str:
    """Standard Webhooks: v1,base64(HMAC-SHA256(secret, "id.timestamp.body"))."""
    key = secret.removeprefix("whsec_")
    try:
        raw = base64.b64decode(key, validate=True)
    except ValueError:
        raw = key.encode()
    mac = hmac.new(raw, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()
