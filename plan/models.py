"""The plan's messages: one pydantic model per submission, staff action and view.

Pure data, safe inside the workflow sandbox. Fields are only ever added (with defaults), so running
incidents keep decoding their histories.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from plan.roster import Roster

TITLE_MAX = 200
CONTENT_MAX = 20_000
TEXT_MAX = 10_000
SHORT_MAX = 200


class Severity(StrEnum):
    general = "general"
    major = "major"
    urgent = "urgent"

    @property
    def label(self) -> str:
        return {"general": "一般", "major": "重大", "urgent": "紧急"}[self.value]


class Category(StrEnum):
    inquiry = "inquiry"
    hype = "hype"
    fabrication = "fabrication"
    suggestion = "suggestion"

    @property
    def label(self) -> str:
        return {
            "inquiry": "询问、置疑、诉求",
            "hype": "恶意传播或炒作",
            "fabrication": "捏造、歪曲或夸大事实",
            "suggestion": "建议类",
        }[self.value]


class Phase(StrEnum):
    """Where the incident stands. Later rules add tracking and summary between handling and closed."""

    triage = "triage"
    handling = "handling"
    closed = "closed"

    @property
    def label(self) -> str:
        return {"triage": "待研判", "handling": "处置中", "closed": "已结案"}[self.value]


class ReplyStatus(StrEnum):
    drafted = "drafted"
    rejected = "rejected"
    approved = "approved"
    published = "published"

    @property
    def label(self) -> str:
        return {
            "drafted": "已起草，待审定",
            "rejected": "审定退回",
            "approved": "已审定，待发布",
            "published": "已发布",
        }[self.value]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Submission(_Message):
    """What a person (or a monitoring system) reports: a negative post and when it was found."""

    title: str = Field(min_length=1, max_length=TITLE_MAX)
    content: str = Field(min_length=1, max_length=CONTENT_MAX)
    source: str = Field(min_length=1, max_length=SHORT_MAX)
    discovered_at: AwareDatetime
    reporter_unit: str = Field(min_length=1, max_length=SHORT_MAX)
    url: str | None = Field(default=None, max_length=2_000)
    posted_at: AwareDatetime | None = None
    reporter_name: str | None = Field(default=None, max_length=SHORT_MAX)
    severity: Severity | None = None
    category: Category | None = None
    responsible_unit: str | None = Field(default=None, max_length=SHORT_MAX)
    oral: bool = False
    drill_speedup: float | None = Field(default=None, ge=1, le=1_000_000)
    submission_key: str | None = Field(default=None, min_length=1, max_length=SHORT_MAX)

    @field_validator("url", "reporter_name", "responsible_unit", "submission_key", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        return value

    @model_validator(mode="after")
    def _posted_before_discovered(self) -> Submission:
        if self.posted_at is not None and self.posted_at > self.discovered_at:
            raise ValueError("posted_at must not be later than discovered_at")
        return self

    @property
    def is_drill(self) -> bool:
        return self.drill_speedup is not None


class IncidentInput(BaseModel):
    """The workflow's input: the submission plus everything fixed when it was accepted."""

    incident_id: str
    submission: Submission
    received_at: datetime
    roster: Roster
    plan_version: str
    timezone: str = "Asia/Shanghai"
    escalation_waits_minutes: list[float] = Field(default_factory=lambda: [60.0, 60.0])
    public_url: str = "http://localhost:8000"
    search_attributes: bool = True


# --- Staff actions: each carries the acting person, set by the edge after authentication. ---


class Action(_Message):
    actor: str = Field(min_length=1, max_length=SHORT_MAX)


class Triage(Action):
    """The office assesses the incident (R-REPORT triage): severity, category, responsible unit."""

    severity: Severity
    category: Category
    responsible_unit: str = Field(min_length=1, max_length=SHORT_MAX)
    note: str | None = Field(default=None, max_length=TEXT_MAX)


class DraftReply(Action):
    """The responsible unit drafts the official reply (R-REVIEW)."""

    text: str = Field(min_length=1, max_length=TEXT_MAX)


class ApproveReply(Action):
    """The unit head approves (or returns) the draft (R-REVIEW)."""

    approve: bool = True
    comment: str | None = Field(default=None, max_length=TEXT_MAX)


class PublishReply(Action):
    """The approved reply is published; meets R-REPLY."""

    channel: str = Field(min_length=1, max_length=SHORT_MAX)
    url: str | None = Field(default=None, max_length=2_000)


ACTIONS: dict[str, type[Action]] = {
    "triage": Triage,
    "draft-reply": DraftReply,
    "approve-reply": ApproveReply,
    "publish-reply": PublishReply,
}


# --- What the workflow shows: its state, also written to the store by activities. ---


class Deadline(BaseModel):
    key: str  # stable within the incident, e.g. "R-REPLY#1"
    rule: str
    title: str
    due_at: datetime
    met_at: datetime | None = None
    overdue: bool = False
    unit: str | None = None
    escalation_step: int = 0
    version: int = 0

    @property
    def open(self) -> bool:
        return self.met_at is None


class Escalation(BaseModel):
    deadline_key: str
    rule: str
    step: int
    at: datetime
    targets: list[str]
    summary: str


class AccountabilityRecord(BaseModel):
    deadline_key: str
    rule: str
    kind: str  # 迟报 / 逾期 / ...
    unit: str
    person: str | None
    due_at: datetime
    recorded_at: datetime
    met_at: datetime | None = None


class TimelineEntry(BaseModel):
    seq: int
    at: datetime
    kind: str
    actor: str | None
    summary: str


class ReplyRound(BaseModel):
    round: int
    status: ReplyStatus
    text: str
    drafted_by: str
    drafted_at: datetime
    approved_by: str | None = None
    approved_at: datetime | None = None
    comment: str | None = None
    published_by: str | None = None
    published_at: datetime | None = None
    channel: str | None = None
    url: str | None = None


class IncidentView(BaseModel):
    id: str
    title: str
    content: str
    source: str
    url: str | None
    reporter_unit: str
    reporter_name: str | None
    discovered_at: datetime
    posted_at: datetime | None
    received_at: datetime
    phase: Phase
    severity: Severity
    severity_assessed: bool
    category: Category | None
    responsible_unit: str | None
    drill: bool
    drill_speedup: float | None
    plan_version: str
    deadlines: list[Deadline]
    escalations: list[Escalation]
    accountability: list[AccountabilityRecord]
    replies: list[ReplyRound]
    timeline: list[TimelineEntry]
    closed_at: datetime | None = None
    version: int = 0

    @property
    def overdue(self) -> bool:
        return any(d.overdue for d in self.deadlines)

    def next_deadline(self) -> Deadline | None:
        open_ = [d for d in self.deadlines if d.open]
        return min(open_, key=lambda d: d.due_at) if open_ else None
