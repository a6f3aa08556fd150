"""代理 end to end (issue 20, item 3, "done when"): on the real dev server with the worker, the
web app and the `yuqing` CLI as their own processes, the office declares the unit head absent
from the command line; the incident already running is told (through Temporal's own list of
running workflows), the stand-in approves for the head (recorded as 代), and a drill's
escalations go to the stand-in, never to the absent head's own channel."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio.testing import WorkflowEnvironment

from tests.conftest import EXAMPLE_ROSTER
from tests.stack import running_stack, wait_until
from tests.test_e2e import Receiver, dev_server, receiver  # noqa: F401  (fixtures)

HEAD, STAFF, DEPUTY, OFFICE = "sun.haitao", "lin.feng", "li.xiaomei", "liu.yang"


def with_hooks(hooks_at: Receiver, tmp_path: Path) -> Path:
    """The example town, the head and the deputy each with a webhook of their own."""
    text = EXAMPLE_ROSTER.read_text(encoding="utf-8")
    for person in (HEAD, DEPUTY):
        anchor = f'id = "{person}"\n'
        hook = f'channels = [{{ id = "hook", kind = "webhook", url = "{hooks_at.url}" }}]\n'
        assert anchor in text
        text = text.replace(anchor, anchor + hook, 1)
    path = tmp_path / "roster.toml"
    path.write_text(text, encoding="utf-8")
    return path


async def test_the_stand_in_approves_and_is_escalated_to_instead_of_the_absent_head(
    dev_server: WorkflowEnvironment,  # noqa: F811
    receiver: Receiver,  # noqa: F811
    tmp_path: Path,
) -> None:
    roster_file = with_hooks(receiver, tmp_path)
    host = dev_server.client.service_client.config.target_host
    with running_stack(host, tmp_path, roster_file, "absence") as stack:
        api, cli = stack.api, stack.cli
        tokens = {p: cli("token", "create", p).stdout.strip() for p in (OFFICE, STAFF, DEPUTY)}
        office = {"Authorization": f"Bearer {tokens[OFFICE]}"}

        def report(**extra: Any) -> str:
            body = {
                "title": "东湖村道路积水多日无人处理",
                "content": "网帖称主干道积水一周。",
                "source": "微博",
                "discovered_at": datetime.now(UTC).isoformat(),
                "reporter_unit": "yqb",
                "responsible_unit": "cjb",
                **extra,
            }
            made = api.post("/api/incidents", json=body, headers=office)
            assert made.status_code == 201, made.text
            return str(made.json()["id"])

        running = report(submission_key="absence-running")
        triaged = cli(
            "triage", running, "--severity", "general", "--category", "hype",
            "--responsible-unit", "cjb", "--token", tokens[OFFICE],
        )  # fmt: skip
        assert triaged.returncode == 0, triaged.stderr

        until = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
        declared = cli(
            "absence", "declare", "--person", HEAD, "--stand-in", DEPUTY, "--until", until,
            "--reason", "出差", "--token", tokens[OFFICE],
        )  # fmt: skip
        assert declared.returncode == 0, declared.stderr
        assert "已登记" in declared.stdout and "已通知" in declared.stdout, declared.stdout
        listed = cli("absence", "list", "--token", tokens[STAFF])
        assert "孙海涛" in listed.stdout and "不在岗中" in listed.stdout, listed.stdout

        drafted = cli(
            "draft-reply", running, "--text", "已安排抽排积水。", "--token", tokens[STAFF]
        )
        assert drafted.returncode == 0, drafted.stderr
        approved = cli("approve-reply", running, "--token", tokens[DEPUTY])
        assert approved.returncode == 0, approved.stderr
        state = api.get(f"/api/incidents/{running}", headers=office).json()
        entry = next(e for e in state["timeline"] if e["kind"] == "reply_approved")
        assert entry["actor"] == DEPUTY and entry["for_person"] == HEAD, entry
        assert "代孙海涛" in entry["summary"]

        # A drill started during the absence: its urgent reply is 3 s late, the chain climbs.
        drill = report(severity="urgent", drill_speedup=3600, submission_key="absence-drill")

        def escalated() -> list[Any]:
            steps = api.get(f"/api/incidents/{drill}", headers=office).json()["escalations"]
            return steps if len(steps) == 3 else []

        chain = wait_until(escalated, within=60)
        assert all(HEAD not in s["targets"] for s in chain), chain
        assert DEPUTY in chain[0]["targets"]

        def hooks(person: str) -> list[dict[str, Any]]:
            return [
                m["body"]
                for m in receiver.received
                if m["body"].get("incident_id") == drill
                and m["body"].get("recipient", {}).get("id") == person
                and m["body"].get("rule") == "R-ESCALATE"
            ]

        wait_until(lambda: hooks(DEPUTY))
        assert hooks(HEAD) == [], "the absent head was escalated to"

        absence_id = listed.stdout.split()[0]
        ended = cli("absence", "end", absence_id, "--token", tokens[OFFICE])
        assert ended.returncode == 0 and "已销假" in ended.stdout, ended.stderr
