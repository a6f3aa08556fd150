"""The notification channels on real servers on 127.0.0.1, checked against each provider's
documentation: what goes over the wire (method, path and query, headers, JSON body, signature,
each signature recomputed here from the provider's description rather than from the code under
test), how each answer is classed (retry or refuse), and the `deliver` and `delivery_failed`
activities with their outbox rows on each store backend."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import hashlib
import hmac
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from temporalio.exceptions import ApplicationError

from activities.channels import (
    Channels,
    DingTalkSender,
    EmailSender,
    FeishuSender,
    OutgoingMessage,
    Refused,
    Retryable,
    SmtpSettings,
    WebhookSender,
    WeComSender,
)
from activities.notify import NotifyActivities
from devstack import free_port
from plan.models import DeliverRequest, Notification, Recipient
from plan.outbox import deliveries_for
from plan.records import DeliveryFailure
from plan.roster import (
    Channel,
    DingTalkChannel,
    EmailChannel,
    FeishuChannel,
    InboxChannel,
    WebhookChannel,
    WeComChannel,
)
from store import notifications
from store.db import session_scope
from store.models import Delivery
from tests.helpers import eventually

SECRET = "whsec_" + base64.b64encode(b"yuqing-webhook-test-secret-0123").decode()
OFFICE = ["liu.yang", "zhou.ting", "ma.chao"]
SENT_AT = datetime(2026, 11, 29, 0, 38, 15, tzinfo=UTC)

SUBJECT = "【一般舆情】东湖村道路积水：新报告"
BODY = "网帖称东湖村主干道积水一周。\n请领导小组办公室及时研判。"
LINK = "http://localhost:8000/incidents/inc-1"
# What a person reads, written out here rather than taken from OutgoingMessage.
TEXT = (
    "【一般舆情】东湖村道路积水：新报告\n\n"
    "网帖称东湖村主干道积水一周。\n请领导小组办公室及时研判。\n\n"
    "同时通知：刘洋、周婷\n\n"
    "详情：http://localhost:8000/incidents/inc-1"
)
# A chat robot gets the short form only (issue 17, finding 5): the subject, the brief, the link.
BRIEF = ["规则：R-NOTIFY", "期限：R-REPLY 一般舆情12小时内官方回复，2026-11-29 20:38"]
ROBOT_TEXT = (
    "【一般舆情】东湖村道路积水：新报告\n\n"
    "规则：R-NOTIFY\n期限：R-REPLY 一般舆情12小时内官方回复，2026-11-29 20:38\n\n"
    "详情：http://localhost:8000/incidents/inc-1"
)
MARKDOWN = (
    "**【一般舆情】东湖村道路积水：新报告**\n\n"
    "规则：R-NOTIFY\n\n期限：R-REPLY 一般舆情12小时内官方回复，2026-11-29 20:38\n\n"
    "[查看事件](http://localhost:8000/incidents/inc-1)"
)


def message(**overrides: Any) -> OutgoingMessage:
    values: dict[str, Any] = {
        "key": "inc-1:n1:R-NOTIFY|he.jing|webhook:http://127.0.0.1/hook",
        "subject": SUBJECT,
        "body": BODY,
        "link": LINK,
        "rule": "R-NOTIFY",
        "incident_id": "inc-1",
        "recipient_id": "he.jing",
        "recipient_name": "何静",
        "others": ["刘洋", "周婷"],
        "drill": False,
        "sent_at": SENT_AT.isoformat(),
        "brief": BRIEF,
    }
    values.update(overrides)
    return OutgoingMessage(**values)


# --- a real HTTP receiver ---


@dataclass
class Hit:
    method: str
    path: str
    raw_query: str
    headers: dict[str, str]
    body: bytes
    status: int = 0  # what the receiver answered

    @property
    def query(self) -> dict[str, list[str]]:
        return urllib.parse.parse_qs(self.raw_query, keep_blank_values=True)

    def json(self) -> Any:
        return json.loads(self.body)


Answer = int | tuple[int, dict[str, Any]]


class Receiver:
    """An HTTP endpoint on 127.0.0.1 that keeps every request. It gives `answers` in turn (the
    last one repeats): a status, or a status and a JSON body. While `gate` is clear, each request
    is recorded and then held until the gate is set."""

    def __init__(self, *answers: Answer, port: int = 0, path: str = "/hook") -> None:
        self.answers: list[Answer] = list(answers) or [200]
        self.hits: list[Hit] = []
        self.gate = threading.Event()
        self.gate.set()
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                split = urllib.parse.urlsplit(self.path)
                hit = Hit(
                    "POST",
                    split.path,
                    split.query,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                with outer.lock:
                    outer.hits.append(hit)
                    answer = outer.answers.pop(0) if len(outer.answers) > 1 else outer.answers[0]
                outer.gate.wait(timeout=60)
                status, payload = (answer, None) if isinstance(answer, int) else answer
                hit.status = status
                data = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = int(self.server.server_address[1])
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = self.base + path
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def received(self) -> list[Hit]:
        with self.lock:
            return list(self.hits)

    def accepted(self) -> dict[str, int]:
        """How many times each message (by webhook-id) was answered with success."""
        counts: dict[str, int] = {}
        for hit in self.received():
            if 200 <= hit.status < 300:
                key = hit.headers.get("webhook-id") or hit.body.decode()
                counts[key] = counts.get(key, 0) + 1
        return counts

    def answer(self, *answers: Answer) -> None:
        with self.lock:
            self.answers = list(answers)

    def close(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def reserve_port() -> socket.socket:
    """A port with nothing listening on it: bound (so no one else takes it) but not listening,
    so connections to it are refused until a server is started there."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


def send(sender_class: type, msg: OutgoingMessage, channel: Channel) -> None:
    with httpx.Client(timeout=5) as client:
        sender_class(client).send(msg, channel)


def b64_hmac_sha256(key: bytes, msg: bytes) -> str:
    return base64.b64encode(hmac.new(key, msg, hashlib.sha256).digest()).decode()


def verify_standard(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """Standard Webhooks, written from the spec rather than from the code under test: the key is
    the base64 part after whsec_, the content is "{id}.{timestamp}.{body}", and the header holds
    space-separated "v1,<base64>" signatures."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = b64_hmac_sha256(key, signed)
    for candidate in headers["webhook-signature"].split(" "):
        version, _, signature = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(signature, expected):
            return True
    return False


def assert_json_request(hit: Hit, path: str) -> None:
    assert hit.method == "POST"
    assert hit.path == path
    assert hit.headers["content-type"] == "application/json; charset=utf-8"
    assert int(hit.headers["content-length"]) == len(hit.body)


# --- Standard Webhooks ---


def test_standard_webhook_wire_format_and_signature() -> None:
    """Standard Webhooks (https://www.standardwebhooks.com/, spec.md): a POST of the JSON payload
    with webhook-id (the same on every retry of one message), webhook-timestamp (integer seconds)
    and webhook-signature "v1,<base64 HMAC-SHA256 of id.timestamp.body>" keyed with the
    base64-decoded whsec_ secret."""
    r = Receiver((500, {}), 200, path="/hooks/yuqing")
    try:
        channel = WebhookChannel(url=r.url, secret=SECRET)
        with pytest.raises(Retryable, match="HTTP 500"):
            send(WebhookSender, message(), channel)
        send(WebhookSender, message(), channel)  # the retry
        send(WebhookSender, message(key="inc-1:n2:R-REVIEW|he.jing|x"), channel)
        first, retry, other = r.received()
    finally:
        r.close()

    for hit in (first, retry, other):
        assert_json_request(hit, "/hooks/yuqing")
        assert hit.raw_query == ""
        assert hit.headers["webhook-timestamp"].isdigit()
        assert abs(int(hit.headers["webhook-timestamp"]) - time.time()) < 300  # replay window
        assert hit.headers["webhook-signature"].startswith("v1,")
        assert verify_standard(SECRET, hit.headers, hit.body)
    assert retry.headers["webhook-id"] == first.headers["webhook-id"]
    assert retry.body == first.body
    assert other.headers["webhook-id"] != first.headers["webhook-id"]
    assert first.headers["webhook-id"].startswith("msg_")

    # Any change to the body, or another key, breaks the signature.
    wrong = "whsec_" + base64.b64encode(b"some-other-secret").decode()
    assert not verify_standard(wrong, first.headers, first.body)
    assert not verify_standard(SECRET, first.headers, first.body + b" ")
    tampered = {**first.headers, "webhook-id": other.headers["webhook-id"]}
    assert not verify_standard(SECRET, tampered, first.body)

    assert first.json() == {
        "type": "yuqing.notification",
        "incident_id": "inc-1",
        "rule": "R-NOTIFY",
        "recipient": {"id": "he.jing", "name": "何静"},
        "subject": SUBJECT,
        "body": BODY,
        "others": ["刘洋", "周婷"],
        "link": LINK,
        "drill": False,
        "sent_at": "2026-11-29T00:38:15+00:00",
    }
    assert "\\u" not in first.body.decode()  # UTF-8 on the wire, not escaped


def test_standard_webhook_without_secret_is_unsigned(receiver: Receiver) -> None:
    send(WebhookSender, message(), WebhookChannel(url=receiver.url))
    (hit,) = receiver.received()
    assert "webhook-signature" not in hit.headers
    assert hit.headers["webhook-id"].startswith("msg_")
    assert hit.headers["webhook-timestamp"].isdigit()


@pytest.mark.parametrize(
    ("status", "error", "match"),
    [
        (500, Retryable, "HTTP 500"),
        (503, Retryable, "HTTP 503"),
        (429, Retryable, "HTTP 429"),
        (400, Refused, "HTTP 400"),
        (404, Refused, "HTTP 404"),
        (410, Refused, "HTTP 410"),
    ],
)
def test_standard_webhook_answers(
    receiver: Receiver, status: int, error: type[Exception], match: str
) -> None:
    """5xx and 429 are worth retrying; any other 4xx is a refusal."""
    receiver.answer(status)
    with pytest.raises(error, match=match):
        send(WebhookSender, message(), WebhookChannel(url=receiver.url))
    assert len(receiver.received()) == 1


def test_unreachable_receiver_is_retryable() -> None:
    """Nothing listening: a connection error is worth retrying."""
    with reserve_port() as sock:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/gone"
        with pytest.raises(Retryable, match="ConnectError"):
            send(WebhookSender, message(), WebhookChannel(url=url))


# --- 企业微信 ---


def test_wecom_markdown() -> None:
    """企业微信群机器人 (https://developer.work.weixin.qq.com/document/path/91770): POST JSON
    {"msgtype": "markdown", "markdown": {"content": …}} to the robot's URL, key kept in the query;
    the answer {"errcode": 0, "errmsg": "ok"}."""
    r = Receiver((200, {"errcode": 0, "errmsg": "ok"}), path="/cgi-bin/webhook/send")
    try:
        send(WeComSender, message(), WeComChannel(url=r.url + "?key=693a91f6-7xxx-4bc4"))
        (hit,) = r.received()
    finally:
        r.close()
    assert_json_request(hit, "/cgi-bin/webhook/send")
    assert hit.raw_query == "key=693a91f6-7xxx-4bc4"
    assert hit.json() == {"msgtype": "markdown", "markdown": {"content": MARKDOWN}}


def test_wecom_markdown_is_clipped_to_4096_bytes(receiver: Receiver) -> None:
    """The markdown content is at most 4096 bytes (UTF-8): a long brief goes in several
    messages, each with the link, none of the body."""
    receiver.answer((200, {"errcode": 0, "errmsg": "ok"}))
    lines = [f"在办{n}. 东湖村道路积水（YQ-{n}）" for n in range(1, 201)]
    send(
        WeComSender,
        message(body="积水" * 3000, brief=lines),
        WeComChannel(url=receiver.url),
    )
    contents = [h.json()["markdown"]["content"] for h in receiver.received()]
    assert 1 < len(contents) <= 10
    for n, content in enumerate(contents, 1):
        assert len(content.encode()) <= 4096
        assert content.startswith(f"**{SUBJECT}（{n}/{len(contents)}）**")
        assert content.endswith(f"\n\n[查看事件]({LINK})")
        assert "积水积水" not in content
    arrived = "\n\n".join(contents)
    assert all(f"\n\n{line}\n\n" in arrived for line in lines)


def test_wecom_text_with_mentioned_mobiles() -> None:
    """企业微信群机器人 (https://developer.work.weixin.qq.com/document/path/91770): mentions by
    mobile number need the text type: {"msgtype": "text", "text": {"content": …,
    "mentioned_mobile_list": […]}}."""
    r = Receiver((200, {"errcode": 0, "errmsg": "ok"}), path="/cgi-bin/webhook/send")
    try:
        channel = WeComChannel(
            url=r.url + "?key=abc", mentioned_mobiles=["13800001111", "13800002222"]
        )
        send(WeComSender, message(), channel)
        (hit,) = r.received()
    finally:
        r.close()
    assert_json_request(hit, "/cgi-bin/webhook/send")
    assert hit.query == {"key": ["abc"]}
    assert hit.json() == {
        "msgtype": "text",
        "text": {"content": ROBOT_TEXT, "mentioned_mobile_list": ["13800001111", "13800002222"]},
    }


@pytest.mark.parametrize(
    ("answer", "error", "match"),
    [
        ((200, {"errcode": 45009, "errmsg": "api freq out of limit"}), Retryable, "45009"),
        ((200, {"errcode": 93000, "errmsg": "invalid webhook url"}), Refused, "93000"),
        ((200, {"errcode": 40008, "errmsg": "invalid message type"}), Refused, "40008"),
        (503, Retryable, "HTTP 503"),
        (404, Refused, "HTTP 404"),
    ],
)
def test_wecom_answers(
    receiver: Receiver, answer: Answer, error: type[Exception], match: str
) -> None:
    """HTTP 200 with an errcode: 45009 is the rate limit (retry), any other code a refusal."""
    receiver.answer(answer)
    with pytest.raises(error, match=match):
        send(WeComSender, message(), WeComChannel(url=receiver.url))


def test_wecom_unexpected_answer_is_refused(receiver: Receiver) -> None:
    receiver.answer(200)  # an empty body is not the robot's JSON answer
    with pytest.raises(Refused, match="unexpected answer"):
        send(WeComSender, message(), WeComChannel(url=receiver.url))


# --- 钉钉 ---


def test_dingtalk_signed_markdown() -> None:
    """钉钉自定义机器人 (https://open.dingtalk.com/document/robots/custom-robot-access and
    https://open.dingtalk.com/document/robots/customize-robot-security-settings): the robot URL
    keeps access_token and, with 加签, adds timestamp (ms) and sign = urlEncode(base64(
    HmacSHA256(key=secret, msg=timestamp + "\\n" + secret))); the body is {"msgtype": "markdown",
    "markdown": {"title", "text"}, "at": {"atMobiles", "isAtAll"}}, mentions also in the text."""
    secret = "SEC1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c"
    r = Receiver((200, {"errcode": 0, "errmsg": "ok"}), path="/robot/send")
    try:
        channel = DingTalkChannel(
            url=r.url + "?access_token=0123abcd", secret=secret, at_mobiles=["13900001111"]
        )
        before = time.time() * 1000
        send(DingTalkSender, message(), channel)
        after = time.time() * 1000
        (hit,) = r.received()
    finally:
        r.close()
    assert_json_request(hit, "/robot/send")
    raw = dict(part.split("=", 1) for part in hit.raw_query.split("&"))
    assert list(raw) == ["access_token", "timestamp", "sign"]
    assert raw["access_token"] == "0123abcd"
    timestamp = raw["timestamp"]
    assert timestamp.isdigit() and len(timestamp) == 13  # milliseconds
    assert before - 1 <= int(timestamp) <= after + 1
    expected = b64_hmac_sha256(secret.encode(), f"{timestamp}\n{secret}".encode())
    # URL-encoded: base64's + / = never appear raw (44 characters always end in one "=").
    assert not set("+/=") & set(raw["sign"]) and raw["sign"].endswith("%3D")
    assert urllib.parse.unquote(raw["sign"]) == expected
    assert hit.query["sign"] == [expected]
    assert hit.json() == {
        "msgtype": "markdown",
        "markdown": {"title": SUBJECT, "text": MARKDOWN + "\n\n@13900001111"},
        "at": {"atMobiles": ["13900001111"], "isAtAll": False},
    }


def test_dingtalk_without_secret_keeps_the_url(receiver: Receiver) -> None:
    receiver.answer((200, {"errcode": 0, "errmsg": "ok"}))
    send(
        DingTalkSender,
        message(subject="标" * 80),
        DingTalkChannel(url=receiver.url + "?access_token=tok"),
    )
    (hit,) = receiver.received()
    assert hit.query == {"access_token": ["tok"]}
    body = hit.json()
    assert body["markdown"]["title"] == "标" * 64  # the title is short
    assert body["at"] == {"atMobiles": [], "isAtAll": False}


@pytest.mark.parametrize(
    ("answer", "error", "match"),
    [
        ((200, {"errcode": 130101, "errmsg": "send too fast"}), Retryable, "130101"),
        ((200, {"errcode": 310000, "errmsg": "sign not match"}), Refused, "310000"),
        ((200, {"errcode": 300001, "errmsg": "token is not exist"}), Refused, "300001"),
        (502, Retryable, "HTTP 502"),
    ],
)
def test_dingtalk_answers(
    receiver: Receiver, answer: Answer, error: type[Exception], match: str
) -> None:
    """HTTP 200 with an errcode: 130101 is the rate limit (retry), any other code a refusal."""
    receiver.answer(answer)
    with pytest.raises(error, match=match):
        send(DingTalkSender, message(), DingTalkChannel(url=receiver.url, secret="s"))


# --- 飞书 ---


def test_feishu_signed_text() -> None:
    """飞书自定义机器人 (https://open.feishu.cn/document/client-docs/bot-v3/add-custom-bot): POST
    {"timestamp": "<seconds>", "sign": base64(HmacSHA256(key=timestamp + "\\n" + secret, msg=
    empty)), "msg_type": "text", "content": {"text": …}} to the hook URL; the answer
    {"code": 0, "msg": "success"}."""
    secret = "demo-feishu-secret-9f8e7d"
    r = Receiver((200, {"code": 0, "msg": "success", "data": {}}), path="/open-apis/bot/v2/hook/x1")
    try:
        before = time.time()
        send(FeishuSender, message(), FeishuChannel(url=r.url, secret=secret))
        after = time.time()
        (hit,) = r.received()
    finally:
        r.close()
    assert_json_request(hit, "/open-apis/bot/v2/hook/x1")
    assert hit.raw_query == ""
    body = hit.json()
    timestamp = body["timestamp"]
    assert isinstance(timestamp, str) and timestamp.isdigit() and len(timestamp) == 10  # seconds
    assert int(before) - 1 <= int(timestamp) <= after + 1
    assert body["sign"] == b64_hmac_sha256(f"{timestamp}\n{secret}".encode(), b"")
    assert body == {
        "timestamp": timestamp,
        "sign": body["sign"],
        "msg_type": "text",
        "content": {"text": ROBOT_TEXT},
    }


def test_feishu_without_secret_is_unsigned(receiver: Receiver) -> None:
    receiver.answer((200, {"code": 0, "msg": "success"}))
    send(FeishuSender, message(), FeishuChannel(url=receiver.url))
    (hit,) = receiver.received()
    assert hit.json() == {"msg_type": "text", "content": {"text": ROBOT_TEXT}}


@pytest.mark.parametrize(
    ("answer", "error", "match"),
    [
        ((200, {"code": 11232, "msg": "frequency limited psm"}), Retryable, "11232"),
        (
            (200, {"code": 19021, "msg": "sign match fail or timestamp is not within one hour"}),
            Refused,
            "19021",
        ),
        (
            (200, {"code": 19001, "msg": "param invalid: incoming webhook access token invalid"}),
            Refused,
            "19001",
        ),
        (500, Retryable, "HTTP 500"),
        (403, Refused, "HTTP 403"),
    ],
)
def test_feishu_answers(
    receiver: Receiver, answer: Answer, error: type[Exception], match: str
) -> None:
    """HTTP 200 with a code: 11232 is the rate limit (retry), any other code a refusal."""
    receiver.answer(answer)
    with pytest.raises(error, match=match):
        send(FeishuSender, message(), FeishuChannel(url=receiver.url, secret="s"))


# --- e-mail ---


class Mailbox:
    """An aiosmtpd handler that keeps what it is given; `rcpt_reply`/`data_reply` refuse."""

    def __init__(self) -> None:
        self.envelopes: list[tuple[str, list[str], bytes]] = []
        self.rcpt_reply: str | None = None
        self.data_reply: str | None = None

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_reply:
            return self.data_reply
        self.envelopes.append(
            (envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content))
        )
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, SmtpSettings]]:
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield (
            mailbox,
            SmtpSettings(
                host="127.0.0.1", port=controller.port, sender="yuqing@town.example", timeout=5
            ),
        )
    finally:
        controller.stop()


def test_email_plain_and_html(smtp: tuple[Mailbox, SmtpSettings]) -> None:
    """E-mail over SMTP (RFC 5321, https://www.rfc-editor.org/rfc/rfc5321) as one message of
    multipart/alternative (RFC 2046 §5.1.4, https://www.rfc-editor.org/rfc/rfc2046#section-5.1.4):
    a text/plain part and a text/html part, each with the subject and the link."""
    mailbox, settings = smtp
    EmailSender(settings).send(message(), EmailChannel(address="he.jing@town.example"))
    (envelope,) = mailbox.envelopes
    mail_from, rcpt_tos, raw = envelope
    assert mail_from == "yuqing@town.example"
    assert rcpt_tos == ["he.jing@town.example"]
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    assert msg["Subject"] == SUBJECT
    assert msg["From"] == "yuqing@town.example"
    assert msg["To"] == "he.jing@town.example"
    assert msg["Message-ID"] == f"<{message().webhook_id()}@town.example>"  # the sender's domain
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    plain, html = (p.get_content() for p in parts)
    assert plain.replace("\r\n", "\n").rstrip("\n") == TEXT
    for content in (plain, html):
        assert SUBJECT in content
        assert LINK in content
    assert f'<a href="{LINK}">' in html
    assert "<p>同时通知：刘洋、周婷</p>" in html


def test_email_html_is_escaped(smtp: tuple[Mailbox, SmtpSettings]) -> None:
    mailbox, settings = smtp
    EmailSender(settings).send(
        message(subject="<b>x</b> & y", body="<script>alert(1)</script>"),
        EmailChannel(address="a@town.example"),
    )
    msg = email.message_from_bytes(mailbox.envelopes[0][2], policy=email.policy.default)
    html = list(msg.iter_parts())[1].get_content()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<h2>&lt;b&gt;x&lt;/b&gt; &amp; y</h2>" in html


@pytest.mark.parametrize(
    ("where", "reply", "error"),
    [
        ("rcpt", "550 5.1.1 No such user", Refused),
        ("rcpt", "451 4.7.1 Greylisted, please try again later", Retryable),
        ("data", "451 4.3.0 Try again later", Retryable),
        ("data", "554 5.7.1 Rejected", Refused),
    ],
)
def test_email_answers(
    smtp: tuple[Mailbox, SmtpSettings], where: str, reply: str, error: type[Exception]
) -> None:
    """RFC 5321 (https://www.rfc-editor.org/rfc/rfc5321#section-4.2.1): a 4xx SMTP answer is
    transient (retry), a 5xx one permanent (refusal), whichever command it answers."""
    mailbox, settings = smtp
    setattr(mailbox, f"{where}_reply", reply)
    with pytest.raises(error):
        EmailSender(settings).send(message(), EmailChannel(address="a@town.example"))
    assert mailbox.envelopes == []


def test_email_server_down_is_retryable() -> None:
    with reserve_port() as sock:
        settings = SmtpSettings(host="127.0.0.1", port=sock.getsockname()[1], timeout=5)
        with pytest.raises(Retryable):
            EmailSender(settings).send(message(), EmailChannel(address="a@town.example"))


def test_channels_pick_the_sender(receiver: Receiver) -> None:
    """The inbox needs no sending; every other kind goes to its own sender."""
    receiver.answer((200, {"errcode": 0, "code": 0}))
    with httpx.Client(timeout=5) as client:
        channels = Channels(client, SmtpSettings(port=free_port(), timeout=1))
        channels.send(message(), InboxChannel())
        assert receiver.received() == []
        channels.send(message(), WebhookChannel(url=receiver.url))
        channels.send(message(), WeComChannel(url=receiver.url))
        channels.send(message(), DingTalkChannel(url=receiver.url))
        channels.send(message(), FeishuChannel(url=receiver.url))
    kinds = [
        "webhook" if "webhook-id" in h.headers else h.json().get("msgtype") or h.json()["msg_type"]
        for h in receiver.received()
    ]
    assert kinds == ["webhook", "markdown", "markdown", "text"]


# --- the deliver and delivery_failed activities, with the outbox ---


def recipient(person_id: str, name: str, *channels: Channel) -> Recipient:
    return Recipient(person_id=person_id, name=name, channels=list(channels))


def notification(*recipients: Recipient, key: str = "inc-1:n1:R-NOTIFY") -> Notification:
    return Notification(
        key=key,
        incident_id="inc-1",
        rule="R-NOTIFY",
        recipients=list(recipients),
        subject=SUBJECT,
        body=BODY,
        link=LINK,
        drill=False,
        sent_at=SENT_AT,
    )


def one_request(url: str, *, secret: str | None = SECRET) -> DeliverRequest:
    note = notification(
        recipient("he.jing", "何静", InboxChannel(), WebhookChannel(url=url, secret=secret)),
        recipient("liu.yang", "刘洋"),
    )
    (request,) = deliveries_for(note)
    return request


def outbox_rows(url: str) -> list[Delivery]:
    with session_scope(url) as s:
        return list(notifications.outbox(s, incident_id="inc-1"))


def test_deliveries_for_one_per_recipient_and_channel() -> None:
    """Every external channel of every recipient is one delivery; the inbox is not."""
    note = notification(
        recipient(
            "he.jing",
            "何静",
            InboxChannel(),
            WebhookChannel(url="http://127.0.0.1:9/hook?token=secret", secret=SECRET),
            EmailChannel(address="he.jing@town.example"),
        ),
        recipient("liu.yang", "刘洋"),
        recipient("unit:sswb", "社会事务办", DingTalkChannel(url="http://127.0.0.1:9/robot/send")),
    )
    requests = deliveries_for(note)
    assert [(r.recipient.person_id, r.target) for r in requests] == [
        ("he.jing", "webhook:http://127.0.0.1:9/hook"),  # never the query (a token)
        ("he.jing", "email:he.jing@town.example"),
        ("unit:sswb", "dingtalk:http://127.0.0.1:9/robot/send"),
    ]
    assert [r.key for r in requests] == [
        f"{note.key}|{r.recipient.person_id}|{r.target}" for r in requests
    ]
    assert deliveries_for(note) == requests  # stable


def test_notify_writes_inbox_and_pending_outbox_without_sending(
    store_url: str, receiver: Receiver
) -> None:
    """R-NOTIFY: the inbox and the outbox rows are written at once; nothing is sent yet, so the
    inbox never waits for a channel. A retry adds nothing."""
    activities = NotifyActivities(store_url)
    request = one_request(receiver.url)
    assert activities.notify(request.note) == 1
    assert activities.notify(request.note) == 1
    assert receiver.received() == []
    (row,) = outbox_rows(store_url)
    assert (row.key, row.recipient, row.kind, row.channel, row.state, row.attempts) == (
        request.key,
        "he.jing",
        "webhook",
        f"webhook:{receiver.url}",
        "pending",
        0,
    )
    assert (row.rule, row.last_error, row.sent_at) == ("R-NOTIFY", None, None)
    with session_scope(store_url) as s:
        for pid in ("he.jing", "liu.yang"):
            (msg,) = notifications.inbox(s, recipient=pid)
            assert (msg.key, msg.subject, msg.link) == (request.note.key, SUBJECT, LINK)


def test_deliver_exactly_once(store_url: str, receiver: Receiver) -> None:
    """One signed POST per outbox row: once the row is sent, a retried activity sends nothing."""
    activities = NotifyActivities(store_url)
    request = one_request(receiver.url)
    activities.notify(request.note)

    assert activities.deliver(request) == "sent"
    (hit,) = receiver.received()
    assert verify_standard(SECRET, hit.headers, hit.body)
    payload = hit.json()
    assert payload["recipient"] == {"id": "he.jing", "name": "何静"}
    assert payload["others"] == ["刘洋"]
    assert datetime.fromisoformat(payload["sent_at"]) == SENT_AT
    (row,) = outbox_rows(store_url)
    assert (row.state, row.attempts, row.last_error) == ("sent", 1, None)
    assert row.sent_at is not None and row.sent_at.tzinfo is UTC
    assert abs(row.sent_at - datetime.now(UTC)) < timedelta(minutes=1)

    assert activities.deliver(request) == "already sent"
    assert activities.deliver(request.model_copy(deep=True)) == "already sent"
    assert len(receiver.received()) == 1
    (row,) = outbox_rows(store_url)
    assert (row.state, row.attempts) == ("sent", 1)


def test_deliver_without_notify_creates_its_row(store_url: str, receiver: Receiver) -> None:
    """A delivery whose row is missing (say, carried over a continue-as-new) still has one."""
    request = one_request(receiver.url, secret=None)
    assert NotifyActivities(store_url).deliver(request) == "sent"
    assert [(r.key, r.state, r.attempts) for r in outbox_rows(store_url)] == [
        (request.key, "sent", 1)
    ]


@pytest.mark.parametrize("status", [500, 503, 429])
def test_deliver_server_error_is_retryable(store_url: str, receiver: Receiver, status: int) -> None:
    """A receiver that is down fails the activity retryably, the row stays pending with its
    attempts counted; once it recovers the message goes once, under the same webhook-id."""
    activities = NotifyActivities(store_url)
    request = one_request(receiver.url)
    activities.notify(request.note)
    receiver.answer(status, status, 200)

    for attempt in (1, 2):
        with pytest.raises(ApplicationError) as info:
            activities.deliver(request)
        assert info.value.non_retryable is False
        assert info.value.type == "DeliveryRetry"
        assert f"HTTP {status}" in info.value.message
        assert request.target in info.value.message
        (row,) = outbox_rows(store_url)
        assert (row.state, row.attempts, row.last_error, row.sent_at) == (
            "pending",
            attempt,
            f"HTTP {status}",
            None,
        )

    assert activities.deliver(request) == "sent"
    hits = receiver.received()
    assert len(hits) == 3
    assert len({h.headers["webhook-id"] for h in hits}) == 1
    assert len({h.body for h in hits}) == 1
    assert all(verify_standard(SECRET, h.headers, h.body) for h in hits)
    (row,) = outbox_rows(store_url)
    assert (row.state, row.attempts, row.last_error) == ("sent", 3, None)

    assert activities.deliver(request) == "already sent"
    assert len(receiver.received()) == 3


def test_deliver_unreachable_is_retryable(store_url: str) -> None:
    """Nothing listening: a connection error is retryable, and recorded on the row."""
    with reserve_port() as sock:
        request = one_request(f"http://127.0.0.1:{sock.getsockname()[1]}/gone")
        with pytest.raises(ApplicationError) as info:
            NotifyActivities(store_url, webhook_timeout=2).deliver(request)
    assert info.value.non_retryable is False
    (row,) = outbox_rows(store_url)
    assert (row.state, row.attempts) == ("pending", 1)
    assert row.last_error is not None and "ConnectError" in row.last_error


def test_deliver_refused_is_not_retryable(store_url: str, receiver: Receiver) -> None:
    """A 4xx answer is permanent: non-retryable (type DeliveryRefused), the row failed."""
    activities = NotifyActivities(store_url)
    request = one_request(receiver.url)
    activities.notify(request.note)
    receiver.answer(400)
    with pytest.raises(ApplicationError) as info:
        activities.deliver(request)
    assert info.value.non_retryable is True
    assert info.value.type == "DeliveryRefused"
    assert info.value.message.startswith(f"{request.target}: HTTP 400")
    assert len(receiver.received()) == 1
    (row,) = outbox_rows(store_url)
    assert (row.state, row.attempts, row.sent_at) == ("failed", 1, None)
    assert row.last_error is not None and row.last_error.startswith("HTTP 400")
    with session_scope(store_url) as s:  # the inbox was written regardless
        assert len(notifications.inbox(s, recipient="he.jing")) == 1


def test_deliver_provider_refusal(store_url: str, receiver: Receiver) -> None:
    """A robot's error code is a refusal too; the row keeps the code and message."""
    note = notification(
        recipient("unit:sswb", "社会事务办", WeComChannel(url=receiver.url + "?key=k"))
    )
    (request,) = deliveries_for(note)
    receiver.answer((200, {"errcode": 93000, "errmsg": "invalid webhook url"}))
    with pytest.raises(ApplicationError) as info:
        NotifyActivities(store_url).deliver(request)
    assert (info.value.type, info.value.non_retryable) == ("DeliveryRefused", True)
    (row,) = outbox_rows(store_url)
    assert (row.recipient, row.kind, row.channel, row.state) == (
        "unit:sswb",
        "wecom",
        f"wecom:{receiver.url}",
        "failed",
    )
    assert row.last_error == "errcode 93000: invalid webhook url"


@pytest.mark.parametrize(
    ("given_up", "state", "what"),
    [(True, "given_up", "多次重试后放弃"), (False, "failed", "被拒收")],
)
def test_delivery_failed_tells_the_office(
    store_url: str, receiver: Receiver, given_up: bool, state: str, what: str
) -> None:
    """A refused or given-up delivery is recorded on its row, and each office person is told in
    the inbox which channel failed for whom (once, however often the activity runs)."""
    activities = NotifyActivities(store_url)
    request = one_request(receiver.url)
    activities.notify(request.note)
    failure = DeliveryFailure(
        request=request, reason="360分钟内未能送达（HTTP 503）", given_up=given_up, office=OFFICE
    )
    activities.delivery_failed(failure)
    activities.delivery_failed(failure)
    assert receiver.received() == []
    (row,) = outbox_rows(store_url)
    assert (row.state, row.last_error, row.sent_at) == (state, failure.reason, None)
    with session_scope(store_url) as s:
        for pid in OFFICE:
            (msg,) = [m for m in notifications.inbox(s, recipient=pid) if m.key.endswith("|failed")]
            assert msg.key == f"{request.key}|failed"
            assert msg.incident_id == "inc-1"
            assert msg.subject == "通知发送失败：何静（webhook）"
            assert request.target in msg.body and what in msg.body and failure.reason in msg.body
            assert SUBJECT in msg.body
            assert msg.link == LINK
            assert msg.created_at.tzinfo is UTC
        # The person whose channel failed still has the message in the inbox, nothing more.
        assert [m.key for m in notifications.inbox(s, recipient="he.jing")] == [request.note.key]


async def test_late_attempt_does_not_undo_given_up(store_url: str, receiver: Receiver) -> None:
    """The give-up period can end while an attempt is held by a slow receiver: the workflow
    records given_up and tells the office; the attempt, failing afterwards, must not put the row
    back to pending (nothing will retry it)."""
    activities = NotifyActivities(store_url, webhook_timeout=30)
    request = one_request(receiver.url)
    activities.notify(request.note)
    receiver.answer(503)
    receiver.gate.clear()
    attempt = asyncio.ensure_future(asyncio.to_thread(activities.deliver, request))
    try:
        await eventually(receiver.received)  # the attempt is held at the receiver
        activities.delivery_failed(
            DeliveryFailure(
                request=request,
                reason="0.2分钟内未能送达（HTTP 503）",
                given_up=True,
                office=OFFICE,
            )
        )
        (row,) = outbox_rows(store_url)
        assert row.state == "given_up"
    finally:
        receiver.gate.set()
    with pytest.raises(ApplicationError) as info:
        await attempt
    assert info.value.type == "DeliveryRetry"
    (row,) = outbox_rows(store_url)
    assert (row.state, row.last_error) == ("given_up", "0.2分钟内未能送达（HTTP 503）")


# --- one-time sign-in links (issue 18, item 8) ---

SIGN_IN_URL = "https://yq.example.gov.cn/"


def _links_in(text: str) -> list[str]:
    import re

    return re.findall(r"yql_[A-Za-z0-9_-]+", text)


def test_a_persons_own_channel_carries_a_sign_in_link_and_no_group_robot_does(
    store_url: str,
) -> None:
    """A person's own webhook (the town's gateway to their SMS or personal messages) gets a
    one-time link for that person to the incident; a group robot never does, not even one listed
    on a person (anyone in the group reads it), nor a unit's own webhook. The link is minted by
    the activity: the request (workflow data) carries none."""
    from store import credentials

    hook = Receiver()
    unit_hook = Receiver()
    wecom = Receiver((200, {"errcode": 0}), path="/cgi-bin/webhook/send")
    ding = Receiver((200, {"errcode": 0}), path="/robot/send")
    feishu = Receiver((200, {"code": 0}), path="/open-apis/bot/v2/hook/x")
    try:
        note = notification(
            recipient(
                "he.jing",
                "何静",
                WebhookChannel(url=hook.url, secret=SECRET),
                WeComChannel(url=wecom.url),
            ),
            recipient(
                "unit:sswb",
                "社会事务办",
                WebhookChannel(url=unit_hook.url),
                DingTalkChannel(url=ding.url),
                FeishuChannel(url=feishu.url),
            ),
        )
        activities = NotifyActivities(store_url, sign_in_url=SIGN_IN_URL)
        requests = deliveries_for(note)
        for request in requests:
            assert activities.deliver(request) == "sent"
            assert _links_in(request.model_dump_json()) == []
        (hit,) = hook.received()
        link = hit.json()["sign_in_link"]
        assert link.startswith("https://yq.example.gov.cn/signin/yql_")
        assert hit.json()["link"] == LINK  # the page's own link stays as it was
        (token,) = _links_in(link)
        with session_scope(store_url) as s:
            found = credentials.find_link(s, token=token)
        assert found == credentials.LinkFound("he.jing", "inc-1", "live")
        for robot in (wecom, ding, feishu, unit_hook):
            (robot_hit,) = robot.received()
            assert _links_in(robot_hit.body.decode()) == [] and b"/signin/" not in robot_hit.body
        assert "sign_in_link" not in unit_hook.received()[0].json()
    finally:
        for r in (hook, unit_hook, wecom, ding, feishu):
            r.close()


def test_no_sign_in_link_without_a_public_url_or_for_a_digest(
    store_url: str, receiver: Receiver
) -> None:
    """Without the worker's public address no link is minted; nor for a message that is not
    about one incident (the daily digest links the list)."""
    request = one_request(receiver.url)
    assert NotifyActivities(store_url).deliver(request) == "sent"
    digest = request.model_copy(
        update={
            "key": "digest|he.jing|x",
            "note": request.note.model_copy(update={"link": "http://localhost:8000/incidents"}),
        }
    )
    assert NotifyActivities(store_url, sign_in_url=SIGN_IN_URL).deliver(digest) == "sent"
    assert all("sign_in_link" not in hit.json() for hit in receiver.received())


def test_a_retried_delivery_mints_a_fresh_link_and_leaves_the_first(
    store_url: str, receiver: Receiver
) -> None:
    """An attempt that failed may still have reached the person (the answer was lost): its link
    stays good. The retry's message carries a fresh link; each signs in once."""
    from store import credentials

    activities = NotifyActivities(store_url, sign_in_url=SIGN_IN_URL)
    request = one_request(receiver.url)
    receiver.answer(503, 200)
    with pytest.raises(ApplicationError):
        activities.deliver(request)
    assert activities.deliver(request) == "sent"
    assert activities.deliver(request) == "already sent"  # no third link
    first, second = (_links_in(hit.json()["sign_in_link"])[0] for hit in receiver.received())
    assert first != second
    with session_scope(store_url) as s:
        assert credentials.use_link(s, token=second) is not None
        assert credentials.find_link(s, token=first).state == "live"  # type: ignore[union-attr]
