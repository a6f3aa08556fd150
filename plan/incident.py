"""The incident as a pure state machine: the plan's rules with no Temporal, no I/O and no clock.

`Incident` holds one incident's state (`IncidentState`, carried across continue-as-new) with the
input it started under (plan, roster, time zone). Each staff action has a check that raises
`Refusal` before anything changes (the workflow's update validators call it) and a handler that
changes the state; timer events (`warn`, `miss`, `escalate`) do the same for deadlines. The time is
given by the caller (`now`), so the same calls give the same state, on a replay or in a test.

Effects are left in the state for the caller to carry out: queued notifications and escalation
steps (`pending_*`), deadlines to start watching (`to_watch`), and `dirty` when the read model
needs a write. workflows/incident.py is the Temporal glue around it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from datetime import time as dt_time
from typing import Any
from zoneinfo import ZoneInfo

from plan import messages, rules
from plan.actions import (
    OPINION_KEY,
    RESULT_KEY,
    WRITTEN_KEY,
    Place,
    Refusal,
    acting_as,
    allows,
    closed_refusal,
    countersign_pending,
    current_reply,
    draftable,
    may,
    place_of,
    reply_phases,
    rule_of,
    stand_ins,
)
from plan.models import (
    ATTACHMENT_TYPES,
    DOCUMENT_TYPES,
    Absences,
    AccountabilityRecord,
    Activate,
    ApproveRelease,
    ApproveReply,
    Attach,
    AttachedFile,
    AttachRequest,
    Category,
    Commend,
    Commendation,
    Conclude,
    ConfirmLead,
    Consult,
    CountersignReply,
    Deadline,
    DecideAdoption,
    DeclareDelay,
    DraftReply,
    Escalation,
    IncidentInput,
    IncidentState,
    IncidentView,
    Notification,
    Phase,
    Progress,
    PublishReply,
    Receipt,
    Recipient,
    RecordAccountability,
    Referral,
    ReplyKind,
    ReplyRound,
    ReplyStatus,
    ReportSpreading,
    ReturnToOffice,
    Severity,
    SignFor,
    SubmitSummary,
    TimelineEntry,
    Track,
    TrackStatus,
    Triage,
    Withdraw,
    WrittenReport,
)
from plan.roster import CHANNEL_KINDS, Role, channel_target
from plan.timers import Next, next_event

REPORT_KEY = "R-REPORT"
DISCOVER_KEY = "R-DISCOVER"
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

# The rules a newly started incident runs under (IncidentState.rules_version; the workflow sets
# it through workflow.patched, so older histories replay under the rules they ran with).
RULES_VERSION = 2

# State the incident keeps for itself and does not show.
INTERNAL_STATE = {"pending_escalations", "pending_notifications", "in_flight_deliveries"}


def size_words(size: int) -> str:
    """A file's size as the pages say it: 980字节, 12.5KB, 3.2MB."""
    if size < 1024:
        return f"{size}字节"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f}KB"
    return f"{size / 1024 / 1024:.1f}MB"


def _rank(severity: Severity) -> int:
    return list(Severity).index(severity)


class Incident:
    """One incident's state and the plan's rules over it; see the module docstring."""

    def __init__(self, inp: IncidentInput, *, now: datetime) -> None:
        self.inp = inp
        self.sub = inp.submission
        self.roster = inp.roster
        self.spec = inp.plan
        self.tz = inp.timezone
        self.speedup = self.sub.drill_speedup
        self.now = now
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
                absences=inp.absences or Absences(),
            )
        self.dirty = False
        # 代理: the stand-in taking the action being applied, and the absent person they act for.
        self._acting: tuple[str, str] | None = None
        self.to_watch: list[str] = []
        self._roles: dict[str, set[Role]] = {}
        self._trusted = rules.trusts(self.roster, inp.submitted_by, self.sub.reporter_unit)
        # A resumed run (continue-as-new) has all its state already: actions may come at once.
        self.started = self.resumed

    @property
    def untrusted(self) -> bool:
        """An anonymous submission (or one naming another unit): what it states is shown to the
        office and attributes nothing (rules version 2; before, every submission was believed)."""
        return self.s.rules_version >= 2 and not self._trusted

    @property
    def reporter_unit(self) -> str:
        """The unit the report counts for: as stated when trusted, else the office's (a stated
        unit of an untrusted report is shown as such, `stated_reporter_unit`, and counts for no
        figure and no visibility)."""
        return self.roster.roles.office if self.untrusted else self.sub.reporter_unit

    @property
    def is_lead(self) -> bool:
        """R-OFFICE: a lead waits for the office; every untrusted submission is one."""
        return self.sub.lead or self.untrusted

    def open_incident(self) -> None:
        """The submission's own deadlines and records, and the first messages."""
        sub = self.sub
        s = self.s
        received = self.inp.received_at
        reporter = self.roster.unit_name(sub.reporter_unit)
        untrusted = self.untrusted
        flags = ("【演练】" if sub.is_drill else "") + (
            "【上级交办】" if sub.assigned_by_superior else ""
        )
        if untrusted:
            # Its severity, category and unit are the office's to decide at triage; its times
            # count from receipt (issue 15: an anonymous report never plants a record).
            s.phase = Phase.lead
            s.severity, s.severity_assessed = Severity.general, False
            s.category = None
            s.responsible_unit = None
            flags += "【未登录报告：所述时间、单位、等级仅供参考，待办公室核实】"
        if self.is_lead:
            self.event(
                "lead",
                None,
                f"{rules.R_OFFICE} 监测线索（来源：{sub.source}），待办公室确认{flags}",
            )
        else:
            self.event(
                "reported", sub.reporter_name, f"{reporter}报告舆情（来源：{sub.source}）{flags}"
            )
        if sub.assigned_by_superior:
            self.event("assigned", None, f"{rules.R_ASSIGNED} 市委、市政府交办事项，按同一程序处置")
        for other in self.s.related:
            self.event("related", None, f"{rules.R_DEDUP} 与事件 {other} 原帖链接相同，已关联")
        self._evidence()

        # R-DISCOVER: a measure, both instants are in the past.
        if sub.posted_at is not None and not untrusted:
            d = self._add_deadline(
                DISCOVER_KEY,
                rules.R_DISCOVER,
                rules.titles(self.spec)[rules.R_DISCOVER],
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
                self.event(
                    "late_discovery",
                    None,
                    f"{rules.R_DISCOVER} 发帖后超过{rules.plan_duration(self.spec.discover_within)}才发现（晚{late}）",
                )

        # R-REPORT: a staff submission is the report; a lead waits for the office (R-OFFICE).
        # A phone call is the report when a signed-in person states it (R-WRITTEN: the written
        # report follows it); a time an anonymous caller claims neither clears nor creates a record.
        oral_at = self._oral_report_at()
        reported_at = oral_at if oral_at is not None and self.s.rules_version >= 2 else received
        # An untrusted lead: the office owes its assessment within the hour from receipt.
        found_at, found_label = (
            (received, "收到时间") if untrusted else (sub.discovered_at, "发现时间")
        )
        report = self._add_deadline(
            REPORT_KEY,
            rules.R_REPORT,
            rules.report_title(self.spec),
            anchor=found_at,
            anchor_label=found_label,
            due=rules.report_due(found_at, received, self.speedup, self.spec),
            unit=self.roster.roles.office if self.is_lead else sub.reporter_unit,
            met_at=None if self.is_lead else reported_at,
        )
        if not self.is_lead and reported_at > report.due_at:
            report.overdue = True
            self._account(report, rules.LATE_REPORT, sub.reporter_unit, met_at=reported_at)
            late = rules.format_duration(
                reported_at - (sub.discovered_at + self.spec.report_within)
            )
            self.event(
                "late_report",
                None,
                f"{rules.R_REPORT} 迟报：发现后超过{rules.plan_duration(self.spec.report_within)}才报告（晚{late}）",
            )

        # R-WRITTEN: an oral report is followed by the written one within 30 minutes.
        if sub.oral and not untrusted:
            if self.s.rules_version < 2:
                oral_at = sub.oral_reported_at
            oral_at = oral_at or received
            self._add_deadline(
                WRITTEN_KEY,
                rules.R_WRITTEN,
                rules.titles(self.spec)[rules.R_WRITTEN],
                anchor=oral_at,
                anchor_label="口头报告时间",
                due=rules.plan_due(oral_at, self.spec.written_within, received, self.speedup),
                unit=sub.reporter_unit,
            )

        # R-REPLY: from discovery, by severity; general until triage says otherwise.
        self._add_reply_deadline(found_at, found_label)
        self._apply_category(None)
        if self.is_lead:
            self._notify(
                rules.R_OFFICE,
                self.roster.members_of(self.roster.roles.office),
                *messages.lead(self.view(), self.roster, self.tz),
            )
        else:
            self._reported(received)

    def _oral_report_at(self) -> datetime | None:
        """When the phone report was made, if a signed-in person states it (R-REPORT, R-WRITTEN)."""
        sub = self.sub
        if not sub.oral or sub.oral_reported_at is None or not self._trusted:
            return None
        return sub.oral_reported_at

    def _reported(self, at: datetime) -> None:
        """R-NOTIFY and the R-PROGRESS cadence start at the recorded instant of the report."""
        who = self._notify_recipients()
        self._notify(
            rules.R_NOTIFY, who, *messages.reported(self.view(), self.roster, self.tz, self.spec)
        )
        if self.s.responsible_unit:  # reported by staff with the unit named: that is its 交办
            self._ask_receipt_of_assignment()
        self._ensure_progress(at)

    # ------------------------------------------------------------------ queries and signals

    def view(self) -> IncidentView:
        sub = self.sub
        # Built without a dump and re-validation of the whole state (the view is made several
        # times an activation: messages, the ledger, answers): it shares the state's values, so
        # whoever gets a view reads it and never changes it.
        # The internal lists are given empty, not defaulted: pydantic inspects a default
        # factory's signature on every model_construct (0.3 ms each, most of a view's cost).
        values: dict[str, Any] = {n: [] if n in INTERNAL_STATE else v for n, v in self.s}
        values.update(
            self.facts(),
            reporter_name=sub.reporter_name,
            posted_at=sub.posted_at,
            oral=sub.oral,
            oral_reported_at=sub.oral_reported_at,
            lead=self.is_lead,
            stated_reporter_unit=sub.reporter_unit if self.untrusted else None,
            assigned_by_superior=sub.assigned_by_superior,
            drill_speedup=sub.drill_speedup,
        )
        return IncidentView.model_construct(**values)

    def facts(self) -> dict[str, object]:
        """What the view and the read model's row both say about the submission."""
        sub = self.sub
        return {
            "id": self.inp.incident_id,
            "title": sub.title,
            "content": sub.content,
            "source": sub.source,
            "url": sub.url,
            "reporter_unit": self.reporter_unit,
            "discovered_at": sub.discovered_at,
            "received_at": self.inp.received_at,
            "drill": sub.is_drill,
            "plan_version": self.spec.version,
        }

    def related_reported(self, incident_id: str) -> None:
        """R-DEDUP: a later submission with this incident's URL was linked to it."""
        if incident_id not in self.s.related and self.s.phase is not Phase.closed:
            self.s.related.append(incident_id)
            self.event(
                "related",
                None,
                f"{rules.R_DEDUP} 新报告 {incident_id} 与本事件原帖链接相同，已关联",
            )
            self.changed()

    # ------------------------------------------------------------------ office and leading group

    def confirm_lead(self, action: ConfirmLead) -> None:
        now = self.now
        self.s.phase = Phase.triage
        report = self.deadline(REPORT_KEY)
        self._meet(report, now)
        late = (
            f"（已超过{rules.plan_duration(self.spec.report_within)}，记迟报）"
            if report.overdue
            else ""
        )
        note = f"：{action.note}" if action.note else ""
        self.event(
            "lead_confirmed", action.actor, f"{rules.R_OFFICE} 办公室确认线索为舆情{late}{note}"
        )
        self._apply_category(None)
        self._reported(now)
        self.changed()

    def triage(self, action: Triage) -> None:
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
        old_severity = s.severity
        new_unit = action.responsible_unit != s.responsible_unit
        s.severity = action.severity
        s.severity_assessed = True
        s.category = action.category
        s.responsible_unit = action.responsible_unit
        s.co_units = list(dict.fromkeys(action.co_units))
        if s.phase is Phase.triage:
            s.phase = Phase.handling
        note = f"（{action.note}）" if action.note else ""
        self.event(
            "triaged",
            action.actor,
            ("研判：" if first else "重新研判：") + ("，".join(changes) or "无变化") + note,
        )
        self._follow_unit()
        self._move_reply_deadlines()
        self._follow_countersign()
        self._follow_release(action.actor)
        self._apply_category(old_category)
        self._ensure_progress(self.now)
        raised = _rank(s.severity) > _rank(old_severity) and rules.needs_release(s.severity)
        if not (first or new_unit) and raised and s.rules_version >= 1:
            # R-NOTIFY: 紧急、重大 … 立即向主要领导汇报, however the incident got there.
            lg = self.roster.leading_group
            who = [lg.leader, *self.roster.members_of(self.roster.roles.publicity)]
            self._notify(
                rules.R_NOTIFY, who, *messages.severity_raised(self.view(), self.roster, self.tz)
            )
        if first or new_unit:
            who = self._notify_recipients()
            for unit in s.co_units:
                who += self.roster.members_of(unit)
            self._notify(rules.R_NOTIFY, who, *messages.assigned(self.view(), self.roster, self.tz))
            self._ask_receipt_of_assignment()
        self.changed()

    def activate(self, action: Activate) -> None:
        s = self.s
        s.activated_units.extend(
            u for u in dict.fromkeys(action.units) if u not in s.activated_units
        )
        s.activated_persons.extend(
            p for p in dict.fromkeys(action.persons) if p not in s.activated_persons
        )
        names = "、".join(
            [self.roster.unit_name(u) for u in action.units]
            + [self.roster.person_name(p) for p in action.persons]
        )
        note = f"（{action.note}）" if action.note else ""
        self.event(
            "activated",
            action.actor,
            f"{rules.R_ACTIVATE} 领导小组启动应急预案，{names}介入处置{note}",
        )
        who: list[str] = list(action.persons)
        for unit in action.units:
            who += self.roster.members_of(unit)
        self._notify(rules.R_ACTIVATE, who, *messages.activated(self.view(), self.roster, names))
        self.changed()

    def consult(self, action: Consult) -> None:
        who = "、".join(self.roster.person_name(p) for p in action.participants)
        people = f"（参加：{who}）" if who else ""
        self.event(
            "consulted",
            action.actor,
            f"{rules.R_CONSULT} 会商：{action.topic}。决定：{action.decision}{people}",
        )
        self.changed()

    def withdraw(self, action: Withdraw) -> None:
        now = self.now
        voiding = self.s.rules_version >= 2
        for d in self.s.deadlines:
            if d.open:
                d.cancelled = True
                d.version += 1
            if voiding and not d.voided:
                d.voided = True
                d.version += 1
        self.s.close_reason = action.reason
        self.event(
            "withdrawn", action.actor, f"{rules.R_CLOSE} 办公室撤销（误报）：{action.reason}"
        )
        # R-ACCOUNT: a false alarm's deadline records are void (kept, shown as void, counted in
        # no figure); what was recorded by hand about it (谎报 …) stands.
        void = [
            a for a in self.s.accountability if voiding and not a.deadline_key.startswith("manual#")
        ]
        for rec in void:
            rec.voided_at = now
            rec.void_reason = f"误报撤销：{action.reason}"
        if void:
            kinds = "、".join(dict.fromkeys(a.kind for a in void))
            self.event(
                "records_voided",
                action.actor,
                f"{rules.R_ACCOUNT} 误报撤销，{len(void)}条{kinds}记录作废（保留备查，不计入统计）",
            )
        self._close(now)

    def record_accountability(self, action: RecordAccountability) -> None:
        now = self.now
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
                by=action.actor,
            )
        )
        self.event(
            "accountability",
            action.actor,
            f"{rules.R_ACCOUNT} {action.kind.value}{self._after_close()}："
            f"{self.roster.unit_name(action.unit)}"
            f"（{self.roster.person_name(person)}）：{action.reason}",
        )
        self.changed()

    def sign_for(self, action: SignFor) -> None:
        """签收: the person has the 交办/督办 messages addressed to them (one, or all still
        unsigned). Nothing else changes: the deadlines and the escalation chain run on."""
        signed = []
        which = []  # "key=person,person": for the store's documents (who signed for what)
        # 代签收: a stand-in signs for the absent person they act for too.
        absent = [a for a, s in self.stand_ins() if s == action.actor]
        for r in self.s.receipts:
            mine = [p for p in r.unsigned() if p == action.actor or p in absent]
            if mine and action.key in (None, r.key):
                for person in mine:
                    r.signed[person] = self.now
                which.append(f"{r.key}={','.join(mine)}")
                for_others = [self.roster.person_name(p) for p in mine if p != action.actor]
                signed.append(r.label + (f"（代{'、'.join(for_others)}）" if for_others else ""))
                d = self.deadline(r.deadline_key) if r.deadline_key else None
                if d is not None:
                    d.version += 1  # its timer recomputes: re-sending to this person stops
        self.event("signed", action.actor, "签收：" + "；".join(signed), "\n".join(which))
        self.changed()

    # ------------------------------------------------------------------ 签收's re-sending

    def _next_channels(self, person_id: str) -> list[Any]:
        """The person's own channels in the roster's order, SMS last (the inbox has it anyway)."""
        p = self.roster.person(person_id)
        channels = [c for c in (p.channels if p else []) if c.kind != "inbox"]
        return [c for c in channels if c.kind != "sms"] + [c for c in channels if c.kind == "sms"]

    def _unsigned_receipts(self, d: Deadline) -> list[Receipt]:
        """The deadline's 督办 messages someone has yet to sign for: each step's (since the
        `resend-every-step` patch), or only the latest step's (incidents started before)."""
        mine = [r for r in self.s.receipts if r.deadline_key == d.key]
        if not self.s.resend_steps:
            return mine[-1:] if mine and mine[-1].unsigned() else []
        return [r for r in mine if r.unsigned()]

    def resend_at(self, d: Deadline) -> datetime | None:
        """When a 督办 message of this deadline next goes again, not signed for (the earliest of
        its steps'). None: nothing to re-send."""
        if not (self.s.resend and d.open):
            return None
        due = [at for r in self._unsigned_receipts(d) if (at := self._resend_due(r)) is not None]
        return min(due) if due else None

    def _resend_due(self, r: Receipt) -> datetime | None:
        """When the message goes again: every `resend_after` (a drill's compressed) since it was
        sent, a round per channel, while an unsigned recipient has a channel that round can use;
        then, at the top of the chain, the repeats. None: nothing more."""
        kind = self._resend_kind(r)
        if kind is None:
            return None
        wait, every = self.spec.resend_after, self.spec.repeat_every
        if self.speedup:
            wait, every = wait / self.speedup, every / self.speedup
        if kind == "channel":
            return r.at + wait * (r.rounds + 1)
        at = (r.last_at or r.at) + every
        if self.s.severity is Severity.urgent or self.speedup:
            return at  # urgent (and a drill, whose hours are compressed) at any hour
        return _after_quiet_hours(at, self.tz, self.spec.quiet_hours)

    def _resend_kind(self, r: Receipt | None) -> str | None:
        """What the next re-send of the receipt is: "channel" (the next channel of someone
        unsigned), "repeat" (the top of the chain, major or urgent, under the cap), or None."""
        if r is None:
            return None
        if any(len(self._next_channels(p)) > r.rounds for p in r.unsigned()):
            return "channel"
        top = r.step is not None and r.step >= len(self.spec.escalation)
        serious = self.s.severity in (Severity.major, Severity.urgent)
        return "repeat" if top and serious and r.repeats < self.spec.repeat_cap else None

    def on_resend(self, d: Deadline) -> None:
        """R-ESCALATE, 签收: each 督办 message of the deadline due to go again goes to each
        recipient who has not signed for it, on their next channel (one per round), and the
        timeline says to whom and how."""
        for r in self._unsigned_receipts(d):
            at = self._resend_due(r)
            # Before the patch the one receipt went when its timer fired, as it always had.
            if at is not None and (at <= self.now or not self.s.resend_steps):
                self._resend(d, r)

    def _resend(self, d: Deadline, r: Receipt) -> None:
        kind = self._resend_kind(r)
        if r.step is None or kind is None:
            return
        if kind == "repeat":
            self._repeat(d, r)
            return
        r.rounds += 1
        r.last_at = self.now
        step, subject, body = self._receipt_message(d, r.step)
        told = []
        for absent in r.unsigned():
            pid = self._routed(absent)  # 代理: away, their stand-in is reminded instead
            channels = self._next_channels(pid)
            if len(channels) < r.rounds:
                continue
            channel = channels[r.rounds - 1]
            name = self.roster.person_name(pid)
            kind_words = CHANNEL_KINDS.get(channel.kind, channel.kind)
            told.append(f"{name}{self._for_words(absent)}（{kind_words}）")
            r.resent.append(f"{pid}|{channel_target(channel)}|{self.now.isoformat()}")
            self._queue(
                rules.R_ESCALATE,
                [Recipient(person_id=pid, name=name, channels=[channel])],
                f"【未签收，再次通知】{subject}",
                body,
                deadline=d,
                step=step,
            )
            r.resent_notes.append(self.s.pending_notifications[-1].key)
        if told:
            self.event(
                "resent",
                None,
                f"{r.label}未签收，第{r.rounds}次再次通知：{'、'.join(told)}（{rules.R_ESCALATE}）",
            )
        self.changed()

    def _receipt_message(self, d: Deadline, step_no: int) -> tuple[rules.EscalationStep, str, str]:
        """The 督办 step a receipt is for, and its message as of now (to send it again)."""
        waits = [timedelta(minutes=m) for m in self.inp.escalation_waits_minutes]
        chain = self.escalation_chain(d.key, waits)
        step = chain[min(step_no, len(chain)) - 1]
        subject, body = messages.escalation(
            self.view(), self.roster, self.tz, d, step, self.now, spec=self.spec
        )
        return step, subject, body

    def _repeat(self, d: Deadline, r: Receipt) -> None:
        """The top of the chain, still unsigned: the message again on every channel."""
        assert r.step is not None
        r.repeats += 1
        r.last_at = self.now
        step, subject, body = self._receipt_message(d, r.step)
        recipients = []
        for absent in r.unsigned():
            p = self.roster.person(self._routed(absent))
            if p is not None:
                recipients.append(Recipient(person_id=p.id, name=p.name, channels=list(p.channels)))
        names = "、".join(self._named(p) for p in r.unsigned())
        self._queue(
            rules.R_ESCALATE,
            recipients,
            f"【第{r.repeats}次提醒，未签收】{subject}",
            body,
            deadline=d,
            step=step,
        )
        r.resent_notes.append(self.s.pending_notifications[-1].key)
        self.event(
            "resent",
            None,
            f"{r.label}未签收，第{r.repeats}次提醒（共{self.spec.repeat_cap}次）：{names}"
            f"（{rules.R_ESCALATE}）",
        )
        self.changed()

    def _ask_receipt_of_assignment(self) -> None:
        """签收 of the 交办: the responsible unit's head and first-responsible person. A unit the
        incident was taken from no longer owes its signature (who signed stays on record)."""
        s = self.s
        unit = self.roster.unit(s.responsible_unit) if s.responsible_unit else None
        if unit is None:
            return
        label = f"交办：{unit.name}牵头处置"
        assigned = [r for r in s.receipts if r.deadline_key is None]
        if assigned and assigned[-1].label == label:
            return
        for r in s.receipts:
            if r.deadline_key is None:
                r.persons = [p for p in r.persons if p in r.signed]
        s.receipts = [r for r in s.receipts if r.persons]
        number = 1 + sum(r.key.startswith("交办#") for r in s.receipts)
        s.receipts.append(
            Receipt(
                key=f"交办#{number}",
                label=label,
                at=self.now,
                persons=list(dict.fromkeys([unit.head, unit.first_responsible])),
                note_key=self._last_note_key(),
            )
        )

    def _last_note_key(self) -> str | None:
        """The key of the notification just queued (the one a receipt asks to sign for)."""
        pending = self.s.pending_notifications
        return pending[-1].key if pending else None

    def commend(self, action: Commend) -> None:
        self.s.commendations.append(
            Commendation(
                at=self.now,
                unit=action.unit,
                person=action.person,
                reason=action.reason,
                by=action.actor,
            )
        )
        who = self.roster.person_name(action.person) if action.person else ""
        self.event(
            "commended",
            action.actor,
            f"{rules.R_COMMEND} 表彰{self._after_close()}："
            f"{self.roster.unit_name(action.unit)}{who}：{action.reason}",
        )
        self.changed()

    def attach(self, action: Attach) -> None:
        """Issue 19: a reference to a file on the timeline (the file and its row are the store's)."""
        self._remember(action)
        self.event(
            "attached",
            action.actor,
            f"添加附件{self._after_close()}：{self._file_words(action)}",
        )
        self.changed()

    def _remember(self, file: AttachRequest) -> None:
        """The incident's own list of its files: what a document named as a written report or
        summary must be one of (issue 19, item 5)."""
        if not any(f.id == file.attachment_id for f in self.s.attached_files):
            self.s.attached_files.append(
                AttachedFile(id=file.attachment_id, media_type=file.media_type, name=file.name)
            )

    @staticmethod
    def _file_words(file: AttachRequest) -> str:
        kind = ATTACHMENT_TYPES.get(file.media_type, file.media_type)
        return f"{file.name}（{kind}，{size_words(file.size)}）"

    def _evidence(self) -> None:
        """Issue 19: the files sent with the submission (the report form's evidence), on the
        timeline as the reporter's: the signed-in person who sent it, or nobody when anonymous
        (an anonymous caller's file is attributed to no unit or person)."""
        for file in self.inp.evidence:
            self._remember(file)
            who = "报告人" if self.inp.submitted_by else "未登录报告人"
            self.event(
                "attached",
                self.inp.submitted_by,
                f"{who}随报告提交附件：{self._file_words(file)}",
            )

    def _document(self, attachment_id: str | None) -> AttachedFile | None:
        if attachment_id is None:
            return None
        return next((f for f in self.s.attached_files if f.id == attachment_id), None)

    def _document_refusal(self, attachment_id: str | None, what: str) -> str | None:
        """R-WRITTEN, R-SUMMARY given as a document: a PDF or Word document of this incident."""
        if attachment_id is None:
            return None
        found = self._document(attachment_id)
        if found is None:
            return f"附件“{attachment_id}”不是本事件的附件：请先将{what}上传到本事件"
        if found.media_type not in DOCUMENT_TYPES:
            kind = ATTACHMENT_TYPES.get(found.media_type, found.media_type)
            return f"“{found.name}”是{kind}，{what}须为PDF或DOCX文档（图片可作为附件另行上传）"
        return None

    def _as_document(self, attachment_id: str | None) -> str:
        """The timeline's words for a written report or summary given as a document."""
        found = self._document(attachment_id)
        return f"（以文档报送：{found.name}）" if found is not None else ""

    # ------------------------------------------------------------------ reports

    def file_written_report(self, action: WrittenReport) -> None:
        self.s.written_report = action.text
        self.s.written_report_document = action.attachment_id
        self._meet(self.deadline(WRITTEN_KEY), self.now)
        self.event(
            "written_report",
            action.actor,
            f"{rules.R_WRITTEN} 报送书面信息{self._as_document(action.attachment_id)}",
        )
        self.changed()

    def report_progress(self, action: Progress) -> None:
        now = self.now
        for d in self.s.deadlines:
            if d.rule == rules.R_PROGRESS and d.open:
                self._meet(d, now)
        self.event("progress", action.actor, f"{rules.R_PROGRESS} 续报：{action.text}")
        self._ensure_progress(now)
        self.changed()

    # ------------------------------------------------------------------ the unit's handling

    def return_to_office(self, action: ReturnToOffice) -> None:
        unit = self.s.responsible_unit
        self.s.responsible_unit = None
        self.s.phase = Phase.triage
        self._follow_unit()
        self.event(
            "returned",
            action.actor,
            f"{self.roster.unit_name(unit)}退回办公室重新研判：{action.reason}",
        )
        self._notify(
            rules.R_NOTIFY,
            self.roster.members_of(self.roster.roles.office),
            *messages.returned(self.view(), self.roster, unit, action.reason),
        )
        self.changed()

    def declare_delay(self, action: DeclareDelay) -> None:
        s = self.s
        s.delay_reason = action.reason
        anchor, label = self._round_anchor()
        stance = self._add_deadline(
            f"R-STANCE#{s.reply_round}",
            rules.R_STANCE,
            rules.titles(self.spec)[rules.R_STANCE],
            anchor=anchor,
            anchor_label=label,
            due=rules.plan_due(anchor, self.spec.stance_within, self.inp.received_at, self.speedup),
            unit=s.responsible_unit,
        )
        reply = self.find(f"R-REPLY#{s.reply_round}")
        in_time = reply is not None and reply.open and not reply.overdue
        if in_time and reply is not None:
            # Declared before the deadline: R-STANCE replaces the R-REPLY miss; the official
            # reply is still owed (RULES.md R-STANCE). Declared after it, the miss stays.
            reply.replaced_by = stance.key
            reply.version += 1
        then = "回复期限由表态性回复期限取代" if in_time else f"已逾期的回复期限仍记{rules.OVERDUE}"
        self.event(
            "delay_declared",
            action.actor,
            f"{rules.R_STANCE} 无法在回复期内办结：{action.reason}；须{rules.plan_duration(self.spec.stance_within)}内作出表态性回复，"
            f"官方回复仍须完成（{then}）",
        )
        self.changed()

    def conclude(self, action: Conclude) -> None:
        now = self.now
        self.s.concluded_at = now
        self._add_deadline(
            RESULT_KEY,
            rules.R_INQUIRY,
            rules.titles(self.spec)[RESULT_KEY],
            anchor=now,
            anchor_label="办结时间",
            due=rules.same_day_due(now, self.inp.received_at, self.speedup, self.tz),
            unit=self.s.responsible_unit,
        )
        note = f"：{action.note}" if action.note else ""
        self.event(
            "concluded", action.actor, f"{rules.R_INQUIRY} 办结{note}；须于当日内回复处理结果"
        )
        self.changed()

    def decide_adoption(self, action: DecideAdoption) -> None:
        self.s.adoption = ("采纳：" if action.adopted else "不予采纳：") + action.decision
        self.event("adoption", action.actor, f"{rules.R_SUGGESTION} 建议{self.s.adoption}")
        self.changed()

    def report_spreading(self, action: ReportSpreading) -> None:
        self._refer(rules.R_HYPE, action.description, action.actor)
        self.event(
            "spreading",
            action.actor,
            f"{rules.R_HYPE} 告知事实真相后仍继续恶意传播：{action.description}",
        )
        self.changed()

    # ------------------------------------------------------------------ replies

    def draft_reply(self, action: DraftReply) -> None:
        current = current_reply(self.s)
        now = self.now
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
            current.countersign_units = []
            current.countersigned = {}
        self.event(
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
        self.changed()

    def approve_reply(self, action: ApproveReply) -> None:
        current = current_reply(self.s)
        assert current is not None  # the validator ensured it
        now = self.now
        if action.approve:
            current.status = ReplyStatus.approved
            current.approved_by = action.actor
            current.approved_at = now
            current.comment = action.comment
            current.release_needed = rules.needs_release(self.s.severity)
            current.countersign_units = list(self.s.co_units) if self._countersigning() else []
            current.countersigned = {}
            then = ""
            if current.countersign_units:
                names = "、".join(self.roster.unit_name(u) for u in current.countersign_units)
                then = f"，待协办单位（{names}）负责人会签（{rules.R_REVIEW}）"
            if current.release_needed:
                then += "，待领导小组审定口径和发布人（R-RELEASE）"
            self.event(
                "reply_approved", action.actor, f"单位负责人审定通过{current.kind.label}{then}"
            )
            if current.countersign_units:
                self._ask_countersign()
            elif current.release_needed:
                self._ask_release()
        else:
            current.status = ReplyStatus.rejected
            current.comment = action.comment
            self.event("reply_rejected", action.actor, f"单位负责人退回回复稿：{action.comment}")
        self.changed()

    def countersign_reply(self, action: CountersignReply) -> None:
        """R-REVIEW 经各部门负责人审定: a co-unit head countersigns for each pending co-unit they
        head, or refuses: the draft goes back to the lead unit with the reason."""
        current = current_reply(self.s)
        assert current is not None
        head = self._acting[1] if self._acting else action.actor  # 代: the absent head's units
        units = [u for u in countersign_pending(self.s) if self.roster.is_head_of(head, u)]
        names = "、".join(self.roster.unit_name(u) for u in units)
        if action.approve:
            for unit in units:
                current.countersigned[unit] = action.actor
            left = countersign_pending(self.s)
            then = "，会签完成" if not left else ""
            note = f"（{action.comment}）" if action.comment else ""
            self.event(
                "reply_countersigned",
                action.actor,
                f"{rules.R_REVIEW} {names}负责人会签{current.kind.label}{note}{then}",
            )
            if not left and current.release_needed and current.released_by is None:
                self._ask_release()
        else:
            current.status = ReplyStatus.rejected
            current.comment = f"{names}会签退回：{action.comment}"
            self.event(
                "countersign_refused",
                action.actor,
                f"{rules.R_REVIEW} {names}负责人不同意会签，回复稿退回牵头单位：{action.comment}",
            )
            lead = self.roster.unit(self.s.responsible_unit) if self.s.responsible_unit else None
            who = [current.drafted_by] + ([lead.head] if lead is not None else [])
            self._notify(
                rules.R_REVIEW,
                who,
                *messages.countersign_refused(
                    self.view(), self.roster, names, action.comment or ""
                ),
            )
        self.changed()

    def approve_release(self, action: ApproveRelease) -> None:
        current = current_reply(self.s)
        assert current is not None
        if action.approve:
            current.released_by = action.actor
            current.released_at = self.now
            current.spokesperson = action.spokesperson
            self.event(
                "release_approved",
                action.actor,
                f"{rules.R_RELEASE} 领导小组审定发布口径，发布人：{self.roster.person_name(action.spokesperson)}",
            )
        else:
            current.status = ReplyStatus.rejected
            current.comment = action.comment
            self.event(
                "release_rejected",
                action.actor,
                f"{rules.R_RELEASE} 领导小组退回发布口径：{action.comment}",
            )
        self.changed()

    def publish_reply(self, action: PublishReply) -> None:
        s = self.s
        current = current_reply(self.s)
        assert current is not None
        now = self.now
        current.status = ReplyStatus.published
        current.published_by = action.actor
        current.published_at = now
        current.channel = action.channel
        current.url = action.url
        met: list[Deadline] = []
        reply = self.find(f"R-REPLY#{s.reply_round}")
        if current.kind is ReplyKind.stance:
            met.append(self.deadline(f"R-STANCE#{s.reply_round}"))
        elif current.kind is ReplyKind.result:
            result = self.find(RESULT_KEY)
            if result is not None and result.open:
                met.append(result)
            else:
                # 能当即回复的要当即回复: an immediate reply settles both the opinion and the result.
                s.concluded_at = now
            # A result reply is an official reply too: whatever of the round is still owed is met.
            met += [d for d in (reply, self.find(OPINION_KEY)) if d is not None and d.open]
        else:
            met += [d for d in (reply, self.find(OPINION_KEY)) if d is not None and d.open]
        for d in met:
            self._meet(d, now)
        stance = self.find(f"R-STANCE#{s.reply_round}")
        if current.kind is not ReplyKind.stance and stance is not None and stance.open:
            self._cancel(stance)  # the official reply came first: no stance reply is owed
        late = [d.title for d in met if d.overdue]
        suffix = f"（逾期：{'、'.join(late)}）" if late else ""
        self.event(
            "reply_published",
            action.actor,
            f"发布{current.kind.label}（{action.channel}）{suffix}",
            detail=current.text,
        )
        if (
            current.kind is not ReplyKind.stance
            and s.category is Category.hype
            and s.facts_published_at is None
        ):
            s.facts_published_at = now
            self.event("facts_published", action.actor, f"{rules.R_HYPE} 已依法告知事实真相")
        if current.kind is not ReplyKind.stance and s.category is Category.fabrication:
            self.event("clarified", action.actor, f"{rules.R_FABRICATION} 已依法澄清事实真相")
        if reply is not None and reply.met_at is not None and s.phase is Phase.handling:
            s.phase = Phase.tracking
            self._next_track(now)
        self.changed()

    # ------------------------------------------------------------------ after the reply

    def track(self, action: Track) -> None:
        s = self.s
        now = self.now
        for d in s.deadlines:
            if d.rule == rules.R_TRACK and d.open:
                self._meet(d, now)
        note = f"：{action.note}" if action.note else ""
        self.event(
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
                rules.titles(self.spec)[rules.R_SUMMARY],
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
                self.event("severity_raised", action.actor, f"舆情升级为{action.severity.label}")
                s.severity = action.severity
            s.phase = Phase.handling
            s.reply_round += 1
            self._add_reply_deadline(now, "再次升温时间")
            self._ensure_progress(now)
            who = self._notify_recipients()
            self._notify(rules.R_TRACK, who, *messages.flared(self.view(), self.roster, self.tz))
        self.changed()

    def submit_summary(self, action: SubmitSummary) -> None:
        now = self.now
        self.s.summary = action.text
        self.s.summary_document = action.attachment_id
        document = self._document(action.attachment_id)
        self._meet(self.deadline(SUMMARY_KEY), now)
        self.event(
            "summary",
            action.actor,
            f"{rules.R_SUMMARY} 书面总结报送镇党政办{self._as_document(action.attachment_id)}",
        )
        self._notify(
            rules.R_SUMMARY,
            self.roster.members_of(self.roster.roles.party_office),
            *messages.summary(
                self.view(), self.roster, action.text, document.name if document else None
            ),
        )
        self._close(now)

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
        self.to_watch.append(key)
        return d

    def find(self, key: str) -> Deadline | None:
        return next((d for d in self.s.deadlines if d.key == key), None)

    def deadline(self, key: str) -> Deadline:
        d = self.find(key)
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
        d = self.deadline(f"R-REPLY#{self.s.reply_round}")
        assert d.anchor_at is not None
        return d.anchor_at, d.anchor_label or "发现时间"

    def _add_reply_deadline(self, anchor: datetime, label: str) -> None:
        """R-REPLY: 12 h / 24 h / 3 h by severity from discovery (or from a flare-up)."""
        s = self.s
        self._add_deadline(
            f"R-REPLY#{s.reply_round}",
            rules.R_REPLY,
            rules.reply_title(s.severity, self.spec),
            anchor=anchor,
            anchor_label=label,
            due=rules.plan_due(
                anchor, self.spec.reply_within[s.severity], self.inp.received_at, self.speedup
            ),
            unit=s.responsible_unit,
        )

    def _move_reply_deadlines(self) -> None:
        """A changed severity moves the open reply deadline; the change is on the timeline."""
        d = self.find(f"R-REPLY#{self.s.reply_round}")
        if d is None or not d.open or d.anchor_at is None:
            return
        due = rules.plan_due(
            d.anchor_at, self.spec.reply_within[self.s.severity], self.inp.received_at, self.speedup
        )
        if due == d.due_at:
            return
        if d.overdue:
            # One omission, one record and one chain (R-ACCOUNT): a miss under the severity then
            # in force stands; a later re-triage neither voids it nor starts the deadline afresh.
            self.event(
                "deadline_kept",
                None,
                f"{rules.R_REPLY} 已逾期并记录，等级调整不改变原回复期限"
                f"（{messages.local(d.due_at, self.tz)}）",
            )
            return
        old = d.due_at
        d.due_at = due
        d.title = rules.reply_title(self.s.severity, self.spec)
        d.version += 1
        d.warned = False
        if d.overdue and self.now < due:
            # The new severity gives more time: no longer overdue, the chain starts afresh.
            d.overdue = False
            d.escalation_step = 0
            d.last_step_at = None
        self.event(
            "deadline_moved",
            None,
            f"{rules.R_REPLY} 回复期限调整：{messages.local(old, self.tz)} → {messages.local(due, self.tz)}",
        )

    def _notify_recipients(self) -> list[str]:
        s = self.s
        return rules.notify_recipients(
            self.roster, s.severity, s.responsible_unit, publicity=s.rules_version >= 1
        )

    def _countersigning(self) -> bool:
        """R-REVIEW 经各部门负责人审定: the plan file switches the co-units' countersign."""
        return self.spec.countersign and self.s.rules_version >= 2

    def _follow_countersign(self) -> None:
        """An approved reply not yet out is countersigned by the co-units as they are now."""
        current = current_reply(self.s)
        if current is None or current.status is not ReplyStatus.approved:
            return
        if self._countersigning() and current.countersign_units != self.s.co_units:
            current.countersign_units = list(self.s.co_units)
            if countersign_pending(self.s):
                self._ask_countersign()

    def _ask_countersign(self) -> None:
        units = countersign_pending(self.s)
        heads = [u.head for u in map(self.roster.unit, units) if u is not None]
        self._notify(
            rules.R_REVIEW, heads, *messages.countersign_requested(self.view(), self.roster, units)
        )

    def _ask_release(self) -> None:
        lg = self.roster.leading_group
        self._notify(
            rules.R_RELEASE,
            [lg.leader, lg.deputy],
            *messages.release_requested(self.view(), self.roster),
        )

    def _follow_release(self, actor: str | None) -> None:
        """R-RELEASE follows the severity at publish time: a reply approved but not yet published
        needs the leading group exactly while the incident is major or urgent; when a re-triage
        makes it so, the leading group is asked at once."""
        current = current_reply(self.s)
        if current is None or current.status is not ReplyStatus.approved:
            return
        needed = rules.needs_release(self.s.severity)
        if needed == current.release_needed:
            return
        current.release_needed = needed
        if not needed or current.released_by is not None:
            return
        self.event(
            "release_needed",
            actor,
            f"{rules.R_RELEASE} 等级提高为{self.s.severity.label}：{current.kind.label}须经领导小组审定口径和发布人后方可发布",
        )
        if not countersign_pending(self.s):
            self._ask_release()

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
        opinion = self.find(OPINION_KEY)
        reply = self.find("R-REPLY#1")
        owed = s.phase is not Phase.lead and (reply is None or reply.open)
        if s.category is Category.inquiry and owed:
            if opinion is None:
                sub = self.sub
                self._add_deadline(
                    OPINION_KEY,
                    rules.R_INQUIRY,
                    rules.titles(self.spec)[OPINION_KEY],
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
                self.to_watch.append(OPINION_KEY)
        elif s.category is not Category.inquiry:
            for key in (OPINION_KEY, RESULT_KEY):
                d = self.find(key)
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
            self.event("category_changed", None, f"类别由“{old.label}”改为“{label}”，期限随之调整")

    def _refer(self, rule: str, reason: str, by: str | None) -> None:
        """R-HYPE / R-FABRICATION: create, send and record a referral."""
        s = self.s
        assert s.category is not None
        _, target = rules.referral_contact(self.roster, s.category)
        s.referrals.append(
            Referral(
                no=len(s.referrals) + 1,
                rule=rule,
                at=self.now,
                target=target,
                reason=reason,
                by=by,
            )
        )
        self.event(
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
                # A changed severity changes the cadence; the last report still anchors it. A
                # report already missed stays missed (one omission, one record: R-ACCOUNT).
                assert d.anchor_at is not None
                due = rules.plan_due(d.anchor_at, interval, d.anchor_at, self.speedup)
                if due != d.due_at and not d.overdue:
                    d.due_at = due
                    d.version += 1
                    d.warned = False
            return
        s.progress_round += 1
        self._add_deadline(
            f"R-PROGRESS#{s.progress_round}",
            rules.R_PROGRESS,
            rules.titles(self.spec)[rules.R_PROGRESS],
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
            rules.titles(self.spec)[rules.R_TRACK],
            anchor=since,
            anchor_label="上次检查时间",
            due=rules.plan_due(since, self.spec.track_interval, since, self.speedup),
            unit=s.responsible_unit,
        )

    def _close(self, at: datetime) -> None:
        """R-CLOSE: no action is accepted after this."""
        self._stop_progress()
        s = self.s
        s.phase = Phase.closed
        s.closed_at = at
        then = ""
        if s.rules_version >= 2 and not self.sub.is_drill:
            # R-CLOSE: commendations and 谎报/瞒报/漏报 are usually decided after the summary.
            # (Not for a drill: nothing of a drill reaches the figures, R-DRILL.)
            s.amend_until = at + self.spec.amend_within
            s.amending = True
            then = f"；{messages.local(s.amend_until, self.tz)}前仍可补记表彰和谎报、瞒报、漏报"
        self.event(
            "closed",
            None,
            "结案" + (f"（撤销：{s.close_reason}）" if s.close_reason else "") + then,
        )
        self.changed()

    def end_amendments(self) -> None:
        """R-CLOSE: the period after close is over; from now on nothing is accepted."""
        self.s.amending = False
        self.event("amendments_closed", None, f"{rules.R_CLOSE} 结案后补记期届满，不再接受补记")
        self.changed()

    def _after_close(self) -> str:
        return "（结案后补记）" if self.s.phase is Phase.closed else ""

    def on_warn(self, d: Deadline) -> None:
        """临期提醒: once, to the owning unit (or the office), before the deadline falls due."""
        d.warned = True
        who = self.roster.members_of(d.unit or self.roster.roles.office)
        self.event(
            "deadline_warning",
            None,
            f"临期提醒：{d.title}，期限{messages.local(d.due_at, self.tz)}",
        )
        self._notify(
            d.rule, who, *messages.warning(self.view(), self.roster, self.tz, d), deadline=d
        )
        self.changed()

    def on_miss(self, d: Deadline) -> None:
        """R-ACCOUNT: a deadline passed unmet is an accountability record on the unit; one
        omission is one record, so a deadline the same reply would meet as one already missed
        joins that record (naming both rules) and its escalation chain."""
        d.overdue = True
        first = self._missed_by_the_same_act(d)
        if first is not None:
            d.joined = first.key
            d.version += 1
            for rec in self.s.accountability:
                if rec.deadline_key == first.key and rec.met_at is None:
                    named = rec.rule.split("、")
                    if d.rule not in named:
                        rec.rule = "、".join([*named, d.rule])
            self.event(
                "deadline_missed",
                None,
                f"{d.title}：已逾期（与“{first.title}”为同一未回复，{rules.R_ACCOUNT} 合并记录）",
            )
            self.changed()
            return
        unit = d.unit or self.roster.roles.office
        self._account(d, rules.miss_kind(d.rule), unit)
        self.event(
            "deadline_missed",
            None,
            f"{d.title}：已逾期（{rules.R_ACCOUNT} 记{rules.miss_kind(d.rule)}）",
        )
        self.changed()

    def _missed_by_the_same_act(self, d: Deadline) -> Deadline | None:
        """An open, already missed deadline that the reply owed for `d` would meet too (R-REPLY
        and R-INQUIRY's opinion and result: one official reply settles them)."""
        group = {f"R-REPLY#{self.s.reply_round}", OPINION_KEY, RESULT_KEY}
        if d.key not in group:
            return None
        for other in self.s.deadlines:
            joinable = other.open and other.overdue and other.joined is None
            if other.key in group and other.key != d.key and joinable:
                return other
        return None

    def escalation_chain(self, key: str, waits: list[timedelta]) -> list[rules.EscalationStep]:
        """The steps a missed deadline escalates through: none for one joined to another's
        record, whose chain covers it (R-ESCALATE)."""
        d = self.deadline(key)
        if d.joined is not None:
            return []
        return rules.escalation_chain(self.roster, d.unit, waits, self.spec)

    def on_escalation_step(self, d: Deadline, step: rules.EscalationStep) -> None:
        """R-ESCALATE: record the step, tell its targets; the next step waits its turn."""
        now = self.now
        d.escalation_step = step.step
        d.last_step_at = now
        names = "、".join(self._named(t) for t in step.targets)
        # 代理: a 督办 for someone away goes to their stand-in instead, who signs for it.
        targets = list(dict.fromkeys(self._routed(t) for t in step.targets))
        summary = f"第{step.step}级督办：{step.label}（{rules.R_ESCALATE}）"
        esc = Escalation(
            deadline_key=d.key,
            rule=d.rule,
            step=step.step,
            at=now,
            targets=targets,
            summary=summary,
        )
        self.s.escalations.append(esc)
        self.s.pending_escalations.append(esc)
        self.event(
            "escalated",
            None,
            f"第{step.step}级督办：{step.label}，{d.title}逾期，通知{names}（{rules.R_ESCALATE}）",
        )
        subject, body = messages.escalation(
            self.view(), self.roster, self.tz, d, step, now, spec=self.spec
        )
        self._notify(rules.R_ESCALATE, targets, subject, body, deadline=d, step=step)
        self.s.receipts.append(
            Receipt(
                key=f"{d.key}/{step.step}",
                label=f"第{step.step}级督办：{d.title}逾期",
                at=now,
                persons=targets,
                deadline_key=d.key,
                step=step.step,
                note_key=self._last_note_key(),
            )
        )
        self.changed()

    def _account(self, d: Deadline, kind: str, unit: str, met_at: datetime | None = None) -> None:
        self.s.accountability.append(
            AccountabilityRecord(
                deadline_key=d.key,
                rule=d.rule,
                kind=kind,
                unit=unit,
                person=rules.accountable_person(self.roster, unit),
                due_at=d.due_at,
                recorded_at=self.now,
                met_at=met_at,
            )
        )

    # ------------------------------------------------------------------ checks for validators

    def place(self) -> Place:
        return place_of(self.s, self.reporter_unit, self.now)

    # ------------------------------------------------------------------ 代理 (issue 20, item 3)

    def absences_changed(self, absences: Absences) -> None:
        """The store's absences not yet over replace those held, unless an older list came late.
        Nothing else changes now: who is away matters when a message goes or an action comes."""
        if absences.revision < self.s.absences.revision:
            return
        before = {a.id: a for a in self.s.absences.items}
        self.s.absences = absences
        for a in absences.items:
            told = before.get(a.id) != a and a.ends_at > self.now
            if told and self.s.phase is not Phase.closed and self.concerns(a.person):
                self.event(
                    "absence",
                    None,
                    f"不在岗：{self.roster.person_name(a.person)}"
                    f"（{messages.local(a.starts_at, self.tz)}至{messages.local(a.ends_at, self.tz)}），"
                    f"由{self.roster.person_name(a.stand_in)}代理",
                )
        self.changed()

    def concerns(self, person_id: str) -> bool:
        """Whether the person has a part in this incident that their absence touches: the
        leading group and its office (the chain's top, releases), the units on it, the persons
        brought in, anyone with a message to sign for."""
        s = self.s
        if self._roles_of(person_id) & {Role.leader, Role.deputy, Role.member, Role.office}:
            return True
        units = [self.reporter_unit, s.responsible_unit, *s.co_units, *s.activated_units]
        if any(self.roster.belongs_to(person_id, u) for u in units):
            return True
        return person_id in s.activated_persons or any(person_id in r.persons for r in s.receipts)

    def next_absence_change(self) -> datetime | None:
        """When the next absence of someone with a part in the incident begins or ends."""
        at = [
            a.starts_at if a.starts_at > self.now else a.ends_at
            for a in self.s.absences.items
            if a.ends_at > self.now and self.concerns(a.person)
        ]
        return min(at) if at else None

    def stand_ins(self) -> tuple[tuple[str, str], ...]:
        return stand_ins(self.s, self.now)

    def _routed(self, person_id: str) -> str:
        """Who gets a 督办 meant for the person now: their stand-in while they are away."""
        return dict(self.stand_ins()).get(person_id, person_id)

    def _for_words(self, person_id: str) -> str:
        """ "（代李四）" when a message for the person went to their stand-in."""
        routed = self._routed(person_id)
        return f"（代{self.roster.person_name(person_id)}）" if routed != person_id else ""

    def _named(self, person_id: str) -> str:
        """Who a 督办 for the person reaches, by name: "王五（代李四）" while they are away."""
        return self.roster.person_name(self._routed(person_id)) + self._for_words(person_id)

    def allows(self, name: str, actor: str) -> bool:
        """`may(name, actor) is None`, without the wording."""
        return allows(name, self.roster, self.s, self.place(), actor, self.tz, self._roles_of)

    def _roles_of(self, person_id: str) -> set[Role]:
        """The roster's roles of a person, looked up once per incident (the roster is fixed)."""
        roles = self._roles.get(person_id)
        if roles is None:
            roles = self._roles[person_id] = self.roster.roles_of(person_id)
        return roles

    def may(self, name: str, actor: str) -> Refusal | None:
        """Whether `actor` may take action `name` now, whatever its fields (plan/actions.py)."""
        return may(name, self.roster, self.s, self.place(), actor, self.tz)

    def check(self, name: str, action: Any) -> None:
        """Raise `Refusal` if the action (by its ACTIONS name) is not accepted now: first who and
        when (the table), then the action's own fields."""
        if not self.started:
            # An update can arrive in the same activation as the start, before the deadlines exist.
            raise Refusal("事件正在创建，请稍后重试", "not_ready")
        s = self.s
        over = s.amend_until is not None and self.now >= s.amend_until
        if s.phase is Phase.closed and s.amending and over:
            # The period's timer and this action came together: the period is over.
            raise Refusal(closed_refusal(s, rule_of(name), self.tz))
        refused = self.may(name, action.actor)
        if refused is not None and name == "draft-reply" and refused.kind == "refused":
            # The table asks whether any kind of reply is owed; the refusal names the kind asked.
            kind_reason = draftable(self.s, action.kind)
            if kind_reason is not None and self.s.phase in reply_phases(self.s):
                raise Refusal(kind_reason)
        if refused is not None:
            raise refused
        reason = self._fields_refusal(name, action)
        if reason is not None:
            raise Refusal(reason)

    def _fields_refusal(self, name: str, action: Any) -> str | None:
        """What is wrong with the action's own fields, if anything."""
        roster = self.roster
        units: list[str] = []
        people: list[tuple[str, str]] = []
        if name == "sign-for" and action.key is not None:
            whom = {action.actor} | {a for a, s in self.stand_ins() if s == action.actor}
            mine = [r.key for r in self.s.receipts if whom & set(r.unsigned())]
            if action.key not in mine:
                return f"没有发给您、待签收的通知“{action.key}”（可签收：{'、'.join(mine)}）"
        if name == "triage":
            units = [action.responsible_unit, *action.co_units]
            if action.responsible_unit in action.co_units:
                return "牵头单位不能同时是协办单位"
        elif name == "activate":
            units = list(action.units)
            people = [("人员", p) for p in action.persons]
        elif name == "consult":
            people = [("参加人员", p) for p in action.participants]
        elif name in ("record-accountability", "commend"):
            units = [action.unit]
            people = [("人员", action.person)] if action.person else []
        elif name == "draft-reply":
            return draftable(self.s, action.kind)
        elif name == "approve-reply":
            if not action.approve and not action.comment:
                return "退回回复稿须说明理由"
        elif name == "countersign-reply":
            if not action.approve and not action.comment:
                return "不同意会签须说明理由"
        elif name == "approve-release":
            if action.approve and not action.spokesperson:
                return "须确定发布人"
            people = [("发布人", action.spokesperson)] if action.spokesperson else []
            if not action.approve and not action.comment:
                return "退回须说明理由"
        elif name == "file-written-report":
            return self._document_refusal(action.attachment_id, "书面信息")
        elif name == "submit-summary":
            return self._document_refusal(action.attachment_id, "书面总结")
        elif name == "track":
            order = list(Severity)
            if action.severity is not None and order.index(action.severity) < order.index(
                self.s.severity
            ):
                return "再次升温时只能维持或提高舆情等级"
            if action.severity is not None and action.status is not TrackStatus.flared:
                return "只有再次升温时可以调整等级"
        for unit in units:
            if roster.unit(unit) is None:
                return f"单位“{unit}”不在名册中"
        for label, pid in people:
            if roster.person(pid) is None:
                return f"{label}“{pid}”不在名册中"
        return None

    # ------------------------------------------------------------------ effects

    def event(self, kind: str, actor: str | None, summary: str, detail: str | None = None) -> None:
        for_person = None
        if self._acting is not None and actor == self._acting[0]:
            # 代: the stand-in acted for the absent person, and the record says so.
            for_person = self._acting[1]
            summary = f"（代{self.roster.person_name(for_person)}）{summary}"
        self.s.timeline.append(
            TimelineEntry(
                seq=len(self.s.timeline) + 1,
                at=self.now,
                kind=kind,
                actor=actor,
                summary=rules.code_last(summary),
                detail=detail,
                for_person=for_person,
            )
        )

    def _notify(
        self,
        rule: str,
        person_ids: list[str],
        subject: str,
        body: str,
        *,
        deadline: Deadline | None = None,
        step: rules.EscalationStep | None = None,
    ) -> None:
        # R-DUTY: every notification about the incident reaches the first-responsible person of
        # the responsible unit, the co-handling units and the units the leading group brought in
        # (R-ACTIVATE), and the persons it named, whoever else it is for.
        person_ids = list(person_ids)
        for unit_id in [self.s.responsible_unit, *self.s.co_units, *self.s.activated_units]:
            unit = self.roster.unit(unit_id) if unit_id else None
            if unit is not None:
                person_ids.append(unit.first_responsible)
        person_ids += self.s.activated_persons
        # 代理: while someone is away their stand-in is told too, and only the stand-in gets a
        # 督办 step (an escalation to a person who cannot act is no escalation).
        away = dict(self.stand_ins())
        if away:
            routed = [
                (away.get(p, p),) if step is not None else (p, away.get(p, p)) for p in person_ids
            ]
            person_ids = [p for pair in routed for p in pair]
        involved = {self.reporter_unit, self.s.responsible_unit, *self.s.co_units}
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
        self._queue(rule, recipients, subject, body, deadline=deadline, step=step)

    def _queue(
        self,
        rule: str,
        recipients: list[Recipient],
        subject: str,
        body: str,
        *,
        deadline: Deadline | None = None,
        step: rules.EscalationStep | None = None,
    ) -> None:
        """A notification to exactly these recipients, each on the channels given."""
        incident_id = self.inp.incident_id
        about = messages.brief_deadline(self.s.deadlines, rule, deadline)
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
                sent_at=self.now,
                brief=messages.brief(self.s.deadlines, self.tz, rule, deadline, step, self.now),
                deadline=about.key if about else "",
                step=step.step if step else 0,
            )
        )

    def changed(self) -> None:
        self.s.version += 1
        self.dirty = True

    def next_due(self) -> datetime | None:
        open_ = [d.due_at for d in self.s.deadlines if d.open]
        return min(open_) if open_ else None

    # ------------------------------------------------------------------ actions by name

    def advance(self, until: datetime) -> None:
        """Let time pass to `until` as the workflow's timers would: every warning, miss and
        escalation step at its own instant, earliest first (plan/timers.py decides each)."""
        waits = [timedelta(minutes=m) for m in self.inp.escalation_waits_minutes]
        while True:
            first: tuple[datetime, Deadline, Next] | None = None
            for d in self.s.deadlines:
                steps = self.escalation_chain(d.key, waits) if d.open and d.overdue else []
                event = next_event(
                    d,
                    steps,
                    self.now,
                    warn_at=self.spec.warn_at,
                    speedup=self.speedup,
                    resend_at=self.resend_at(d),
                )
                due = event.at is not None and event.at <= until
                if due and event.at is not None and (first is None or event.at < first[0]):
                    first = (event.at, d, event)
            if first is None:
                break
            at, d, event = first
            self.now = max(self.now, at)
            if event.kind == "warn":
                self.on_warn(d)
            elif event.kind == "miss":
                self.on_miss(d)
            elif event.kind == "resend":
                self.on_resend(d)
            else:
                assert event.step is not None
                self.on_escalation_step(d, event.step)
        self.to_watch.clear()
        self.now = max(self.now, until)

    def apply(self, name: str, action: Any, now: datetime) -> None:
        """Carry out an accepted action at `now`."""
        self.now = now
        actor = getattr(action, "actor", None)
        absent = acting_as(name, self.roster, self.s, self.place(), actor) if actor else None
        self._acting = (actor, absent) if actor and absent else None
        try:
            getattr(self, name.replace("-", "_"))(action)
        finally:
            self._acting = None


def _after_quiet_hours(at: datetime, tz: str, quiet: tuple[dt_time, dt_time]) -> datetime:
    """`at`, or the end of the quiet hours (local time) when it falls in them."""
    zone = ZoneInfo(tz)
    local = at.astimezone(zone)
    start, end = quiet
    clock = local.timetz().replace(tzinfo=None)
    overnight = start > end
    inside = (clock >= start or clock < end) if overnight else (start <= clock < end)
    if not inside:
        return at
    day = local.date() + timedelta(days=1) if overnight and clock >= start else local.date()
    return datetime.combine(day, end, tzinfo=zone).astimezone(at.tzinfo)
