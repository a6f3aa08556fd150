"""The plan's messages: one pydantic model per submission, staff action and view.

Pure data, safe inside the workflow sandbox. Fields are only ever added (with defaults), so running
incidents keep decoding their histories.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    computed_field,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic.json_schema import JsonDict
from pydantic_core import PydanticCustomError

from plan.enums import (
    Category,
    ManualAccountKind,
    Phase,
    ReplyKind,
    ReplyStatus,
    Severity,
    TrackStatus,
)
from plan.roster import AnyChannel, Roster
from plan.spec import PlanSpec, shipped

__all__ = [
    "Category",
    "ManualAccountKind",
    "Phase",
    "ReplyKind",
    "ReplyStatus",
    "Severity",
    "TrackStatus",
]

TITLE_MAX = 200
CONTENT_MAX = 20_000
TEXT_MAX = 10_000
SHORT_MAX = 200


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
    # R-WRITTEN: when the oral (phone) report was made; defaults to when the submission arrived.
    oral_reported_at: AwareDatetime | None = None
    # R-OFFICE: a monitoring lead, not yet a report until the office confirms it.
    lead: bool = False

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

    @property
    def assigned_by_superior(self) -> bool:
        """R-ASSIGNED: 市委、市政府交办 — same procedure, marked on the incident."""
        return self.source.strip() in ASSIGNED_SOURCES


ASSIGNED_SOURCES = ("上级交办", "市委交办", "市政府交办", "市委、市政府交办")


# --- Staff actions: a request (what the person sends) and its command (plus who sent it, set by
# the edge after authentication). Each is one Temporal update of IncidentWorkflow. ---


class Action(_Message):
    actor: str = Field(min_length=1, max_length=SHORT_MAX)


class ConfirmLeadRequest(_Message):
    """R-OFFICE: the office confirms a monitoring lead as a reported incident."""

    note: str | None = Field(default=None, max_length=TEXT_MAX)


class TriageRequest(_Message):
    """The office assesses the incident: severity, category, lead unit and co-handling units."""

    severity: Severity
    category: Category
    responsible_unit: str = Field(min_length=1, max_length=SHORT_MAX)
    co_units: list[str] = Field(default_factory=list, max_length=20)
    note: str | None = Field(default=None, max_length=TEXT_MAX)


ATTACHMENT_ID = r"^[0-9a-f]{32}$"


# Issue 19, item 5: a written report or summary may be a document attached to the incident (its
# id), instead of or beside its text; the JSON schema says "one or the other" as the check does.
# Each branch is the whole object (every property with its constraints, the one it requires not
# null): a generator that picks a branch and reads only its properties still makes valid bodies.
def _text_or_document(schema: JsonDict) -> None:
    properties = schema["properties"]
    assert isinstance(properties, dict)

    def given(name: str) -> JsonDict:
        field = properties[name]
        assert isinstance(field, dict) and isinstance(field["anyOf"], list)
        value = next(v for v in field["anyOf"] if isinstance(v, dict) and v.get("type") != "null")
        return {
            "type": "object",
            "additionalProperties": False,
            "required": [name],
            "properties": {**properties, name: value},
        }

    schema["anyOf"] = [given("text"), given("attachment_id")]


DOCUMENT_ID_HELP = "作为书面材料的附件编号（先上传到本事件的PDF或DOCX文档）"


class _TextOrDocument(_Message):
    model_config = ConfigDict(json_schema_extra=_text_or_document)

    attachment_id: str | None = Field(
        default=None, pattern=ATTACHMENT_ID, description=DOCUMENT_ID_HELP
    )

    @model_validator(mode="after")
    def _text_or_document(self) -> _TextOrDocument:
        if getattr(self, "text", None) is None and self.attachment_id is None:
            raise PydanticCustomError(
                "text_or_document",
                "请填写文字内容，或上传PDF、DOCX文档（可先下载草稿修改后上传）",
                {"field": "text"},
            )
        return self


class WrittenReportRequest(_TextOrDocument):
    """R-WRITTEN: the written report that follows an oral (phone) report: text, or a document."""

    text: str | None = Field(default=None, min_length=1, max_length=TEXT_MAX)


class ProgressRequest(_Message):
    """R-PROGRESS: a progress report (续报) on handling and new developments."""

    text: str = Field(min_length=1, max_length=TEXT_MAX)


class ActivateRequest(_Message):
    """R-ACTIVATE: the leading group activates the plan and decides the units and persons that
    step in (决定各相关单位、人员介入)."""

    units: list[str] = Field(default_factory=list, max_length=30)
    persons: list[str] = Field(default_factory=list, max_length=50)
    note: str | None = Field(default=None, max_length=TEXT_MAX)

    @model_validator(mode="after")
    def _someone(self) -> ActivateRequest:
        if not self.units and not self.persons:
            raise ValueError("须指定介入的单位或人员")
        return self


class ConsultRequest(_Message):
    """R-CONSULT: a consultation (会商) and its decision."""

    topic: str = Field(min_length=1, max_length=SHORT_MAX)
    decision: str = Field(min_length=1, max_length=TEXT_MAX)
    participants: list[str] = Field(default_factory=list, max_length=50)


class ReturnRequest(_Message):
    """The lead unit returns a misassigned incident to the office (退回)."""

    reason: str = Field(min_length=1, max_length=TEXT_MAX)


class DeclareDelayRequest(_Message):
    """R-STANCE: the matter cannot be finished within the reply period."""

    reason: str = Field(min_length=1, max_length=TEXT_MAX)


class DraftReplyRequest(_Message):
    """R-REVIEW: the lead unit drafts a reply (official, stance or result)."""

    text: str = Field(min_length=1, max_length=TEXT_MAX)
    kind: ReplyKind = ReplyKind.official


class ApproveReplyRequest(_Message):
    """R-REVIEW: the lead unit's head approves the draft, or returns it with a reason."""

    approve: bool = True
    comment: str | None = Field(default=None, max_length=TEXT_MAX)


class CountersignRequest(_Message):
    """R-REVIEW 经各部门负责人审定: a co-handling unit's head countersigns (会签) the reply the
    lead unit's head approved, or refuses it with a reason (the draft goes back to the lead unit)."""

    approve: bool = True
    comment: str | None = Field(default=None, max_length=TEXT_MAX)


class ApproveReleaseRequest(_Message):
    """R-RELEASE: the leading group approves the wording (口径) and names the spokesperson."""

    approve: bool = True
    spokesperson: str | None = Field(default=None, max_length=SHORT_MAX)
    comment: str | None = Field(default=None, max_length=TEXT_MAX)


class PublishReplyRequest(_Message):
    """The approved reply is published: where, and the link."""

    channel: str = Field(min_length=1, max_length=SHORT_MAX)
    url: str | None = Field(default=None, max_length=2_000)


class ConcludeRequest(_Message):
    """R-INQUIRY: the unit records the case as concluded (办结); the result reply is due that day."""

    note: str | None = Field(default=None, max_length=TEXT_MAX)


class AdoptionRequest(_Message):
    """R-SUGGESTION: whether and how the suggestion is adopted."""

    adopted: bool
    decision: str = Field(min_length=1, max_length=TEXT_MAX)


class SpreadingRequest(_Message):
    """R-HYPE: spreading continues after the facts were published, with major impact."""

    description: str = Field(min_length=1, max_length=TEXT_MAX)


class TrackRequest(_Message):
    """R-TRACK: a tracking check; a flare-up may raise the severity."""

    status: TrackStatus
    note: str | None = Field(default=None, max_length=TEXT_MAX)
    severity: Severity | None = None


class SummaryRequest(_TextOrDocument):
    """R-SUMMARY: the written summary to 镇党政办 (发生、传播和处置情况, 反思): text, or a document."""

    text: str | None = Field(default=None, min_length=1, max_length=CONTENT_MAX)


class WithdrawRequest(_Message):
    """R-CLOSE: the office withdraws a false alarm, with a reason."""

    reason: str = Field(min_length=1, max_length=TEXT_MAX)


class AccountabilityRequest(_Message):
    """R-ACCOUNT: the office records 谎报, 瞒报 or 漏报 by hand."""

    kind: ManualAccountKind
    unit: str = Field(min_length=1, max_length=SHORT_MAX)
    person: str | None = Field(default=None, max_length=SHORT_MAX)
    reason: str = Field(min_length=1, max_length=TEXT_MAX)


class CommendRequest(_Message):
    """R-COMMEND: a commendation for a unit or a person."""

    unit: str = Field(min_length=1, max_length=SHORT_MAX)
    person: str | None = Field(default=None, max_length=SHORT_MAX)
    reason: str = Field(min_length=1, max_length=TEXT_MAX)


# Issue 19: what an attachment may be, by the type its content was found to be (never its name
# or the type its uploader declared), and how the timeline names it.
DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
ATTACHMENT_TYPES = {
    "image/png": "PNG图片",
    "image/jpeg": "JPEG图片",
    "image/webp": "WebP图片",
    "application/pdf": "PDF文档",
    DOCX_TYPE: "Word文档",
}
ATTACHMENT_NAME_MAX = 120
# What may stand as a written report or summary (R-WRITTEN, R-SUMMARY): a document, not an image.
DOCUMENT_TYPES = ("application/pdf", DOCX_TYPE)
AttachmentType = Literal[
    "image/png",
    "image/jpeg",
    "image/webp",
    "application/pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
]


class AttachRequest(_Message):
    """A file added to the incident (issue 19): a reference only, never its contents (R-SECRECY:
    histories are kept for years). Sent by the web app after the file is on disk and its row in
    the store (starter/web/attachments.py), never posted by a person directly."""

    attachment_id: str = Field(pattern=ATTACHMENT_ID)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    media_type: AttachmentType
    size: int = Field(ge=1, le=2**40)
    name: str = Field(min_length=1, max_length=ATTACHMENT_NAME_MAX)


class AbsenceRequest(_Message):
    """代理 (issue 20, item 3): a person will be away (请假、出差) from `starts_at` (now when not
    given) to `ends_at`, and `stand_in`, of their own unit or the leading group, acts for them:
    approves what they would, signs for and is sent what is meant for them. `person` is the
    declarer themselves unless the office declares for them. The reason is kept in the store only."""

    person: str | None = Field(default=None, min_length=1, max_length=SHORT_MAX)
    stand_in: str = Field(min_length=1, max_length=SHORT_MAX)
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime
    reason: str | None = Field(default=None, max_length=100)


class SignForRequest(_Message):
    """签收 (issue 20): the person signs for the 交办 and 督办 messages of this incident addressed
    to them: one (`key`, as the incident page lists it) or, without a key, all still unsigned.
    Signing for is not meeting: the deadline and its escalation chain run on."""

    key: str | None = Field(default=None, max_length=SHORT_MAX)


class ConfirmLead(ConfirmLeadRequest, Action):
    pass


class Triage(TriageRequest, Action):
    pass


class WrittenReport(WrittenReportRequest, Action):
    pass


class Progress(ProgressRequest, Action):
    pass


class Activate(ActivateRequest, Action):
    pass


class Consult(ConsultRequest, Action):
    pass


class ReturnToOffice(ReturnRequest, Action):
    pass


class DeclareDelay(DeclareDelayRequest, Action):
    pass


class DraftReply(DraftReplyRequest, Action):
    pass


class ApproveReply(ApproveReplyRequest, Action):
    pass


class CountersignReply(CountersignRequest, Action):
    pass


class ApproveRelease(ApproveReleaseRequest, Action):
    pass


class PublishReply(PublishReplyRequest, Action):
    pass


class Conclude(ConcludeRequest, Action):
    pass


class DecideAdoption(AdoptionRequest, Action):
    pass


class ReportSpreading(SpreadingRequest, Action):
    pass


class Track(TrackRequest, Action):
    pass


class SubmitSummary(SummaryRequest, Action):
    pass


class Withdraw(WithdrawRequest, Action):
    pass


class RecordAccountability(AccountabilityRequest, Action):
    pass


class Commend(CommendRequest, Action):
    pass


class Attach(AttachRequest, Action):
    pass


class SignFor(SignForRequest, Action):
    pass


# name (the API route and CLI command) → (request schema, command); the workflow's update of
# the same name with '-' as '_' handles it.


# --- The workflow's state: one model, so continue-as-new carries all of it. ---


class Deadline(BaseModel):
    key: str  # stable within the incident, e.g. "R-REPLY#1"
    rule: str
    title: str
    due_at: datetime
    anchor_at: datetime | None = None  # the recorded instant it counts from
    anchor_label: str | None = None
    # Where the deadline's window starts on the clock it runs on (a drill's is compressed).
    window_start: datetime | None = None
    met_at: datetime | None = None
    overdue: bool = False
    unit: str | None = None
    escalation_step: int = 0
    last_step_at: datetime | None = None
    warned: bool = False
    cancelled: bool = False  # void: the incident was withdrawn, or the rule no longer applies
    # Missed together with this deadline (met by the same reply): its record and chain cover both.
    joined: str | None = None
    # R-STANCE: a delay declared in time replaces this deadline's miss by the stance deadline's;
    # what it asks for (the official reply) is still owed, without a timer of its own.
    replaced_by: str | None = None
    # R-ACCOUNT: the incident was withdrawn as a false alarm, so the deadline counts in no figure.
    voided: bool = False
    version: int = 0

    @property
    def open(self) -> bool:
        return self.met_at is None and not self.cancelled

    @computed_field  # type: ignore[prop-decorator]
    @property
    def state(self) -> str:
        """pending, overdue, replaced (owed, no timer: R-STANCE), met, met_late or cancelled."""
        if self.cancelled:
            return "cancelled"
        if self.met_at is not None:
            return "met_late" if self.overdue else "met"
        if self.overdue:
            return "overdue"
        return "replaced" if self.replaced_by else "pending"


class Escalation(BaseModel):
    deadline_key: str
    rule: str
    step: int
    at: datetime
    targets: list[str]
    summary: str


class Receipt(BaseModel):
    """A message its recipients are asked to sign for (签收, issue 20): the 交办 of the incident
    to a unit, or a 督办 step. Who signed and when; the rest have not."""

    key: str  # "交办#1", or the deadline's key and the step: "R-REPLY#1/2"
    label: str
    at: datetime
    persons: list[str]
    deadline_key: str | None = None
    step: int | None = None
    signed: dict[str, datetime] = Field(default_factory=dict)
    note_key: str | None = None  # the notification that carried it (its deliveries' key)
    # Re-sent on the next channel (issue 20, item 2): rounds done, and each re-send by whom.
    rounds: int = 0
    resent: list[str] = Field(default_factory=list)  # "person|channel target|at ISO"
    # The notifications that carried the re-sends and repeats (their deliveries' keys).
    resent_notes: list[str] = Field(default_factory=list)
    repeats: int = 0  # at the top of the chain: reminders on every channel, up to the plan's cap
    last_at: datetime | None = None  # the last re-send or repeat

    def unsigned(self) -> list[str]:
        return [p for p in self.persons if p not in self.signed]


class Absence(BaseModel):
    """代理 (issue 20, item 3): a person away for a period, and who acts for them meanwhile.
    Kept in the store (store/absences.py), which numbers it; the workflow holds references and
    times only, never the reason (it may be personal: illness, family)."""

    id: int
    person: str
    stand_in: str
    starts_at: datetime
    ends_at: datetime

    def covers(self, at: datetime) -> bool:
        return self.starts_at <= at < self.ends_at


class Absences(BaseModel):
    """The absences not yet over, as the store had them at `revision` (its count of changes):
    what a running incident is told whenever one is declared or ended, replacing what it held,
    and what a new incident starts with. A lower revision than the one held is an older list
    arriving late, and is ignored."""

    COMPACT_PAYLOAD: ClassVar[bool] = True  # runtime/payloads.py

    revision: int = 0
    items: list[Absence] = Field(default_factory=list, max_length=1000)


class AccountabilityRecord(BaseModel):
    deadline_key: str
    rule: str
    kind: str  # 迟报 / 逾期 / 迟发现 / 谎报 / 瞒报 / 漏报
    unit: str
    person: str | None
    due_at: datetime
    recorded_at: datetime
    met_at: datetime | None = None
    reason: str | None = None
    # R-ACCOUNT: a record of a false alarm withdrawn is void: kept and shown, counted nowhere.
    voided_at: datetime | None = None
    void_reason: str | None = None
    by: str | None = None  # who recorded it by hand (谎报/瞒报/漏报)


class TimelineEntry(BaseModel):
    seq: int
    at: datetime
    kind: str
    actor: str | None
    summary: str
    # The text behind the entry where a document quotes it (issue 19): a published reply's
    # wording. The town's own published words, never the public's personal data.
    detail: str | None = None
    # 代理 (issue 20, item 3): the absent person `actor` acted for (the summary says 代 too).
    for_person: str | None = None


class ReplyRound(BaseModel):
    round: int
    kind: ReplyKind = ReplyKind.official
    status: ReplyStatus
    text: str
    drafted_by: str
    drafted_at: datetime
    approved_by: str | None = None
    approved_at: datetime | None = None
    comment: str | None = None
    # R-REVIEW 会签: the co-handling units whose heads must countersign before it goes out, and
    # who did (unit id → person id); a new draft needs every countersign again.
    countersign_units: list[str] = Field(default_factory=list)
    countersigned: dict[str, str] = Field(default_factory=dict)
    release_needed: bool = False
    released_by: str | None = None
    released_at: datetime | None = None
    spokesperson: str | None = None
    published_by: str | None = None
    published_at: datetime | None = None
    channel: str | None = None
    url: str | None = None


class Referral(BaseModel):
    """R-HYPE / R-FABRICATION: a referral to the discipline or supervision contact."""

    no: int
    rule: str
    at: datetime
    target: str  # person id
    reason: str
    by: str | None


class Commendation(BaseModel):
    at: datetime
    unit: str
    person: str | None
    reason: str
    by: str


class Recipient(BaseModel):
    """Who a notification is for: a person id (or "unit:" + a unit id for a unit's group chat)
    and their channels, as references to the roster (before channel references: in full)."""

    person_id: str
    name: str
    channels: list[AnyChannel]


class Notification(BaseModel):
    """A message to people. `key` is unique per incident, rule, round and step; with the recipient
    and channel it makes each delivery happen once however often the activity is retried."""

    COMPACT_PAYLOAD: ClassVar[bool] = True  # runtime/payloads.py

    key: str
    incident_id: str
    rule: str
    recipients: list[Recipient]
    subject: str
    body: str
    link: str
    drill: bool
    sent_at: datetime
    # The short form for chat robots (R-SECRECY; activities/channels.py): lines that each stand
    # alone (the rule, the deadline and when it falls due, the escalation step; a digest's one line
    # per incident), none of them a text a person wrote at length. The robots get the subject,
    # these lines and the link, never the body. Empty in notifications from before issue 17.
    brief: list[str] = Field(default_factory=list)
    # For SMS (issue 20), whose approved template has room for a few short words only: the key of
    # the deadline the message is about (the brief's; "R-REPLY#1"), and the escalation step (0:
    # not an escalation). Neither names a person or says what the incident is about.
    deadline: str = ""
    step: int = 0


class DeliverRequest(BaseModel):
    """One external delivery of a notification: to one recipient through one channel."""

    COMPACT_PAYLOAD: ClassVar[bool] = True  # runtime/payloads.py

    key: str  # notification key | recipient | channel target: the outbox row's unique key
    note: Notification
    recipient: Recipient
    # A reference (kind and roster id) the `deliver` activity resolves in the worker's roster;
    # a channel in full only in deliveries of incidents started before references.
    channel: AnyChannel
    target: str  # "kind:id" (never a URL, key or address); before references, kind:URL


class AttachedFile(BaseModel):
    """A file attached to the incident as the workflow knows it (issue 19): its reference, never
    its contents; what a written report or summary given as a document is checked against."""

    id: str
    media_type: str
    name: str


class IncidentState(BaseModel):
    """Everything the workflow decides; the view adds the submission's facts."""

    phase: Phase = Phase.triage
    severity: Severity = Severity.general
    severity_assessed: bool = False
    category: Category | None = None
    responsible_unit: str | None = None
    co_units: list[str] = Field(default_factory=list)
    activated_units: list[str] = Field(default_factory=list)
    activated_persons: list[str] = Field(default_factory=list)  # R-ACTIVATE: named persons
    deadlines: list[Deadline] = Field(default_factory=list)
    escalations: list[Escalation] = Field(default_factory=list)
    # 签收 (issue 20): the 交办 and 督办 messages to be signed for, and by whom they were.
    receipts: list[Receipt] = Field(default_factory=list)
    # 代理 (issue 20, item 3): who is away and who acts for them, as last told (live data).
    absences: Absences = Field(default_factory=Absences)
    accountability: list[AccountabilityRecord] = Field(default_factory=list)
    replies: list[ReplyRound] = Field(default_factory=list)
    referrals: list[Referral] = Field(default_factory=list)
    commendations: list[Commendation] = Field(default_factory=list)
    timeline: list[TimelineEntry] = Field(default_factory=list)
    related: list[str] = Field(default_factory=list)
    reply_round: int = 1  # the official-reply round; a flare-up opens the next
    progress_round: int = 0
    track_round: int = 0
    delay_reason: str | None = None
    facts_published_at: datetime | None = None
    adoption: str | None = None
    concluded_at: datetime | None = None
    subsided_at: datetime | None = None
    closed_at: datetime | None = None
    close_reason: str | None = None
    # R-CLOSE: until when commendations and 谎报/瞒报/漏报 records may still be added after close
    # (None: not at all); `amending` is true until the workflow's timer ends the period.
    amend_until: datetime | None = None
    amending: bool = False
    written_report: str | None = None
    summary: str | None = None
    # Issue 19: the files attached (by the `attach` action or with the submission), and which
    # of them is the written report (R-WRITTEN) or the summary (R-SUMMARY) when given as one.
    attached_files: list[AttachedFile] = Field(default_factory=list)
    written_report_document: str | None = None
    summary_document: str | None = None
    version: int = 0
    recorded_seq: int = 0
    notify_seq: int = 0
    runs: int = 1  # how many runs (continue-as-new) the incident has had
    # Which rules the incident runs under (histories replay as they ran): 0 for incidents started
    # before issue 14's R-NOTIFY fix, 1 since (workflows/incident.py RULES_PATCH), 2 since the
    # oral report meets R-REPORT, the amendment period after close, countersigns and activated
    # units' part (RULES_V2_PATCH).
    rules_version: int = 0
    # 签收's re-sending (issue 20, item 2) runs for incidents started since (RESEND_PATCH).
    resend: bool = False
    # ... and each step's message, not only the latest step's, until signed for or met (since
    # RESEND_STEPS_PATCH).
    resend_steps: bool = False
    # Effects decided but not yet written: carried across continue-as-new, so none is lost.
    pending_escalations: list[Escalation] = Field(default_factory=list)
    pending_notifications: list[Notification] = Field(default_factory=list)
    in_flight_deliveries: list[DeliverRequest] = Field(default_factory=list)


class IncidentInput(BaseModel):
    """The workflow's input: the submission plus everything fixed when it was accepted. On
    continue-as-new `state` carries the incident's state into the next run."""

    COMPACT_PAYLOAD: ClassVar[bool] = True  # runtime/payloads.py
    # Read back as one object for all the incidents holding equal ones (runtime/payloads.py).
    SHARED_FIELDS: ClassVar[tuple[str, ...]] = ("roster", "plan")

    incident_id: str
    submission: Submission
    received_at: datetime
    # The roster person who sent the submission signed in (a session or a token), or None for an
    # anonymous caller, whose stated times never clear or create a record (R-REPORT, R-WRITTEN).
    submitted_by: str | None = None
    # The roster's public part (Roster.public(): channels as kind + id, no phone numbers); incidents
    # started before issue 15 hold the roster in full, and still replay.
    roster: Roster
    plan: PlanSpec = Field(default_factory=shipped)
    plan_version: str = ""
    timezone: str = "Asia/Shanghai"
    # Minutes before escalation steps 2, 3, … replacing the plan's waits (drills, tests); empty:
    # the plan's (rules.escalation_chain).
    escalation_waits_minutes: list[float] = Field(default_factory=list)
    public_url: str = "http://localhost:8000"
    search_attributes: bool = True
    related: list[str] = Field(default_factory=list)
    continue_as_new_after: int = 2_000  # history events
    delivery_give_up_minutes: float = 360.0
    # Issue 19: files sent with the submission (the report form's evidence: screenshots, PDFs),
    # stored and checked before the start; references only. Recorded as the reporter's
    # (`submitted_by`, or nobody when anonymous), never as any unit's or person's act.
    evidence: list[AttachRequest] = Field(default_factory=list, max_length=10)
    # 代理 (issue 20, item 3): the absences not yet over when the incident started; later
    # changes arrive as the `absences_changed` signal.
    absences: Absences | None = None
    state: IncidentState | None = None

    @model_serializer(mode="wrap")
    def _plan_written(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo):  # type: ignore[no-untyped-def]
        """The plan is written whole, even when it is the shipped one (its default, for
        histories from before it was in the input): a compact payload leaves defaults out, and
        the shipped plan, like PlanSpec's defaults, may change under an incident started with it."""
        data = handler(self)
        if isinstance(data, dict):
            data["plan"] = self.plan.model_dump(mode=info.mode)
        return data


class IncidentDone(BaseModel):
    """What a finished incident's workflow returns: which incident, its last version and how it
    ended. Not the whole view (6 KB of a completed incident's 33 KB of payloads, issue 21): the
    store has every row, and a query of the finished workflow still gives the view."""

    incident_id: str
    version: int
    phase: Phase
    closed_at: datetime | None = None
    close_reason: str | None = None


class ActionDone(BaseModel):
    """What an accepted staff action answers: the incident's version and phase after it, and the
    last timeline entry. Not the whole view: an update's answer is stored in the incident's
    history, and the whole view there made up half of a completed incident's payload bytes
    (docs/PERFORMANCE.md); the view is one query away."""

    incident_id: str
    run_id: str | None = (
        None  # the run that took it (an action can make the incident continue as new)
    )
    version: int
    phase: Phase
    latest: TimelineEntry | None = None


class IncidentView(IncidentState):
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
    oral: bool = False
    oral_reported_at: datetime | None = None  # as the reporter stated it
    # An untrusted (anonymous) report's stated unit, shown, never counted (issue 15).
    stated_reporter_unit: str | None = None
    lead: bool = False
    assigned_by_superior: bool = False
    drill: bool
    drill_speedup: float | None
    plan_version: str

    @property
    def overdue(self) -> bool:
        return any(d.overdue and d.open for d in self.deadlines)

    def next_deadline(self) -> Deadline | None:
        open_ = [d for d in self.deadlines if d.open]
        return min(open_, key=lambda d: d.due_at) if open_ else None

    def deadline(self, key: str) -> Deadline | None:
        return next((d for d in self.deadlines if d.key == key), None)
