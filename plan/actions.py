"""The one table of staff actions: who may take each, in which phases, and when the incident is
ready for it. The workflow's validators (through plan/incident.py), the forms the incident page
offers, the CLI's commands and the API's routes all read it, so what a page offers a person is
exactly what the incident would accept from them (tests/test_model.py checks that). `UPLOADS` holds
rows of the same kind for actions taken through an upload of their own (issue 19: `attach`),
which the workflow checks the same way but no generic route, form or command offers.

`may(name, …)` answers for a person without the action's fields (who, phase, the incident's state);
the field checks (a reason given, a roster id that exists) are the core's, in plan/incident.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from pydantic import BaseModel

from plan import rules
from plan.enums import Category, Phase, ReplyKind, ReplyStatus, Severity
from plan.messages import local
from plan.models import (
    AccountabilityRequest,
    Activate,
    ActivateRequest,
    AdoptionRequest,
    ApproveRelease,
    ApproveReleaseRequest,
    ApproveReply,
    ApproveReplyRequest,
    Attach,
    AttachRequest,
    Commend,
    CommendRequest,
    Conclude,
    ConcludeRequest,
    ConfirmLead,
    ConfirmLeadRequest,
    Consult,
    ConsultRequest,
    CountersignReply,
    CountersignRequest,
    Deadline,
    DecideAdoption,
    DeclareDelay,
    DeclareDelayRequest,
    DraftReply,
    DraftReplyRequest,
    IncidentState,
    Progress,
    ProgressRequest,
    PublishReply,
    PublishReplyRequest,
    RecordAccountability,
    ReplyRound,
    ReportSpreading,
    ReturnRequest,
    ReturnToOffice,
    SignFor,
    SignForRequest,
    SpreadingRequest,
    SubmitSummary,
    SummaryRequest,
    Track,
    TrackRequest,
    Triage,
    TriageRequest,
    Withdraw,
    WithdrawRequest,
    WrittenReport,
    WrittenReportRequest,
)
from plan.roster import Role, Roster
from plan.spec import PlanSpec

WRITTEN_KEY = "R-WRITTEN"
OPINION_KEY = "R-INQUIRY-OPINION"
RESULT_KEY = "R-INQUIRY-RESULT"
REPLY_RULES = {rules.R_REPLY, rules.R_STANCE, rules.R_INQUIRY}
OPEN_PHASES = (Phase.lead, Phase.triage, Phase.handling, Phase.tracking, Phase.summary)


class Who(Enum):
    """Who may take an action: a role in the roster, or a place on this incident."""

    office = "领导小组办公室"
    leading = "领导小组组长或副组长"
    office_or_leading = "领导小组或其办公室"
    group = "领导小组（含成员）或其办公室"
    unit = "责任单位人员"
    unit_head = "责任单位负责人"
    involved = "责任单位、协办单位、启动预案后介入的单位和人员或领导小组办公室"
    consulting = "领导小组（含成员）、其办公室或启动预案后介入的单位和人员"
    countersigner = "尚未会签的协办单位负责人"
    reporter = "报告单位或领导小组办公室"
    attaching = (
        "报告单位、责任单位、协办单位、启动预案后介入的单位和人员、领导小组组长、副组长或其办公室"
    )
    signer = "收到交办或督办通知、尚未签收的人员"


@dataclass(frozen=True)
class Place:
    """What `Who` needs to know of an incident: its units and who reported it."""

    responsible_unit: str | None
    co_units: tuple[str, ...] = ()
    reporter_unit: str | None = None
    # R-ACTIVATE: the units and persons the leading group brought in take part like co-units.
    activated_units: tuple[str, ...] = ()
    activated_persons: tuple[str, ...] = ()
    # R-REVIEW 会签: the co-handling units whose heads still have to countersign the reply.
    countersign_pending: tuple[str, ...] = ()
    # 签收 (issue 20): who has a 交办 or 督办 message of this incident still to sign for.
    to_sign: tuple[str, ...] = ()
    # 代理 (issue 20, item 3): (absent person, their stand-in) for the absences in force now.
    stand_ins: tuple[tuple[str, str], ...] = ()

    def brought_in(self, roster: Roster, actor: str) -> bool:
        """A member of a unit the leading group activated, or a person it named."""
        units = self.activated_units
        return actor in self.activated_persons or any(roster.belongs_to(actor, u) for u in units)

    def takes_part(self, roster: Roster, actor: str) -> bool:
        """A member of the responsible or a co-handling unit, or brought in (R-ACTIVATE)."""
        units = [self.responsible_unit, *self.co_units]
        return any(roster.belongs_to(actor, u) for u in units) or self.brought_in(roster, actor)


RolesOf = Callable[[str], set[Role]]


def holds(
    who: Who, roster: Roster, actor: str, place: Place, roles_of: RolesOf | None = None
) -> bool:
    """Whether the actor is `who` on this incident, in their own right or acting for someone
    absent now (代理: the stand-in may do what the absent person may)."""
    if holds_itself(who, roster, actor, place, roles_of):
        return True
    return acting_for(who, roster, actor, place, roles_of) is not None


def acting_for(
    who: Who, roster: Roster, actor: str, place: Place, roles_of: RolesOf | None = None
) -> str | None:
    """The absent person the actor stands in for who is `who` (None: nobody). Someone who holds
    the place in their own right acts as themselves (see `holds_itself`)."""
    for absent, stand_in in place.stand_ins:
        if stand_in == actor and holds_itself(who, roster, absent, place, roles_of):
            return absent
    return None


def holds_itself(
    who: Who, roster: Roster, actor: str, place: Place, roles_of: RolesOf | None = None
) -> bool:
    """Whether the actor is `who` on this incident in their own right."""
    roles = (roles_of or roster.roles_of)(actor)
    if who is Who.office:
        return Role.office in roles
    if who is Who.leading:
        return bool(roles & {Role.leader, Role.deputy})
    if who is Who.office_or_leading:
        return bool(roles & {Role.office, Role.leader, Role.deputy})
    if who is Who.group:
        return bool(roles & {Role.office, Role.leader, Role.deputy, Role.member})
    if who is Who.unit:
        return roster.belongs_to(actor, place.responsible_unit)
    if who is Who.unit_head:
        return roster.is_head_of(actor, place.responsible_unit)
    if who is Who.involved:
        return Role.office in roles or place.takes_part(roster, actor)
    if who is Who.attaching:
        # The reporting unit too (issue 19, item 5): its written report may be a document.
        leading = bool(roles & {Role.office, Role.leader, Role.deputy})
        reporting = roster.belongs_to(actor, place.reporter_unit)
        return leading or reporting or place.takes_part(roster, actor)
    if who is Who.countersigner:
        return any(roster.is_head_of(actor, u) for u in place.countersign_pending)
    if who is Who.signer:
        return actor in place.to_sign
    if who is Who.consulting:
        group = {Role.office, Role.leader, Role.deputy, Role.member}
        return bool(roles & group) or place.brought_in(roster, actor)
    return Role.office in roles or roster.belongs_to(actor, place.reporter_unit)


def who_refusal(who: Who, roster: Roster, place: Place) -> str:
    """The Chinese reason a person outside `who` is refused (HTTP 403)."""
    unit = roster.unit_name(place.responsible_unit)
    if who is Who.unit:
        return f"此操作只能由责任单位（{unit}）人员执行"
    if who is Who.unit_head:
        return f"只有责任单位（{unit}）负责人可以审定回复（{rules.R_REVIEW}）"
    if who is Who.countersigner:
        names = "、".join(roster.unit_name(u) for u in place.countersign_pending) or "无"
        return f"只有尚未会签的协办单位（{names}）负责人可以会签（{rules.R_REVIEW}）"
    if who is Who.reporter:
        return "书面信息由报告单位或领导小组办公室报送"
    if who is Who.signer:
        return "您没有需要签收的交办或督办通知（已签收的无需重复签收）"
    return f"此操作只能由{who.value}执行"


# Who may read the accountability report and the leading group's dashboard (R-ACCOUNT): the
# leading group, its office and 镇党政办, who receives the summaries.
REPORT_READERS = frozenset({Role.office, Role.leader, Role.deputy, Role.member, Role.party_office})


def may_read_reports(roster: Roster, person_id: str | None) -> bool:
    return bool(person_id) and bool(roster.roles_of(person_id or "") & REPORT_READERS)


# Who may start a 通联测试 on demand (issue 20, item 5; the monthly one starts by itself): the
# office, which keeps the roster, and the leader. Everyone tested confirms their own.
REACH_TEST_STARTERS = frozenset({Role.office, Role.leader})


def may_start_reach_test(roster: Roster, person_id: str | None) -> bool:
    return bool(person_id) and bool(roster.roles_of(person_id or "") & REACH_TEST_STARTERS)


# --- the incident's state, read the same way by the table and the core ---


def find(s: IncidentState, key: str) -> Deadline | None:
    return next((d for d in s.deadlines if d.key == key), None)


def current_reply(s: IncidentState) -> ReplyRound | None:
    return s.replies[-1] if s.replies else None


def countersign_pending(s: IncidentState) -> tuple[str, ...]:
    """R-REVIEW 会签: the co-handling units whose heads have yet to countersign the approved reply."""
    current = current_reply(s)
    if current is None or current.status is not ReplyStatus.approved:
        return ()
    return tuple(u for u in current.countersign_units if u not in current.countersigned)


def place_of(s: IncidentState, reporter_unit: str | None, now: datetime | None = None) -> Place:
    """What `Who` needs to know of the incident, from its state (and, for 代理, the time)."""
    return Place(
        s.responsible_unit,
        tuple(s.co_units),
        reporter_unit,
        tuple(s.activated_units),
        tuple(s.activated_persons),
        countersign_pending(s),
        to_sign(s),
        stand_ins(s, now) if now is not None else (),
    )


def stand_ins(s: IncidentState, now: datetime) -> tuple[tuple[str, str], ...]:
    """代理: (absent person, who acts for them) for every absence in force at `now`, a stand-in
    who is away too passing it on to theirs (a chain, never a loop)."""
    away = {a.person: a.stand_in for a in s.absences.items if a.covers(now)}
    pairs = []
    for person in away:
        seen, stand_in = {person}, away[person]
        while stand_in in away and away[stand_in] not in seen:
            seen.add(stand_in)
            stand_in = away[stand_in]
        if stand_in not in seen:
            pairs.append((person, stand_in))
    return tuple(pairs)


def to_sign(s: IncidentState) -> tuple[str, ...]:
    """签收: who has a 交办 or 督办 message of this incident still to sign for."""
    return tuple(dict.fromkeys(p for r in s.receipts for p in r.unsigned()))


def reply_owed(s: IncidentState) -> bool:
    return any(d.open and d.rule in REPLY_RULES for d in s.deadlines)


def reply_phases(s: IncidentState) -> tuple[Phase, ...]:
    """Replies are drafted, approved and published while handling and tracking, and after the
    incident subsided while one is still owed (a result or stance reply): no dead end."""
    return (Phase.handling, Phase.tracking) + ((Phase.summary,) if reply_owed(s) else ())


def draftable(s: IncidentState, kind: ReplyKind) -> str | None:
    """Why a reply of this kind cannot be drafted now, or None."""
    reply = find(s, f"R-REPLY#{s.reply_round}")
    if kind is ReplyKind.stance:
        stance = find(s, f"R-STANCE#{s.reply_round}")
        if stance is None or not stance.open:
            return "须先声明无法在回复期内办结，方可作表态性回复（R-STANCE）"
    elif kind is ReplyKind.result:
        if s.category is not Category.inquiry:
            return "处理结果回复仅适用于询问、置疑、诉求类（R-INQUIRY）"
        result = find(s, RESULT_KEY)
        immediate = result is None and reply is not None and reply.open
        if not immediate and (result is None or not result.open):
            return "没有待回复的处理结果"
    elif s.phase is not Phase.handling or reply is None or not reply.open:
        return "本轮官方回复已发布（每轮一次）"
    if kind is not ReplyKind.stance and s.category is Category.suggestion and not s.adoption:
        return "须先作出采纳决定（R-SUGGESTION）"
    return None


def why_not_pending(roster: Roster, tz: str, current: ReplyRound | None, refusal: str) -> str:
    """A refusal that says where the reply is, so a second click or a colleague who acted at the
    same moment learns it was already done, and by whom."""
    name = roster.person_name
    if current is None:
        return refusal
    if current.status is ReplyStatus.published:
        at = local(current.published_at, tz) if current.published_at else ""
        return (
            f"{current.kind.label}已由{name(current.published_by)}于{at}发布"
            f"（{current.channel}），无需重复操作"
        )
    if current.status is ReplyStatus.approved:
        return f"{current.kind.label}已由{name(current.approved_by)}审定通过，无需重复审定"
    if current.status is ReplyStatus.rejected:
        return f"{refusal}；回复稿已退回（{current.comment}），待重新起草"
    return refusal


# --- when each action fits the incident (state only; None = it does) ---

When = Callable[[IncidentState, Roster, str], str | None]


def _always(s: IncidentState, roster: Roster, tz: str) -> str | None:
    return None


def _activate(s: IncidentState, roster: Roster, tz: str) -> str | None:
    if s.severity not in (Severity.major, Severity.urgent):
        return "只有重大、紧急舆情可以启动应急预案（R-ACTIVATE）"
    return None


def _written(s: IncidentState, roster: Roster, tz: str) -> str | None:
    d = find(s, WRITTEN_KEY)
    return "没有待报送的书面信息（仅电话口头报告后需要）" if d is None or not d.open else None


def _progress(s: IncidentState, roster: Roster, tz: str) -> str | None:
    if not any(d.rule == rules.R_PROGRESS and d.open for d in s.deadlines):
        return "当前无需续报（仅重大、紧急舆情处置期间按期续报）"
    return None


def _return(s: IncidentState, roster: Roster, tz: str) -> str | None:
    current = current_reply(s)
    if current is not None and current.status is not ReplyStatus.published:
        return "已有回复稿在办理中，不能退回"
    return None


def _delay(s: IncidentState, roster: Roster, tz: str) -> str | None:
    return "本轮已声明无法按期办结" if find(s, f"R-STANCE#{s.reply_round}") else None


def _conclude(s: IncidentState, roster: Roster, tz: str) -> str | None:
    if s.category is not Category.inquiry:
        return "办结后回复处理结果仅适用于询问、置疑、诉求类（R-INQUIRY）"
    return "已办结" if s.concluded_at is not None else None


def _adoption(s: IncidentState, roster: Roster, tz: str) -> str | None:
    if s.category is not Category.suggestion:
        return "采纳决定仅适用于建议类舆情（R-SUGGESTION）"
    return None


def _spreading(s: IncidentState, roster: Roster, tz: str) -> str | None:
    if s.category is not Category.hype:
        return "仅恶意传播或炒作类舆情适用（R-HYPE）"
    if s.facts_published_at is None:
        return "须先依法告知事实真相（发布官方回复）"
    if any(r.rule == rules.R_HYPE for r in s.referrals):
        return "已商请执纪执法部门查处"
    return None


def _draft(s: IncidentState, roster: Roster, tz: str) -> str | None:
    reasons = [draftable(s, kind) for kind in ReplyKind]
    return None if None in reasons else reasons[0]


def _approve(s: IncidentState, roster: Roster, tz: str) -> str | None:
    current = current_reply(s)
    if current is None or current.status is not ReplyStatus.drafted:
        return why_not_pending(roster, tz, current, "没有待审定的回复稿")
    return None


def _release(s: IncidentState, roster: Roster, tz: str) -> str | None:
    current = current_reply(s)
    if current is None or current.status is not ReplyStatus.approved:
        if current is not None and current.status is ReplyStatus.drafted:
            return "没有待领导小组审定的回复（须先经单位负责人审定）"
        return why_not_pending(roster, tz, current, "没有待领导小组审定的回复")
    if current.released_by is not None:
        return (
            f"{current.kind.label}的发布口径已由{roster.person_name(current.released_by)}"
            f"审定（发布人：{roster.person_name(current.spokesperson)}），无需重复审定"
        )
    if not rules.needs_release(s.severity):
        return (
            "此回复经单位负责人审定即可发布，无须领导小组审定（仅重大、紧急舆情须审定，R-RELEASE）"
        )
    unsigned = _unsigned(s, roster)
    return unsigned + "后，再报领导小组审定" if unsigned else None


def _countersign(s: IncidentState, roster: Roster, tz: str) -> str | None:
    current = current_reply(s)
    if current is None or current.status is not ReplyStatus.approved:
        return why_not_pending(roster, tz, current, "没有待会签的回复稿（须先经单位负责人审定）")
    if not countersign_pending(s):
        return "没有待会签的协办单位（回复稿已会签或无需会签）"
    return None


def _unsigned(s: IncidentState, roster: Roster) -> str | None:
    pending = countersign_pending(s)
    if pending:
        names = "、".join(roster.unit_name(u) for u in pending)
        return f"回复稿须经协办单位（{names}）负责人会签（{rules.R_REVIEW} 经各部门负责人审定）"
    return None


def _publish(s: IncidentState, roster: Roster, tz: str) -> str | None:
    current = current_reply(s)
    if current is None or current.status is not ReplyStatus.approved:
        return why_not_pending(roster, tz, current, "回复须经单位负责人审定后方可发布（R-REVIEW）")
    unsigned = _unsigned(s, roster)
    if unsigned:
        return unsigned + "后方可发布"
    if rules.needs_release(s.severity) and current.released_by is None:
        return "重大、紧急舆情的回复须经领导小组审定口径和发布人后方可发布（R-RELEASE）"
    return None


def _summary(s: IncidentState, roster: Roster, tz: str) -> str | None:
    owed = [d.title for d in s.deadlines if d.open and d.rule in REPLY_RULES]
    return f"须先完成：{'、'.join(owed)}" if owed else None


@dataclass(frozen=True)
class ActionRule:
    """One staff action: its messages, its Chinese label, who may take it, in which phases (a
    callable for the reply steps, whose phases follow what is owed) and when."""

    request: type[BaseModel]
    command: type[BaseModel]
    label: str
    help: str  # may name the plan's periods as {stance_within} etc.: read it through help_for
    who: Who
    phases: tuple[Phase, ...] | Callable[[IncidentState], tuple[Phase, ...]]
    when: When = _always
    phase_refusals: dict[Phase, str] = field(default_factory=dict)
    # R-CLOSE: who may still take it in the period after close (None: nobody).
    after_close: Who | None = None

    def phases_for(self, s: IncidentState) -> tuple[Phase, ...]:
        return self.phases(s) if callable(self.phases) else self.phases

    def help_for(self, spec: PlanSpec) -> str:
        """The help text with the plan's periods (rules.duration_words) filled in."""
        return self.help.format_map(rules.duration_words(spec))


HANDLING = (Phase.handling,)
WORKING = (Phase.handling, Phase.tracking)

ACTIONS: dict[str, ActionRule] = {
    "confirm-lead": ActionRule(
        ConfirmLeadRequest,
        ConfirmLead,
        "确认线索",
        "办公室核实监测系统报送的线索，确认为舆情后转入研判（R-OFFICE）。",
        Who.office,
        (Phase.lead,),
        phase_refusals={p: "该事件不是待确认的监测线索" for p in OPEN_PHASES},
    ),
    "triage": ActionRule(
        TriageRequest,
        Triage,
        "研判",
        "领导小组办公室研判：等级、类别、牵头单位和协办单位。",
        Who.office_or_leading,
        (Phase.triage, Phase.handling, Phase.tracking),
        phase_refusals={
            Phase.lead: "请先确认监测线索（R-OFFICE）",
            Phase.summary: "事件已平息待总结，不能重新研判",
        },
    ),
    "file-written-report": ActionRule(
        WrittenReportRequest,
        WrittenReport,
        "报送书面信息",
        "口头报告后报送书面信息（R-WRITTEN）。",
        Who.reporter,
        OPEN_PHASES,
        _written,
    ),
    "report-progress": ActionRule(
        ProgressRequest,
        Progress,
        "报告进展",
        "续报处置进展和新情况（R-PROGRESS）。",
        Who.involved,
        OPEN_PHASES,
        _progress,
    ),
    "activate": ActionRule(
        ActivateRequest,
        Activate,
        "启动预案",
        "领导小组启动应急预案，决定介入的单位和人员（R-ACTIVATE）。",
        Who.leading,
        OPEN_PHASES,
        _activate,
    ),
    "consult": ActionRule(
        ConsultRequest,
        Consult,
        "会商",
        "记录会商议题和决定（R-CONSULT）。",
        Who.consulting,
        OPEN_PHASES,
    ),
    "return-to-office": ActionRule(
        ReturnRequest,
        ReturnToOffice,
        "退回办公室",
        "牵头单位退回办公室重新研判（须说明理由）。",
        Who.unit,
        HANDLING,
        _return,
    ),
    "declare-delay": ActionRule(
        DeclareDelayRequest,
        DeclareDelay,
        "说明延期",
        "声明无法在回复期内办结，{stance_within}内作表态性回复（R-STANCE）。",
        Who.unit,
        HANDLING,
        _delay,
    ),
    "draft-reply": ActionRule(
        DraftReplyRequest,
        DraftReply,
        "起草回复",
        "责任单位起草回复（官方回复、表态性回复或处理结果）。",
        Who.unit,
        reply_phases,
        _draft,
    ),
    "approve-reply": ActionRule(
        ApproveReplyRequest,
        ApproveReply,
        "审定回复",
        "责任单位负责人审阅下面的回复稿：同意则可发布（重大、紧急舆情还须领导小组审定口径）；"
        "退回须写明意见，由责任单位重新起草（R-REVIEW）。",
        Who.unit_head,
        reply_phases,
        _approve,
    ),
    "countersign-reply": ActionRule(
        CountersignRequest,
        CountersignReply,
        "会签回复",
        "协办单位负责人会签回复稿（R-REVIEW 经各部门负责人审定）；不同意须说明理由，"
        "回复稿退回牵头单位重新起草。",
        Who.countersigner,
        reply_phases,
        _countersign,
    ),
    "approve-release": ActionRule(
        ApproveReleaseRequest,
        ApproveRelease,
        "领导小组审定发布",
        "重大、紧急舆情的回复须经领导小组审定口径并确定发布人：同意时选定发布人（默认分管宣传的副组长）；"
        "退回须写明意见（R-RELEASE）。",
        Who.leading,
        reply_phases,
        _release,
    ),
    "publish-reply": ActionRule(
        PublishReplyRequest,
        PublishReply,
        "发布回复",
        "回复已审定，发布后填写发布渠道和已发布回复的链接，按期完成即记为按时回复（R-REPLY）。",
        Who.unit,
        reply_phases,
        _publish,
    ),
    "conclude": ActionRule(
        ConcludeRequest,
        Conclude,
        "办结",
        "询问类事项办结，当日内回复处理结果（R-INQUIRY）。",
        Who.unit,
        WORKING,
        _conclude,
    ),
    "decide-adoption": ActionRule(
        AdoptionRequest,
        DecideAdoption,
        "决定是否采纳",
        "建议类：作出采纳决定（R-SUGGESTION）。",
        Who.unit,
        WORKING,
        _adoption,
    ),
    "report-spreading": ActionRule(
        SpreadingRequest,
        ReportSpreading,
        "报告扩散情况",
        "告知真相后仍继续恶意传播，商请执纪执法部门查处（R-HYPE）。",
        Who.involved,
        OPEN_PHASES,
        _spreading,
    ),
    "track": ActionRule(
        TrackRequest,
        Track,
        "动态跟踪",
        "动态跟踪检查：仍在发酵、已平息或再次升温（R-TRACK）。",
        Who.involved,
        (Phase.tracking,),
    ),
    "submit-summary": ActionRule(
        SummaryRequest,
        SubmitSummary,
        "提交总结",
        "报送书面总结至镇党政办（R-SUMMARY），结案。",
        Who.involved,
        (Phase.summary,),
        _summary,
    ),
    "withdraw": ActionRule(
        WithdrawRequest,
        Withdraw,
        "撤销",
        "办公室撤销误报（须说明理由，R-CLOSE）。",
        Who.office,
        OPEN_PHASES,
    ),
    "record-accountability": ActionRule(
        AccountabilityRequest,
        RecordAccountability,
        "记录问责",
        "办公室记录谎报、瞒报、漏报（R-ACCOUNT）；结案后补记期内领导小组也可记录。",
        Who.office,
        OPEN_PHASES,
        after_close=Who.office_or_leading,
    ),
    "commend": ActionRule(
        CommendRequest,
        Commend,
        "表彰",
        "记录表彰（R-COMMEND），结案后补记期内仍可记录。",
        Who.office_or_leading,
        OPEN_PHASES,
        after_close=Who.office_or_leading,
    ),
    "sign-for": ActionRule(
        SignForRequest,
        SignFor,
        "签收",
        "签收发给您的交办、督办通知，表示您已收到并知悉（R-ESCALATE）。签收不等于办结："
        "期限仍在计时，逾期仍按规定逐级督办。",
        Who.signer,
        OPEN_PHASES,
    ),
}


# Actions taken through an upload of their own (issue 19: `attach`, starter/web/attachments.py),
# never through the generic JSON route, the page's action forms or the CLI (which read `ACTIONS`):
# their fields are what the web app found a file to be, never what a person types. The workflow
# checks them (who, phases) as every action, through its generic update `act`.
UPLOADS: dict[str, ActionRule] = {
    "attach": ActionRule(
        AttachRequest,
        Attach,
        "添加附件",
        "添加图片（PNG、JPEG、WebP）、PDF或Word文档作为附件，结案后补记期内仍可添加。",
        Who.attaching,
        OPEN_PHASES,
        after_close=Who.attaching,
    ),
}


def rule_of(name: str) -> ActionRule:
    """The row of `name` in either table (KeyError for an unknown name)."""
    return ACTIONS[name] if name in ACTIONS else UPLOADS[name]


class Refusal(Exception):
    """Why an action is not accepted: `kind` "refused" (the incident now: HTTP 409), "forbidden"
    (the person: 403) or "not_ready" (the incident is still being created: try again). `may`
    returns one; the core raises it."""

    def __init__(self, message: str, kind: str = "refused") -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind


def may(
    name: str, roster: Roster, s: IncidentState, place: Place, actor: str, tz: str
) -> Refusal | None:
    """Whether `actor` may take action `name` on the incident now, whatever the fields say:
    None, or why not. In order: closed, wrong phase (409: nobody may now), an unknown person or
    not this person's role (403), the incident not ready for it (409)."""
    rule = rule_of(name)
    who = rule.who
    if s.phase is Phase.closed:
        if rule.after_close is None or not s.amending:
            return Refusal(closed_refusal(s, rule, tz))
        who = rule.after_close
    phases = rule.phases_for(s)
    if s.phase is not Phase.closed and s.phase not in phases:
        if s.phase in rule.phase_refusals:
            return Refusal(rule.phase_refusals[s.phase])
        wanted = "或".join(f"“{p.label}”" for p in phases)
        return Refusal(f"事件当前处于“{s.phase.label}”阶段，此操作须在{wanted}阶段进行")
    if not roster.roles_of(actor) and roster.person(actor) is None:
        return Refusal(f"人员“{actor}”不在名册中", "forbidden")
    if not holds(who, roster, actor, place):
        return Refusal(who_refusal(who, roster, place), "forbidden")
    reason = rule.when(s, roster, tz)
    return Refusal(reason) if reason else None


def acting_as(name: str, roster: Roster, s: IncidentState, place: Place, actor: str) -> str | None:
    """代: the absent person an action of `actor` is taken for (None: in their own right)."""
    rule = rule_of(name)
    who = rule.after_close if s.phase is Phase.closed and rule.after_close else rule.who
    if holds_itself(who, roster, actor, place):
        return None
    return acting_for(who, roster, actor, place)


def closed_refusal(s: IncidentState, rule: ActionRule, tz: str) -> str:
    """R-CLOSE: why nothing, or this, is accepted after close."""
    if rule.after_close is None:
        return "事件已结案，不再接受操作（结案后只可补记表彰和谎报、瞒报、漏报）"
    if s.amend_until is None:
        return "事件已结案，不再接受操作"
    return f"事件已结案，结案后补记期已于{local(s.amend_until, tz)}届满"


def allows(
    name: str,
    roster: Roster,
    s: IncidentState,
    place: Place,
    actor: str,
    tz: str = "UTC",
    roles_of: RolesOf | None = None,
) -> bool:
    """`may(...) is None`, without wording a refusal nobody reads (the incident page asks this
    for every action; the model checker, hundreds of thousands of times)."""
    rule = rule_of(name)
    who = rule.who
    if s.phase is Phase.closed:
        if rule.after_close is None or not s.amending:
            return False
        who = rule.after_close
    elif s.phase not in rule.phases_for(s):
        return False
    if not holds(who, roster, actor, place, roles_of):
        return False
    return rule.when(s, roster, tz) is None
