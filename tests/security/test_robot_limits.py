"""Issue 17, finding 5: what leaves the building for a chat robot, and how much.

WeCom, DingTalk and Feishu group robots are third parties (R-SECRECY: the incident's content is
shown only to staff with a role on it). A message to one of them carries the minimum: what happened
in one line, which rule or deadline, due when, the escalation step, and the link to the incident
page; the full text (a summary, a reply) stays behind sign-in. And every request keeps within its
provider's published limits, measured here on the wire by real receivers on 127.0.0.1:

- 企业微信群机器人 (https://developer.work.weixin.qq.com/document/path/91770): text content at
  most 2048 bytes, markdown content at most 4096 bytes, UTF-8.
- 钉钉自定义机器人: a request body over 20000 bytes is refused (errcode 460101 "message too long,
  exceed 20000 bytes").
- 飞书自定义机器人 (https://open.feishu.cn/document/client-docs/bot-v3/add-custom-bot): the
  request body at most 20 KB (read strictly here: 20000 bytes).

A 10,000-character summary (and a 10,000-character reply) go through the incident's pure core, the
outbox's deliveries and the `deliver` activity; a daily digest of 50 incidents through
`build_digest` and `deliver`. Every message keeps its link line whole, none carries the summary or
the reply, and all 50 incidents of the digest arrive, across however many messages it takes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from activities.channels import OutgoingMessage, RobotPart, robot_parts
from activities.digest import DigestActivities
from activities.notify import NotifyActivities
from plan import digest
from plan.incident import RULES_VERSION, Incident
from plan.models import Deadline, IncidentInput, Notification, Submission
from plan.outbox import deliveries_for
from plan.records import IncidentRow, RecordRequest
from plan.roster import load_roster
from plan.spec import shipped
from store import incident_rows
from store.db import session_scope
from tests.conftest import EXAMPLE_ROSTER
from tests.test_channels import Hit, Receiver
from tests.test_model import accepts, apply, witnesses

OK = (200, {"errcode": 0, "errmsg": "ok", "code": 0, "msg": "success"})
PUBLIC_URL = "https://yq.town.example"
START = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)
TZ = "Asia/Shanghai"

# The providers' limits, in bytes (see the module docstring for the sources).
WECOM_TEXT_MAX = 2048
WECOM_MARKDOWN_MAX = 4096
DINGTALK_BODY_MAX = 20_000
FEISHU_BODY_MAX = 20_000
RATE_PER_MINUTE = 20  # WeCom and DingTalk: 20 messages a minute per robot


def long_text(opening: str, deep: str, length: int = 10_000) -> str:
    """`length` characters of a written report: `opening` first, `deep` about four fifths in."""
    filler = (
        "本次舆情发生后，责任单位立即组织核查，会同相关部门逐项落实整改措施，"
        "并通过官方渠道及时回应群众关切，持续跟踪网络舆论走向。"
    )
    text = opening
    while len(text) < length * 4 // 5:
        text += filler
    text += deep
    while len(text) < length:
        text += filler
    return text[:length]


SUMMARY_OPENING = "总结开头独有语句：镇党政办审阅件甲一号。"
SUMMARY_DEEP = "总结深处独有语句：青石板桥第七号墩台加固方案"
REPLY_OPENING = "回复开头独有语句：致广大网友的情况说明乙二号。"
REPLY_DEEP = "回复深处独有语句：东湖村主干道排水管网改造工程"
SUMMARY = long_text(SUMMARY_OPENING, SUMMARY_DEEP)
REPLY = long_text(REPLY_OPENING, REPLY_DEEP)
SECRETS = (SUMMARY_OPENING, SUMMARY_DEEP, REPLY_OPENING, REPLY_DEEP)
TITLE = "东湖村主干道积水一周无人处理，村民出行困难" * 9  # near the 200-character limit


@dataclass
class Robots:
    wecom: Receiver  # markdown
    wecom_text: Receiver  # text, with mobiles to mention
    dingtalk: Receiver
    feishu: Receiver
    roster_file: Path

    def all(self) -> dict[str, Receiver]:
        return {
            "wecom": self.wecom,
            "wecom_text": self.wecom_text,
            "dingtalk": self.dingtalk,
            "feishu": self.feishu,
        }


ROBOT_PEOPLE = ("liu.yang", "zhou.wenbin", "sun.haitao")


@pytest.fixture
def robots(tmp_path: Path) -> Iterator[Robots]:
    """The example roster with every robot kind on the office's director (who hears of the
    report and the first escalation step), the party office's head (who receives the summary)
    and the responsible unit's head (the warning, the review, every escalation step); each of
    them reads the digest too."""
    receivers = [Receiver(OK, path=f"/{kind}") for kind in ("wecom", "wecom-text", "dd", "fs")]
    wecom, wecom_text, dingtalk, feishu = receivers
    try:
        text = EXAMPLE_ROSTER.read_text(encoding="utf-8")
        table = (
            f'{{ id = "wecom", kind = "wecom", url = "{wecom.url}?key=k1" }}, '
            f'{{ id = "wecom-text", kind = "wecom", url = "{wecom_text.url}?key=k2", '
            'mentioned_mobiles = ["13800001111"] }, '
            f'{{ id = "dingtalk", kind = "dingtalk", url = "{dingtalk.url}?access_token=t", '
            'secret = "SECdingtalk", at_mobiles = ["13900001111"] }, '
            f'{{ id = "feishu", kind = "feishu", url = "{feishu.url}", secret = "fs-secret" }}'
        )
        for person in ROBOT_PEOPLE:
            line = f'id = "{person}"\n'
            assert text.count(line) == 1, person
            text = text.replace(line, f"{line}channels = [{table}]\n")
        roster_file = tmp_path / "roster.toml"
        roster_file.write_text(text, encoding="utf-8")
        yield Robots(wecom, wecom_text, dingtalk, feishu, roster_file)
    finally:
        for r in receivers:
            r.close()


def content_of(kind: str, hit: Hit) -> str:
    body = hit.json()
    if kind == "wecom":
        assert body["msgtype"] == "markdown", body
        return str(body["markdown"]["content"])
    if kind == "wecom_text":
        assert body["msgtype"] == "text", body
        return str(body["text"]["content"])
    if kind == "dingtalk":
        return str(body["markdown"]["text"])
    return str(body["content"]["text"])


def wire_size(kind: str, hit: Hit) -> tuple[int, int]:
    """What the provider measures, in bytes, and its limit."""
    if kind == "wecom":
        return len(content_of(kind, hit).encode()), WECOM_MARKDOWN_MAX
    if kind == "wecom_text":
        return len(content_of(kind, hit).encode()), WECOM_TEXT_MAX
    return len(hit.body), DINGTALK_BODY_MAX if kind == "dingtalk" else FEISHU_BODY_MAX


def link_line(kind: str, link: str) -> str:
    return f"[查看事件]({link})" if kind in ("wecom", "dingtalk") else f"详情：{link}"


def problems(kind: str, hit: Hit, link: str) -> list[str]:
    """What is wrong with one message as it arrived: over the limit, a character cut in half,
    the link line cut, the summary's or the reply's text."""
    found = []
    size, limit = wire_size(kind, hit)
    if size > limit:
        found.append(f"{size} bytes, over the provider's {limit}")
    assert int(hit.headers["content-length"]) == len(hit.body)
    try:
        hit.body.decode("utf-8")  # strict
    except UnicodeDecodeError as exc:
        found.append(f"not UTF-8: {exc}")
    content = content_of(kind, hit)
    if "\ufffd" in content:
        found.append("a character cut in half")
    if link_line(kind, link) not in content.splitlines():
        found.append(f"no link line (ends {content[-40:]!r})")
    found += [f"carries {phrase!r}" for phrase in SECRETS if phrase in content]
    return found


def check_messages(robots: Robots, link: str) -> tuple[dict[str, list[str]], list[str]]:
    """Every message each robot received, checked: their contents by robot, and what is wrong
    with them."""
    report: list[str] = []
    contents: dict[str, list[str]] = {}
    for kind, receiver in robots.all().items():
        hits = receiver.received()
        assert hits, kind
        contents[kind] = [content_of(kind, hit) for hit in hits]
        for n, hit in enumerate(hits, 1):
            report += [f"{kind} message {n}/{len(hits)}: {p}" for p in problems(kind, hit, link)]
    return contents, report


# ------------------------------------------------------------------ an incident, its summary


def run_incident(roster_file: Path) -> list[Notification]:
    """An incident from its report to its summary in the pure core (plan/incident.py), its reply
    deadline missed on the way (a warning and the escalation chain); every notification it made."""
    roster = load_roster(roster_file).public()  # what a workflow holds: channels by reference
    sub = Submission(
        title=TITLE,
        content="网帖称东湖村主干道积水一周。",
        source="微博",
        discovered_at=START - timedelta(minutes=10),
        reporter_unit="dhc",
    )
    inp = IncidentInput(
        incident_id="YQ-LONG-1",
        submission=sub,
        received_at=START,
        roster=roster,
        plan=shipped(),
        plan_version=shipped().version,
        public_url=PUBLIC_URL,
        submitted_by="zhou.ting",
    )
    c = Incident(inp, now=START)
    c.s.rules_version = RULES_VERSION
    c.open_incident()
    c.started = True
    triage = {"severity": "general", "category": "hype", "responsible_unit": "cjb"}
    apply(c, "triage", triage, "liu.yang")
    c.advance(c.now + timedelta(hours=15))  # the 12 h reply deadline passes unmet
    closing: list[tuple[str, dict[str, Any]]] = [
        ("submit-summary", {"text": SUMMARY}),
        ("publish-reply", {"channel": "镇政府微博"}),
        ("approve-release", {"approve": True, "spokesperson": "li.xiaomei"}),
        ("countersign-reply", {"approve": True}),
        ("approve-reply", {"approve": True}),
        ("draft-reply", {"text": REPLY, "kind": "official"}),
        ("track", {"status": "subsided"}),
    ]
    for _ in range(40):
        if c.s.summary is not None:
            break
        for name, fields in closing:
            actor = next((p for p in witnesses(c) if c.allows(name, p)), None)
            if actor is not None and accepts(c, name, fields, actor):
                apply(c, name, fields, actor)
                break
        else:
            c.advance(c.now + timedelta(hours=6))
    assert c.s.summary == SUMMARY
    return list(c.s.pending_notifications)


def deliver_to_robots(database_url: str, roster_file: Path, notes: list[Notification]) -> int:
    """Every robot delivery of the notifications, through the `deliver` activity."""
    activities = NotifyActivities(database_url, roster_file=roster_file)
    n = 0
    for note in notes:
        for request in deliveries_for(note):
            if request.channel.kind in ("wecom", "dingtalk", "feishu"):
                assert activities.deliver(request) == "sent", request.target
                n += 1
    return n


def test_a_long_summary_and_reply_stay_behind_sign_in(database_url: str, robots: Robots) -> None:
    notes = run_incident(robots.roster_file)
    summary_note = next(n for n in notes if n.rule == "R-SUMMARY")
    assert SUMMARY_DEEP in summary_note.body  # the inbox and e-mail still have it all
    assert any(n.rule == "R-ESCALATE" for n in notes)
    assert deliver_to_robots(database_url, robots.roster_file, notes) >= 4 * len(ROBOT_PEOPLE)
    by_kind, report = check_messages(robots, f"{PUBLIC_URL}/incidents/YQ-LONG-1")
    assert not report, "\n".join(report)
    for kind, contents in by_kind.items():
        summaries = [c for c in contents if "R-SUMMARY" in c]
        assert summaries, (kind, contents)
        # What happened, in one line: the title (clipped) and the event.
        assert all("东湖村主干道积水一周" in c and "书面总结" in c for c in summaries), summaries
        escalations = [c for c in contents if "督办" in c and "第1级" in c]
        assert escalations, (kind, "no escalation step")


# ------------------------------------------------------------------ a digest of 50 incidents


def seed_open_incidents(database_url: str, n: int, at: datetime) -> list[str]:
    """n open incidents with long titles, each with a deadline falling due within the day."""
    ids = []
    for i in range(1, n + 1):
        incident_id = f"YQ-20261130-{i:03d}"
        ids.append(incident_id)
        due = at + timedelta(hours=1, minutes=i)
        row = IncidentRow(
            id=incident_id,
            version=1,
            title=f"第{i}件：" + "镇中学食堂饭菜质量投诉引发家长群热议并被多家自媒体转发" * 4,
            content="网帖内容",
            source="微博",
            url=None,
            reporter_unit="sswb",
            reporter_name=None,
            responsible_unit="sswb",
            severity="general",
            category="inquiry",
            phase="handling",
            drill=False,
            discovered_at=at - timedelta(hours=2),
            posted_at=None,
            received_at=at - timedelta(hours=1),
            next_due_at=due,
            overdue=False,
            closed_at=None,
            plan_version="2024",
        )
        deadline = Deadline(
            key="R-REPLY#1", rule="R-REPLY", title="R-REPLY 一般舆情12小时内官方回复", due_at=due
        )
        with session_scope(database_url) as s:
            incident_rows.record(
                s,
                request=RecordRequest(
                    incident=row, deadlines=[deadline], timeline=[], accountability=[]
                ),
            )
    return ids


def test_a_digest_of_fifty_incidents_arrives_whole(database_url: str, robots: Robots) -> None:
    at = datetime(2026, 11, 30, 0, 0, tzinfo=UTC)  # 08:00 in the town
    ids = seed_open_incidents(database_url, 50, at)
    note = DigestActivities(database_url, robots.roster_file).build_digest(
        digest.DigestRequest(
            kind="daily",
            at=at,
            day=date(2026, 11, 30),
            timezone=TZ,
            roster_file=str(robots.roster_file),
            public_url=PUBLIC_URL,
        )
    )
    assert all(i in note.body for i in ids)
    deliver_to_robots(database_url, robots.roster_file, [note.notification()])
    by_kind, report = check_messages(robots, f"{PUBLIC_URL}/incidents")
    for kind, contents in by_kind.items():
        arrived = "\n".join(contents)
        missing = [i for i in ids if i not in arrived]
        if missing:
            report.append(f"{kind}: {len(missing)} of 50 incidents lost, from {missing[0]}")
        # Each recipient's copy within the robot's rate limit.
        if len(contents) // len(ROBOT_PEOPLE) >= RATE_PER_MINUTE:
            report.append(f"{kind}: {len(contents)} messages, over the rate limit")
    assert not report, "\n".join(report)


# ------------------------------------------------------------------ the packing itself


def robot_message(subject: str, brief: list[str]) -> OutgoingMessage:
    return OutgoingMessage(
        key="k",
        subject=subject,
        body=SUMMARY,
        link=f"{PUBLIC_URL}/incidents/YQ-1",
        rule="R-ESCALATE",
        incident_id="YQ-1",
        recipient_id="liu.yang",
        recipient_name="刘洋",
        brief=brief,
    )


@pytest.mark.parametrize("limit", [WECOM_TEXT_MAX, WECOM_MARKDOWN_MAX, 600])
def test_lines_are_clipped_between_characters_never_through_the_link(limit: int) -> None:
    """A line longer than any message is clipped by UTF-8 bytes, between characters (three- and
    four-byte ones here), and every message still ends with the whole link line."""
    link = f"{PUBLIC_URL}/incidents/YQ-1"
    msg = robot_message("【一般舆情】积水：新报告", ["积😀" * 2000, "规则：R-NOTIFY", "水" * 5000])
    for render, tail in (
        (RobotPart.text, f"\n详情：{link}"),
        (RobotPart.markdown, f"[查看事件]({link})"),
    ):
        parts = robot_parts(msg, lambda p, r=render: len(r(p).encode()), limit)  # type: ignore[misc]
        lines = [line for p in parts for line in p.lines]
        assert len(lines) == 3 and lines[1] == "规则：R-NOTIFY", lines
        for part in parts:
            content = render(part)
            assert len(content.encode()) <= limit
            assert content.endswith(tail)
            assert "\ufffd" not in content
        assert lines[0].endswith("…") and lines[2].endswith("水…")
        assert all(len(line.encode()) <= 600 for line in lines)  # LINE_BYTES


def test_the_head_keeps_the_event_whole() -> None:
    """What happened, in one line: a long title is clipped, the event after it is kept."""
    title = "东湖村主干道积水一周无人处理" * 14  # 196 characters
    msg = robot_message(f"【演练】【重大舆情】{title}：R-REPLY 官方回复已逾期（第2级督办）", [])
    head = msg.robot_head()
    assert len(head.encode()) <= 300 and "\n" not in head
    assert head.startswith("【演练】【重大舆情】东湖村主干道积水一周")
    assert head.endswith("…：R-REPLY 官方回复已逾期（第2级督办）")
    assert msg.robot_lines() == ["规则：R-ESCALATE"]  # a notification from before briefs


def test_beyond_ten_messages_the_last_says_how_many_are_left_out() -> None:
    """The robots take 20 messages a minute: one notification sends at most 10, and the tenth
    says how many lines did not fit rather than dropping them silently."""
    lines = [f"在办{n}. 东湖村道路积水（YQ-{n:04d}）" for n in range(1, 1001)]
    parts = robot_parts(
        robot_message("【每日舆情简报】：在办1000件", lines),
        lambda p: len(p.markdown().encode()),
        WECOM_MARKDOWN_MAX,
    )
    assert len(parts) == 10
    shown = [line for p in parts for line in p.lines]
    note = shown.pop()
    assert note == f"……另有{1000 - len(shown)}项未列出，请登录系统查看"
    assert shown == lines[: len(shown)]
    assert all(len(p.markdown().encode()) <= WECOM_MARKDOWN_MAX for p in parts)
    assert [p.markdown().split("**")[1][-8:] for p in parts][-1].endswith("（10/10）")
