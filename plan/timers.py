"""What a deadline waits for next: its warning (临期提醒), its due time, or its next escalation step
(R-ESCALATE). Pure: workflows/deadlines.py turns the answer into a durable timer, and the model
checker (tests/test_model.py) into a jump of time, so both follow the same rule."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from plan.models import Deadline
from plan.rules import R_ESCALATE, EscalationStep


@dataclass(frozen=True)
class Next:
    """`kind`: "done" (met or cancelled: nothing more), "idle" (nothing falls due until the
    deadline changes), "warn", "miss" or "step". `at` is when (None for done and idle), `step`
    the escalation step, `summary` the timer's label in the Temporal UI."""

    kind: str  # also "resend": a 督办 message not signed for goes on the next channel
    at: datetime | None = None
    step: EscalationStep | None = None
    summary: str | None = None


def next_event(
    d: Deadline,
    steps: list[EscalationStep],
    now: datetime,
    *,
    warn_at: float | None,
    speedup: float | None,
    resend_at: datetime | None = None,
) -> Next:
    """The deadline's next event as of `now` (a warning not given before the due time is
    skipped: the miss says more). `resend_at`: when the latest 督办 step's message, not signed
    for, goes again on a next channel (issue 20), if it does."""
    event = _next(d, steps, now, warn_at=warn_at, speedup=speedup)
    sooner = event.kind == "idle" or (
        event.at is not None and resend_at is not None and resend_at < event.at
    )
    if resend_at is not None and d.open and d.overdue and sooner:
        return Next("resend", resend_at, summary=f"{R_ESCALATE} 未签收，再次通知")
    return event


def _next(
    d: Deadline,
    steps: list[EscalationStep],
    now: datetime,
    *,
    warn_at: float | None,
    speedup: float | None,
) -> Next:
    if not d.open:
        return Next("done")
    if d.replaced_by is not None and not d.overdue:
        return Next("idle")  # R-STANCE took its place: owed still, nothing falls due
    if not d.overdue:
        warn_time = _warn_time(d, warn_at)
        if now < d.due_at and not d.warned and warn_time is not None:
            return Next("warn", warn_time, summary=f"临期提醒 {d.title}")
        return Next("miss", d.due_at, summary=d.title)
    if d.escalation_step >= len(steps):
        return Next("idle")  # chain exhausted: stays overdue until met or moved
    step = steps[d.escalation_step]
    wait = step.wait / speedup if speedup else step.wait
    fire_at = (d.last_step_at or d.due_at) + wait if d.escalation_step else d.due_at + wait
    return Next("step", fire_at, step, f"{R_ESCALATE} 第{step.step}级: {step.label}")


def _warn_time(d: Deadline, warn_at: float | None) -> datetime | None:
    start = d.window_start or d.anchor_at
    if warn_at is None or start is None or d.due_at <= start:
        return None
    return start + (d.due_at - start) * warn_at
