"""The plan as versioned data (plan-2024.toml), snapshotted into every incident: its durations, its
escalation chain (R-ESCALATE) and its own sentences that messages quote.

Loading reads a file, so it happens when asked for (`shipped()`, `plan_from()`), never at import:
the worker reads the shipped plan when it builds its workers (runtime/worker.py), outside any
workflow, and starter/ reads the configured plan file; the workflow only ever sees the PlanSpec
its incident started with.
"""

from __future__ import annotations

import tomllib
from datetime import time, timedelta
from enum import StrEnum
from functools import cache, lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from plan.enums import Severity

SHIPPED_FILE = Path(__file__).with_name("plan-2024.toml")


class Target(StrEnum):
    """Whom an escalation step (督办) goes to."""

    unit = "unit"  # the responsible unit's first-responsible person (责任人) and head
    office = "office"  # 领导小组办公室
    deputy = "deputy"  # 领导小组副组长
    leader = "leader"  # 领导小组组长


class StepSpec(BaseModel):
    """One step of the escalation chain: whom, how long after the deadline (the first step) or
    after the previous step, and how messages name it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    to: tuple[Target, ...] = Field(min_length=1)
    wait: timedelta = Field(ge=timedelta(0))
    label: str = Field(min_length=1)


# What incidents started before the plan file carried the chain and the sentences ran under (their
# snapshots lack these fields): the 2024.1 plan's, as the code had them. The shipped file states
# the same (tests/test_plan_wording.py checks), so nothing changes for them.
LEGACY_ESCALATION: tuple[StepSpec, ...] = (
    StepSpec(
        to=(Target.unit, Target.office),
        wait=timedelta(0),
        label="责任人、单位负责人及领导小组办公室",
    ),
    StepSpec(to=(Target.deputy,), wait=timedelta(hours=1), label="副组长"),
    StepSpec(to=(Target.leader,), wait=timedelta(hours=1), label="组长"),
)

LEGACY_WORDING: dict[str, str] = {
    "R-REPORT": "发现重大舆情后，应立即向领导小组办公室报告，最迟不得超过1小时",
    "R-REPLY": "一般性网络舆情12小时内、重大网络舆情24小时内官方回复，紧急舆情3小时内回应社会关切",
    "R-WRITTEN": "紧急情况下可电话口头报告，并在30分钟内报送书面信息",
    "R-PROGRESS": "应急处置过程中，要及时续报事件处置进展和可能衍生的新情况",
    "R-STANCE": "无法在规定回复期内处理完毕的，应于3日内作出表态性回复",
    "R-INQUIRY": "要在发现当日内回复处理意见并在办结之日内回复处理结果",
    "R-TRACK": "对突发重大舆情及处置后的事态实行动态跟踪",
    "R-SUMMARY": "舆情平稳后，将应对处置工作书面报告三日内报送镇党政办",
    "R-DISCOVER": "半小时内必须发现有关网站、论坛、微博的负面网帖",
}


class PlanSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str
    name: str
    discover_within: timedelta
    report_within: timedelta
    written_within: timedelta
    stance_within: timedelta
    summary_within: timedelta
    track_interval: timedelta
    warn_at: float = Field(gt=0, lt=1)
    reply_within: dict[Severity, timedelta]
    progress_interval: dict[Severity, timedelta]
    # R-CLOSE: how long after close commendations and 谎报/瞒报/漏报 records may still be added.
    amend_within: timedelta = timedelta(days=30)
    # R-REVIEW 经各部门负责人审定: the co-handling units' heads countersign (会签) a reply.
    countersign: bool = True
    # R-ESCALATE: the chain a missed deadline goes through, in order (step 1 first).
    escalation: tuple[StepSpec, ...] = Field(default=LEGACY_ESCALATION, min_length=1)
    # 签收 (issue 20, item 2): a 督办 message not signed for within this goes again on the
    # person's next channel (the roster's order, SMS last), until signed for or the deadline met.
    resend_after: timedelta = Field(default=timedelta(minutes=30), gt=timedelta(0))
    # At the top of the chain (the leader), for major and urgent incidents, the message is then
    # repeated every `repeat_every` up to `repeat_cap` times while unsigned; a repeat that falls
    # in the quiet hours (local time, start and end) waits for their end, unless urgent.
    repeat_every: timedelta = Field(default=timedelta(hours=1), gt=timedelta(0))
    repeat_cap: int = Field(default=3, ge=0, le=20)
    quiet_hours: tuple[time, time] = (time(22, 0), time(7, 0))
    # The plan's own sentences by rule ID, quoted verbatim in messages (预案要求：…).
    wording: dict[str, str] = Field(default_factory=lambda: dict(LEGACY_WORDING))

    @field_validator("reply_within")
    @classmethod
    def _every_severity(cls, v: dict[Severity, timedelta]) -> dict[Severity, timedelta]:
        missing = [s.value for s in Severity if s not in v]
        if missing:
            raise ValueError(f"reply_within lacks {', '.join(missing)}")
        return v


def load_spec(path: str | Path) -> PlanSpec:
    """A plan file. Unlike an incident's stored snapshot, a file must state its escalation chain
    and its sentences: the defaults are the 2024.1 plan's, never right for another plan."""
    with open(path, "rb") as fh:
        data = tomllib.load(fh)
    missing = [key for key in ("escalation", "wording") if key not in data]
    if missing:
        raise ValueError(f"{path}: the plan file lacks {', '.join(missing)}")
    return PlanSpec.model_validate(data)


@cache
def shipped() -> PlanSpec:
    """The shipped plan (plan-2024.toml): read on the first call, then kept for the process."""
    return load_spec(SHIPPED_FILE)


@lru_cache
def plan_from(path: str | Path | None) -> PlanSpec:
    """The plan new incidents start under: the file the settings name (YUQING_PLAN_FILE), or
    the shipped one. Read once per process, so the pages and new incidents agree until a
    restart."""
    return shipped() if path is None else load_spec(path)
