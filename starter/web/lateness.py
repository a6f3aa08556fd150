"""How late, or how long left, in the time the reader cares about: a drill's in plan time (R-DRILL:
real time × its speedup, so a drill at 3600× that is 5 real seconds late reads 5小时, not 0分钟),
labelled as such; a real incident's in real time. The 待办 page and the dashboard say it so."""

from __future__ import annotations

from datetime import timedelta

from plan import rules

DRILL_TIME = "（按演练时间）"


def span(delta: timedelta, speedup: float | None) -> str:
    if speedup:
        return rules.format_duration(delta * speedup) + DRILL_TIME
    return rules.format_duration(delta)
