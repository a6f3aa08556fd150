"""The one helper every rule's deadline uses: warn before it falls due (临期提醒), wait for it to
be met or to fall due, then escalate step by step (R-ESCALATE) until it is met.

A watcher owns nothing but waiting. What a warning, a miss or an escalation step means is decided by
the callbacks it is given, which only change workflow state; the workflow turns that state into
activities. A deadline whose due time moves (a changed severity) bumps its `version`, which wakes
the watcher to wait again from the new time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from plan.models import Deadline
    from plan.rules import R_ESCALATE, EscalationStep


async def watch_deadline(
    get: Callable[[], Deadline],
    chain: Callable[[], list[EscalationStep]],
    *,
    on_warn: Callable[[Deadline], None],
    on_miss: Callable[[Deadline], None],
    on_step: Callable[[Deadline, EscalationStep], None],
    warn_at: float | None,
    speedup: float | None,
) -> None:
    while True:
        d = get()
        if not d.open:
            return
        now = workflow.now()
        if not d.overdue:
            if now < d.due_at:
                warn_time = _warn_time(d, warn_at)
                if not d.warned and warn_time is not None:
                    if now < warn_time:
                        await _wait(get, d.version, warn_time - now, f"临期提醒 {d.title}")
                    else:
                        on_warn(d)
                    continue
                await _wait(get, d.version, d.due_at - now, d.title)
                continue
            on_miss(d)
            continue
        steps = chain()
        if d.escalation_step >= len(steps):
            # Chain exhausted: stay overdue until met or moved.
            await _wait(get, d.version, None, None)
            continue
        step = steps[d.escalation_step]
        wait = step.wait / speedup if speedup else step.wait
        fire_at = (d.last_step_at or d.due_at) + wait if d.escalation_step else d.due_at + wait
        if now < fire_at:
            await _wait(
                get, d.version, fire_at - now, f"{R_ESCALATE} 第{step.step}级: {step.label}"
            )
            continue
        on_step(d, step)


def _warn_time(d: Deadline, warn_at: float | None) -> datetime | None:
    start = d.window_start or d.anchor_at
    if warn_at is None or start is None or d.due_at <= start:
        return None
    return start + (d.due_at - start) * warn_at


async def _wait(
    get: Callable[[], Deadline], version: int, timeout: timedelta | None, summary: str | None
) -> None:
    def changed() -> bool:
        d = get()
        return not d.open or d.version != version

    with contextlib.suppress(TimeoutError):
        await workflow.wait_condition(changed, timeout=timeout, timeout_summary=summary)
