"""短信 (issue 20, item 4): the SMS channel through Tencent Cloud SMS's official SDK against a local
server on 127.0.0.1 that speaks the provider's API (SendSms, version 2021-01-11) and checks each
request as the provider would: the TC3-HMAC-SHA256 signature, recomputed here from Tencent's
published algorithm (签名方法 v3: canonical request, string to sign, the key derived from
"TC3" + SecretKey, the date, the service and "tc3_request"), not by the SDK's signer; the action,
version and region headers; the number in E.164; the application, signature and template; each
template variable within the provider's limit. It answers as the provider does: per-number
status codes in Response.SendStatusSet, request-level errors in Response.Error."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

from activities.channels import (
    Channels,
    OutgoingMessage,
    Refused,
    Retryable,
    SmsSender,
    SmsSettings,
    SmtpSettings,
)
from activities.notify import NotifyActivities
from config.settings import Settings, get_settings
from plan.messages import SMS_DEADLINE_NAMES, sms_deadline_name
from plan.models import Notification, Recipient
from plan.outbox import deliveries_for
from plan.roster import (
    ChannelRef,
    Roster,
    RosterError,
    SmsChannel,
    e164_mobile,
    load_roster,
    parse_roster,
)
from starter.cli import app
from store import notifications
from store.db import session_scope
from store.models import Incident
from tests.conftest import EXAMPLE_ROSTER

SECRET_ID = "AKIDyuqingtestsecretid0000000000000"
SECRET_KEY = "yuqing-test-secret-key-000000000"
APP_ID = "1400006666"
SIGN = "清溪镇人民政府"
TEMPLATE = "1110"
MOBILE = "+8613800000001"
SHORT_NUMBER = "2026-1130-007"
SENT_AT = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)
TITLE = "东湖村道路积水"
BODY = "网帖称东湖村主干道积水一周，村民王某的电话是13912345678。"
# The template the town applies for (activities/channels.py, SmsSender): five variables.
TEMPLATE_TEXT = "舆情事件{1}-{2}-{3}（{4}）：{5}，请登录系统查看。"
PARAM_MAX = 6  # Tencent's FAQ: a notification template's variable takes at most 6 characters


# --- the provider, on 127.0.0.1 ---


def tc3_signature(
    secret_key: str, *, method: str, headers: dict[str, str], signed: list[str], payload: bytes
) -> tuple[str, str]:
    """Tencent Cloud API 3.0 签名方法 v3, from its description (not the SDK): the canonical
    request (method, URI "/", empty query for POST, each signed header as lowercase name:trimmed
    value, the signed header names, the payload's SHA-256 hex), the string to sign (algorithm,
    timestamp, credential scope, the canonical request's SHA-256 hex) and the HMAC-SHA256 chain.
    Returns the signature and the credential scope's date."""
    timestamp = headers["x-tc-timestamp"]
    date = datetime.fromtimestamp(int(timestamp), UTC).strftime("%Y-%m-%d")
    canonical_headers = "".join(f"{name}:{headers[name].strip().lower()}\n" for name in signed)
    canonical = "\n".join(
        [
            method,
            "/",
            "",
            canonical_headers,
            ";".join(signed),
            hashlib.sha256(payload).hexdigest(),
        ]
    )
    scope = f"{date}/sms/tc3_request"
    to_sign = "\n".join(
        ["TC3-HMAC-SHA256", timestamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )

    def mac(key: bytes, msg: str) -> bytes:
        return hmac.new(key, msg.encode(), hashlib.sha256).digest()

    key = mac(mac(mac(("TC3" + secret_key).encode(), date), "sms"), "tc3_request")
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest(), date


AUTHORIZATION = re.compile(
    r"TC3-HMAC-SHA256 Credential=(?P<id>[^/]+)/(?P<date>\d{4}-\d{2}-\d{2})/(?P<service>[a-z]+)"
    r"/tc3_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<sig>[0-9a-f]{64})"
)
E164_MAINLAND = re.compile(r"\+861[3-9][0-9]{9}")


@dataclass
class Call:
    headers: dict[str, str]
    body: dict[str, Any]
    problems: list[str]
    answered: str = ""  # "Ok", an error code, "HTTP 500", "dropped"


# An answer: "ok"; ("status", code) for the number; ("error", code) for the request;
# ("http", status); "drop" (the connection closes once the request is read, no answer).
Answer = str | tuple[str, Any]


@dataclass
class TencentSms:
    """sms.tencentcloudapi.com on 127.0.0.1: checks each request, answers `answers` in turn (the
    last repeats), keeps every call. A request that fails a check is answered with the error the
    provider gives (AuthFailure.SignatureFailure, InvalidParameterValue.*, …)."""

    answers: list[Answer] = field(default_factory=lambda: ["ok"])
    secret_key: str = SECRET_KEY
    calls: list[Call] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                call = outer.check(self.path, headers, raw)
                with outer.lock:
                    outer.calls.append(call)
                    answer = outer.answers.pop(0) if len(outer.answers) > 1 else outer.answers[0]
                if call.problems:
                    code = call.problems[0].split(":")[0]
                    answer = ("error", code)
                if answer == "drop":
                    call.answered = "dropped"
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if isinstance(answer, tuple) and answer[0] == "http":
                    call.answered = f"HTTP {answer[1]}"
                    self.reply(answer[1], b"<html>502 Bad Gateway</html>", "text/html")
                    return
                request_id = str(uuid.uuid4())
                if isinstance(answer, tuple) and answer[0] == "error":
                    call.answered = answer[1]
                    said = call.problems[0] if call.problems else f"{answer[1]} (test)"
                    payload: dict[str, Any] = {
                        "Error": {"Code": answer[1], "Message": said},
                        "RequestId": request_id,
                    }
                else:
                    code = "Ok" if answer == "ok" else answer[1]
                    call.answered = code
                    phone = call.body.get("PhoneNumberSet", [""])[0]
                    payload = {
                        "SendStatusSet": [
                            {
                                "SerialNo": f"2019:{uuid.uuid4().int % 10**19}",
                                "PhoneNumber": phone,
                                "Fee": 1,
                                "SessionContext": call.body.get("SessionContext", ""),
                                "Code": code,
                                "Message": "send success"
                                if code == "Ok"
                                else f"{code} for {phone} ({phone.removeprefix('+86')})",
                                "IsoCode": "CN",
                            }
                        ],
                        "RequestId": request_id,
                    }
                data = json.dumps({"Response": payload}).encode()
                self.reply(200, data, "application/json")

            def reply(self, status: int, data: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def check(self, path: str, headers: dict[str, str], raw: bytes) -> Call:
        problems: list[str] = []
        try:
            body = json.loads(raw)
        except ValueError:
            return Call(headers, {}, ["InvalidParameter: body is not JSON"])
        auth = AUTHORIZATION.fullmatch(headers.get("authorization", ""))
        if auth is None:
            problems.append("AuthFailure.SignatureFailure: no TC3-HMAC-SHA256 Authorization")
        else:
            signed = auth["signed"].split(";")
            if not {"content-type", "host"} <= set(signed) or signed != sorted(signed):
                problems.append("AuthFailure.SignatureFailure: content-type and host not signed")
            elif auth["id"] != SECRET_ID:
                problems.append("AuthFailure.SecretIdNotFound: unknown SecretId")
            elif abs(time.time() - int(headers.get("x-tc-timestamp", "0"))) > 300:
                problems.append("AuthFailure.SignatureExpire: timestamp off by over 5 minutes")
            else:
                expected, date = tc3_signature(
                    self.secret_key, method="POST", headers=headers, signed=signed, payload=raw
                )
                if auth["service"] != "sms" or auth["date"] != date:
                    problems.append("AuthFailure.SignatureFailure: credential scope")
                elif not hmac.compare_digest(expected, auth["sig"]):
                    problems.append("AuthFailure.SignatureFailure: signature does not match")
        if path != "/" or not headers.get("content-type", "").startswith("application/json"):
            problems.append("InvalidParameter: POST / with a JSON body")
        if headers.get("x-tc-action") != "SendSms" or headers.get("x-tc-version") != "2021-01-11":
            problems.append("InvalidAction: SendSms of version 2021-01-11 only")
        if not headers.get("x-tc-region"):
            problems.append("MissingParameter: X-TC-Region")
        phones = body.get("PhoneNumberSet")
        if not (
            isinstance(phones, list) and len(phones) == 1 and E164_MAINLAND.fullmatch(phones[0])
        ):
            problems.append("InvalidParameterValue.IncorrectPhoneNumber: PhoneNumberSet")
        if body.get("SmsSdkAppId") != APP_ID:
            problems.append("FailedOperation.SmsSdkAppIdVerifyFail: SmsSdkAppId")
        if body.get("SignName") != SIGN:
            problems.append("FailedOperation.SignatureIncorrectOrUnapproved: SignName")
        if body.get("TemplateId") != TEMPLATE:
            problems.append("FailedOperation.TemplateIncorrectOrUnapproved: TemplateId")
        params = body.get("TemplateParamSet")
        if not (isinstance(params, list) and len(params) == TEMPLATE_TEXT.count("{")):
            problems.append("FailedOperation.TemplateParamSetNotMatchApprovedTemplate: count")
        elif not all(isinstance(p, str) and 0 < len(p) <= PARAM_MAX for p in params):
            problems.append("InvalidParameterValue.TemplateParameterLengthLimit: over 6")
        context = body.get("SessionContext", "")
        if len(context.encode()) >= 512:
            problems.append("InvalidParameterValue.SessionContextTooLong: SessionContext")
        return Call(headers, body, problems)

    def answer(self, *answers: Answer) -> None:
        with self.lock:
            self.answers = list(answers)

    def sent(self) -> list[Call]:
        """The calls the provider accepted for delivery (Code "Ok")."""
        with self.lock:
            return [c for c in self.calls if c.answered == "Ok"]

    def text(self, call: Call) -> str:
        """What the phone shows: the signature and the approved template with its variables."""
        text = TEMPLATE_TEXT
        for n, value in enumerate(call.body["TemplateParamSet"], 1):
            text = text.replace("{" + str(n) + "}", value)
        return f"【{call.body['SignName']}】{text}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def provider() -> Iterator[TencentSms]:
    server = TencentSms()
    yield server
    server.close()


def sms_settings(endpoint: str, **overrides: Any) -> SmsSettings:
    values: dict[str, Any] = {
        "secret_id": SECRET_ID,
        "secret_key": SECRET_KEY,
        "sdk_app_id": APP_ID,
        "sign_name": SIGN,
        "template_id": TEMPLATE,
        "endpoint": endpoint,
        "timeout": 5.0,
    }
    values.update(overrides)
    return SmsSettings(**values)


def message(**overrides: Any) -> OutgoingMessage:
    values: dict[str, Any] = {
        "key": "inc-1:n3:R-ESCALATE|wang.jianguo|sms:sms",
        "subject": f"【一般舆情】{TITLE}：已逾期（第2级督办）",
        "body": BODY,
        "link": "http://localhost:8000/incidents/inc-1",
        "rule": "R-ESCALATE",
        "incident_id": "inc-1",
        "recipient_id": "wang.jianguo",
        "recipient_name": "王建国",
        "sent_at": SENT_AT.isoformat(),
        "brief": ["规则：R-ESCALATE", "期限：官方回复", "督办：第2级（共3级），副组长"],
        "short_number": SHORT_NUMBER,
        "deadline": "官方回复",
        "step": 2,
    }
    values.update(overrides)
    return OutgoingMessage(**values)


CHANNEL = SmsChannel(id="sms", mobile=MOBILE)


def send(provider: TencentSms, msg: OutgoingMessage | None = None, **settings: Any) -> None:
    SmsSender(sms_settings(provider.endpoint, **settings)).send(msg or message(), CHANNEL)


# --- the request on the wire ---


def test_sms_is_signed_and_carries_only_number_deadline_and_step(provider: TencentSms) -> None:
    """R-ESCALATE, R-SECRECY: one SendSms, its TC3-HMAC-SHA256 signature verified by the server's
    own implementation; the variables are the short number in three parts, the deadline in a
    word and the step, each within 6 characters; no title, body or name goes to the provider."""
    msg = message()
    send(provider, msg)
    (call,) = provider.calls
    assert call.problems == [] and call.answered == "Ok"
    assert call.headers["x-tc-action"] == "SendSms"
    assert call.headers["x-tc-version"] == "2021-01-11"
    assert call.headers["x-tc-region"] == "ap-guangzhou"
    assert call.body["PhoneNumberSet"] == [MOBILE]
    assert (call.body["SmsSdkAppId"], call.body["SignName"], call.body["TemplateId"]) == (
        APP_ID,
        SIGN,
        TEMPLATE,
    )
    assert call.body["TemplateParamSet"] == ["2026", "1130", "007", "官方回复", "督办第2级"]
    assert provider.text(call) == (
        "【清溪镇人民政府】舆情事件2026-1130-007（官方回复）：督办第2级，请登录系统查看。"
    )
    assert call.body["SessionContext"] == msg.webhook_id()
    wire = json.dumps(call.body, ensure_ascii=False)
    for content in (TITLE, "东湖村", "王建国", "副组长", "13912345678", "inc-1", "localhost"):
        assert content not in wire


def test_the_server_checks_the_signature(provider: TencentSms) -> None:
    """The local provider really verifies: signed with another key, the request is refused
    (AuthFailure.SignatureFailure), and the refusal is not retried."""
    with pytest.raises(Refused) as info:
        send(provider, secret_key="not-the-key")
    assert "AuthFailure.SignatureFailure" in str(info.value)
    assert provider.sent() == []


def test_a_message_without_step_or_deadline(provider: TencentSms) -> None:
    """A first notice (no escalation step) and one about no deadline still fill the template."""
    send(provider, message(step=0, deadline=""))
    (call,) = provider.sent()
    assert call.body["TemplateParamSet"][3:] == ["事件动态", "新通知"]


def test_every_deadline_name_fits_a_template_variable() -> None:
    """Each deadline's SMS name keeps within Tencent's 6 characters; an unknown key has one."""
    assert all(0 < len(name) <= PARAM_MAX for name in SMS_DEADLINE_NAMES.values())
    assert sms_deadline_name("R-REPLY#2") == "官方回复"
    assert sms_deadline_name("R-NEW#1") == "处置期限"
    assert sms_deadline_name("") == ""


@pytest.mark.parametrize(
    "overrides",
    [{"deadline": "超过六个字的期限"}, {"step": 1000}, {"short_number": "2026-1130-1234567"}],
    ids=["deadline", "step", "number"],
)
def test_a_variable_over_the_limit_is_refused_before_sending(
    provider: TencentSms, overrides: dict[str, Any]
) -> None:
    """The limit is enforced here, before any request: nothing reaches the provider."""
    with pytest.raises(Refused) as info:
        send(provider, message(**overrides))
    assert "个字符" in str(info.value)
    assert provider.calls == []


def test_a_malformed_short_number_is_refused_and_a_missing_one_waits(provider: TencentSms) -> None:
    with pytest.raises(Refused):
        send(provider, message(short_number="inc-1"))
    with pytest.raises(Retryable):
        send(provider, message(short_number=""))
    assert provider.calls == []


def test_sms_without_settings_is_refused(provider: TencentSms) -> None:
    with pytest.raises(Refused) as info:
        send(provider, secret_key=None, template_id=None)
    assert "YUQING_SMS_SECRET_KEY" in str(info.value)
    assert "YUQING_SMS_TEMPLATE_ID" in str(info.value)
    assert provider.calls == []


# --- the provider's answers, classified ---


@pytest.mark.parametrize(
    ("answer", "kind", "delay"),
    [
        (
            ("status", "LimitExceeded.PhoneNumberThirtySecondLimit"),
            Retryable,
            timedelta(seconds=30),
        ),
        (("status", "LimitExceeded.PhoneNumberOneHourLimit"), Retryable, timedelta(hours=1)),
        (("status", "LimitExceeded.PhoneNumberDailyLimit"), Retryable, timedelta(hours=1)),
        (("status", "LimitExceeded.AppCountryOrRegionDailyLimit"), Retryable, timedelta(minutes=1)),
        (("error", "RequestLimitExceeded"), Retryable, timedelta(seconds=1)),
        (("error", "InternalError.Timeout"), Retryable, None),
        (("http", 502), Retryable, None),
        ("drop", Retryable, None),
        (("status", "FailedOperation.TemplateIncorrectOrUnapproved"), Refused, None),
        (("status", "FailedOperation.SignatureIncorrectOrUnapproved"), Refused, None),
        (("status", "InvalidParameterValue.IncorrectPhoneNumber"), Refused, None),
        (("status", "FailedOperation.InsufficientBalanceInSmsPackage"), Refused, None),
        (("status", "FailedOperation.PhoneNumberInBlacklist"), Refused, None),
        (("error", "AuthFailure.SecretIdNotFound"), Refused, None),
        (("error", "UnauthorizedOperation.SmsSdkAppIdVerifyFail"), Refused, None),
    ],
    ids=str,
)
def test_provider_answers_are_classified(
    provider: TencentSms, answer: Answer, kind: type, delay: timedelta | None
) -> None:
    """Rate limits (LimitExceeded.*, RequestLimitExceeded) are retried after the limit's own
    period; the provider's trouble (InternalError.*, a non-200, a dropped connection) is retried;
    a refusal (bad number, unapproved template or signature, no balance, failed authentication)
    is not. The reason names no number."""
    provider.answer(answer)
    with pytest.raises(kind) as info:
        send(provider)
    assert type(info.value) is kind
    if isinstance(info.value, Retryable):
        assert info.value.retry_after == delay
    if isinstance(answer, tuple) and answer[0] in ("status", "error"):
        assert answer[1] in str(info.value)
    assert "13800000001" not in str(info.value)
    assert len(provider.calls) == 1


# --- the outbox: exactly once under retries ---


def roster_with_sms(tmp_path: Path) -> Path:
    text = EXAMPLE_ROSTER.read_text(encoding="utf-8")
    on = text.replace(
        '# channels = [{ id = "sms", kind = "sms" }]', 'channels = [{ id = "sms", kind = "sms" }]'
    )
    assert on != text
    path = tmp_path / "roster.toml"
    path.write_text(on, encoding="utf-8")
    return path


def record_incident(url: str, short_number: str = SHORT_NUMBER) -> None:
    now = datetime.now(UTC)
    with session_scope(url) as s:
        s.add(
            Incident(
                id="inc-1",
                version=1,
                title=TITLE,
                content=BODY,
                source="网帖",
                reporter_unit="yqb",
                severity="general",
                phase="handling",
                drill=False,
                discovered_at=now,
                received_at=now,
                overdue=True,
                plan_version="2024",
                short_number=short_number,
            )
        )


def escalation(
    roster_file: Path, *, link: str = "http://localhost:8000/incidents/inc-1"
) -> Notification:
    leader = load_roster(roster_file).public().person("wang.jianguo")
    assert leader is not None and leader.mobile is None  # never in workflow data
    return Notification(
        key="inc-1:n3:R-ESCALATE",
        incident_id="inc-1",
        rule="R-ESCALATE",
        recipients=[Recipient(person_id=leader.id, name=leader.name, channels=leader.channels)],
        subject=f"【一般舆情】{TITLE}：已逾期（第3级督办）",
        body=BODY,
        link=link,
        drill=False,
        sent_at=SENT_AT,
        brief=["规则：R-ESCALATE"],
        deadline="R-REPLY#1",
        step=3,
    )


def test_deliver_sms_exactly_once_under_retries(
    store_url: str, provider: TencentSms, tmp_path: Path
) -> None:
    """R-ESCALATE: the leader's SMS by reference (the number comes from the worker's roster, the
    short number from the store). The provider fails the first attempt (HTTP 502) and drops the
    second after reading it; the third is accepted. Retries of the activity after that send
    nothing: the provider accepted exactly one SendSms."""
    roster_file = roster_with_sms(tmp_path)
    record_incident(store_url)
    note = escalation(roster_file)
    (request,) = deliveries_for(note)
    assert request.channel == ChannelRef(kind="sms", id="sms")
    assert request.target == "sms:sms"
    assert "138" not in request.model_dump_json()
    activities = NotifyActivities(
        store_url, roster_file=roster_file, sms=sms_settings(provider.endpoint)
    )
    activities.notify(note)
    provider.answer(("http", 502), "drop", "ok")

    for attempt in (1, 2):
        with pytest.raises(ApplicationError) as info:
            activities.deliver(request)
        assert info.value.type == "DeliveryRetry" and not info.value.non_retryable
        with session_scope(store_url) as s:
            (row,) = notifications.outbox(s, incident_id="inc-1")
            assert (row.state, row.attempts) == ("pending", attempt)
    assert activities.deliver(request) == "sent"
    assert activities.deliver(request) == "already sent"
    assert activities.deliver(request.model_copy(deep=True)) == "already sent"

    assert [c.answered for c in provider.calls] == ["HTTP 502", "dropped", "Ok"]
    assert all(c.problems == [] for c in provider.calls)  # every attempt signed and valid
    (sent,) = provider.sent()
    assert len({c.body["SessionContext"] for c in provider.calls}) == 1
    assert sent.body["PhoneNumberSet"] == [MOBILE]
    assert sent.body["TemplateParamSet"] == ["2026", "1130", "007", "官方回复", "督办第3级"]
    with session_scope(store_url) as s:
        (row,) = notifications.outbox(s, incident_id="inc-1")
        assert (row.kind, row.channel, row.state, row.attempts) == ("sms", "sms:sms", "sent", 3)


def test_deliver_sms_refusal_is_final_and_names_no_number(
    store_url: str, provider: TencentSms, tmp_path: Path
) -> None:
    roster_file = roster_with_sms(tmp_path)
    record_incident(store_url)
    (request,) = deliveries_for(escalation(roster_file))
    activities = NotifyActivities(
        store_url, roster_file=roster_file, sms=sms_settings(provider.endpoint)
    )
    provider.answer(("status", "InvalidParameterValue.IncorrectPhoneNumber"))
    with pytest.raises(ApplicationError) as info:
        activities.deliver(request)
    assert info.value.type == "DeliveryRefused" and info.value.non_retryable
    assert "IncorrectPhoneNumber" in info.value.message
    assert "13800000001" not in info.value.message
    with session_scope(store_url) as s:
        (row,) = notifications.outbox(s, incident_id="inc-1")
        assert row.state == "failed" and "13800000001" not in (row.last_error or "")
    assert activities.deliver(request) == "failed"
    assert len(provider.calls) == 1


def test_a_rate_limited_sms_waits_the_limit(
    store_url: str, provider: TencentSms, tmp_path: Path
) -> None:
    """LimitExceeded.PhoneNumberThirtySecondLimit: the next attempt waits 30 seconds."""
    roster_file = roster_with_sms(tmp_path)
    record_incident(store_url)
    (request,) = deliveries_for(escalation(roster_file))
    activities = NotifyActivities(
        store_url, roster_file=roster_file, sms=sms_settings(provider.endpoint)
    )
    provider.answer(("status", "LimitExceeded.PhoneNumberThirtySecondLimit"), "ok")
    with pytest.raises(ApplicationError) as info:
        activities.deliver(request)
    assert info.value.next_retry_delay == timedelta(seconds=30)
    assert activities.deliver(request) == "sent"
    assert len(provider.sent()) == 1


def test_a_digest_sends_no_sms(tmp_path: Path) -> None:
    """An SMS is about one incident; a digest (its link is the list) goes to the inbox only."""
    note = escalation(roster_with_sms(tmp_path), link="http://localhost:8000/incidents")
    assert deliveries_for(note) == []


def test_channels_pick_the_sms_sender(provider: TencentSms) -> None:
    import httpx

    with httpx.Client() as client:
        Channels(client, SmtpSettings(), sms_settings(provider.endpoint)).send(message(), CHANNEL)
    assert len(provider.sent()) == 1


# --- the roster ---


@pytest.mark.parametrize(
    "written", ["13800000001", "+8613800000001", "8613800000001", "+86 138-0000-0001"]
)
def test_mobile_is_normalised_to_e164(written: str) -> None:
    assert e164_mobile(written) == MOBILE


@pytest.mark.parametrize(
    "written", ["12800000001", "1380000000", "138000000012", "0571-00000001", "+85213800000001"]
)
def test_a_number_that_is_no_mainland_mobile_is_refused(written: str, tmp_path: Path) -> None:
    text = roster_with_sms(tmp_path).read_text(encoding="utf-8")
    with pytest.raises(RosterError) as info:
        parse_roster(text.replace(MOBILE, written))
    assert "people[wang.jianguo].mobile: 手机号须为中国大陆手机号" in str(info.value)


def test_sms_channel_needs_the_persons_mobile(tmp_path: Path) -> None:
    text = roster_with_sms(tmp_path).read_text(encoding="utf-8")
    with pytest.raises(RosterError) as info:
        parse_roster(text.replace(f'mobile = "{MOBILE}"', ""))
    assert "people[wang.jianguo].channels[sms]: 有短信渠道，但未登记手机号" in str(info.value)
    with pytest.raises(RosterError) as info:
        parse_roster(
            text.replace(
                'channels = [{ id = "sms", kind = "sms" }]',
                f'channels = [{{ id = "sms", kind = "sms", mobile = "{MOBILE}" }}]',
            )
        )
    assert "手机号请写在人员的 mobile" in str(info.value)


def test_the_mobile_stays_in_the_workers_roster(tmp_path: Path) -> None:
    """Like the phone, the mobile is left out of the public roster (the incident's snapshot);
    resolving the reference in the worker's roster gives it back, and one removed is refused."""
    roster = load_roster(roster_with_sms(tmp_path))
    public = roster.public()
    assert MOBILE not in public.model_dump_json() and "13800000001" not in public.model_dump_json()
    ref = ChannelRef(kind="sms", id="sms")
    assert roster.resolve("wang.jianguo", ref) == SmsChannel(id="sms", mobile=MOBILE)
    without = roster.model_copy(
        update={
            "people": [
                p.model_copy(update={"mobile": None}) if p.id == "wang.jianguo" else p
                for p in roster.people
            ]
        }
    )
    assert "未登记手机号" in str(without.resolve("wang.jianguo", ref))


# --- yuqing notify test ---


def test_notify_test_sends_a_test_sms(provider: TencentSms, tmp_path: Path) -> None:
    """`yuqing notify test wang.jianguo` sends the leader a test SMS through the provider."""
    from store.migrate import upgrade

    database_url = f"sqlite:///{tmp_path / 'cli.db'}"
    upgrade(database_url)
    env = {
        "YUQING_DATABASE_URL": database_url,
        "YUQING_ROSTER_FILE": str(roster_with_sms(tmp_path)),
        "YUQING_SMS_SECRET_ID": SECRET_ID,
        "YUQING_SMS_SECRET_KEY": SECRET_KEY,
        "YUQING_SMS_SDK_APP_ID": APP_ID,
        "YUQING_SMS_SIGN_NAME": SIGN,
        "YUQING_SMS_TEMPLATE_ID": TEMPLATE,
        "YUQING_SMS_ENDPOINT": provider.endpoint,
    }
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["notify", "test", "wang.jianguo"], env=env)
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "sms:sms  OK" in result.output
    (call,) = provider.sent()
    assert call.problems == []
    assert call.body["PhoneNumberSet"] == [MOBILE]
    params = call.body["TemplateParamSet"]
    assert params[2:] == ["000", "通知测试", "新通知"]
    assert "13800000001" not in result.output


# --- what the workflow writes for SMS ---


def test_escalation_notifications_name_their_deadline_and_step(roster: Roster) -> None:
    """R-ESCALATE: each escalation notification of a missed reply carries the deadline's key and
    its step (what the SMS says: 官方回复, 督办第N级), plain values that name no one."""
    from plan.actions import ACTIONS
    from plan.incident import Incident
    from plan.models import IncidentInput, Submission
    from plan.spec import shipped

    start = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)
    spec = shipped()
    submission = Submission(
        title=TITLE,
        content="网帖内容",
        source="微博",
        discovered_at=start - timedelta(minutes=30),
        reporter_unit="yqb",
    )
    c = Incident(
        IncidentInput(
            incident_id="YQ-sms",
            submission=submission,
            received_at=start,
            roster=roster.public(),
            plan=spec,
            plan_version=spec.version,
            timezone="Asia/Shanghai",
        ),
        now=start,
    )
    c.s.rules_version = 1
    c.open_incident()
    c.started = True
    actor = next(p.id for p in c.roster.people if c.allows("triage", p.id))
    action = ACTIONS["triage"].command.model_validate(
        {"severity": "general", "category": "hype", "responsible_unit": "cjb", "actor": actor}
    )
    c.check("triage", action)
    c.apply("triage", action, c.now)
    due = c.deadline("R-REPLY#1").due_at
    c.advance(due + timedelta(days=3))
    sent = [m for m in c.s.pending_notifications if m.rule == "R-ESCALATE"]
    assert [m.step for m in sent] == list(range(1, len(sent) + 1)) and len(sent) >= 2
    assert {m.deadline for m in sent} == {"R-REPLY#1"}
    assert sms_deadline_name(sent[0].deadline) == "官方回复"
    first = next(m for m in c.s.pending_notifications if m.rule != "R-ESCALATE")
    assert first.step == 0


def test_the_sdk_never_logs_the_number(
    provider: TencentSms, caplog: pytest.LogCaptureFixture
) -> None:
    """The SDK logs requests in full at DEBUG; with the worker's logging at DEBUG the number
    still appears in no log line."""
    with caplog.at_level(logging.DEBUG):
        send(provider)
    assert len(provider.sent()) == 1
    assert "13800000001" not in caplog.text


@pytest.mark.parametrize(
    ("endpoint", "profile"),
    [
        ("https://sms.tencentcloudapi.com", ("https", "sms.tencentcloudapi.com")),
        ("sms.tencentcloudapi.com", ("https", "sms.tencentcloudapi.com")),
        ("http://127.0.0.1:8080/", ("http", "127.0.0.1:8080")),
    ],
)
def test_the_endpoint_setting_becomes_the_sdks_http_profile(
    endpoint: str, profile: tuple[str, str]
) -> None:
    assert SmsSettings(endpoint=endpoint).http_profile() == profile


@pytest.mark.parametrize("endpoint", ["ftp://sms.example", "https://sms.example/v1", "http://"])
def test_a_bad_endpoint_is_refused(endpoint: str) -> None:
    with pytest.raises(Refused) as info:
        SmsSettings(endpoint=endpoint).http_profile()
    assert "YUQING_SMS_ENDPOINT" in str(info.value)


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from config.settings import Settings

    monkeypatch.setenv("YUQING_SMS_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("YUQING_SMS_SECRET_KEY", SECRET_KEY)
    monkeypatch.setenv("YUQING_SMS_TEMPLATE_ID", TEMPLATE)
    sms = SmsSettings.from_settings(Settings())
    assert (sms.endpoint, sms.secret_key, sms.template_id) == (
        "http://127.0.0.1:9",
        SECRET_KEY,
        TEMPLATE,
    )
    assert sms.param_max_chars == PARAM_MAX and sms.region == "ap-guangzhou"


# --- the workflow: an incident's notice reaches a phone, once ---


async def test_an_incidents_notice_reaches_the_office_by_sms_once(
    time_env: WorkflowEnvironment,
    client: Client,
    settings: Settings,
    executor: ThreadPoolExecutor,
) -> None:
    """R-REPORT, R-NOTIFY: the office hears of a new incident by SMS through the worker as
    deployed (the delivery worker's SmsSettings from YUQING_SMS_*). The provider answers 502,
    then drops the connection, then "Ok": the outbox row ends sent after three attempts, the
    provider accepted one SendSms, carrying the incident's short number from the store."""
    from tests.helpers import eventually, running_worker, stored, submit
    from tests.test_outbox import clock_running, one_row

    server = TencentSms(answers=[("http", 502), "drop", "ok"])
    try:
        text = EXAMPLE_ROSTER.read_text(encoding="utf-8")
        line = 'id = "liu.yang"\n'
        text = text.replace(
            line,
            f'{line}mobile = "13800000002"\nchannels = [{{ id = "sms", kind = "sms" }}]\n',
        )
        roster = parse_roster(text)
        path = Path(settings.database_url.removeprefix("sqlite:///")).parent / "roster.toml"
        path.write_text(text, encoding="utf-8")
        settings = settings.model_copy(
            update={
                "roster_file": path,
                "sms_secret_id": SECRET_ID,
                "sms_secret_key": SECRET_KEY,
                "sms_sdk_app_id": APP_ID,
                "sms_sign_name": SIGN,
                "sms_template_id": TEMPLATE,
                "sms_endpoint": server.endpoint,
            }
        )
        async with running_worker(client, settings, executor):
            view = await submit(client, settings, roster)
            async with clock_running(time_env):
                row = await eventually(lambda: one_row(settings.database_url, view.id, "sent"))
        assert (row.recipient, row.kind, row.channel, row.attempts) == (
            "liu.yang",
            "sms",
            "sms:sms",
            3,
        )
        assert [c.answered for c in server.calls] == ["HTTP 502", "dropped", "Ok"]
        assert all(c.problems == [] for c in server.calls)
        (sent,) = server.sent()
        assert sent.body["PhoneNumberSet"] == ["+8613800000002"]
        (number,) = stored(settings.database_url, _short_numbers, incident_id=view.id)
        assert "-".join(sent.body["TemplateParamSet"][:3]) == number
        assert view.title not in json.dumps(sent.body, ensure_ascii=False)
    finally:
        server.close()


def _short_numbers(session: Any, *, incident_id: str) -> list[str]:
    from store.incident_rows import short_number_of

    number = short_number_of(session, incident_id=incident_id)
    return [number] if number else []
