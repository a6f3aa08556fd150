"""代理 (issue 20, item 3): declaring and ending absences, and telling the running incidents.

The rules a declaration must meet, the same for the page, the API and the CLI:
- a person declares their own absence; the office (领导小组办公室) may declare anyone's;
- the stand-in is in the roster, is not the absent person, and belongs to the absent person's
  unit or to the leading group (组长、副组长、成员);
- the period ends after it starts and after now, starts no earlier than now (a few minutes'
  clock skew allowed), and lasts at most `MAX_DAYS`;
- it overlaps no other absence of the same person, and the stand-in is not away in it.

An absence is live data (the roster each incident started with stays as it was): after every
change the store's list of absences not yet over goes, with its revision, to every running
incident (`IncidentWorkflow.absences_changed`); a new incident starts with it. Should Temporal
not answer, the change is kept and the answer says how many incidents were not told;
`yuqing absence sync` tells them again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from config.settings import Settings
from plan.messages import local
from plan.models import AbsenceRequest, Absences
from plan.roster import Role, Roster
from starter.errors import FieldError, translate
from starter.incidents import CLOCK_SKEW, CONTROL_CHARS, ServiceError
from store import absences as store
from store import incident_rows
from store.db import session_scope
from store.models import AbsenceRow
from workflows.incident import IncidentWorkflow

MAX_DAYS = 90
LEADING = {Role.leader, Role.deputy, Role.member}
# Running incidents told at once (each a signal to Temporal).
CONCURRENCY = 16
RUNNING = "WorkflowType = 'IncidentWorkflow' AND ExecutionStatus = 'Running'"


@dataclass(frozen=True)
class Told:
    """How many running incidents heard of the change, and how many could not be told."""

    told: int
    failed: int

    def words(self) -> str:
        if self.failed < 0:
            return "暂时无法通知办理中的事件（请稍后运行 yuqing absence sync 重试）"
        if self.failed:
            return (
                f"已通知{self.told}个办理中的事件，{self.failed}个未能通知"
                "（请稍后运行 yuqing absence sync 重试）"
            )
        return f"已通知{self.told}个办理中的事件"


def row_json(row: AbsenceRow, roster: Roster, tz: str, now: datetime) -> dict[str, Any]:
    """An absence as the API answers it and the page shows it."""
    if row.ended_at is not None and row.ends_at <= now:
        state = "已销假"
    elif row.ends_at <= now:
        state = "已结束"
    elif row.starts_at > now:
        state = "未开始"
    else:
        state = "不在岗中"
    return {
        "id": row.id,
        "person": row.person_id,
        "person_name": roster.person_name(row.person_id),
        "stand_in": row.stand_in,
        "stand_in_name": roster.person_name(row.stand_in),
        "starts_at": row.starts_at.isoformat(),
        "ends_at": row.ends_at.isoformat(),
        "period": f"{local(row.starts_at, tz)} 至 {local(row.ends_at, tz)}",
        "reason": row.reason,
        "declared_by": row.declared_by,
        "declared_at": row.declared_at.isoformat(),
        "ended_by": row.ended_by,
        "state": state,
        "in_force": row.starts_at <= now < row.ends_at,
    }


def _may_stand_in(roster: Roster, stand_in: str, unit: str) -> bool:
    """Of the absent person's unit, or of the leading group."""
    return roster.belongs_to(stand_in, unit) or bool(roster.roles_of(stand_in) & LEADING)


def parse(data: dict[str, Any], roster: Roster, actor: str, now: datetime) -> AbsenceRequest:
    """The request checked against its schema and the roster (422 with every field's error,
    403 when the actor may not declare for that person)."""
    try:
        req = AbsenceRequest.model_validate(data)
    except ValidationError as exc:
        raise ServiceError(422, "登记内容有误", translate(exc)) from exc
    person = req.person or actor
    if person != actor and Role.office not in roster.roles_of(actor):
        raise ServiceError(403, "只能登记本人不在岗；为他人登记须由领导小组办公室办理")
    errors: list[FieldError] = []
    absent = roster.person(person)
    if absent is None:
        errors.append(FieldError("person", f"人员：“{person}”不在名册中"))
    stand_in = roster.person(req.stand_in)
    if stand_in is None:
        errors.append(FieldError("stand_in", f"代理人：“{req.stand_in}”不在名册中"))
    elif req.stand_in == person:
        errors.append(FieldError("stand_in", "代理人：不能是不在岗的本人"))
    elif absent is not None and not _may_stand_in(roster, stand_in.id, absent.unit):
        errors.append(
            FieldError("stand_in", f"代理人：须为{roster.unit_name(absent.unit)}人员或领导小组成员")
        )
    starts = req.starts_at or now
    if starts < now - CLOCK_SKEW:
        errors.append(FieldError("starts_at", "开始时间：不能早于当前时间"))
    if req.ends_at <= max(starts, now):
        errors.append(FieldError("ends_at", "结束时间：须晚于开始时间和当前时间"))
    elif req.ends_at - starts > timedelta(days=MAX_DAYS):
        errors.append(FieldError("ends_at", f"结束时间：一次登记不能超过{MAX_DAYS}天"))
    if req.reason and CONTROL_CHARS.search(req.reason):
        errors.append(FieldError("reason", "事由：含有不可见的控制字符"))
    if errors:
        raise ServiceError(422, "登记内容有误", errors)
    return req.model_copy(update={"person": person, "starts_at": max(starts, now)})


def _declare_in_store(
    settings: Settings, roster: Roster, req: AbsenceRequest, actor: str, now: datetime
) -> dict[str, Any]:
    assert req.person is not None and req.starts_at is not None
    person, starts_at = req.person, req.starts_at

    def declared(s: Session) -> dict[str, Any]:
        clash = store.overlapping(s, persons=[person], starts_at=starts_at, ends_at=req.ends_at)
        if clash:
            c = clash[0]
            raise ServiceError(
                409,
                f"{roster.person_name(person)}在"
                f"{local(c.starts_at, settings.timezone)}至"
                f"{local(c.ends_at, settings.timezone)}已登记不在岗，时间不能重叠"
                "（可先销假后重新登记）",
            )
        if store.overlapping(s, persons=[req.stand_in], starts_at=starts_at, ends_at=req.ends_at):
            name = roster.person_name(req.stand_in)
            raise ServiceError(
                422, "登记内容有误", [FieldError("stand_in", f"代理人：{name}在此期间也不在岗")]
            )
        row = store.add(
            s,
            person=person,
            stand_in=req.stand_in,
            starts_at=starts_at,
            ends_at=req.ends_at,
            reason=req.reason or None,
            by=actor,
            now=now,
        )
        return row_json(row, roster, settings.timezone, now)

    return _changed(settings, declared)


def _end_in_store(
    settings: Settings, roster: Roster, absence_id: int, actor: str, now: datetime
) -> dict[str, Any]:
    def ended(s: Session) -> dict[str, Any]:
        row = store.get(s, absence_id=absence_id)
        if row is None:
            raise ServiceError(404, f"不在岗登记“{absence_id}”不存在")
        allowed = {row.person_id, row.declared_by}
        if actor not in allowed and Role.office not in roster.roles_of(actor):
            raise ServiceError(403, "只有本人、登记人或领导小组办公室可以销假")
        if row.ends_at <= now:
            raise ServiceError(409, "该不在岗登记已结束，无需销假")
        store.end(s, row=row, by=actor, now=now)
        return row_json(row, roster, settings.timezone, now)

    return _changed(settings, ended)


def _changed(settings: Settings, change: Callable[[Session], dict[str, Any]]) -> dict[str, Any]:
    """A change in a transaction of its own, tried again when another change took the same
    revision at once (the revision is unique: the loser reads the new one and goes again)."""
    for _attempt in range(5):
        try:
            with session_scope(settings.database_url) as s:
                return change(s)
        except IntegrityError:
            continue
    raise ServiceError(503, "系统繁忙，请稍后重试")


def _current(settings: Settings, now: datetime) -> tuple[Absences, list[str]]:
    """The absences not yet over, and the incidents the store has open."""
    with session_scope(settings.database_url) as s:
        return store.current(s, now=now), incident_rows.open_incident_ids(s)


def listing(settings: Settings, roster: Roster, actor: str, now: datetime) -> list[dict[str, Any]]:
    """The absences not over before a week ago: all of them for the leading group and its
    office; for anyone else, their own unit's and those they stand in for."""
    roles = roster.roles_of(actor)
    persons: list[str] | None = None
    if not roles & (LEADING | {Role.office}):
        me = roster.person(actor)
        persons = roster.members_of(me.unit) if me is not None else [actor]
        persons = [*persons, actor]
    with session_scope(settings.database_url) as s:
        rows = store.listed(s, since=now - timedelta(days=7), persons=persons)
        return [row_json(r, roster, settings.timezone, now) for r in rows]


async def tell_incidents(client: Client, settings: Settings) -> Told:
    """Send the store's current absences to every running incident."""
    absences, open_ids = await asyncio.to_thread(_current, settings, datetime.now(UTC))
    # The store's open incidents, and Temporal's running ones: an incident started a moment ago
    # may not be in the store yet, one in its amendment period is closed there; a server
    # without the list (the time-skipping test server) leaves the store's.
    running: list[str] = []
    with contextlib.suppress(RPCError):
        running = [w.id async for w in client.list_workflows(RUNNING)]
    ids = list(dict.fromkeys([*open_ids, *running]))
    gate = asyncio.Semaphore(CONCURRENCY)

    async def tell(incident_id: str) -> bool:
        async with gate:
            try:
                await client.get_workflow_handle(incident_id).signal(
                    IncidentWorkflow.absences_changed, absences
                )
            except RPCError as exc:
                # An incident that ended since it was listed has nothing to be told.
                return exc.status is RPCStatusCode.NOT_FOUND
            return True

    results = await asyncio.gather(*(tell(i) for i in ids))
    return Told(told=sum(results), failed=len(results) - sum(results))


async def declare(
    client: Client, settings: Settings, roster: Roster, actor: str, data: dict[str, Any]
) -> tuple[dict[str, Any], Told]:
    now = datetime.now(UTC)
    req = parse(data, roster, actor, now)
    row = await asyncio.to_thread(_declare_in_store, settings, roster, req, actor, now)
    return row, await _tell_or_count(client, settings)


async def end(
    client: Client, settings: Settings, roster: Roster, actor: str, absence_id: int
) -> tuple[dict[str, Any], Told]:
    now = datetime.now(UTC)
    row = await asyncio.to_thread(_end_in_store, settings, roster, absence_id, actor, now)
    return row, await _tell_or_count(client, settings)


async def _tell_or_count(client: Client, settings: Settings) -> Told:
    """The change is in the store whatever Temporal says: a failure to list (failed -1) is
    reported, not raised (the declaration stands; `yuqing absence sync` tells the incidents later)."""
    try:
        return await tell_incidents(client, settings)
    except RPCError:
        return Told(told=0, failed=-1)
