"""The read model's tables. Written by activities (and by the web app for tokens); every row an
activity writes has a natural unique key, so a retried activity updates instead of duplicating."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC and always gives back an aware datetime (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Incident(Base):
    __tablename__ = "incidents"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(200))
    content: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(200))
    url: Mapped[str | None] = mapped_column(String(2000))
    reporter_unit: Mapped[str] = mapped_column(String(200))
    reporter_name: Mapped[str | None] = mapped_column(String(200))
    responsible_unit: Mapped[str | None] = mapped_column(String(200), index=True)
    co_units: Mapped[str] = mapped_column(String(1000), default="", server_default="")
    # R-ACTIVATE: the units and persons the leading group brought in, comma-joined like co_units;
    # with the units above, what the lists' R-SECRECY filter reads (store/incident_rows.py).
    activated_units: Mapped[str] = mapped_column(Text, default="", server_default="")
    activated_persons: Mapped[str] = mapped_column(Text, default="", server_default="")
    severity: Mapped[str] = mapped_column(String(20))
    category: Mapped[str | None] = mapped_column(String(20))
    phase: Mapped[str] = mapped_column(String(20), index=True)
    drill: Mapped[bool] = mapped_column(Boolean)
    # R-DRILL: a drill's speedup, so its lateness is told in plan time (None: real time).
    drill_speedup: Mapped[float | None] = mapped_column(Float)
    discovered_at: Mapped[datetime] = mapped_column(UTCDateTime)
    posted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    next_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    overdue: Mapped[bool] = mapped_column(Boolean, index=True)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    plan_version: Mapped[str] = mapped_column(String(50))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # A number a clerk can read out on the phone, e.g. 2026-1130-007: the day the report was
    # received in the town's zone and that day's sequence (incident_numbers), given by the store
    # when it first records the incident (store/incident_rows.py `record`). Unique; NULL only
    # for a row migration 0011 could not number.
    short_number: Mapped[str | None] = mapped_column(String(20))

    # R-DEDUP's "same post still open?" check on every submission: a hash index on PostgreSQL
    # (a URL can outgrow a btree entry), a plain one on SQLite.
    __table_args__ = (
        Index("ix_incidents_url", "url", postgresql_using="hash"),
        UniqueConstraint("short_number", name="uq_incidents_short_number"),
    )


class TimelineEvent(Base):
    __tablename__ = "timeline_events"
    __table_args__ = (UniqueConstraint("incident_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(String(50))
    actor: Mapped[str | None] = mapped_column(String(200))
    summary: Mapped[str] = mapped_column(Text)
    detail: Mapped[str | None] = mapped_column(Text)  # a published reply's wording (issue 19)


class DeadlineRow(Base):
    __tablename__ = "deadlines"
    __table_args__ = (UniqueConstraint("incident_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(50))
    rule: Mapped[str] = mapped_column(String(30))
    title: Mapped[str] = mapped_column(String(200))
    unit: Mapped[str | None] = mapped_column(String(200))
    anchor_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    anchor_label: Mapped[str | None] = mapped_column(String(50))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    met_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    overdue: Mapped[bool] = mapped_column(Boolean)
    cancelled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # R-ACCOUNT: a withdrawn false alarm's deadlines count in no figure.
    voided: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    escalation_step: Mapped[int] = mapped_column(Integer)


class EscalationRow(Base):
    __tablename__ = "escalations"
    __table_args__ = (UniqueConstraint("incident_id", "deadline_key", "step", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    deadline_key: Mapped[str] = mapped_column(String(50))
    rule: Mapped[str] = mapped_column(String(30))
    step: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    targets: Mapped[str] = mapped_column(Text)  # comma-separated person ids
    summary: Mapped[str] = mapped_column(String(200))
    drill: Mapped[bool] = mapped_column(Boolean)


class WaitRow(Base):
    """What an open incident waits for, and from whom (plan/todo.py `waits`): the 待办 page and
    the navigation's badge. The `record` activity replaces an incident's rows with each newer
    snapshot. Exactly one of unit (head: its head only), role and person names who; each has an
    index, so a person's rows are one indexed query whatever the number of open incidents."""

    __tablename__ = "waits"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), index=True
    )
    action: Mapped[str] = mapped_column(String(50))
    kind: Mapped[str] = mapped_column(String(20))
    unit: Mapped[str | None] = mapped_column(String(200), index=True)
    head: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    role: Mapped[str | None] = mapped_column(String(30), index=True)
    person: Mapped[str | None] = mapped_column(String(200), index=True)
    deadline_key: Mapped[str | None] = mapped_column(String(50))
    deadline_title: Mapped[str | None] = mapped_column(String(200))
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    step: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class AccountabilityRow(Base):
    __tablename__ = "accountability"
    __table_args__ = (UniqueConstraint("incident_id", "deadline_key", "recorded_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    deadline_key: Mapped[str] = mapped_column(String(50))
    rule: Mapped[str] = mapped_column(String(30))
    kind: Mapped[str] = mapped_column(String(20))
    unit: Mapped[str] = mapped_column(String(200), index=True)
    person: Mapped[str | None] = mapped_column(String(200))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    met_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reason: Mapped[str | None] = mapped_column(Text)
    # R-ACCOUNT: void since a withdrawal as a false alarm (kept and shown, counted nowhere).
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    void_reason: Mapped[str | None] = mapped_column(Text)
    by: Mapped[str | None] = mapped_column(String(200))  # who recorded it by hand
    drill: Mapped[bool] = mapped_column(Boolean)


class ReferralRow(Base):
    """R-HYPE / R-FABRICATION: a referral to the discipline or supervision contact."""

    __tablename__ = "referrals"
    __table_args__ = (UniqueConstraint("incident_id", "no"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    no: Mapped[int] = mapped_column(Integer)
    rule: Mapped[str] = mapped_column(String(30))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    target: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    by: Mapped[str | None] = mapped_column(String(200))


class CommendationRow(Base):
    """R-COMMEND: a commendation for a unit or a person."""

    __tablename__ = "commendations"
    __table_args__ = (UniqueConstraint("incident_id", "at", "unit"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    unit: Mapped[str] = mapped_column(String(200), index=True)
    person: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    by: Mapped[str] = mapped_column(String(200))
    drill: Mapped[bool] = mapped_column(Boolean)


class InboxMessage(Base):
    """The in-app inbox: one row per notification and recipient."""

    __tablename__ = "notifications"
    __table_args__ = (
        UniqueConstraint("key", "recipient"),
        Index("ix_notifications_recipient_created", "recipient", "created_at"),
        # The 收件箱 badge's unread count, on every signed-in page: an index-only scan (0017).
        Index("ix_notifications_recipient_read", "recipient", "read_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(300))
    incident_id: Mapped[str] = mapped_column(String(64), index=True)
    rule: Mapped[str] = mapped_column(String(30))
    recipient: Mapped[str] = mapped_column(String(200))
    subject: Mapped[str] = mapped_column(String(500))
    body: Mapped[str] = mapped_column(Text)
    link: Mapped[str] = mapped_column(String(2000))
    drill: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Delivery(Base):
    """The outbox: one row per external delivery (notification, recipient, channel), with its
    state (pending, sent, failed, given_up), attempts and last error. The row is what stops a
    retried activity from sending twice."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("key", name="uq_deliveries_key"),
        UniqueConstraint("key", "recipient", "channel"),  # from 0001, kept: implied by key
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(700))
    incident_id: Mapped[str | None] = mapped_column(String(64), index=True)
    rule: Mapped[str | None] = mapped_column(String(30))
    recipient: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str | None] = mapped_column(String(20))
    channel: Mapped[str] = mapped_column(String(300))  # the target, never its secret
    state: Mapped[str] = mapped_column(String(20), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ApiToken(Base):
    """A staff member's bearer token; only its SHA-256 is kept."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    person_id: Mapped[str] = mapped_column(String(200), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Refused on the API and at sign-in from then on (YUQING_TOKEN_DAYS, `--expires-days`).
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class WebSession(Base):
    """A signed-in browser session for the HTML pages; only the SHA-256 of its id is kept."""

    __tablename__ = "sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_hash: Mapped[str] = mapped_column(String(64), unique=True)
    person_id: Mapped[str] = mapped_column(String(200), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class IncidentNumber(Base):
    """The last short number given on one day (YYYYMMDD, the town's zone): a counter row,
    incremented in the transaction that first records an incident."""

    __tablename__ = "incident_numbers"

    day: Mapped[str] = mapped_column(String(8), primary_key=True)
    last: Mapped[int] = mapped_column(Integer)


class SignInLink(Base):
    """A one-time sign-in link, minted by the `deliver` activity for a person's own channel:
    it signs in only `person_id` and leads only to `incident_id`'s page. Only its SHA-256 is
    kept; refused once used, revoked or expired (store/credentials.py)."""

    __tablename__ = "sign_in_links"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    link_hash: Mapped[str] = mapped_column(String(64), unique=True)
    person_id: Mapped[str] = mapped_column(String(200), index=True)
    incident_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AttachmentRow(Base):
    """A file added to an incident (issue 19): its metadata only. The file itself lies on disk
    under its sha256 (starter/attachments.py), once however many incidents carry it;
    `display_name` is the uploader's file name, sanitised, shown and never used as a path."""

    __tablename__ = "attachments"
    __table_args__ = (UniqueConstraint("incident_id", "sha256", name="uq_attachments_content"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    incident_id: Mapped[str] = mapped_column(String(64), index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(Integer)
    media_type: Mapped[str] = mapped_column(String(100))
    display_name: Mapped[str] = mapped_column(String(200))
    added_by: Mapped[str] = mapped_column(String(200))
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ArchiveRow(Base):
    """归档 (issue 19, item 4): one version of a closed incident's case file (处置台账, .docx),
    generated from the store's rows when its closure is recorded, again with each later write
    (amendments, the end of the amendment period) and after a retention redaction. The store keeps
    it whatever Temporal's history retention. `content` holds the bytes, in the same transaction
    as the row; a redaction deletes the bytes of the versions before it (`purged_at`), keeping the
    row and its hash as the record that the version existed. One row per (incident, snapshot
    version, reason): a retried activity finds it there."""

    __tablename__ = "archives"
    __table_args__ = (
        UniqueConstraint("incident_id", "snapshot_version", "reason", name="uq_archives_version"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(String(64), index=True)
    # The incident row's version the file was generated from (incidents.version).
    snapshot_version: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(30))  # closed, amended, amendments_closed, ...
    archived_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    content: Mapped[bytes | None] = mapped_column(LargeBinary)
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RedactionRow(Base):
    """The retention redaction of one closed incident's personal data of the public (issue 19,
    item 4): when, which fields, under which setting (days after close) and by what (the daily
    schedule, or a person's CLI run). One per incident: a second run finds it and does nothing."""

    __tablename__ = "redactions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(String(64), unique=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    fields: Mapped[str] = mapped_column(Text)  # comma-joined, e.g. content,url,reporter_name
    retention_days: Mapped[int] = mapped_column(Integer)
    by: Mapped[str] = mapped_column(String(200))


class AccessLogRow(Base):
    """Who read what, when and from where: incident pages and API reads, lists, exports, report
    pages and codec decodes (starter/web/access.py). Append-only: the store refuses UPDATE and
    DELETE on this table (triggers, migration 0007), and no route changes it."""

    __tablename__ = "access_log"
    __table_args__ = (Index("ix_access_log_person_at", "person_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    person_id: Mapped[str | None] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(20), index=True)
    resource: Mapped[str] = mapped_column(String(500))
    incident_id: Mapped[str | None] = mapped_column(String(64), index=True)
    client: Mapped[str | None] = mapped_column(String(100))
    granted: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())


class AbsenceRow(Base):
    """代理 (issue 20, item 3): a person away from `starts_at` to `ends_at`, and who acts for them.
    Declared by the person or by the office for them; ended early (销假) by moving `ends_at`
    (`ended_by` says who). `revision` is the store's count of absence changes when this row last
    changed: a running incident keeps the newest list it was told, whatever order lists arrive in.
    The reason stays here: it may be personal (illness, family) and never enters workflow data."""

    __tablename__ = "absences"
    __table_args__ = (UniqueConstraint("revision", name="uq_absences_revision"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    person_id: Mapped[str] = mapped_column(String(64), index=True)
    stand_in: Mapped[str] = mapped_column(String(64))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    reason: Mapped[str | None] = mapped_column(String(100))
    declared_by: Mapped[str] = mapped_column(String(64))
    declared_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_by: Mapped[str | None] = mapped_column(String(64))
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revision: Mapped[int] = mapped_column(Integer)


class ReachCheckRow(Base):
    """通联测试 (issue 20, item 5; plan/reach_test.py): one row per run, person and channel (or one
    `inbox_only` row for a person with no channel outside the inbox). `state` is the channel's
    delivery state, copied from the outbox when the run's deliveries are done; `confirmed_at`, when
    the person confirmed from their inbox. Never read by the accountability figures."""

    __tablename__ = "reach_checks"
    __table_args__ = (
        UniqueConstraint("run_id", "person_id", "channel", name="uq_reach_checks_channel"),
        Index("ix_reach_checks_person_started", "person_id", "started_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(200), index=True)  # the run's workflow id
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    person_id: Mapped[str] = mapped_column(String(200))
    channel_kind: Mapped[str] = mapped_column(String(20))
    channel: Mapped[str] = mapped_column(String(300))  # the target ("email:email"), never a secret
    delivery_key: Mapped[str | None] = mapped_column(String(700))
    state: Mapped[str] = mapped_column(String(20))
    error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
