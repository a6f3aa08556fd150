"""IncidentWorkflow: one public-opinion incident from report to close.

It waits for the office's triage, the unit's draft, the unit head's approval and the publication,
while every plan deadline runs as a durable timer (workflows/deadlines.py). Staff actions are
validated updates: a refused action never enters history. State changes are queued as effects and
written by activities in order: the read model (record), escalation steps (escalate) and messages
(notify).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.messages import (
        EscalateRequest,
        IncidentRow,
        Notification,
        Recipient,
        RecordRequest,
    )
    from plan import messages, rules
    from plan.models import (
        AccountabilityRecord,
        ApproveReply,
        Deadline,
        DraftReply,
        Escalation,
        IncidentInput,
        IncidentView,
        Phase,
        PublishReply,
        ReplyRound,
        ReplyStatus,
        Severity,
        TimelineEntry,
        Triage,
    )
    from plan.roster import Role
    from workflows.deadlines import watch_deadline

SA_PHASE = SearchAttributeKey.for_keyword("IncidentPhase")
SA_SEVERITY = SearchAttributeKey.for_keyword("IncidentSeverity")
SA_UNIT = SearchAttributeKey.for_keyword("ResponsibleUnit")
SA_OVERDUE = SearchAttributeKey.for_bool("Overdue")
SA_DRILL = SearchAttributeKey.for_bool("IsDrill")
SA_NEXT_DEADLINE = SearchAttributeKey.for_datetime("NextDeadlineAt")
SEARCH_ATTRIBUTES = (SA_PHASE, SA_SEVERITY, SA_UNIT, SA_OVERDUE, SA_DRILL, SA_NEXT_DEADLINE)

# Writes to the read model and to people must eventually succeed: retry without limit, backing
# off to once a minute, so a database or network outage delays them but never loses them.
RETRY_FOREVER = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
)
ACTIVITY_TIMEOUT = timedelta(seconds=30)

REPLY_KEY = "R-REPLY#1"
REPORT_KEY = "R-REPORT"


def refuse(message: str) -> ApplicationError:
    """A staff action that does not fit the incident now (wrong phase, closed, missing reason)."""
    return ApplicationError(message, type="Refused", non_retryable=True)


def forbid(message: str) -> ApplicationError:
    """A staff action by someone whose role does not allow it."""
    return ApplicationError(message, type="Forbidden", non_retryable=True)


@workflow.defn
class IncidentWorkflow:
    """Waits for triage, a drafted, approved and published reply, and closes; escalates every
    deadline that falls due first."""

    @workflow.init
    def __init__(self, inp: IncidentInput) -> None:
        self.inp = inp
        sub = inp.submission
        self.roster = inp.roster
        self.speedup = sub.drill_speedup
        self.phase = Phase.triage
        self.severity = sub.severity or Severity.general
        self.severity_assessed = sub.severity is not None
        self.category = sub.category
        self.unit = sub.responsible_unit
        self.deadlines: dict[str, Deadline] = {}
        self.escalations: list[Escalation] = []
        self.accountability: list[AccountabilityRecord] = []
        self.replies: list[ReplyRound] = []
        self.timeline: list[TimelineEntry] = []
        self.closed_at: datetime | None = None
        self.version = 0
        self._recorded_seq = 0
        self._record_due = False
        self._escalations_due: list[Escalation] = []
        self._notifications_due: list[Notification] = []
        self._last_step_at: dict[str, datetime] = {}
        self._watchers: list[asyncio.Task[None]] = []
        self._upserted: dict[str, object] = {}
        self._started = False

    # ------------------------------------------------------------------ run

    @workflow.run
    async def run(self, inp: IncidentInput) -> IncidentView:
        sub = inp.submission
        reporter = self.roster.unit_name(sub.reporter_unit)
        self._event(
            "reported",
            sub.reporter_name,
            f"{reporter}报告舆情（来源：{sub.source}）" + ("【演练】" if sub.is_drill else ""),
        )
        self._start_report_deadline()
        self._start_reply_deadline()
        self._notify_reported()
        self._changed()
        self._started = True

        while True:
            await workflow.wait_condition(lambda: self._pending() or (self.phase is Phase.closed))
            await self._flush()
            if self.phase is Phase.closed and not self._pending():
                break
        for task in self._watchers:
            task.cancel()
        return self.view()

    # ------------------------------------------------------------------ queries and updates

    @workflow.query
    def view(self) -> IncidentView:
        sub = self.inp.submission
        return IncidentView(
            id=self.inp.incident_id,
            title=sub.title,
            content=sub.content,
            source=sub.source,
            url=sub.url,
            reporter_unit=sub.reporter_unit,
            reporter_name=sub.reporter_name,
            discovered_at=sub.discovered_at,
            posted_at=sub.posted_at,
            received_at=self.inp.received_at,
            phase=self.phase,
            severity=self.severity,
            severity_assessed=self.severity_assessed,
            category=self.category,
            responsible_unit=self.unit,
            drill=sub.is_drill,
            drill_speedup=sub.drill_speedup,
            plan_version=self.inp.plan_version,
            deadlines=list(self.deadlines.values()),
            escalations=list(self.escalations),
            accountability=list(self.accountability),
            replies=list(self.replies),
            timeline=list(self.timeline),
            closed_at=self.closed_at,
            version=self.version,
        )

    @workflow.update
    def triage(self, action: Triage) -> IncidentView:
        changes = []
        if action.severity != self.severity or not self.severity_assessed:
            changes.append(f"等级：{action.severity.label}")
        if action.category != self.category:
            changes.append(f"类别：{action.category.label}")
        if action.responsible_unit != self.unit:
            changes.append(f"责任单位：{self.roster.unit_name(action.responsible_unit)}")
        first = self.phase is Phase.triage
        self.severity = action.severity
        self.severity_assessed = True
        self.category = action.category
        new_unit = action.responsible_unit != self.unit
        self.unit = action.responsible_unit
        self.phase = Phase.handling
        self._move_reply_deadline()
        note = f"（{action.note}）" if action.note else ""
        self._event(
            "triaged",
            action.actor,
            ("研判：" if first else "重新研判：") + ("，".join(changes) or "无变化") + note,
        )
        if first or new_unit:
            self._notify_assigned()
        self._changed()
        return self.view()

    @triage.validator
    def _validate_triage(self, action: Triage) -> None:
        self._require_open()
        self._require_role(action.actor, {Role.office, Role.leader, Role.deputy}, "领导小组办公室")
        if self.roster.unit(action.responsible_unit) is None:
            raise refuse(f"责任单位“{action.responsible_unit}”不在名册中")

    @workflow.update
    def draft_reply(self, action: DraftReply) -> IncidentView:
        current = self._current_reply()
        if current is None or current.status is ReplyStatus.published:
            number = len(self.replies) + 1
            self.replies.append(
                ReplyRound(
                    round=number,
                    status=ReplyStatus.drafted,
                    text=action.text,
                    drafted_by=action.actor,
                    drafted_at=workflow.now(),
                )
            )
        else:
            # A redraft replaces the text and needs a fresh approval (R-REVIEW).
            current.text = action.text
            current.status = ReplyStatus.drafted
            current.drafted_by = action.actor
            current.drafted_at = workflow.now()
            current.approved_by = current.approved_at = current.comment = None
        self._event("reply_drafted", action.actor, "起草官方回复，待单位负责人审定")
        unit = self.roster.unit(self.unit) if self.unit else None
        if unit is not None:
            self._notify(
                f"review-{len(self.replies)}-{len(self.timeline)}",
                rules.R_REVIEW,
                [unit.head, unit.first_responsible],
                *messages.review_requested(self.view(), self.roster),
            )
        self._changed()
        return self.view()

    @draft_reply.validator
    def _validate_draft(self, action: DraftReply) -> None:
        self._require_handling()
        self._require_unit_member(action.actor)

    @workflow.update
    def approve_reply(self, action: ApproveReply) -> IncidentView:
        current = self._current_reply()
        assert current is not None  # the validator ensured it
        now = workflow.now()
        if action.approve:
            current.status = ReplyStatus.approved
            current.approved_by = action.actor
            current.approved_at = now
            current.comment = action.comment
            self._event("reply_approved", action.actor, "单位负责人审定通过官方回复")
        else:
            current.status = ReplyStatus.rejected
            current.comment = action.comment
            reason = f"：{action.comment}" if action.comment else ""
            self._event("reply_rejected", action.actor, f"单位负责人退回回复稿{reason}")
        self._changed()
        return self.view()

    @approve_reply.validator
    def _validate_approve(self, action: ApproveReply) -> None:
        self._require_handling()
        if not self.roster.is_head_of(action.actor, self.unit):
            raise forbid(
                f"只有责任单位（{self.roster.unit_name(self.unit)}）负责人可以审定回复（R-REVIEW）"
            )
        current = self._current_reply()
        if current is None or current.status is not ReplyStatus.drafted:
            raise refuse("没有待审定的回复稿")
        if not action.approve and not action.comment:
            raise refuse("退回回复稿须说明理由")

    @workflow.update
    def publish_reply(self, action: PublishReply) -> IncidentView:
        current = self._current_reply()
        assert current is not None
        now = workflow.now()
        current.status = ReplyStatus.published
        current.published_by = action.actor
        current.published_at = now
        current.channel = action.channel
        current.url = action.url
        d = self.deadlines[REPLY_KEY]
        self._meet(d, now)
        late = (
            f"（逾期{rules.format_duration(rules.lateness(d.due_at, now))}）" if d.overdue else ""
        )
        self._event("reply_published", action.actor, f"发布官方回复（{action.channel}）{late}")
        # This slice closes on publication; tracking (R-TRACK) and the summary (R-SUMMARY) follow.
        self.phase = Phase.closed
        self.closed_at = now
        self._event("closed", None, "结案")
        self._changed()
        return self.view()

    @publish_reply.validator
    def _validate_publish(self, action: PublishReply) -> None:
        self._require_handling()
        self._require_unit_member(action.actor)
        current = self._current_reply()
        if current is None or current.status is not ReplyStatus.approved:
            raise refuse("回复须经单位负责人审定后方可发布（R-REVIEW）")

    # ------------------------------------------------------------------ rules

    def _start_report_deadline(self) -> None:
        """R-REPORT: a staff submission is the report; after discovered_at + 1 h it is 迟报."""
        sub = self.inp.submission
        received = self.inp.received_at
        d = Deadline(
            key=REPORT_KEY,
            rule=rules.R_REPORT,
            title=rules.report_title(),
            due_at=rules.report_due(sub.discovered_at, received, self.speedup),
            met_at=received,
            unit=sub.reporter_unit,
        )
        self.deadlines[d.key] = d
        if received > d.due_at:
            d.overdue = True
            self._account(d, rules.LATE_REPORT, sub.reporter_unit, met_at=received)
            late = rules.format_duration(received - (sub.discovered_at + rules.REPORT_WITHIN))
            self._event(
                "late_report", None, f"{rules.R_REPORT} 迟报：发现后超过1小时才报告（晚{late}）"
            )

    def _start_reply_deadline(self) -> None:
        """R-REPLY: 3 h / 12 h / 24 h from discovery by severity; general until triage says otherwise."""
        sub = self.inp.submission
        d = Deadline(
            key=REPLY_KEY,
            rule=rules.R_REPLY,
            title=rules.reply_title(self.severity),
            due_at=rules.reply_due(
                sub.discovered_at, self.severity, self.inp.received_at, self.speedup
            ),
            unit=self.unit,
        )
        self.deadlines[d.key] = d
        self._watch(d.key)

    def _move_reply_deadline(self) -> None:
        d = self.deadlines[REPLY_KEY]
        d.unit = self.unit
        if d.met_at is not None:
            return
        sub = self.inp.submission
        due = rules.reply_due(sub.discovered_at, self.severity, self.inp.received_at, self.speedup)
        if due == d.due_at:
            d.version += 1  # the unit may have changed: the chain's targets follow it
            return
        old = d.due_at
        d.due_at = due
        d.title = rules.reply_title(self.severity)
        d.version += 1
        if d.overdue and workflow.now() < due:
            # The new severity gives more time: no longer overdue, and the chain starts afresh.
            d.overdue = False
            d.escalation_step = 0
        self._event(
            "deadline_moved",
            None,
            f"{rules.R_REPLY} 回复期限调整：{messages.local(old, self.inp.timezone)} → "
            f"{messages.local(due, self.inp.timezone)}",
        )

    def _watch(self, key: str) -> None:
        def chain() -> list[rules.EscalationStep]:
            waits = [timedelta(minutes=m) for m in self.inp.escalation_waits_minutes]
            return rules.escalation_chain(self.roster, self.deadlines[key].unit, waits)

        task = asyncio.create_task(
            watch_deadline(
                lambda: self.deadlines[key],
                chain,
                on_miss=self._on_miss,
                on_step=self._on_escalation_step,
                last_step_at=lambda d: self._last_step_at.get(d.key, d.due_at),
                speedup=self.speedup,
            )
        )
        self._watchers.append(task)

    def _on_miss(self, d: Deadline) -> None:
        """R-ACCOUNT: a deadline passed unmet is an accountability record on the unit."""
        d.overdue = True
        unit = d.unit or self.roster.roles.office
        self._account(d, rules.OVERDUE, unit)
        self._event("deadline_missed", None, f"{d.title}：已逾期")
        self._changed()

    def _on_escalation_step(self, d: Deadline, step: rules.EscalationStep) -> None:
        """R-ESCALATE: record the step, tell its targets; the next step waits its turn."""
        now = workflow.now()
        d.escalation_step = step.step
        self._last_step_at[d.key] = now
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
        self.escalations.append(esc)
        self._escalations_due.append(esc)
        self._event("escalated", None, f"{summary}（{d.title}逾期，通知{names}）")
        subject, body = messages.escalation(self.view(), self.roster, self.inp.timezone, d, step)
        self._notify(
            f"escalate-{d.key}-{len(self.escalations)}",
            rules.R_ESCALATE,
            list(step.targets),
            subject,
            body,
        )
        self._changed()

    def _meet(self, d: Deadline, at: datetime) -> None:
        d.met_at = at
        d.version += 1
        for rec in self.accountability:
            if rec.deadline_key == d.key and rec.met_at is None:
                rec.met_at = at

    def _account(self, d: Deadline, kind: str, unit: str, met_at: datetime | None = None) -> None:
        self.accountability.append(
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

    def _notify_reported(self) -> None:
        """R-NOTIFY: the office, the main leader for major and urgent, and the responsible unit."""
        who = rules.notify_recipients(self.roster, self.severity, self.unit)
        self._notify(
            "reported",
            rules.R_NOTIFY,
            who,
            *messages.reported(self.view(), self.roster, self.inp.timezone),
        )

    def _notify_assigned(self) -> None:
        if not self.unit:
            return
        who = rules.notify_recipients(self.roster, self.severity, self.unit)
        self._notify(
            f"assigned-{self.unit}-{len(self.timeline)}",
            rules.R_NOTIFY,
            who,
            *messages.assigned(self.view(), self.roster, self.inp.timezone),
        )

    # ------------------------------------------------------------------ checks for validators

    def _require_open(self) -> None:
        if not self._started:
            # An update can arrive in the same activation as the start, before the deadlines exist.
            raise refuse("事件正在创建，请稍后重试")
        if self.phase is Phase.closed:
            raise refuse("事件已结案，不再接受操作")

    def _require_handling(self) -> None:
        self._require_open()
        if self.phase is not Phase.handling:
            raise refuse(f"事件当前处于“{self.phase.label}”阶段，须先由领导小组办公室研判")

    def _require_role(self, actor: str, allowed: set[Role], label: str) -> None:
        roles = self.roster.roles_of(actor)
        if not roles:
            raise forbid(f"人员“{actor}”不在名册中")
        if not roles & allowed:
            raise forbid(f"此操作只能由{label}执行")

    def _require_unit_member(self, actor: str) -> None:
        if self.roster.person(actor) is None:
            raise forbid(f"人员“{actor}”不在名册中")
        if not self.roster.belongs_to(actor, self.unit):
            raise forbid(f"此操作只能由责任单位（{self.roster.unit_name(self.unit)}）人员执行")

    def _current_reply(self) -> ReplyRound | None:
        return self.replies[-1] if self.replies else None

    # ------------------------------------------------------------------ effects

    def _event(self, kind: str, actor: str | None, summary: str) -> None:
        self.timeline.append(
            TimelineEntry(
                seq=len(self.timeline) + 1,
                at=workflow.now(),
                kind=kind,
                actor=actor,
                summary=summary,
            )
        )

    def _notify(self, key: str, rule: str, person_ids: list[str], subject: str, body: str) -> None:
        recipients = []
        for pid in dict.fromkeys(person_ids):
            p = self.roster.person(pid)
            if p is not None:
                recipients.append(Recipient(person_id=p.id, name=p.name, channels=list(p.channels)))
        incident_id = self.inp.incident_id
        self._notifications_due.append(
            Notification(
                key=f"{incident_id}:{key}",
                incident_id=incident_id,
                rule=rule,
                recipients=recipients,
                subject=subject,
                body=body,
                link=f"{self.inp.public_url.rstrip('/')}/incidents/{incident_id}",
                drill=self.inp.submission.is_drill,
                sent_at=workflow.now(),
            )
        )

    def _changed(self) -> None:
        self.version += 1
        self._record_due = True
        workflow.set_current_details(messages.ledger(self.view(), self.roster, self.inp.timezone))

    def _pending(self) -> bool:
        return self._record_due or bool(self._escalations_due) or bool(self._notifications_due)

    async def _flush(self) -> None:
        """Write queued effects: the read model first, then escalation steps, then messages."""
        self._upsert_search_attributes()
        if self._record_due:
            self._record_due = False
            new = [e for e in self.timeline if e.seq > self._recorded_seq]
            request = RecordRequest(
                incident=self._row(),
                deadlines=list(self.deadlines.values()),
                timeline=new,
                accountability=list(self.accountability),
            )
            await workflow.execute_activity(
                "record",
                request,
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=RETRY_FOREVER,
                summary=f"记录：{new[-1].summary if new else '状态'}"[:200],
            )
            self._recorded_seq = max([self._recorded_seq] + [e.seq for e in new])
        escalations, self._escalations_due = self._escalations_due, []
        for esc in escalations:
            await workflow.execute_activity(
                "escalate",
                EscalateRequest(
                    incident_id=self.inp.incident_id,
                    escalation=esc,
                    drill=self.inp.submission.is_drill,
                ),
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=RETRY_FOREVER,
                summary=esc.summary,
            )
        notes, self._notifications_due = self._notifications_due, []
        if notes:
            await asyncio.gather(*(self._deliver(n) for n in notes))

    async def _deliver(self, note: Notification) -> None:
        try:
            await workflow.execute_activity(
                "notify",
                note,
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=1),
                    backoff_coefficient=2.0,
                    maximum_interval=timedelta(minutes=1),
                    maximum_attempts=20,
                ),
                summary=f"{note.rule} 通知：{note.subject}"[:200],
            )
        except ActivityError as err:
            # The in-app inbox is written first in the activity; a channel that keeps failing is
            # put on the timeline for the office rather than failing the incident.
            self._event(
                "notify_failed", None, f"通知发送失败（{note.subject}）：{err.cause or err}"
            )
            self._changed()

    def _row(self) -> IncidentRow:
        sub = self.inp.submission
        nxt = self._next_due()
        return IncidentRow(
            id=self.inp.incident_id,
            version=self.version,
            title=sub.title,
            content=sub.content,
            source=sub.source,
            url=sub.url,
            reporter_unit=sub.reporter_unit,
            reporter_name=sub.reporter_name,
            responsible_unit=self.unit,
            severity=self.severity.value,
            category=self.category.value if self.category else None,
            phase=self.phase.value,
            drill=sub.is_drill,
            discovered_at=sub.discovered_at,
            posted_at=sub.posted_at,
            received_at=self.inp.received_at,
            next_due_at=nxt,
            overdue=any(d.overdue and d.met_at is None for d in self.deadlines.values()),
            closed_at=self.closed_at,
            plan_version=self.inp.plan_version,
        )

    def _next_due(self) -> datetime | None:
        open_ = [d.due_at for d in self.deadlines.values() if d.met_at is None]
        return min(open_) if open_ else None

    def _upsert_search_attributes(self) -> None:
        if not self.inp.search_attributes:
            return
        values: dict[str, object] = {
            SA_PHASE.name: self.phase.value,
            SA_SEVERITY.name: self.severity.value,
            SA_UNIT.name: self.unit or "",
            SA_OVERDUE.name: any(d.overdue and d.met_at is None for d in self.deadlines.values()),
            SA_DRILL.name: self.inp.submission.is_drill,
            SA_NEXT_DEADLINE.name: self._next_due(),
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
