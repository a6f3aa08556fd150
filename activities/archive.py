"""归档 (issue 19, item 4): the closed incident's case file (处置台账) kept in the store, and the
retention redaction of the public's personal data.

- `Archiver.after_record`: the `record` activity, after it wrote a closed incident's snapshot,
  archives the case file generated from the rows just written: on close, after each amendment
  and when the amendment period ends. One version per (incident, snapshot version, reason), so a
  retried activity adds nothing. No workflow command changes: saved histories replay as before.
- `apply_retention`: the daily schedule's activity and `yuqing retention`: closed incidents past
  YUQING_PERSONAL_DATA_RETENTION_DAYS get their personal data replaced by a marker, the
  redaction recorded, the older archive bytes deleted and the case file archived again from the
  redacted rows; and any closed incident whose archiving failed is archived. Idempotent.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session
from temporalio import activity

from activities import documents
from config.settings import Settings
from plan.records import RecordRequest, RetentionOutcome, RetentionRequest
from plan.roster import load_roster
from store import archives
from store.db import session_scope
from store.models import ArchiveRow, Incident

log = logging.getLogger("yuqing.archive")

# Why a version was written (archives.reason), and how the page says it.
REASONS = {
    "closed": "结案归档",
    "amended": "结案后补记",
    "amendments_closed": "补记期届满",
    "redacted": "按保存期限删除个人信息后",
    "catch_up": "补充归档",
}


class Archiver:
    """Generates and keeps a closed incident's case file, from the store's rows."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.tz = ZoneInfo(settings.timezone)

    def archive(
        self, session: Session, incident_id: str, reason: str, now: datetime | None = None
    ) -> ArchiveRow | None:
        """Archive the incident's current case file (None: no such closed incident, or this
        snapshot and reason already archived)."""
        row = session.get(Incident, incident_id)
        if row is None or row.phase != archives.CLOSED:
            return None
        if archives.find(
            session, incident_id=incident_id, snapshot_version=row.version, reason=reason
        ):
            return None
        # The roster as it is now (names of units and persons), read like the digest's.
        roster = load_roster(self.settings.roster_file)
        builder = documents.Builder(session, row, roster, self.tz)
        body = documents.render(self.settings, "case-file", builder.context())
        archived, new = archives.add(
            session,
            incident_id=incident_id,
            snapshot_version=row.version,
            reason=reason,
            body=body,
            now=now or datetime.now(UTC),
        )
        return archived if new else None

    def after_record(self, request: RecordRequest) -> ArchiveRow | None:
        """A closed incident's snapshot was recorded: archive its case file when this snapshot
        is newer than the last archived one (a late retry of an older one adds nothing)."""
        incident = request.incident
        if incident.phase != archives.CLOSED:
            return None
        kinds = {e.kind for e in request.timeline}
        with session_scope(self.settings.database_url) as session:
            newest = archives.newest_version(session, incident_id=incident.id)
            if newest is not None and newest >= incident.version:
                return None
            if "amendments_closed" in kinds:
                reason = "amendments_closed"
            elif newest is None or "closed" in kinds:
                reason = "closed"
            else:
                reason = "amended"
            return self.archive(session, incident.id, reason)


def apply_retention(settings: Settings, *, at: datetime, by: str) -> RetentionOutcome:
    """Archive what was not, then redact what is past the retention period; each incident in a
    transaction of its own (one that fails is logged and left for the next run)."""
    archiver = Archiver(settings)
    outcome = RetentionOutcome()
    with session_scope(settings.database_url) as session:
        missing = archives.unarchived(session)
    for incident_id in missing:
        try:
            with session_scope(settings.database_url) as session:
                if archiver.archive(session, incident_id, "catch_up", at) is not None:
                    outcome.archived.append(incident_id)
        except Exception:
            log.exception("archiving %s failed", incident_id)
            outcome.failed.append(incident_id)
    days = settings.personal_data_retention_days
    if not days:
        return outcome
    with session_scope(settings.database_url) as session:
        due = archives.due_for_redaction(session, closed_before=at - timedelta(days=days))
    for incident_id in due:
        try:
            with session_scope(settings.database_url) as session:
                done = archives.redact(
                    session, incident_id=incident_id, retention_days=days, by=by, now=at
                )
                if done is None:
                    continue
                archiver.archive(session, incident_id, "redacted", at)
            outcome.redacted.append(incident_id)
        except Exception:
            log.exception("redacting %s failed", incident_id)
            outcome.failed.append(incident_id)
    return outcome


class RetentionActivities:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @activity.defn(name="apply_retention")
    def apply_retention(self, request: RetentionRequest) -> RetentionOutcome:
        """The daily 归档 run: archive what is missing, redact what is past retention."""
        outcome = apply_retention(self.settings, at=request.at, by=request.by)
        activity.logger.info(
            "retention: %d redacted, %d archived, %d failed",
            len(outcome.redacted),
            len(outcome.archived),
            len(outcome.failed),
        )
        return outcome
