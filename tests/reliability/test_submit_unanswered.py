"""A submission accepted while no worker can answer is kept and named, never a 500."""

from __future__ import annotations

import re

import pytest
from temporalio.client import Client

from config.settings import Settings
from plan.roster import Roster
from tests.helpers import submission
from tests.reliability import figures


async def test_a_submission_the_worker_cannot_answer_yet_is_kept_and_named(
    client: Client, settings: Settings, roster: Roster
) -> None:
    """Nothing accepted is lost: with no worker to answer, the incident is still started and the
    reporter is told its id (a 503, not a 500); sending it again gives the same incident."""
    from starter import incidents
    from starter.incidents import ServiceError

    data = submission(submission_key="busy-worker")
    with pytest.raises(ServiceError) as refused:
        await incidents.submit(client, settings, roster, data)
    assert refused.value.status == 503 and "报告已受理，事件编号 YQ-" in refused.value.message
    incident_id = re.search(r"YQ-[0-9A-F-]+", refused.value.message)
    assert incident_id
    desc = await client.get_workflow_handle(incident_id.group(0)).describe()
    assert desc.status is not None and desc.status.name == "RUNNING"
    figures.add("submission with no worker answering", incidents=1, incidents_lost=0)
