"""IncidentWorkflow: one public-opinion incident from report (or monitoring lead) to close.

It waits for the office's triage, the unit's replies with their approvals, tracking checks and the
written summary, while every plan deadline runs as a durable timer with a warning before it and an
escalation chain after it (workflows/deadlines.py). Staff actions are validated updates: a refused
action never enters history. Handlers only change state (`self.s`); queued effects are written by
activities in order: the read model (record), escalation steps (escalate) and messages (notify).
The whole state is one model, so a long incident continues as new without losing anything.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import SearchAttributeKey
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel

    from activities.messages import (
        DeliverRequest,
        EscalateRequest,
        IncidentRow,
        Notification,
        Recipient,
        RecordRequest,
    )
    from plan import messages, rules
    from plan.models import (
        AccountabilityRecord,
        ActionDone,
        Activate,
        ApproveRelease,
        ApproveReply,
        Category,
        Commend,
        Commendation,
        Conclude,
        ConfirmLead,
        Consult,
        Deadline,
        DecideAdoption,
        DeclareDelay,
        DraftReply,
        Escalation,
        IncidentInput,
        IncidentState,
        IncidentView,
        Phase,
        Progress,
        PublishReply,
        RecordAccountability,
        Referral,
        ReplyKind,
        ReplyRound,
        ReplyStatus,
        ReportSpreading,
        ReturnToOffice,
        Severity,
        SubmitSummary,
        TimelineEntry,
        Track,
        TrackStatus,
        Triage,
        Withdraw,
        WrittenReport,
    )
    from plan.outbox import deliveries_for
    from plan.roster import Role
    from workflows.deadlines import watch_deadline
    from workflows.delivery import ACTIVITY_TIMEOUT, RETRY_FOREVER, deliver

T = TypeVar("T", bound="BaseModel")

SA_PHASE = SearchAttributeKey.for_keyword("IncidentPhase")
SA_SEVERITY = SearchAttributeKey.for_keyword("IncidentSeverity")
SA_UNIT = SearchAttributeKey.for_keyword("ResponsibleUnit")
SA_OVERDUE = SearchAttributeKey.for_bool("Overdue")
SA_DRILL = SearchAttributeKey.for_bool("IsDrill")
SA_NEXT_DEADLINE = SearchAttributeKey.for_datetime("NextDeadlineAt")
SA_CATEGORY = SearchAttributeKey.for_keyword("IncidentCategory")
SA_PLAN_VERSION = SearchAttributeKey.for_keyword("PlanVersion")
# Codes and instants only: no names, titles or content (they are not encrypted by a codec).
SEARCH_ATTRIBUTES = (
    SA_PHASE,
    SA_SEVERITY,
    SA_CATEGORY,
    SA_UNIT,
    SA_NEXT_DEADLINE,
    SA_OVERDUE,
    SA_DRILL,
    SA_PLAN_VERSION,
)

# State the workflow keeps for itself and does not show.
INTERNAL_STATE = {"pending_escalations", "pending_notifications", "in_flight_deliveries"}

REPORT_KEY = "R-REPORT"
DISCOVER_KEY = "R-DISCOVER"
WRITTEN_KEY = "R-WRITTEN"
OPINION_KEY = "R-INQUIRY-OPINION"
RESULT_KEY = "R-INQUIRY-RESULT"
SUMMARY_KEY = "R-SUMMARY"

# Rules whose deadlines belong to the responsible unit and follow it when it changes.
UNIT_RULES = {
    rules.R_REPLY,
    rules.R_STANCE,
    rules.R_INQUIRY,
    rules.R_PROGRESS,
    rules.R_TRACK,
    rules.R_SUMMARY,
}
REPLY_RULES = {rules.R_REPLY, rules.R_STANCE, rules.R_INQUIRY}

# One `record` activity writes each step whole (read model, escalations, notifications); before
# it, `record`, `escalate` and `notify` ran one after another, each a round trip through the
# server (docs/PERFORMANCE.md). Histories from before it replay the old way.
ONE_WRITE_PATCH = "one-write-per-step"


class Sent:
    """What this run last sent to `record`, so each write carries only what changed since.

    Kept in memory, not in the state: a replay rebuilds it by running the same writes again, and
    a new run (continue-as-new) starts empty and sends everything once."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, object], object] = {}

    def changed(self, kind: str, items: list[T], key: Callable[[T], object]) -> list[T]:
        out = []
        for item in items:
            k = (kind, key(item))
            if self._last.get(k) != item:
                # Shallow is enough: these records hold scalars only (tests/test_sandbox.py).
                self._last[k] = item.model_copy()
                out.append(item)
        return out


LEADING = {Role.leader, Role.deputy}
OFFICE = {Role.office}


def refuse(message: str) -> ApplicationError:
    """A staff action that does not fit the incident now (wrong phase, closed, missing reason)."""
    return ApplicationError(message, type="Refused", non_retryable=True)


def forbid(message: str) -> ApplicationError:
    """A staff action by someone whose role does not allow it."""
    return ApplicationError(message, type="Forbidden", non_retryable=True)


@workflow.defn
class IncidentWorkflow:
    """Waits for the office, the units and the leading group to meet each plan deadline, and
    escalates every deadline that falls due first; closes on the summary or a withdrawal."""

    @workflow.init
    def __init__(self, inp: IncidentInput) -> None:
        self.inp = inp
        self.sub = inp.submission
        self.roster = inp.roster
        self.spec = inp.plan
        self.tz = inp.timezone
        self.speedup = self.sub.drill_speedup
        self.resumed = inp.state is not None
        if inp.state is not None:
            self.s = inp.state.model_copy(deep=True)
            self.s.runs += 1
        else:
            self.s = IncidentState(
                phase=Phase.lead if self.sub.lead else Phase.triage,
                severity=self.sub.severity or Severity.general,
                severity_assessed=self.sub.severity is not None,
                category=self.sub.category,
                responsible_unit=self.sub.responsible_unit,
                related=list(inp.related),
            )
        self._record_due = False
        self._sent = Sent()
        self._watched: dict[str, asyncio.Task[None]] = {}
        self._delivery_tasks: dict[str, asyncio.Task[None]] = {}
        self._upserted: dict[str, object] = {}
        # A resumed run (continue-as-new) has all its state already: actions may come at once.
        self._started = self.resumed

    # ------------------------------------------------------------------ run

    @workflow.run
    async def run(self, inp: IncidentInput) -> IncidentView:
        if not self.resumed:
            self._open_incident()
        self._started = True
        for d in self.s.deadlines:
            self._watch(d.key)
        for request in self.s.in_flight_deliveries:
            self._start_delivery(request)  # carried over a continue-as-new: the outbox dedupes
        self._changed()

        while True:
            await workflow.wait_condition(
                lambda: self._pending() or self.s.phase is Phase.closed or self._continue_due()
            )
            if self.s.phase is not Phase.closed and self._continue_due():
                # Effects not yet written travel in the state; the next run writes them first.
                await workflow.wait_condition(workflow.all_handlers_finished)
                self._upsert_search_attributes()
                workflow.continue_as_new(self.inp.model_copy(update={"state": self.s}))
            await self._flush()
            if self.s.phase is Phase.closed and not self._pending():
                # Deliveries still under way finish (or give up and tell the office) first.
                await workflow.wait_condition(
                    lambda: self._pending() or not self.s.in_flight_deliveries
                )
                if not self._pending():
                    break
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.view()

    def _continue_due(self) -> bool:
        info = workflow.info()
        return (
            info.get_current_history_length() >= self.inp.continue_as_new_after
            or info.is_continue_as_new_suggested()
        )

    def _open_incident(self) -> None:
        sub = self.sub
        received = self.inp.received_at
        reporter = self.roster.unit_name(sub.reporter_unit)
        flags = ("【演练】" if sub.is_drill else "") + (
            "【上级交办】" if sub.assigned_by_superior else ""
        )
        if sub.lead:
            self._event(
                "lead",
                None,
                f"{rules.R_OFFICE} 监测线索（来源：{sub.source}），待办公室确认{flags}",
            )
        else:
            self._event(
                "reported", sub.reporter_name, f"{reporter}报告舆情（来源：{sub.source}）{flags}"
            )
        if sub.assigned_by_superior:
            self._event(
                "assigned", None, f"{rules.R_ASSIGNED} 市委、市政府交办事项，按同一程序处置"
            )
        for other in self.s.related:
            self._event("related", None, f"{rules.R_DEDUP} 与事件 {other} 原帖链接相同，已关联")

        # R-DISCOVER: a measure, both instants are in the past.
        if sub.posted_at is not None:
            d = self._add_deadline(
                DISCOVER_KEY,
                rules.R_DISCOVER,
                rules.TITLES[rules.R_DISCOVER],
                anchor=sub.posted_at,
                anchor_label="发帖时间",
                due=sub.posted_at + self.spec.discover_within,
                unit=sub.reporter_unit,
                met_at=sub.discovered_at,
            )
            if sub.discovered_at > d.due_at:
                d.overdue = True
                self._account(d, rules.LATE_DISCOVERY, sub.reporter_unit, met_at=sub.discovered_at)
                late = rules.format_duration(sub.discovered_at - d.due_at)
                self._event(
                    "late_discovery", None, f"{rules.R_DISCOVER} 发帖后超过半小时才发现（晚{late}）"
                )

        # R-REPORT: a staff submission is the report; a lead waits for the office (R-OFFICE).
        report = self._add_deadline(
            REPORT_KEY,
            rules.R_REPORT,
            rules.report_title(),
            anchor=sub.discovered_at,
            anchor_label="发现时间",
            due=rules.report_due(sub.discovered_at, received, self.speedup, self.spec),
            unit=self.roster.roles.office if sub.lead else sub.reporter_unit,
            met_at=None if sub.lead else received,
        )
        if not sub.lead and received > report.due_at:
            report.overdue = True
            self._account(report, rules.LATE_REPORT, sub.reporter_unit, met_at=received)
            late = rules.format_duration(received - (sub.discovered_at + self.spec.report_within))
            self._event(
                "late_report", None, f"{rules.R_REPORT} 迟报：发现后超过1小时才报告（晚{late}）"
            )

        # R-WRITTEN: an oral report is followed by the written one within 30 minutes.
        if sub.oral:
            oral_at = sub.oral_reported_at or received
            self._add_deadline(
                WRITTEN_KEY,
                rules.R_WRITTEN,
                rules.TITLES[rules.R_WRITTEN],
                anchor=oral_at,
                anchor_label="口头报告时间",
                due=rules.plan_due(oral_at, self.spec.written_within, received, self.speedup),
                unit=sub.reporter_unit,
            )

        # R-REPLY: from discovery, by severity; general until triage says otherwise.
        self._add_reply_deadline(sub.discovered_at, "发现时间")
        self._apply_category(None)
        if sub.lead:
            self._notify(
                rules.R_OFFICE,
                self.roster.members_of(self.roster.roles.office),
                *messages.lead(self.view(), self.roster, self.tz),
            )
        else:
            self._reported(received)

    def _reported(self, at: datetime) -> None:
        """R-NOTIFY and the R-PROGRESS cadence start at the recorded instant of the report."""
        who = rules.notify_recipients(self.roster, self.s.severity, self.s.responsible_unit)
        self._notify(rules.R_NOTIFY, who, *messages.reported(self.view(), self.roster, self.tz))
        self._ensure_progress(at)

    # ------------------------------------------------------------------ queries and signals

    @workflow.query
    def view(self) -> IncidentView:
        sub = self.sub
        # Built without a dump and re-validation of the whole state (the view is made several
        # times an activation: messages, the ledger, answers): it shares the state's values, so
        # whoever gets a view reads it and never changes it.
        # The internal lists are given empty, not defaulted: pydantic inspects a default
        # factory's signature on every model_construct (0.3 ms each, most of a view's cost).
        values: dict[str, Any] = {n: [] if n in INTERNAL_STATE else v for n, v in self.s}
        values.update(
            self._facts(),
            reporter_name=sub.reporter_name,
            posted_at=sub.posted_at,
            oral=sub.oral,
            lead=sub.lead,
            assigned_by_superior=sub.assigned_by_superior,
            drill_speedup=sub.drill_speedup,
        )
        return IncidentView.model_construct(**values)

    def _done(self) -> ActionDone:
        s = self.s
        return ActionDone(
            incident_id=self.inp.incident_id,
            run_id=workflow.info().run_id,
            version=s.version,
            phase=s.phase,
            latest=s.timeline[-1] if s.timeline else None,
        )

    def _facts(self) -> dict[str, object]:
        """What the view and the read model's row both say about the submission."""
        sub = self.sub
        return {
            "id": self.inp.incident_id,
            "title": sub.title,
            "content": sub.content,
            "source": sub.source,
            "url": sub.url,
            "reporter_unit": sub.reporter_unit,
            "discovered_at": sub.discovered_at,
            "received_at": self.inp.received_at,
            "drill": sub.is_drill,
            "plan_version": self.spec.version,
        }

    @workflow.signal
    def related_reported(self, incident_id: str) -> None:
        """R-DEDUP: a later submission with this incident's URL was linked to it."""
        if incident_id not in self.s.related and self.s.phase is not Phase.closed:
            self.s.related.append(incident_id)
            self._event(
                "related",
                None,
                f"{rules.R_DEDUP} 新报告 {incident_id} 与本事件原帖链接相同，已关联",
            )
            self._changed()

    # ------------------------------------------------------------------ office and leading group

    @workflow.update
    def confirm_lead(self, action: ConfirmLead) -> ActionDone:
        now = workflow.now()
        self.s.phase = Phase.triage
        report = self._deadline(REPORT_KEY)
        self._meet(report, now)
        late = "（已超过1小时，记迟报）" if report.overdue else ""
        note = f"：{action.note}" if action.note else ""
        self._event(
            "lead_confirmed", action.actor, f"{rules.R_OFFICE} 办公室确认线索为舆情{late}{note}"
        )
        self._apply_category(None)
        self._reported(now)
        self._changed()
        return self._done()

    @confirm_lead.validator
    def _v_confirm_lead(self, action: ConfirmLead) -> None:
        self._require_open()
        self._require_role(action.actor, OFFICE, "领导小组办公室")
        if self.s.phase is not Phase.lead:
            raise refuse("该事件不是待确认的监测线索")

    @workflow.update
    def triage(self, action: Triage) -> ActionDone:
        s = self.s
        changes = []
        if action.severity != s.severity or not s.severity_assessed:
            changes.append(f"等级：{action.severity.label}")
        if action.category != s.category:
            changes.append(f"类别：{action.category.label}")
        if action.responsible_unit != s.responsible_unit:
            changes.append(f"责任单位：{self.roster.unit_name(action.responsible_unit)}")
        if sorted(action.co_units) != sorted(s.co_units):
            names = "、".join(self.roster.unit_name(u) for u in action.co_units) or "无"
            changes.append(f"协办单位：{names}")
        first = s.phase is Phase.triage
        old_category = s.category
        new_unit = action.responsible_unit != s.responsible_unit
        s.severity = action.severity
        s.severity_assessed = True
        s.category = action.category
        s.responsible_unit = action.responsible_unit
        s.co_units = list(dict.fromkeys(action.co_units))
        if s.phase is Phase.triage:
            s.phase = Phase.handling
        note = f"（{action.note}）" if action.note else ""
        self._event(
            "triaged",
            action.actor,
            ("研判：" if first else "重新研判：") + ("，".join(changes) or "无变化") + note,
        )
        self._follow_unit()
        self._move_reply_deadlines()
        self._apply_category(old_category)
        self._ensure_progress(workflow.now())
        if first or new_unit:
            who = rules.notify_recipients(self.roster, s.severity, s.responsible_unit)
            for unit in s.co_units:
                who += self.roster.members_of(unit)
            self._notify(rules.R_NOTIFY, who, *messages.assigned(self.view(), self.roster, self.tz))
        self._changed()
        return self._done()

    @triage.validator
    def _v_triage(self, action: Triage) -> None:
        self._require_open()
        self._require_role(action.actor, OFFICE | LEADING, "领导小组办公室")
        if self.s.phase is Phase.lead:
            raise refuse("请先确认监测线索（R-OFFICE）")
        if self.s.phase in (Phase.summary,):
            raise refuse("事件已平息待总结，不能重新研判")
        for unit in [action.responsible_unit, *action.co_units]:
            if self.roster.unit(unit) is None:
                raise refuse(f"单位“{unit}”不在名册中")
        if action.responsible_unit in action.co_units:
            raise refuse("牵头单位不能同时是协办单位")

    @workflow.update
    def activate(self, action: Activate) -> ActionDone:
        new = [u for u in action.units if u not in self.s.activated_units]
        self.s.activated_units.extend(new)
        names = "、".join(self.roster.unit_name(u) for u in action.units)
        note = f"（{action.note}）" if action.note else ""
        self._event(
            "activated",
            action.actor,
            f"{rules.R_ACTIVATE} 领导小组启动应急预案，{names}介入处置{note}",
        )
        who: list[str] = []
        for unit in action.units:
            who += self.roster.members_of(unit)
        self._notify(rules.R_ACTIVATE, who, *messages.activated(self.view(), self.roster, names))
        self._changed()
        return self._done()

    @activate.validator
    def _v_activate(self, action: Activate) -> None:
        self._require_open()
        self._require_role(action.actor, LEADING, "领导小组组长或副组长")
        if self.s.severity not in (Severity.major, Severity.urgent):
            raise refuse("只有重大、紧急舆情可以启动应急预案（R-ACTIVATE）")
        for unit in action.units:
            if self.roster.unit(unit) is None:
                raise refuse(f"单位“{unit}”不在名册中")

    @workflow.update
    def consult(self, action: Consult) -> ActionDone:
        who = "、".join(self.roster.person_name(p) for p in action.participants)
        people = f"（参加：{who}）" if who else ""
        self._event(
            "consulted",
            action.actor,
            f"{rules.R_CONSULT} 会商：{action.topic}。决定：{action.decision}{people}",
        )
        self._changed()
        return self._done()

    @consult.validator
    def _v_consult(self, action: Consult) -> None:
        self._require_open()
        self._require_role(action.actor, OFFICE | LEADING | {Role.member}, "领导小组或其办公室")
        for p in action.participants:
            if self.roster.person(p) is None:
                raise refuse(f"参加人员“{p}”不在名册中")

    @workflow.update
    def withdraw(self, action: Withdraw) -> ActionDone:
        now = workflow.now()
        for d in self.s.deadlines:
            if d.open:
                d.cancelled = True
                d.version += 1
        self.s.close_reason = action.reason
        self._event(
            "withdrawn", action.actor, f"{rules.R_CLOSE} 办公室撤销（误报）：{action.reason}"
        )
        self._close(now)
        return self._done()

    @withdraw.validator
    def _v_withdraw(self, action: Withdraw) -> None:
        self._require_open()
        self._require_role(action.actor, OFFICE, "领导小组办公室")

    @workflow.update
    def record_accountability(self, action: RecordAccountability) -> ActionDone:
        now = workflow.now()
        person = action.person or rules.accountable_person(self.roster, action.unit)
        n = sum(1 for a in self.s.accountability if a.deadline_key.startswith("manual#")) + 1
        self.s.accountability.append(
            AccountabilityRecord(
                deadline_key=f"manual#{n}",
                rule=rules.R_ACCOUNT,
                kind=action.kind.value,
                unit=action.unit,
                person=person,
                due_at=now,
                recorded_at=now,
                met_at=now,
                reason=action.reason,
            )
        )
        self._event(
            "accountability",
            action.actor,
            f"{rules.R_ACCOUNT} {action.kind.value}：{self.roster.unit_name(action.unit)}"
            f"（{self.roster.person_name(person)}）：{action.reason}",
        )
        self._changed()
        return self._done()

    @record_accountability.validator
    def _v_record_accountability(self, action: RecordAccountability) -> None:
        self._require_open()
        self._require_role(action.actor, OFFICE, "领导小组办公室")
        if self.roster.unit(action.unit) is None:
            raise refuse(f"单位“{action.unit}”不在名册中")
        if action.person and self.roster.person(action.person) is None:
            raise refuse(f"人员“{action.person}”不在名册中")

    @workflow.update
    def commend(self, action: Commend) -> ActionDone:
        self.s.commendations.append(
            Commendation(
                at=workflow.now(),
                unit=action.unit,
                person=action.person,
                reason=action.reason,
                by=action.actor,
            )
        )
        who = self.roster.person_name(action.person) if action.person else ""
        self._event(
            "commended",
            action.actor,
            f"{rules.R_COMMEND} 表彰：{self.roster.unit_name(action.unit)}{who}：{action.reason}",
        )
        self._changed()
        return self._done()

    @commend.validator
    def _v_commend(self, action: Commend) -> None:
        self._require_open()
        self._require_role(action.actor, OFFICE | LEADING, "领导小组或其办公室")
        if self.roster.unit(action.unit) is None:
            raise refuse(f"单位“{action.unit}”不在名册中")
        if action.person and self.roster.person(action.person) is None:
            raise refuse(f"人员“{action.person}”不在名册中")

    # ------------------------------------------------------------------ reports

    @workflow.update
    def file_written_report(self, action: WrittenReport) -> ActionDone:
        self.s.written_report = action.text
        self._meet(self._deadline(WRITTEN_KEY), workflow.now())
        self._event("written_report", action.actor, f"{rules.R_WRITTEN} 报送书面信息")
        self._changed()
        return self._done()

    @file_written_report.validator
    def _v_written(self, action: WrittenReport) -> None:
        self._require_open()
        d = self._find(WRITTEN_KEY)
        if d is None or not d.open:
            raise refuse("没有待报送的书面信息（仅电话口头报告后需要）")
        if not (
            self.roster.belongs_to(action.actor, self.sub.reporter_unit)
            or Role.office in self.roster.roles_of(action.actor)
        ):
            raise forbid("书面信息由报告单位或领导小组办公室报送")

    @workflow.update
    def report_progress(self, action: Progress) -> ActionDone:
        now = workflow.now()
        for d in self.s.deadlines:
            if d.rule == rules.R_PROGRESS and d.open:
                self._meet(d, now)
        self._event("progress", action.actor, f"{rules.R_PROGRESS} 续报：{action.text}")
        self._ensure_progress(now)
        self._changed()
        return self._done()

    @report_progress.validator
    def _v_progress(self, action: Progress) -> None:
        self._require_open()
        self._require_involved(action.actor)
        if not any(d.rule == rules.R_PROGRESS and d.open for d in self.s.deadlines):
            raise refuse("当前无需续报（仅重大、紧急舆情处置期间按期续报）")

    # ------------------------------------------------------------------ the unit's handling

    @workflow.update
    def return_to_office(self, action: ReturnToOffice) -> ActionDone:
        unit = self.s.responsible_unit
        self.s.responsible_unit = None
        self.s.phase = Phase.triage
        self._follow_unit()
        self._event(
            "returned",
            action.actor,
            f"{self.roster.unit_name(unit)}退回办公室重新研判：{action.reason}",
        )
        self._notify(
            rules.R_NOTIFY,
            self.roster.members_of(self.roster.roles.office),
            *messages.returned(self.view(), self.roster, unit, action.reason),
        )
        self._changed()
        return self._done()

    @return_to_office.validator
    def _v_return(self, action: ReturnToOffice) -> None:
        self._require_phase(Phase.handling)
        self._require_unit_member(action.actor)
        current = self._current_reply()
        if current is not None and current.status is not ReplyStatus.published:
            raise refuse("已有回复稿在办理中，不能退回")

    @workflow.update
    def declare_delay(self, action: DeclareDelay) -> ActionDone:
        s = self.s
        s.delay_reason = action.reason
        anchor, label = self._round_anchor()
        self._add_deadline(
            f"R-STANCE#{s.reply_round}",
            rules.R_STANCE,
            rules.TITLES[rules.R_STANCE],
            anchor=anchor,
            anchor_label=label,
            due=rules.plan_due(anchor, self.spec.stance_within, self.inp.received_at, self.speedup),
            unit=s.responsible_unit,
        )
        self._event(
            "delay_declared",
            action.actor,
            f"{rules.R_STANCE} 无法在回复期内办结：{action.reason}；须3日内作出表态性回复，官方回复仍须完成",
        )
        self._changed()
        return self._done()

    @declare_delay.validator
    def _v_delay(self, action: DeclareDelay) -> None:
        self._require_phase(Phase.handling)
        self._require_unit_member(action.actor)
        if self._find(f"R-STANCE#{self.s.reply_round}") is not None:
            raise refuse("本轮已声明无法按期办结")

    @workflow.update
    def conclude(self, action: Conclude) -> ActionDone:
        now = workflow.now()
        self.s.concluded_at = now
        self._add_deadline(
            RESULT_KEY,
            rules.R_INQUIRY,
            rules.TITLES[RESULT_KEY],
            anchor=now,
            anchor_label="办结时间",
            due=rules.same_day_due(now, self.inp.received_at, self.speedup, self.tz),
            unit=self.s.responsible_unit,
        )
        note = f"：{action.note}" if action.note else ""
        self._event(
            "concluded", action.actor, f"{rules.R_INQUIRY} 办结{note}；须于当日内回复处理结果"
        )
        self._changed()
        return self._done()

    @conclude.validator
    def _v_conclude(self, action: Conclude) -> None:
        self._require_phase(Phase.handling, Phase.tracking)
        self._require_unit_member(action.actor)
        if self.s.category is not Category.inquiry:
            raise refuse("办结后回复处理结果仅适用于询问、置疑、诉求类（R-INQUIRY）")
        if self.s.concluded_at is not None:
            raise refuse("已办结")

    @workflow.update
    def decide_adoption(self, action: DecideAdoption) -> ActionDone:
        self.s.adoption = ("采纳：" if action.adopted else "不予采纳：") + action.decision
        self._event("adoption", action.actor, f"{rules.R_SUGGESTION} 建议{self.s.adoption}")
        self._changed()
        return self._done()

    @decide_adoption.validator
    def _v_adoption(self, action: DecideAdoption) -> None:
        self._require_phase(Phase.handling, Phase.tracking)
        self._require_unit_member(action.actor)
        if self.s.category is not Category.suggestion:
            raise refuse("采纳决定仅适用于建议类舆情（R-SUGGESTION）")

    @workflow.update
    def report_spreading(self, action: ReportSpreading) -> ActionDone:
        self._refer(rules.R_HYPE, action.description, action.actor)
        self._event(
            "spreading",
            action.actor,
            f"{rules.R_HYPE} 告知事实真相后仍继续恶意传播：{action.description}",
        )
        self._changed()
        return self._done()

    @report_spreading.validator
    def _v_spreading(self, action: ReportSpreading) -> None:
        self._require_open()
        self._require_involved(action.actor)
        if self.s.category is not Category.hype:
            raise refuse("仅恶意传播或炒作类舆情适用（R-HYPE）")
        if self.s.facts_published_at is None:
            raise refuse("须先依法告知事实真相（发布官方回复）")
        if any(r.rule == rules.R_HYPE for r in self.s.referrals):
            raise refuse("已商请执纪执法部门查处")

    # ------------------------------------------------------------------ replies

    @workflow.update
    def draft_reply(self, action: DraftReply) -> ActionDone:
        current = self._current_reply()
        now = workflow.now()
        if current is None or current.status is ReplyStatus.published:
            self.s.replies.append(
                ReplyRound(
                    round=len(self.s.replies) + 1,
                    kind=action.kind,
                    status=ReplyStatus.drafted,
                    text=action.text,
                    drafted_by=action.actor,
                    drafted_at=now,
                )
            )
        else:
            # A redraft replaces the text and needs fresh approvals (R-REVIEW, R-RELEASE).
            current.kind = action.kind
            current.text = action.text
            current.status = ReplyStatus.drafted
            current.drafted_by = action.actor
            current.drafted_at = now
            current.approved_by = current.approved_at = current.comment = None
            current.release_needed = False
            current.released_by = current.released_at = current.spokesperson = None
        self._event(
            "reply_drafted",
            action.actor,
            f"起草{action.kind.label}，待单位负责人审定（{rules.R_REVIEW}）",
        )
        unit = self.roster.unit(self.s.responsible_unit) if self.s.responsible_unit else None
        if unit is not None:
            self._notify(
                rules.R_REVIEW,
                [unit.head, unit.first_responsible],
                *messages.review_requested(self.view(), self.roster),
            )
        self._changed()
        return self._done()

    @draft_reply.validator
    def _v_draft(self, action: DraftReply) -> None:
        self._require_phase(Phase.handling, Phase.tracking)
        self._require_unit_member(action.actor)
        s = self.s
        reply = self._find(f"R-REPLY#{s.reply_round}")
        if action.kind is ReplyKind.stance:
            stance = self._find(f"R-STANCE#{s.reply_round}")
            if stance is None or not stance.open:
                raise refuse("须先声明无法在回复期内办结，方可作表态性回复（R-STANCE）")
        elif action.kind is ReplyKind.result:
            if s.category is not Category.inquiry:
                raise refuse("处理结果回复仅适用于询问、置疑、诉求类（R-INQUIRY）")
            result = self._find(RESULT_KEY)
            immediate = result is None and reply is not None and reply.open
            if not immediate and (result is None or not result.open):
                raise refuse("没有待回复的处理结果")
        else:
            if s.phase is not Phase.handling or reply is None or not reply.open:
                raise refuse("本轮官方回复已发布（每轮一次）")
        if (
            action.kind is not ReplyKind.stance
            and s.category is Category.suggestion
            and not s.adoption
        ):
            raise refuse("须先作出采纳决定（R-SUGGESTION）")

    @workflow.update
    def approve_reply(self, action: ApproveReply) -> ActionDone:
        current = self._current_reply()
        assert current is not None  # the validator ensured it
        now = workflow.now()
        if action.approve:
            current.status = ReplyStatus.approved
            current.approved_by = action.actor
            current.approved_at = now
            current.comment = action.comment
            current.release_needed = rules.needs_release(self.s.severity)
            then = "，待领导小组审定口径和发布人（R-RELEASE）" if current.release_needed else ""
            self._event(
                "reply_approved", action.actor, f"单位负责人审定通过{current.kind.label}{then}"
            )
            if current.release_needed:
                lg = self.roster.leading_group
                self._notify(
                    rules.R_RELEASE,
                    [lg.leader, lg.deputy],
                    *messages.release_requested(self.view(), self.roster),
                )
        else:
            current.status = ReplyStatus.rejected
            current.comment = action.comment
            self._event("reply_rejected", action.actor, f"单位负责人退回回复稿：{action.comment}")
        self._changed()
        return self._done()

    @approve_reply.validator
    def _v_approve(self, action: ApproveReply) -> None:
        self._require_phase(Phase.handling, Phase.tracking)
        if not self.roster.is_head_of(action.actor, self.s.responsible_unit):
            raise forbid(
                f"只有责任单位（{self.roster.unit_name(self.s.responsible_unit)}）负责人可以审定回复（R-REVIEW）"
            )
        current = self._current_reply()
        if current is None or current.status is not ReplyStatus.drafted:
            raise refuse(self._why_not_pending(current, "没有待审定的回复稿"))
        if not action.approve and not action.comment:
            raise refuse("退回回复稿须说明理由")

    @workflow.update
    def approve_release(self, action: ApproveRelease) -> ActionDone:
        current = self._current_reply()
        assert current is not None
        if action.approve:
            current.released_by = action.actor
            current.released_at = workflow.now()
            current.spokesperson = action.spokesperson
            self._event(
                "release_approved",
                action.actor,
                f"{rules.R_RELEASE} 领导小组审定发布口径，发布人：{self.roster.person_name(action.spokesperson)}",
            )
        else:
            current.status = ReplyStatus.rejected
            current.comment = action.comment
            self._event(
                "release_rejected",
                action.actor,
                f"{rules.R_RELEASE} 领导小组退回发布口径：{action.comment}",
            )
        self._changed()
        return self._done()

    @approve_release.validator
    def _v_release(self, action: ApproveRelease) -> None:
        self._require_phase(Phase.handling, Phase.tracking)
        self._require_role(action.actor, LEADING, "领导小组组长或副组长")
        current = self._current_reply()
        if current is None or current.status is not ReplyStatus.approved:
            if current is not None and current.status is ReplyStatus.drafted:
                raise refuse("没有待领导小组审定的回复（须先经单位负责人审定）")
            raise refuse(self._why_not_pending(current, "没有待领导小组审定的回复"))
        if current.released_by is not None:
            raise refuse(
                f"{current.kind.label}的发布口径已由{self.roster.person_name(current.released_by)}"
                f"审定（发布人：{self.roster.person_name(current.spokesperson)}），无需重复审定"
            )
        if not current.release_needed:
            raise refuse(
                "此回复经单位负责人审定即可发布，无须领导小组审定（仅重大、紧急舆情须审定，R-RELEASE）"
            )
        if action.approve and not action.spokesperson:
            raise refuse("须确定发布人")
        if action.spokesperson and self.roster.person(action.spokesperson) is None:
            raise refuse(f"发布人“{action.spokesperson}”不在名册中")
        if not action.approve and not action.comment:
            raise refuse("退回须说明理由")

    @workflow.update
    def publish_reply(self, action: PublishReply) -> ActionDone:
        s = self.s
        current = self._current_reply()
        assert current is not None
        now = workflow.now()
        current.status = ReplyStatus.published
        current.published_by = action.actor
        current.published_at = now
        current.channel = action.channel
        current.url = action.url
        met: list[Deadline] = []
        reply = self._find(f"R-REPLY#{s.reply_round}")
        if current.kind is ReplyKind.stance:
            met.append(self._deadline(f"R-STANCE#{s.reply_round}"))
        elif current.kind is ReplyKind.result:
            result = self._find(RESULT_KEY)
            if result is not None and result.open:
                met.append(result)
            else:
                # 能当即回复的要当即回复: an immediate reply settles both the opinion and the result.
                s.concluded_at = now
            # A result reply is an official reply too: whatever of the round is still owed is met.
            met += [d for d in (reply, self._find(OPINION_KEY)) if d is not None and d.open]
        else:
            met += [d for d in (reply, self._find(OPINION_KEY)) if d is not None and d.open]
        for d in met:
            self._meet(d, now)
        stance = self._find(f"R-STANCE#{s.reply_round}")
        if current.kind is not ReplyKind.stance and stance is not None and stance.open:
            self._cancel(stance)  # the official reply came first: no stance reply is owed
        late = [d.title for d in met if d.overdue]
        suffix = f"（逾期：{'、'.join(late)}）" if late else ""
        self._event(
            "reply_published", action.actor, f"发布{current.kind.label}（{action.channel}）{suffix}"
        )
        if (
            current.kind is not ReplyKind.stance
            and s.category is Category.hype
            and s.facts_published_at is None
        ):
            s.facts_published_at = now
            self._event("facts_published", action.actor, f"{rules.R_HYPE} 已依法告知事实真相")
        if current.kind is not ReplyKind.stance and s.category is Category.fabrication:
            self._event("clarified", action.actor, f"{rules.R_FABRICATION} 已依法澄清事实真相")
        if reply is not None and reply.met_at is not None and s.phase is Phase.handling:
            s.phase = Phase.tracking
            self._next_track(now)
        self._changed()
        return self._done()

    @publish_reply.validator
    def _v_publish(self, action: PublishReply) -> None:
        self._require_phase(Phase.handling, Phase.tracking)
        self._require_unit_member(action.actor)
        current = self._current_reply()
        if current is None or current.status is not ReplyStatus.approved:
            raise refuse(
                self._why_not_pending(current, "回复须经单位负责人审定后方可发布（R-REVIEW）")
            )
        if current.release_needed and current.released_by is None:
            raise refuse("重大、紧急舆情的回复须经领导小组审定口径和发布人后方可发布（R-RELEASE）")

    # ------------------------------------------------------------------ after the reply

    @workflow.update
    def track(self, action: Track) -> ActionDone:
        s = self.s
        now = workflow.now()
        for d in s.deadlines:
            if d.rule == rules.R_TRACK and d.open:
                self._meet(d, now)
        note = f"：{action.note}" if action.note else ""
        self._event(
            "tracked", action.actor, f"{rules.R_TRACK} 跟踪检查：{action.status.label}{note}"
        )
        if action.status is TrackStatus.active:
            self._next_track(now)
        elif action.status is TrackStatus.subsided:
            s.subsided_at = now
            s.phase = Phase.summary
            self._stop_progress()
            self._add_deadline(
                SUMMARY_KEY,
                rules.R_SUMMARY,
                rules.TITLES[rules.R_SUMMARY],
                anchor=now,
                anchor_label="平息时间",
                due=rules.plan_due(
                    now, self.spec.summary_within, self.inp.received_at, self.speedup
                ),
                unit=s.responsible_unit,
            )
        else:
            # A flare-up: back to handling with a new official-reply round from now.
            if action.severity is not None and action.severity != s.severity:
                self._event("severity_raised", action.actor, f"舆情升级为{action.severity.label}")
                s.severity = action.severity
            s.phase = Phase.handling
            s.reply_round += 1
            self._add_reply_deadline(now, "再次升温时间")
            self._ensure_progress(now)
            who = rules.notify_recipients(self.roster, s.severity, s.responsible_unit)
            self._notify(rules.R_TRACK, who, *messages.flared(self.view(), self.roster, self.tz))
        self._changed()
        return self._done()

    @track.validator
    def _v_track(self, action: Track) -> None:
        self._require_phase(Phase.tracking)
        self._require_involved(action.actor)
        order = list(Severity)
        if action.severity is not None and order.index(action.severity) < order.index(
            self.s.severity
        ):
            raise refuse("再次升温时只能维持或提高舆情等级")
        if action.severity is not None and action.status is not TrackStatus.flared:
            raise refuse("只有再次升温时可以调整等级")

    @workflow.update
    def submit_summary(self, action: SubmitSummary) -> ActionDone:
        now = workflow.now()
        self.s.summary = action.text
        self._meet(self._deadline(SUMMARY_KEY), now)
        self._event("summary", action.actor, f"{rules.R_SUMMARY} 书面总结报送镇党政办")
        self._notify(
            rules.R_SUMMARY,
            self.roster.members_of(self.roster.roles.party_office),
            *messages.summary(self.view(), self.roster, action.text),
        )
        self._close(now)
        return self._done()

    @submit_summary.validator
    def _v_summary(self, action: SubmitSummary) -> None:
        self._require_phase(Phase.summary)
        self._require_involved(action.actor)
        owed = [d.title for d in self.s.deadlines if d.open and d.rule in REPLY_RULES]
        if owed:
            raise refuse(f"须先完成：{'、'.join(owed)}")

    # ------------------------------------------------------------------ deadlines

    def _add_deadline(
        self,
        key: str,
        rule: str,
        title: str,
        *,
        anchor: datetime,
        anchor_label: str,
        due: datetime,
        unit: str | None,
        met_at: datetime | None = None,
    ) -> Deadline:
        d = Deadline(
            key=key,
            rule=rule,
            title=title,
            anchor_at=anchor,
            anchor_label=anchor_label,
            window_start=rules.plan_due(anchor, timedelta(0), self.inp.received_at, self.speedup)
            if self.speedup
            else anchor,
            due_at=due,
            unit=unit,
            met_at=met_at,
        )
        self.s.deadlines.append(d)
        if self._started:
            self._watch(key)
        return d

    def _find(self, key: str) -> Deadline | None:
        return next((d for d in self.s.deadlines if d.key == key), None)

    def _deadline(self, key: str) -> Deadline:
        d = self._find(key)
        assert d is not None, key
        return d

    def _meet(self, d: Deadline, at: datetime) -> None:
        d.met_at = at
        d.version += 1
        for rec in self.s.accountability:
            if rec.deadline_key == d.key and rec.met_at is None:
                rec.met_at = at

    def _cancel(self, d: Deadline) -> None:
        d.cancelled = True
        d.version += 1

    def _round_anchor(self) -> tuple[datetime, str]:
        d = self._deadline(f"R-REPLY#{self.s.reply_round}")
        assert d.anchor_at is not None
        return d.anchor_at, d.anchor_label or "发现时间"

    def _add_reply_deadline(self, anchor: datetime, label: str) -> None:
        """R-REPLY: 12 h / 24 h / 3 h by severity from discovery (or from a flare-up)."""
        s = self.s
        self._add_deadline(
            f"R-REPLY#{s.reply_round}",
            rules.R_REPLY,
            rules.reply_title(s.severity),
            anchor=anchor,
            anchor_label=label,
            due=rules.plan_due(
                anchor, self.spec.reply_within[s.severity], self.inp.received_at, self.speedup
            ),
            unit=s.responsible_unit,
        )

    def _move_reply_deadlines(self) -> None:
        """A changed severity moves the open reply deadline; the change is on the timeline."""
        d = self._find(f"R-REPLY#{self.s.reply_round}")
        if d is None or not d.open or d.anchor_at is None:
            return
        due = rules.plan_due(
            d.anchor_at, self.spec.reply_within[self.s.severity], self.inp.received_at, self.speedup
        )
        if due == d.due_at:
            return
        old = d.due_at
        d.due_at = due
        d.title = rules.reply_title(self.s.severity)
        d.version += 1
        d.warned = False
        if d.overdue and workflow.now() < due:
            # The new severity gives more time: no longer overdue, the chain starts afresh.
            d.overdue = False
            d.escalation_step = 0
            d.last_step_at = None
        self._event(
            "deadline_moved",
            None,
            f"{rules.R_REPLY} 回复期限调整：{messages.local(old, self.tz)} → {messages.local(due, self.tz)}",
        )

    def _follow_unit(self) -> None:
        """Open deadlines of the unit's rules follow the responsible unit (and its chain)."""
        for d in self.s.deadlines:
            if d.open and d.rule in UNIT_RULES and d.unit != self.s.responsible_unit:
                d.unit = self.s.responsible_unit
                d.version += 1

    def _apply_category(self, old: Category | None) -> None:
        """Category rules: R-INQUIRY's same-day opinion, R-FABRICATION's referral. Idempotent:
        called on every triage, it only adds what the current category owes and is not there."""
        s = self.s
        opinion = self._find(OPINION_KEY)
        reply = self._find("R-REPLY#1")
        owed = s.phase is not Phase.lead and (reply is None or reply.open)
        if s.category is Category.inquiry and owed:
            if opinion is None:
                sub = self.sub
                self._add_deadline(
                    OPINION_KEY,
                    rules.R_INQUIRY,
                    rules.TITLES[OPINION_KEY],
                    anchor=sub.discovered_at,
                    anchor_label="发现时间",
                    due=rules.same_day_due(
                        sub.discovered_at, self.inp.received_at, self.speedup, self.tz
                    ),
                    unit=s.responsible_unit,
                )
            elif opinion.cancelled:
                # Back to inquiry: the same-day opinion is owed again, still from discovery.
                opinion.cancelled = False
                opinion.version += 1
                self._watch(OPINION_KEY)
        elif s.category is not Category.inquiry:
            for key in (OPINION_KEY, RESULT_KEY):
                d = self._find(key)
                if d is not None and d.open:
                    self._cancel(d)
        if s.category is Category.hype and s.facts_published_at is None:
            # Re-triaged as hype after a reply went out: that reply made the facts public.
            out = [r for r in s.replies if r.published_at and r.kind is not ReplyKind.stance]
            if out:
                s.facts_published_at = out[0].published_at
        if (
            s.category is Category.fabrication
            and s.phase in (Phase.handling, Phase.tracking)
            and not any(r.rule == rules.R_FABRICATION for r in s.referrals)
        ):
            self._refer(rules.R_FABRICATION, "捏造、歪曲或夸大事实，依法澄清并商请查处", None)
        if old is not None and s.category is not old:
            label = s.category.label if s.category else "未定"
            self._event("category_changed", None, f"类别由“{old.label}”改为“{label}”，期限随之调整")

    def _refer(self, rule: str, reason: str, by: str | None) -> None:
        """R-HYPE / R-FABRICATION: create, send and record a referral."""
        s = self.s
        assert s.category is not None
        _, target = rules.referral_contact(self.roster, s.category)
        s.referrals.append(
            Referral(
                no=len(s.referrals) + 1,
                rule=rule,
                at=workflow.now(),
                target=target,
                reason=reason,
                by=by,
            )
        )
        self._event(
            "referred", by, f"{rule} 商请{self.roster.person_name(target)}依纪依法查处：{reason}"
        )
        self._notify(rule, [target], *messages.referral(self.view(), self.roster, rule, reason))

    def _ensure_progress(self, since: datetime) -> None:
        """R-PROGRESS: major and urgent incidents owe a 续报 every interval until they subside."""
        s = self.s
        if s.phase in (Phase.lead, Phase.summary, Phase.closed):
            return
        interval = rules.progress_interval(self.spec, s.severity)
        open_ = [d for d in s.deadlines if d.rule == rules.R_PROGRESS and d.open]
        if interval is None:
            for d in open_:
                self._cancel(d)
            return
        if open_:
            for d in open_:
                # A changed severity changes the cadence; the last report still anchors it.
                assert d.anchor_at is not None
                due = rules.plan_due(d.anchor_at, interval, d.anchor_at, self.speedup)
                if due != d.due_at:
                    d.due_at = due
                    d.version += 1
                    d.warned = False
            return
        s.progress_round += 1
        self._add_deadline(
            f"R-PROGRESS#{s.progress_round}",
            rules.R_PROGRESS,
            rules.TITLES[rules.R_PROGRESS],
            anchor=since,
            anchor_label="上次报告时间",
            due=rules.plan_due(since, interval, since, self.speedup),
            unit=s.responsible_unit,
        )

    def _stop_progress(self) -> None:
        for d in self.s.deadlines:
            if d.rule == rules.R_PROGRESS and d.open:
                self._cancel(d)

    def _next_track(self, since: datetime) -> None:
        """R-TRACK: the next tracking check, one interval after the last."""
        s = self.s
        s.track_round += 1
        self._add_deadline(
            f"R-TRACK#{s.track_round}",
            rules.R_TRACK,
            rules.TITLES[rules.R_TRACK],
            anchor=since,
            anchor_label="上次检查时间",
            due=rules.plan_due(since, self.spec.track_interval, since, self.speedup),
            unit=s.responsible_unit,
        )

    def _close(self, at: datetime) -> None:
        """R-CLOSE: no action is accepted after this."""
        self._stop_progress()
        self.s.phase = Phase.closed
        self.s.closed_at = at
        self._event(
            "closed",
            None,
            "结案" + (f"（撤销：{self.s.close_reason}）" if self.s.close_reason else ""),
        )
        self._changed()

    def _watch(self, key: str) -> None:
        if key in self._watched or not self._deadline(key).open:
            return
        get: Callable[[], Deadline] = lambda: self._deadline(key)  # noqa: E731

        def chain() -> list[rules.EscalationStep]:
            waits = [timedelta(minutes=m) for m in self.inp.escalation_waits_minutes]
            return rules.escalation_chain(self.roster, get().unit, waits)

        async def watch() -> None:
            try:
                await watch_deadline(
                    get,
                    chain,
                    on_warn=self._on_warn,
                    on_miss=self._on_miss,
                    on_step=self._on_escalation_step,
                    warn_at=self.spec.warn_at,
                    speedup=self.speedup,
                )
            finally:
                self._watched.pop(key, None)

        self._watched[key] = asyncio.create_task(watch())

    def _on_warn(self, d: Deadline) -> None:
        """临期提醒: once, to the owning unit (or the office), before the deadline falls due."""
        d.warned = True
        who = self.roster.members_of(d.unit or self.roster.roles.office)
        self._event(
            "deadline_warning",
            None,
            f"临期提醒：{d.title}，期限{messages.local(d.due_at, self.tz)}",
        )
        self._notify(d.rule, who, *messages.warning(self.view(), self.roster, self.tz, d))
        self._changed()

    def _on_miss(self, d: Deadline) -> None:
        """R-ACCOUNT: a deadline passed unmet is an accountability record on the unit."""
        d.overdue = True
        unit = d.unit or self.roster.roles.office
        self._account(d, rules.miss_kind(d.rule), unit)
        self._event(
            "deadline_missed",
            None,
            f"{d.title}：已逾期（{rules.R_ACCOUNT} 记{rules.miss_kind(d.rule)}）",
        )
        self._changed()

    def _on_escalation_step(self, d: Deadline, step: rules.EscalationStep) -> None:
        """R-ESCALATE: record the step, tell its targets; the next step waits its turn."""
        now = workflow.now()
        d.escalation_step = step.step
        d.last_step_at = now
        names = "、".join(self.roster.person_name(t) for t in step.targets)
        summary = f"{rules.R_ESCALATE} 第{step.step}级: {step.label}"
        esc = Escalation(
            deadline_key=d.key,
            rule=d.rule,
            step=step.step,
            at=now,
            targets=list(step.targets),
            summary=summary,
        )
        self.s.escalations.append(esc)
        self.s.pending_escalations.append(esc)
        self._event("escalated", None, f"{summary}（{d.title}逾期，通知{names}）")
        subject, body = messages.escalation(self.view(), self.roster, self.tz, d, step, now)
        self._notify(rules.R_ESCALATE, list(step.targets), subject, body)
        self._changed()

    def _account(self, d: Deadline, kind: str, unit: str, met_at: datetime | None = None) -> None:
        self.s.accountability.append(
            AccountabilityRecord(
                deadline_key=d.key,
                rule=d.rule,
                kind=kind,
                unit=unit,
                person=rules.accountable_person(self.roster, unit),
                due_at=d.due_at,
                recorded_at=workflow.now(),
                met_at=met_at,
            )
        )

    # ------------------------------------------------------------------ checks for validators

    def _require_open(self) -> None:
        if not self._started:
            # An update can arrive in the same activation as the start, before the deadlines exist.
            raise ApplicationError("事件正在创建，请稍后重试", type="NotReady", non_retryable=True)
        if self.s.phase is Phase.closed:
            raise refuse("事件已结案，不再接受操作")

    def _require_phase(self, *phases: Phase) -> None:
        self._require_open()
        if self.s.phase not in phases:
            wanted = "或".join(f"“{p.label}”" for p in phases)
            raise refuse(f"事件当前处于“{self.s.phase.label}”阶段，此操作须在{wanted}阶段进行")

    def _require_role(self, actor: str, allowed: set[Role], label: str) -> None:
        roles = self.roster.roles_of(actor)
        if not roles:
            raise forbid(f"人员“{actor}”不在名册中")
        if not roles & allowed:
            raise forbid(f"此操作只能由{label}执行")

    def _require_unit_member(self, actor: str) -> None:
        if self.roster.person(actor) is None:
            raise forbid(f"人员“{actor}”不在名册中")
        if not self.roster.belongs_to(actor, self.s.responsible_unit):
            raise forbid(
                f"此操作只能由责任单位（{self.roster.unit_name(self.s.responsible_unit)}）人员执行"
            )

    def _require_involved(self, actor: str) -> None:
        """The lead unit, a co-handling unit, or the office."""
        roles = self.roster.roles_of(actor)
        if not roles:
            raise forbid(f"人员“{actor}”不在名册中")
        units = [self.s.responsible_unit, *self.s.co_units]
        if Role.office in roles or any(self.roster.belongs_to(actor, u) for u in units):
            return
        raise forbid("此操作只能由责任单位、协办单位或领导小组办公室执行")

    def _current_reply(self) -> ReplyRound | None:
        return self.s.replies[-1] if self.s.replies else None

    def _why_not_pending(self, current: ReplyRound | None, refusal: str) -> str:
        """A validator's refusal that says where the reply is, so a second click or a colleague
        who acted at the same moment learns it was already done, and by whom."""
        name = self.roster.person_name
        if current is None:
            return refusal
        if current.status is ReplyStatus.published:
            at = messages.local(current.published_at, self.tz) if current.published_at else ""
            return (
                f"{current.kind.label}已由{name(current.published_by)}于{at}发布"
                f"（{current.channel}），无需重复操作"
            )
        if current.status is ReplyStatus.approved:
            return f"{current.kind.label}已由{name(current.approved_by)}审定通过，无需重复审定"
        if current.status is ReplyStatus.rejected:
            return f"{refusal}；回复稿已退回（{current.comment}），待重新起草"
        return refusal

    # ------------------------------------------------------------------ effects

    def _event(self, kind: str, actor: str | None, summary: str) -> None:
        self.s.timeline.append(
            TimelineEntry(
                seq=len(self.s.timeline) + 1,
                at=workflow.now(),
                kind=kind,
                actor=actor,
                summary=summary,
            )
        )

    def _notify(self, rule: str, person_ids: list[str], subject: str, body: str) -> None:
        # R-DUTY: every notification about the incident reaches the responsible unit's
        # first-responsible person (and the co-handling units'), whoever else it is for.
        person_ids = list(person_ids)
        for unit_id in [self.s.responsible_unit, *self.s.co_units]:
            unit = self.roster.unit(unit_id) if unit_id else None
            if unit is not None:
                person_ids.append(unit.first_responsible)
        involved = {self.sub.reporter_unit, self.s.responsible_unit, *self.s.co_units}
        involved |= set(self.s.activated_units)
        recipients = []
        for pid in dict.fromkeys(person_ids):
            p = self.roster.person(pid)
            if p is not None:
                recipients.append(Recipient(person_id=p.id, name=p.name, channels=list(p.channels)))
        for unit in self.roster.units:
            # A unit's group chat hears what its head is told about an incident the unit is
            # part of (not, say, what its head is told as a member of the leading group).
            if unit.channels and unit.id in involved and unit.head in person_ids:
                recipients.append(
                    Recipient(
                        person_id=f"unit:{unit.id}", name=unit.name, channels=list(unit.channels)
                    )
                )
        incident_id = self.inp.incident_id
        self.s.notify_seq += 1
        self.s.pending_notifications.append(
            Notification(
                key=f"{incident_id}:n{self.s.notify_seq}:{rule}",
                incident_id=incident_id,
                rule=rule,
                recipients=recipients,
                subject=subject,
                body=body,
                link=f"{self.inp.public_url.rstrip('/')}/incidents/{incident_id}",
                drill=self.sub.is_drill,
                sent_at=workflow.now(),
            )
        )

    def _changed(self) -> None:
        self.s.version += 1
        self._record_due = True

    def _pending(self) -> bool:
        return (
            self._record_due
            or bool(self.s.pending_escalations)
            or bool(self.s.pending_notifications)
        )

    async def _flush(self) -> None:
        """Write queued effects: the read model, escalation steps and messages in one activity
        (one transaction), then each external channel in the background."""
        self._upsert_search_attributes()
        if self._record_due:
            # The ledger on the Temporal UI's page, once per write rather than once per change.
            workflow.set_current_details(messages.ledger(self.view(), self.roster, self.tz))
        if not workflow.patched(ONE_WRITE_PATCH):
            await self._flush_in_steps()
            return
        self._record_due = False
        new = [e for e in self.s.timeline if e.seq > self.s.recorded_seq]
        escalations, self.s.pending_escalations = self.s.pending_escalations, []
        notes, self.s.pending_notifications = self.s.pending_notifications, []
        s, sent = self.s, self._sent
        request = RecordRequest(
            incident=self._row(),
            deadlines=sent.changed("deadline", s.deadlines, lambda d: d.key),
            timeline=new,
            accountability=sent.changed(
                "accountability", s.accountability, lambda a: (a.deadline_key, a.recorded_at)
            ),
            referrals=sent.changed("referral", s.referrals, lambda r: r.no),
            commendations=sent.changed("commendation", s.commendations, lambda c: (c.at, c.unit)),
            escalations=escalations,
            notifications=notes,
        )
        # What the Temporal UI shows for the step: an escalation first, as `escalate` used to.
        if escalations:
            parts = [e.summary for e in escalations]
        else:
            parts = [f"记录：{new[-1].summary if new else '状态'}"]
        parts += [f"{n.rule} 通知：{n.subject}" for n in notes]
        what = "；".join(parts)
        await workflow.execute_activity(
            "record",
            request,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=RETRY_FOREVER,
            summary=what[:200],
        )
        self.s.recorded_seq = max([self.s.recorded_seq] + [e.seq for e in new])
        for note in notes:
            self._start_deliveries(note)

    async def _flush_in_steps(self) -> None:
        """Before ONE_WRITE_PATCH: the read model first, then each escalation step, then each
        message, one activity after another (kept so those histories replay)."""
        if self._record_due:
            self._record_due = False
            new = [e for e in self.s.timeline if e.seq > self.s.recorded_seq]
            request = RecordRequest(
                incident=self._row(),
                deadlines=list(self.s.deadlines),
                timeline=new,
                accountability=list(self.s.accountability),
                referrals=list(self.s.referrals),
                commendations=list(self.s.commendations),
            )
            await workflow.execute_activity(
                "record",
                request,
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=RETRY_FOREVER,
                summary=f"记录：{new[-1].summary if new else '状态'}"[:200],
            )
            self.s.recorded_seq = max([self.s.recorded_seq] + [e.seq for e in new])
        escalations, self.s.pending_escalations = self.s.pending_escalations, []
        for esc in escalations:
            await workflow.execute_activity(
                "escalate",
                EscalateRequest(
                    incident_id=self.inp.incident_id, escalation=esc, drill=self.sub.is_drill
                ),
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=RETRY_FOREVER,
                summary=esc.summary,
            )
        notes, self.s.pending_notifications = self.s.pending_notifications, []
        if notes:
            await asyncio.gather(*(self._deliver(n) for n in notes))

    async def _deliver(self, note: Notification) -> None:
        """The inbox and the outbox rows at once (retried until written); then each external
        channel in its own background activity, so nothing here waits on a channel."""
        await workflow.execute_activity(
            "notify",
            note,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=RETRY_FOREVER,
            summary=f"{note.rule} 通知：{note.subject}"[:200],
        )
        self._start_deliveries(note)

    def _start_deliveries(self, note: Notification) -> None:
        """Each external channel of a written notification, in the background."""
        for request in deliveries_for(note):
            self.s.in_flight_deliveries.append(request)
            self._start_delivery(request)

    def _start_delivery(self, request: DeliverRequest) -> None:
        self._delivery_tasks[request.key] = asyncio.create_task(self._run_delivery(request))

    async def _run_delivery(self, request: DeliverRequest) -> None:
        """A failed channel is recorded and reported to the office by `deliver`; the incident's
        timeline shows it too."""
        try:
            office = self.roster.members_of(self.roster.roles.office)
            reason = await deliver(request, office, self.inp.delivery_give_up_minutes)
            if reason is not None:
                self._event(
                    "delivery_failed",
                    None,
                    f"通知发送失败：{request.recipient.name}（{request.target}）：{reason}",
                )
                self._changed()
        finally:
            self.s.in_flight_deliveries = [
                r for r in self.s.in_flight_deliveries if r.key != request.key
            ]
            self._delivery_tasks.pop(request.key, None)

    def _row(self) -> IncidentRow:
        s = self.s
        return IncidentRow(
            **self._facts(),
            version=s.version,
            reporter_name=self.sub.reporter_name,
            posted_at=self.sub.posted_at,
            responsible_unit=s.responsible_unit,
            co_units=",".join(s.co_units),
            severity=s.severity.value,
            category=s.category.value if s.category else None,
            phase=s.phase.value,
            next_due_at=self._next_due(),
            overdue=any(d.overdue and d.open for d in s.deadlines),
            closed_at=s.closed_at,
        )

    def _next_due(self) -> datetime | None:
        open_ = [d.due_at for d in self.s.deadlines if d.open]
        return min(open_) if open_ else None

    def _upsert_search_attributes(self) -> None:
        if not self.inp.search_attributes:
            return
        s = self.s
        values: dict[str, object] = {
            SA_PHASE.name: s.phase.value,
            SA_SEVERITY.name: s.severity.value,
            SA_UNIT.name: s.responsible_unit or "",
            SA_OVERDUE.name: any(d.overdue and d.open for d in s.deadlines),
            SA_DRILL.name: self.sub.is_drill,
            SA_NEXT_DEADLINE.name: self._next_due(),
            SA_CATEGORY.name: s.category.value if s.category else None,
            SA_PLAN_VERSION.name: self.inp.plan_version,
        }
        if values == self._upserted:
            return
        updates = []
        for key in SEARCH_ATTRIBUTES:
            value = values[key.name]
            if self._upserted.get(key.name, object()) == value:
                continue
            updates.append(key.value_unset() if value is None else key.value_set(value))  # type: ignore[arg-type]
        self._upserted = values
        workflow.upsert_search_attributes(updates)
