"""R-ORG: the town's roster of people, units and the leading group, and who plays which role.

The roster is data (a TOML file) validated on load; a broken roster fails with a message that names
the bad entry. Each incident keeps the snapshot it started with, so its recipients never shift under it.
"""

from __future__ import annotations

import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class RosterError(ValueError):
    """The roster file cannot be used; the message names the bad entry."""


class Role(StrEnum):
    """What a person may do, derived from where the roster places them."""

    leader = "leader"  # 组长
    deputy = "deputy"  # 副组长
    member = "member"  # 领导小组成员
    office = "office"  # 领导小组办公室
    unit_staff = "unit_staff"
    unit_head = "unit_head"
    first_responsible = "first_responsible"  # 第一责任人
    publicity = "publicity"
    discipline = "discipline"  # 执纪执法部门
    supervision = "supervision"  # 监察执法部门
    party_office = "party_office"  # 镇党政办


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InboxChannel(_Strict):
    kind: Literal["inbox"] = "inbox"


class WebhookChannel(_Strict):
    """A generic webhook (Standard Webhooks headers; signed when a secret is given)."""

    kind: Literal["webhook"] = "webhook"
    url: str = Field(pattern=r"^https?://")
    secret: str | None = None


class WeComChannel(_Strict):
    """企业微信群机器人: the robot's webhook URL (…/cgi-bin/webhook/send?key=…)."""

    kind: Literal["wecom"] = "wecom"
    url: str = Field(pattern=r"^https?://")
    mentioned_mobiles: list[str] = Field(default_factory=list)


class DingTalkChannel(_Strict):
    """钉钉自定义机器人: the webhook URL (…/robot/send?access_token=…) and its 加签 secret."""

    kind: Literal["dingtalk"] = "dingtalk"
    url: str = Field(pattern=r"^https?://")
    secret: str | None = None
    at_mobiles: list[str] = Field(default_factory=list)


class FeishuChannel(_Strict):
    """飞书自定义机器人: the webhook URL (…/open-apis/bot/v2/hook/…) and its 签名校验 secret."""

    kind: Literal["feishu"] = "feishu"
    url: str = Field(pattern=r"^https?://")
    secret: str | None = None


class EmailChannel(_Strict):
    kind: Literal["email"] = "email"
    address: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


Channel = Annotated[
    InboxChannel | WebhookChannel | WeComChannel | DingTalkChannel | FeishuChannel | EmailChannel,
    Field(discriminator="kind"),
]


def channel_target(
    channel: InboxChannel
    | WebhookChannel
    | WeComChannel
    | DingTalkChannel
    | FeishuChannel
    | EmailChannel,
) -> str:
    """Where a channel delivers, for the outbox key and messages (never its secret)."""
    if isinstance(channel, EmailChannel):
        return f"email:{channel.address}"
    if isinstance(channel, InboxChannel):
        return "inbox"
    return f"{channel.kind}:{channel.url.split('?')[0]}"


class Person(_Strict):
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    name: str = Field(min_length=1)
    unit: str
    title: str | None = None
    phone: str | None = None
    channels: list[Channel] = Field(default_factory=list)


class Unit(_Strict):
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    name: str = Field(min_length=1)
    head: str
    first_responsible: str
    # Group channels (a unit's WeCom/DingTalk/Feishu group): told whenever the unit is.
    channels: list[Channel] = Field(default_factory=list)


class LeadingGroup(_Strict):
    leader: str
    deputy: str
    members: list[str] = Field(default_factory=list)


class Offices(_Strict):
    """Which units play the plan's standing parts."""

    office: str  # 领导小组办公室
    publicity: str  # 宣传部门
    party_office: str  # 镇党政办
    discipline_contact: str  # person: 执纪执法部门
    supervision_contact: str  # person: 监察执法部门


class Roster(_Strict):
    town: str = Field(min_length=1)
    leading_group: LeadingGroup
    roles: Offices
    units: list[Unit] = Field(min_length=1)
    people: list[Person] = Field(min_length=1)

    @model_validator(mode="after")
    def _references(self) -> Roster:
        people = {}
        for p in self.people:
            if p.id in people:
                raise ValueError(f"people: person id {p.id!r} appears twice")
            people[p.id] = p
        units = {}
        for u in self.units:
            if u.id in units:
                raise ValueError(f"units: unit id {u.id!r} appears twice")
            units[u.id] = u

        def person(ref: str, where: str) -> None:
            if ref not in people:
                raise ValueError(f"{where}: unknown person {ref!r}")

        def unit(ref: str, where: str) -> None:
            if ref not in units:
                raise ValueError(f"{where}: unknown unit {ref!r}")

        for p in self.people:
            unit(p.unit, f"people[{p.id}].unit")
        for u in self.units:
            person(u.head, f"units[{u.id}].head")
            person(u.first_responsible, f"units[{u.id}].first_responsible")
        person(self.leading_group.leader, "leading_group.leader")
        person(self.leading_group.deputy, "leading_group.deputy")
        for m in self.leading_group.members:
            person(m, "leading_group.members")
        unit(self.roles.office, "roles.office")
        unit(self.roles.publicity, "roles.publicity")
        unit(self.roles.party_office, "roles.party_office")
        person(self.roles.discipline_contact, "roles.discipline_contact")
        person(self.roles.supervision_contact, "roles.supervision_contact")
        return self

    # --- look-ups used by the workflow (pure) and the edges ---

    def person(self, person_id: str) -> Person | None:
        return next((p for p in self.people if p.id == person_id), None)

    def unit(self, unit_id: str) -> Unit | None:
        return next((u for u in self.units if u.id == unit_id), None)

    def unit_name(self, unit_id: str | None) -> str:
        u = self.unit(unit_id) if unit_id else None
        return u.name if u else (unit_id or "未指定")

    def person_name(self, person_id: str | None) -> str:
        p = self.person(person_id) if person_id else None
        return p.name if p else (person_id or "")

    def members_of(self, unit_id: str) -> list[str]:
        """Everyone in a unit, with its head and first-responsible person (R-DUTY) first."""
        u = self.unit(unit_id)
        if u is None:
            return []
        ids = [u.head, u.first_responsible] + [p.id for p in self.people if p.unit == unit_id]
        return list(dict.fromkeys(ids))

    def roles_of(self, person_id: str) -> set[Role]:
        p = self.person(person_id)
        if p is None:
            return set()
        roles = {Role.unit_staff}
        for unit in self.units:
            if unit.head == person_id:
                roles.add(Role.unit_head)
            if unit.first_responsible == person_id:
                roles.add(Role.first_responsible)
        lg = self.leading_group
        if person_id == lg.leader:
            roles.add(Role.leader)
        if person_id == lg.deputy:
            roles.add(Role.deputy)
        if person_id in lg.members:
            roles.add(Role.member)
        if p.unit == self.roles.office:
            roles.add(Role.office)
        if p.unit == self.roles.publicity:
            roles.add(Role.publicity)
        if p.unit == self.roles.party_office:
            roles.add(Role.party_office)
        if person_id == self.roles.discipline_contact:
            roles.add(Role.discipline)
        if person_id == self.roles.supervision_contact:
            roles.add(Role.supervision)
        return roles

    def is_head_of(self, person_id: str, unit_id: str | None) -> bool:
        u = self.unit(unit_id) if unit_id else None
        return u is not None and u.head == person_id

    def belongs_to(self, person_id: str, unit_id: str | None) -> bool:
        p = self.person(person_id)
        return p is not None and unit_id is not None and p.unit == unit_id


def parse_roster(text: str, *, source: str = "roster") -> Roster:
    """Parse and validate roster TOML; raise RosterError naming the bad entry."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RosterError(f"{source}: not valid TOML: {exc}") from exc
    try:
        return Roster.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = _describe_location(data, err["loc"])
            msg = str(err["msg"]).removeprefix("Value error, ")
            lines.append(f"{loc}: {msg}" if loc else msg)
        raise RosterError(f"{source}: invalid roster:\n  " + "\n  ".join(lines)) from exc


def load_roster(path: str | Path) -> Roster:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise RosterError(f"{p}: cannot read roster file: {exc.strerror}") from exc
    return parse_roster(text, source=str(p))


def _describe_location(data: object, loc: tuple[int | str, ...]) -> str:
    """Turn ('people', 3, 'unit') into 'people[p-zhang].unit' so the bad entry is named by its id."""
    parts: list[str] = []
    node = data
    for item in loc:
        if isinstance(item, int) and isinstance(node, list):
            entry = node[item] if item < len(node) else None
            ident = entry.get("id") if isinstance(entry, dict) else None
            parts.append(f"[{ident}]" if ident else f"[{item}]")
            node = entry
        else:
            parts.append(f".{item}" if parts else str(item))
            node = node.get(item) if isinstance(node, dict) else None
    return "".join(parts)
