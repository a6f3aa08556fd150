"""Activities that write what happened to the read model: `record` and (for histories from
before one write per step) `escalate`.

Both are idempotent upserts keyed by the incident and natural keys, so Temporal may retry them at
will. They run in the worker's thread pool (blocking database I/O)."""

from __future__ import annotations

from temporalio import activity

from plan.outbox import deliveries_for
from plan.records import EscalateRequest, RecordRequest
from store import incident_rows, notifications
from store.db import session_scope


class RecordActivities:
    def __init__(self, database_url: str, timezone: str = incident_rows.TOWN_ZONE) -> None:
        self.database_url = database_url
        self.timezone = timezone  # the town's zone: the day in an incident's short number

    @activity.defn(name="record")
    def record(self, request: RecordRequest) -> None:
        """Write the incident snapshot, deadlines, new timeline entries and accountability
        (R-ACCOUNT), escalation steps (R-ESCALATE) and notifications (inbox and outbox), all in
        one transaction: a step is in the store whole or not at all."""
        deliveries = 0
        with session_scope(self.database_url) as session:
            incident_rows.record(session, request=request, timezone=self.timezone)
            for note in request.notifications:
                requests = deliveries_for(note)
                deliveries += len(requests)
                notifications.write_notification(session, note=note, deliveries=requests)
        activity.logger.info(
            "recorded %d timeline events, %d deadlines, %d accountability records, "
            "%d escalation steps, %d notifications (%d external deliveries queued); phase %s",
            len(request.timeline),
            len(request.deadlines),
            len(request.accountability),
            len(request.escalations),
            len(request.notifications),
            deliveries,
            request.incident.phase,
        )

    @activity.defn(name="escalate")
    def escalate(self, request: EscalateRequest) -> bool:
        """Record one R-ESCALATE step with its time and targets; True if it was new."""
        with session_scope(self.database_url) as session:
            new = incident_rows.record_escalation(
                session,
                incident_id=request.incident_id,
                escalation=request.escalation,
                drill=request.drill,
            )
        step = request.escalation
        activity.logger.info(
            "escalation step %d for %s to %s%s",
            step.step,
            step.rule,
            ", ".join(step.targets),
            "" if new else " (already recorded)",
        )
        return new
