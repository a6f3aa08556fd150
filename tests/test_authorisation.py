"""The authorisation matrix: every staff action against every role, through the pages, the JSON API
and the `yuqing` CLI, on the real dev server with the worker and the web app as processes.

For each action the test builds an incident in which the action is due (so the only reason left to
refuse it is who asks), then has every persona try it: the roles the plan names for the action must
succeed, everyone else must be refused as not allowed (403 / CLI exit 3; 404 / exit 4 for whoever
may not see the incident at all) and the incident must not change. The table of who may do what is written here from the plan (RULES.md), not read from the
code it checks.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import typer.main
from temporalio.testing import WorkflowEnvironment

from config.settings import get_settings
from plan.actions import ACTIONS
from starter.cli import EXIT_FORBIDDEN, EXIT_NOT_FOUND, app
from store import credentials
from store.db import session_scope
from tests.conftest import EXAMPLE_ROSTER, start_dev_server
from tests.helpers import submission
from tests.stack import Stack, running_stack

# Each persona's standing on the test incident: reported by 东湖村 (dhc), led by 村镇建设办 (cjb)
# with 社会事务办 (sswb) co-handling. Written by hand from config/roster.example.toml.
PERSONAS: dict[str, set[str]] = {
    "liu.yang": {"office"},  # 领导小组办公室主任
    "zhou.ting": {"office"},  # 办公室舆情监测员
    "wang.jianguo": {"leader"},  # 组长
    "li.xiaomei": {"deputy"},  # 副组长 (also heads 宣传办, not involved here)
    "chen.zhiqiang": {"member"},  # 领导小组成员 (镇长)
    "sun.haitao": {"unit", "unit_head", "member"},  # 村镇建设办主任, also a member
    "lin.feng": {"unit"},  # 村镇建设办工作人员
    "huang.li": {"co_unit", "co_unit_head", "member"},  # 社会事务办主任, also a member
    "xu.lei": {"co_unit"},  # 社会事务办工作人员
    "feng.gang": {"reporter"},  # 东湖村: the reporting unit
    "zhou.wenbin": {"member"},  # 镇党政办主任 (receives summaries), a member
    "zhao.min": {"member"},  # 镇纪委书记: the discipline contact, a member
    "he.jing": set(),  # 宣传办主任: may read (R-SECRECY), acts on nothing here
    "zheng.lei": set(),  # 应急管理办: no part in the incident
}
# Who may not even see the test incident (R-SECRECY): for them it does not exist, so a refusal is
# the 404 (CLI exit 4) of an unknown id, never a 403 that would tell the id exists. Before triage
# names 村镇建设办 and 社会事务办, their staff with no standing role have no part in it either.
UNSEEN = {"zheng.lei"}
UNSEEN_BEFORE_TRIAGE = UNSEEN | {"lin.feng", "xu.lei"}
ANONYMOUS = "(anonymous)"
LEADING = {"leader", "deputy"}
INVOLVED = {"unit", "co_unit", "office"}

# Who the plan lets take each action, by standing.
ALLOWED: dict[str, set[str]] = {
    "confirm-lead": {"office"},  # R-OFFICE: the office assesses monitoring leads
    "triage": {"office"} | LEADING,  # 领导小组办公室 triages; the leading group may re-decide
    "file-written-report": {"office", "reporter"},  # R-WRITTEN: whoever reported by phone
    "report-progress": INVOLVED,  # R-PROGRESS 续报
    "activate": LEADING,  # R-ACTIVATE: 领导小组 启动应急预案
    "consult": {"office", "member"} | LEADING,  # R-CONSULT: the leading group and its office
    "return-to-office": {"unit"},  # the lead unit hands a wrong assignment back
    "declare-delay": {"unit"},  # R-STANCE
    "draft-reply": {"unit"},  # R-REVIEW: drafted by the responsible unit
    "approve-reply": {"unit_head"},  # R-REVIEW: approved by that unit's head
    "countersign-reply": {"co_unit_head"},  # R-REVIEW 经各部门负责人审定: co-units' heads 会签
    "approve-release": LEADING,  # R-RELEASE: the leading group approves wording and spokesperson
    "publish-reply": {"unit"},  # R-REPLY
    "conclude": {"unit"},  # R-INQUIRY 办结
    "decide-adoption": {"unit"},  # R-SUGGESTION
    "report-spreading": INVOLVED,  # R-HYPE
    "track": INVOLVED,  # R-TRACK
    "submit-summary": INVOLVED,  # R-SUMMARY
    "withdraw": {"office"},  # R-CLOSE
    "record-accountability": {"office"},  # R-ACCOUNT 谎报、瞒报 by hand
    "commend": {"office"} | LEADING,  # R-COMMEND
    # 签收 (issue 20): the 交办 reaches the lead unit's head (here also its first-responsible
    # person); nobody signs for a message sent to someone else.
    "sign-for": {"unit_head"},
}
# Actions one person can repeat on the same incident; the others need a fresh incident per success.
REPEATABLE = {
    "report-progress",
    "activate",
    "consult",
    "decide-adoption",
    "record-accountability",
    "commend",
    "triage",
}

TRIAGE = {"category": "inquiry", "responsible_unit": "cjb", "co_units": ["sswb"]}


@dataclass
class Scene:
    """How to bring an incident to where the action is due, and the action's own body."""

    body: dict[str, Any]
    severity: str = "general"
    category: str = "inquiry"
    triaged: bool = True
    submission: dict[str, Any] = field(default_factory=dict)
    steps: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)


DRAFT = ("draft-reply", "lin.feng", {"text": "已安排抽排积水，今日完成。"})
APPROVE = ("approve-reply", "sun.haitao", {"approve": True})
COUNTERSIGN = ("countersign-reply", "huang.li", {"approve": True})
PUBLISH = ("publish-reply", "lin.feng", {"channel": "镇政府微博"})

SCENES: dict[str, Scene] = {
    "confirm-lead": Scene({"note": "确属舆情"}, triaged=False, submission={"lead": True}),
    "triage": Scene({"severity": "general", **TRIAGE}, triaged=False),
    "file-written-report": Scene({"text": "书面信息：积水已抽排。"}, submission={"oral": True}),
    "report-progress": Scene({"text": "续报：已抽排一半。"}, severity="major"),
    "activate": Scene({"units": ["yjb"]}, severity="major"),
    "consult": Scene({"topic": "是否需要现场回应", "decision": "今日到场"}),
    "return-to-office": Scene({"reason": "不属本单位职责"}),
    "declare-delay": Scene({"reason": "需上级部门鉴定"}),
    "draft-reply": Scene({"text": "已安排抽排积水。", "kind": "official"}),
    "approve-reply": Scene({"approve": True}, steps=[DRAFT]),
    "countersign-reply": Scene({"approve": True}, steps=[DRAFT, APPROVE]),
    "approve-release": Scene(
        {"approve": True, "spokesperson": "li.xiaomei"},
        severity="major",
        steps=[DRAFT, APPROVE, COUNTERSIGN],
    ),
    "publish-reply": Scene({"channel": "镇政府微博"}, steps=[DRAFT, APPROVE, COUNTERSIGN]),
    "conclude": Scene({"note": "已办结"}),
    "decide-adoption": Scene({"adopted": True, "decision": "采纳"}, category="suggestion"),
    "report-spreading": Scene(
        {"description": "告知真相后仍有账号转发"},
        category="hype",
        steps=[DRAFT, APPROVE, COUNTERSIGN, PUBLISH],
    ),
    "track": Scene({"status": "active"}, steps=[DRAFT, APPROVE, COUNTERSIGN, PUBLISH]),
    "submit-summary": Scene(
        {"text": "书面总结：发生、传播、处置和反思。"},
        steps=[DRAFT, APPROVE, COUNTERSIGN, PUBLISH, ("track", "liu.yang", {"status": "subsided"})],
    ),
    "withdraw": Scene({"reason": "误报"}),
    "record-accountability": Scene({"kind": "瞒报", "unit": "cjb", "reason": "未按时报告"}),
    "commend": Scene({"unit": "cjb", "reason": "处置及时"}),
    "sign-for": Scene({}),
}


def allowed(action: str, person: str) -> bool:
    return person != ANONYMOUS and bool(PERSONAS[person] & ALLOWED[action])


def unseen(action: str, person: str) -> bool:
    """The person may not see the incident `action` is tried on (when they are refused)."""
    return person in (UNSEEN if SCENES[action].triaged else UNSEEN_BEFORE_TRIAGE)


def test_the_matrix_covers_every_action() -> None:
    assert set(ALLOWED) == set(ACTIONS) == set(SCENES)
    for action in ACTIONS:
        may = [p for p in PERSONAS if allowed(action, p)]
        assert may, f"nobody here may {action}"
        assert len(may) < len(PERSONAS), f"everybody may {action}"


# ---------------------------------------------------------------- the running town

# Drop idle connections before uvicorn does (its keep-alive is 5 s): a persona waits while others
# act, and reusing a connection the server is closing fails the request with a ReadError.
IDLE = httpx.Limits(keepalive_expiry=2)


@dataclass
class Town:
    stack: Stack
    tokens: dict[str, str]
    http: httpx.AsyncClient

    def bearer(self, person: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[person]}"}

    async def act(self, incident_id: str, action: str, person: str, body: dict[str, Any]) -> None:
        r = await self.http.post(
            f"/api/incidents/{incident_id}/actions/{action}", json=body, headers=self.bearer(person)
        )
        assert r.status_code == 200, (action, person, r.text)

    async def view(self, incident_id: str) -> dict[str, Any]:
        r = await self.http.get(f"/api/incidents/{incident_id}", headers=self.bearer("liu.yang"))
        assert r.status_code == 200, r.text
        return dict(r.json())

    async def stage(self, action: str) -> str:
        """A new incident at the point where `action` is due."""
        scene = SCENES[action]
        data = submission(
            reporter_unit="dhc",
            reporter_name="冯刚",
            submission_key=uuid.uuid4().hex,
            title=f"权限矩阵：{action}",
            **scene.submission,
        )
        path = "/api/leads" if data.pop("lead", False) else "/api/incidents"
        # As a monitoring system would: with a token, so the anonymous rate limit does not apply.
        r = await self.http.post(path, json=data, headers=self.bearer("zhou.ting"))
        assert r.status_code == 201, r.text
        incident_id = str(r.json()["id"])
        if scene.triaged:
            body = {"severity": scene.severity, **TRIAGE, "category": scene.category}
            await self.act(incident_id, "triage", "liu.yang", body)
        for name, person, body in scene.steps:
            await self.act(incident_id, name, person, body)
        return incident_id


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def matrix_server() -> AsyncIterator[WorkflowEnvironment]:
    env = await start_dev_server()
    async with env:
        yield env


# A worker, a web app and a store of each test's own (the dev server is shared): three matrices'
# incidents piled on one worker made each test after the first cost the servers twice the CPU of
# the one before, far more than starting the two processes again.
@pytest.fixture
def stack(
    matrix_server: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    tmp_path = tmp_path_factory.mktemp("matrix")
    with running_stack(
        matrix_server.client.service_client.config.target_host,
        tmp_path,
        Path(EXAMPLE_ROSTER),
        f"matrix-{tmp_path.name}",
    ) as stack:
        yield stack


@pytest_asyncio.fixture(loop_scope="session")
async def town(stack: Stack) -> AsyncIterator[Town]:
    with session_scope(stack.env["YUQING_DATABASE_URL"]) as s:
        tokens = {p: credentials.create_token(s, person_id=p) for p in PERSONAS}
    async with httpx.AsyncClient(base_url=stack.url, timeout=60, limits=IDLE) as http:
        yield Town(stack, tokens, http)


async def staged(town: Town) -> dict[str, list[str]]:
    """Per action, incidents where it is due: one for everyone refused and the first success,
    plus one for each further success of an action that cannot be repeated."""
    limit = asyncio.Semaphore(8)

    async def one(action: str) -> str:
        async with limit:
            return await town.stage(action)

    wanted: list[str] = []
    for action in ACTIONS:
        successes = sum(allowed(action, p) for p in PERSONAS)
        wanted += [action] * (1 if action in REPEATABLE else successes)
    ids = await asyncio.gather(*(one(a) for a in wanted))
    out: dict[str, list[str]] = {}
    for action, incident_id in zip(wanted, ids, strict=True):
        out.setdefault(action, []).append(incident_id)
    return out


def plan_for(incidents: dict[str, list[str]], action: str) -> list[tuple[str, str]]:
    """(person, incident) in order: every refused person first on the first incident, then each
    allowed person on an incident of their own (or the shared one for a repeatable action)."""
    ids = incidents[action]
    refused = [ANONYMOUS] + [p for p in PERSONAS if not allowed(action, p)]
    ok = [p for p in PERSONAS if allowed(action, p)]
    pairs = [(p, ids[0]) for p in refused]
    pairs += [(p, ids[0] if action in REPEATABLE else ids[i]) for i, p in enumerate(ok)]
    return pairs


@dataclass
class Outcome:
    succeeded: bool
    forbidden: bool
    detail: str


async def check_matrix(town: Town, attempt: Any) -> None:
    """Run every (action, person) through `attempt` and compare with the plan's table."""
    incidents = await staged(town)
    mismatches: list[str] = []

    async def walk(action: str) -> None:
        pairs = plan_for(incidents, action)
        first = pairs[0][1]
        before = await town.view(first)
        checked = False
        for person, incident_id in pairs:
            expected = allowed(action, person)
            if expected and not checked:
                # Every refused attempt came first, on the first incident: none may have changed it.
                after = await town.view(first)
                if (after["timeline"], after["phase"]) != (before["timeline"], before["phase"]):
                    mismatches.append(f"{action}: a refused attempt changed the incident")
                checked = True
            outcome: Outcome = await attempt(action, person, incident_id, SCENES[action].body)
            if expected and not outcome.succeeded:
                mismatches.append(f"{action} by {person}: refused ({outcome.detail})")
            if not expected and not (outcome.forbidden and not outcome.succeeded):
                mismatches.append(
                    f"{action} by {person}: not refused as forbidden ({outcome.detail})"
                )

    await asyncio.gather(*(walk(a) for a in ACTIONS))
    assert not mismatches, "\n".join(mismatches)


# ---------------------------------------------------------------- the three ways in


async def test_every_action_by_every_role_through_the_api(town: Town) -> None:
    async def attempt(action: str, person: str, incident_id: str, body: dict[str, Any]) -> Outcome:
        headers = {} if person == ANONYMOUS else town.bearer(person)
        r = await town.http.post(
            f"/api/incidents/{incident_id}/actions/{action}", json=body, headers=headers
        )
        expected_status = 401 if person == ANONYMOUS else 404 if unseen(action, person) else 403
        return Outcome(r.status_code == 200, r.status_code == expected_status, r.text[:200])

    await check_matrix(town, attempt)


def _form(body: dict[str, Any]) -> dict[str, Any]:
    """An action body as the page's form posts it: checkboxes "on" or absent, lists repeated."""
    out: dict[str, Any] = {}
    for key, value in body.items():
        if isinstance(value, bool):
            if value:
                out[key] = "on"
        elif isinstance(value, Enum):
            out[key] = value.value
        else:
            out[key] = value
    return out


def _csrf(html: str) -> str:
    found = re.findall(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no csrf token on the page"
    return str(found[-1])


async def test_every_action_by_every_role_through_the_pages(town: Town) -> None:
    """Signed-in sessions post each action's form with their CSRF token; the page offers the form
    to exactly the people the plan allows (the server's refusal is what is checked, not the page)."""
    browsers: dict[str, tuple[httpx.AsyncClient, str]] = {}
    try:
        for person in [ANONYMOUS, *PERSONAS]:
            c = httpx.AsyncClient(base_url=town.stack.url, timeout=60, limits=IDLE)
            login = await c.get("/login")
            csrf = _csrf(login.text)
            if person != ANONYMOUS:
                r = await c.post(
                    "/login", data={"csrf_token": csrf, "token": town.tokens[person], "next": "/my"}
                )
                assert r.status_code == 303, r.text
                csrf = _csrf((await c.get("/")).text)
            browsers[person] = (c, csrf)
        offered_wrongly: list[str] = []
        csrf_failures: list[str] = []

        async def attempt(
            action: str, person: str, incident_id: str, body: dict[str, Any]
        ) -> Outcome:
            c, csrf = browsers[person]
            page = await c.get(f"/incidents/{incident_id}")
            offers = f'action="/incidents/{incident_id}/actions/{action}"' in page.text
            if person != ANONYMOUS and offers != (
                page.status_code == 200 and allowed(action, person)
            ):
                offered_wrongly.append(f"{action} for {person}: offered={offers}")
            url = f"/incidents/{incident_id}/actions/{action}"
            if person != ANONYMOUS and allowed(action, person):
                # CSRF: the right person's form without its token, or from another site, is
                # refused before it reaches the workflow (the real post below still succeeds).
                missing = await c.post(url, data=_form(body))
                forged = await c.post(
                    url,
                    data={"csrf_token": csrf, **_form(body)},
                    headers={"Origin": "https://evil.example"},
                )
                if (missing.status_code, forged.status_code) != (403, 403):
                    csrf_failures.append(
                        f"{action} by {person}: {missing.status_code}/{forged.status_code}"
                    )
            r = await c.post(url, data={"csrf_token": csrf, **_form(body)})
            location = r.headers.get("location", "")
            if person == ANONYMOUS:
                return Outcome(
                    False, r.status_code == 303 and location.startswith("/login"), location
                )
            done = r.status_code == 303 and location.endswith(f"done={action}#action-done")
            refused = 404 if unseen(action, person) else 403
            return Outcome(done, r.status_code == refused, f"{r.status_code} {location}")

        await check_matrix(town, attempt)
        assert not offered_wrongly, "\n".join(offered_wrongly)
        assert not csrf_failures, "\n".join(csrf_failures)
    finally:
        for c, _ in browsers.values():
            await c.aclose()


def _flags(body: dict[str, Any]) -> list[str]:
    args: list[str] = []
    for key, value in body.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else f"--no-{key.replace('_', '-')}")
        elif isinstance(value, list):
            for item in value:
                args += [flag, str(item)]
        else:
            args += [flag, str(value)]
    return args


async def test_every_action_by_every_role_through_the_cli(
    town: Town, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`yuqing ACTION ID --field … --token T`, run in-process through the same click command the
    console script calls (its messages go to the captured stdout/stderr; the exit code is what
    tells a refusal by role, 3, from one by the plan, 5)."""
    monkeypatch.setenv("YUQING_API_URL", town.stack.url)
    monkeypatch.setenv("YUQING_TOKEN", "")
    # typer adds and removes this key while it parses; present already, os.environ never changes
    # size under another thread that iterates it (httpx reading proxy settings).
    monkeypatch.setenv("PYDANTIC_DISABLE_PLUGINS", "1")
    get_settings.cache_clear()

    # `app(...)` builds this click command from the functions' signatures on every call (typer's
    # `get_command`, some 30 ms); built once, each attempt runs only the command itself.
    command = typer.main.get_command(app)

    def run(args: list[str]) -> int:
        return int(command.main(args, prog_name="yuqing", standalone_mode=False) or 0)

    # A thread per action's walk (asyncio's default pool has os.cpu_count() + 4): the attempts
    # wait on the server as many at a time as through the API.
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(max_workers=len(ACTIONS), thread_name_prefix="cli") as threads:

        async def attempt(
            action: str, person: str, incident_id: str, body: dict[str, Any]
        ) -> Outcome:
            token = [] if person == ANONYMOUS else ["--token", town.tokens[person]]
            args = [action, incident_id, *_flags(body), *token]
            code = await loop.run_in_executor(threads, run, args)
            refused = EXIT_NOT_FOUND if unseen(action, person) else EXIT_FORBIDDEN
            return Outcome(code == 0, code == refused, f"exit {code}")

        try:
            await check_matrix(town, attempt)
        finally:
            get_settings.cache_clear()
