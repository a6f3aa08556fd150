"""Finding 6 (issue 15): a person's text never becomes markup in a robot message.

A title like `[点此登录](http://evil/phish)` or `![t](http://tracker/x.png)` sent through the real
HTTP app reaches the WeCom, DingTalk and Feishu robots (real receivers on 127.0.0.1) as text a
person reads, never as a live link, a tracking image, an @all or a coloured font; the link to the
incident page, ours, stays a link."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from temporalio.client import Client

from activities.channels import OutgoingMessage
from plan.roster import Roster, load_roster
from starter.web.app import create_app
from tests.conftest import EXAMPLE_ROSTER, make_settings
from tests.helpers import eventually, running_worker, submission
from tests.test_channels import Receiver

EVIL_TITLE = "[点此登录](http://evil.example/phish)![t](http://tracker.example/x.png)"
EVIL_SOURCE = (
    '<at user_id="all">所有人</at><font color="warning">紧急</font><http://evil.example/a>'
)
OK = (200, {"errcode": 0, "errmsg": "ok", "code": 0, "msg": "success"})


def roster_with_robots(path: Path, wecom: str, dingtalk: str, feishu: str) -> Roster:
    """The example roster, the office's three people each on one robot; written to a file so the
    web app and the worker read the same roster."""
    text = EXAMPLE_ROSTER.read_text(encoding="utf-8")
    for person, table in (
        ("liu.yang", f'{{ kind = "wecom", url = "{wecom}?key=k" }}'),
        ("zhou.ting", f'{{ kind = "dingtalk", url = "{dingtalk}?access_token=t" }}'),
        ("ma.chao", f'{{ kind = "feishu", url = "{feishu}" }}'),
    ):
        line = f'id = "{person}"\n'
        assert text.count(line) == 1, person
        text = text.replace(line, f"{line}channels = [{table}]\n")
    path.write_text(text, encoding="utf-8")
    return load_roster(path)


def links(markdown: str) -> list[str]:
    """Every target a markdown renderer would open or load: [x](u), ![x](u), <u>, [x]: u."""
    found = re.findall(r"\]\(\s*([^)\s]+)", markdown)
    found += re.findall(r"<(https?://[^>]+)>", markdown)
    found += re.findall(r"^\s*\[[^\]]+\]:\s*(\S+)", markdown, flags=re.M)
    return found


async def test_user_text_reaches_the_robots_as_plain_text(
    client: Client, database_url: str, executor: ThreadPoolExecutor, tmp_path: Path
) -> None:
    wecom, dingtalk, feishu = (Receiver(OK, path=p) for p in ("/wecom", "/dingtalk", "/feishu"))
    try:
        roster_file = tmp_path / "roster.toml"
        roster = roster_with_robots(roster_file, wecom.url, dingtalk.url, feishu.url)
        settings = make_settings(database_url, roster_file=roster_file)
        app = create_app(settings, client=client, roster=roster)
        async with (
            running_worker(client, settings, executor),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://test"
            ) as http,
        ):
            r = await http.post(
                "/api/incidents", json=submission(title=EVIL_TITLE, source=EVIL_SOURCE)
            )
            assert r.status_code in (200, 201), r.text
            incident_id = r.json()["id"]
            await eventually(lambda: wecom.received() and dingtalk.received() and feishu.received())
    finally:
        for r_ in (wecom, dingtalk, feishu):
            r_.close()
    ours = f"{settings.public_url}/incidents/{incident_id}"
    contents = {
        "wecom": wecom.received()[0].json()["markdown"]["content"],
        "dingtalk": dingtalk.received()[0].json()["markdown"]["text"],
        "feishu": feishu.received()[0].json()["content"]["text"],
    }
    for kind, content in contents.items():
        assert "点此登录" in content, (kind, content)  # what the person wrote is still readable
        # …but none of it is markup: no link, image, autolink, mention or font of theirs.
        for marker in ("](", "![", "<at", "<font", "<http", "http://evil", "http://tracker"):
            assert marker not in content.replace(f"[查看事件]({ours})", ""), (kind, marker, content)
    for kind in ("wecom", "dingtalk"):
        assert links(contents[kind]) == [ours], (kind, contents[kind])
        assert contents[kind].endswith(f"[查看事件]({ours})")
    assert contents["feishu"].endswith(f"详情：{ours}")


def test_every_markup_character_is_neutral() -> None:
    """Each character that starts markup in one of the robots' formats comes out inert, and our
    own link stays a link. (A robot gets the subject and the brief, never the body: issue 17,
    finding 5; the brief's lines carry the markup here.)"""
    markup = ["> 引用", "# 标题", "[x][1]", "[1]: http://evil.example", "<@all>"]
    message = OutgoingMessage(
        key="k",
        subject="【一般舆情】*粗*_斜_`码`#题~删~|表|&amp;",
        body="> 引用\n# 标题\n[x][1]\n[1]: http://evil.example\n<@all>",
        link="http://localhost:8000/incidents/YQ-1",
        rule="R-NOTIFY",
        incident_id="YQ-1",
        recipient_id="liu.yang",
        recipient_name="刘洋",
        brief=markup,
    )
    markdown = message.markdown()
    assert "引用" in markdown and "标题" in markdown  # the lines are there, as text
    assert links(markdown) == ["http://localhost:8000/incidents/YQ-1"]
    user = markdown.removesuffix("[查看事件](http://localhost:8000/incidents/YQ-1)")
    assert user.startswith("**") and user.count("**") == 2  # our bold, nothing of theirs
    for char in "[]<>`#~|&_":
        assert char not in user, (char, user)
    assert "*粗*" not in user and "://" not in user
