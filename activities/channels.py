"""Notification channels behind one interface: `send(message, channel)` delivers or raises.

Each sender follows its provider's public documentation (cited on the class). A `Retryable` error
(network trouble, HTTP 5xx or 429, a provider's rate-limit code) is worth trying again; a `Refused`
one (any other 4xx, a provider error code, a bad signature) is not, and is recorded as failed.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import logging
import math
import re
import smtplib
import ssl
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr, parsedate_to_datetime
from html import escape
from typing import TYPE_CHECKING, Any, Literal, Protocol

import httpcore  # noqa: F401  (httpx imports it lazily; loading it from several threads at once can hang)
import httpx

from plan.roster import (
    Channel,
    DingTalkChannel,
    EmailChannel,
    FeishuChannel,
    InboxChannel,
    SmsChannel,
    WebhookChannel,
    WeComChannel,
    standard_webhook_key,
)

if TYPE_CHECKING:
    from config.settings import Settings


class DeliveryError(Exception):
    pass


class Retryable(DeliveryError):
    """Try again later: the receiver is down, busy or rate-limiting. `retry_after`: how long the
    receiver asked us to wait (its Retry-After), when it said."""

    def __init__(self, message: str, *, retry_after: timedelta | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Refused(DeliveryError):
    """The receiver said no; trying again will not help."""


# What a person wrote (a title, a source, a reason, a reply: anything in a subject or a body) goes
# to the robots as text, never as markup (issue 15, finding 6). None of the robots documents an
# escape character (WeCom markdown: https://developer.work.weixin.qq.com/document/path/91770;
# DingTalk markdown: https://open.dingtalk.com/document/robots/message-types-and-data-format;
# Feishu text with <at> tags: https://open.feishu.cn/document/uAjLw4CM/ukTMukTMukTM/im-v1/message/
# create_json), so a backslash might show or be ignored. Instead each ASCII
# character that starts markup in one of them (links and images [ ] , autolinks and HTML, font
# and mentions < > &, emphasis * _ ~ ` , headings and quotes # > , tables | , the escape \) is
# sent as its full-width twin, which reads the same in Chinese text and is markup in none; and
# "://" as "：//", so no address a person wrote becomes a link. Our own link (to the incident
# page) is added after, as a link.
_INERT = str.maketrans(
    {
        "\\": "＼",
        "`": "｀",
        "*": "＊",
        "_": "＿",
        "~": "～",
        "[": "［",
        "]": "］",
        "<": "＜",
        ">": "＞",
        "&": "＆",
        "#": "＃",
        "|": "｜",
    }
)


def inert(text: str) -> str:
    """A person's text made plain for every robot format (see _INERT)."""
    return text.translate(_INERT).replace("://", "：//")


@dataclass
class OutgoingMessage:
    """What a person reads, whatever the channel. The inbox, e-mail and the town's own webhooks
    carry the subject and the body in full; a chat robot only the subject, the brief and the link
    (see "Chat robots" below)."""

    key: str  # notification key + recipient: stable across retries
    subject: str
    body: str
    link: str
    rule: str
    incident_id: str
    recipient_id: str
    recipient_name: str
    others: list[str] = field(default_factory=list)  # who else was told
    drill: bool = False
    sent_at: str = ""
    brief: list[str] = field(default_factory=list)  # the short form's lines (Notification.brief)
    # A one-time sign-in link for the recipient alone (activities/notify.py mints it, only for a
    # person's own channel); the robots' short form never carries it.
    sign_in_link: str = ""
    sign_in_hours: float = 0.0
    # For SMS (SmsSender), plain values that name no one: the incident's short number
    # (2026-1130-007, from the store), the deadline's name in a word (plan.messages.
    # sms_deadline_name) and the escalation step (0: none).
    short_number: str = ""
    deadline: str = ""
    step: int = 0

    def sign_in_note(self) -> str:
        return (
            f"仅限{self.recipient_name}本人使用，{self.sign_in_hours:g}小时内有效，只能使用一次，"
            "请勿转发"
        )

    def text(self) -> str:
        lines = [self.subject, "", self.body]
        if self.others:
            lines += ["", "同时通知：" + "、".join(self.others)]
        lines += ["", f"详情：{self.link}"]
        if self.sign_in_link:
            lines += ["", f"手机一键登录查看（{self.sign_in_note()}）：", self.sign_in_link]
        return "\n".join(lines)

    def robot_head(self) -> str:
        """What happened, in one line: the subject, inert, clipped in the title so that the
        event after the last "：" stays whole."""
        return _clip_line(inert(one_line(self.subject)), HEAD_BYTES)

    def robot_lines(self) -> list[str]:
        """The brief's lines, each inert and clipped; a notification from before briefs were
        written (issue 17) has only its rule."""
        lines = [one_line(line) for line in self.brief] or [f"规则：{self.rule}"]
        return [_clip_bytes(inert(line), LINE_BYTES) for line in lines if line]

    def robot_text(self) -> str:
        """The short form as one robot text message (unclipped; senders use `robot_parts`)."""
        return RobotPart(self.robot_head(), self.robot_lines(), self.link).text()

    def markdown(self) -> str:
        """The short form as one robot markdown message (unclipped; senders use `robot_parts`)."""
        return RobotPart(self.robot_head(), self.robot_lines(), self.link).markdown()

    def html(self) -> str:
        body = "".join(f"<p>{escape(line)}</p>" for line in self.body.splitlines() if line)
        others = f"<p>同时通知：{escape('、'.join(self.others))}</p>" if self.others else ""
        sign_in = (
            f'<p><a href="{escape(self.sign_in_link)}">一键登录并查看事件</a>'
            f"（{escape(self.sign_in_note())}）</p>"
            if self.sign_in_link
            else ""
        )
        return (
            f'<!doctype html><html lang="zh-CN"><body><h2>{escape(self.subject)}</h2>{body}{others}'
            f'<p><a href="{escape(self.link)}">查看事件</a></p>{sign_in}</body></html>'
        )

    def webhook_id(self) -> str:
        return "msg_" + hashlib.sha256(self.key.encode()).hexdigest()[:32]


# How the connection to the SMTP server is secured: "implicit" TLS from the first byte (SMTPS,
# RFC 8314 §3.3; port 465), "starttls" (RFC 3207; port 587 or 25), or "none".
SmtpTls = Literal["implicit", "starttls", "none"]
SMTPS_PORT = 465


@dataclass
class SmtpSettings:
    host: str = "localhost"
    port: int = 25
    starttls: bool = False  # YUQING_SMTP_STARTTLS, from before `tls`
    username: str | None = None
    password: str | None = None
    sender: str = "yuqing@localhost"
    timeout: float = 20.0
    tls: SmtpTls | None = None  # unset: see tls_mode
    # A PEM file of the CAs to trust instead of the system's (a mail server with a private CA).
    ca_file: str | None = None

    def tls_mode(self) -> SmtpTls:
        """`tls` when set; else implicit TLS on port 465, STARTTLS when `starttls`, else none."""
        if self.tls is not None:
            return self.tls
        if self.port == SMTPS_PORT:
            return "implicit"
        return "starttls" if self.starttls else "none"

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpSettings:
        """The YUQING_SMTP_* settings (the worker's and `yuqing notify test`'s sender)."""
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            starttls=settings.smtp_starttls,
            username=settings.smtp_username,
            password=settings.smtp_password,
            sender=settings.smtp_from,
            tls=settings.smtp_tls,
            ca_file=str(settings.smtp_ca_file) if settings.smtp_ca_file else None,
        )


@functools.lru_cache(maxsize=4)
def _tls_context(ca_file: str | None) -> ssl.SSLContext:
    """One context per CA file for every e-mail (building one loads the CA bundle, which costs
    more than the delivery; a context is safe to share between threads). A changed CA file is
    read by the next worker start."""
    return ssl.create_default_context(cafile=ca_file)


class Sender(Protocol):
    def send(self, message: OutgoingMessage, channel: Any) -> None: ...


def _raise_for_http(response: httpx.Response) -> None:
    if response.status_code == 429 or response.status_code >= 500:
        raise Retryable(f"HTTP {response.status_code}")
    if not response.is_success:
        raise Refused(f"HTTP {response.status_code}: {response.text[:200]}")


def _json_bytes(payload: dict[str, Any]) -> bytes:
    """A robot's request body as it goes on the wire: UTF-8 JSON, characters unescaped."""
    return json.dumps(payload, ensure_ascii=False).encode()


def _post_json(
    client: httpx.Client, url: str, payload: dict[str, Any], **kw: Any
) -> httpx.Response:
    body = _json_bytes(payload)
    headers = {"content-type": "application/json; charset=utf-8", **kw.pop("headers", {})}
    try:
        response = client.post(url, content=body, headers=headers, **kw)
    except httpx.HTTPError as exc:
        raise Retryable(f"{type(exc).__name__}: {exc}") from exc
    _raise_for_http(response)
    return response


# Retry-After (RFC 9110 §10.2.3, https://www.rfc-editor.org/rfc/rfc9110#section-10.2.3): 1*DIGIT
# seconds, or an HTTP-date. Larger numbers than this are read as this (no timedelta overflows).
_DELAY_SECONDS = re.compile(r"[0-9]+")
_LONGEST_DELAY = 10**9


def retry_after(response: httpx.Response) -> timedelta | None:
    """How long the receiver asks us to wait before trying again, or None when it does not say,
    says it unreadably, or names a moment already past (then our own backoff decides)."""
    value = response.headers.get("retry-after", "").strip()
    if _DELAY_SECONDS.fullmatch(value):
        seconds = min(int(value), _LONGEST_DELAY)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:  # "-0000": UTC as the HTTP-date grammar has it
            when = when.replace(tzinfo=UTC)
        seconds = min(math.ceil((when - datetime.now(UTC)).total_seconds()), _LONGEST_DELAY)
    return timedelta(seconds=seconds) if seconds > 0 else None


class WebhookSender:
    """Standard Webhooks (https://www.standardwebhooks.com/, spec/standard-webhooks.md): headers
    webhook-id (the same on every retry), webhook-timestamp (seconds) and, with a secret,
    webhook-signature = "v1," + base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}")), the key
    being the secret's base64 after whsec_ (see plan.roster.standard_webhook_key: padded or not;
    a secret the spec does not accept is Refused, never used as some other key). A 429 or 503
    with Retry-After ("should be taken into consideration when scheduling the next attempt")
    carries the delay on the Retryable error."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def send(self, message: OutgoingMessage, channel: WebhookChannel) -> None:
        data: dict[str, Any] = {
            "type": "yuqing.notification",
            "incident_id": message.incident_id,
            "rule": message.rule,
            "recipient": {"id": message.recipient_id, "name": message.recipient_name},
            "subject": message.subject,
            "body": message.body,
            "others": message.others,
            "link": message.link,
            "drill": message.drill,
            "sent_at": message.sent_at,
        }
        if message.sign_in_link:
            # A person's own webhook only (the town's gateway to their SMS or messages).
            data["sign_in_link"] = message.sign_in_link
            data["sign_in_note"] = message.sign_in_note()
        body = json.dumps(data, ensure_ascii=False).encode()
        webhook_id = message.webhook_id()
        timestamp = str(int(time.time()))
        headers = {
            "content-type": "application/json; charset=utf-8",
            "webhook-id": webhook_id,
            "webhook-timestamp": timestamp,
        }
        if channel.secret is not None:
            # A roster file's secrets were checked when it loaded; a channel in full from an
            # incident started before channel references was not.
            try:
                headers["webhook-signature"] = sign_standard(
                    channel.secret, webhook_id, timestamp, body
                )
            except ValueError as exc:
                raise Refused(str(exc)) from exc
        try:
            response = self.client.post(channel.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise Retryable(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code in (429, 503):  # RFC 6585 §4, RFC 9110 §15.6.4
            delay = retry_after(response)
            if delay is not None:
                raise Retryable(
                    f"HTTP {response.status_code} (Retry-After {delay.total_seconds():.0f} s)",
                    retry_after=delay,
                )
        _raise_for_http(response)


def sign_standard(secret: str, webhook_id: str, timestamp: str, body: bytes) -> str:
    """The v1 signature; ValueError for a secret standard_webhook_key refuses."""
    key = standard_webhook_key(secret)
    mac = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def _check_errcode(response: httpx.Response, *, code_field: str, rate_limited: set[int]) -> None:
    """The robots answer HTTP 200 with an error code in the body."""
    try:
        data = response.json()
    except ValueError as exc:
        raise Refused(f"unexpected answer: {response.text[:200]}") from exc
    code = data.get(code_field, data.get("StatusCode", 0))
    if code in (0, None):
        return
    message = data.get("errmsg") or data.get("msg") or ""
    if code in rate_limited:
        raise Retryable(f"{code_field} {code}: {message}")
    raise Refused(f"{code_field} {code}: {message}")


class WeComSender:
    """企业微信群机器人 (https://developer.work.weixin.qq.com/document/path/91770): POST JSON
    {"msgtype": "markdown", "markdown": {"content": …}} to the robot's URL; the answer
    {"errcode": 0, "errmsg": "ok"}; 45009 is the rate limit. Mentions by mobile need the text type
    ({"msgtype": "text", "text": {"content": …, "mentioned_mobile_list": […]}}), so a channel with
    mentioned_mobiles sends text. Limits, from the same page: text content "最长不超过2048个字节",
    markdown content "最长不超过4096个字节", UTF-8 (an answer 40058 "markdown.content exceed max
    length 4096" otherwise); "每个机器人发送的消息不能超过20条/分钟"."""

    TEXT_MAX = 2048  # bytes of text.content
    MAX_BYTES = 4096  # bytes of markdown.content

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def send(self, message: OutgoingMessage, channel: WeComChannel) -> None:
        mobiles = list(channel.mentioned_mobiles)
        if mobiles:
            parts = robot_parts(message, lambda p: len(p.text().encode()), self.TEXT_MAX)
        else:
            parts = robot_parts(message, lambda p: len(p.markdown().encode()), self.MAX_BYTES)
        for part in _paced(parts, ROBOT_PART_INTERVAL):
            payload: dict[str, Any]
            if mobiles:
                text: dict[str, Any] = {"content": part.text()}
                if part.first:
                    text["mentioned_mobile_list"] = mobiles  # mentioned once, not per part
                payload = {"msgtype": "text", "text": text}
            else:
                payload = {"msgtype": "markdown", "markdown": {"content": part.markdown()}}
            response = _post_json(self.client, channel.url, payload)
            _check_errcode(response, code_field="errcode", rate_limited={45009})


def dingtalk_sign(secret: str, timestamp_ms: str) -> str:
    """钉钉加签: base64(HMAC-SHA256(key=secret, msg=f"{timestamp}\\n{secret}")), URL-encoded."""
    mac = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return urllib.parse.quote_plus(base64.b64encode(mac))


class DingTalkSender:
    """钉钉自定义机器人 (https://open.dingtalk.com/document/robots/custom-robot-access and
    …/customize-robot-security-settings): POST JSON {"msgtype": "markdown", "markdown": {"title",
    "text"}, "at": {"atMobiles": […]}} to the robot URL; with 加签 the URL also carries
    &timestamp=<ms>&sign=<see dingtalk_sign>. The answer {"errcode": 0}; 130101 is the rate limit
    ("send too fast, exceed 20 times per minute": 每个机器人每分钟最多发送20条, same page). A body
    over 20000 bytes is refused with errcode 460101 "message too long, exceed 20000 bytes" (the
    robot's own answer, as reported in github.com/timonwong/prometheus-webhook-dingtalk/issues/30
    and github.com/Le0nsec/SecCrawler/issues/12; DingTalk's pages give no figure for the robot),
    so each request body is kept within 20000 bytes as sent."""

    BODY_MAX = 20_000  # bytes of the request body
    TITLE_MAX = 64  # characters of markdown.title (the chat list's preview)

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def payload(self, part: RobotPart, channel: DingTalkChannel) -> dict[str, Any]:
        text = part.markdown()
        mobiles = list(channel.at_mobiles) if part.first else []  # mentioned once
        if mobiles:
            text += "\n\n" + " ".join(f"@{m}" for m in mobiles)
        marker = part.marker
        title = part.subject[: self.TITLE_MAX - len(marker)] + marker
        return {
            "msgtype": "markdown",
            "markdown": {"title": title, "text": text},
            "at": {"atMobiles": mobiles, "isAtAll": False},
        }

    def send(self, message: OutgoingMessage, channel: DingTalkChannel) -> None:
        parts = robot_parts(
            message, lambda p: len(_json_bytes(self.payload(p, channel))), self.BODY_MAX
        )
        for part in _paced(parts, ROBOT_PART_INTERVAL):
            url = channel.url
            if channel.secret:
                timestamp = str(int(time.time() * 1000))
                sep = "&" if "?" in url else "?"
                sign = dingtalk_sign(channel.secret, timestamp)
                url = f"{url}{sep}timestamp={timestamp}&sign={sign}"
            response = _post_json(self.client, url, self.payload(part, channel))
            _check_errcode(response, code_field="errcode", rate_limited={130101})


def feishu_sign(secret: str, timestamp_s: str) -> str:
    """飞书签名校验: base64(HMAC-SHA256(key=f"{timestamp}\\n{secret}", msg=b""))."""
    mac = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


class FeishuSender:
    """飞书自定义机器人 (https://open.feishu.cn/document/client-docs/bot-v3/add-custom-bot): POST
    JSON {"msg_type": "text", "content": {"text": …}} to the hook URL, with "timestamp" (seconds,
    a string) and "sign" (see feishu_sign) when 签名校验 is on. The answer {"code": 0, "msg":
    "success"}; 11232 is the rate limit. Limits, from the same page: "请求体的数据大小不能超过
    20 KB" (kept here within 20000 bytes, the stricter reading) and "单租户单机器人 100 次/分钟，
    5 次/秒". The text is the short form's (`RobotPart.text`): an <at> tag or a link a person wrote
    arrives as plain characters."""

    BODY_MAX = 20_000  # bytes of the request body
    PART_INTERVAL = 0.25  # seconds between the parts of one message: 5 a second at most

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    @staticmethod
    def payload(part: RobotPart, channel: FeishuChannel) -> dict[str, Any]:
        payload: dict[str, Any] = {"msg_type": "text", "content": {"text": part.text()}}
        if channel.secret:
            timestamp = str(int(time.time()))
            payload = {
                "timestamp": timestamp,
                "sign": feishu_sign(channel.secret, timestamp),
                **payload,
            }
        return payload

    def send(self, message: OutgoingMessage, channel: FeishuChannel) -> None:
        parts = robot_parts(
            message, lambda p: len(_json_bytes(self.payload(p, channel))), self.BODY_MAX
        )
        for part in _paced(parts, self.PART_INTERVAL):
            response = _post_json(self.client, channel.url, self.payload(part, channel))
            _check_errcode(response, code_field="code", rate_limited={11232})


class EmailSender:
    """E-mail over SMTP (RFC 5321) with implicit TLS, STARTTLS or neither (SmtpSettings.tls_mode),
    a plain-text and an HTML alternative (RFC 2046 §5.1.4).

    RFC 5322 §3.6: a Date (when the notification was made; the attempt's time when the message
    does not say) and a Message-ID whose right side is the sender's domain and whose left side is
    the delivery's key hashed, the same on every attempt (§3.6.4), so a message that arrives twice
    (the server took it but its answer was lost) is one message to the reader's client. Not
    make_msgid(): its random part would differ on each retry.

    Addresses: a domain that is not ASCII goes as its A-label (RFC 5890), which any server takes.
    A mailbox name that is not ASCII needs SMTPUTF8 (RFC 6531 §3.4): to a server that does not
    offer it the delivery is Refused on the first attempt (asking again will not change the
    server), and the office told; before, smtplib's refusal was retried for the give-up period.

    A header is one line: the subject's line breaks (a title from before titles were refused
    them) are folded to spaces, so such an incident's e-mail still goes. A message that cannot be
    built at all is Refused at once: trying again would build it the same way."""

    def __init__(self, smtp: SmtpSettings) -> None:
        self.smtp = smtp

    def build(self, message: OutgoingMessage, channel: EmailChannel) -> EmailMessage:
        msg = EmailMessage()
        try:
            msg["Subject"] = one_line(message.subject)
            msg["From"] = self.smtp.sender
            msg["To"] = ascii_domain(channel.address)
            msg["Date"] = format_datetime(_made_at(message.sent_at))
            msg["Message-ID"] = f"<{message.webhook_id()}@{_domain_of(self.smtp.sender)}>"
            msg.set_content(message.text())
            msg.add_alternative(message.html(), subtype="html")
            msg.as_bytes()  # what send_message will do: fails here, not half-way to the server
        except (ValueError, TypeError, LookupError) as exc:  # UnicodeError is a ValueError
            raise Refused(f"无法生成邮件（{type(exc).__name__}: {exc}）") from exc
        return msg

    def connect(self) -> smtplib.SMTP:
        settings, mode = self.smtp, self.smtp.tls_mode()
        if mode == "implicit":
            return smtplib.SMTP_SSL(
                settings.host,
                settings.port,
                timeout=settings.timeout,
                context=_tls_context(settings.ca_file),
            )
        smtp = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
        if mode == "starttls":
            try:
                smtp.starttls(context=_tls_context(settings.ca_file))
            except BaseException:
                smtp.close()
                raise
        return smtp

    def send(self, message: OutgoingMessage, channel: EmailChannel) -> None:
        msg = self.build(message, channel)
        sender = parseaddr(self.smtp.sender)[1]
        recipient = ascii_domain(channel.address)
        try:
            with self.connect() as smtp:
                if self.smtp.username:
                    smtp.login(self.smtp.username, self.smtp.password or "")
                smtp.ehlo_or_helo_if_needed()
                if not (sender + recipient).isascii() and not smtp.has_extn("smtputf8"):
                    # The reason reaches the incident's history: it names no address.
                    which = (
                        "收件地址" if not recipient.isascii() else "发件地址（YUQING_SMTP_FROM）"
                    )
                    raise Refused(
                        f"{which}含非 ASCII 字符，须邮件服务器支持 SMTPUTF8（RFC 6531），"
                        f"而邮件服务器 {self.smtp.host} 不支持，重试也无法送达；"
                        "请在名册中改用 ASCII 邮箱地址，或更换支持 SMTPUTF8 的邮件服务器"
                    )
                smtp.send_message(msg, from_addr=sender, to_addrs=[recipient])
        except smtplib.SMTPRecipientsRefused as exc:
            # The reason reaches the incident's history: the server's answers, not the address.
            answers = list(exc.recipients.values())
            said = "; ".join(f"{code} {text!r}" for code, text in answers)
            if answers and all(400 <= code < 500 for code, _text in answers):
                # RFC 5321 4.2.1: a 4xx reply (greylisting, mailbox busy) is transient.
                raise Retryable(f"SMTP deferred the recipient: {said}") from exc
            raise Refused(f"SMTP refused the recipient: {said}") from exc
        except smtplib.SMTPResponseException as exc:
            if 400 <= exc.smtp_code < 500:
                raise Retryable(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}") from exc
            raise Refused(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}") from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise Retryable(f"{type(exc).__name__}: {exc}") from exc


@dataclass
class SmsSettings:
    """The YUQING_SMS_* settings: Tencent Cloud SMS's API keys, application, signature and
    template (config/settings.py). None of them ever enters workflow data."""

    secret_id: str | None = None
    secret_key: str | None = None
    sdk_app_id: str | None = None
    sign_name: str | None = None
    template_id: str | None = None
    endpoint: str = "https://sms.tencentcloudapi.com"
    region: str = "ap-guangzhou"
    param_max_chars: int = 6
    timeout: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings) -> SmsSettings:
        return cls(
            secret_id=settings.sms_secret_id,
            secret_key=settings.sms_secret_key,
            sdk_app_id=settings.sms_sdk_app_id,
            sign_name=settings.sms_sign_name,
            template_id=settings.sms_template_id,
            endpoint=settings.sms_endpoint,
            region=settings.sms_region,
            param_max_chars=settings.sms_param_max_chars,
            timeout=settings.webhook_timeout_seconds,
        )

    def missing(self) -> list[str]:
        names = {
            "YUQING_SMS_SECRET_ID": self.secret_id,
            "YUQING_SMS_SECRET_KEY": self.secret_key,
            "YUQING_SMS_SDK_APP_ID": self.sdk_app_id,
            "YUQING_SMS_SIGN_NAME": self.sign_name,
            "YUQING_SMS_TEMPLATE_ID": self.template_id,
        }
        return [name for name, value in names.items() if not value]

    def http_profile(self) -> tuple[str, str]:
        """The SDK's HttpProfile protocol and endpoint (host[:port]) from `endpoint`: a URL
        (https://sms.tencentcloudapi.com, http://127.0.0.1:PORT) or a bare host (https)."""
        split = urllib.parse.urlsplit(
            self.endpoint if "://" in self.endpoint else "//" + self.endpoint
        )
        scheme = split.scheme or "https"
        if scheme not in ("http", "https") or not split.netloc or split.path not in ("", "/"):
            raise Refused(
                f"短信接口地址（YUQING_SMS_ENDPOINT）无效：{self.endpoint!r}，"
                "须为 https://主机[:端口]"
            )
        return scheme, split.netloc


# Tencent Cloud SMS error codes (SendSms, "错误码": https://cloud.tencent.com/document/api/382/
# 55981 and the API's common errors) that are worth trying again, and how long to wait: the
# per-number limits are the provider's defaults (30 seconds, an hour, a day; 频率限制 in the SMS
# console), a day's being retried hourly (RETRY_AFTER_CAP in activities/notify.py caps any of them
# at the retry policy's longest interval). Any other LimitExceeded.* waits a minute; the API's
# request rate limit (RequestLimitExceeded) a second; an InternalError.* (the provider's own
# trouble, a timeout to the carrier) and the SDK's network errors have no delay of their own. Any
# other code (a bad number, an unapproved signature or template, a package used up, a failed
# authentication, a bad parameter) is a refusal: trying again sends nothing more.
SMS_RETRY_AFTER = {
    "LimitExceeded.PhoneNumberThirtySecondLimit": timedelta(seconds=30),
    "LimitExceeded.PhoneNumberOneHourLimit": timedelta(hours=1),
    "LimitExceeded.PhoneNumberDailyLimit": timedelta(hours=1),
    "LimitExceeded.DailyLimit": timedelta(hours=1),
    "LimitExceeded.AppDailyLimit": timedelta(hours=1),
    "LimitExceeded.AppGlobalDailyLimit": timedelta(hours=1),
    "LimitExceeded.AppMainlandChinaDailyLimit": timedelta(hours=1),
    "LimitExceeded.PhoneNumberSameContentDailyLimit": timedelta(hours=1),
    "RequestLimitExceeded": timedelta(seconds=1),
}
SMS_RETRY_AFTER_OTHER_LIMIT = timedelta(minutes=1)
SDK_LOGGER = "tencentcloud_sdk_common"
SMS_TRANSIENT = ("InternalError", "ClientNetworkError", "ServerNetworkError")


def sms_error(code: str, said: str) -> DeliveryError:
    """A Tencent Cloud SMS error code (request-level or one number's) as Retryable or Refused."""
    reason = f"腾讯云短信 {code}：{said[:200]}"
    if code in SMS_RETRY_AFTER:
        return Retryable(reason, retry_after=SMS_RETRY_AFTER[code])
    if code.startswith("LimitExceeded.") or code == "LimitExceeded":
        return Retryable(reason, retry_after=SMS_RETRY_AFTER_OTHER_LIMIT)
    if code.partition(".")[0] in SMS_TRANSIENT:
        return Retryable(reason)
    return Refused(reason)


def _masked(text: str, mobile: str) -> str:
    """A provider's message with the number (E.164, or its 11 digits) masked: the reason reaches
    the outbox, the office's inbox and the incident's history."""
    national = mobile.removeprefix("+86")
    hidden = national[:3] + "****" + national[-4:]
    return text.replace(mobile, hidden).replace(national, hidden)


class SmsSender:
    """短信 through Tencent Cloud SMS with its official SDK (tencentcloud-sdk-python-sms): API
    SendSms, version 2021-01-11 (https://cloud.tencent.com/document/api/382/55981), signed with
    TC3-HMAC-SHA256 by the SDK (签名方法 v3), to one number in E.164 (+86…), with the approved
    signature (SignName), template (TemplateId) and application (SmsSdkAppId) of the settings.

    R-SECRECY: the text is the approved template's; we fill only its variables, and none of them is
    incident content (a title, a summary, a name): the template, as the town applies for it, is

        舆情事件{1}-{2}-{3}（{4}）：{5}，请登录系统查看。

    {1}-{2}-{3} the incident's short number in its three parts (2026, 1130, 007), {4} the deadline
    in a word (官方回复; 事件动态 when the message is about none), {5} the escalation step
    (督办第2级) or 新通知. Split so that every value keeps within Tencent's limit on one variable:
    "非验证码短信：每个变量取值最多支持6个字符" (汉字、字母、数字、标点 each one character; FAQ
    模板相关问题, https://cloud.tencent.com/document/product/382/13301). An account verified as an
    organisation may have longer values (https://www.tencentcloud.com/zh/document/product/382/
    40653); YUQING_SMS_PARAM_MAX_CHARS follows the stricter FAQ unless set. Each value is checked
    before sending: a value that cannot be made to fit is Refused, never cut through a number.

    The answer: HTTP 200 with Response.SendStatusSet[].Code "Ok" for the number, or an error code
    there; a request-level error is Response.Error.Code (the SDK raises it). Classified by
    sms_error. The SDK makes one attempt (its retryer is off by default): the outbox's retries are
    the only ones, and once an attempt is answered "Ok" the row is sent and no attempt follows.
    SendSms takes no idempotency key, so an attempt whose answer was lost (a dropped connection, a
    gateway's 5xx) is tried again and may, like any channel's, reach the phone twice: a lost SMS
    is worse than a repeated one for a deadline. SessionContext carries the delivery's hashed key
    (the webhook-id), which the provider returns in its answer and delivery reports, so a report
    can be matched to the row; it names no one."""

    def __init__(self, sms: SmsSettings) -> None:
        self.sms = sms

    def params(self, message: OutgoingMessage) -> list[str]:
        limit = self.sms.param_max_chars
        if not message.short_number:
            # The store gives the number with the incident's first record, which comes first;
            # a delivery that overtook it waits for it.
            raise Retryable(f"事件 {message.incident_id} 尚未编号，稍后重试")
        parts = message.short_number.split("-")
        if len(parts) != 3 or not all(p.isdigit() for p in parts):
            raise Refused(
                f"短信须有事件编号（如 2026-1130-007），此通知没有：{message.incident_id}"
            )
        state = f"督办第{message.step}级" if message.step else "新通知"
        values = [*parts, message.deadline or "事件动态", state]
        for value in values:
            if not 0 < len(value) <= limit:
                raise Refused(
                    f"短信模板变量“{value}”超过 {limit} 个字符（YUQING_SMS_PARAM_MAX_CHARS）"
                )
        return values

    def client(self) -> Any:
        from tencentcloud.common import credential
        from tencentcloud.common.profile.client_profile import ClientProfile
        from tencentcloud.common.profile.http_profile import HttpProfile
        from tencentcloud.sms.v20210111 import sms_client

        # The SDK logs each request and answer in full at DEBUG (the number among them): never,
        # whatever level the worker's logging is set to.
        logging.getLogger(SDK_LOGGER).setLevel(logging.INFO)
        scheme, endpoint = self.sms.http_profile()
        http = HttpProfile(
            protocol=scheme, endpoint=endpoint, reqTimeout=max(1, math.ceil(self.sms.timeout))
        )
        profile = ClientProfile(signMethod="TC3-HMAC-SHA256", httpProfile=http)
        cred = credential.Credential(self.sms.secret_id, self.sms.secret_key)
        return sms_client.SmsClient(cred, self.sms.region, profile)

    def send(self, message: OutgoingMessage, channel: SmsChannel) -> None:
        from tencentcloud.common.exception.tencent_cloud_sdk_exception import (
            TencentCloudSDKException,
        )
        from tencentcloud.sms.v20210111 import models

        missing = self.sms.missing()
        if missing:
            raise Refused("短信未配置：请设置 " + "、".join(missing))
        if channel.mobile is None:
            raise Refused("名册中未登记手机号（mobile），无法发送短信")
        mobile = channel.mobile
        request = models.SendSmsRequest()
        request.PhoneNumberSet = [mobile]
        request.SmsSdkAppId = self.sms.sdk_app_id
        request.SignName = self.sms.sign_name
        request.TemplateId = self.sms.template_id
        request.TemplateParamSet = self.params(message)
        request.SessionContext = message.webhook_id()
        try:
            response = self.client().SendSms(request)
        except TencentCloudSDKException as exc:
            raise sms_error(str(exc.code), _masked(str(exc.message), mobile)) from exc
        statuses = response.SendStatusSet or []
        if len(statuses) != 1:
            # Not an answer the API gives to a one-number request: it may have sent; not again.
            raise Refused(f"腾讯云短信的应答无法识别（{len(statuses)} 个号码的发送状态）")
        status = statuses[0]
        if status.Code != "Ok":
            raise sms_error(str(status.Code), _masked(str(status.Message or ""), mobile))


class Channels:
    """Picks the sender for a channel."""

    def __init__(
        self, client: httpx.Client, smtp: SmtpSettings, sms: SmsSettings | None = None
    ) -> None:
        self.webhook = WebhookSender(client)
        self.wecom = WeComSender(client)
        self.dingtalk = DingTalkSender(client)
        self.feishu = FeishuSender(client)
        self.email = EmailSender(smtp)
        self.sms = SmsSender(sms or SmsSettings())

    def send(self, message: OutgoingMessage, channel: Channel) -> None:
        if isinstance(channel, InboxChannel):
            return
        sender: Sender = getattr(self, channel.kind)
        sender.send(message, channel)


def ascii_domain(address: str) -> str:
    """The address with its domain as A-labels (RFC 5890) when the domain is not ASCII."""
    local, at, domain = address.rpartition("@")
    if not at or domain.isascii():
        return address
    try:
        return f"{local}@{domain.encode('idna').decode('ascii')}"
    except UnicodeError:
        return address  # left as it is: it needs SMTPUTF8 then


def _domain_of(sender: str) -> str:
    """The sender's domain for a Message-ID's right side (ASCII: a msg-id is dot-atom-text)."""
    domain = ascii_domain(parseaddr(sender)[1]).rpartition("@")[2]
    return domain if domain and domain.isascii() else "localhost"


def _made_at(sent_at: str) -> datetime:
    """When the notification was made (an ISO 8601 time with its offset), else now."""
    try:
        made = datetime.fromisoformat(sent_at)
    except ValueError:
        return datetime.now(UTC)
    return made if made.tzinfo is not None else datetime.now(UTC)


def one_line(text: str) -> str:
    """Line breaks (every one str.splitlines() knows) folded to single spaces."""
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def _clip_bytes(text: str, limit: int) -> str:
    """`text` in at most `limit` bytes of UTF-8, ending in "…" when cut: cut between characters,
    never inside one (decoding the cut bytes drops only an incomplete last character)."""
    data = text.encode()
    if len(data) <= limit:
        return text
    if limit < len("…".encode()):
        return ""
    return data[: limit - len("…".encode())].decode(errors="ignore") + "…"


def _clip_line(text: str, limit: int) -> str:
    """A subject in at most `limit` bytes, clipped in its title: what follows the last "：" (the
    event: 新报告, 已逾期（第2级督办）, a digest's counts) is kept whole when it takes at most half."""
    if len(text.encode()) <= limit:
        return text
    before, sep, event = text.rpartition("：")
    tail = (sep + event).encode()
    if sep and len(tail) <= limit // 2:
        return _clip_bytes(before, limit - len(tail)) + sep + event
    return _clip_bytes(text, limit)


# --- Chat robots (issue 17, finding 5) ---
#
# R-SECRECY (../shared/plan/RULES.md: "the incident's content is shown only to staff with a role
# on it"): a group robot's message passes through a third party (Tencent, Alibaba, ByteDance) and
# is read by everyone in the group. So it carries the minimum: what happened in one line (the
# subject: drill mark, severity, title, event; the title clipped), the brief the workflow wrote
# (the rule, the deadline and when it falls due, the escalation step; a digest's one line per
# incident) and the link to the incident page, where the rest is behind sign-in. Never the body:
# a summary, a reply, a reason or a digest's full text stays in the inbox, e-mail and the town's
# own webhooks.
#
# Each request keeps within its provider's limits (on each sender), measured on what goes on the
# wire: the lines are packed into as few messages as the limit allows, never cut through the
# link line or a character. A long digest becomes several messages, "（1/3）" … in the head, each
# with the link; beyond MAX_PARTS messages (the robots allow 20 a minute) the last one says how
# many lines are left out rather than losing them silently.

HEAD_BYTES = 300  # the one line of what happened (100 Chinese characters)
LINE_BYTES = 600  # any line of the brief
MAX_PARTS = 10  # messages for one notification: half a WeCom or DingTalk robot's 20 a minute
ROBOT_PART_INTERVAL = 0.0  # WeCom, DingTalk: the per-minute limit is kept by MAX_PARTS


@dataclass
class RobotPart:
    """One robot message of the short form: the head (with its part marker), lines, our link."""

    subject: str  # the head without marker, one line and inert
    lines: list[str]
    link: str
    index: int = 1
    count: int = 1
    marker_width: int = 0  # when sizing: the widest marker this message may get

    @property
    def first(self) -> bool:
        return self.index == 1

    @property
    def marker(self) -> str:
        if self.marker_width:
            return f"（{'9' * self.marker_width}/{'9' * self.marker_width}）"
        return f"（{self.index}/{self.count}）" if self.count > 1 else ""

    def text(self) -> str:
        return "\n".join([self.subject + self.marker, "", *self.lines, "", f"详情：{self.link}"])

    def markdown(self) -> str:
        """Our bold head and our link; every line a paragraph of plain (inert) text."""
        return "\n\n".join(
            [f"**{self.subject + self.marker}**", *self.lines, f"[查看事件]({self.link})"]
        )


def robot_parts(
    message: OutgoingMessage,
    size: Callable[[RobotPart], int],
    limit: int,
    max_parts: int = MAX_PARTS,
) -> list[RobotPart]:
    """The short form of `message` in as few messages as fit: `size(part)` (the bytes the
    provider counts, measured on the payload as it will be sent) at most `limit` for each. A
    line too long for any message is clipped; a head and link that do not fit even alone are
    refused (no message could carry the link)."""
    head, lines, link = message.robot_head(), message.robot_lines(), message.link
    width = len(str(max(len(lines), 1)))  # n parts ≤ n lines

    def fits(head: str, lines: list[str]) -> bool:
        return size(RobotPart(head, lines, link, marker_width=width)) <= limit

    while not fits(head, []):
        if not head:
            raise Refused(f"链接过长，任何一条消息都容不下（{limit}字节以内）：{link[:100]}")
        head = _clip_bytes(head, len(head.encode()) // 2)
    groups: list[list[str]] = [[]]
    for line in lines:
        if fits(head, [*groups[-1], line]):
            groups[-1].append(line)
            continue
        while line and not fits(head, [line]):
            line = _clip_bytes(line, len(line.encode()) * 3 // 4)
        if groups[-1]:
            groups.append([])
        if line:
            groups[-1].append(line)
    groups = [g for g in groups if g] or [[]]
    if len(groups) > max_parts:
        left_out = sum(len(g) for g in groups[max_parts:])
        groups = groups[:max_parts]
        last = groups[-1]
        while True:
            note = f"……另有{left_out}项未列出，请登录系统查看"
            if fits(head, [*last, note]) or not last:
                last.append(note)
                break
            last.pop()
            left_out += 1
    return [
        RobotPart(head, group, link, index=n, count=len(groups))
        for n, group in enumerate(groups, 1)
    ]


def _paced(parts: list[RobotPart], interval: float) -> Iterator[RobotPart]:
    """The parts in order, `interval` seconds apart (a provider's per-second limit)."""
    for n, part in enumerate(parts):
        if n and interval:
            time.sleep(interval)
        yield part
