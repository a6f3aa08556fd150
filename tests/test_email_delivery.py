"""Issue 17, finding 4: e-mail as RFC 5322 and the SMTP servers a town has expect it.

Real SMTP servers (aiosmtpd) on 127.0.0.1, with and without SMTPUTF8 (RFC 6531), with implicit TLS
(RFC 8314 §3.3, port 465's SMTPS) and with STARTTLS (RFC 3207), their certificates signed by a CA
made here and trusted through the CA-file setting. Every message is parsed back with the standard
library's current policy and must have no defects, a Date (RFC 5322 §3.6: required) and a
Message-ID in the sender's domain (RFC 5322 §3.6.4)."""

from __future__ import annotations

import email
import email.policy
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from temporalio.exceptions import ApplicationError

from activities.channels import EmailSender, Refused, Retryable, SmtpSettings
from activities.notify import NotifyActivities
from config.settings import Settings
from devstack import free_port
from plan.models import DeliverRequest, Notification, Recipient
from plan.outbox import deliveries_for
from plan.roster import EmailChannel
from store import notifications
from store.db import session_scope
from tests.test_channels import SENT_AT, SUBJECT, Mailbox, message
from tests.test_tls import _write_cert, _write_key

SENDER = "yuqing@town.example"


def parsed(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def assert_well_formed(msg: EmailMessage, *, header_defects: bool = False) -> None:
    """No defect in the message or any of its parts; nor in any header, unless `header_defects`
    (the standard library flags a non-ASCII local part, RFC 6532, as a header defect)."""
    assert msg.defects == []
    for part in msg.walk():
        assert part.defects == [], part.get_content_type()
    if not header_defects:
        for name, value in msg.items():
            assert getattr(value, "defects", ()) == (), name
    assert msg["Date"] is not None
    assert msg["Date"].datetime is not None and msg["Date"].datetime.tzinfo is not None
    assert msg["Message-ID"] is not None


def start(mailbox: Mailbox, **kwargs: Any) -> Controller:
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port(), **kwargs)
    controller.start()
    return controller


@pytest.fixture
def plain() -> Iterator[tuple[Mailbox, SmtpSettings]]:
    """A server that does not offer SMTPUTF8 (aiosmtpd's Controller offers it unless told not to)."""
    mailbox = Mailbox()
    controller = start(mailbox, enable_SMTPUTF8=False)
    try:
        yield (
            mailbox,
            SmtpSettings(host="127.0.0.1", port=controller.port, sender=SENDER, timeout=5),
        )
    finally:
        controller.stop()


@pytest.fixture
def utf8() -> Iterator[tuple[Mailbox, SmtpSettings]]:
    """A server that offers SMTPUTF8 (RFC 6531)."""
    mailbox = Mailbox()
    controller = start(mailbox, enable_SMTPUTF8=True)
    try:
        yield (
            mailbox,
            SmtpSettings(host="127.0.0.1", port=controller.port, sender=SENDER, timeout=5),
        )
    finally:
        controller.stop()


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    """A CA and a server certificate for 127.0.0.1 and localhost signed by it."""
    files = {n: tmp_path / f"{n}.pem" for n in ("ca", "ca-key", "server", "server-key")}
    ca_key = _write_key(files["ca-key"])
    ca_name = _write_cert(files["ca"], "yuqing mail test CA", ca_key, None, ca=True)
    server_key = _write_key(files["server-key"])
    _write_cert(files["server"], "localhost", server_key, (ca_name, ca_key), server=True)
    return files


def server_context(pki: dict[str, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki["server"], pki["server-key"])
    return context


# --- the message itself ---


def test_a_message_has_a_date_a_message_id_of_the_senders_domain_and_no_defect(
    plain: tuple[Mailbox, SmtpSettings],
) -> None:
    """RFC 5322 §3.6: Date and From are required; the Message-ID's right side names the sender's
    domain (§3.6.4), and is the same on every attempt of one delivery (receivers can see a
    retry that did arrive twice for one message)."""
    mailbox, settings = plain
    sender = EmailSender(settings)
    sender.send(message(), EmailChannel(address="he.jing@town.example"))
    sender.send(message(), EmailChannel(address="he.jing@town.example"))  # a retry
    sender.send(message(key="other"), EmailChannel(address="he.jing@town.example"))
    first, retry, other = (parsed(raw) for _f, _r, raw in mailbox.envelopes)
    for msg in (first, retry, other):
        assert_well_formed(msg)
        assert msg["Subject"] == SUBJECT
        assert msg["Message-ID"].startswith("<msg_")
        assert msg["Message-ID"].endswith("@town.example>")
    # The date the notification was made, whenever the attempt that carried it.
    assert parsedate_to_datetime(first["Date"]) == SENT_AT
    assert retry["Message-ID"] == first["Message-ID"]
    assert other["Message-ID"] != first["Message-ID"]


def test_the_message_id_takes_the_domain_of_a_named_sender(
    plain: tuple[Mailbox, SmtpSettings],
) -> None:
    mailbox, settings = plain
    settings.sender = "清溪镇舆情系统 <yuqing@mail.qingxi.example>"
    EmailSender(settings).send(message(sent_at=""), EmailChannel(address="a@town.example"))
    ((mail_from, _rcpt, raw),) = mailbox.envelopes
    msg = parsed(raw)
    assert_well_formed(msg)
    assert mail_from == "yuqing@mail.qingxi.example"
    assert msg["From"].addresses[0].display_name == "清溪镇舆情系统"
    assert msg["Message-ID"].endswith("@mail.qingxi.example>")
    # Without the notification's time, the time it was sent.
    assert abs(msg["Date"].datetime - datetime.now(UTC)) < timedelta(minutes=1)


# --- addresses that need SMTPUTF8 ---


def test_a_non_ascii_mailbox_is_refused_at_once_without_smtputf8(
    plain: tuple[Mailbox, SmtpSettings],
) -> None:
    """RFC 6531 §3.4: a non-ASCII mailbox can go only to a server that offers SMTPUTF8. Asking
    again will not make this server offer it: refused on the first attempt, with the reason in
    Chinese (and no address: it is recorded in the incident's history)."""
    mailbox, settings = plain
    with pytest.raises(Refused) as info:
        EmailSender(settings).send(message(), EmailChannel(address="张伟@town.example"))
    assert "收件地址含非 ASCII 字符" in str(info.value) and "SMTPUTF8" in str(info.value)
    assert "不支持" in str(info.value)
    assert "张伟" not in str(info.value)  # the reason reaches the incident's history
    assert mailbox.envelopes == []


@pytest.mark.parametrize(
    ("reply", "error"),
    [("550 5.1.1 No such user", Refused), ("451 4.7.1 Greylisted", Retryable)],
)
def test_a_refused_recipient_is_not_named_in_the_reason(
    plain: tuple[Mailbox, SmtpSettings], reply: str, error: type[Exception]
) -> None:
    """The server's answer is kept, the address is not (the reason reaches the history)."""
    mailbox, settings = plain
    mailbox.rcpt_reply = reply
    with pytest.raises(error) as info:
        EmailSender(settings).send(message(), EmailChannel(address="he.jing@town.example"))
    assert reply.split(" ", 1)[1] in str(info.value)
    assert "he.jing" not in str(info.value)


def email_request(address: str) -> DeliverRequest:
    note = Notification(
        key="inc-1:n1:R-NOTIFY",
        incident_id="inc-1",
        rule="R-NOTIFY",
        recipients=[
            Recipient(person_id="zhang.wei", name="张伟", channels=[EmailChannel(address=address)])
        ],
        subject=SUBJECT,
        body="网帖称东湖村主干道积水一周。",
        link="http://localhost:8000/incidents/inc-1",
        drill=False,
        sent_at=SENT_AT,
    )
    (request,) = deliveries_for(note)
    return request


def test_the_deliver_activity_refuses_it_on_the_first_attempt(
    plain: tuple[Mailbox, SmtpSettings], store_url: str
) -> None:
    """Not retried for the give-up period: the first attempt is final and the row failed."""
    mailbox, settings = plain
    activities = NotifyActivities(store_url, smtp=settings)
    request = email_request("张伟@town.example")
    with pytest.raises(ApplicationError) as info:
        activities.deliver(request)
    assert (info.value.type, info.value.non_retryable) == ("DeliveryRefused", True)
    assert "SMTPUTF8" in info.value.message
    with session_scope(store_url) as s:
        (row,) = notifications.outbox(s, incident_id="inc-1")
    assert (row.state, row.attempts) == ("failed", 1)
    assert mailbox.envelopes == []


def test_a_non_ascii_mailbox_goes_to_a_server_with_smtputf8(
    utf8: tuple[Mailbox, SmtpSettings],
) -> None:
    mailbox, settings = utf8
    EmailSender(settings).send(message(), EmailChannel(address="张伟@town.example"))
    ((_from, rcpt, raw),) = mailbox.envelopes
    assert rcpt == ["张伟@town.example"]
    msg = parsed(raw)
    assert_well_formed(msg, header_defects=True)
    # Headers in UTF-8 (RFC 6532): the bytes parser keeps them as undecodable bytes; as text:
    text = email.message_from_string(raw.decode("utf-8"), policy=email.policy.default)
    assert text["To"].addresses[0].addr_spec == "张伟@town.example"
    assert msg["Message-ID"].endswith("@town.example>")


def test_a_non_ascii_domain_goes_as_its_a_label(plain: tuple[Mailbox, SmtpSettings]) -> None:
    """An internationalised domain name needs no SMTPUTF8: its ASCII form (RFC 5890, the A-label)
    reaches the same mailbox through any server."""
    mailbox, settings = plain
    EmailSender(settings).send(message(), EmailChannel(address="he.jing@清溪镇.中国"))
    ((_from, rcpt, raw),) = mailbox.envelopes
    a_label = "he.jing@" + "清溪镇.中国".encode("idna").decode()
    assert rcpt == [a_label]
    msg = parsed(raw)
    assert_well_formed(msg)
    assert msg["To"] == a_label


# --- TLS ---


@pytest.fixture
def implicit_tls(pki: dict[str, Path]) -> Iterator[tuple[Mailbox, SmtpSettings]]:
    """SMTPS: TLS from the first byte, as on port 465 (RFC 8314 §3.3)."""
    mailbox = Mailbox()
    controller = start(mailbox, ssl_context=server_context(pki))
    try:
        yield (
            mailbox,
            SmtpSettings(
                host="127.0.0.1",
                port=controller.port,
                sender=SENDER,
                timeout=5,
                tls="implicit",
                ca_file=str(pki["ca"]),
            ),
        )
    finally:
        controller.stop()


def test_implicit_tls_with_the_configured_ca(implicit_tls: tuple[Mailbox, SmtpSettings]) -> None:
    mailbox, settings = implicit_tls
    EmailSender(settings).send(message(), EmailChannel(address="he.jing@town.example"))
    ((_from, rcpt, raw),) = mailbox.envelopes
    assert rcpt == ["he.jing@town.example"]
    assert_well_formed(parsed(raw))


def test_implicit_tls_verifies_the_server(implicit_tls: tuple[Mailbox, SmtpSettings]) -> None:
    """Without the town's CA the certificate is not trusted: nothing is sent (retried, so an
    operator can put the CA file right), and a plain connection to the TLS port sends nothing."""
    mailbox, settings = implicit_tls
    settings.ca_file = None
    with pytest.raises(Retryable, match="CERTIFICATE_VERIFY_FAILED"):
        EmailSender(settings).send(message(), EmailChannel(address="he.jing@town.example"))
    settings.tls, settings.timeout = "none", 1  # it waits for a greeting that never comes
    with pytest.raises(Retryable):
        EmailSender(settings).send(message(), EmailChannel(address="he.jing@town.example"))
    assert mailbox.envelopes == []


def test_starttls_with_the_configured_ca(pki: dict[str, Path]) -> None:
    """RFC 3207 on a server that requires it, trusting the configured CA."""
    mailbox = Mailbox()
    controller = start(mailbox, tls_context=server_context(pki), require_starttls=True)
    try:
        settings = SmtpSettings(
            host="127.0.0.1",
            port=controller.port,
            sender=SENDER,
            timeout=5,
            tls="starttls",
            ca_file=str(pki["ca"]),
        )
        EmailSender(settings).send(message(), EmailChannel(address="he.jing@town.example"))
    finally:
        controller.stop()
    ((_from, _rcpt, raw),) = mailbox.envelopes
    assert_well_formed(parsed(raw))


@pytest.mark.parametrize(
    ("env", "mode"),
    [
        ({}, "none"),
        ({"smtp_port": 465}, "implicit"),  # SMTPS's port (RFC 8314 §7.3)
        ({"smtp_port": 587, "smtp_starttls": True}, "starttls"),  # the setting from before
        ({"smtp_port": 587, "smtp_tls": "starttls"}, "starttls"),
        ({"smtp_port": 2465, "smtp_tls": "implicit"}, "implicit"),
        ({"smtp_port": 465, "smtp_tls": "none"}, "none"),  # said outright, it wins
        ({"smtp_port": 25, "smtp_tls": "none", "smtp_starttls": True}, "none"),
    ],
)
def test_the_tls_setting(env: dict[str, Any], mode: str, tmp_path: Path) -> None:
    """YUQING_SMTP_TLS=implicit|starttls|none; unset, port 465 means implicit TLS and
    YUQING_SMTP_STARTTLS=true STARTTLS. YUQING_SMTP_CA_FILE reaches the worker's sender."""
    from runtime.worker import _notify_activities

    ca = tmp_path / "ca.pem"
    settings = Settings(_env_file=None, smtp_ca_file=ca, **env)  # type: ignore[call-arg]
    smtp = SmtpSettings.from_settings(settings)
    assert smtp.tls_mode() == mode
    assert smtp.ca_file == str(ca)
    worker_smtp = _notify_activities(settings).smtp
    assert (worker_smtp.tls_mode(), worker_smtp.ca_file) == (mode, str(ca))


def test_an_unknown_tls_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="smtp_tls"):
        Settings(_env_file=None, smtp_tls="ssl")  # type: ignore[call-arg, arg-type]


def test_an_e_mail_to_a_person_carries_their_one_time_sign_in_link(
    plain: tuple[Mailbox, SmtpSettings], store_url: str
) -> None:
    """Issue 18, item 8: the e-mail's text and HTML both carry the link, minted for the
    recipient and the incident; the delivery request carries none."""
    from store import credentials

    mailbox, settings = plain
    activities = NotifyActivities(store_url, smtp=settings, sign_in_url="https://yq.example.gov.cn")
    request = email_request("zhang.wei@town.example")
    assert activities.deliver(request) == "sent"
    assert "yql_" not in request.model_dump_json()
    ((_from, _rcpt, raw),) = mailbox.envelopes
    msg = parsed(raw)
    assert_well_formed(msg)
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    (link,) = [w for w in text.split() if "/signin/" in w]
    assert link.startswith("https://yq.example.gov.cn/signin/yql_")
    assert f'href="{link}"' in html
    assert "仅限张伟本人" in text and "一次" in text
    with session_scope(store_url) as s:
        found = credentials.find_link(s, token=link.rsplit("/", 1)[1])
    assert found == credentials.LinkFound("zhang.wei", "inc-1", "live")
