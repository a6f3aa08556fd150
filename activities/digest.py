"""The digest activity: read the store and the roster, and compose the digest (plan/digest.py).

Sending reuses the incidents' path: DigestWorkflow hands the result to the `notify` activity (inbox
and outbox rows) and then to `deliver` for each external channel, so the outbox dedupes retries and
re-runs exactly as it does for incidents.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from temporalio import activity
from temporalio.exceptions import ApplicationError

from plan import digest
from plan.roster import Roster, RosterError, load_roster
from store import digests, reporting
from store.db import session_scope


class DigestActivities:
    def __init__(self, database_url: str, roster_file: str | Path) -> None:
        self.database_url = database_url
        self.roster_file = roster_file  # the worker's roster, when the request names none

    def _roster(self, request: digest.DigestRequest) -> Roster:
        if request.roster is not None:
            return request.roster
        try:
            return load_roster(request.roster_file or self.roster_file)
        except RosterError as exc:
            # Retrying will not fix the file; the run fails and says why.
            raise ApplicationError(str(exc), type="RosterError", non_retryable=True) from exc

    @activity.defn(name="build_digest")
    def build_digest(self, request: digest.DigestRequest) -> digest.DigestNote:
        """The daily digest or the weekly accountability summary as a notification to the
        leading group and the office."""
        roster = self._roster(request)
        tz = request.timezone
        with session_scope(self.database_url) as session:
            if request.kind == "daily":
                start, end = digest.yesterday_window(request.day, tz)
                daily = digest.DailyFacts(
                    day=request.day,
                    at=request.at,
                    open_incidents=[
                        digest.OpenIncident(
                            id=i.id,
                            title=i.title,
                            severity=i.severity,
                            phase=i.phase,
                            responsible_unit=i.responsible_unit,
                            next_due_at=i.next_due_at,
                            overdue=i.overdue,
                        )
                        for i in digests.open_incidents(session)
                    ],
                    due_soon=[
                        digest.DueDeadline(
                            incident_id=i.id,
                            incident_title=i.title,
                            title=d.title,
                            unit=d.unit or i.responsible_unit,
                            due_at=d.due_at,
                        )
                        for d, i in digests.deadlines_due_between(
                            session, start=request.at, end=request.at + timedelta(hours=24)
                        )
                    ],
                    misses=[
                        digest.Miss(
                            incident_id=a.incident_id,
                            incident_title=title,
                            rule=a.rule,
                            kind=a.kind,
                            unit=a.unit,
                            due_at=a.due_at,
                            met_at=a.met_at,
                            recorded_at=a.recorded_at,
                            reason=a.reason,
                        )
                        for a, title in digests.accountability_recorded_between(
                            session, start=start, end=end
                        )
                    ],
                )
                subject, body = digest.compose_daily(daily, roster, tz)
                brief = digest.brief_daily(daily, roster, tz)
            else:
                start, end = digest.week_window(request.day, tz)
                weekly = digest.WeeklyFacts(
                    start=request.day - timedelta(days=7),
                    end=request.day - timedelta(days=1),
                    units=[
                        digest.UnitFigures.model_validate(row)
                        for row in reporting.accountability_report(session, start=start, end=end)
                    ],
                )
                subject, body = digest.compose_weekly(weekly, roster)
                brief = digest.brief_weekly(weekly, roster)
        return digest.digest_note(
            request.kind,
            request.day,
            request.at,
            subject,
            body,
            roster,
            request.public_url,
            brief=brief,
        )
