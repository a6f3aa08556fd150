"""Activities that write what happened to the read model: `record` and `escalate`.

Both are idempotent upserts keyed by the incident and natural keys, so Temporal may retry them at
will. They run in the worker's thread pool (blocking database I/O)."""

from __future__ import annotations

from temporalio import activity

from activities.messages import EscalateRequest, RecordRequest
from store import service
from store.db import session_scope


class RecordActivities:
    def __init__(self, database_url: str) -> None:
        self.database_url = database_url

    @activity.defn(name="record")
    def record(self, request: RecordRequest) -> None:
        """Write the incident snapshot, deadlines, new timeline entries and accountability (R-ACCOUNT)."""
        with session_scope(self.database_url) as session:
            service.record(session, request=request)

    @activity.defn(name="escalate")
    def escalate(self, request: EscalateRequest) -> bool:
        """Record one R-ESCALATE step with its time and targets; True if it was new."""
        with session_scope(self.database_url) as session:
            return service.record_escalation(
                session,
                incident_id=request.incident_id,
                escalation=request.escalation,
                drill=request.drill,
            )
