"""The data contracts between the workflows and the activities: one pydantic model per activity
input, and the read-model row. Light on imports (plan/ only) so the workflow can use them, and
store/ reads them without importing activities/."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, model_validator

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
    "IncidentFacts",
    "IncidentRow",
    "Notification",
    "Recipient",
    "RecordRequest",
    "RetentionInput",
    "RetentionOutcome",
    "RetentionRequest",
    "Wait",
]


class IncidentFacts(BaseModel):
    """What the submission said: the same in every snapshot of the incident."""

    title: str
    content: str
    source: str
    url: str | None
    reporter_unit: str
    reporter_name: str | None
    # R-DRILL: how many times faster a drill runs (lateness is told in plan time: real × this).
    drill_speedup: float | None = None
    discovered_at: datetime
    posted_at: datetime | None
    received_at: datetime
    plan_version: str


FACT_NAMES = tuple(IncidentFacts.model_fields)


class IncidentRow(BaseModel):
    """The incident's row in the read model; `version` orders snapshots so a late retry never
    overwrites a newer one. `facts` comes with a run's first write only (issue 21: the post's
    text and the rest, again in every write, were a sixth of a completed incident's payload
    bytes); later writes leave them as stored."""

    id: str
    version: int
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
    next_due_at: datetime | None
    overdue: bool
    closed_at: datetime | None
    facts: IncidentFacts | None = None

    @model_validator(mode="before")
    @classmethod
    def _flat(cls, data: Any) -> Any:
        """Rows written before issue 21 (and tests) give the facts beside the rest."""
        if isinstance(data, dict) and "facts" not in data and "title" in data:
            data = dict(data)
            data["facts"] = {k: data.pop(k) for k in FACT_NAMES if k in data}
        return data

    def columns(self) -> dict[str, Any]:
        """The row's columns: the facts' too when the write carries them."""
        values = self.model_dump(exclude={"facts"})
        if self.facts is not None:
            values.update(self.facts.model_dump())
        return values


class Wait(BaseModel):
    """One thing an open incident waits for, and who may do it (plan/todo.py `waits`, from the
    action table): the 待办 page and the navigation's badge read these rows, never the workflow.

    Exactly one of `unit`, `role`, `person` names who: a unit's staff (`head`: its head only), a
    standing role (plan.roster.Role), or one person (an escalation step's target, a person the
    leading group named)."""

    action: str  # an ACTIONS name, or "escalated" (R-ESCALATE: an overdue deadline reached me)
    kind: str  # approve / handle / escalated
    unit: str | None = None
    head: bool = False
    role: str | None = None
    person: str | None = None
    deadline_key: str | None = None
    deadline_title: str | None = None
    due_at: datetime | None = None
    step: int = 0


class RecordRequest(BaseModel):
    """Write what happened, in one transaction: the incident snapshot, its deadlines, new
    timeline entries and the accountability records, and (since one write per step) the
    escalation steps and the notifications' inbox and outbox rows. Every write is an idempotent
    upsert on a natural key. Deadlines, accountability, referrals and commendations are those
    changed since the run's last write (all of them in a run's first)."""

    COMPACT_PAYLOAD: ClassVar[bool] = True  # runtime/payloads.py

    incident: IncidentRow
    deadlines: list[Deadline]
    timeline: list[TimelineEntry]
    accountability: list[AccountabilityRecord]
    referrals: list[Referral] = []
    commendations: list[Commendation] = []
    escalations: list[Escalation] = []
    notifications: list[Notification] = []
    # What the incident waits for now, all of it (replacing what was written before); None: leave
    # the rows as they are (histories from before the 待办 rows, a write with no new snapshot).
    waits: list[Wait] | None = None


class EscalateRequest(BaseModel):
    """R-ESCALATE: record one step of the chain (the notification goes separately)."""

    COMPACT_PAYLOAD: ClassVar[bool] = True  # runtime/payloads.py

    incident_id: str
    escalation: Escalation
    drill: bool


class DeliveryFailure(BaseModel):
    """A delivery that was refused or gave up: recorded, and the office is told."""

    request: DeliverRequest
    reason: str
    given_up: bool  # True: retried until the give-up period ran out; False: refused
    office: list[str]  # the office's people, who are told in their inbox


class RetentionInput(BaseModel):
    """RetentionWorkflow's input: who runs it (the schedule, unless started by hand)."""

    by: str = "每日定时任务"


class RetentionRequest(BaseModel):
    """归档 (issue 19, item 4): one run of the retention job (RetentionWorkflow's daily run, or
    `yuqing retention`): its instant, and who or what runs it (recorded with each redaction)."""

    at: datetime
    by: str = "每日定时任务"


class RetentionOutcome(BaseModel):
    """What a retention run did: incidents redacted, archived (catching up), failed."""

    redacted: list[str] = []
    archived: list[str] = []
    failed: list[str] = []
