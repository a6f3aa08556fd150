"""Issue 18, Done-when: no English in any page's visible text, as each role and signed out.

Every page is fetched over ASGI against the time-skipping server and a real database, parsed, and
its visible text (the body with every <details> counted as open, option labels, button values,
placeholders, titles and alt texts; not <script>, <style>, hidden inputs, nor the small grey rule
codes in `.rule-code` elements) must hold no run of two or more ASCII letters, bar a short list of
proper nouns and the shapes of things that are not prose (incident ids, URLs, e-mail addresses).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser

import httpx
import pytest
from temporalio.client import Client

from config.settings import Settings
from plan.roster import Roster
from starter import incidents
from starter.web.pages import rule_words, with_rule_codes, zone_words
from store import credentials
from store.db import session_scope
from tests.helpers import app_over_asgi, submission, triage
from tests.test_api import sign_in, token_for

# Proper nouns that are not English prose, each with its reason.
ALLOWED = [
    "Temporal UI",  # the workflow engine's own web UI, linked by its product name
    "yq_",  # the literal prefix of every personal token (login page: 以 yq_ 开头)
    # Attachments (issue 19): the file formats accepted, by their names (proper nouns, as Chinese
    # software writes them), and sizes in the unit symbols file pickers show.
    "PNG",
    "JPEG",
    "WebP",
    "PDF",
    "DOCX",
    "MB",
    "KB",
]
# Shapes that are data, not words: incident ids (YQ-20260101-ABCDEF123456), URLs and e-mail
# addresses (a user typed them), and the exact addresses the access log records (/incidents?…).
SHAPES = [
    r"\bYQ-\d{8}-[0-9A-Fa-f]+\b",
    r"https?://\S*",
    r"[\w.+-]+@[\w-]+(\.[\w-]+)+",
    r"(?<![\w/])/[A-Za-z][\w./?=&%:+-]*",
]
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
DROPPED = {"script", "style", "template", "noscript"}


class VisibleText(HTMLParser):
    """The text a reader can see, with <details> open and `.rule-code` elements stripped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, bool]] = []  # (tag, dropped)
        self.parts: list[str] = []

    @property
    def dropping(self) -> bool:
        return any(dropped for _, dropped in self.stack)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        hidden = (tag == "input" and a.get("type") == "hidden") or "hidden" in a
        dropped = tag in DROPPED or "rule-code" in a.get("class", "").split() or hidden
        if not self.dropping and not dropped:
            for name in ("placeholder", "title", "alt", "aria-label"):
                if a.get(name):
                    self.parts.append(a[name])
            if tag == "input" and a.get("type") in ("submit", "button", "reset") and a.get("value"):
                self.parts.append(a["value"])
        if tag not in VOID:
            self.stack.append((tag, dropped))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        if not self.dropping:
            self.parts.append(data)


def english_in(html: str) -> list[str]:
    """The runs of ASCII letters a reader would see on the page."""
    body = html.split("<body", 1)[-1]
    title = re.search(r"<title>(.*?)</title>", html, re.S)
    parser = VisibleText()
    parser.feed(body)
    text = " ".join(parser.parts) + " " + (title.group(1) if title else "")
    for shape in SHAPES:
        text = re.sub(shape, " ", text)
    for name in sorted(ALLOWED, key=len, reverse=True):
        text = text.replace(name, " ")
    return sorted(set(re.findall(r"[A-Za-z]{2,}", text)))


def test_the_scanner_sees_what_is_hidden_and_drops_rule_codes() -> None:
    page = (
        "<html><body><details><summary>更多</summary><p>Draft here</p></details>"
        '<span class="rule-code">R-REPLY</span><script>var x;</script>'
        '<select><option value="a">Option text</option></select>'
        '<input type="hidden" name="csrf_token" value="abc"><input placeholder="Type it">'
        "<p>YQ-20260101-ABCDEF123456 https://example.org/x a@b.cn</p></body></html>"
    )
    assert english_in(page) == ["Draft", "Option", "Type", "here", "it", "text"]


PEOPLE = {
    "monitoring staff": "zhou.ting",
    "office": "liu.yang",
    "unit staff": "lin.feng",
    "unit head": "sun.haitao",
    "leader": "wang.jianguo",
    "party office": "zhou.wenbin",
}


@pytest.fixture
async def http(
    client: Client, settings: Settings, roster: Roster, executor: ThreadPoolExecutor
) -> AsyncIterator[httpx.AsyncClient]:
    async with app_over_asgi(client, settings, roster, executor, raise_app_exceptions=False) as c:
        yield c


async def drafted_incident(http: httpx.AsyncClient, client: Client, settings: Settings) -> str:
    """A major incident led by 村镇建设办 with a co-unit, in handling, with a draft to approve."""
    r = await http.post(
        "/api/incidents",
        json=submission(severity="major"),
        headers=token_for(settings, "zhou.ting"),
    )
    assert r.status_code == 201, r.text
    incident_id = str(r.json()["id"])
    await triage(client, incident_id, severity="major", co_units=["pcs"])
    draft = {"text": "已安排抽排积水，今日完成。", "kind": "official"}
    await incidents.act(client, incident_id, "draft-reply", draft, "lin.feng")
    return incident_id


async def approved_incident(http: httpx.AsyncClient, client: Client, settings: Settings) -> str:
    """A major incident whose reply the unit head approved: the leading group's release form
    (R-RELEASE), with its spokesperson list, is on its page."""
    r = await http.post(
        "/api/incidents",
        json=submission(severity="major", url="https://weibo.example/post/2"),
        headers=token_for(settings, "zhou.ting"),
    )
    assert r.status_code == 201, r.text
    incident_id = str(r.json()["id"])
    await triage(client, incident_id, severity="major")
    draft = {"text": "已安排抽排积水，今日完成。", "kind": "official"}
    await incidents.act(client, incident_id, "draft-reply", draft, "lin.feng")
    await incidents.act(client, incident_id, "approve-reply", {}, "sun.haitao")
    return incident_id


def pages_for(incident_id: str, approved: str, untriaged: str) -> list[str]:
    return [
        f"/incidents/{approved}",
        f"/incidents/{untriaged}",
        "/",
        "/report/oral",
        "/login",
        "/incidents",
        f"/incidents/{incident_id}",
        f"/incidents/{incident_id}?done=draft-reply",
        "/my",
        "/inbox",
        "/dashboard",
        "/reports/accountability",
        "/access-log",
        "/no-such-page",
        "/incidents/YQ-20260101-FFFFFFFFFFFF",
    ]


async def test_no_english_on_any_page_as_any_role(
    http: httpx.AsyncClient, client: Client, settings: Settings
) -> None:
    incident_id = await drafted_incident(http, client, settings)
    approved = await approved_incident(http, client, settings)
    r = await http.post(
        "/api/incidents",
        json=submission(url="https://weibo.example/post/3"),
        headers=token_for(settings, "zhou.ting"),
    )
    assert r.status_code == 201, r.text
    untriaged = str(r.json()["id"])  # the office's status line and next step: 研判
    found: dict[str, list[str]] = {}

    async def scan(who: str, url: str, r: httpx.Response) -> None:
        assert r.status_code < 500, (who, url, r.status_code, r.text[:500])
        words = english_in(r.text)
        if words:
            found[f"{who} {url} ({r.status_code})"] = words

    # Signed out: the open pages, the pages that send one to sign in, an anonymous submission
    # (the receipt page), the form refused with errors, and the login refused.
    for url in pages_for(incident_id, approved, untriaged):
        await scan("signed-out", url, await http.get(url, follow_redirects=True))
    login = await http.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', login.text)
    token = csrf.group(1) if csrf else ""
    r = await http.post("/login", data={"csrf_token": token, "token": "wrong", "next": "/"})
    await scan("signed-out", "POST /login", r)
    r = await http.post("/incidents", data={"title": "", "discovered_at": "2999-01-01T00:00"})
    await scan("signed-out", "POST /incidents (errors)", r)
    fields = submission()
    fields["discovered_at"] = "2026-01-01T08:00"
    fields.pop("url")
    r = await http.post("/incidents", data=fields)
    await scan("signed-out", "POST /incidents (submitted)", r)
    # A one-time sign-in link (item 8): its confirm page, the confirm, the link used again, and
    # a link that never was.
    with session_scope(settings.database_url) as s:
        link = credentials.create_link(s, person_id="lin.feng", incident_id=incident_id)
    await scan("signed-out", "/signin/<link>", await http.get(f"/signin/{link}"))
    r = await http.post("/signin", data={"token": link}, follow_redirects=True)
    await scan("signed-out", "POST /signin", r)
    http.cookies.clear()
    await scan("signed-out", "/signin/<used>", await http.get(f"/signin/{link}"))
    r = await http.post("/signin", data={"token": link})
    await scan("signed-out", "POST /signin (used)", r)
    await scan("signed-out", "/signin/<unknown>", await http.get("/signin/yql_nothing"))

    for who, person in PEOPLE.items():
        csrf_token = await sign_in(http, settings, person)
        for url in pages_for(incident_id, approved, untriaged):
            await scan(who, url, await http.get(url, follow_redirects=True))
        # The forms with the most to say are among those scanned.
        if person == "wang.jianguo":
            page = await http.get(f"/incidents/{approved}")
            assert 'id="approve-release-spokesperson"' in page.text
        if person == "sun.haitao":
            page = await http.get(f"/incidents/{incident_id}")
            assert 'id="approve-reply-draft"' in page.text
        # An action refused: the incident page with the error summary.
        r = await http.post(
            f"/incidents/{incident_id}/actions/withdraw", data={"csrf_token": csrf_token}
        )
        await scan(who, "POST withdraw (refused)", r)
        r = await http.post("/incidents", data={"csrf_token": csrf_token, "title": "x"})
        await scan(who, "POST /incidents (errors)", r)
        http.cookies.clear()

    assert not found, "\n".join(f"{k}: {', '.join(v)}" for k, v in found.items())


def test_rule_codes_are_wrapped_and_the_rest_escaped() -> None:
    """Stored plain-text lines (timeline, inbox, escalations) through the `codes` filter: the text
    escaped, each rule code (with its full-width brackets when alone in them) in one span."""
    html = str(with_rule_codes("<b>回复</b>（R-REPLY） R-INQUIRY-OPINION 与 R-ESCALATE"))
    assert html.startswith("&lt;b&gt;回复&lt;/b&gt;")
    assert '<span class="rule-code">（R-REPLY）</span>' in html
    assert '<span class="rule-code">R-INQUIRY-OPINION</span>' in html
    assert english_in(f"<body><p>{html}</p></body>") == []
    assert str(rule_words("R-REPLY")).startswith("预案：按期官方回复 ")
    assert english_in(f"<body>{rule_words('R-ESCALATE')}</body>") == []


def test_the_zone_is_named_as_readers_say_it() -> None:
    """北京时间 for China's zone; any other configured zone keeps working, named as configured."""
    assert zone_words("Asia/Shanghai") == "北京时间"
    assert zone_words("Asia/Tokyo") == "Asia/Tokyo时区"
