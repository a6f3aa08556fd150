"""代理 (issue 20, item 3): a person (or the office for them) declares an absence with a period
and a stand-in from the same unit or the leading group; during it the stand-in may give the
approvals the absent person would (recorded as 代), and messages and escalations for them go to
the stand-in too. Live data: applied to incidents already running, visible on the incident page.
"The absent head gets no escalation during the absence.\""""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from config.settings import Settings
from plan.actions import place_of, stand_ins
from plan.incident import Incident
from plan.models import Absence, Absences, IncidentInput, Submission
from plan.roster import Roster
from plan.spec import shipped
from starter import incidents, standins
from starter.incidents import ServiceError
from store import notifications
from tests.helpers import eventually, running_worker, stored, submit, triage

HEAD, STAFF = "sun.haitao", "lin.feng"  # 村镇建设办: its head (also first-responsible), staff
DEPUTY, LEADER, OFFICE = "li.xiaomei", "wang.jianguo", "liu.yang"
OTHER = "wu.fang"  # 社会事务办 staff, not in the leading group


def absence(hours: float, **over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "stand_in": DEPUTY,
        "ends_at": (datetime.now(UTC) + timedelta(hours=hours)).isoformat(),
    }
    data.update(over)
    return data


# --- the rules of a declaration (starter/standins.parse), no server ---


def test_a_stand_in_comes_from_the_same_unit_or_the_leading_group(roster: Roster) -> None:
    now = datetime.now(UTC)
    ok = standins.parse(absence(8, stand_in=STAFF), roster, HEAD, now)
    assert ok.person == HEAD and ok.stand_in == STAFF and ok.starts_at == now
    assert standins.parse(absence(8, stand_in=DEPUTY), roster, HEAD, now).stand_in == DEPUTY
    with pytest.raises(ServiceError) as other_unit:
        standins.parse(absence(8, stand_in=OTHER), roster, HEAD, now)
    assert other_unit.value.status == 422
    assert "村镇建设办人员或领导小组成员" in other_unit.value.fields[0].message
    with pytest.raises(ServiceError) as self_:
        standins.parse(absence(8, stand_in=HEAD), roster, HEAD, now)
    assert "不能是不在岗的本人" in self_.value.fields[0].message
    with pytest.raises(ServiceError) as unknown:
        standins.parse(absence(8, stand_in="nobody"), roster, HEAD, now)
    assert "不在名册中" in unknown.value.fields[0].message


def test_only_the_person_or_the_office_declares_an_absence(roster: Roster) -> None:
    now = datetime.now(UTC)
    for_head = absence(8, person=HEAD, stand_in=STAFF)
    assert standins.parse(for_head, roster, OFFICE, now).person == HEAD
    with pytest.raises(ServiceError) as refused:
        standins.parse(for_head, roster, STAFF, now)
    assert refused.value.status == 403 and "领导小组办公室" in refused.value.message


def test_the_period_must_make_sense(roster: Roster) -> None:
    now = datetime.now(UTC)
    cases = {
        "ends_at": [absence(-1), absence(24 * 91)],
        "starts_at": [absence(8, starts_at=(now - timedelta(hours=1)).isoformat())],
    }
    for field, bodies in cases.items():
        for body in bodies:
            with pytest.raises(ServiceError) as bad:
                standins.parse(body, roster, HEAD, now)
            assert bad.value.status == 422 and bad.value.fields[0].field == field
    with pytest.raises(ServiceError) as naive:
        standins.parse(absence(8, ends_at="2026-12-01T10:00:00"), roster, HEAD, now)
    assert naive.value.fields[0].field == "ends_at" and "结束时间" in naive.value.fields[0].message


# --- the core: who acts for whom, and the lists told late ---


def core(roster: Roster, now: datetime) -> Incident:
    sub = Submission.model_validate(
        {
            "title": "t",
            "content": "c",
            "source": "微博",
            "discovered_at": now.isoformat(),
            "reporter_unit": "yqb",
            "responsible_unit": "cjb",
            "severity": "urgent",
            "category": "hype",
        }
    )
    inp = IncidentInput(
        incident_id="YQ-T", submission=sub, received_at=now, roster=roster, plan=shipped()
    )
    c = Incident(inp, now=now)
    c.open_incident()
    c.started = True
    return c


def away(i: int, person: str, stand_in: str, start: datetime, hours: float) -> Absence:
    return Absence(
        id=i,
        person=person,
        stand_in=stand_in,
        starts_at=start,
        ends_at=start + timedelta(hours=hours),
    )


def test_an_older_list_arriving_late_changes_nothing(roster: Roster) -> None:
    now = datetime(2026, 12, 1, 2, tzinfo=UTC)
    c = core(roster, now)
    c.absences_changed(Absences(revision=2, items=[away(1, HEAD, STAFF, now, 4)]))
    c.absences_changed(Absences(revision=1, items=[]))  # the list before, told late
    assert c.stand_ins() == ((HEAD, STAFF),)
    assert any("由林峰代理" in e.summary for e in c.s.timeline)


def test_a_stand_in_away_too_passes_it_on(roster: Roster) -> None:
    now = datetime(2026, 12, 1, 2, tzinfo=UTC)
    c = core(roster, now)
    items = [away(1, HEAD, STAFF, now, 4), away(2, STAFF, DEPUTY, now, 2)]
    c.absences_changed(Absences(revision=2, items=items))
    assert dict(c.stand_ins())[HEAD] == DEPUTY
    # and a loop of two away for each other still names someone, never spins
    loop = [away(1, HEAD, STAFF, now, 4), away(2, STAFF, HEAD, now, 4)]
    c.absences_changed(Absences(revision=3, items=loop))
    assert dict(c.stand_ins()) == {HEAD: STAFF, STAFF: HEAD}
    # once over, nobody stands in
    assert stand_ins(c.s, now + timedelta(hours=5)) == ()
    assert place_of(c.s, "yqb", now + timedelta(hours=5)).stand_ins == ()


# --- on the time-skipping server: running incidents told, approvals and escalations ---


async def declare(client: Client, settings: Settings, roster: Roster, actor: str, **kw: Any):  # type: ignore[no-untyped-def]
    row, told = await standins.declare(client, settings, roster, actor, absence(**kw))
    return row, told


async def test_a_stand_in_approves_during_an_absence_and_not_after_it(
    time_env: WorkflowEnvironment,
    client: Client,
    settings: Settings,
    roster: Roster,
    executor: ThreadPoolExecutor,
) -> None:
    """R-REVIEW by the unit head: the head is away for 2 hours with the deputy (leading group)
    standing in. A draft of an incident already running is approved by the deputy, recorded as
    代孙海涛; after the absence the deputy is refused (403) and the head approves again."""
    async with running_worker(client, settings, executor):
        first = await submit(client, settings, roster, url="https://weibo.example/a")
        second = await submit(client, settings, roster, url="https://weibo.example/b")
        for view in (first, second):
            await triage(client, view.id, unit="cjb")
        row, told = await declare(client, settings, roster, HEAD, hours=2, stand_in=DEPUTY)
        assert told.told >= 2 and told.failed == 0 and row["state"] == "不在岗中"

        await incidents.act(client, first.id, "draft-reply", {"text": "已安排抽排积水。"}, STAFF)
        view = await incidents.act(client, first.id, "approve-reply", {}, DEPUTY)
        assert view.replies[-1].approved_by == DEPUTY
        entry = next(e for e in view.timeline if e.kind == "reply_approved")
        assert entry.actor == DEPUTY and entry.for_person == HEAD
        assert entry.summary.startswith("（代孙海涛）")
        assert any(e.kind == "absence" and "由李晓梅代理" in e.summary for e in view.timeline)

        await incidents.act(client, second.id, "draft-reply", {"text": "已安排抽排。"}, STAFF)
        await time_env.sleep(timedelta(hours=2, minutes=1))
        with pytest.raises(ServiceError) as refused:
            await incidents.act(client, second.id, "approve-reply", {}, DEPUTY)
        assert refused.value.status == 403 and "负责人" in refused.value.message
        view = await incidents.act(client, second.id, "approve-reply", {}, HEAD)
        assert view.replies[-1].approved_by == HEAD


async def test_the_absent_head_gets_no_escalation_during_the_absence(
    time_env: WorkflowEnvironment,
    client: Client,
    settings: Settings,
    roster: Roster,
    executor: ThreadPoolExecutor,
) -> None:
    """R-ESCALATE: an urgent reply missed (3 h); step 1 (the unit's head and the office) reaches
    the stand-in, not the absent head, whose inbox holds no 督办; the stand-in signs for it as 代.
    A new incident started during the absence knows of it from its start."""
    async with running_worker(client, settings, executor):
        await declare(client, settings, roster, OFFICE, hours=30, person=HEAD, stand_in=STAFF)
        view = await submit(
            client, settings, roster, severity="urgent", responsible_unit="cjb", category="hype"
        )
        assert [a.person for a in view.absences.items] == [HEAD]
        await time_env.sleep(timedelta(hours=3, minutes=1))
        view = await incidents.get(client, view.id)
        step1 = next(r for r in view.receipts if r.key == "R-REPLY#1/1")
        assert HEAD not in step1.persons and STAFF in step1.persons
        esc = next(e for e in view.escalations if e.step == 1)
        assert HEAD not in esc.targets and STAFF in esc.targets
        assert any("林峰（代孙海涛）" in e.summary for e in view.timeline if e.kind == "escalated")

        def escalations_for(person: str) -> list[Any]:
            got = stored(settings.database_url, notifications.inbox, recipient=person)
            return [m for m in got if m.incident_id == view.id and m.rule == "R-ESCALATE"]

        await eventually(lambda: escalations_for(STAFF))
        assert escalations_for(HEAD) == []
        # The 交办 went to both: the head keeps being told what the unit is given.
        view = await incidents.act(client, view.id, "sign-for", {"key": "R-REPLY#1/1"}, STAFF)
        assert STAFF in next(r for r in view.receipts if r.key == "R-REPLY#1/1").signed


async def test_an_absence_ended_early_stops_the_stand_in(
    time_env: WorkflowEnvironment,
    client: Client,
    settings: Settings,
    roster: Roster,
    executor: ThreadPoolExecutor,
) -> None:
    """销假: the head is back early; the deputy may no longer approve for them; a second
    absence overlapping the first is refused until it is ended."""
    async with running_worker(client, settings, executor):
        view = await submit(client, settings, roster)
        await triage(client, view.id, unit="cjb")
        row, _ = await declare(client, settings, roster, HEAD, hours=8, stand_in=DEPUTY)
        with pytest.raises(ServiceError) as clash:
            await declare(client, settings, roster, HEAD, hours=4, stand_in=STAFF)
        assert clash.value.status == 409 and "不能重叠" in clash.value.message
        # No loop of people away for each other: the head is away, so he cannot stand in.
        with pytest.raises(ServiceError) as loop:
            await declare(client, settings, roster, DEPUTY, hours=2, stand_in=HEAD)
        assert loop.value.status == 422 and "也不在岗" in loop.value.fields[0].message
        with pytest.raises(ServiceError) as other:
            await standins.end(client, settings, roster, STAFF, row["id"])
        assert other.value.status == 403
        ended, told = await standins.end(client, settings, roster, HEAD, row["id"])
        assert ended["state"] == "已销假" and told.failed == 0
        await incidents.act(client, view.id, "draft-reply", {"text": "已安排抽排积水。"}, STAFF)
        with pytest.raises(ServiceError) as refused:
            await incidents.act(client, view.id, "approve-reply", {}, DEPUTY)
        assert refused.value.status == 403
        listed = standins.listing(settings, roster, STAFF, datetime.now(UTC))
        assert [a["id"] for a in listed] == [row["id"]]  # the unit's own, for its staff
        assert standins.listing(settings, roster, OTHER, datetime.now(UTC)) == []


# --- the page, the API and the incident page ---


async def test_the_page_declares_and_ends_an_absence_and_the_incident_shows_it(
    client: Client,
    settings: Settings,
    roster: Roster,
    executor: ThreadPoolExecutor,
) -> None:
    """The head declares from /absences (the town's wall time in the form); the incident page
    shows who is away and who stands in; the page offers the deputy the head's approval; a
    wrong stand-in is refused in Chinese and nothing is stored; 销假 from the page."""
    from tests.helpers import app_over_asgi
    from tests.test_api import sign_in

    async with app_over_asgi(client, settings, roster, executor) as http:
        view = await submit(client, settings, roster)
        await triage(client, view.id, unit="cjb")
        await incidents.act(client, view.id, "draft-reply", {"text": "已安排抽排积水。"}, STAFF)
        csrf = await sign_in(http, settings, HEAD)
        page = await http.get("/absences")
        assert page.status_code == 200 and 'id="absence-form"' in page.text
        until = (datetime.now(UTC) + timedelta(hours=5)).astimezone(ZoneInfo(settings.timezone))
        wrong = await http.post(
            "/absences",
            data={"csrf_token": csrf, "stand_in": OTHER, "ends_at": f"{until:%Y-%m-%dT%H:%M}"},
        )
        assert wrong.status_code == 422 and "须为村镇建设办人员或领导小组成员" in wrong.text
        assert standins.listing(settings, roster, HEAD, datetime.now(UTC)) == []
        posted = await http.post(
            "/absences",
            data={"csrf_token": csrf, "stand_in": DEPUTY, "ends_at": f"{until:%Y-%m-%dT%H:%M}"},
        )
        assert posted.status_code == 303, posted.text
        done = await http.get(posted.headers["location"])
        assert "已登记：孙海涛" in done.text and "由李晓梅代理" in done.text
        row = standins.listing(settings, roster, HEAD, datetime.now(UTC))[0]
        assert row["ends_at"].startswith(f"{until.astimezone(UTC):%Y-%m-%dT%H:%M}")

        incident = await http.get(f"/incidents/{view.id}")
        assert 'id="absences"' in incident.text
        assert f'data-absent="{HEAD}" data-stand-in="{DEPUTY}"' in incident.text
        # the page offers the deputy the head's approval (what the incident would accept)
        from starter.web.staff import plausible_actions

        current = await incidents.get(client, view.id)
        assert "approve-reply" in plausible_actions(roster, DEPUTY, current)
        assert "approve-reply" not in plausible_actions(roster, OTHER, current)
        ended = await http.post(f"/absences/{row['id']}/end", data={"csrf_token": csrf})
        assert ended.status_code == 303
        assert "已销假：孙海涛" in (await http.get(ended.headers["location"])).text


async def test_the_api_declares_lists_and_ends(
    client: Client,
    settings: Settings,
    roster: Roster,
    executor: ThreadPoolExecutor,
) -> None:
    """POST /api/absences by the office for the head (201, the incidents told), the list for
    the unit's staff and not for another unit's, 销假 by someone else refused (403)."""
    from tests.helpers import app_over_asgi
    from tests.test_api import token_for

    async with app_over_asgi(client, settings, roster, executor) as http:
        view = await submit(client, settings, roster)
        await triage(client, view.id, unit="cjb")
        office = token_for(settings, OFFICE)
        body = absence(6, person=HEAD, stand_in=STAFF, reason="出差")
        made = await http.post("/api/absences", json=body, headers=office)
        assert made.status_code == 201, made.text
        answer = made.json()
        assert answer["absence"]["state"] == "不在岗中" and answer["told"]["incidents"] >= 1
        anonymous = await http.post("/api/absences", json=body)
        assert anonymous.status_code == 401
        staff = (await http.get("/api/absences", headers=token_for(settings, STAFF))).json()
        assert [a["person"] for a in staff["absences"]] == [HEAD]
        assert staff["absences"][0]["reason"] == "出差"
        other = (await http.get("/api/absences", headers=token_for(settings, OTHER))).json()
        assert other["absences"] == []
        absence_id = answer["absence"]["id"]
        refused = await http.post(
            f"/api/absences/{absence_id}/end", headers=token_for(settings, OTHER)
        )
        assert refused.status_code == 403 and "销假" in refused.json()["detail"]
        view = await incidents.get(client, view.id)
        assert [a.stand_in for a in view.absences.items] == [STAFF]
        # the reason stays in the store: the workflow holds references and times only
        assert "出差" not in view.model_dump_json()
        ended = await http.post(f"/api/absences/{absence_id}/end", headers=office)
        assert ended.status_code == 200 and ended.json()["absence"]["state"] == "已销假"


async def test_the_stand_ins_todo_follows_the_absence_as_it_begins_and_ends(
    time_env: WorkflowEnvironment,
    client: Client,
    settings: Settings,
    roster: Roster,
    executor: ThreadPoolExecutor,
) -> None:
    """待办: an absence declared ahead (from in 1 hour, for 2 hours): the deputy's 待办 lists the
    head's approval only while it lasts, with nothing else happening to the incident (a timer
    at each end writes the incident's 待办 again)."""
    from store import incident_rows

    def deputy_approves() -> bool:
        rows = stored(
            settings.database_url,
            incident_rows.waits_for,
            whose=incident_rows.whose(roster, DEPUTY),
            involving=None,
        )
        return any(w.action == "approve-reply" and i.id == view.id for w, i in rows)

    async with running_worker(client, settings, executor):
        view = await submit(client, settings, roster)
        await triage(client, view.id, unit="cjb")
        await incidents.act(client, view.id, "draft-reply", {"text": "已安排抽排积水。"}, STAFF)
        start = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        await declare(client, settings, roster, HEAD, hours=3, stand_in=DEPUTY, starts_at=start)
        await incidents.get(client, view.id)  # the signal handled
        assert not deputy_approves()
        await time_env.sleep(timedelta(hours=1, minutes=5))
        await eventually(deputy_approves)
        await time_env.sleep(timedelta(hours=2))
        await eventually(lambda: not deputy_approves())
