"""The read model on each backend (SQLite, and PostgreSQL when configured): migrations, the
idempotent writes the activities make, tokens and queries. Delivery over the channels (webhooks,
robots, e-mail) and the outbox are tested in test_channels.py and test_outbox.py."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, func, inspect, select, update
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Session

from activities.notify import NotifyActivities
from activities.record import RecordActivities
from plan.models import AccountabilityRecord, Deadline, Escalation, TimelineEntry
from plan.records import (
    EscalateRequest,
    IncidentRow,
    Notification,
    Recipient,
    RecordRequest,
    Wait,
)
from plan.roster import Channel, InboxChannel
from store import credentials, digests, incident_rows, notifications, reporting
from store.db import normalise_url, session_scope
from store.migrate import downgrade, upgrade
from store.models import (
    AccountabilityRow,
    ApiToken,
    Base,
    DeadlineRow,
    Delivery,
    EscalationRow,
    InboxMessage,
    Incident,
    SignInLink,
    TimelineEvent,
    WaitRow,
)

BEIJING = timezone(timedelta(hours=8))
# Deliberately not in UTC and with microseconds: the store must give back the same instant, in UTC.
DISCOVERED = datetime(2026, 11, 29, 8, 30, 15, 123456, tzinfo=BEIJING)
RECEIVED = DISCOVERED + timedelta(minutes=7, microseconds=1)
HEAD = "0017"
TABLES = {
    "absences",
    "access_log",
    "commendations",
    "referrals",
    "incidents",
    "timeline_events",
    "deadlines",
    "escalations",
    "accountability",
    "notifications",
    "deliveries",
    "api_tokens",
    "sessions",
    "incident_numbers",
    "sign_in_links",
    "waits",
    "attachments",
    "archives",
    "redactions",
    "reach_checks",
}


# --- builders ---


def incident_row(incident_id: str = "inc-1", version: int = 1, **overrides: Any) -> IncidentRow:
    values: dict[str, Any] = {
        "id": incident_id,
        "version": version,
        "title": "东湖村道路积水多日无人处理",
        "content": "网帖称东湖村主干道积水一周。",
        "source": "微博",
        "url": "https://weibo.example/post/1",
        "reporter_unit": "yqb",
        "reporter_name": "周婷",
        "responsible_unit": None,
        "severity": "general",
        "category": None,
        "phase": "triage",
        "drill": False,
        "discovered_at": DISCOVERED,
        "posted_at": DISCOVERED - timedelta(minutes=20),
        "received_at": RECEIVED,
        "next_due_at": DISCOVERED + timedelta(hours=1),
        "overdue": False,
        "closed_at": None,
        "plan_version": "test-plan",
    }
    values.update(overrides)
    return IncidentRow(**values)


def entry(seq: int, kind: str = "event", actor: str | None = None) -> TimelineEntry:
    return TimelineEntry(
        seq=seq, at=RECEIVED + timedelta(seconds=seq), kind=kind, actor=actor, summary=f"第{seq}条"
    )


def report_deadline(**overrides: Any) -> Deadline:
    values: dict[str, Any] = {
        "key": "R-REPORT#1",
        "rule": "R-REPORT",
        "title": "R-REPORT 发现后1小时内报告",
        "due_at": DISCOVERED + timedelta(hours=1),
        "unit": "yqb",
    }
    values.update(overrides)
    return Deadline(**values)


def reply_deadline(**overrides: Any) -> Deadline:
    values: dict[str, Any] = {
        "key": "R-REPLY#1",
        "rule": "R-REPLY",
        "title": "R-REPLY 一般舆情12小时内官方回复",
        "due_at": DISCOVERED + timedelta(hours=12),
        "unit": "cjb",
    }
    values.update(overrides)
    return Deadline(**values)


def late_report(met_at: datetime | None = None) -> AccountabilityRecord:
    return AccountabilityRecord(
        deadline_key="R-REPORT#1",
        rule="R-REPORT",
        kind="迟报",
        unit="yqb",
        person="liu.yang",
        due_at=DISCOVERED + timedelta(hours=1),
        recorded_at=DISCOVERED + timedelta(hours=1, microseconds=5),
        met_at=met_at,
    )


def count(session: Session, model: type[Base], **where: Any) -> int:
    q = select(func.count()).select_from(model)
    for name, value in where.items():
        q = q.where(getattr(model, name) == value)
    return session.scalar(q) or 0


def note(key: str, recipients: list[Recipient], incident_id: str = "inc-1") -> Notification:
    return Notification(
        key=key,
        incident_id=incident_id,
        rule="R-NOTIFY",
        recipients=recipients,
        subject="【一般舆情】东湖村道路积水：新报告",
        body="请领导小组办公室及时研判。",
        link=f"http://localhost:8000/incidents/{incident_id}",
        drill=False,
        sent_at=DISCOVERED + timedelta(minutes=8),
    )


def person(person_id: str, *channels: Channel) -> Recipient:
    return Recipient(person_id=person_id, name=person_id.upper(), channels=list(channels))


# --- migrations ---


def test_migrations_upgrade_downgrade_upgrade(store_url: str) -> None:
    """The migrations create exactly the models' schema, remove it all, and create it again."""
    engine = create_engine(normalise_url(store_url))
    try:

        def tables() -> set[str]:
            return set(inspect(engine).get_table_names()) - {"alembic_version"}

        def schema_diff() -> list[Any]:
            with engine.connect() as conn:
                return compare_metadata(MigrationContext.configure(conn), Base.metadata)

        def revision() -> str | None:
            with engine.connect() as conn:
                return MigrationContext.configure(conn).get_current_revision()

        assert tables() == TABLES
        assert revision() == HEAD
        assert schema_diff() == []

        downgrade(store_url)
        assert tables() == set()
        assert revision() is None

        upgrade(store_url)
        assert tables() == TABLES
        assert revision() == HEAD
        assert schema_diff() == []
        upgrade(store_url)  # already at head: nothing to do
        assert revision() == HEAD
    finally:
        engine.dispose()

    # The re-created schema takes writes.
    RecordActivities(store_url).record(
        RecordRequest(incident=incident_row(), deadlines=[], timeline=[entry(1)], accountability=[])
    )
    with session_scope(store_url) as s:
        assert count(s, Incident) == 1
        assert count(s, TimelineEvent) == 1


def test_migration_0009_adds_and_drops_the_activated_columns(store_url: str) -> None:
    """0009 down and up again: the incidents stay; the activated units and persons go, come back
    empty (an incident listed for the units it involved before) and the next snapshot fills them."""
    activities = RecordActivities(store_url)
    brought_in = {"activated_units": "pcs", "activated_persons": "xu.lei"}
    activities.record(
        RecordRequest(
            incident=incident_row(**brought_in), deadlines=[], timeline=[], accountability=[]
        )
    )
    engine = create_engine(normalise_url(store_url))
    try:

        def columns() -> set[str]:
            return {c["name"] for c in inspect(engine).get_columns("incidents")}

        assert {"activated_units", "activated_persons"} <= columns()
        downgrade(store_url, "0008")
        assert not {"activated_units", "activated_persons"} & columns()
        upgrade(store_url)
        assert {"activated_units", "activated_persons"} <= columns()
    finally:
        engine.dispose()
    pcs = incident_rows.Involving(unit="pcs", person="qian.jun")
    with session_scope(store_url) as s:
        (row,) = s.scalars(select(Incident)).all()
        assert (row.id, row.activated_units, row.activated_persons) == ("inc-1", "", "")
        assert incident_rows.list_incidents(s, involving=pcs) == []
    activities.record(
        RecordRequest(
            incident=incident_row(version=2, **brought_in),
            deadlines=[],
            timeline=[],
            accountability=[],
        )
    )
    with session_scope(store_url) as s:
        assert [i.id for i in incident_rows.list_incidents(s, involving=pcs)] == ["inc-1"]


def test_migration_0011_numbers_the_incidents_already_there(store_url: str) -> None:
    """Down to 0009 and up again: the incidents recorded before are numbered by day of receipt
    (Beijing time) in order, and the counter goes on from there."""
    _record(store_url, "old-2", received_at=datetime(2026, 11, 30, 2, 0, tzinfo=UTC))
    _record(store_url, "old-1", received_at=datetime(2026, 11, 30, 1, 0, tzinfo=UTC))
    _record(store_url, "old-3", received_at=datetime(2026, 11, 30, 16, 30, tzinfo=UTC))
    downgrade(store_url, "0009")
    upgrade(store_url)
    _record(store_url, "new", received_at=datetime(2026, 11, 30, 3, 0, tzinfo=UTC))
    assert _numbers(store_url) == {
        "old-1": "2026-1130-001",
        "old-2": "2026-1130-002",
        "old-3": "2026-1201-001",
        "new": "2026-1130-003",
    }


# --- record ---


def test_record_is_idempotent(store_url: str) -> None:
    """A retried `record` activity leaves one row per natural key (R-ACCOUNT records included)."""
    activities = RecordActivities(store_url)
    request = RecordRequest(
        incident=incident_row(version=3, overdue=True),
        deadlines=[report_deadline(overdue=True, escalation_step=1), reply_deadline()],
        timeline=[entry(1, "reported", "zhou.ting"), entry(2), entry(3, "deadline_missed")],
        accountability=[late_report()],
    )
    activities.record(request)
    activities.record(request)
    activities.record(request.model_copy(deep=True))

    with session_scope(store_url) as s:
        assert count(s, Incident) == 1
        assert [e.seq for e in incident_rows.timeline(s, incident_id="inc-1")] == [1, 2, 3]
        assert count(s, TimelineEvent) == 3
        assert [
            (d.key, d.overdue, d.escalation_step)
            for d in incident_rows.deadlines(s, incident_id="inc-1")
        ] == [
            ("R-REPORT#1", True, 1),
            ("R-REPLY#1", False, 0),
        ]
        assert count(s, DeadlineRow) == 2
        assert count(s, AccountabilityRow) == 1
        (acc,) = incident_rows.accountability(s, incident_id="inc-1")
        assert (acc.kind, acc.unit, acc.person, acc.met_at, acc.drill) == (
            "迟报",
            "yqb",
            "liu.yang",
            None,
            False,
        )
        incident = s.get(Incident, "inc-1")
        assert incident is not None
        assert (incident.version, incident.overdue, incident.phase) == (3, True, "triage")


def test_record_newer_snapshot_updates_in_place(store_url: str) -> None:
    """A newer version updates the incident, its deadlines and accountability records by key."""
    activities = RecordActivities(store_url)
    activities.record(
        RecordRequest(
            incident=incident_row(version=1, overdue=True),
            deadlines=[report_deadline(overdue=True)],
            timeline=[entry(1)],
            accountability=[late_report()],
        )
    )
    met = DISCOVERED + timedelta(hours=2)
    activities.record(
        RecordRequest(
            incident=incident_row(
                version=2,
                phase="handling",
                severity="urgent",
                category="inquiry",
                responsible_unit="cjb",
                overdue=False,
                next_due_at=DISCOVERED + timedelta(hours=3),
            ),
            deadlines=[
                report_deadline(overdue=True, met_at=met),
                reply_deadline(due_at=DISCOVERED + timedelta(hours=3), title="R-REPLY 紧急"),
            ],
            timeline=[entry(2, "triaged", "liu.yang")],
            accountability=[late_report(met_at=met)],
        )
    )
    with session_scope(store_url) as s:
        incident = s.get(Incident, "inc-1")
        assert incident is not None
        assert (incident.version, incident.phase, incident.severity, incident.responsible_unit) == (
            2,
            "handling",
            "urgent",
            "cjb",
        )
        assert incident.next_due_at == DISCOVERED + timedelta(hours=3)
        rows = {d.key: d for d in incident_rows.deadlines(s, incident_id="inc-1")}
        assert set(rows) == {"R-REPORT#1", "R-REPLY#1"}
        assert rows["R-REPORT#1"].met_at == met
        assert rows["R-REPLY#1"].title == "R-REPLY 紧急"
        (acc,) = incident_rows.accountability(s, incident_id="inc-1")
        assert acc.met_at == met
        assert [e.seq for e in incident_rows.timeline(s, incident_id="inc-1")] == [1, 2]


def test_record_older_snapshot_only_adds_timeline(store_url: str) -> None:
    """A late retry of an older snapshot never overwrites a newer one; its timeline entries
    (keyed and immutable) are still added."""
    activities = RecordActivities(store_url)
    newer = RecordRequest(
        incident=incident_row(version=5, phase="handling", responsible_unit="cjb"),
        deadlines=[reply_deadline(met_at=DISCOVERED + timedelta(hours=2))],
        timeline=[entry(1), entry(2, "published", "lin.feng")],
        accountability=[],
    )
    older = RecordRequest(
        incident=incident_row(version=4, phase="triage", title="旧标题", overdue=True),
        deadlines=[reply_deadline(overdue=True), report_deadline(overdue=True)],
        timeline=[
            TimelineEntry(seq=2, at=RECEIVED, kind="other", actor=None, summary="不应覆盖"),
            entry(3, "late"),
        ],
        accountability=[late_report()],
    )
    activities.record(newer)
    activities.record(older)
    same_version = older.model_copy(update={"incident": incident_row(version=5, title="同版本")})
    activities.record(same_version)

    with session_scope(store_url) as s:
        incident = s.get(Incident, "inc-1")
        assert incident is not None
        assert (incident.version, incident.phase, incident.title, incident.overdue) == (
            5,
            "handling",
            "东湖村道路积水多日无人处理",
            False,
        )
        (reply,) = incident_rows.deadlines(s, incident_id="inc-1")
        assert reply.key == "R-REPLY#1"
        assert reply.met_at == DISCOVERED + timedelta(hours=2)
        assert reply.overdue is False
        assert incident_rows.accountability(s, incident_id="inc-1") == []
        events = incident_rows.timeline(s, incident_id="inc-1")
        assert [(e.seq, e.kind) for e in events] == [(1, "event"), (2, "published"), (3, "late")]
        assert events[1].actor == "lin.feng"


def test_datetimes_come_back_aware_utc(store_url: str) -> None:
    """Store UTC: every datetime column reads back as the same instant, timezone-aware UTC."""
    recorded = late_report(met_at=DISCOVERED + timedelta(hours=2, microseconds=7))
    RecordActivities(store_url).record(
        RecordRequest(
            incident=incident_row(closed_at=DISCOVERED + timedelta(days=3)),
            deadlines=[report_deadline(met_at=DISCOVERED + timedelta(minutes=30))],
            timeline=[entry(1)],
            accountability=[recorded],
        )
    )
    with session_scope(store_url) as s:
        incident = s.get(Incident, "inc-1")
        assert incident is not None
        (deadline,) = incident_rows.deadlines(s, incident_id="inc-1")
        (event,) = incident_rows.timeline(s, incident_id="inc-1")
        (acc,) = incident_rows.accountability(s, incident_id="inc-1")
        pairs = [
            (incident.discovered_at, DISCOVERED),
            (incident.posted_at, DISCOVERED - timedelta(minutes=20)),
            (incident.received_at, RECEIVED),
            (incident.next_due_at, DISCOVERED + timedelta(hours=1)),
            (incident.closed_at, DISCOVERED + timedelta(days=3)),
            (deadline.due_at, DISCOVERED + timedelta(hours=1)),
            (deadline.met_at, DISCOVERED + timedelta(minutes=30)),
            (event.at, RECEIVED + timedelta(seconds=1)),
            (acc.due_at, recorded.due_at),
            (acc.recorded_at, recorded.recorded_at),
            (acc.met_at, recorded.met_at),
        ]
        for stored, expected in pairs:
            assert stored is not None
            assert stored.tzinfo is UTC, stored
            assert stored == expected
        assert incident.discovered_at.hour == 0  # 08:30 in Beijing is 00:30 UTC
        assert incident.discovered_at.microsecond == 123456
        assert incident.updated_at.tzinfo is UTC


def test_naive_datetime_is_refused(store_url: str) -> None:
    """A naive datetime is a bug upstream; the store refuses it rather than guess its zone."""
    naive = incident_row(discovered_at=datetime(2026, 11, 29, 8, 30))
    with pytest.raises(StatementError, match="naive datetime"):
        RecordActivities(store_url).record(
            RecordRequest(incident=naive, deadlines=[], timeline=[], accountability=[])
        )
    with session_scope(store_url) as s:
        assert count(s, Incident) == 0


# --- escalate ---


def test_escalate_records_each_step_once(store_url: str) -> None:
    """R-ESCALATE: every step is recorded with its time and targets; a retry adds nothing."""
    activities = RecordActivities(store_url)
    activities.record(
        RecordRequest(
            incident=incident_row(drill=True), deadlines=[], timeline=[], accountability=[]
        )
    )
    at = DISCOVERED + timedelta(hours=1, seconds=1)
    step1 = EscalateRequest(
        incident_id="inc-1",
        escalation=Escalation(
            deadline_key="R-REPORT#1",
            rule="R-REPORT",
            step=1,
            at=at,
            targets=["liu.yang", "zhou.ting"],
            summary="R-ESCALATE 第1级",
        ),
        drill=True,
    )
    assert activities.escalate(step1) is True
    assert activities.escalate(step1) is False
    assert activities.escalate(step1.model_copy(deep=True)) is False
    with session_scope(store_url) as s:
        (row,) = incident_rows.escalations(s, incident_id="inc-1")
        assert (row.step, row.targets, row.drill, row.rule) == (
            1,
            "liu.yang,zhou.ting",
            True,
            "R-REPORT",
        )
        assert row.at == at and row.at.tzinfo is UTC

    step2 = step1.model_copy(
        update={
            "escalation": step1.escalation.model_copy(
                update={"step": 2, "at": at + timedelta(hours=1), "targets": ["li.xiaomei"]}
            )
        }
    )
    assert activities.escalate(step2) is True
    assert activities.escalate(step2) is False
    with session_scope(store_url) as s:
        assert [(r.step, r.targets) for r in incident_rows.escalations(s, incident_id="inc-1")] == [
            (1, "liu.yang,zhou.ting"),
            (2, "li.xiaomei"),
        ]
        assert count(s, EscalationRow) == 2


def test_one_write_carries_a_step_whole(store_url: str) -> None:
    """One write per step: the read model, the R-ESCALATE step and the notifications' inbox and
    outbox rows land in one `record`; a retried write (and an older one) adds nothing twice."""
    from plan.roster import WebhookChannel

    activities = RecordActivities(store_url)
    at = DISCOVERED + timedelta(hours=1, seconds=1)
    step = Escalation(
        deadline_key="R-REPORT#1",
        rule="R-REPORT",
        step=1,
        at=at,
        targets=["liu.yang"],
        summary="R-ESCALATE 第1级",
    )
    hook = WebhookChannel(kind="webhook", url="https://hooks.example/yuqing")
    told = note("inc-1:n2:R-ESCALATE", [person("liu.yang", hook), person("wu.fang")])
    request = RecordRequest(
        incident=incident_row(version=2, overdue=True),
        deadlines=[report_deadline(overdue=True, escalation_step=1)],
        timeline=[entry(1, "reported", "zhou.ting"), entry(2, "escalated")],
        accountability=[late_report()],
        escalations=[step],
        notifications=[told],
    )
    activities.record(request)
    activities.record(request)
    older = request.model_copy(update={"incident": incident_row(version=1)})
    activities.record(older)
    with session_scope(store_url) as s:
        incident = s.get(Incident, "inc-1")
        assert incident is not None and (incident.version, incident.overdue) == (2, True)
        assert [(r.step, r.targets) for r in incident_rows.escalations(s, incident_id="inc-1")] == [
            (1, "liu.yang")
        ]
        assert count(s, TimelineEvent) == 2 and count(s, AccountabilityRow) == 1
        assert sorted(m.recipient for m in s.scalars(select(InboxMessage))) == [
            "liu.yang",
            "wu.fang",
        ]
        (delivery,) = notifications.outbox(s, incident_id="inc-1")
        assert (delivery.state, delivery.recipient, delivery.attempts) == ("pending", "liu.yang", 0)
        assert delivery.created_at is not None


# --- notify: the inbox ---


def test_notify_inbox_once_per_recipient(store_url: str) -> None:
    """R-NOTIFY: one inbox message per recipient, however often the activity runs."""
    activities = NotifyActivities(store_url)
    reported = note("inc-1:reported", [person("liu.yang", InboxChannel()), person("wu.fang")])
    assert activities.notify(reported) == 0
    assert activities.notify(reported) == 0
    with session_scope(store_url) as s:
        assert count(s, InboxMessage) == 2
        for pid in ("liu.yang", "wu.fang"):
            (msg,) = notifications.inbox(s, recipient=pid)
            assert msg.key == "inc-1:reported"
            assert msg.subject == reported.subject
            assert msg.body == reported.body
            assert msg.link == reported.link
            assert msg.rule == "R-NOTIFY"
            assert msg.created_at == reported.sent_at
            assert msg.created_at.tzinfo is UTC
            assert msg.read_at is None
        assert count(s, Delivery) == 0

    # A different notification is a different message.
    later = note("inc-1:assigned-cjb-3", [person("wu.fang")])
    later = later.model_copy(update={"sent_at": later.sent_at + timedelta(hours=1)})
    assert activities.notify(later) == 0
    with session_scope(store_url) as s:
        assert [m.key for m in notifications.inbox(s, recipient="wu.fang")] == [
            "inc-1:assigned-cjb-3",
            "inc-1:reported",
        ]
        assert count(s, InboxMessage) == 3


# --- tokens ---


def test_tokens_create_resolve_revoke(store_url: str) -> None:
    with session_scope(store_url) as s:
        first = credentials.create_token(s, person_id="wu.fang", label="办公电脑")
        second = credentials.create_token(s, person_id="wu.fang")
        other = credentials.create_token(s, person_id="liu.yang")
    assert len({first, second, other}) == 3
    assert all(t.startswith("yq_") and len(t) > 40 for t in (first, second, other))

    with session_scope(store_url) as s:
        assert credentials.person_for_token(s, token=first) == "wu.fang"
        assert credentials.person_for_token(s, token=second) == "wu.fang"
        assert credentials.person_for_token(s, token=other) == "liu.yang"
        assert credentials.person_for_token(s, token="yq_not-a-token") is None
        assert credentials.person_for_token(s, token="") is None
        rows = s.scalars(select(ApiToken).order_by(ApiToken.id)).all()
        assert [r.token_hash for r in rows] == [
            hashlib.sha256(t.encode()).hexdigest() for t in (first, second, other)
        ]
        for r in rows:  # only the hash is kept
            assert all(t not in (r.token_hash, r.label or "") for t in (first, second, other))
            assert r.created_at.tzinfo is UTC
        assert rows[0].label == "办公电脑"

    with session_scope(store_url) as s:
        assert credentials.revoke_tokens(s, person_id="wu.fang") == 2
    with session_scope(store_url) as s:
        assert credentials.person_for_token(s, token=first) is None
        assert credentials.person_for_token(s, token=second) is None
        assert credentials.person_for_token(s, token=other) == "liu.yang"
        assert credentials.revoke_tokens(s, person_id="wu.fang") == 0
        revoked = s.scalars(select(ApiToken).where(ApiToken.person_id == "wu.fang")).all()
        assert all(r.revoked_at is not None and r.revoked_at.tzinfo is UTC for r in revoked)


# --- list_incidents ---


def _seed_incidents(url: str) -> None:
    base = DISCOVERED.astimezone(UTC)
    seeds: dict[str, dict[str, Any]] = {
        "a": {"phase": "triage", "next_due_at": base + timedelta(hours=10), "received_at": base},
        "b": {
            "phase": "handling",
            "responsible_unit": "cjb",
            "overdue": True,
            "next_due_at": base + timedelta(hours=9),
        },
        "c": {
            "phase": "handling",
            "responsible_unit": "sswb",
            "drill": True,
            "next_due_at": base + timedelta(hours=11),
        },
        "d": {"phase": "closed", "responsible_unit": "cjb", "next_due_at": None},
        "e": {
            "phase": "handling",
            "responsible_unit": "cjb",
            "next_due_at": base + timedelta(hours=10),  # same as "a", received later
            "received_at": base + timedelta(minutes=1),
        },
    }
    activities = RecordActivities(url)
    for incident_id, overrides in seeds.items():
        activities.record(
            RecordRequest(
                incident=incident_row(incident_id, **overrides),
                deadlines=[],
                timeline=[],
                accountability=[],
            )
        )


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, ["b", "e", "a", "c", "d"]),
        ({"phase": "handling"}, ["b", "e", "c"]),
        ({"phase": "closed"}, ["d"]),
        ({"unit": "cjb"}, ["b", "e", "d"]),
        ({"overdue": True}, ["b"]),
        ({"overdue": False}, ["e", "a", "c", "d"]),
        ({"drill": True}, ["c"]),
        ({"drill": False}, ["b", "e", "a", "d"]),
        ({"phase": "handling", "unit": "cjb", "overdue": False}, ["e"]),
        ({"unit": "nowhere"}, []),
        ({"limit": 2}, ["b", "e"]),
        ({"limit": 2, "offset": 2}, ["a", "c"]),
    ],
)
def test_list_incidents(store_url: str, filters: dict[str, Any], expected: list[str]) -> None:
    """Filters by phase, unit, overdue and drill; the next deadline first, none due last, ties
    by the most recently received."""
    _seed_incidents(store_url)
    with session_scope(store_url) as s:
        assert [i.id for i in incident_rows.list_incidents(s, **filters)] == expected


# --- R-SECRECY: the one list filter ---

INVOLVEMENT: dict[str, dict[str, Any]] = {
    "reported": {"reporter_unit": "dhc"},
    "led": {"responsible_unit": "dhc"},
    "co-handled": {"responsible_unit": "cjb", "co_units": "sswb,dhc"},
    "brought-in": {"responsible_unit": "cjb", "activated_units": "pcs,dhc"},
    "named": {"responsible_unit": "cjb", "activated_persons": "xu.lei,feng.gang"},
    # Names that contain another's, and none of the filter's names whole.
    "near-misses": {
        "responsible_unit": "cjb",
        "co_units": "dhcx",
        "activated_units": "xdhc,pcs2",
        "activated_persons": "feng.gangx,xxu.lei",
    },
}


def _seed_involvement(url: str) -> None:
    """Each incident involves units and persons one way; the reporter is the office otherwise.
    Each has an open R-PROGRESS deadline owed by the police station (pcs)."""
    activities = RecordActivities(url)
    for incident_id, overrides in INVOLVEMENT.items():
        activities.record(
            RecordRequest(
                incident=incident_row(incident_id, phase="handling", url=None, **overrides),
                deadlines=[reply_deadline(key="R-PROGRESS#1", rule="R-PROGRESS", unit="pcs")],
                timeline=[],
                accountability=[],
            )
        )


@pytest.mark.parametrize(
    ("unit", "person", "expected"),
    [
        ("dhc", "nobody", {"reported", "led", "co-handled", "brought-in"}),
        ("sswb", "feng.gang", {"co-handled", "named"}),
        ("pcs", "qian.jun", {"brought-in"}),
        ("zfb", "xu.lei", {"named"}),
        ("", "feng.gang", {"named"}),
        ("yqb", "nobody", set(INVOLVEMENT) - {"reported"}),
        # Nothing for an empty name (every list without co-units would hold ""), nor for a
        # pattern: `_`, `%` and `,` are the names' own characters, not wildcards or separators.
        ("", "", set()),
        ("d_c", "feng%", set()),
        ("sswb,dhc", "xu.lei,feng.gang", set()),
    ],
)
def test_the_list_filter_is_the_pages_rule(
    store_url: str, unit: str, person: str, expected: set[str]
) -> None:
    """R-SECRECY, R-ACTIVATE: a list keeps the incidents the unit reported, leads, co-handles or
    was brought in to, and those the leading group named the person to in person: the page's
    rule (starter/web/deps.py `involved_units` and `activated_persons`). Every list asks the same
    filter: the incident lists and the deadlines a unit owes (the to-do page)."""
    _seed_involvement(store_url)
    who = incident_rows.Involving(unit=unit, person=person)
    with session_scope(store_url) as s:
        assert {i.id for i in incident_rows.list_incidents(s, involving=who)} == expected
        owed = incident_rows.owed_deadlines(s, unit="pcs", involving=who)
        assert {i.id for _, i in owed} == expected
        assert {i.id for i in incident_rows.list_incidents(s)} == set(INVOLVEMENT)
        assert {i.id for _, i in incident_rows.owed_deadlines(s, unit="pcs")} == set(INVOLVEMENT)


def test_report_queries_leave_drills_and_voided_records_out(store_url: str) -> None:
    """R-ACCOUNT, R-DRILL: the same missed report and reply, written for a real incident, a drill
    and a withdrawn false alarm (deadlines voided, records voided later, as the workflow writes
    them): only the real incident's reach the report's rates and record counts and the digest's
    record list; the false alarm's voided record is counted apart."""
    activities = RecordActivities(store_url)
    missed = [report_deadline(overdue=True), reply_deadline(overdue=True)]
    for incident_id, drill in (("real", False), ("drill", True), ("false-alarm", False)):
        activities.record(
            RecordRequest(
                incident=incident_row(incident_id, drill=drill, url=None),
                deadlines=missed,
                timeline=[entry(1)],
                accountability=[late_report()],
            )
        )
    withdrawn_at = RECEIVED + timedelta(hours=2)
    activities.record(
        RecordRequest(
            incident=incident_row("false-alarm", version=2, url=None, phase="closed"),
            deadlines=[d.model_copy(update={"voided": True}) for d in missed],
            timeline=[entry(2, "withdrawn")],
            accountability=[
                late_report().model_copy(
                    update={"voided_at": withdrawn_at, "void_reason": "误报撤销：经核实为误报"}
                )
            ],
        )
    )
    start, end = DISCOVERED - timedelta(days=1), DISCOVERED + timedelta(days=1)
    with session_scope(store_url) as s:
        units = {r["unit"]: r for r in reporting.accountability_report(s, start=start, end=end)}
        listed = digests.accountability_recorded_between(s, start=start, end=end)
        (kept,) = [
            a for a in incident_rows.accountability(s, incident_id="false-alarm") if a.voided_at
        ]
    assert units["yqb"]["records"] == {"迟报": 1} and units["yqb"]["voided"] == 1
    assert units["yqb"]["missed"] == 1 and units["cjb"]["missed"] == 1
    assert [a.incident_id for a, _title in listed] == ["real"]
    assert kept.void_reason == "误报撤销：经核实为误报"


# --- short numbers (issue 18, item 7) ---


def _record(url: str, incident_id: str, version: int = 1, **overrides: Any) -> None:
    RecordActivities(url).record(
        RecordRequest(
            incident=incident_row(incident_id, version, url=None, **overrides),
            deadlines=[],
            timeline=[],
            accountability=[],
        )
    )


def _numbers(url: str) -> dict[str, str | None]:
    with session_scope(url) as s:
        return {i: n for i, n in s.execute(select(Incident.id, Incident.short_number))}


def test_short_numbers_count_each_day_in_the_towns_zone(store_url: str) -> None:
    """The first record of an incident numbers it: the day it was received in Beijing time and
    that day's sequence. A retry or a later snapshot keeps the number."""
    late = datetime(2026, 11, 30, 15, 59, tzinfo=UTC)  # 23:59 in Beijing
    _record(store_url, "first", received_at=late)
    _record(store_url, "second", received_at=late)
    _record(store_url, "next-day", received_at=late + timedelta(minutes=1))  # 00:00 Dec 1
    _record(store_url, "first")  # a retry of the first write
    _record(store_url, "first", version=2, phase="handling")  # a later snapshot
    assert _numbers(store_url) == {
        "first": "2026-1130-001",
        "second": "2026-1130-002",
        "next-day": "2026-1201-001",
    }


def test_short_numbers_are_unique_under_concurrent_records(store_url: str) -> None:
    """Records of different incidents at once (several activity threads) never share a number;
    on PostgreSQL they really run in parallel."""
    from concurrent.futures import ThreadPoolExecutor

    ids = [f"c{n}" for n in range(12)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(lambda i: _record(store_url, i), ids))
    numbers = _numbers(store_url)
    day = RECEIVED.strftime("%Y-%m%d")
    assert sorted(n or "" for n in numbers.values()) == [
        f"{day}-{n:03d}" for n in range(1, len(ids) + 1)
    ]


def test_search_finds_title_content_short_number_and_escapes_wildcards(store_url: str) -> None:
    _record(store_url, "water", title="东湖村道路积水", content="主干道积水一周")
    _record(store_url, "fee", title="学校收费", content="家长称 100% 多收费用_附图")
    _record(store_url, "noise", title="夜间施工", content="西湖村工地噪音", reporter_unit="dhc")

    def found(text: str, **kw: Any) -> set[str]:
        with session_scope(store_url) as s:
            return {i.id for i in incident_rows.list_incidents(s, text=text, **kw)}

    numbers = _numbers(store_url)
    assert found("积水") == {"water"}  # title and content
    assert found("噪音") == {"noise"}  # content only
    assert found("湖村") == {"water", "noise"}
    assert found(numbers["fee"] or "") == {"fee"}
    assert found("%") == {"fee"} and found("_") == {"fee"}  # characters, not wildcards
    assert found("0%") == {"fee"} and found("1%0") == set()
    assert found("  ") == {"water", "fee", "noise"}  # blank: no filter
    assert found("积\x00水") == set()  # PostgreSQL would refuse a NUL: nothing has one
    # The secrecy filter stays: a unit finds only what it may see.
    assert found("湖村", involving=incident_rows.Involving(unit="dhc", person="x")) == {"noise"}


# --- one-time sign-in links (issue 18, item 8) ---


def test_sign_in_links_work_once_for_their_person(store_url: str) -> None:
    with session_scope(store_url) as s:
        link = credentials.create_link(s, person_id="wu.fang", incident_id="inc-1")
        other = credentials.create_link(s, person_id="liu.yang", incident_id="inc-2")
        short = credentials.create_link(s, person_id="wu.fang", incident_id="inc-1", hours=1)
        revoked = credentials.create_link(s, person_id="wu.fang", incident_id="inc-3")
    assert link.startswith("yql_") and len(link) > 40
    with session_scope(store_url) as s:
        stored = {r.link_hash for r in s.scalars(select(SignInLink))}
        assert hashlib.sha256(link.encode()).hexdigest() in stored and link not in stored
        row = s.scalar(select(SignInLink).where(SignInLink.incident_id == "inc-1"))
        assert row is not None and row.expires_at - row.created_at == timedelta(hours=24)
        found = credentials.find_link(s, token=link)  # looking does not use it
        assert found == credentials.LinkFound("wu.fang", "inc-1", "live")
        assert credentials.find_link(s, token="yql_nothing") is None
    with session_scope(store_url) as s:
        assert credentials.use_link(s, token=link) == credentials.LinkFound(
            "wu.fang", "inc-1", "live"
        )
    with session_scope(store_url) as s:
        assert credentials.use_link(s, token=link) is None  # once
        assert credentials.find_link(s, token=link) == credentials.LinkFound(
            "wu.fang", "inc-1", "used"
        )
        assert credentials.find_link(s, token=other) == credentials.LinkFound(
            "liu.yang", "inc-2", "live"
        )
        s.execute(
            update(SignInLink)
            .where(SignInLink.link_hash == hashlib.sha256(short.encode()).hexdigest())
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    with session_scope(store_url) as s:
        assert credentials.use_link(s, token=short) is None
        assert credentials.find_link(s, token=short) is not None
        assert credentials.find_link(s, token=short).state == "expired"  # type: ignore[union-attr]
        # Revoking a person's tokens revokes their links not yet used, and only theirs.
        assert credentials.revoke_tokens(s, person_id="wu.fang") == 0
    with session_scope(store_url) as s:
        assert credentials.use_link(s, token=revoked) is None
        assert credentials.find_link(s, token=revoked).state == "revoked"  # type: ignore[union-attr]
        assert credentials.find_link(s, token=link).state == "used"  # type: ignore[union-attr]
        assert credentials.revoke_links(s, person_id="liu.yang") == 1
        assert credentials.use_link(s, token=other) is None


def test_a_sign_in_link_used_at_once_from_many_places_signs_in_once(store_url: str) -> None:
    """Two taps, or a prefetch and a tap: of requests using one link at the same moment, exactly
    one gets it (on PostgreSQL really in parallel)."""
    from concurrent.futures import ThreadPoolExecutor

    with session_scope(store_url) as s:
        link = credentials.create_link(s, person_id="wu.fang", incident_id="inc-1")

    def use(_: int) -> bool:
        with session_scope(store_url) as s:
            return credentials.use_link(s, token=link) is not None

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(use, range(8)))
    assert results.count(True) == 1


# --- 待办: what incidents wait for, and from whom (issue 18) ---


def _wait(action: str, kind: str = "handle", **who: Any) -> Wait:
    due = (DISCOVERED + timedelta(hours=12)).astimezone(UTC)
    return Wait(
        action=action, kind=kind, deadline_key="R-REPLY#1", deadline_title="回复", due_at=due, **who
    )


# Each incident waits for someone one way; "secret" is another unit's incident, whose row names
# a person who may not see it (a roster change, or a stale row): never shown to them.
WAITS: dict[str, tuple[dict[str, Any], list[Wait]]] = {
    "drafting": ({"responsible_unit": "cjb"}, [_wait("draft-reply", unit="cjb")]),
    "approving": (
        {"responsible_unit": "cjb"},
        [_wait("approve-reply", "approve", unit="cjb", head=True)],
    ),
    "releasing": (
        {"responsible_unit": "sswb", "severity": "urgent"},
        [
            _wait("approve-release", "approve", role="leader"),
            _wait("approve-release", "approve", role="deputy"),
        ],
    ),
    "new": ({}, [_wait("triage", role="office")]),
    "escalated": (
        {"responsible_unit": "sswb"},
        [
            _wait("escalated", "escalated", person="wang.jianguo"),
            _wait("escalated", "escalated", person="huang.li"),
        ],
    ),
    "secret": ({"responsible_unit": "sswb"}, [_wait("escalated", "escalated", person="lin.feng")]),
    "closed": ({"responsible_unit": "cjb", "phase": "closed"}, [_wait("track", unit="cjb")]),
}


def _seed_waits(url: str) -> None:
    activities = RecordActivities(url)
    for incident_id, (overrides, waits) in WAITS.items():
        fields = {"phase": "handling", "url": None, **overrides}
        activities.record(
            RecordRequest(
                incident=incident_row(incident_id, **fields),
                deadlines=[],
                timeline=[],
                accountability=[],
                waits=waits,
            )
        )


def _whose(person: str) -> incident_rows.Whose:
    from plan.roster import load_roster
    from tests.conftest import EXAMPLE_ROSTER

    roster = load_roster(EXAMPLE_ROSTER)
    return incident_rows.whose(roster, person)


@pytest.mark.parametrize(
    ("person", "involving", "expected"),
    [
        # cjb's staff: the draft; its head: the approval too (and the unit's rows); lin.feng never
        # the "secret" row of an incident of another unit.
        ("lin.feng", ("cjb", "lin.feng"), {("drafting", "draft-reply")}),
        (
            "sun.haitao",
            None,  # a leading group member sees every incident
            {("drafting", "draft-reply"), ("approving", "approve-reply")},
        ),
        (
            "wang.jianguo",
            None,
            {("releasing", "approve-release"), ("escalated", "escalated")},
        ),
        ("li.xiaomei", None, {("releasing", "approve-release")}),
        ("liu.yang", None, {("new", "triage")}),
        ("huang.li", None, {("escalated", "escalated")}),
        ("wu.fang", ("sswb", "wu.fang"), set()),
    ],
)
def test_waits_for_a_person(
    store_url: str, person: str, involving: tuple[str, str] | None, expected: set[tuple[str, str]]
) -> None:
    """R-REVIEW, R-RELEASE, R-ESCALATE, R-SECRECY: a person's 待办 is the rows naming them, their
    unit (a head's rows only for its head) or their role, of open incidents they may see; the
    badge counts the same."""
    _seed_waits(store_url)
    who = incident_rows.Involving(*involving) if involving else None
    with session_scope(store_url) as s:
        found = incident_rows.waits_for(s, whose=_whose(person), involving=who)
        assert {(i.id, w.action) for w, i in found} == expected
        assert incident_rows.count_waits(s, whose=_whose(person), involving=who) == len(expected)
        capped = incident_rows.count_waits(s, whose=_whose(person), involving=who, cap=1)
        assert capped == min(1, len(expected))


def test_the_badge_counts_a_thing_once_however_many_rows_name_the_person(store_url: str) -> None:
    """The 待办 badge counts one per incident, action and deadline: liu.yang is named by the
    office's role, by his unit and in person for the same triage (and twice for a wait with no
    deadline), and each counts once, up to the cap."""
    activities = RecordActivities(store_url)
    no_deadline = {"deadline_key": None, "deadline_title": None, "due_at": None}
    for n in range(3):
        activities.record(
            RecordRequest(
                incident=incident_row(f"twice-{n}", phase="triage", url=None),
                deadlines=[],
                timeline=[],
                accountability=[],
                waits=[
                    _wait("triage", role="office"),
                    _wait("triage", unit="yqb"),
                    _wait("triage", person="liu.yang"),
                    Wait(action="review", kind="handle", role="office", **no_deadline),
                    Wait(action="review", kind="handle", person="liu.yang", **no_deadline),
                ],
            )
        )
    with session_scope(store_url) as s:
        whose = _whose("liu.yang")
        assert incident_rows.count_waits(s, whose=whose, involving=None) == 6
        assert incident_rows.count_waits(s, whose=whose, involving=None, cap=4) == 4
        assert incident_rows.count_waits(s, whose=whose, involving=None, cap=100) == 6
        assert (
            len(
                {
                    (i.id, w.action)
                    for w, i in incident_rows.waits_for(s, whose=whose, involving=None)
                }
            )
            == 6
        )


def test_waits_never_show_an_incident_one_may_not_see(store_url: str) -> None:
    """R-SECRECY: a row naming lin.feng on another unit's incident stays hidden from him."""
    _seed_waits(store_url)
    with session_scope(store_url) as s:
        mine = incident_rows.waits_for(
            s, whose=_whose("lin.feng"), involving=incident_rows.Involving("cjb", "lin.feng")
        )
        assert "secret" not in {i.id for _, i in mine}
        # Without the filter (a standing role would see it), the row is there.
        everything = incident_rows.waits_for(s, whose=_whose("lin.feng"), involving=None)
        assert "secret" in {i.id for _, i in everything}


def test_waits_are_replaced_by_newer_snapshots_only(store_url: str) -> None:
    """Each newer snapshot replaces the incident's rows; an older one (a late retry) and a write
    without waits (histories from before) leave them."""
    activities = RecordActivities(store_url)

    def write(version: int, waits: list[Wait] | None) -> None:
        activities.record(
            RecordRequest(
                incident=incident_row(version=version, responsible_unit="cjb"),
                deadlines=[],
                timeline=[],
                accountability=[],
                waits=waits,
            )
        )

    def rows() -> set[str]:
        with session_scope(store_url) as s:
            return set(s.scalars(select(WaitRow.action)).all())

    write(1, [_wait("draft-reply", unit="cjb")])
    assert rows() == {"draft-reply"}
    write(1, [_wait("draft-reply", unit="cjb")])  # a retry
    assert rows() == {"draft-reply"}
    write(2, [_wait("approve-reply", "approve", unit="cjb", head=True)])
    assert rows() == {"approve-reply"}
    write(1, [_wait("draft-reply", unit="cjb")])  # late
    assert rows() == {"approve-reply"}
    write(3, None)
    assert rows() == {"approve-reply"}
    write(4, [])
    assert rows() == set()


def test_a_wait_by_deadline_key_takes_the_deadlines_title_and_due_time(store_url: str) -> None:
    """Issue 21: the workflow names a wait's deadline by key only; the row shows the deadline's
    title and due time as written in the same transaction, and the new ones when the deadline
    moves. A wait that carries them (a write from before) keeps its own; one without a deadline
    has none."""
    activities = RecordActivities(store_url)
    by_key = Wait(action="draft-reply", kind="handle", unit="cjb", deadline_key="R-REPLY#1")
    no_deadline = Wait(action="triage", kind="handle", role="office")

    def write(version: int, deadlines: list[Deadline], waits: list[Wait]) -> None:
        activities.record(
            RecordRequest(
                incident=incident_row(version=version, responsible_unit="cjb"),
                deadlines=deadlines,
                timeline=[],
                accountability=[],
                waits=waits,
            )
        )

    def rows() -> dict[str, tuple[str | None, datetime | None]]:
        with session_scope(store_url) as s:
            found = s.scalars(select(WaitRow)).all()
            return {w.action: (w.deadline_title, w.due_at) for w in found}

    first = reply_deadline()
    write(1, [first], [by_key, no_deadline])
    assert rows() == {
        "draft-reply": (first.title, first.due_at),
        "triage": (None, None),
    }
    moved = reply_deadline(due_at=first.due_at + timedelta(hours=3), title="延期后的回复期限")
    write(2, [moved], [by_key])
    assert rows() == {"draft-reply": (moved.title, moved.due_at)}
    write(3, [], [_wait("draft-reply", unit="cjb")])
    assert rows() == {"draft-reply": ("回复", (DISCOVERED + timedelta(hours=12)).astimezone(UTC))}


def test_the_waits_query_uses_indexes(store_url: str) -> None:
    """10,000 open incidents must not slow a page: the person's rows are found by index (the
    query plan on SQLite names the waits indexes, never a scan of the table)."""
    if not store_url.startswith("sqlite"):
        pytest.skip("EXPLAIN QUERY PLAN is SQLite's")
    from sqlalchemy import text

    _seed_waits(store_url)
    with session_scope(store_url) as s:
        q = incident_rows.waits_query(whose=_whose("sun.haitao"), involving=None)
        compiled = q.compile(s.get_bind(), compile_kwargs={"literal_binds": True})
        plan = " ".join(str(r[-1]) for r in s.execute(text(f"EXPLAIN QUERY PLAN {compiled}")))
        assert "ix_waits_" in plan and "SCAN waits" not in plan, plan
