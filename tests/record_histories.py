"""Record the histories the replay test keeps: `python -m tests.record_histories`.

Runs complete incidents along the plan's main paths on the time-skipping server and saves each
history as JSON under tests/histories/. Re-record only for an intended, patched change; the point of
the saved files is that today's code must replay yesterday's incidents.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from config.settings import Settings
from plan.roster import load_roster
from runtime.payloads import compact_data_converter
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
    view = (
        await incidents.submit(c, settings, roster, submission(), submitted_by="zhou.ting")
    ).view
    await triage(c, view.id, severity="general", category="inquiry", unit="sswb")
    await publish(c, view.id, staff="xu.lei", head="huang.li")
    await incidents.act(c, view.id, "conclude", {"note": "已办结"}, "xu.lei")
    await publish(c, view.id, staff="xu.lei", head="huang.li", kind="result", text="处理结果")
    await env.sleep(timedelta(hours=25))
    await incidents.act(c, view.id, "track", {"status": "subsided"}, "xu.lei")
    await incidents.act(c, view.id, "submit-summary", {"text": "总结"}, "xu.lei")
    return view.id


async def scenario_urgent(env: WorkflowEnvironment, settings: Settings) -> str:
    """Urgent, oral: a delay declared in time (R-STANCE replaces the reply miss), stance, release,
    flare-up, second round, summary."""
    roster = load_roster(EXAMPLE_ROSTER)
    c = env.client
    view = (
        await incidents.submit(
            c, settings, roster, submission(severity="urgent", oral=True), submitted_by="zhou.ting"
        )
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
    view = (
        await incidents.submit(c, settings, roster, submission(lead=True), submitted_by="zhou.ting")
    ).view
    await env.sleep(timedelta(hours=2, minutes=5))
    await incidents.act(c, view.id, "withdraw", {"reason": "误报"}, "liu.yang")
    return view.id


async def scenario_fabrication(env: WorkflowEnvironment, settings: Settings) -> str:
    """Major fabrication: referral, activation, consultation, release, a summary filed late
    (escalated), a commendation and a manual accountability record."""
    roster = load_roster(EXAMPLE_ROSTER)
    c = env.client
    view = (
        await incidents.submit(
            c, settings, roster, submission(severity="major"), submitted_by="zhou.ting"
        )
    ).view
    await triage(c, view.id, severity="major", category="fabrication", unit="pcs")
    await incidents.act(c, view.id, "activate", {"units": ["jw"]}, "li.xiaomei")
    consult = {"topic": "是否报警", "decision": "报警", "participants": ["qian.jun"]}
    await incidents.act(c, view.id, "consult", consult, "liu.yang")
    await publish(c, view.id, staff="qian.jun", head="qian.jun", release=True)
    await incidents.act(c, view.id, "track", {"status": "subsided"}, "liu.yang")
    await env.sleep(timedelta(hours=80))  # R-SUMMARY (72 h) missed: escalates
    await incidents.act(c, view.id, "commend", {"unit": "pcs", "reason": "查处及时"}, "liu.yang")
    blame = {"kind": "瞒报", "unit": "cjb", "reason": "未报告"}
    await incidents.act(c, view.id, "record-accountability", blame, "liu.yang")
    await incidents.act(c, view.id, "submit-summary", {"text": "总结"}, "qian.jun")
    return view.id


async def scenario_suggestion(env: WorkflowEnvironment, settings: Settings) -> str:
    """Suggestion sent to the wrong unit: returned, re-triaged, adopted, replied, closed."""
    roster = load_roster(EXAMPLE_ROSTER)
    c = env.client
    view = (
        await incidents.submit(c, settings, roster, submission(), submitted_by="zhou.ting")
    ).view
    await triage(c, view.id, severity="general", category="suggestion", unit="cjb")
    await incidents.act(c, view.id, "return-to-office", {"reason": "不属本单位"}, "lin.feng")
    await triage(c, view.id, severity="general", category="suggestion", unit="sswb")
    adopt = {"adopted": True, "decision": "采纳，纳入明年计划"}
    await incidents.act(c, view.id, "decide-adoption", adopt, "xu.lei")
    await publish(c, view.id, staff="xu.lei", head="huang.li")
    await incidents.act(c, view.id, "track", {"status": "subsided"}, "xu.lei")
    await incidents.act(c, view.id, "submit-summary", {"text": "总结"}, "xu.lei")
    return view.id


async def scenario_continued(env: WorkflowEnvironment, settings: Settings) -> str:
    """A long inquiry that continues as new (a low threshold) and completes in its second run."""
    roster = load_roster(EXAMPLE_ROSTER)
    c = env.client
    short = settings.model_copy(update={"continue_as_new_after": 80})
    view = (await incidents.submit(c, short, roster, submission(), submitted_by="zhou.ting")).view
    await triage(c, view.id, severity="general", category="inquiry", unit="sswb")
    for day in range(3):
        await incidents.act(
            c, view.id, "consult", {"topic": f"第{day}次会商", "decision": "继续"}, "liu.yang"
        )
        await env.sleep(timedelta(hours=13))
    await publish(c, view.id, staff="xu.lei", head="huang.li", kind="result", text="处理结果")
    await incidents.act(c, view.id, "track", {"status": "subsided"}, "xu.lei")
    await incidents.act(c, view.id, "submit-summary", {"text": "总结"}, "xu.lei")
    return view.id


def _file(n: int, media_type: str, name: str) -> dict[str, object]:
    """An attachment's reference as the web app sends it (the workflow never reads the file)."""
    return {
        "attachment_id": f"{n:032x}",
        "sha256": f"{n:064x}",
        "media_type": media_type,
        "size": 1024 * n,
        "name": name,
    }


async def scenario_documents(env: WorkflowEnvironment, settings: Settings) -> str:
    """Issue 19, item 5: a phoned-in report with a screenshot as evidence; the written report
    (R-WRITTEN) and the summary (R-SUMMARY) each filed as an attached document."""
    from plan.models import DOCX_TYPE, AttachRequest

    roster = load_roster(EXAMPLE_ROSTER)
    c = env.client
    evidence = [AttachRequest.model_validate(_file(1, "image/png", "帖子截图.png"))]
    view = (
        await incidents.submit(
            c, settings, roster, submission(oral=True), submitted_by="zhou.ting", evidence=evidence
        )
    ).view
    written = _file(2, DOCX_TYPE, "书面信息.docx")
    await incidents.perform(c, view.id, "attach", written, "zhou.ting")
    await incidents.act(
        c, view.id, "file-written-report", {"attachment_id": written["attachment_id"]}, "zhou.ting"
    )
    await triage(c, view.id, severity="general", category="hype", unit="cjb")
    await publish(c, view.id, staff="lin.feng", head="sun.haitao")
    await incidents.act(c, view.id, "track", {"status": "subsided"}, "lin.feng")
    summary = _file(3, "application/pdf", "处置情况报告.pdf")
    await incidents.perform(c, view.id, "attach", summary, "lin.feng")
    await incidents.act(
        c, view.id, "submit-summary", {"attachment_id": summary["attachment_id"]}, "lin.feng"
    )
    await env.sleep(timedelta(days=31))  # past the amend period: the workflow completes
    return view.id


async def scenario_attached(env: WorkflowEnvironment, settings: Settings) -> str:
    """Issue 19: a screenshot attached by the monitoring staff and a document by the unit (the
    workflow holds references and hashes only), then replied and summarised."""
    roster = load_roster(EXAMPLE_ROSTER)
    c = env.client
    view = (
        await incidents.submit(c, settings, roster, submission(), submitted_by="zhou.ting")
    ).view
    screenshot = {
        "attachment_id": "a" * 32,
        "sha256": "b" * 64,
        "media_type": "image/png",
        "size": 2048,
        "name": "帖子截图.png",
    }
    await incidents.act(c, view.id, "attach", screenshot, "zhou.ting")
    await triage(c, view.id, severity="general", category="hype", unit="sswb")
    await publish(c, view.id, staff="xu.lei", head="huang.li")
    document = {
        "attachment_id": "c" * 32,
        "sha256": "d" * 64,
        "media_type": "application/pdf",
        "size": 4096,
        "name": "回复件.pdf",
    }
    await incidents.act(c, view.id, "attach", document, "xu.lei")
    await incidents.act(c, view.id, "track", {"status": "subsided"}, "xu.lei")
    await incidents.act(c, view.id, "submit-summary", {"text": "总结"}, "xu.lei")
    return view.id


async def scenario_signed(env: WorkflowEnvironment, settings: Settings) -> str:
    """Issue 20: the 交办 signed for by the unit's head; the urgent reply missed and escalated to
    the leader, reminded (resend-until-signed) until he signs; then replied and summarised."""
    roster = load_roster(EXAMPLE_ROSTER)
    c = env.client
    view = (
        await incidents.submit(
            c, settings, roster, submission(severity="urgent"), submitted_by="zhou.ting"
        )
    ).view
    await triage(c, view.id, severity="urgent", category="hype", unit="cjb")
    await incidents.act(c, view.id, "sign-for", {}, "sun.haitao")
    await env.sleep(timedelta(hours=6, minutes=30))  # 3 h, then the chain, then reminders
    await incidents.act(c, view.id, "sign-for", {"key": "R-REPLY#1/3"}, "wang.jianguo")
    await publish(c, view.id, staff="lin.feng", head="sun.haitao", release=True)
    await incidents.act(c, view.id, "track", {"status": "subsided"}, "lin.feng")
    await incidents.act(c, view.id, "submit-summary", {"text": "总结"}, "lin.feng")
    return view.id


async def scenario_stand_in(env: WorkflowEnvironment, settings: Settings) -> str:
    """Issue 20, item 3: the unit's head declares an absence while the incident runs (the
    `absences_changed` signal); the reply missed, step 1 goes to the stand-in (the deputy), who
    signs for it and approves the reply for the head (代); the head back, the rest as usual."""
    from starter import standins

    roster = load_roster(EXAMPLE_ROSTER)
    c = env.client
    view = (
        await incidents.submit(
            c, settings, roster, submission(severity="urgent"), submitted_by="zhou.ting"
        )
    ).view
    await triage(c, view.id, severity="urgent", category="hype", unit="cjb")
    until = (datetime.now(UTC) + timedelta(hours=5)).isoformat()
    await standins.declare(
        c, settings, roster, "sun.haitao", {"stand_in": "li.xiaomei", "ends_at": until}
    )
    await env.sleep(timedelta(hours=3, minutes=5))
    await incidents.act(c, view.id, "sign-for", {"key": "R-REPLY#1/1"}, "li.xiaomei")
    await incidents.act(c, view.id, "draft-reply", {"text": "已安排抽排积水。"}, "lin.feng")
    await incidents.act(c, view.id, "approve-reply", {}, "li.xiaomei")
    await incidents.act(
        c, view.id, "approve-release", {"spokesperson": "li.xiaomei"}, "wang.jianguo"
    )
    await incidents.act(c, view.id, "publish-reply", {"channel": "镇政府微博"}, "lin.feng")
    await env.sleep(timedelta(hours=2))
    await incidents.act(c, view.id, "track", {"status": "subsided"}, "lin.feng")
    await incidents.act(c, view.id, "submit-summary", {"text": "总结"}, "sun.haitao")
    return view.id


SCENARIOS = {
    "inquiry": scenario_inquiry,
    "urgent": scenario_urgent,
    "withdrawn_lead": scenario_withdrawn_lead,
    "fabrication": scenario_fabrication,
    "suggestion": scenario_suggestion,
    "continued": scenario_continued,
    "documents": scenario_documents,
    "attached": scenario_attached,
    "signed": scenario_signed,
    "stand_in": scenario_stand_in,
}


async def main(args: list[str]) -> None:
    """Record the named scenarios (all when none are named). Keep old files: add new paths, with
    `--tag=T` (saved as NAME_T.json) for a scenario recorded again after a patched change."""
    tags = [a.removeprefix("--tag=") for a in args if a.startswith("--tag=")]
    names = [a for a in args if not a.startswith("--tag=")]
    suffix = f"_{tags[-1]}" if tags else ""
    HERE.mkdir(exist_ok=True)
    unknown = set(names) - set(SCENARIOS)
    if unknown:
        raise SystemExit(f"unknown scenarios: {sorted(unknown)}; known: {sorted(SCENARIOS)}")
    chosen = {n: SCENARIOS[n] for n in names} if names else SCENARIOS
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(max_workers=16) as executor:
        for name, scenario in chosen.items():
            env = await WorkflowEnvironment.start_time_skipping(
                test_server_existing_path=binary("temporal-test-server"),
                data_converter=compact_data_converter,
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
                    # Skip past R-CLOSE's 30-day amendment period first: a long poll for the
                    # result alone ends with "No completion event found" on the test server.
                    await env.sleep(timedelta(days=31))
                    await handle.result()
                    history = await handle.fetch_history()
            (HERE / f"{name}{suffix}.json").write_text(history.to_json(), encoding="utf-8")
            print(f"{name}{suffix}: {len(history.events)} events at {datetime.now(UTC):%Y-%m-%d}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
