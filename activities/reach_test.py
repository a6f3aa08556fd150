"""The 通联测试's activities (issue 20, item 5; plan/reach_test.py).

- `prepare_reach_test` reads the worker's roster (the workflow's input names no one), builds the
  message to every leading-group member, office member and unit head, and writes the run's rows
  (one per person and channel). Sending reuses the incidents' path: ReachTestWorkflow hands the
  message to `notify` (inbox and outbox rows) and each channel to `deliver`, so the outbox keys
  (run + person + channel) make every delivery happen once.
- `settle_reach_test` copies each delivery's outcome from the outbox to the run's rows.
"""

from __future__ import annotations

from pathlib import Path

from temporalio import activity
from temporalio.exceptions import ApplicationError

from plan import reach_test
from plan.roster import Roster, RosterError, load_roster
from store import reach_checks
from store.db import session_scope


class ReachTestActivities:
    def __init__(self, database_url: str, roster_file: str | Path) -> None:
        self.database_url = database_url
        self.roster_file = roster_file

    def _roster(self) -> Roster:
        try:
            return load_roster(self.roster_file)
        except RosterError as exc:
            # Retrying will not fix the file; the run fails and says why.
            raise ApplicationError(str(exc), type="RosterError", non_retryable=True) from exc

    @activity.defn(name="prepare_reach_test")
    def prepare_reach_test(self, request: reach_test.ReachTestRequest) -> reach_test.ReachTestNote:
        """The run's message, and its rows in the store (pending, or inbox only)."""
        roster = self._roster()
        note = reach_test.reach_test_note(
            roster, request.run_id, request.at, request.timezone, request.public_url
        )
        checks = reach_test.planned_checks(note)
        with session_scope(self.database_url) as session:
            added = reach_checks.write_run(
                session, run_id=request.run_id, started_at=request.at, checks=checks
            )
        activity.logger.info(
            "reach test %s: %d people, %d checks (%d new)",
            request.run_id,
            len(note.recipients),
            len(checks),
            added,
        )
        return note

    @activity.defn(name="settle_reach_test")
    def settle_reach_test(self, request: reach_test.ReachTestSettle) -> reach_test.ReachTestOutcome:
        """Each delivery's outcome, from the outbox, on the run's rows."""
        with session_scope(self.database_url) as session:
            return reach_checks.settle(session, run_id=request.run_id)
