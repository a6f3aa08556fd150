"""Issue 15, finding 3: no secret and no phone number of the roster reaches a Temporal history.

Workflow data carries references only (a person id and the channel id the roster declares); the
`deliver` activity looks the channel up in the worker's own roster file when it sends. So with the
payload codec off, a full history holds none of the robots' URLs, tokens, keys and signing secrets,
no e-mail address and no phone number; a secret rotated in the worker's roster is used by the next
delivery; and a channel removed from it since is recorded as refused (never retried) and the
office is told."""

from __future__ import annotations

import base64
import contextlib
import email
import email.policy
import json
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.channels import SmtpSettings
from activities.notify import NotifyActivities
from plan.outbox import deliveries_for
from plan.records import DeliverRequest, Notification, Recipient
from plan.roster import (
    DingTalkChannel,
    EmailChannel,
    FeishuChannel,
    Person,
    Roster,
    Unit,
    WebhookChannel,
    WeComChannel,
    load_roster,
)
from starter import incidents
from store import notifications
from tests.conftest import EXAMPLE_ROSTER, make_settings
from tests.helpers import eventually, running_worker, stored, submit, triage
from tests.test_channels import Mailbox, Receiver, free_port, verify_standard
from tests.test_outbox import failure_notes

OK = (200, {"errcode": 0, "errmsg": "ok", "code": 0, "msg": "success"})
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"secret-of-the-office-hook-24b").decode()
ROTATED_SECRET = "whsec_" + base64.b64encode(b"the-rotated-secret-of-a-hook").decode()


def channels_toml(receiver: Receiver, *, webhook_secret: str = WEBHOOK_SECRET) -> dict[str, str]:
    """A channel of every kind, each with its secrets, and mobile numbers to mention."""
    base = receiver.base
    return {
        # The office director: a signed webhook (a token in its query too) and e-mail.
        "liu.yang": (
            f'{{ id = "office-hook", kind = "webhook", url = "{base}/hook?token=tok-office-8d1f", '
            f'secret = "{webhook_secret}" }}, '
            '{ id = "mail", kind = "email", address = "liu.yang.private@town.example" }'
        ),
        # 村镇建设办's head: DingTalk with 加签 and a mobile to @.
        "sun.haitao": (
            f'{{ id = "dingtalk", kind = "dingtalk", '
            f'url = "{base}/robot/send?access_token=dt-token-5c2e9a", '
            'secret = "SECdingtalk0a1b2c3d4e5f", at_mobiles = ["13900000002"] }'
        ),
        # A member of staff: Feishu, whose hook URL's path is the token, with 签名校验.
        "lin.feng": (
            f'{{ id = "feishu", kind = "feishu", '
            f'url = "{base}/open-apis/bot/v2/hook/fs-hook-7b3c-4d5e", secret = "fs-sign-9f8e7d" }}'
        ),
        # The unit's WeCom group robot, mentioning a mobile.
        "cjb": (
            f'{{ id = "group", kind = "wecom", '
            f'url = "{base}/cgi-bin/webhook/send?key=wecom-key-3f4a5b", '
            'mentioned_mobiles = ["13900000001"] }'
        ),
    }


MOBILES = {"sun.haitao": "13800001234", "lin.feng": "13800005678"}


def roster_text(channels: dict[str, str], *, phones: bool = True) -> str:
    """The example town with `channels` added (person or unit id → TOML inline tables) and the
    mobile numbers of the people who get them."""
    text = EXAMPLE_ROSTER.read_text(encoding="utf-8")
    for ident, tables in channels.items():
        line = f'id = "{ident}"\n'
        assert text.count(line) == 1, ident
        extra = f"channels = [{tables}]\n"
        if phones and "." in ident and ident != "liu.yang":
            extra += f'phone = "{MOBILES[ident]}"\n'
        text = text.replace(line, line + extra)
    return text


def write_roster(path: Path, text: str) -> Roster:
    path.write_text(text, encoding="utf-8")
    return load_roster(path)  # still a valid roster


def secrets_of(roster: Roster) -> set[str]:
    """Everything in the roster that must never be in a history: robot URLs and the tokens and
    keys in them, signing secrets, e-mail addresses, mobiles to mention, phone numbers, and the
    mobile numbers SMS goes to (E.164 and the 11 digits)."""
    found: set[str] = {p.phone for p in roster.people if p.phone}
    found |= {m for p in roster.people if p.mobile for m in (p.mobile, p.mobile[3:])}
    targets: list[Person | Unit] = [*roster.people, *roster.units]
    for target in targets:
        for channel in target.channels:
            data = channel.model_dump()
            for field in ("secret", "address"):
                if data.get(field):
                    found.add(data[field])
            for field in ("mentioned_mobiles", "at_mobiles"):
                found.update(data.get(field) or [])
            if data.get("url"):
                url = urllib.parse.urlsplit(data["url"])
                found.add(data["url"])
                found.update(v for vs in urllib.parse.parse_qs(url.query).values() for v in vs)
                if "/hook/" in url.path:
                    found.add(url.path.rsplit("/", 1)[1])
    return found


def readable(node: Any) -> Iterator[str]:
    """Every string in an exported history, with each payload's data decoded (the codec is off,
    so a payload is base64 of plain JSON)."""
    if isinstance(node, dict):
        if isinstance(node.get("data"), str) and "metadata" in node:
            with contextlib.suppress(ValueError):
                yield base64.b64decode(node["data"]).decode("utf-8", errors="replace")
        for value in node.values():
            yield from readable(value)
    elif isinstance(node, list):
        for value in node:
            yield from readable(value)
    elif isinstance(node, str):
        yield node


def leaked(history_json: str, secrets: set[str]) -> list[str]:
    text = "\n".join(readable(json.loads(history_json)))
    # JSON may escape a slash; compare both spellings.
    text += "\n" + text.replace("\\/", "/")
    return sorted(s for s in secrets if s in text)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(OK)
    yield r
    r.close()


@pytest.fixture
def mail() -> Iterator[tuple[Mailbox, SmtpSettings]]:
    from aiosmtpd.controller import Controller

    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield mailbox, SmtpSettings(host="127.0.0.1", port=controller.port, timeout=5)
    finally:
        controller.stop()


def test_the_roster_under_test_has_a_secret_of_every_kind(
    tmp_path: Path, receiver: Receiver
) -> None:
    roster = write_roster(tmp_path / "roster.toml", roster_text(channels_toml(receiver)))
    targets: list[Person | Unit] = [*roster.people, *roster.units]
    kinds = {c.kind for t in targets for c in t.channels}
    assert kinds == {"webhook", "email", "dingtalk", "feishu", "wecom"}
    secrets = secrets_of(roster)
    assert WEBHOOK_SECRET in secrets and "dt-token-5c2e9a" in secrets
    assert "fs-hook-7b3c-4d5e" in secrets and "wecom-key-3f4a5b" in secrets
    assert "0571-00000001" in secrets and "13900000001" in secrets
    assert "liu.yang.private@town.example" in secrets


async def test_a_full_history_holds_no_secret_and_no_phone_number(
    time_env: WorkflowEnvironment,
    client: Client,
    database_url: str,
    executor: ThreadPoolExecutor,
    tmp_path: Path,
    receiver: Receiver,
    mail: tuple[Mailbox, SmtpSettings],
) -> None:
    """An incident reported, assigned and drafted, with every delivery made (webhook, e-mail,
    DingTalk, Feishu, the unit's WeCom group): its history, exported in full with the codec off,
    holds none of the roster's secrets or phone numbers, and every channel was still reached with
    its secret from the worker's roster."""
    mailbox, smtp = mail
    path = tmp_path / "roster.toml"
    roster = write_roster(path, roster_text(channels_toml(receiver)))
    settings = make_settings(
        database_url,
        roster_file=path,
        smtp_host=smtp.host,
        smtp_port=smtp.port,
        public_url="https://yq.example.gov.cn",  # so the deliveries mint sign-in links
    )
    secrets = secrets_of(roster)
    async with running_worker(client, settings, executor):
        # As the web app does: the roster it loaded from its settings.
        view = await submit(client, settings, roster, submitted_by="zhou.ting")
        await triage(client, view.id, unit="cjb")
        await incidents.act(
            client, view.id, "draft-reply", {"text": "正在核实，将尽快答复。"}, "lin.feng"
        )

        def all_sent() -> list[Any]:
            rows = stored(settings.database_url, notifications.outbox, incident_id=view.id)
            kinds = {r.kind for r in rows}
            done = all(r.state == "sent" for r in rows)
            return (
                rows
                if done and kinds >= {"webhook", "email", "dingtalk", "feishu", "wecom"}
                else []
            )

        rows = await eventually(all_sent, within=30)
        history = await client.get_workflow_handle(view.id).fetch_history()

    assert leaked(history.to_json(), secrets) == []
    # Never a list index: each outbox row names the channel the roster declares.
    assert {r.channel for r in rows} >= {
        "webhook:office-hook",
        "email:mail",
        "dingtalk:dingtalk",
        "feishu:feishu",
        "wecom:group",
    }
    # The secrets did their work at delivery time, read from the worker's roster.
    hits = receiver.received()
    hook = next(h for h in hits if h.path == "/hook")
    assert hook.query == {"token": ["tok-office-8d1f"]}
    assert verify_standard(WEBHOOK_SECRET, hook.headers, hook.body)
    assert any(
        h.query.get("access_token") == ["dt-token-5c2e9a"] and "sign" in h.query for h in hits
    )
    assert any(h.path.endswith("/fs-hook-7b3c-4d5e") and "sign" in h.json() for h in hits)
    assert any(h.query.get("key") == ["wecom-key-3f4a5b"] for h in hits)
    assert any(
        "13900000001" in h.json()["text"]["mentioned_mobile_list"]
        for h in hits
        if h.query.get("key")
    )
    assert any("liu.yang.private@town.example" in rcpt for _f, rcpt, _b in mailbox.envelopes)
    # Issue 18, item 8: the person's webhook and e-mail carried one-time sign-in links, minted
    # by the activity; not one of them (nor any link token) is in the history.
    mails = [
        email.message_from_bytes(raw, policy=email.policy.default)
        for _f, _r, raw in mailbox.envelopes
    ]
    links = [json.loads(hook.body)["sign_in_link"]] + [
        word
        for mail in mails
        for word in mail.get_body(("plain",)).get_content().split()  # type: ignore[union-attr]
        if "/signin/yql_" in word
    ]
    assert len(links) >= 2 and all("/signin/yql_" in link for link in links)
    assert "yql_" not in history.to_json()
    assert leaked(history.to_json(), {link.rsplit("/", 1)[1] for link in links}) == []


def office_hook_only(receiver: Receiver, secret: str) -> dict[str, str]:
    """A signed webhook for 村镇建设办's head, who hears everything about the unit (R-DUTY)."""
    return {
        "sun.haitao": (
            f'{{ id = "hook", kind = "webhook", url = "{receiver.base}/hook", secret = "{secret}" }}'
        )
    }


async def test_a_rotated_secret_is_used_by_the_next_delivery(
    time_env: WorkflowEnvironment,
    client: Client,
    database_url: str,
    executor: ThreadPoolExecutor,
    tmp_path: Path,
    receiver: Receiver,
) -> None:
    """The worker's roster is read at delivery time: after the operator rotates a webhook's
    secret in the roster file, the running incident's next message is signed with the new one."""
    path = tmp_path / "roster.toml"
    roster = write_roster(path, roster_text(office_hook_only(receiver, WEBHOOK_SECRET)))
    settings = make_settings(database_url, roster_file=path)
    async with running_worker(client, settings, executor):
        view = await submit(client, settings, roster, submitted_by="zhou.ting")
        await triage(client, view.id, unit="cjb")
        (first,) = await eventually(receiver.received)
        assert verify_standard(WEBHOOK_SECRET, first.headers, first.body)

        write_roster(path, roster_text(office_hook_only(receiver, ROTATED_SECRET)))
        await incidents.act(
            client, view.id, "draft-reply", {"text": "正在核实，将尽快答复。"}, "lin.feng"
        )
        hits = await eventually(lambda: (h := receiver.received())[1:] and h)
    assert len(hits) == 2
    assert verify_standard(ROTATED_SECRET, hits[1].headers, hits[1].body)
    assert not verify_standard(WEBHOOK_SECRET, hits[1].headers, hits[1].body)


async def test_a_channel_removed_since_is_refused_and_the_office_told(
    time_env: WorkflowEnvironment,
    client: Client,
    database_url: str,
    executor: ThreadPoolExecutor,
    tmp_path: Path,
    receiver: Receiver,
) -> None:
    """A channel the incident's snapshot names but the worker's roster no longer has is not sent
    anywhere: the delivery is recorded refused at once (no retry) and the office is told."""
    path = tmp_path / "roster.toml"
    roster = write_roster(path, roster_text(office_hook_only(receiver, WEBHOOK_SECRET)))
    settings = make_settings(database_url, roster_file=path)
    url = settings.database_url
    async with running_worker(client, settings, executor):
        view = await submit(client, settings, roster, submitted_by="zhou.ting")
        await triage(client, view.id, unit="cjb")
        await eventually(receiver.received)

        write_roster(path, roster_text({}))  # the channel is gone from the worker's roster
        await incidents.act(
            client, view.id, "draft-reply", {"text": "正在核实，将尽快答复。"}, "lin.feng"
        )

        def refused() -> list[Any]:
            rows = stored(url, notifications.outbox, incident_id=view.id)
            failed = [r for r in rows if r.state == "failed"]
            return failed if failed and failure_notes(url, view.id) else []

        (row,) = await eventually(refused)
        notes = failure_notes(url, view.id)
    assert len(receiver.received()) == 1  # nothing sent through the removed channel
    assert (row.recipient, row.channel, row.attempts) == ("sun.haitao", "webhook:hook", 0)
    assert row.last_error is not None and "名册" in row.last_error
    assert set(notes) == {"liu.yang", "zhou.ting", "ma.chao"}
    (note,) = notes["liu.yang"]
    assert "被拒收" in note.body and "名册" in note.body


def test_a_person_removed_since_is_refused(
    database_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    """The activity alone: a delivery to a person the worker's roster no longer lists is refused
    (non-retryable) and its row failed; one to a channel still there is sent with its secret."""
    from temporalio.exceptions import ApplicationError

    path = tmp_path / "roster.toml"
    full = write_roster(path, roster_text(office_hook_only(receiver, WEBHOOK_SECRET)))
    public = full.public()
    person = public.person("sun.haitao")
    assert person is not None and person.phone is None
    note = Notification(
        key="inc-9:n1:R-NOTIFY",
        incident_id="inc-9",
        rule="R-NOTIFY",
        recipients=[Recipient(person_id=person.id, name=person.name, channels=person.channels)],
        subject="测试",
        body="测试",
        link="http://localhost:8000/incidents/inc-9",
        drill=False,
        sent_at=datetime.fromisoformat("2026-01-01T00:00:00+00:00"),
    )
    (request,) = deliveries_for(note)
    assert isinstance(request, DeliverRequest) and request.target == "webhook:hook"
    assert leaked(request.model_dump_json(), secrets_of(full)) == []
    activities = NotifyActivities(database_url, roster_file=path)
    activities.notify(note)
    assert activities.deliver(request) == "sent"
    assert verify_standard(
        WEBHOOK_SECRET, receiver.received()[0].headers, receiver.received()[0].body
    )

    # sun.haitao leaves the roster (his unit's head and first-responsible passing to another).
    text = roster_text({}).replace('head = "sun.haitao"', 'head = "lin.feng"')
    text = text.replace('first_responsible = "sun.haitao"', 'first_responsible = "lin.feng"')
    text = text.replace('"sun.haitao", ', "")
    start = text.index('[[people]]\nid = "sun.haitao"')
    text = text[:start] + text[text.index("[[people]]", start + 1) :]
    write_roster(path, text)
    later = request.model_copy(update={"key": request.key + "-2"})
    with pytest.raises(ApplicationError) as info:
        activities.deliver(later)
    assert (info.value.type, info.value.non_retryable) == ("DeliveryRefused", True)
    assert "名册" in info.value.message
    (row,) = [
        r
        for r in stored(database_url, notifications.outbox, incident_id="inc-9")
        if r.key == later.key
    ]
    assert row.state == "failed" and len(receiver.received()) == 1


def test_channel_kinds_are_all_covered() -> None:
    """Every kind of external channel the roster knows is in the roster under test."""
    assert {
        WebhookChannel.model_fields["kind"].default,
        WeComChannel.model_fields["kind"].default,
        DingTalkChannel.model_fields["kind"].default,
        FeishuChannel.model_fields["kind"].default,
        EmailChannel.model_fields["kind"].default,
    } == {"webhook", "wecom", "dingtalk", "feishu", "email"}
