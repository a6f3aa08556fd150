"""The data contracts between the workflows and the activities: one pydantic model per activity
input, and the read-model row. Light on imports (plan/ only) so the workflow can use them, and
store/ reads them without importing activities/."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from plan.models import (
    AccountabilityRecord,
    Commendation,
    Deadline,
    DeliverRequest,
    Escalation,
    Notification,
    Recipient,
    Referral,
    TimelineEntry,
)

__all__ = [
    "DeliverRequest",
    "DeliveryFailure",
    "EscalateRequest",
    "IncidentRow",
    "Notification",
    "Recipient",
    "RecordRequest",
]


class IncidentRow(BaseModel):
    """The incident's row in the read model; `version` orders snapshots so a late retry never
    overwrites a newer one."""

    id: str
    version: int
    title: str
    content: str
    source: str
    url: str | None
    reporter_unit: str
    reporter_name: str | None
    responsible_unit: str | None
    co_units: str = ""
    # R-ACTIVATE: the units and persons the leading group brought in, comma-joined like co_units
    # (the lists' R-SECRECY filter reads them). Defaults: rows in histories from before have none.
    activated_units: str = ""
    activated_persons: str = ""
    severity: str
    category: str | None
    phase: str
    drill: bool
    discovered_at: datetime
    posted_at: datetime | None
    received_at: datetime
    next_due_at: datetime | None
    overdue: bool
    closed_at: datetime | None
    plan_version: str


class RecordRequest(BaseModel):
    """Write what happened, in one transaction: the incident snapshot, its deadlines, new
    timeline entries and the accountability records, and (since one write per step) the
    escalation steps and the notifications' inbox and outbox rows. Every write is an idempotent
    upsert on a natural key. Deadlines, accountability, referrals and commendations are those
    changed since the run's last write (all of them in a run's first)."""

    incident: IncidentRow
    deadlines: list[Deadline]
    timeline: list[TimelineEntry]
    accountability: list[AccountabilityRecord]
    referrals: list[Referral] = []
    commendations: list[Commendation] = []
    escalations: list[Escalation] = []
    notifications: list[Notification] = []


class EscalateRequest(BaseModel):
    """R-ESCALATE: record one step of the chain (the notification goes separately)."""

    incident_id: str
    escalation: Escalation
    drill: bool


class DeliveryFailure(BaseModel):
    """A delivery that was refused or gave up: recorded, and the office is told."""

    request: DeliverRequest
    reason: str
    given_up: bool  # True: retried until the give-up period ran out; False: refused
    office: list[str]  # the office's people, who are told in their inbox
