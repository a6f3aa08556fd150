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
import contextlib
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel

    from plan import messages, rules, todo
    from plan.actions import ACTIONS, UPLOADS
    from plan.incident import Incident, Refusal
    from plan.models import (
        Absences,
        ActionDone,
        Activate,
        ApproveRelease,
        ApproveReply,
        Commend,
        Conclude,
        ConfirmLead,
        Consult,
        CountersignReply,
        Deadline,
        DecideAdoption,
        DeclareDelay,
        DraftReply,
        IncidentDone,
        IncidentInput,
        IncidentView,
        Phase,
        Progress,
        PublishReply,
        RecordAccountability,
        ReportSpreading,
        ReturnToOffice,
        SignFor,
        SubmitSummary,
        Track,
        Triage,
        Withdraw,
        WrittenReport,
    )
    from plan.outbox import deliveries_for
    from plan.records import (
        DeliverRequest,
        EscalateRequest,
        IncidentFacts,
        IncidentRow,
        Notification,
        RecordRequest,
        Wait,
    )
    from workflows.deadlines import watch_deadline
    from workflows.delivery import ACTIVITY_TIMEOUT, RETRY_FOREVER, deliver
    from workflows.search_attributes import (
        CURRENT_RULES_VERSION,
        SEARCH_ATTRIBUTES,
        values_of,
    )

T = TypeVar("T", bound="BaseModel")

# One `record` activity writes each step whole (read model, escalations, notifications); before
# it, `record`, `escalate` and `notify` ran one after another, each a round trip through the
# server (docs/PERFORMANCE.md). Histories from before it replay the old way.
ONE_WRITE_PATCH = "one-write-per-step"
# Incidents started since issue 14's R-NOTIFY fix tell the publicity department of a major or
# urgent incident and the leader of a later rise (IncidentState.rules_version 1); older histories
# replay with the recipients they had.
RULES_PATCH = "rules-version-1"
# Incidents started since issue 14's later fixes (IncidentState.rules_version 2): the oral report
# meets R-REPORT, records and commendations may be added for a period after close, co-unit heads
# countersign, activated units take part.
RULES_V2_PATCH = "rules-version-2"
# Incidents started since issue 20's 签收: a 督办 message not signed for goes again on the next
# channel (IncidentState.resend); older histories replay without those timers.
RESEND_PATCH = "resend-until-signed"
# Issue 20, item 2: every step's 督办 message goes on being re-sent until signed for or the
# deadline is met, not only the latest step's.
RESEND_STEPS_PATCH = "resend-every-step"


class Sent:
    """What this run last sent to `record`, so each write carries only what changed since.

    Kept in memory, not in the state: a replay rebuilds it by running the same writes again, and
    a new run (continue-as-new) starts empty and sends everything once."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, object], object] = {}

    def unless_same(self, kind: str, value: list[T]) -> list[T] | None:
        """`value`, or None when it is what the last write carried."""
        if self._last.get((kind, None)) == value:
            return None
        self._last[(kind, None)] = [v.model_copy() for v in value]
        return value

    def changed(self, kind: str, items: list[T], key: Callable[[T], object]) -> list[T]:
        out = []
        for item in items:
            k = (kind, key(item))
            if self._last.get(k) != item:
                # Shallow is enough: these records hold scalars only (tests/test_sandbox.py).
                self._last[k] = item.model_copy()
                out.append(item)
        return out


def rejection(refusal: Refusal) -> ApplicationError:
    """The core's refusal as the update's failure: the API answers 409, 403 or asks to retry."""
    kind = {"refused": "Refused", "forbidden": "Forbidden", "not_ready": "NotReady"}[refusal.kind]
    return ApplicationError(refusal.message, type=kind, non_retryable=True)


@workflow.defn
class IncidentWorkflow:
    """Waits for the office, the units and the leading group to meet each plan deadline, and
    escalates every deadline that falls due first; closes on the summary or a withdrawal. Every
    decision is the core's (plan/incident.py): this class only waits, watches and writes."""

    @workflow.init
    def __init__(self, inp: IncidentInput) -> None:
        self.inp = inp
        self.sub = inp.submission
        self.core = Incident(inp, now=workflow.now())
        self.s = self.core.s
        self._sent = Sent()
        self._watched: dict[str, asyncio.Task[None]] = {}
        self._delivery_tasks: dict[str, asyncio.Task[None]] = {}
        self._upserted: dict[str, object] = {}
        # Whether this run's writes have given the store the submission's facts (the first does).
        self._facts_written = False
        self._absences_task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ run

    @workflow.run
    async def run(self, inp: IncidentInput) -> IncidentDone:
        if not self.core.resumed:
            if workflow.patched(RULES_PATCH):
                self.s.rules_version = 1
            if workflow.patched(RULES_V2_PATCH):
                self.s.rules_version = CURRENT_RULES_VERSION
            if workflow.patched(RESEND_PATCH):
                self.s.resend = True
            if workflow.patched(RESEND_STEPS_PATCH):
                self.s.resend_steps = True
            self.core.now = workflow.now()
            self.core.open_incident()
        self.core.started = True
        self.core.to_watch.clear()
        for d in self.s.deadlines:
            self._watch(d.key)
        self._absences_task = asyncio.create_task(self._watch_absences())
        for request in self.s.in_flight_deliveries:
            self._start_delivery(request)  # carried over a continue-as-new: the outbox dedupes
        self.core.changed()

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
        await self._amendment_period()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return IncidentDone(
            incident_id=self.inp.incident_id,
            version=self.s.version,
            phase=self.s.phase,
            closed_at=self.s.closed_at,
            close_reason=self.s.close_reason,
        )

    async def _amendment_period(self) -> None:
        """R-CLOSE: after close the incident waits out the plan's period (30 days), accepting
        only commendations and 谎报/瞒报/漏报 records (the core refuses anything else), each
        written as it comes; the period's end is a timer on the Temporal UI."""
        while self.s.amending and self.s.amend_until is not None:
            left = self.s.amend_until - workflow.now()
            if left > timedelta(0):
                with contextlib.suppress(TimeoutError):
                    await workflow.wait_condition(
                        self._pending,
                        timeout=left,
                        timeout_summary=f"{rules.R_CLOSE} 结案后补记期届满",
                    )
            if workflow.now() >= self.s.amend_until:
                self.core.now = workflow.now()
                self.core.end_amendments()
            await self._flush()
            await workflow.wait_condition(lambda: not self.s.in_flight_deliveries)

    def _continue_due(self) -> bool:
        info = workflow.info()
        return (
            info.get_current_history_length() >= self.inp.continue_as_new_after
            or info.is_continue_as_new_suggested()
        )

    # ------------------------------------------------------------------ queries and signals

    @workflow.query
    def view(self) -> IncidentView:
        return self.core.view()

    def _done(self) -> ActionDone:
        s = self.s
        return ActionDone(
            incident_id=self.inp.incident_id,
            run_id=workflow.info().run_id,
            version=s.version,
            phase=s.phase,
            latest=s.timeline[-1] if s.timeline else None,
        )

    @workflow.signal
    def related_reported(self, incident_id: str) -> None:
        """R-DEDUP: a later submission with this incident's URL was linked to it."""
        self.core.now = workflow.now()
        self.core.related_reported(incident_id)

    @workflow.signal
    def absences_changed(self, absences: Absences) -> None:
        """代理 (issue 20, item 3): the store's absences not yet over, whenever one is declared
        or ended (starter/absences.py tells every running incident)."""
        self.core.now = workflow.now()
        self.core.absences_changed(absences)

    # ------------------------------------------------------------------ staff actions

    def _check(self, name: str, action: object) -> None:
        self.core.now = workflow.now()
        try:
            self.core.check(name, action)
        except Refusal as refusal:
            raise rejection(refusal) from None

    def _apply(self, name: str, action: object) -> ActionDone:
        self.core.apply(name, action, workflow.now())
        self._watch_new()
        return self._done()

    def _command(self, name: str, data: dict[str, Any]) -> BaseModel:
        """The action's command model from the generic update's payload (the table names it)."""
        rule = ACTIONS.get(name) or UPLOADS.get(name)
        if rule is None:
            raise ApplicationError(f"未知操作“{name}”", type="Refused", non_retryable=True)
        return rule.command.model_validate(data)

    @workflow.update
    def act(self, name: str, data: dict[str, Any]) -> ActionDone:
        """Any action of the table (plan/actions.py) by name: how an action added to the table
        reaches the workflow without an update of its own (starter/incidents.py sends it here)."""
        return self._apply(name, self._command(name, data))

    @act.validator
    def _v_act(self, name: str, data: dict[str, Any]) -> None:
        self._check(name, self._command(name, data))

    @workflow.update
    def confirm_lead(self, action: ConfirmLead) -> ActionDone:
        return self._apply("confirm-lead", action)

    @confirm_lead.validator
    def _v_confirm_lead(self, action: ConfirmLead) -> None:
        self._check("confirm-lead", action)

    @workflow.update
    def triage(self, action: Triage) -> ActionDone:
        return self._apply("triage", action)

    @triage.validator
    def _v_triage(self, action: Triage) -> None:
        self._check("triage", action)

    @workflow.update
    def activate(self, action: Activate) -> ActionDone:
        return self._apply("activate", action)

    @activate.validator
    def _v_activate(self, action: Activate) -> None:
        self._check("activate", action)

    @workflow.update
    def consult(self, action: Consult) -> ActionDone:
        return self._apply("consult", action)

    @consult.validator
    def _v_consult(self, action: Consult) -> None:
        self._check("consult", action)

    @workflow.update
    def withdraw(self, action: Withdraw) -> ActionDone:
        return self._apply("withdraw", action)

    @withdraw.validator
    def _v_withdraw(self, action: Withdraw) -> None:
        self._check("withdraw", action)

    @workflow.update
    def record_accountability(self, action: RecordAccountability) -> ActionDone:
        return self._apply("record-accountability", action)

    @record_accountability.validator
    def _v_record_accountability(self, action: RecordAccountability) -> None:
        self._check("record-accountability", action)

    @workflow.update
    def commend(self, action: Commend) -> ActionDone:
        return self._apply("commend", action)

    @commend.validator
    def _v_commend(self, action: Commend) -> None:
        self._check("commend", action)

    @workflow.update
    def sign_for(self, action: SignFor) -> ActionDone:
        return self._apply("sign-for", action)

    @sign_for.validator
    def _v_sign_for(self, action: SignFor) -> None:
        self._check("sign-for", action)

    @workflow.update
    def file_written_report(self, action: WrittenReport) -> ActionDone:
        return self._apply("file-written-report", action)

    @file_written_report.validator
    def _v_file_written_report(self, action: WrittenReport) -> None:
        self._check("file-written-report", action)

    @workflow.update
    def report_progress(self, action: Progress) -> ActionDone:
        return self._apply("report-progress", action)

    @report_progress.validator
    def _v_report_progress(self, action: Progress) -> None:
        self._check("report-progress", action)

    @workflow.update
    def return_to_office(self, action: ReturnToOffice) -> ActionDone:
        return self._apply("return-to-office", action)

    @return_to_office.validator
    def _v_return_to_office(self, action: ReturnToOffice) -> None:
        self._check("return-to-office", action)

    @workflow.update
    def declare_delay(self, action: DeclareDelay) -> ActionDone:
        return self._apply("declare-delay", action)

    @declare_delay.validator
    def _v_declare_delay(self, action: DeclareDelay) -> None:
        self._check("declare-delay", action)

    @workflow.update
    def conclude(self, action: Conclude) -> ActionDone:
        return self._apply("conclude", action)

    @conclude.validator
    def _v_conclude(self, action: Conclude) -> None:
        self._check("conclude", action)

    @workflow.update
    def decide_adoption(self, action: DecideAdoption) -> ActionDone:
        return self._apply("decide-adoption", action)

    @decide_adoption.validator
    def _v_decide_adoption(self, action: DecideAdoption) -> None:
        self._check("decide-adoption", action)

    @workflow.update
    def report_spreading(self, action: ReportSpreading) -> ActionDone:
        return self._apply("report-spreading", action)

    @report_spreading.validator
    def _v_report_spreading(self, action: ReportSpreading) -> None:
        self._check("report-spreading", action)

    @workflow.update
    def draft_reply(self, action: DraftReply) -> ActionDone:
        return self._apply("draft-reply", action)

    @draft_reply.validator
    def _v_draft_reply(self, action: DraftReply) -> None:
        self._check("draft-reply", action)

    @workflow.update
    def approve_reply(self, action: ApproveReply) -> ActionDone:
        return self._apply("approve-reply", action)

    @approve_reply.validator
    def _v_approve_reply(self, action: ApproveReply) -> None:
        self._check("approve-reply", action)

    @workflow.update
    def countersign_reply(self, action: CountersignReply) -> ActionDone:
        return self._apply("countersign-reply", action)

    @countersign_reply.validator
    def _v_countersign_reply(self, action: CountersignReply) -> None:
        self._check("countersign-reply", action)

    @workflow.update
    def approve_release(self, action: ApproveRelease) -> ActionDone:
        return self._apply("approve-release", action)

    @approve_release.validator
    def _v_approve_release(self, action: ApproveRelease) -> None:
        self._check("approve-release", action)

    @workflow.update
    def publish_reply(self, action: PublishReply) -> ActionDone:
        return self._apply("publish-reply", action)

    @publish_reply.validator
    def _v_publish_reply(self, action: PublishReply) -> None:
        self._check("publish-reply", action)

    @workflow.update
    def track(self, action: Track) -> ActionDone:
        return self._apply("track", action)

    @track.validator
    def _v_track(self, action: Track) -> None:
        self._check("track", action)

    @workflow.update
    def submit_summary(self, action: SubmitSummary) -> ActionDone:
        return self._apply("submit-summary", action)

    @submit_summary.validator
    def _v_submit_summary(self, action: SubmitSummary) -> None:
        self._check("submit-summary", action)

    # ------------------------------------------------------------------ deadlines

    def _watch_new(self) -> None:
        keys, self.core.to_watch = self.core.to_watch, []
        for key in keys:
            self._watch(key)

    def _timer_event(self, handle: Callable[..., None], *args: object) -> None:
        self.core.now = workflow.now()
        handle(*args)
        self._watch_new()

    def _missed(self, d: Deadline) -> None:
        self._timer_event(self.core.on_miss, d)
        self._count("yuqing_deadlines_missed", "Plan deadlines passed unmet, by rule", rule=d.rule)

    def _escalated(self, d: Deadline, step: rules.EscalationStep) -> None:
        self._timer_event(self.core.on_escalation_step, d, step)
        self._count(
            "yuqing_escalation_steps",
            "Escalation steps taken, by rule and step",
            rule=d.rule,
            step=str(step.step),
        )

    def _count(self, name: str, description: str, **labels: str) -> None:
        """One more on a counter of the worker's Prometheus endpoint (the workflow's meter does
        not count again when the history replays; no command, so histories replay as before)."""
        labels["drill"] = str(self.sub.is_drill).lower()
        workflow.metric_meter().create_counter(name, description).add(1, labels)

    async def _watch_absences(self) -> None:
        """代理: when an absence of someone with a part in the incident begins or ends, who may
        act changes, and the 待办 in the store is written again (a timer on the Temporal UI). A
        new list of absences (the signal) starts the wait again."""
        closed = Phase.closed
        while self.s.phase is not closed:
            seen = self.s.absences.revision
            at = self.core.next_absence_change()

            def told(seen: int = seen) -> bool:
                return self.s.absences.revision != seen or self.s.phase is closed

            if at is None:
                await workflow.wait_condition(told)
                continue
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    told,
                    timeout=at - workflow.now(),
                    timeout_summary="代理：不在岗开始或结束，更新待办",
                )
            if workflow.now() >= at and self.s.phase is not closed:
                self.core.now = workflow.now()
                self.core.changed()

    def _watch(self, key: str) -> None:
        if key in self._watched or not self.core.deadline(key).open:
            return
        get: Callable[[], Deadline] = lambda: self.core.deadline(key)  # noqa: E731

        def chain() -> list[rules.EscalationStep]:
            waits = [timedelta(minutes=m) for m in self.inp.escalation_waits_minutes]
            return self.core.escalation_chain(key, waits)

        async def watch() -> None:
            try:
                await watch_deadline(
                    get,
                    chain,
                    on_warn=lambda d: self._timer_event(self.core.on_warn, d),
                    on_miss=lambda d: self._missed(d),
                    on_step=lambda d, step: self._escalated(d, step),
                    on_resend=lambda d: self._timer_event(self.core.on_resend, d),
                    resend_at=self.core.resend_at,
                    warn_at=self.core.spec.warn_at,
                    speedup=self.core.speedup,
                )
            finally:
                self._watched.pop(key, None)

        self._watched[key] = asyncio.create_task(watch())

    # ------------------------------------------------------------------ effects

    def _pending(self) -> bool:
        return (
            self.core.dirty
            or bool(self.s.pending_escalations)
            or bool(self.s.pending_notifications)
        )

    async def _flush(self) -> None:
        """Write queued effects: the read model, escalation steps and messages in one activity
        (one transaction), then each external channel in the background."""
        self._upsert_search_attributes()
        if self.core.dirty:
            # The ledger on the Temporal UI's page, once per write rather than once per change.
            workflow.set_current_details(
                messages.ledger(self.view(), self.core.roster, self.core.tz)
            )
        if not workflow.patched(ONE_WRITE_PATCH):
            await self._flush_in_steps()
            return
        dirty, self.core.dirty = self.core.dirty, False
        new = [e for e in self.s.timeline if e.seq > self.s.recorded_seq]
        escalations, self.s.pending_escalations = self.s.pending_escalations, []
        notes, self.s.pending_notifications = self.s.pending_notifications, []
        s, sent = self.s, self._sent
        request = RecordRequest(
            incident=self._row(facts=not self._facts_written),
            deadlines=sent.changed("deadline", s.deadlines, lambda d: d.key),
            timeline=new,
            accountability=sent.changed(
                "accountability", s.accountability, lambda a: (a.deadline_key, a.recorded_at)
            ),
            referrals=sent.changed("referral", s.referrals, lambda r: r.no),
            commendations=sent.changed("commendation", s.commendations, lambda c: (c.at, c.unit)),
            escalations=escalations,
            notifications=notes,
            waits=self._waits_by_key(sent.unless_same("waits", self._waits())) if dirty else None,
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
        self._facts_written = True
        self.s.recorded_seq = max([self.s.recorded_seq] + [e.seq for e in new])
        for note in notes:
            self._start_deliveries(note)

    async def _flush_in_steps(self) -> None:
        """Before ONE_WRITE_PATCH: the read model first, then each escalation step, then each
        message, one activity after another (kept so those histories replay)."""
        if self.core.dirty:
            self.core.dirty = False
            new = [e for e in self.s.timeline if e.seq > self.s.recorded_seq]
            request = RecordRequest(
                incident=self._row(),
                deadlines=list(self.s.deadlines),
                timeline=new,
                accountability=list(self.s.accountability),
                referrals=list(self.s.referrals),
                commendations=list(self.s.commendations),
                waits=self._waits(),
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
            roster = self.core.roster
            office = roster.members_of(roster.roles.office)
            reason = await deliver(request, office, self.inp.delivery_give_up_minutes)
            if reason is not None:
                self.core.now = workflow.now()
                self.core.event(
                    "delivery_failed",
                    None,
                    f"通知发送失败：{request.recipient.name}（{request.target}）：{reason}",
                )
                self.core.changed()
        finally:
            self.s.in_flight_deliveries = [
                r for r in self.s.in_flight_deliveries if r.key != request.key
            ]
            self._delivery_tasks.pop(request.key, None)

    def _waits(self) -> list[Wait]:
        """待办: what the incident now waits for, and from whom, by the action table the
        validators enforce (plan/todo.py). Part of the record activity's input: no command."""
        core = self.core
        return todo.waits(self.s, core.roster, core.place(), core.tz)

    @staticmethod
    def _waits_by_key(waits: list[Wait] | None) -> list[Wait] | None:
        """The waits, each naming its deadline by key only: the store takes the title and due
        time from the deadline's row, written in the same transaction (issue 21: not carried
        twice in the history). Compared whole before, so a deadline moved is written again."""
        if waits is None:
            return None
        return [
            w.model_copy(update={"deadline_title": None, "due_at": None}) if w.deadline_key else w
            for w in waits
        ]

    def _row(self, *, facts: bool = True) -> IncidentRow:
        """The read model's row; the submission's facts only when asked (a run's first write)."""
        s = self.s
        said = self.core.facts()
        return IncidentRow(
            id=self.inp.incident_id,
            version=s.version,
            drill=self.sub.is_drill,
            facts=IncidentFacts(
                **{k: v for k, v in said.items() if k not in ("id", "drill")},
                reporter_name=self.sub.reporter_name,
                posted_at=self.sub.posted_at,
                drill_speedup=self.sub.drill_speedup,
            )
            if facts
            else None,
            responsible_unit=s.responsible_unit,
            co_units=",".join(s.co_units),
            activated_units=",".join(s.activated_units),
            activated_persons=",".join(s.activated_persons),
            severity=s.severity.value,
            category=s.category.value if s.category else None,
            phase=s.phase.value,
            next_due_at=self.core.next_due(),
            overdue=any(d.overdue and d.open for d in s.deadlines),
            closed_at=s.closed_at,
        )

    def _upsert_search_attributes(self) -> None:
        if not self.inp.search_attributes:
            return
        values = values_of(self.core)
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
