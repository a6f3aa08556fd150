"""The plan's durations as versioned data (plan-2024.toml), snapshotted into every incident.

Loading reads a file, so it happens when the module is first imported outside the workflow
sandbox; the workflow only ever sees the PlanSpec its incident started with.
"""

from __future__ import annotations

import tomllib
from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from plan.enums import Severity

SHIPPED_FILE = Path(__file__).with_name("plan-2024.toml")


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


def load_spec(path: str | Path) -> PlanSpec:
    with open(path, "rb") as fh:
        return PlanSpec.model_validate(tomllib.load(fh))


SHIPPED = load_spec(SHIPPED_FILE)
