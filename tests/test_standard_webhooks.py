"""Issue 17, finding 3: Standard Webhooks as a consumer checks them, with the official library.

A receiver on 127.0.0.1 verifies every request it is sent with `standardwebhooks.Webhook(secret)
.verify(body, headers)` (https://github.com/standard-webhooks/standard-webhooks, libraries/python),
as a consumer would, and answers 401 when the library rejects it. Deliveries go through
`WebhookSender` and through the `deliver` activity with the worker's roster file; a secret the
library and the spec do not accept (not base64, shorter than 24 bytes, longer than 64) is refused
when the roster loads, naming the entry; `Retry-After` on 429 and 503 sets the activity's next
retry delay (capped)."""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from temporalio.exceptions import ApplicationError

from activities.channels import OutgoingMessage, Refused, Retryable, WebhookSender
from activities.notify import NotifyActivities
from plan.models import DeliverRequest, Notification, Recipient
from plan.outbox import deliveries_for
from plan.roster import (
    ChannelRef,
    RosterError,
    WebhookChannel,
    load_roster,
    parse_roster,
    standard_webhook_key,
)
from store import notifications
from store.db import session_scope
from tests.test_roster import MINIMAL


def raw(n: int) -> bytes:
    """n bytes of key material (fixed, so a failure can be repeated)."""
    out = b""
    while len(out) < n:
        out += hashlib.sha256(out + b"yuqing standard webhooks").digest()
    return out[:n]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# Secrets as a consumer's dashboard or `openssl rand -base64` gives them: the spec's whsec_ + base64
# (https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md,
# "Signing secret": random, at least 24 bytes, 512 bits at most), padded or not (the library pads
# what it is given), and without the prefix (the library strips it when present).
GOOD = {
    "padded-one": "whsec_" + b64(raw(32)),  # 44 characters, one "="
    "unpadded-one": "whsec_" + b64(raw(32)).rstrip("="),
    "padded-two": "whsec_" + b64(raw(31)),  # two "="
    "unpadded-two": "whsec_" + b64(raw(31)).rstrip("="),
    "shortest": "whsec_" + b64(raw(24)),
    "longest-unpadded": "whsec_" + b64(raw(64)).rstrip("="),
    "no-prefix": b64(raw(32)),
}
assert GOOD["padded-one"].endswith("=") and not GOOD["padded-one"].endswith("==")
assert GOOD["padded-two"].endswith("==")


@dataclass
class Request:
    headers: dict[str, str]
    body: bytes
    status: int
    rejected: str | None  # why the official library rejected it


class Verifier:
    """An HTTP endpoint on 127.0.0.1 that verifies each request with the official library: 204 when
    `Webhook(secret).verify(body, headers)` accepts it, else 401 with the library's reason. Before
    that it gives `answers` in turn (a status and the response headers: a receiver that is busy)."""

    def __init__(self, secret: str, *answers: tuple[int, dict[str, str]]) -> None:
        self.secret = secret
        self.answers = list(answers)
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with outer.lock:
                    answer = outer.answers.pop(0) if outer.answers else None
                rejected: str | None = None
                if answer is None:
                    try:
                        Webhook(outer.secret).verify(body, headers)
                        status, extra = 204, {}
                    except WebhookVerificationError as exc:
                        rejected = str(exc)
                        status, extra = 401, {}
                else:
                    status, extra = answer
                with outer.lock:
                    outer.requests.append(Request(headers, body, status, rejected))
                data = (rejected or "").encode()
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def received(self) -> list[Request]:
        with self.lock:
            return list(self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def verifier(request: pytest.FixtureRequest) -> Iterator[Verifier]:
    v = Verifier(getattr(request, "param", GOOD["padded-one"]))
    yield v
    v.close()


def message(key: str = "inc-1:n1:R-NOTIFY|he.jing|webhook:hook") -> OutgoingMessage:
    return OutgoingMessage(
        key=key,
        subject="【一般舆情】东湖村道路积水：新报告",
        body="网帖称东湖村主干道积水一周。",
        link="http://localhost:8000/incidents/inc-1",
        rule="R-NOTIFY",
        incident_id="inc-1",
        recipient_id="he.jing",
        recipient_name="何静",
        sent_at="2026-11-29T00:38:15+00:00",
    )


def send(channel: WebhookChannel, msg: OutgoingMessage | None = None) -> None:
    with httpx.Client(timeout=5) as client:
        WebhookSender(client).send(msg or message(), channel)


# --- signatures the official library accepts ---


@pytest.mark.parametrize("name", list(GOOD))
def test_the_official_library_verifies_each_delivery(name: str) -> None:
    """Every delivery, and its retry under the same webhook-id, is accepted by
    `standardwebhooks.Webhook(secret).verify`, padded or unpadded, with or without whsec_."""
    secret = GOOD[name]
    parse_roster(with_person_hook(secret))  # the roster takes it
    v = Verifier(secret, (503, {}))
    try:
        channel = WebhookChannel(id="hook", url=v.url, secret=secret)
        with pytest.raises(Retryable):
            send(channel)
        send(channel)  # the retry
        send(channel, message(key="inc-1:n2:R-REVIEW|he.jing|webhook:hook"))
        busy, retry, other = v.received()
    finally:
        v.close()
    assert (busy.status, retry.status, other.status) == (503, 204, 204), (
        retry.rejected,
        other.rejected,
    )
    assert retry.headers["webhook-id"] == busy.headers["webhook-id"]
    assert other.headers["webhook-id"] != busy.headers["webhook-id"]
    # And what the library accepted is what was sent (not some other reading of the body).
    assert Webhook(secret).verify(other.body, other.headers)["subject"] == message().subject
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(other.body + b" ", other.headers)


@given(
    st.one_of(
        st.binary(min_size=20, max_size=70).map(lambda b: b64(b)),
        st.text(alphabet="ABCDab01+/=-_ !", min_size=0, max_size=100),
    ),
    st.booleans(),
    st.integers(min_value=0, max_value=2),
)
def test_what_we_accept_the_library_reads_as_the_same_key(
    text: str, prefixed: bool, strip: int
) -> None:
    """Any secret standard_webhook_key accepts, the official library turns into the same key."""
    secret = ("whsec_" if prefixed else "") + (text[: len(text) - strip] if strip else text)
    try:
        key = standard_webhook_key(secret)
    except ValueError:
        return
    assert 24 <= len(key) <= 64
    assert Webhook(secret)._whsecret == key


# --- the worker's roster: bad secrets refused by name, good ones delivered ---

PERSON_CHANNELS = (
    'channels = [{ kind = "inbox" }, { kind = "webhook", url = "https://hooks.example/wfirst" }]'
)


def with_person_hook(secret: str, url: str = "https://hooks.example/wfirst") -> str:
    """MINIMAL with wfirst's webhook declared as channel "hook" with this secret."""
    assert MINIMAL.count(PERSON_CHANNELS) == 1
    channel = f'{{ id = "hook", kind = "webhook", url = "{url}", secret = "{secret}" }}'
    return MINIMAL.replace(PERSON_CHANNELS, f'channels = [{{ kind = "inbox" }}, {channel}]')


def with_unit_hook(secret: str) -> str:
    """MINIMAL with 建设办's group webhook "group-hook" carrying this secret."""
    anchor = 'first_responsible = "wfirst"\n'
    assert MINIMAL.count(anchor) == 1
    channel = (
        'channels = [{ id = "group-hook", kind = "webhook", url = "https://hooks.example/works", '
        f'secret = "{secret}" }}]\n'
    )
    return MINIMAL.replace(anchor, anchor + channel)


BAD = {
    # Not base64 at all: the library would discard the characters it does not know and sign with
    # whatever is left, a key no one meant.
    "a-password": ("correct horse battery staple!", "不是 base64 编码"),
    "url-safe-alphabet": ("whsec_" + b64(raw(32)).replace("+", "-").replace("/", "_"), "base64"),
    "spaces-inside": ("whsec_" + b64(raw(16)) + " " + b64(raw(16)), "不是 base64 编码"),
    "hex-with-prefix": ("whsec_" + raw(32).hex() + "!", "不是 base64 编码"),
    "impossible-length": ("whsec_" + b64(raw(30)) + "A", "不是 base64 编码"),  # 4n + 1
    "padding-inside": ("whsec_" + b64(raw(31)) + b64(raw(31)), "不是 base64 编码"),
    # Base64, but too short or too long for the spec.
    "16-bytes": ("whsec_" + b64(raw(16)), "16 字节"),
    "23-bytes": ("whsec_" + b64(raw(23)), "23 字节"),
    "six-bytes": ("whsec_c2VjcmV0", "6 字节"),
    "65-bytes": ("whsec_" + b64(raw(65)), "65 字节"),
    "empty": ("", "为空"),
    "prefix-only": ("whsec_", "为空"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_a_bad_secret_is_refused_when_the_roster_loads(name: str, tmp_path: Path) -> None:
    """Refused at load (the worker's start, `yuqing roster check`, each delivery's look-up), with
    the person or unit and the channel id named, and never the secret itself."""
    secret, reason = BAD[name]
    for text, where in (
        (with_person_hook(secret), "people[wfirst].channels[hook]"),
        (with_unit_hook(secret), "units[works].channels[group-hook]"),
    ):
        path = tmp_path / "roster.toml"
        path.write_text(text, encoding="utf-8")
        with pytest.raises(RosterError) as info:
            load_roster(path)
        message = str(info.value)
        assert message.startswith(f"{path}: ")
        assert where in message, message
        assert "Standard Webhooks" in message and reason in message, message
        if secret.removeprefix("whsec_"):
            assert secret.removeprefix("whsec_") not in message


def deliver_request(person_id: str = "wfirst") -> DeliverRequest:
    """A delivery as an incident schedules it: the channel by reference (person id + "hook")."""
    note = Notification(
        key="inc-1:n1:R-NOTIFY",
        incident_id="inc-1",
        rule="R-NOTIFY",
        recipients=[
            Recipient(
                person_id=person_id,
                name="建设办第一责任人",
                channels=[ChannelRef(kind="webhook", id="hook")],
            )
        ],
        subject="【一般舆情】东湖村道路积水：新报告",
        body="网帖称东湖村主干道积水一周。",
        link="http://localhost:8000/incidents/inc-1",
        drill=False,
        sent_at=datetime(2026, 11, 29, 0, 38, 15, tzinfo=UTC),
    )
    (request,) = deliveries_for(note)
    return request


@pytest.mark.parametrize("name", ["unpadded-one", "unpadded-two", "padded-two"])
def test_a_delivery_through_the_workers_roster_verifies(
    name: str, store_url: str, tmp_path: Path
) -> None:
    """The `deliver` activity resolves the channel in the worker's roster file and signs with its
    secret: the official library accepts what arrives."""
    secret = GOOD[name]
    v = Verifier(secret)
    try:
        path = tmp_path / "roster.toml"
        path.write_text(with_person_hook(secret, v.url), encoding="utf-8")
        assert NotifyActivities(store_url, roster_file=path).deliver(deliver_request()) == "sent"
        (hit,) = v.received()
    finally:
        v.close()
    assert (hit.status, hit.rejected) == (204, None)


def test_a_roster_with_a_bad_secret_sends_nothing(store_url: str, tmp_path: Path) -> None:
    """A worker whose roster file has a bad secret does not send with some other key: the delivery
    is retried (the operator fixes the file) and the error names the entry."""
    v = Verifier(GOOD["padded-one"])
    try:
        path = tmp_path / "roster.toml"
        path.write_text(with_person_hook(GOOD["unpadded-one"] + "!", v.url), encoding="utf-8")
        with pytest.raises(ApplicationError) as info:
            NotifyActivities(store_url, roster_file=path).deliver(deliver_request())
        assert v.received() == []
    finally:
        v.close()
    assert info.value.type == "DeliveryRetry" and not info.value.non_retryable
    assert "people[wfirst].channels[hook]" in info.value.message


def test_a_bad_secret_in_a_channel_in_full_is_refused_unsent(verifier: Verifier) -> None:
    """A delivery scheduled before channel references carries its channel in full, unchecked by
    any roster load: a secret the spec does not accept is refused (not sent unsigned or with the
    secret's characters as the key), with the reason in Chinese."""
    for secret in ("not base64!", "whsec_c2VjcmV0"):
        with pytest.raises(Refused, match="Standard Webhooks 密钥"):
            send(WebhookChannel(url=verifier.url, secret=secret))
    assert verifier.received() == []


# --- Retry-After ---


def retry_after_request(url: str) -> DeliverRequest:
    """A delivery with its channel in full (no roster needed) to `url`, signed."""
    note = deliver_request().note.model_copy(
        update={
            "recipients": [
                Recipient(
                    person_id="he.jing",
                    name="何静",
                    channels=[WebhookChannel(url=url, secret=GOOD["padded-one"])],
                )
            ]
        }
    )
    (request,) = deliveries_for(note)
    return request


def http_date(seconds_from_now: float) -> str:
    return format_datetime(datetime.now(UTC) + timedelta(seconds=seconds_from_now), usegmt=True)


# The longest a receiver's Retry-After may hold a delivery back: the delivery retry policy's own
# longest interval (workflows/delivery.py), so a receiver can slow us to our slowest pace, no more.
CAP = timedelta(minutes=5)


def test_the_cap_is_the_retry_policys_longest_interval() -> None:
    from activities.notify import RETRY_AFTER_CAP
    from plan.outbox import DELIVERY_RETRY_MAX_INTERVAL
    from workflows.delivery import DELIVERY_RETRY

    assert RETRY_AFTER_CAP == DELIVERY_RETRY_MAX_INTERVAL == CAP
    assert DELIVERY_RETRY.maximum_interval == DELIVERY_RETRY_MAX_INTERVAL


@pytest.mark.parametrize(
    ("status", "retry_after", "expected"),
    [
        (503, "120", timedelta(seconds=120)),
        (429, "30", timedelta(seconds=30)),
        (429, "0", None),  # now: the retry policy's own backoff
        (503, "86400", CAP),  # a day: capped
        (429, "999999999999999999999", CAP),
        (503, "http-date+90", timedelta(seconds=90)),
        (429, "http-date+7200", CAP),
        (503, "http-date-600", None),  # already past
        (503, "soon", None),  # not a Retry-After: ignored, still retried
        (503, "-5", None),
        (503, "1.5", None),
        (500, "120", None),  # only 429 and 503 give it a meaning here
        (502, "120", None),
        (503, None, None),
    ],
)
def test_retry_after_sets_the_next_retry_delay(
    store_url: str, status: int, retry_after: str | None, expected: timedelta | None
) -> None:
    """RFC 9110 §10.2.3 (https://www.rfc-editor.org/rfc/rfc9110#section-10.2.3): Retry-After is
    delay-seconds or an HTTP-date. On 429 (RFC 6585 §4) and 503 the activity fails retryably
    with `next_retry_delay` set to it, capped at the delivery retry policy's longest interval."""
    headers: dict[str, str] = {}
    if retry_after is not None:
        if retry_after.startswith("http-date"):
            retry_after = http_date(float(retry_after.removeprefix("http-date")))
        headers["retry-after"] = retry_after
    v = Verifier(GOOD["padded-one"], (status, headers))
    try:
        activities = NotifyActivities(store_url)
        request = retry_after_request(v.url)
        with pytest.raises(ApplicationError) as info:
            activities.deliver(request)
        assert activities.deliver(request) == "sent"  # and the retry goes, verified
        assert [r.status for r in v.received()] == [status, 204]
    finally:
        v.close()
    error = info.value
    assert (error.type, error.non_retryable) == ("DeliveryRetry", False)
    assert f"HTTP {status}" in error.message
    delay = error.next_retry_delay
    if expected is None or expected == CAP:
        assert delay == expected
    else:  # an HTTP-date has whole seconds, and a moment passed since it was written
        assert delay is not None and expected - timedelta(seconds=2) <= delay <= expected
    with session_scope(store_url) as s:
        (row,) = notifications.outbox(s, incident_id="inc-1")
    assert (row.state, row.attempts) == ("sent", 2)


def test_retry_after_on_the_sender() -> None:
    """The sender's error carries the receiver's delay as it was asked (the cap is the activity's)."""
    v = Verifier(GOOD["padded-one"], (503, {"Retry-After": "7200"}), (429, {"Retry-After": "5"}))
    try:
        channel = WebhookChannel(url=v.url, secret=GOOD["padded-one"])
        for expected in (timedelta(hours=2), timedelta(seconds=5)):
            with pytest.raises(Retryable) as info:
                send(channel)
            assert info.value.retry_after == expected
    finally:
        v.close()
