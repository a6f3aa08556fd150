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
    from plan.rules import EscalationStep
    from plan.timers import next_event


async def watch_deadline(
    get: Callable[[], Deadline],
    chain: Callable[[], list[EscalationStep]],
    *,
    on_warn: Callable[[Deadline], None],
    on_miss: Callable[[Deadline], None],
    on_step: Callable[[Deadline, EscalationStep], None],
    on_resend: Callable[[Deadline], None],
    resend_at: Callable[[Deadline], datetime | None],
    warn_at: float | None,
    speedup: float | None,
) -> None:
    while True:
        d = get()
        now = workflow.now()
        # The chain only matters once overdue (and is the unit's at that moment).
        steps = chain() if d.open and d.overdue else []
        event = next_event(d, steps, now, warn_at=warn_at, speedup=speedup, resend_at=resend_at(d))
        if event.kind == "done":
            return
        if event.at is None:
            await _wait(get, d.version, None, None)
        elif now < event.at:
            await _wait(get, d.version, event.at - now, event.summary)
        elif event.kind == "warn":
            on_warn(d)
        elif event.kind == "miss":
            on_miss(d)
        elif event.kind == "resend":
            on_resend(d)
        else:
            assert event.step is not None
            on_step(d, event.step)


async def _wait(
    get: Callable[[], Deadline], version: int, timeout: timedelta | None, summary: str | None
) -> None:
    def changed() -> bool:
        d = get()
        return not d.open or d.version != version

    with contextlib.suppress(TimeoutError):
        await workflow.wait_condition(changed, timeout=timeout, timeout_summary=summary)
