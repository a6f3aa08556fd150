"""The plan's report, progress, tracking, summary and close rules, and the pre-deadline warning,
on the time-skipping test server with a real worker and a real SQLite store.

Every test names the rule it proves (RULES.md); `time_env.sleep` jumps plan time, the store is
read through its queries (store/incident_rows.py, store/notifications.py), and activities are
awaited with `eventually`.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

# The notify activity's httpx client imports httpcore lazily in an activity thread. Importing it
# here, on the main thread before any worker starts, keeps a worker shut down by a failing test
# from leaving that first import half-done with the next activity thread waiting for ever on its
# module lock (a failure that shows as a hang).
import httpcore  # noqa: F401
import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from config.settings import Settings
from plan.models import Deadline, IncidentView
from plan.roster import Roster
from starter import incidents
from starter.incidents import ServiceError
from store import incident_rows, notifications
from tests.helpers import (
    eventually,
    finished,
    publish,
    running_worker,
    stored,
    submission,
    submit,
    triage,
)

OFFICE = {"liu.yang", "zhou.ting", "ma.chao"}


# ------------------------------------------------------------------ helpers


def _dl(view: IncidentView, key: str) -> Deadline:
    d = view.deadline(key)
    assert d is not None, (key, [x.key for x in view.deadlines])
    return d


def _keys(view: IncidentView, rule: str) -> list[str]:
    return [d.key for d in view.deadlines if d.rule == rule]


def _kinds(view: IncidentView, kind: str) -> list[Any]:
    return [e for e in view.timeline if e.kind == kind]


def _acc(url: str, incident_id: str, key_prefix: str = "") -> list[tuple[Any, ...]]:
    return [
        (a.rule, a.kind, a.unit, a.person)
        for a in stored(url, incident_rows.accountability, incident_id=incident_id)
        if a.deadline_key.startswith(key_prefix)
    ]


def _esc(url: str, incident_id: str, key: str) -> list[Any]:
    return [
        e
        for e in stored(url, incident_rows.escalations, incident_id=incident_id)
        if e.deadline_key == key
    ]


def _steps(url: str, incident_id: str, key: str, n: int) -> Any:
    """A checker for `eventually`: the deadline's escalation rows once there are at least n."""

    def check() -> list[Any] | None:
        rows = _esc(url, incident_id, key)
        return rows if len(rows) >= n else None

    return check


def _store_deadline(url: str, incident_id: str, key: str) -> Any:
    return next(
        (r for r in stored(url, incident_rows.deadlines, incident_id=incident_id) if r.key == key),
        None,
    )


def _inbox(url: str, person: str, incident_id: str) -> list[Any]:
    return [
        m
        for m in stored(url, notifications.inbox, recipient=person)
        if m.incident_id == incident_id
    ]


def _warnings_to(url: str, person: str, incident_id: str) -> list[Any]:
    return [m for m in _inbox(url, person, incident_id) if "临期提醒" in m.subject]


def _incident_row(url: str, incident_id: str, *, phase: str) -> Any:
    return next(
        (
            i
            for i in stored(url, incident_rows.list_incidents)
            if i.id == incident_id and i.phase == phase
        ),
        None,
    )


def _stored_kinds(url: str, incident_id: str, kind: str) -> list[Any]:
    return [
        e for e in stored(url, incident_rows.timeline, incident_id=incident_id) if e.kind == kind
    ]


async def _refused(
    client: Client, incident_id: str, action: str, data: dict[str, Any], actor: str
) -> ServiceError:
    with pytest.raises(ServiceError) as err:
        await incidents.act(client, incident_id, action, data, actor)
    return err.value


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


# ------------------------------------------------------------------ R-OFFICE


async def test_r_office_lead_confirmed_within_the_hour_meets_report(
    time_env: WorkflowEnvironment,
    client: Client,
    settings: Settings,
    roster: Roster,
    executor: ThreadPoolExecutor,
) -> None:
    """R-OFFICE: a monitoring lead starts in phase "lead" with R-REPORT open on the office; only the
    office may confirm it; confirmed within the hour it counts as reported on time (R-REPORT met,
    phase triage, no accountability, no escalation)."""
    url = settings.database_url
    discovered = _now() - timedelta(minutes=5)
    async with running_worker(client, settings, executor):
        view = await submit(
            client,
            settings,
            roster,
            lead=True,
            source="舆情监测系统",
            reporter_unit="xcb",  # fed in by another unit's monitoring: the office still owns it
            reporter_name=None,
            discovered_at=discovered.isoformat(),
        )
        assert view.phase.value == "lead" and view.lead
        report = _dl(view, "R-REPORT")
        assert report.open and report.unit == "yqb"
        assert report.due_at == discovered + timedelta(hours=1)
        assert _kinds(view, "lead") and not _kinds(view, "reported")
        assert not _keys(view, "R-PROGRESS")
        # The office is told about the lead.
        msgs = await eventually(lambda: _inbox(url, "ma.chao", view.id))
        assert msgs[0].rule == "R-OFFICE"

        # Only the office confirms a lead; nothing else can start before it does.
        err = await _refused(client, view.id, "confirm-lead", {}, "lin.feng")
        assert err.status == 403
        err = await _refused(client, view.id, "confirm-lead", {}, "wang.jianguo")
        assert err.status == 403
        err = await _refused(
            client,
            view.id,
            "triage",
            {"severity": "general", "category": "inquiry", "responsible_unit": "cjb"},
            "liu.yang",
        )
        assert err.status == 409 and "R-OFFICE" in err.message

        await time_env.sleep(timedelta(minutes=30))
        view = await incidents.act(
            client, view.id, "confirm-lead", {"note": "核实为负面舆情"}, "zhou.ting"
        )
        assert view.phase.value == "triage"
        report = _dl(view, "R-REPORT")
        confirmed = _kinds(view, "lead_confirmed")
        assert len(confirmed) == 1 and confirmed[0].actor == "zhou.ting"
        assert report.state == "met" and report.met_at == confirmed[0].at
        assert report.met_at < report.due_at
        # Confirmed, it is a report: a second confirmation is refused.
        err = await _refused(client, view.id, "confirm-lead", {}, "liu.yang")
        assert err.status == 409

        # Past the hour nothing is recorded against anyone for R-REPORT.
        await time_env.sleep(timedelta(hours=2))
        row = await eventually(
            lambda: (r := _store_deadline(url, view.id, "R-REPORT")) and r.met_at and r
        )
        assert not row.overdue and row.escalation_step == 0
        later = await incidents.get(client, view.id)
        assert _dl(later, "R-REPORT").state == "met"
        assert [e for e in later.escalations if e.deadline_key == "R-REPORT"] == []
        assert _acc(url, view.id, "R-REPORT") == []
        assert _esc(url, view.id, "R-REPORT") == []


async def test_r_office_unconfirmed_lead_is_late_report_and_escalates(
    time_env: WorkflowEnvironment,
    client: Client,
    settings: Settings,
    roster: Roster,
    executor: ThreadPoolExecutor,
) -> None:
    """R-OFFICE / R-REPORT: a lead the office leaves unconfirmed past 1 h is 迟报 on the office
    (yqb, liu.yang) and escalates: step 1 to the office, step 2 to the deputy leader; a late
    confirmation meets it late and stops the chain."""
    url = settings.database_url
    discovered = _now() - timedelta(minutes=5)
    async with running_worker(client, settings, executor):
        view = await submit(
            client,
            settings,
            roster,
            lead=True,
            reporter_unit="xcb",
            discovered_at=discovered.isoformat(),
        )
        await time_env.sleep(timedelta(minutes=56))
        esc = await eventually(_steps(url, view.id, "R-REPORT", 1))
        assert [e.step for e in esc] == [1]
        assert set(esc[0].targets.split(",")) >= OFFICE
        acc = await eventually(lambda: _acc(url, view.id, "R-REPORT"))
        assert acc == [("R-REPORT", "迟报", "yqb", "liu.yang")]
        current = await incidents.get(client, view.id)
        assert current.phase.value == "lead"
        assert _dl(current, "R-REPORT").state == "overdue"

        await time_env.sleep(timedelta(minutes=61))
        esc = await eventually(_steps(url, view.id, "R-REPORT", 2))
        assert [(e.step, e.targets) for e in esc][1:] == [(2, "li.xiaomei")]

        view = await incidents.act(client, view.id, "confirm-lead", {}, "liu.yang")
        assert view.phase.value == "triage"
        assert _dl(view, "R-REPORT").state == "met_late"
        assert any("迟报" in e.summary for e in _kinds(view, "lead_confirmed"))
        await time_env.sleep(timedelta(minutes=61))
        rows = await eventually(
            lambda: [
                a
                for a in stored(url, incident_rows.accountability, incident_id=view.id)
                if a.deadline_key == "R-REPORT" and a.met_at is not None
            ]
        )
        assert rows[0].met_at == _dl(view, "R-REPORT").met_at
        later = await incidents.get(client, view.id)
        assert [e.step for e in later.escalations if e.deadline_key == "R-REPORT"] == [1, 2]


# ------------------------------------------------------------------ R-WRITTEN


async def test_r_written_report_filed_within_30_minutes(
    time_env: WorkflowEnvironment,
    client: Client,
    settings: Settings,
    roster: Roster,
    executor: ThreadPoolExecutor,
) -> None:
    """R-WRITTEN: an oral report opens a written-report deadline 30 min after receipt (or after
    the stated oral report time) on the reporting unit; filing it in time meets it."""
    url = settings.database_url
    async with running_worker(client, settings, executor):
        view = await submit(
            client,
            settings,
            roster,
            oral=True,
            reporter_unit="dhc",
            reporter_name="冯刚",
            url="https://weibo.example/post/written",
        )
        written = _dl(view, "R-WRITTEN")
        assert written.open and written.unit == "dhc"
        assert written.anchor_at == view.received_at
        assert written.due_at == view.received_at + timedelta(minutes=30)

        oral_at = _now() - timedelta(minutes=20)
        stated = await submit(
            client,
            settings,
            roster,
            oral=True,
            discovered_at=(oral_at - timedelta(minutes=5)).isoformat(),
            oral_reported_at=oral_at.isoformat(),
            url="https://weibo.example/post/written-2",
            reporter_unit="dhc",
            submitted_by="feng.gang",  # signed in for his own unit: the stated call time counts
        )
        assert _dl(stated, "R-WRITTEN").due_at == oral_at + timedelta(minutes=30)

        # Another unit's staff cannot file it.
        err = await _refused(client, view.id, "file-written-report", {"text": "书面"}, "xu.lei")
        assert err.status == 403
        await time_env.sleep(timedelta(minutes=10))
        view = await incidents.act(
            client, view.id, "file-written-report", {"text": "书面报告：情况如下"}, "feng.gang"
        )
        written = _dl(view, "R-WRITTEN")
        assert written.state == "met" and written.met_at is not None
        assert view.written_report == "书面报告：情况如下"
        assert len(_kinds(view, "written_report")) == 1
        err = await _refused(client, view.id, "file-written-report", {"text": "再报"}, "feng.gang")
        assert err.status == 409

        await time_env.sleep(timedelta(minutes=30))
        row = await eventually(
            lambda: (r := _store_deadline(url, view.id, "R-WRITTEN")) and r.met_at and r
        )
        assert not row.overdue
        assert _acc(url, view.id, "R-WRITTEN") == []
        assert _esc(url, view.id, "R-WRITTEN") == []


async def test_r_written_unfiled_is_late_report_and_escalates(
    time_env: WorkflowEnvironment,
    client: Client,
    settings: Settings,
    roster: Roster,
    executor: ThreadPoolExecutor,
) -> None:
    """R-WRITTEN: no written report 30 min after the oral one is 迟报 on the reporting unit
    (dhc, feng.gang) and escalation step 1 to the unit and the office."""
    url = settings.database_url
    async with running_worker(client, settings, executor):
        view = await submit(client, settings, roster, oral=True, reporter_unit="dhc")
        await time_env.sleep(timedelta(minutes=31))
        acc = await eventually(lambda: _acc(url, view.id, "R-WRITTEN"))
        assert acc == [("R-WRITTEN", "迟报", "dhc", "feng.gang")]
        esc = await eventually(_steps(url, view.id, "R-WRITTEN", 1))
        assert [e.step for e in esc] == [1]
        assert set(esc[0].targets.split(",")) >= {"feng.gang"} | OFFICE
        current = await incidents.get(client, view.id)
        assert _dl(current, "R-WRITTEN").state == "overdue"
        assert any("R-WRITTEN" in e.summary for e in _kinds(current, "deadline_missed"))


async def test_r_written_refused_without_oral_report(
    client: Client, settings: Settings, roster: Roster, executor: ThreadPoolExecutor
) -> None:
    """R-WRITTEN: only an oral report owes a written one; otherwise filing is refused (409)."""
    async with running_worker(client, settings, executor):
        view = await submit(client, settings, roster)
        assert not view.oral and not _keys(view, "R-WRITTEN")
        err = await _refused(client, view.id, "file-written-report", {"text": "书面"}, "zhou.ting")
        assert err.status == 409
        assert (await incidents.get(client, view.id)).written_report is None


# ------------------------------------------------------------------ R-PROGRESS


@pytest.mark.parametrize(("severity", "hours"), [("major", 24), ("urgent", 6)])
async def test_r_progress_cadence_for_major_and_urgent(
    time_env: WorkflowEnvironment,
    client: Client,
    settings: Settings,
    roster: Roster,
    executor: ThreadPoolExecutor,
    severity: str,
    hours: int,
) -> None:
    """R-PROGRESS: a major (urgent) incident owes a 续报 24 h (6 h) after it is reported; a
    report-progress meets the open one and opens the next one interval later."""
    url = settings.database_url
    interval = timedelta(hours=hours)
    async with running_worker(client, settings, executor):
        view = await submit(client, settings, roster, severity=severity, responsible_unit="cjb")
        assert _keys(view, "R-PROGRESS") == ["R-PROGRESS#1"]
        first = _dl(view, "R-PROGRESS#1")
        assert first.open and first.unit == "cjb"
        assert first.anchor_at is not None
        assert first.due_at == first.anchor_at + interval
        assert abs(first.anchor_at - view.received_at) < timedelta(minutes=1)

        await time_env.sleep(interval / 2)
        view = await incidents.act(
            client, view.id, "report-progress", {"text": "已组织排水，舆情趋稳"}, "lin.feng"
        )
        first = _dl(view, "R-PROGRESS#1")
        assert first.state == "met" and first.met_at is not None
        second = _dl(view, "R-PROGRESS#2")
        assert second.open and second.anchor_at == first.met_at
        assert second.due_at == first.met_at + interval
        assert [e.actor for e in _kinds(view, "progress")] == ["lin.feng"]
        await eventually(lambda: _store_deadline(url, view.id, "R-PROGRESS#2"))
        rows = {d.key: d for d in stored(url, incident_rows.deadlines, incident_id=view.id)}
        assert rows["R-PROGRESS#1"].met_at == first.met_at
        assert rows["R-PROGRESS#2"].due_at == second.due_at

        # Past the first one's original due time (and the reply's, which does escalate):
        # the met progress deadline records nothing.
        await time_env.sleep(interval / 2 + timedelta(minutes=1))
        await eventually(_steps(url, view.id, "R-REPLY#1", 1))
        later = await incidents.get(client, view.id)
        assert not later.deadline("R-PROGRESS#1").overdue  # type: ignore[union-attr]
        assert _dl(later, "R-PROGRESS#2").state == "pending"
        assert _acc(url, view.id, "R-PROGRESS") == []
        assert [e for e in later.escalations if e.rule == "R-PROGRESS"] == []


async def test_r_progress_not_owed_for_general_until_triage_raises_severity(
    client: Client, settings: Settings, roster: Roster, executor: ThreadPoolExecutor
) -> None:
    """R-PROGRESS: a general incident has no progress deadline and report-progress is refused
    (409); raising it to major in triage starts the 24 h cadence from the triage."""
    async with running_worker(client, settings, executor):
        view = await submit(client, settings, roster, severity="general", responsible_unit="cjb")
        assert _keys(view, "R-PROGRESS") == []
        err = await _refused(client, view.id, "report-progress", {"text": "续报"}, "lin.feng")
        assert err.status == 409
        view = await triage(client, view.id, severity="general", category="hype", unit="cjb")
        assert _keys(view, "R-PROGRESS") == []
        err = await _refused(client, view.id, "report-progress", {"text": "续报"}, "lin.feng")
        assert err.status == 409

        view = await triage(client, view.id, severity="major", category="hype", unit="cjb")
        assert _keys(view, "R-PROGRESS") == ["R-PROGRESS#1"]
        progress = _dl(view, "R-PROGRESS#1")
        triaged = _kinds(view, "triaged")[-1]
        assert progress.open and progress.anchor_at == triaged.at
        assert progress.due_at == triaged.at + timedelta(hours=24)
        view = await incidents.act(client, view.id, "report-progress", {"text": "续报"}, "lin.feng")
        assert _dl(view, "R-PROGRESS#1").state == "met"
        assert _dl(view, "R-PROGRESS#2").open


async def test_r_progress_missed_reminds_then_escalates(
    time_env: WorkflowEnvironment,
    client: Client,
    settings: Settings,
    roster: Roster,
    executor: ThreadPoolExecutor,
) -> None:
    """R-PROGRESS: reminder (临期提醒), then on a miss 迟报 on the unit and escalation step by
    step; a late report meets it and stops the chain."""
    url = settings.database_url
    async with running_worker(client, settings, executor):
        view = await submit(client, settings, roster, severity="major", responsible_unit="cjb")
        await time_env.sleep(timedelta(hours=20))
        warned = await eventually(
            lambda: [
                e
                for e in _stored_kinds(url, view.id, "deadline_warning")
                if "R-PROGRESS" in e.summary
            ]
        )
        assert len(warned) == 1

        await time_env.sleep(timedelta(hours=4, minutes=1))
        acc = await eventually(lambda: _acc(url, view.id, "R-PROGRESS"))
        assert acc == [("R-PROGRESS", "迟报", "cjb", "sun.haitao")]
        esc = await eventually(_steps(url, view.id, "R-PROGRESS#1", 1))
        assert set(esc[0].targets.split(",")) >= {"sun.haitao"} | OFFICE
        await time_env.sleep(timedelta(minutes=61))
        esc = await eventually(_steps(url, view.id, "R-PROGRESS#1", 2))
        assert [(e.step, e.targets) for e in esc][1:] == [(2, "li.xiaomei")]

        view = await incidents.act(
            client, view.id, "report-progress", {"text": "迟到续报"}, "lin.feng"
        )
        assert _dl(view, "R-PROGRESS#1").state == "met_late"
        assert _dl(view, "R-PROGRESS#2").state == "pending"
        await time_env.sleep(timedelta(minutes=61))
        later = await incidents.get(client, view.id)
        assert [e.step for e in later.escalations if e.deadline_key == "R-PROGRESS#1"] == [1, 2]


async def test_r_progress_counts_from_the_report_not_from_when_the_worker_ran(
    client: Client, settings: Settings, roster: Roster, executor: ThreadPoolExecutor
) -> None:
    """R-PROGRESS: "every deadline is measured from a recorded instant, never from when the worker
    happened to run". A submission that waits for a worker (here 2 s) still owes its first 续报
    24 h after it was reported (received_at), like R-REPORT and R-WRITTEN count from it."""
    pending = asyncio.create_task(
        incidents.submit(
            client, settings, roster, submission(severity="major"), submitted_by="zhou.ting"
        )
    )
    await asyncio.sleep(2)
    async with running_worker(client, settings, executor):
        view = (await pending).view
    progress = _dl(view, "R-PROGRESS#1")
    assert progress.anchor_at == view.received_at
    assert progress.due_at == view.received_at + timedelta(hours=24)


async def test_r_progress_interval_follows_a_raised_severity(
    client: Client, settings: Settings, roster: Roster, executor: ThreadPoolExecutor
) -> None:
    """R-PROGRESS: the interval is by severity (major 24 h, urgent 6 h) from the last report; a
    major incident raised to urgent in triage owes its next 续报 6 h after the last report, the
    way a raised severity moves the open R-REPLY deadline."""
    async with running_worker(client, settings, executor):
        view = await submit(client, settings, roster, severity="major", responsible_unit="cjb")
        anchor = _dl(view, "R-PROGRESS#1").anchor_at
        assert anchor is not None
        view = await triage(client, view.id, severity="urgent", category="hype", unit="cjb")
        open_ = [d for d in view.deadlines if d.rule == "R-PROGRESS" and d.open]
        assert len(open_) == 1
        assert open_[0].due_at == anchor + timedelta(hours=6)


# ------------------------------------------------------------------ R-DISCOVER


async def test_r_discover_late_discovery_is_recorded_on_the_reporter_unit(
    client: Client, settings: Settings, roster: Roster, executor: ThreadPoolExecutor
) -> None:
    """R-DISCOVER: a post found more than 30 min after it was posted is 迟发现 on the reporting
    (monitoring) unit, its deadline met late at discovered_at; found within 30 min (the boundary
    included) records nothing."""
    url = settings.database_url
    discovered = _now() - timedelta(minutes=5)
    async with running_worker(client, settings, executor):
        late = await submit(
            client,
            settings,
            roster,
            reporter_unit="dhc",
            discovered_at=discovered.isoformat(),
            posted_at=(discovered - timedelta(minutes=45)).isoformat(),
            url="https://weibo.example/post/late",
        )
        d = _dl(late, "R-DISCOVER")
        assert d.due_at == discovered - timedelta(minutes=15)
        assert d.state == "met_late" and d.met_at == discovered and d.unit == "dhc"
        assert len(_kinds(late, "late_discovery")) == 1
        assert not late.overdue  # a measure, not a timer: nothing stays open
        rows = await eventually(
            lambda: stored(url, incident_rows.accountability, incident_id=late.id)
        )
        assert [(a.rule, a.kind, a.unit, a.person) for a in rows] == [
            ("R-DISCOVER", "迟发现", "dhc", "feng.gang")
        ]
        assert rows[0].met_at == discovered
        assert rows[0].due_at == discovered - timedelta(minutes=15)

        on_time = await submit(
            client,
            settings,
            roster,
            reporter_unit="dhc",
            discovered_at=discovered.isoformat(),
            posted_at=(discovered - timedelta(minutes=30)).isoformat(),
            url="https://weibo.example/post/on-time",
        )
        d = _dl(on_time, "R-DISCOVER")
        assert d.state == "met" and d.met_at == discovered
        assert not _kinds(on_time, "late_discovery")
        await eventually(lambda: _store_deadline(url, on_time.id, "R-DISCOVER"))
        assert stored(url, incident_rows.accountability, incident_id=on_time.id) == []


# ------------------------------------------------------------------ R-TRACK


async def _published(
    client: Client, settings: Settings, roster: Roster, *, severity: str = "general"
) -> IncidentView:
    """A hype incident on cjb, triaged and with its official reply published."""
    view = await submit(client, settings, roster, severity=severity)
    await triage(client, view.id, severity=severity, category="hype", unit="cjb")
    return await publish(
        client, view.id, staff="lin.feng", head="sun.haitao", release=severity != "general"
    )


async def test_r_track_opens_after_the_reply_and_each_check_opens_the_next(
    time_env: WorkflowEnvironment,
    client: Client,
    settings: Settings,
    roster: Roster,
    executor: ThreadPoolExecutor,
) -> None:
    """R-TRACK: once the official reply is published the incident is tracked, the first check
    due 24 h after publication; a check finding it still active opens the next, 24 h later."""
    url = settings.database_url
    async with running_worker(client, settings, executor):
        view = await _published(client, settings, roster)
        assert view.phase.value == "tracking"
        published_at = view.replies[-1].published_at
        assert published_at is not None
        track1 = _dl(view, "R-TRACK#1")
        assert track1.open and track1.unit == "cjb"
        assert track1.due_at == published_at + timedelta(hours=24)
        # The other phases' checks are refused here.
        err = await _refused(client, view.id, "submit-summary", {"text": "总结"}, "lin.feng")
        assert err.status == 409
        err = await _refused(client, view.id, "track", {"status": "active"}, "xu.lei")
        assert err.status == 403

        await time_env.sleep(timedelta(hours=12))
        view = await incidents.act(
            client, view.id, "track", {"status": "active", "note": "仍有转发"}, "lin.feng"
        )
        assert view.phase.value == "tracking"
        track1 = _dl(view, "R-TRACK#1")
        assert track1.state == "met" and track1.met_at is not None
        track2 = _dl(view, "R-TRACK#2")
        assert track2.open and track2.due_at == track1.met_at + timedelta(hours=24)
        row = await eventually(lambda: _store_deadline(url, view.id, "R-TRACK#2"))
        assert row.due_at == track2.due_at


async def test_r_track_unchecked_escalates(
    time_env: WorkflowEnvironment,
    client: Client,
    settings: Settings,
    roster: Roster,
    executor: ThreadPoolExecutor,
) -> None:
    """R-TRACK: a tracking check not recorded in time is reminded, then missed (逾期 on the unit)
    and escalated; a late check meets it and opens the next."""
    url = settings.database_url
    async with running_worker(client, settings, executor):
        view = await _published(client, settings, roster)
        await time_env.sleep(timedelta(hours=24, minutes=1))
        esc = await eventually(_steps(url, view.id, "R-TRACK#1", 1))
        assert [e.step for e in esc] == [1]
        assert set(esc[0].targets.split(",")) >= {"sun.haitao"} | OFFICE
        assert _acc(url, view.id, "R-TRACK") == [("R-TRACK", "逾期", "cjb", "sun.haitao")]
        current = await incidents.get(client, view.id)
        assert _dl(current, "R-TRACK#1").state == "overdue"
        assert any("R-TRACK" in e.summary for e in _kinds(current, "deadline_warning"))

        view = await incidents.act(client, view.id, "track", {"status": "active"}, "sun.haitao")
        assert _dl(view, "R-TRACK#1").state == "met_late"
        assert _dl(view, "R-TRACK#2").state == "pending"


async def test_r_track_flare_up_returns_to_handling_with_a_new_reply_round(
    time_env: WorkflowEnvironment,
    client: Client,
    settings: Settings,
    roster: Roster,
    executor: ThreadPoolExecutor,
) -> None:
    """R-TRACK: a flare-up returns the incident to handling, may raise (never lower) its
    severity, and opens R-REPLY#2 from the flare-up with the new severity's duration."""
    url = settings.database_url
    async with running_worker(client, settings, executor):
        view = await _published(client, settings, roster, severity="major")
        assert view.phase.value == "tracking"
        await time_env.sleep(timedelta(hours=3))

        err = await _refused(
            client, view.id, "track", {"status": "flared", "severity": "general"}, "lin.feng"
        )
        assert err.status == 409
        err = await _refused(
            client, view.id, "track", {"status": "active", "severity": "urgent"}, "lin.feng"
        )
        assert err.status == 409
        unchanged = await incidents.get(client, view.id)
        assert unchanged.phase.value == "tracking" and unchanged.severity.value == "major"

        view = await incidents.act(
            client,
            view.id,
            "track",
            {"status": "flared", "severity": "urgent", "note": "再次发酵"},
            "lin.feng",
        )
        assert view.phase.value == "handling"
        assert view.severity.value == "urgent"
        assert len(_kinds(view, "severity_raised")) == 1
        flared_at = _kinds(view, "tracked")[-1].at
        assert _dl(view, "R-TRACK#1").met_at == flared_at
        assert _dl(view, "R-REPLY#1").state == "met"
        reply2 = _dl(view, "R-REPLY#2")
        assert reply2.open and reply2.anchor_at == flared_at
        assert reply2.due_at == flared_at + timedelta(hours=3)
        assert "紧急" in reply2.title
        row = await eventually(lambda: _store_deadline(url, view.id, "R-REPLY#2"))
        assert row.due_at == reply2.due_at

        # The new round is published like the first, and tracking resumes.
        view = await publish(client, view.id, staff="lin.feng", head="sun.haitao", release=True)
        assert view.phase.value == "tracking"
        assert _dl(view, "R-REPLY#2").state == "met"
        assert _dl(view, "R-TRACK#2").open


async def test_r_track_flare_up_of_a_general_incident_starts_progress_reports(
    client: Client, settings: Settings, roster: Roster, executor: ThreadPoolExecutor
) -> None:
    """R-TRACK / R-PROGRESS: a general incident that flares up as major gets a 24 h reply round
    from the flare-up and starts owing 续报."""
    async with running_worker(client, settings, executor):
        view = await _published(client, settings, roster)
        assert _keys(view, "R-PROGRESS") == []
        view = await incidents.act(
            client, view.id, "track", {"status": "flared", "severity": "major"}, "lin.feng"
        )
        flared_at = _kinds(view, "tracked")[-1].at
        assert view.phase.value == "handling" and view.severity.value == "major"
        assert _dl(view, "R-REPLY#2").due_at == flared_at + timedelta(hours=24)
        assert _dl(view, "R-PROGRESS#1").due_at == flared_at + timedelta(hours=24)


# ------------------------------------------------------------------ R-SUMMARY


async def test_r_summary_in_time_closes_the_incident(
    time_env: WorkflowEnvironment,
    client: Client,
    settings: Settings,
    roster: Roster,
    executor: ThreadPoolExecutor,
) -> None:
    """R-SUMMARY: once it subsides the written summary is due in 72 h; submitted in time it goes
    to 镇党政办 (zhou.wenbin) and closes the incident (R-CLOSE), the workflow returning it."""
    url = settings.database_url
    async with running_worker(client, settings, executor):
        view = await _published(client, settings, roster)
        view = await incidents.act(
            client, view.id, "track", {"status": "subsided", "note": "已平息"}, "lin.feng"
        )
        assert view.phase.value == "summary"
        assert view.subsided_at is not None
        assert _dl(view, "R-TRACK#1").state == "met"
        summary = _dl(view, "R-SUMMARY")
        assert summary.open and summary.unit == "cjb"
        assert summary.anchor_at == view.subsided_at
        assert summary.due_at == view.subsided_at + timedelta(hours=72)
        assert [k for k in _keys(view, "R-TRACK") if _dl(view, k).open] == []

        await time_env.sleep(timedelta(hours=48))
        view = await incidents.act(
            client, view.id, "submit-summary", {"text": "发生、传播和处置情况及反思"}, "lin.feng"
        )
        assert view.phase.value == "closed"
        # R-CLOSE: the workflow ends once the period for commendations and records is over.
        await time_env.sleep(timedelta(days=30, hours=1))
        result = await finished(client, view.id)
        assert result.phase.value == "closed" and result.closed_at is not None
        assert result.summary == "发生、传播和处置情况及反思"
        assert _dl(result, "R-SUMMARY").state == "met"
        assert not [d for d in result.deadlines if d.open]

        msgs = await eventually(lambda: _inbox(url, "zhou.wenbin", view.id))
        summary_msgs = [m for m in msgs if m.rule == "R-SUMMARY"]
        assert len(summary_msgs) == 1
        assert "发生、传播和处置情况及反思" in summary_msgs[0].body
        row = await eventually(lambda: _incident_row(url, view.id, phase="closed"))
        assert row.closed_at is not None
        assert _acc(url, view.id) == []


async def test_r_summary_missed_is_late_report_and_escalates(
    time_env: WorkflowEnvironment,
    client: Client,
    settings: Settings,
    roster: Roster,
    executor: ThreadPoolExecutor,
) -> None:
    """R-SUMMARY: no summary 72 h after subsiding is 迟报 on the unit and escalates."""
    url = settings.database_url
    async with running_worker(client, settings, executor):
        view = await _published(client, settings, roster)
        view = await incidents.act(client, view.id, "track", {"status": "subsided"}, "lin.feng")
        await time_env.sleep(timedelta(hours=72, minutes=1))
        acc = await eventually(lambda: _acc(url, view.id, "R-SUMMARY"))
        assert acc == [("R-SUMMARY", "迟报", "cjb", "sun.haitao")]
        esc = await eventually(_steps(url, view.id, "R-SUMMARY", 1))
        assert [e.step for e in esc] == [1]
        current = await incidents.get(client, view.id)
        assert current.phase.value == "summary"
        assert _dl(current, "R-SUMMARY").state == "overdue"

        view = await incidents.act(
            client, view.id, "submit-summary", {"text": "迟交总结"}, "sun.haitao"
        )
        assert view.phase.value == "closed"
        assert _dl(view, "R-SUMMARY").state == "met_late"


# ------------------------------------------------------------------ R-CLOSE


async def test_r_close_withdraw_cancels_deadlines_and_refuses_later_actions(
    time_env: WorkflowEnvironment,
    client: Client,
    settings: Settings,
    roster: Roster,
    executor: ThreadPoolExecutor,
) -> None:
    """R-CLOSE: the office withdraws a false alarm with a reason; it closes, every open deadline
    is cancelled, and any later action is refused with 409 naming 结案. Without a reason: 422;
    by a unit's staff: 403."""
    url = settings.database_url
    async with running_worker(client, settings, executor):
        view = await submit(
            client, settings, roster, severity="major", oral=True, responsible_unit="cjb"
        )
        open_before = {d.key for d in view.deadlines if d.open}
        assert open_before == {"R-WRITTEN", "R-REPLY#1", "R-PROGRESS#1"}
        last_due = max(d.due_at for d in view.deadlines if d.open)

        err = await _refused(client, view.id, "withdraw", {"reason": "误报"}, "lin.feng")
        assert err.status == 403
        err = await _refused(client, view.id, "withdraw", {}, "liu.yang")
        assert err.status == 422 and any(f.field == "reason" for f in err.fields)
        err = await _refused(client, view.id, "withdraw", {"reason": "   "}, "liu.yang")
        assert err.status == 422
        assert (await incidents.get(client, view.id)).phase.value == "triage"

        view = await incidents.act(
            client, view.id, "withdraw", {"reason": "经核实为误报"}, "zhou.ting"
        )
        assert view.phase.value == "closed" and view.close_reason == "经核实为误报"
        states = {d.key: d.state for d in view.deadlines}
        assert states == {
            "R-REPORT": "met",
            "R-WRITTEN": "cancelled",
            "R-REPLY#1": "cancelled",
            "R-PROGRESS#1": "cancelled",
        }
        assert len(_kinds(view, "withdrawn")) == 1 and len(_kinds(view, "closed")) == 1

        # Closed, nothing falls due any more: let every cancelled deadline's due time and its
        # first escalation wait pass before waiting for the workflow's end, then read its state,
        # where a miss or an escalation would show at once.
        now = await time_env.get_current_time()
        await time_env.sleep(last_due + timedelta(hours=1, minutes=1) - now)
        assert await time_env.get_current_time() > last_due + timedelta(hours=1)
        later = await incidents.get(client, view.id)
        assert {d.key: d.state for d in later.deadlines} == states
        assert later.escalations == [] and later.accountability == []
        assert not [e for e in later.timeline if e.kind in ("deadline_missed", "escalated")]

        await time_env.sleep(timedelta(days=30, hours=1))  # R-CLOSE: the period after close
        result = await finished(client, view.id)
        assert result.phase.value == "closed"
        assert {d.key for d in result.deadlines if d.state == "cancelled"} == open_before

        assert result.escalations == [] and result.accountability == []

        # The store has caught up with the final state, and shows no miss either.
        await eventually(
            lambda: (
                (row := _incident_row(url, view.id, phase="closed"))
                and row.version == result.version
            )
        )
        rows = stored(url, incident_rows.deadlines, incident_id=view.id)
        assert {x.key for x in rows if x.cancelled} == open_before
        assert {x.key for x in rows if not x.cancelled} == {"R-REPORT"}
        assert stored(url, incident_rows.escalations, incident_id=view.id) == []
        assert stored(url, incident_rows.accountability, incident_id=view.id) == []

        for action, data, actor in [
            ("file-written-report", {"text": "书面"}, "zhou.ting"),
            ("report-progress", {"text": "续报"}, "lin.feng"),
            (
                "triage",
                {"severity": "major", "category": "hype", "responsible_unit": "cjb"},
                "liu.yang",
            ),
            ("withdraw", {"reason": "再次撤销"}, "liu.yang"),
        ]:
            err = await _refused(client, view.id, action, data, actor)
            assert err.status == 409 and "结案" in err.message, (action, err.message)


async def test_r_close_withdrawing_a_lead(
    client: Client, settings: Settings, roster: Roster, executor: ThreadPoolExecutor
) -> None:
    """R-CLOSE / R-OFFICE: a lead the office dismisses as a false alarm closes with its R-REPORT
    cancelled, and can no longer be confirmed."""
    async with running_worker(client, settings, executor):
        view = await submit(client, settings, roster, lead=True)
        view = await incidents.act(client, view.id, "withdraw", {"reason": "非负面信息"}, "ma.chao")
        assert view.phase.value == "closed"
        assert _dl(view, "R-REPORT").state == "cancelled"
        err = await _refused(client, view.id, "confirm-lead", {}, "liu.yang")
        assert err.status == 409 and "结案" in err.message


# ------------------------------------------------------------------ 临期提醒


async def test_deadline_warning_once_at_80_percent_of_the_reply_window(
    time_env: WorkflowEnvironment,
    client: Client,
    settings: Settings,
    roster: Roster,
    executor: ThreadPoolExecutor,
) -> None:
    """临期提醒 (R-REPLY, R-ESCALATE): 9.6 h into a general incident's 12 h reply window the
    owning unit gets exactly one warning (timeline and inbox), and never a second one."""
    url = settings.database_url
    discovered = _now() - timedelta(minutes=5)
    warn_at = discovered + timedelta(hours=9, minutes=36)
    async with running_worker(client, settings, executor):
        view = await submit(
            client,
            settings,
            roster,
            severity="general",
            responsible_unit="cjb",
            discovered_at=discovered.isoformat(),
        )
        assert _dl(view, "R-REPLY#1").due_at == discovered + timedelta(hours=12)

        # Just before 80 %: nothing yet.
        await time_env.sleep(warn_at - discovered - timedelta(minutes=7))
        current = await incidents.get(client, view.id)
        assert _kinds(current, "deadline_warning") == []
        assert not _dl(current, "R-REPLY#1").warned

        await time_env.sleep(timedelta(minutes=4))
        warned = await eventually(lambda: _stored_kinds(url, view.id, "deadline_warning"))
        assert len(warned) == 1 and "R-REPLY" in warned[0].summary
        assert warn_at <= warned[0].at < warn_at + timedelta(minutes=1)
        for person in ("sun.haitao", "lin.feng"):
            msgs = await eventually(partial(_warnings_to, url, person, view.id))
            assert len(msgs) == 1 and msgs[0].rule == "R-REPLY"
        current = await incidents.get(client, view.id)
        assert _dl(current, "R-REPLY#1").warned and _dl(current, "R-REPLY#1").state == "pending"

        # More time, and even the miss, bring no second warning.
        await time_env.sleep(timedelta(hours=2))
        await time_env.sleep(timedelta(minutes=30))
        await eventually(lambda: _stored_kinds(url, view.id, "deadline_missed"))
        later = await incidents.get(client, view.id)
        assert len(_kinds(later, "deadline_warning")) == 1
        assert len(_stored_kinds(url, view.id, "deadline_warning")) == 1
        for person in ("sun.haitao", "lin.feng"):
            assert len(_warnings_to(url, person, view.id)) == 1
