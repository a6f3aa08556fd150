"""Finding 7 (issue 15): a line break in a title must not stop the incident's e-mail.

A title is one line: the intake refuses a line break in it with a 422 naming the field (the form,
the API and /api/leads alike), and the e-mail sender never lets a message that cannot be built
become a retryable error (retried for hours while nobody hears): a subject is folded onto one line,
and anything else that cannot be built is refused at once."""

from __future__ import annotations

import email
import email.policy
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from temporalio.client import Client

from activities.channels import EmailSender, Refused, SmtpSettings
from config.settings import Settings
from plan.roster import EmailChannel, Roster
from starter.web.app import create_app
from store import incident_rows
from tests.helpers import stored, submission
from tests.test_api import token_for
from tests.test_channels import Mailbox, message, smtp  # noqa: F401  (the fixture)

BROKEN_TITLES = [
    "东湖村积水\r\nBcc: everyone@town.example",
    "东湖村积水\n第二行",
    "东湖村\r积水",  # (a break at either end is trimmed, like spaces, and harmless)
    "东湖村积水\u2028第二行",  # LINE SEPARATOR: splitlines() and the e-mail policy break on it
    "东湖村积水\x85第二行",  # NEXT LINE (C1)
]


@pytest.fixture
async def http(
    client: Client, settings: Settings, roster: Roster, executor: ThreadPoolExecutor
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, client=client, roster=roster)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        yield c


@pytest.mark.parametrize("title", BROKEN_TITLES)
async def test_a_title_with_a_line_break_is_refused_at_intake(
    http: httpx.AsyncClient, settings: Settings, title: str
) -> None:
    for path, headers in (
        ("/api/incidents", {}),
        ("/api/leads", token_for(settings, "zhou.ting")),
    ):
        r = await http.post(path, json=submission(title=title), headers=headers)
        assert r.status_code == 422, (path, r.status_code, r.text)
        (error,) = r.json()["errors"]
        assert error["field"] == "title" and "换行" in error["message"], error
    form = await http.post("/incidents", data=submission(title=title))
    assert form.status_code == 422 and "换行" in form.text
    assert stored(settings.database_url, incident_rows.list_incidents) == []


def test_a_subject_with_a_line_break_is_sent_on_one_line(
    smtp: tuple[Mailbox, SmtpSettings],  # noqa: F811
) -> None:
    """An incident already running with such a title still reaches people by e-mail."""
    mailbox, settings = smtp
    subject = "【一般舆情】东湖村积水\r\nBcc: everyone@town.example：新报告"
    EmailSender(settings).send(message(subject=subject), EmailChannel(address="a@town.example"))
    ((_, rcpt_tos, raw),) = mailbox.envelopes
    assert rcpt_tos == ["a@town.example"]
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Subject"] == "【一般舆情】东湖村积水 Bcc: everyone@town.example：新报告"
    assert msg["Bcc"] is None


def test_a_message_that_cannot_be_built_is_refused_not_retried(
    smtp: tuple[Mailbox, SmtpSettings],  # noqa: F811
) -> None:
    mailbox, settings = smtp
    broken = EmailChannel.model_construct(address="a@town.example\r\nBcc: b@town.example")
    with pytest.raises(Refused, match="无法生成邮件"):
        EmailSender(settings).send(message(), broken)
    with pytest.raises(Refused, match="无法生成邮件"):
        EmailSender(settings).send(message(body="\ud800"), EmailChannel(address="a@x.example"))
    assert mailbox.envelopes == []
