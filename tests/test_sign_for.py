"""签收 (issue 20, item 1): the 交办 and each 督办 step ask their recipients to sign for them; the
incident records who signed for what and when. Signing for is not meeting: the deadline and its
escalation chain run on. Only a recipient may sign, and only for what is addressed to them."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from config.settings import Settings
from plan.actions import ACTIONS
from plan.incident import Incident
from plan.roster import Roster, load_roster
from plan.spec import shipped
from starter import incidents
from starter.incidents import ServiceError
from store import incident_rows
from tests.conftest import EXAMPLE_ROSTER
from tests.helpers import eventually, running_worker, stored, submit, triage

LEADER, DEPUTY, HEAD = "wang.jianguo", "li.xiaomei", "sun.haitao"


def receipt(view, key):  # type: ignore[no-untyped-def]
    return next(r for r in view.receipts if r.key == key)


async def test_the_assignment_is_signed_for_by_the_units_head(
    client: Client, settings: Settings, roster: Roster, executor: ThreadPoolExecutor
) -> None:
    """交办: the office assigns 村镇建设办; its head (also its first-responsible person) signs for
    it; a person it was not sent to is refused in Chinese; signing twice is refused."""
    async with running_worker(client, settings, executor):
        view = await submit(client, settings, roster)
        view = await triage(client, view.id, unit="cjb")
        assigned = receipt(view, "交办#1")
        assert assigned.persons == [HEAD] and assigned.signed == {}
        with pytest.raises(ServiceError) as refused:
            await incidents.act(client, view.id, "sign-for", {}, "xu.lei")
        assert "没有需要签收" in refused.value.message
        view = await incidents.act(client, view.id, "sign-for", {"key": "交办#1"}, HEAD)
        assert HEAD in receipt(view, "交办#1").signed
        assert any(e.kind == "signed" and e.actor == HEAD for e in view.timeline)
        with pytest.raises(ServiceError):
            await incidents.act(client, view.id, "sign-for", {}, HEAD)


async def test_signing_for_an_escalation_is_not_meeting_it(
    time_env: WorkflowEnvironment,
    client: Client,
    settings: Settings,
    roster: Roster,
    executor: ThreadPoolExecutor,
) -> None:
    """R-ESCALATE: the deputy signs for step 2; the reply stays overdue and step 3 still reaches
    the leader, who has not signed; a key that is not the person's is refused."""
    async with running_worker(client, settings, executor):
        view = await submit(client, settings, roster, severity="urgent", responsible_unit="cjb")
        await time_env.sleep(timedelta(hours=3, minutes=1) + timedelta(minutes=61))
        view = await incidents.get(client, view.id)
        step2 = receipt(view, "R-REPLY#1/2")
        assert step2.persons == [DEPUTY] and step2.step == 2
        with pytest.raises(ServiceError) as refused:
            await incidents.act(client, view.id, "sign-for", {"key": "R-REPLY#1/1"}, DEPUTY)
        assert "R-REPLY#1/1" in refused.value.message
        view = await incidents.act(client, view.id, "sign-for", {"key": "R-REPLY#1/2"}, DEPUTY)
        assert DEPUTY in receipt(view, "R-REPLY#1/2").signed
        reply = next(d for d in view.deadlines if d.key == "R-REPLY#1")
        assert reply.met_at is None and reply.overdue  # signing is not meeting

        await time_env.sleep(timedelta(minutes=61))
        view = await incidents.get(client, view.id)
        step3 = receipt(view, "R-REPLY#1/3")
        assert step3.persons == [LEADER] and step3.signed == {}
        # The timeline, and so the store's record, says who signed for what.
        events = await eventually(
            lambda: [
                e
                for e in stored(settings.database_url, incident_rows.timeline, incident_id=view.id)
                if e.kind == "signed"
            ]
        )
        assert events[0].actor == DEPUTY and "第2级督办" in events[0].summary


async def test_the_page_shows_who_was_reached_and_who_signed(
    client: Client, settings: Settings, roster: Roster, executor: ThreadPoolExecutor
) -> None:
    """The incident page's 签收情况: per person, reached (the inbox) and 已签收 with the time or
    未签收; the head signs from the page's form, which offers the messages still to sign."""
    from tests.helpers import app_over_asgi
    from tests.test_api import sign_in

    async with app_over_asgi(client, settings, roster, executor) as http:
        view = await submit(client, settings, roster)
        await triage(client, view.id, unit="cjb")
        row = f'data-receipt="交办#1" data-person="{HEAD}"'
        csrf = await sign_in(http, settings, HEAD)
        page = (await http.get(f"/incidents/{view.id}")).text
        assert "签收情况" in page and f'{row} data-signed="no"' in page
        assert "站内消息已送达" in page and "未签收" in page
        assert 'id="action-sign-for"' in page and "交办：村镇建设办牵头处置</option>" in page
        posted = await http.post(
            f"/incidents/{view.id}/actions/sign-for", data={"csrf_token": csrf, "key": ""}
        )
        assert posted.status_code == 303, posted.text
        page = (await http.get(f"/incidents/{view.id}")).text
        assert f'{row} data-signed="yes"' in page and "已签收" in page
        assert 'id="action-sign-for"' not in page  # nothing left to sign for


def roster_with_channels(tmp_path: Path) -> Path:
    """The example roster with the deputy reachable on an SMS (listed first), then two e-mail
    addresses: the re-sends must take the e-mails in order and the SMS last."""
    text = EXAMPLE_ROSTER.read_text(encoding="utf-8")
    deputy = f'id = "{DEPUTY}"\n'
    channels = (
        'mobile = "13800000003"\n'
        'channels = [{ id = "sms", kind = "sms" }, '
        '{ id = "mail", kind = "email", address = "li@example.gov.cn" }, '
        '{ id = "home", kind = "email", address = "li.home@example.gov.cn" }]\n'
    )
    assert deputy in text
    path = tmp_path / "roster.toml"
    path.write_text(text.replace(deputy, deputy + channels, 1), encoding="utf-8")
    return path


async def test_an_unsigned_escalation_goes_again_on_the_next_channel(
    time_env: WorkflowEnvironment,
    client: Client,
    settings: Settings,
    executor: ThreadPoolExecutor,
    tmp_path: Path,
) -> None:
    """Issue 20, item 2 (R-ESCALATE): step 2 reaches the deputy; not signed for within the plan's
    30 minutes it goes again on her next channel (the roster's order, SMS last), then the next;
    signing for stops the re-sending, though the deadline stays overdue."""
    path = roster_with_channels(tmp_path)
    roster = load_roster(path)
    # Step 2 an hour after step 1, step 3 five hours later: room to watch step 2's re-sends.
    s = settings.model_copy(update={"roster_file": path, "escalation_waits_minutes": [60, 300]})
    async with running_worker(client, s, executor):
        view = await submit(client, s, roster, severity="urgent", responsible_unit="cjb")
        await time_env.sleep(timedelta(hours=4, minutes=1))  # due at 3 h, step 2 at 4 h
        view = await incidents.get(client, view.id)
        step2 = receipt(view, "R-REPLY#1/2")
        assert step2.persons == [DEPUTY] and step2.rounds == 0 and view.resend

        await time_env.sleep(timedelta(minutes=30))
        step2 = receipt(await incidents.get(client, view.id), "R-REPLY#1/2")
        assert step2.rounds == 1 and step2.resent[0].startswith(f"{DEPUTY}|email:mail|")
        await time_env.sleep(timedelta(minutes=30))
        view = await incidents.get(client, view.id)
        step2 = receipt(view, "R-REPLY#1/2")
        assert step2.rounds == 2 and step2.resent[1].startswith(f"{DEPUTY}|email:home|")
        resent = [e.summary for e in view.timeline if e.kind == "resent"]
        assert len(resent) == 2 and "李晓梅（电子邮件）" in resent[0], resent

        await incidents.act(client, view.id, "sign-for", {}, DEPUTY)
        await time_env.sleep(timedelta(minutes=90))  # the SMS round would have come
        view = await incidents.get(client, view.id)
        step2 = receipt(view, "R-REPLY#1/2")
        assert step2.rounds == 2 and DEPUTY in step2.signed
        assert len([e for e in view.timeline if e.kind == "resent"]) == 2
        reply = next(d for d in view.deadlines if d.key == "R-REPLY#1")
        assert reply.overdue and reply.met_at is None and reply.escalation_step == 2


async def test_the_sms_comes_last_and_re_sending_ends_with_the_channels(
    time_env: WorkflowEnvironment,
    client: Client,
    settings: Settings,
    executor: ThreadPoolExecutor,
    tmp_path: Path,
) -> None:
    """Unsigned all along: the two e-mails, then the SMS, then nothing more (each channel once)."""
    path = roster_with_channels(tmp_path)
    roster = load_roster(path)
    s = settings.model_copy(update={"roster_file": path, "escalation_waits_minutes": [60, 300]})
    async with running_worker(client, s, executor):
        view = await submit(client, s, roster, severity="urgent", responsible_unit="cjb")
        await time_env.sleep(timedelta(hours=4, minutes=1) + timedelta(minutes=150))
        step2 = receipt(await incidents.get(client, view.id), "R-REPLY#1/2")
        assert [line.split("|")[1] for line in step2.resent] == [
            "email:mail",
            "email:home",
            "sms:sms",
        ]
        assert step2.rounds == 3 and step2.signed == {}


def roster_with_leader_channels(tmp_path: Path) -> Path:
    """The example roster with the leader (the top of the chain) reachable on an SMS to his
    mobile (listed first) and an e-mail address: re-sent, the e-mail comes first, the SMS last."""
    text = EXAMPLE_ROSTER.read_text(encoding="utf-8")
    leader = f'id = "{LEADER}"\n'
    channels = (
        'channels = [{ id = "sms", kind = "sms" }, '
        '{ id = "mail", kind = "email", address = "wang@example.gov.cn" }]\n'
    )
    assert leader in text
    path = tmp_path / "roster.toml"
    path.write_text(text.replace(leader, leader + channels, 1), encoding="utf-8")
    return path


async def test_the_leaders_escalation_goes_again_on_his_channels_then_reminds_him_until_signed(
    time_env: WorkflowEnvironment,
    client: Client,
    settings: Settings,
    executor: ThreadPoolExecutor,
    tmp_path: Path,
) -> None:
    """Issue 20, item 2, at the top of the chain: an urgent reply missed escalates step by step
    to the leader; not signed for within the plan's 30 minutes, his 督办 message goes again on his
    e-mail, then on his SMS (the roster lists the SMS first: it comes last); his channels used,
    the reminders of an urgent incident follow every hour. He signs after the first: no more
    re-sends or reminders, but the deadline is not met and stays escalated (R-ESCALATE)."""
    path = roster_with_leader_channels(tmp_path)
    roster = load_roster(path)
    s = settings.model_copy(update={"roster_file": path})
    async with running_worker(client, s, executor):
        view = await submit(client, s, roster, severity="urgent", responsible_unit="cjb")
        # Due at 3 h: step 1 then, step 2 an hour later, step 3 (the leader) at 5 h.
        await time_env.sleep(timedelta(hours=5, minutes=1))
        view = await incidents.get(client, view.id)
        chain = [(e.step, e.targets) for e in view.escalations if e.deadline_key == "R-REPLY#1"]
        assert [step for step, _ in chain] == [1, 2, 3] and chain[-1][1] == [LEADER]
        step3 = receipt(view, "R-REPLY#1/3")
        assert step3.persons == [LEADER] and step3.rounds == 0 and step3.resent == []

        await time_env.sleep(timedelta(minutes=30))
        step3 = receipt(await incidents.get(client, view.id), "R-REPLY#1/3")
        assert [line.split("|")[:2] for line in step3.resent] == [[LEADER, "email:mail"]]
        await time_env.sleep(timedelta(minutes=30))
        step3 = receipt(await incidents.get(client, view.id), "R-REPLY#1/3")
        assert [line.split("|")[1] for line in step3.resent] == ["email:mail", "sms:sms"]
        assert step3.rounds == 2 and step3.repeats == 0
        await time_env.sleep(timedelta(hours=1))  # his channels used: an hour on, a reminder
        step3 = receipt(await incidents.get(client, view.id), "R-REPLY#1/3")
        assert step3.repeats == 1 and step3.rounds == 2

        view = await incidents.act(client, view.id, "sign-for", {"key": "R-REPLY#1/3"}, LEADER)
        assert LEADER in receipt(view, "R-REPLY#1/3").signed
        await time_env.sleep(timedelta(hours=5))  # two more reminders and more would have come
        view = await incidents.get(client, view.id)
        step3 = receipt(view, "R-REPLY#1/3")
        assert (step3.rounds, step3.repeats, len(step3.resent)) == (2, 1, 2)
        told = [
            e.summary
            for e in view.timeline
            if e.kind == "resent" and e.summary.startswith(step3.label)
        ]
        assert len(told) == 3, told
        assert "第1次再次通知：王建国（电子邮件）" in told[0]
        assert "第2次再次通知：王建国（短信）" in told[1]
        assert "第1次提醒（共3次）：王建国" in told[2]
        # Signing for is not meeting: the reply is still overdue, escalated to the top.
        reply = next(d for d in view.deadlines if d.key == "R-REPLY#1")
        assert reply.overdue and reply.met_at is None and reply.escalation_step == 3


BEIJING = ZoneInfo("Asia/Shanghai")


def top_of_chain(roster: Roster, severity: str) -> Incident:
    """A core whose R-REPLY reaches the leader (step 3) at 22:00 Beijing time, with re-sending
    on (the workflow sets `resend` for incidents started since the patch)."""
    from tests.test_plan_wording import START, act, incident

    discovered = START - (timedelta(hours=21) if severity == "major" else timedelta(0))
    c = incident(shipped(), roster, discovered_at=discovered)
    c.s.resend = True
    c.inp.escalation_waits_minutes = [300, 300]  # steps 2 and 3 five hours apart
    act(c, "triage", severity=severity, category="hype", responsible_unit="cjb")
    return c


def repeats(c: Incident, key: str = "R-REPLY#1/3") -> list[str]:
    """When the reminders of that 督办 message went out, Beijing time (other deadlines of the
    incident escalate too: only this one's count)."""
    label = next((r.label for r in c.s.receipts if r.key == key), None)
    return [
        e.at.astimezone(BEIJING).strftime("%d日%H:%M")
        for e in c.s.timeline
        if e.kind == "resent" and "提醒" in e.summary and label and e.summary.startswith(label)
    ]


def test_the_leader_is_reminded_up_to_the_cap_and_not_in_quiet_hours(roster: Roster) -> None:
    """Issue 20, item 2: at the top of the chain a major incident's 督办 message, unsigned, is
    repeated every hour up to 3 times, but not in the quiet hours (22:00–07:00): the first waits
    for 07:00. Then no more."""
    c = top_of_chain(roster, "major")
    reply = c.deadline("R-REPLY#1")
    c.advance(reply.due_at + timedelta(hours=10, minutes=1))
    step3 = next(r for r in c.s.receipts if r.key == "R-REPLY#1/3")
    assert step3.persons == [LEADER]
    assert step3.at.astimezone(BEIJING).strftime("%H:%M") == "22:00"
    c.advance(step3.at + timedelta(days=2))
    assert repeats(c) == ["01日07:00", "01日08:00", "01日09:00"]
    assert step3.repeats == 3
    last = next(m for m in reversed(c.s.pending_notifications) if "提醒" in m.subject)
    assert last.subject.startswith("【第3次提醒，未签收】")
    assert [r.person_id for r in last.recipients] == [LEADER]


def test_an_urgent_incident_reminds_the_leader_at_night(roster: Roster) -> None:
    """Urgent: the quiet hours do not hold the reminders back."""
    c = top_of_chain(roster, "urgent")
    reply = c.deadline("R-REPLY#1")
    c.advance(reply.due_at + timedelta(hours=10) + timedelta(days=1))
    assert repeats(c) == ["30日23:00", "01日00:00", "01日01:00"]


def test_signing_for_ends_the_reminders_and_a_general_incident_has_none(roster: Roster) -> None:
    """The leader signs after the first reminder: no more. A general incident: no reminders."""
    c = top_of_chain(roster, "urgent")
    reply = c.deadline("R-REPLY#1")
    c.advance(reply.due_at + timedelta(hours=11, minutes=1))
    assert len(repeats(c)) == 1
    action = ACTIONS["sign-for"].command.model_validate({"actor": LEADER, "key": "R-REPLY#1/3"})
    c.check("sign-for", action)
    c.apply("sign-for", action, c.now)
    c.advance(c.now + timedelta(days=1))
    assert len(repeats(c)) == 1

    general = top_of_chain(roster, "general")
    general.advance(general.deadline("R-REPLY#1").due_at + timedelta(days=2))
    assert any(r.key == "R-REPLY#1/3" for r in general.s.receipts)
    assert repeats(general) == []


def test_reach_groups_each_messages_deliveries_by_recipient(database_url: str) -> None:
    """签收情况's 已送达 comes from the outbox: each notification's deliveries, per recipient, and
    nothing of a notification whose key merely starts alike (n1 is not n10)."""
    from store import notifications
    from store.db import session_scope

    with session_scope(database_url) as s:
        for note, person, kind in (
            ("YQ-1:n1:R-ESCALATE", "li.xiaomei", "email"),
            ("YQ-1:n1:R-ESCALATE", "li.xiaomei", "sms"),
            ("YQ-1:n1:R-ESCALATE", "wang.jianguo", "email"),
            ("YQ-1:n10:R-ESCALATE", "li.xiaomei", "email"),
        ):
            notifications.outbox_row(
                s,
                key=f"{note}|{person}|{kind}:x",
                incident_id="YQ-1",
                rule="R-ESCALATE",
                recipient=person,
                kind=kind,
                target=f"{kind}:x",
            )
    with session_scope(database_url) as s:
        reached = notifications.reach(s, ["YQ-1:n1:R-ESCALATE"])
        got = {k: [d.kind for d in v] for k, v in reached.items()}
    assert got == {
        ("YQ-1:n1:R-ESCALATE", "li.xiaomei"): ["email", "sms"],
        ("YQ-1:n1:R-ESCALATE", "wang.jianguo"): ["email"],
    }


async def test_an_earlier_step_goes_on_being_re_sent_after_the_chain_moves_on(
    time_env: WorkflowEnvironment,
    client: Client,
    settings: Settings,
    executor: ThreadPoolExecutor,
    tmp_path: Path,
) -> None:
    """Issue 20, item 2: "re-sending stops at 签收 or when the deadline is met", not when the
    next step is taken. Step 2 reaches the deputy; step 3 (the leader) comes 40 minutes later;
    the deputy, still unsigned, is sent step 2 again on her second e-mail at one hour, and on
    her SMS at 90 minutes; then she signs and nothing more comes to her."""
    path = roster_with_channels(tmp_path)
    roster = load_roster(path)
    s = settings.model_copy(update={"roster_file": path, "escalation_waits_minutes": [60, 40]})
    async with running_worker(client, s, executor):
        view = await submit(client, s, roster, severity="urgent", responsible_unit="cjb")
        await time_env.sleep(timedelta(hours=4, minutes=1))  # due at 3 h, step 2 at 4 h
        await time_env.sleep(timedelta(minutes=30))
        step2 = receipt(await incidents.get(client, view.id), "R-REPLY#1/2")
        assert step2.rounds == 1  # her first e-mail, at 30 minutes
        await time_env.sleep(timedelta(minutes=35))  # step 3 at 40 minutes; her round 2 at 60
        view = await incidents.get(client, view.id)
        assert receipt(view, "R-REPLY#1/3").persons == [LEADER]
        step2 = receipt(view, "R-REPLY#1/2")
        assert step2.rounds == 2 and step2.resent[1].startswith(f"{DEPUTY}|email:home|")
        await time_env.sleep(timedelta(minutes=30))
        step2 = receipt(await incidents.get(client, view.id), "R-REPLY#1/2")
        assert step2.rounds == 3 and step2.resent[2].startswith(f"{DEPUTY}|sms:sms|")
        await incidents.act(client, view.id, "sign-for", {"key": "R-REPLY#1/2"}, DEPUTY)
        await time_env.sleep(timedelta(hours=2))
        view = await incidents.get(client, view.id)
        assert receipt(view, "R-REPLY#1/2").rounds == 3
        mine = [
            e
            for e in view.timeline
            if e.kind == "resent" and "李晓梅" in e.summary and "R-REPLY" in e.summary
        ]
        assert len(mine) == 3, [e.summary for e in mine]
