"""End to end: the real Temporal dev server, the worker and the web app as their own processes,
a real webhook receiver on 127.0.0.1, and the `yuqing` CLI — nothing in-process but the test."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from tests.conftest import EXAMPLE_ROSTER, binary, start_dev_server
from tests.stack import running_stack, wait_until


class Receiver:
    """A webhook endpoint that keeps every POST it gets."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                with lock:
                    outer.received.append({"headers": dict(self.headers), "body": json.loads(body)})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
async def dev_server() -> Any:
    env = await start_dev_server()
    async with env:
        yield env


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


async def test_incident_end_to_end(
    dev_server: WorkflowEnvironment, receiver: Receiver, tmp_path: Path
) -> None:
    # The office director gets webhooks too; everything else is the example town.
    roster = EXAMPLE_ROSTER.read_text(encoding="utf-8").replace(
        'title = "领导小组办公室主任"',
        f'title = "领导小组办公室主任"\nchannels = [{{ kind = "webhook", url = "{receiver.url}" }}]',
    )
    roster_file = tmp_path / "roster.toml"
    roster_file.write_text(roster, encoding="utf-8")
    with running_stack(
        dev_server.client.service_client.config.target_host, tmp_path, roster_file, "e2e"
    ) as stack:
        api, cli, env = stack.api, stack.cli, stack.env

        # 1. Submit through the form's HTTP endpoint, then read the state back through the API.
        discovered = datetime.now(UTC).astimezone().strftime("%Y-%m-%dT%H:%M")
        form = {
            "title": "镇卫生院排队时间过长",
            "content": "网友发帖称卫生院挂号排队两小时。",
            "source": "微信公众号",
            "discovered_at": discovered,
            "reporter_unit": "yqb",
            "severity": "major",
        }
        r = api.post("/incidents", data=form, follow_redirects=False)
        assert r.status_code == 201 and "报告已提交" in r.text, r.text
        found = re.search(r'id="incident-id">(YQ-[0-9A-F-]+)<', r.text)
        assert found
        incident_id = found.group(1)
        tokens = {
            p: cli("token", "create", p).stdout.strip()
            for p in ("liu.yang", "lin.feng", "sun.haitao")
        }
        office = {"Authorization": f"Bearer {tokens['liu.yang']}"}
        # The drill of step 4, started now: its plan time runs while steps 1 to 3 do.
        drill = api.post(
            "/api/incidents",
            json={
                "title": "演练：桥梁裂缝视频传播",
                "content": "演练内容",
                "source": "抖音",
                "discovered_at": datetime.now(UTC).isoformat(),
                "reporter_unit": "yqb",
                "severity": "urgent",
                "responsible_unit": "cjb",
                "drill_speedup": 3600,
            },
            headers=office,  # the office reports it: believed (issue 15)
        )
        assert drill.status_code == 201, drill.text
        drill_id = drill.json()["id"]
        state = api.get(f"/api/incidents/{incident_id}", headers=office).json()
        # Sent without signing in: a lead for the office, its stated severity not yet believed.
        assert state["phase"] == "lead" and state["severity_assessed"] is False
        reply = next(d for d in state["deadlines"] if d["rule"] == "R-REPLY")
        assert reply["met_at"] is None and reply["overdue"] is False
        confirmed = cli("confirm-lead", incident_id, "--token", tokens["liu.yang"])
        assert confirmed.returncode == 0, confirmed.stderr
        # The incident page needs sign-in (R-SECRECY): the office signs in with its token.
        assert api.get(f"/incidents/{incident_id}").status_code == 303
        login = api.get("/login").text
        csrf = re.findall(r'name="csrf_token" value="([^"]+)"', login)[-1]
        signed = api.post("/login", data={"csrf_token": csrf, "token": tokens["liu.yang"]})
        assert signed.status_code == 303, signed.text
        assert "镇卫生院排队时间过长" in api.get(f"/incidents/{incident_id}").text

        # 2. The Temporal CLI finds it on the dev server.
        listing = subprocess.run(
            [
                binary("temporal"),
                "workflow",
                "list",
                "--address",
                env["YUQING_TEMPORAL_ADDRESS"],
                "--query",
                f"WorkflowId = '{incident_id}'",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert incident_id in listing.stdout, listing.stderr

        # 3. Staff act through the CLI with their tokens; a refused action leaves history untouched.
        handle = dev_server.client.get_workflow_handle(incident_id)
        before = len((await handle.fetch_history()).events)
        # sun.haitao (a leading group member, so he may read it) acts too early.
        refused = cli(
            "draft-reply", incident_id, "--text", "太早了", "--token", tokens["sun.haitao"]
        )
        assert refused.returncode != 0 and "研判" in refused.stderr
        assert len((await handle.fetch_history()).events) == before
        steps = [
            (
                "triage",
                incident_id,
                "--severity",
                "major",
                "--category",
                "inquiry",
                "--responsible-unit",
                "sswb",
                "--token",
                tokens["liu.yang"],
            ),
        ]
        for step in steps:
            done = cli(*step)
            assert done.returncode == 0, done.stderr
        denied = cli("draft-reply", incident_id, "--text", "回复", "--token", tokens["sun.haitao"])
        assert denied.returncode != 0 and "社会事务办" in denied.stderr
        # lin.feng's unit has no part in it: for him it does not exist (exit 4), and nothing names
        # the responsible unit (R-SECRECY, issue 15 finding 9).
        hidden = cli("draft-reply", incident_id, "--text", "回复", "--token", tokens["lin.feng"])
        assert hidden.returncode == 4 and "不存在" in hidden.stderr
        assert "社会事务办" not in hidden.stderr

        # 4. The drill started in step 1: its urgent 3 h reply deadline passed in 3 s, escalation
        #    climbs the chain and the webhook receiver gets each message once.
        def escalated() -> list[Any]:
            steps = api.get(f"/api/incidents/{drill_id}", headers=office).json()["escalations"]
            return steps if len(steps) == 3 else []

        chain = wait_until(escalated, within=60)
        assert [s["step"] for s in chain] == [1, 2, 3]
        assert chain[1]["targets"] == ["li.xiaomei"] and chain[2]["targets"] == ["wang.jianguo"]
        shown = api.get(f"/api/incidents/{drill_id}", headers=office).json()
        assert shown["overdue"] is True and shown["drill"] is True

        # Visibility: the dev server finds it by its search attributes.
        async def overdue_ids() -> list[str]:
            return [
                w.id
                async for w in dev_server.client.list_workflows(
                    "Overdue = true AND IsDrill = true AND ResponsibleUnit = 'cjb'"
                )
            ]

        deadline = time.monotonic() + 30
        while drill_id not in await overdue_ids():
            assert time.monotonic() < deadline, "search attributes never showed the drill overdue"
            time.sleep(0.5)

        def hooks_for(incident: str) -> list[dict[str, Any]]:
            return [m for m in receiver.received if m["body"]["incident_id"] == incident]

        wait_until(lambda: any(m["body"]["rule"] == "R-ESCALATE" for m in hooks_for(drill_id)))
        ids = [m["headers"]["webhook-id"] for m in receiver.received]
        assert len(ids) == len(set(ids)), "a webhook was delivered twice"
        assert any(m["body"]["rule"] == "R-NOTIFY" for m in hooks_for(incident_id))

        # 5. The list endpoint and the CLI list show both.
        listed = json.loads(cli("list", "--json", "--token", tokens["liu.yang"]).stdout)["items"]
        assert {incident_id, drill_id} <= {i["id"] for i in listed}
        history = await dev_server.client.get_workflow_handle(drill_id).fetch_history()
        fired = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_TIMER_FIRED]
        assert fired, "the drill's deadline ran as a durable timer"

        # 6. 通联测试 (issue 20, item 5) on demand through the CLI: staff may not start one, the
        #    office may; the office director's webhook gets it and he confirms with his token.
        refused = cli("reach-test", "--token", tokens["lin.feng"])
        assert refused.returncode == 3 and "通联测试" in refused.stderr
        started = cli("reach-test", "--token", tokens["liu.yang"])
        assert started.returncode == 0, started.stderr
        assert "通联测试已发起，编号：reach-test-" in started.stdout
        wait_until(lambda: hooks_for("reach-test"))
        confirmed = cli("reach-confirm", "--token", tokens["liu.yang"])
        assert confirmed.returncode == 0, confirmed.stderr
        assert "已确认收到通联测试（reach-test-" in confirmed.stdout
