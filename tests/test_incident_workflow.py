"""IncidentWorkflow on the time-skipping test server: deadlines pass in milliseconds."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from config.settings import Settings
from plan.roster import Roster
from runtime.payloads import compact_data_converter
from starter import incidents
from starter.incidents import ServiceError
from store import incident_rows, notifications
from tests.helpers import eventually, publish, running_worker, stored, submit
from workflows.incident import IncidentWorkflow

WF_TASK = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
}


# R-ESCALATE step 1 for 村镇建设办 in the example roster (plan.rules.escalation_chain): its
# first-responsible person and head (both sun.haitao), then the office (yqb: liu.yang, its head
# and first-responsible person, then zhou.ting and ma.chao), as stored (comma-separated).
STEP_1_CJB = "sun.haitao,liu.yang,zhou.ting,ma.chao"


def _deadline(view, rule):  # type: ignore[no-untyped-def]
    return next(d for d in view.deadlines if d.rule == rule)


@pytest.mark.parametrize(("severity", "hours"), [("general", 12), ("major", 24), ("urgent", 3)])
async def test_reply_deadline_by_severity(
    client: Client,
    settings: Settings,
    roster: Roster,
    executor: ThreadPoolExecutor,
    severity: str,
    hours: int,
) -> None:
    """R-REPLY: 一般 12 h, 重大 24 h, 紧急 3 h, all from discovered_at."""
    discovered = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    async with running_worker(client, settings, executor):
        view = await submit(
            client, settings, roster, severity=severity, discovered_at=discovered.isoformat()
        )
        reply = _deadline(view, "R-REPLY")
        assert reply.due_at == discovered + timedelta(hours=hours)
        assert reply.met_at is None and not reply.overdue
        rows = await eventually(
            lambda: stored(settings.database_url, incident_rows.deadlines, incident_id=view.id)
        )
        assert {r.rule: r.due_at for r in rows}["R-REPLY"] == discovered + timedelta(hours=hours)


async def test_unassessed_counts_as_general_and_triage_moves_the_deadline(
    client: Client, settings: Settings, roster: Roster, executor: ThreadPoolExecutor
) -> None:
    """R-REPLY: no severity means general (12 h) until triage; urgent moves it to 3 h."""
    discovered = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    async with running_worker(client, settings, executor):
        view = await submit(client, settings, roster, discovered_at=discovered.isoformat())
        assert view.severity.value == "general" and not view.severity_assessed
        assert _deadline(view, "R-REPLY").due_at == discovered + timedelta(hours=12)
        view = await incidents.act(
            client,
            view.id,
            "triage",
            {"severity": "urgent", "category": "inquiry", "responsible_unit": "cjb"},
            "liu.yang",
        )
        assert view.phase.value == "handling"
        assert _deadline(view, "R-REPLY").due_at == discovered + timedelta(hours=3)
        assert any(e.kind == "deadline_moved" for e in view.timeline)


async def test_unmet_deadline_escalates_step_by_step_and_records_the_miss(
    time_env: WorkflowEnvironment,
    client: Client,
    settings: Settings,
    roster: Roster,
    executor: ThreadPoolExecutor,
) -> None:
    """R-ESCALATE: unit + office, then the deputy leader, then the leader; R-ACCOUNT records 逾期."""
    url = settings.database_url
    async with running_worker(client, settings, executor):
        view = await submit(client, settings, roster, severity="urgent", responsible_unit="cjb")
        await time_env.sleep(timedelta(hours=3, minutes=1))
        esc = await eventually(lambda: stored(url, incident_rows.escalations, incident_id=view.id))
        assert [(e.step, e.targets) for e in esc] == [(1, STEP_1_CJB)]
        acc = await eventually(
            lambda: stored(url, incident_rows.accountability, incident_id=view.id)
        )
        assert [(a.rule, a.kind, a.unit, a.person) for a in acc] == [
            ("R-REPLY", "逾期", "cjb", "sun.haitao")
        ]
        assert acc[0].met_at is None
        inbox = await eventually(lambda: stored(url, notifications.inbox, recipient="sun.haitao"))
        assert any("第1级" in m.subject for m in inbox)
        # The deputy leader (in the publicity department) was told of the urgent report
        # (R-NOTIFY), but nothing has been escalated to her yet.
        assert not [
            m
            for m in stored(url, notifications.inbox, recipient="li.xiaomei")
            if m.rule == "R-ESCALATE"
        ]

        await time_env.sleep(timedelta(minutes=61))
        esc = await eventually(
            lambda: (
                (r := stored(url, incident_rows.escalations, incident_id=view.id))
                and len(r) >= 2
                and r
            )
        )
        assert [(e.step, e.targets) for e in esc] == [(1, STEP_1_CJB), (2, "li.xiaomei")]
        await eventually(
            lambda: [
                m
                for m in stored(url, notifications.inbox, recipient="li.xiaomei")
                if m.rule == "R-ESCALATE"
            ]
        )

        await time_env.sleep(timedelta(minutes=61))
        esc = await eventually(
            lambda: (
                (r := stored(url, incident_rows.escalations, incident_id=view.id))
                and len(r) >= 3
                and r
            )
        )
        assert [(e.step, e.targets) for e in esc][1:] == [(2, "li.xiaomei"), (3, "wang.jianguo")]
        view = await incidents.get(client, view.id)
        reply = _deadline(view, "R-REPLY")
        assert reply.overdue and reply.escalation_step == 3
        # The chain is exhausted: more time adds no steps, the deadline stays overdue.
        await time_env.sleep(timedelta(hours=5))
        later = await incidents.get(client, view.id)
        assert [e.step for e in later.escalations if e.deadline_key == "R-REPLY#1"] == [1, 2, 3]
        assert _deadline(later, "R-REPLY").overdue


async def test_published_reply_stops_escalation(
    time_env: WorkflowEnvironment,
    client: Client,
    settings: Settings,
    roster: Roster,
    executor: ThreadPoolExecutor,
) -> None:
    """R-ESCALATE stops when the deadline is met; R-REVIEW: drafted, approved by the head, published."""
    url = settings.database_url
    async with running_worker(client, settings, executor):
        view = await submit(client, settings, roster, severity="urgent")
        await incidents.act(
            client,
            view.id,
            "triage",
            {"severity": "urgent", "category": "hype", "responsible_unit": "cjb"},
            "liu.yang",
        )
        await time_env.sleep(timedelta(hours=3, minutes=1))
        await eventually(lambda: stored(url, incident_rows.escalations, incident_id=view.id))
        final = await publish(client, view.id, staff="lin.feng", head="sun.haitao", release=True)
        handle = client.get_workflow_handle_for(IncidentWorkflow.run, view.id)
        assert final.phase.value == "tracking"
        reply = _deadline(final, "R-REPLY")
        assert reply.met_at is not None and reply.overdue
        assert [r.status.value for r in final.replies] == ["published"]
        assert final.replies[0].approved_by == "sun.haitao"
        await time_env.sleep(timedelta(hours=2))
        escalated = stored(url, incident_rows.escalations, incident_id=view.id)
        assert [e.deadline_key for e in escalated] == ["R-REPLY#1"]
        acc = await eventually(
            lambda: [
                a
                for a in stored(url, incident_rows.accountability, incident_id=view.id)
                if a.met_at
            ]
        )
        assert acc[0].met_at == reply.met_at
        # The whole history (timers, escalation, updates) replays deterministically.
        replayer = Replayer(workflows=[IncidentWorkflow], data_converter=compact_data_converter)
        await replayer.replay_workflow(await handle.fetch_history())


async def test_reply_in_time_records_no_miss(
    time_env: WorkflowEnvironment,
    client: Client,
    settings: Settings,
    roster: Roster,
    executor: ThreadPoolExecutor,
) -> None:
    """R-REPLY met before the deadline: once the due time and the first escalation wait have
    passed, still no escalation and no accountability record, in the workflow or the store."""
    url = settings.database_url
    async with running_worker(client, settings, executor):
        view = await submit(client, settings, roster, severity="general")
        await incidents.act(
            client,
            view.id,
            "triage",
            # Not an inquiry: found minutes before midnight in Beijing, its same-day opinion
            # (R-INQUIRY) would fall due before the reply, and this test is about R-REPLY.
            {"severity": "general", "category": "hype", "responsible_unit": "sswb"},
            "zhou.ting",
        )
        final = await publish(client, view.id, staff="xu.lei", head="huang.li")
        reply = _deadline(final, "R-REPLY")
        assert reply.met_at is not None and reply.met_at < reply.due_at
        assert final.phase.value == "tracking"

        # Let the 12 h pass, and the hour until step 2 would escalate a miss.
        now = await time_env.get_current_time()
        await time_env.sleep(reply.due_at + timedelta(hours=1, minutes=1) - now)
        assert await time_env.get_current_time() > reply.due_at + timedelta(hours=1)
        later = await incidents.get(client, view.id)
        after = _deadline(later, "R-REPLY")
        assert (after.state, after.met_at, after.escalation_step) == ("met", reply.met_at, 0)
        assert later.escalations == [] and later.accountability == []
        assert not [e for e in later.timeline if e.kind in ("deadline_missed", "escalated")]

        # The read model has caught up with that state (same version) and shows no miss either.
        rows = await eventually(
            lambda: [
                i
                for i in stored(url, incident_rows.list_incidents)
                if i.id == view.id and i.version == later.version
            ]
        )
        assert rows[0].phase == "tracking" and not rows[0].overdue
        assert stored(url, incident_rows.escalations, incident_id=view.id) == []
        assert stored(url, incident_rows.accountability, incident_id=view.id) == []


async def test_late_submission_records_late_report(
    client: Client, settings: Settings, roster: Roster, executor: ThreadPoolExecutor
) -> None:
    """R-REPORT: reported more than 1 h after discovery is 迟报 on the reporting unit."""
    url = settings.database_url
    discovered = datetime.now(UTC) - timedelta(hours=2)
    async with running_worker(client, settings, executor):
        view = await submit(
            client, settings, roster, discovered_at=discovered.isoformat(), reporter_unit="dhc"
        )
        report = _deadline(view, "R-REPORT")
        assert report.overdue and report.met_at == view.received_at
        assert any(e.kind == "late_report" for e in view.timeline)
        acc = await eventually(
            lambda: stored(url, incident_rows.accountability, incident_id=view.id)
        )
        assert [(a.rule, a.kind, a.unit, a.person) for a in acc] == [
            ("R-REPORT", "迟报", "dhc", "feng.gang")
        ]

        on_time = await submit(
            client,
            settings,
            roster,
            discovered_at=(datetime.now(UTC) - timedelta(minutes=50)).isoformat(),
        )
        assert not _deadline(on_time, "R-REPORT").overdue
        await eventually(lambda: stored(url, incident_rows.timeline, incident_id=on_time.id))
        assert stored(url, incident_rows.accountability, incident_id=on_time.id) == []


async def test_notify_on_report(
    client: Client, settings: Settings, roster: Roster, executor: ThreadPoolExecutor
) -> None:
    """R-NOTIFY: the office, the main leader for major and urgent, and the responsible unit with
    its first-responsible person (R-DUTY)."""
    url = settings.database_url
    async with running_worker(client, settings, executor):
        general = await submit(client, settings, roster, severity="general")
        await eventually(lambda: stored(url, notifications.inbox, recipient="liu.yang"))
        await eventually(lambda: stored(url, notifications.inbox, recipient="zhou.ting"))
        assert not [
            m
            for m in stored(url, notifications.inbox, recipient="wang.jianguo")
            if m.incident_id == general.id
        ]

        major = await submit(client, settings, roster, severity="major", responsible_unit="sswb")
        for person in ("wang.jianguo", "huang.li", "wu.fang", "xu.lei"):
            msgs = await eventually(
                lambda p=person: [
                    m
                    for m in stored(url, notifications.inbox, recipient=p)
                    if m.incident_id == major.id
                ]
            )
            assert msgs[0].rule == "R-NOTIFY" and "重大" in msgs[0].subject


async def test_refused_actions_change_nothing(
    client: Client, settings: Settings, roster: Roster, executor: ThreadPoolExecutor
) -> None:
    """Wrong phase, wrong role, unknown or closed incident: a clear refusal, and no new history."""
    async with running_worker(client, settings, executor):
        view = await submit(client, settings, roster, severity="major")
        handle = client.get_workflow_handle_for(IncidentWorkflow.run, view.id)
        await eventually(
            lambda: stored(settings.database_url, incident_rows.timeline, incident_id=view.id)
        )

        async def history_length() -> int:
            """Events other than workflow tasks, once the workflow has nothing in flight. (The
            time-skipping server records a workflow task even for a rejected update; the real
            server does not, and the end-to-end test checks the whole history there.)"""
            last = -1
            while True:
                desc = await handle.describe()
                length = len(
                    [
                        e
                        for e in (await handle.fetch_history()).events
                        if e.event_type not in WF_TASK
                    ]
                )
                if not desc.raw_description.pending_activities and length == last:
                    return length
                last = length
                await asyncio.sleep(0.1)

        before = await history_length()
        refusals = [
            ("draft-reply", {"text": "x"}, "lin.feng", 409, "研判"),  # wrong phase
            (
                "triage",
                {"severity": "major", "category": "hype", "responsible_unit": "cjb"},
                "lin.feng",
                403,
                "办公室",
            ),
            (
                "triage",
                {"severity": "major", "category": "hype", "responsible_unit": "nowhere"},
                "liu.yang",
                409,
                "名册",
            ),
            (
                "triage",
                {"severity": "huge", "category": "hype", "responsible_unit": "cjb"},
                "liu.yang",
                422,
                "舆情等级",
            ),
            ("approve-reply", {}, "nobody", 409, "待研判"),
        ]
        for action, data, actor, status, words in refusals:
            with pytest.raises(ServiceError) as err:
                await incidents.act(client, view.id, action, data, actor)
            assert err.value.status == status, (action, err.value.message)
            assert words in (err.value.message + "".join(f.message for f in err.value.fields))
        assert await history_length() == before
        assert (await incidents.get(client, view.id)).version == view.version

        await incidents.act(
            client,
            view.id,
            "triage",
            {"severity": "major", "category": "hype", "responsible_unit": "cjb"},
            "liu.yang",
        )
        await incidents.act(client, view.id, "draft-reply", {"text": "情况说明"}, "lin.feng")
        before = await history_length()
        current = await incidents.get(client, view.id)
        for action, data, actor, status in [
            ("approve-reply", {}, "lin.feng", 403),  # staff is not the head (R-REVIEW)
            ("approve-reply", {}, "huang.li", 403),  # head of another unit
            ("publish-reply", {"channel": "微博"}, "lin.feng", 409),  # not approved yet
            ("draft-reply", {"text": "x"}, "xu.lei", 403),  # not in the responsible unit
            ("approve-reply", {"approve": False}, "sun.haitao", 409),  # return without a reason
        ]:
            with pytest.raises(ServiceError) as err:
                await incidents.act(client, view.id, action, data, actor)
            assert err.value.status == status, (action, actor, err.value.message)
        assert await history_length() == before
        assert (await incidents.get(client, view.id)).version == current.version

        await incidents.act(client, view.id, "approve-reply", {}, "sun.haitao")
        # R-RELEASE / R-SECRECY: a major incident's reply is not published on the head's word alone.
        with pytest.raises(ServiceError) as err:
            await incidents.act(client, view.id, "publish-reply", {"channel": "微博"}, "lin.feng")
        assert err.value.status == 409 and "R-RELEASE" in err.value.message
        with pytest.raises(ServiceError) as err:
            await incidents.act(
                client, view.id, "approve-release", {"spokesperson": "li.xiaomei"}, "liu.yang"
            )
        assert err.value.status == 403
        await incidents.act(
            client, view.id, "approve-release", {"spokesperson": "li.xiaomei"}, "li.xiaomei"
        )
        await incidents.act(client, view.id, "publish-reply", {"channel": "微博"}, "lin.feng")
        await incidents.act(client, view.id, "track", {"status": "subsided"}, "lin.feng")
        await incidents.act(client, view.id, "submit-summary", {"text": "总结"}, "lin.feng")
        assert (await incidents.get(client, view.id)).phase.value == "closed"
        with pytest.raises(ServiceError) as err:
            await incidents.act(client, view.id, "draft-reply", {"text": "x"}, "lin.feng")
        assert err.value.status == 409 and "结案" in err.value.message

        with pytest.raises(ServiceError) as err:
            await incidents.act(client, "YQ-NOPE", "draft-reply", {"text": "x"}, "lin.feng")
        assert err.value.status == 404
        with pytest.raises(ServiceError) as err:
            await incidents.act(client, view.id, "launch-rocket", {}, "lin.feng")
        assert err.value.status == 404


async def test_same_submission_key_starts_one_incident(
    client: Client, settings: Settings, roster: Roster, executor: ThreadPoolExecutor
) -> None:
    async with running_worker(client, settings, executor):
        key = f"form-{datetime.now(UTC).timestamp()}"
        first = await incidents.submit(
            client, settings, roster, _sub(submission_key=key), submitted_by="zhou.ting"
        )
        again = await incidents.submit(
            client, settings, roster, _sub(submission_key=key), submitted_by="zhou.ting"
        )
        assert first.created and not again.created
        assert first.view.id == again.view.id


def _sub(**kw):  # type: ignore[no-untyped-def]
    from tests.helpers import submission

    return submission(**kw)
