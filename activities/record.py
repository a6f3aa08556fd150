"""Activities that write what happened to the read model: `record` and (for histories from
before one write per step) `escalate`.

Both are idempotent upserts keyed by the incident and natural keys, so Temporal may retry them at
will. They run in the worker's thread pool (blocking database I/O)."""

from __future__ import annotations

from temporalio import activity

from activities.archive import Archiver
from plan.outbox import deliveries_for
from plan.records import EscalateRequest, RecordRequest
from store import archives, incident_rows, notifications
from store.db import session_scope


class RecordActivities:
    def __init__(
        self,
        database_url: str,
        timezone: str = incident_rows.TOWN_ZONE,
        archiver: Archiver | None = None,
    ) -> None:
        self.database_url = database_url
        self.timezone = timezone  # the town's zone: the day in an incident's short number
        # 归档 (issue 19, item 4): the case file of a closed incident, kept in the store.
        self.archiver = archiver

    @activity.defn(name="record")
    def record(self, request: RecordRequest) -> None:
        """Write the incident snapshot, deadlines, new timeline entries and accountability
        (R-ACCOUNT), escalation steps (R-ESCALATE) and notifications (inbox and outbox), all in
        one transaction: a step is in the store whole or not at all."""
        deliveries = 0
        closed = request.incident.phase == archives.CLOSED
        with session_scope(self.database_url) as session:
            incident_rows.record(session, request=request, timezone=self.timezone)
            if closed:
                # A redacted incident stays redacted whatever snapshot comes after.
                archives.reapply_if_redacted(session, incident_id=request.incident.id)
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
        if closed and self.archiver is not None:
            # After the write commits, in a transaction of its own: a template the office broke
            # must not hold up the incident's record. What fails here is logged, and the daily
            # retention run archives it (store/archives.py `unarchived`).
            try:
                archived = self.archiver.after_record(request)
            except Exception:
                activity.logger.exception("archiving the case file failed")
            else:
                if archived is not None:
                    activity.logger.info(
                        "archived the case file (%s, version %d)",
                        archived.reason,
                        archived.snapshot_version,
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
