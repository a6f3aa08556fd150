"""The incident workflow's search attributes: the one list every place registers, passes to a dev
server or queries by (`yuqing search-attributes` prints it for scripts/up.sh), and the values an
incident has, set when it starts and upserted as they change.

Codes and instants only: no names, titles or content (search attributes are not encrypted by a
codec).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
)

from plan.incident import Incident
from plan.models import IncidentInput

SA_PHASE = SearchAttributeKey.for_keyword("IncidentPhase")
SA_SEVERITY = SearchAttributeKey.for_keyword("IncidentSeverity")
SA_UNIT = SearchAttributeKey.for_keyword("ResponsibleUnit")
SA_OVERDUE = SearchAttributeKey.for_bool("Overdue")
SA_DRILL = SearchAttributeKey.for_bool("IsDrill")
SA_NEXT_DEADLINE = SearchAttributeKey.for_datetime("NextDeadlineAt")
SA_CATEGORY = SearchAttributeKey.for_keyword("IncidentCategory")
SA_PLAN_VERSION = SearchAttributeKey.for_keyword("PlanVersion")
SEARCH_ATTRIBUTES: tuple[SearchAttributeKey[Any], ...] = (
    SA_PHASE,
    SA_SEVERITY,
    SA_CATEGORY,
    SA_UNIT,
    SA_NEXT_DEADLINE,
    SA_OVERDUE,
    SA_DRILL,
    SA_PLAN_VERSION,
)

# The Temporal CLI's `--search-attribute NAME=TYPE` type names, by indexed value type (an int).
CLI_TYPE_NAMES = {
    int(SA_PHASE.indexed_value_type): "Keyword",
    int(SA_OVERDUE.indexed_value_type): "Bool",
    int(SA_NEXT_DEADLINE.indexed_value_type): "Datetime",
}

# The rules version a new incident starts under (IncidentWorkflow.run's patches set it).
CURRENT_RULES_VERSION = 2


def cli_args() -> list[str]:
    """`--search-attribute NAME=TYPE` for each attribute, as `temporal server start-dev` takes
    them."""
    args: list[str] = []
    for key in SEARCH_ATTRIBUTES:
        args += ["--search-attribute", f"{key.name}={CLI_TYPE_NAMES[int(key.indexed_value_type)]}"]
    return args


def values_of(core: Incident) -> dict[str, object]:
    """Each attribute's value for the incident as it is now, by name (None: unset)."""
    s = core.s
    return {
        SA_PHASE.name: s.phase.value,
        SA_SEVERITY.name: s.severity.value,
        SA_UNIT.name: s.responsible_unit or "",
        SA_OVERDUE.name: any(d.overdue and d.open for d in s.deadlines),
        SA_DRILL.name: core.sub.is_drill,
        SA_NEXT_DEADLINE.name: core.next_due(),
        SA_CATEGORY.name: s.category.value if s.category else None,
        SA_PLAN_VERSION.name: core.inp.plan_version,
    }


def at_start(inp: IncidentInput, now: datetime) -> TypedSearchAttributes:
    """The attributes a new incident starts with: the values its first upsert sets (the same
    core opens the same incident), so it is found before a worker has run it."""
    core = Incident(inp, now=now)
    core.s.rules_version = CURRENT_RULES_VERSION
    core.open_incident()
    values = values_of(core)
    pairs = [
        SearchAttributePair(key, values[key.name])
        for key in SEARCH_ATTRIBUTES
        if values[key.name] is not None
    ]
    return TypedSearchAttributes(pairs)
