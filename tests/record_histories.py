"""Record the histories the replay test keeps: `python -m tests.record_histories`.

Runs complete incidents along the plan's main paths on the time-skipping server and saves each
history as JSON under tests/histories/. Re-record only for an intended, patched change; the point of
the saved files is that today's code must replay yesterday's incidents.
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from config.settings import Settings
from plan.roster import load_roster
from starter import incidents
from store.migrate import upgrade
from tests.conftest import EXAMPLE_ROSTER, SEARCH_ATTRIBUTES, binary
from tests.helpers import publish, running_worker, submission, triage
from workflows.incident import IncidentWorkflow

HERE = Path(__file__).resolve().parent / "histories"


async def scenario_inquiry(env: WorkflowEnvironment, settings: Settings) -> str:
    """General inquiry: triage, reply, conclude, result, tracking, subsided, summary."""
    roster = load_roster(EXAMPLE_ROSTER)
    c = env.client
    view = (await incidents.submit(c, settings, roster, submission())).view
    await triage(c, view.id, severity="general", category="inquiry", unit="sswb")
    await publish(c, view.id, staff="xu.lei", head="huang.li")
    await incidents.act(c, view.id, "conclude", {"note": "已办结"}, "xu.lei")
    await publish(c, view.id, staff="xu.lei", head="huang.li", kind="result", text="处理结果")
    await env.sleep(timedelta(hours=25))
    await incidents.act(c, view.id, "track", {"status": "subsided"}, "xu.lei")
    await incidents.act(c, view.id, "submit-summary", {"text": "总结"}, "xu.lei")
    return view.id


async def scenario_urgent(env: WorkflowEnvironment, settings: Settings) -> str:
    """Urgent, oral: missed reply escalates, stance, release, flare-up, second round, summary."""
    roster = load_roster(EXAMPLE_ROSTER)
    c = env.client
    view = (
        await incidents.submit(c, settings, roster, submission(severity="urgent", oral=True))
    ).view
    await incidents.act(c, view.id, "file-written-report", {"text": "书面报告"}, "zhou.ting")
    await triage(c, view.id, severity="urgent", category="hype", unit="cjb")
    await incidents.act(c, view.id, "activate", {"units": ["pcs"]}, "wang.jianguo")
    await incidents.act(c, view.id, "declare-delay", {"reason": "需现场核查"}, "lin.feng")
    await publish(c, view.id, staff="lin.feng", head="sun.haitao", release=True, kind="stance")
    await env.sleep(timedelta(hours=4))
    await incidents.act(c, view.id, "report-progress", {"text": "续报"}, "lin.feng")
    await publish(c, view.id, staff="lin.feng", head="sun.haitao", release=True)
    await incidents.act(c, view.id, "report-spreading", {"description": "仍在传播"}, "liu.yang")
    await incidents.act(c, view.id, "track", {"status": "flared"}, "lin.feng")
    await publish(c, view.id, staff="lin.feng", head="sun.haitao", release=True)
    await incidents.act(c, view.id, "track", {"status": "subsided"}, "lin.feng")
    await incidents.act(c, view.id, "submit-summary", {"text": "总结"}, "lin.feng")
    return view.id


async def scenario_withdrawn_lead(env: WorkflowEnvironment, settings: Settings) -> str:
    """A monitoring lead left past its hour (escalates), then withdrawn as a false alarm."""
    roster = load_roster(EXAMPLE_ROSTER)
    c = env.client
    view = (await incidents.submit(c, settings, roster, submission(lead=True))).view
    await env.sleep(timedelta(hours=2, minutes=5))
    await incidents.act(c, view.id, "withdraw", {"reason": "误报"}, "liu.yang")
    return view.id


SCENARIOS = {
    "inquiry": scenario_inquiry,
    "urgent": scenario_urgent,
    "withdrawn_lead": scenario_withdrawn_lead,
}


async def main() -> None:
    HERE.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(max_workers=16) as executor:
        for name, scenario in SCENARIOS.items():
            env = await WorkflowEnvironment.start_time_skipping(
                test_server_existing_path=binary("temporal-test-server"),
                data_converter=pydantic_data_converter,
            )
            async with env:
                from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest

                await env.client.operator_service.add_search_attributes(
                    AddSearchAttributesRequest(
                        namespace="default", search_attributes=SEARCH_ATTRIBUTES
                    )
                )
                url = f"sqlite:///{tmp}/{name}.db"
                upgrade(url)
                settings = Settings(
                    database_url=url,
                    roster_file=EXAMPLE_ROSTER,
                    temporal_task_queue=f"record-{uuid.uuid4()}",
                )
                async with running_worker(env.client, settings, executor):
                    incident_id = await scenario(env, settings)
                    handle = env.client.get_workflow_handle_for(IncidentWorkflow.run, incident_id)
                    await handle.result()
                    history = await handle.fetch_history()
            (HERE / f"{name}.json").write_text(history.to_json(), encoding="utf-8")
            print(f"{name}: {len(history.events)} events at {datetime.now(UTC):%Y-%m-%d}")


if __name__ == "__main__":
    asyncio.run(main())
