"""Notification activities and the outbox.

- `notify` writes the in-app inbox (always, at once) and an outbox row for every external
  delivery (pending), so nothing decided is lost and escalation never waits on a channel.
- `deliver` makes one external delivery (one recipient, one channel). Its outbox row is what
  stops a retried activity from sending twice: a row already `sent` is not sent again.
  Network errors, 5xx and 429 raise a retryable error; other refusals a non-retryable one.
  The request names the channel by reference (recipient id and the roster's channel id): it is
  looked up in the worker's roster file at each attempt, so no URL, key or secret is ever in an
  incident's history, a rotated secret is used at once, and a person or channel no longer in the
  roster is refused (not retried). A roster file that cannot be read is retried.
  A receiver's Retry-After (429, 503) sets the next attempt's delay, capped (RETRY_AFTER_CAP).
- `delivery_failed` records a refused or given-up delivery and tells the office in its inbox.

One-time sign-in links (issue 18, item 8): a delivery about one incident through a person's own
channel (plan.roster.personal_channel: e-mail, the person's webhook; never a robot, never a unit's
channel) carries a link that signs that person in, once, and leads to that incident's page
(store/credentials.py; the pages' /signin/…). The attempt mints it just before sending, when the
worker has its public address (YUQING_PUBLIC_URL) and YUQING_SIGN_IN_LINK_HOURS is above 0: it is
in no request, no workflow data and no history, only in the message and (hashed) in the store.
Each attempt that sends mints a fresh link and never ends an earlier one: an attempt that failed
may still have reached the person (a lost answer; a webhook receiver that deduplicates on
webhook-id keeps that first body), and its link must keep working. Each link still signs in once,
and all of them expire; `yuqing token revoke` / `yuqing link revoke` end them.

Counters on the worker's Prometheus endpoint (the SDK runtime's meter): `yuqing_deliveries_sent`
and `yuqing_delivery_attempts_failed`, by `channel` kind and `drill` (workflows/delivery.py counts
the deliveries given up).
"""

from __future__ import annotations

import hashlib
import threading
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.channels import (
    Channels,
    OutgoingMessage,
    Refused,
    Retryable,
    SmsSettings,
    SmtpSettings,
)
from plan.messages import sms_deadline_name
from plan.outbox import (
    DELIVERY_RETRY_MAX_INTERVAL,
    REACH_TEST_ID,
    REACH_TEST_SMS_WORD,
    deliveries_for,
)
from plan.records import DeliverRequest, DeliveryFailure, Notification
from plan.roster import (
    ChannelRef,
    FullChannel,
    Roster,
    RosterError,
    parse_roster,
    personal_channel,
)
from store import credentials, incident_rows, notifications
from store.db import session_scope

# The longest a receiver's Retry-After holds a delivery back: the retry policy's own longest
# interval. A receiver may slow us to our slowest pace, never further: these notifications answer
# deadlines of minutes to hours (R-REPORT, escalation), and a delay past the give-up period's end
# (schedule-to-close) would end the retries at once, reporting a give-up with no attempt after it.
# Shorter than the cap, the receiver's delay replaces the backoff (which may be shorter still).
RETRY_AFTER_CAP = DELIVERY_RETRY_MAX_INTERVAL

SENT = "yuqing_deliveries_sent"
FAILED = "yuqing_delivery_attempts_failed"
FAILED_HELP = "Delivery attempts that failed (retried or refused), by channel kind"


def count(name: str, description: str, request: DeliverRequest) -> None:
    """Add one to a delivery counter, by channel kind and drill flag (outside a worker, as
    `yuqing notify test` or a test calls the activity, there is nothing to count on)."""
    if not activity.in_activity():
        return
    activity.metric_meter().create_counter(name, description).add(
        1, {"channel": request.channel.kind, "drill": str(request.note.drill).lower()}
    )


def incident_page(note: Notification) -> str | None:
    """The incident a notification leads to, when its link is that incident's page (a digest's
    leads to the list: None)."""
    if note.link.rstrip("/").endswith(f"/incidents/{note.incident_id}"):
        return note.incident_id
    return None


def outgoing(request: DeliverRequest) -> OutgoingMessage:
    note = request.note
    others = [r.name for r in note.recipients if r.person_id != request.recipient.person_id]
    return OutgoingMessage(
        key=request.key,
        subject=note.subject,
        body=note.body,
        link=note.link,
        rule=note.rule,
        incident_id=note.incident_id,
        recipient_id=request.recipient.person_id,
        recipient_name=request.recipient.name,
        others=others,
        drill=note.drill,
        sent_at=note.sent_at.isoformat(),
        brief=list(note.brief),
        deadline=sms_deadline_name(note.deadline),
        step=note.step,
    )


class NotifyActivities:
    def __init__(
        self,
        database_url: str,
        webhook_timeout: float = 10.0,
        smtp: SmtpSettings | None = None,
        roster_file: str | Path | None = None,
        *,
        sign_in_url: str | None = None,
        sign_in_hours: float = credentials.LINK_HOURS,
        sms: SmsSettings | None = None,
        timezone: str = "Asia/Shanghai",
    ) -> None:
        self.database_url = database_url
        # The town's zone: the day of a 通联测试's SMS number (000 of that day).
        self.zone = ZoneInfo(timezone)
        # Where the one-time sign-in links lead (YUQING_PUBLIC_URL) and how long they last; no
        # address or no hours: no links.
        self.sign_in_url = sign_in_url.rstrip("/") if sign_in_url else None
        self.sign_in_hours = sign_in_hours
        # The worker's roster: where references in delivery requests are resolved.
        self.roster_file = roster_file
        self._roster: tuple[bytes, Roster] | None = None
        self._roster_lock = threading.Lock()
        self.webhook_timeout = webhook_timeout
        self.smtp = smtp or SmtpSettings()
        self.sms = sms or SmsSettings()
        # One TLS context for every delivery: building it loads the CA bundle, which cost more CPU
        # than the delivery itself and made a busy worker fall behind its timers. (A context is
        # safe to share between the activity threads; each delivery still has its own client.)
        self.tls = httpx.create_ssl_context()

    @activity.defn(name="notify")
    def notify(self, note: Notification) -> int:
        """Write the inbox and the pending outbox rows; returns the number of external deliveries."""
        requests = deliveries_for(note)
        with session_scope(self.database_url) as session:
            notifications.write_notification(session, note=note, deliveries=requests)
        activity.logger.info(
            "notified %d recipients for %s in the inbox; %d external deliveries queued",
            len(note.recipients),
            note.rule,
            len(requests),
        )
        return len(requests)

    def worker_roster(self) -> Roster:
        """The worker's roster file as it is now (parsed again only when its content changed)."""
        if self.roster_file is None:
            raise RosterError("工作进程未配置名册文件（YUQING_ROSTER_FILE）")
        path = Path(self.roster_file)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise RosterError(f"{path}: cannot read roster file: {exc.strerror}") from exc
        digest = hashlib.sha256(data).digest()
        with self._roster_lock:
            if self._roster is not None and self._roster[0] == digest:
                return self._roster[1]
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RosterError(f"{path}: not UTF-8: {exc}") from exc
        roster = parse_roster(text, source=str(path))
        with self._roster_lock:
            self._roster = (digest, roster)
        return roster

    def _channel(self, request: DeliverRequest) -> FullChannel | str:
        """The channel to send through, or why the worker's roster no longer has it."""
        channel = request.channel
        if not isinstance(channel, ChannelRef):
            return channel  # a request from before references carries its channel in full
        try:
            roster = self.worker_roster()
        except RosterError as exc:
            # The operator fixes the file; until then the delivery is retried.
            raise ApplicationError(f"{request.target}: {exc}", type="DeliveryRetry") from exc
        return roster.resolve(request.recipient.person_id, channel)

    @activity.defn(name="deliver")
    def deliver(self, request: DeliverRequest) -> str:
        """One external delivery, at most once per outbox row."""
        with session_scope(self.database_url) as session:
            row = notifications.outbox_row(
                session,
                key=request.key,
                incident_id=request.note.incident_id,
                rule=request.note.rule,
                recipient=request.recipient.person_id,
                kind=request.channel.kind,
                target=request.target,
            )
            kind, to = request.channel.kind, request.recipient.person_id
            if row.state == "sent":
                activity.logger.info("already delivered via %s to %s", kind, to)
                return "already sent"
            if row.state in ("failed", "given_up"):
                activity.logger.info("delivery via %s to %s is %s: not sent", kind, to, row.state)
                return row.state  # the workflow stopped trying and the office was told
            channel = self._channel(request)
            if not isinstance(channel, str):
                row.attempts += 1
            attempt = row.attempts
            # An SMS names the incident by its short number alone (activities/channels.py); the
            # 通联测试's, which is about none, number 000 of its day (as `yuqing notify test`).
            short_number = None
            if kind == "sms" and request.note.incident_id == REACH_TEST_ID:
                short_number = request.note.sent_at.astimezone(self.zone).strftime("%Y-%m%d-000")
            elif kind == "sms":
                short_number = incident_rows.short_number_of(
                    session, incident_id=request.note.incident_id
                )
        if isinstance(channel, str):
            # The person or the channel has left the worker's roster: nothing to send through.
            self._mark(request.key, "failed", channel)
            count(FAILED, FAILED_HELP, request)
            activity.logger.info("delivery via %s to %s refused: %s", kind, to, channel)
            raise ApplicationError(
                f"{request.target}: {channel}", type="DeliveryRefused", non_retryable=True
            )
        message = outgoing(request)
        message.short_number = short_number or ""
        if request.note.incident_id == REACH_TEST_ID:
            message.deadline = REACH_TEST_SMS_WORD
        self._sign_in_link(request, message)
        try:
            with httpx.Client(timeout=self.webhook_timeout, verify=self.tls) as client:
                Channels(client, self.smtp, self.sms).send(message, channel)
        except Retryable as exc:
            self._mark(request.key, "pending", str(exc))
            count(FAILED, FAILED_HELP, request)
            activity.logger.info(
                "delivery via %s to %s failed (attempt %d, will retry): %s", kind, to, attempt, exc
            )
            delay = min(exc.retry_after, RETRY_AFTER_CAP) if exc.retry_after else None
            raise ApplicationError(
                f"{request.target}: {exc}", type="DeliveryRetry", next_retry_delay=delay
            ) from exc
        except Refused as exc:
            self._mark(request.key, "failed", str(exc))
            count(FAILED, FAILED_HELP, request)
            activity.logger.info("delivery via %s to %s refused: %s", kind, to, exc)
            raise ApplicationError(
                f"{request.target}: {exc}", type="DeliveryRefused", non_retryable=True
            ) from exc
        self._mark(request.key, "sent", None)
        count(SENT, "External deliveries sent, by channel kind", request)
        activity.logger.info("delivered via %s to %s (attempt %d)", kind, to, attempt)
        return "sent"

    def _sign_in_link(self, request: DeliverRequest, message: OutgoingMessage) -> None:
        """Mint this attempt's one-time link into `message`, when it goes to a person's own
        channel about one incident (see the module's docstring). Committed before sending, so
        the link works the moment the message arrives."""
        incident_id = incident_page(request.note)
        person_id = request.recipient.person_id
        if (
            self.sign_in_url is None
            or not self.sign_in_hours > 0
            or incident_id is None
            or not personal_channel(person_id, request.channel.kind)
        ):
            return
        with session_scope(self.database_url) as session:
            token = credentials.create_link(
                session, person_id=person_id, incident_id=incident_id, hours=self.sign_in_hours
            )
        message.sign_in_link = f"{self.sign_in_url}/signin/{token}"
        message.sign_in_hours = self.sign_in_hours

    @activity.defn(name="delivery_failed")
    def delivery_failed(self, failure: DeliveryFailure) -> None:
        """Record the outcome and tell the office which channel failed for whom."""
        req = failure.request
        state = "given_up" if failure.given_up else "failed"
        self._mark(req.key, state, failure.reason)
        what = "多次重试后放弃" if failure.given_up else "被拒收"
        activity.logger.info(
            "delivery via %s to %s %s: %s; telling the office (%s)",
            req.channel.kind,
            req.recipient.person_id,
            "given up" if failure.given_up else "refused",
            failure.reason,
            ", ".join(failure.office),
        )
        with session_scope(self.database_url) as session:
            for person in failure.office:
                notifications.write_inbox(
                    session,
                    key=f"{req.key}|failed",
                    incident_id=req.note.incident_id,
                    rule=req.note.rule,
                    recipient=person,
                    subject=f"通知发送失败：{req.recipient.name}（{req.channel.kind}）",
                    body=(
                        f"“{req.note.subject}”经{req.target}发送给{req.recipient.name}{what}："
                        f"{failure.reason}\n请核对名册中的通知渠道，并另行通知本人。"
                    ),
                    link=req.note.link,
                    drill=req.note.drill,
                    created_at=datetime.now(UTC),
                )

    def _mark(self, key: str, state: str, error: str | None) -> None:
        with session_scope(self.database_url) as session:
            row = notifications.outbox_get(session, key=key)
            if row is None or row.state == "sent":
                return
            if state == "pending" and row.state in ("failed", "given_up"):
                return  # a late attempt's failure never reopens a row the workflow has closed
            row.state = state
            row.last_error = error
            if state == "sent":
                row.sent_at = datetime.now(UTC)
