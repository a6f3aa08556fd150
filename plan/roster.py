"""R-ORG: the town's roster of people, units and the leading group, and who plays which role.

The roster is data (a TOML file) validated on load; a broken roster fails with a message that names
the bad entry. Each incident keeps the snapshot it started with, so its recipients never shift under it.

That snapshot is the roster's public part (`Roster.public()`): ids, names, units, roles and
each channel as a reference (its kind and the id the roster declares for it), never a URL, a key, a
signing secret, an e-mail address, a phone or a mobile number, so none of them reaches a Temporal
history.
The `deliver` activity resolves a reference in the worker's own roster file when it sends
(`Roster.resolve`): a rotated secret takes effect at once, and a channel removed since is refused.
"""

from __future__ import annotations

import base64
import re
import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SerializerFunctionWrapHandler,
    Tag,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)


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


class _Tagged(_Strict):
    """A member of a tagged union (a channel, a channel reference): its tag fields are written
    even where they hold their default, so a compact payload (runtime/payloads.py, which leaves
    defaults out) still says which member it is."""

    @model_serializer(mode="wrap")
    def _with_tags(self, handler: SerializerFunctionWrapHandler):  # type: ignore[no-untyped-def]
        data = handler(self)
        if isinstance(data, dict):
            for tag in ("ref", "kind"):
                if tag in type(self).model_fields and tag not in data:
                    data[tag] = getattr(self, tag)
        return data


# A channel's id: declared in the roster, unique among the channels of its person or unit. It is
# what an incident's history names a channel by (with the person or unit id), never its position.
ChannelId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]

ChannelKind = Literal["inbox", "webhook", "wecom", "dingtalk", "feishu", "email", "sms"]

# The kinds of channel that reach one person alone, when they are a person's (not a unit's):
# e-mail, and the town's own webhook (its gateway to SMS or personal messages). Only these carry
# a one-time sign-in link (activities/notify.py). Never the chat robots: a WeCom, DingTalk or
# Feishu robot posts to a group, which everyone in it reads, even when a person lists it. Nor SMS:
# it reaches one person, but its text is the provider's approved template, which has no room for
# a link (activities/channels.py, SmsSender), so a link minted for it would never be read.
PERSONAL_KINDS = frozenset({"email", "webhook"})


def personal_channel(recipient_id: str, kind: str) -> bool:
    """Whether a delivery to `recipient_id` through a channel of `kind` reaches that person
    alone (a unit's channels, "unit:" + its id, never do)."""
    return not recipient_id.startswith("unit:") and kind in PERSONAL_KINDS


# What a channel kind is called on pages and in documents.
CHANNEL_KINDS = {
    "inbox": "站内消息",
    "webhook": "推送接口",
    "wecom": "企业微信",
    "dingtalk": "钉钉",
    "feishu": "飞书",
    "email": "电子邮件",
    "sms": "短信",
}


class InboxChannel(_Tagged):
    kind: Literal["inbox"] = "inbox"
    id: ChannelId | None = None


class WebhookChannel(_Tagged):
    """A generic webhook (Standard Webhooks headers; signed when a secret is given)."""

    kind: Literal["webhook"] = "webhook"
    id: ChannelId | None = None
    url: str = Field(pattern=r"^https?://")
    secret: str | None = None


# Standard Webhooks signing secrets (spec/standard-webhooks.md, "Signing secret" and "Secret
# serialization": random, at least 24 bytes and at most 512 bits, base64 with the prefix whsec_).
# The reference library (standardwebhooks, libraries/python) strips the prefix when present and pads
# what is left, so unpadded base64 is as good as padded; but it decodes leniently, dropping any
# character outside the alphabet, so a password, URL-safe base64 or a hex string with a stray
# character would become a key no one meant. Those are refused here: the standard alphabet only.
WHSEC_PREFIX = "whsec_"
STANDARD_WEBHOOK_KEY_BYTES = (24, 64)
_BASE64_DATA = re.compile(r"[A-Za-z0-9+/]*")


def standard_webhook_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret; ValueError (in Chinese, without the secret)
    for one the spec and the reference library do not both take as meant."""
    body = secret.removeprefix(WHSEC_PREFIX)
    if not body:
        raise ValueError("Standard Webhooks 密钥为空（不签名请删去 secret）")
    data = body.rstrip("=")
    if len(body) - len(data) > 2 or not _BASE64_DATA.fullmatch(data) or len(data) % 4 == 1:
        raise ValueError(
            "Standard Webhooks 密钥不是 base64 编码：须为 whsec_ 加标准 base64"
            "（A–Z、a–z、0–9、+、/，末尾的 = 可省略）"
        )
    key = base64.b64decode(data + "=" * (-len(data) % 4), validate=True)
    low, high = STANDARD_WEBHOOK_KEY_BYTES
    if not low <= len(key) <= high:
        raise ValueError(
            f"Standard Webhooks 密钥解码后为 {len(key)} 字节，须为 {low} 至 {high} 字节"
            "（规范要求至少 192 位、至多 512 位）"
        )
    return key


class WeComChannel(_Tagged):
    """企业微信群机器人: the robot's webhook URL (…/cgi-bin/webhook/send?key=…)."""

    kind: Literal["wecom"] = "wecom"
    id: ChannelId | None = None
    url: str = Field(pattern=r"^https?://")
    mentioned_mobiles: list[str] = Field(default_factory=list)


class DingTalkChannel(_Tagged):
    """钉钉自定义机器人: the webhook URL (…/robot/send?access_token=…) and its 加签 secret."""

    kind: Literal["dingtalk"] = "dingtalk"
    id: ChannelId | None = None
    url: str = Field(pattern=r"^https?://")
    secret: str | None = None
    at_mobiles: list[str] = Field(default_factory=list)


class FeishuChannel(_Tagged):
    """飞书自定义机器人: the webhook URL (…/open-apis/bot/v2/hook/…) and its 签名校验 secret."""

    kind: Literal["feishu"] = "feishu"
    id: ChannelId | None = None
    url: str = Field(pattern=r"^https?://")
    secret: str | None = None


class EmailChannel(_Tagged):
    kind: Literal["email"] = "email"
    id: ChannelId | None = None
    address: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


# A Chinese mainland mobile number (工信部 number plan: 11 digits, 1 then 3–9), with or without
# the country code; spaces and hyphens between the digits are ignored.
_MOBILE = re.compile(r"(?:\+?86)?(1[3-9][0-9]{9})")


def e164_mobile(value: str) -> str:
    """The mobile number in E.164 (+86 and 11 digits), as the SMS provider takes it; ValueError
    (in Chinese, naming no number) for anything else."""
    digits = re.sub(r"[\s-]", "", value)
    match = _MOBILE.fullmatch(digits)
    if match is None:
        raise ValueError(
            "手机号须为中国大陆手机号：11位数字、以13–19开头，可带 +86（如 +8613800138000）"
        )
    return "+86" + match.group(1)


class SmsChannel(_Tagged):
    """短信 (Tencent Cloud SMS, activities/channels.py): to the person's own `mobile`, which the
    roster file gives on the person, not on the channel. `Roster.resolve` fills `mobile` in when
    the worker sends; it is never in a reference, so never in a history."""

    kind: Literal["sms"] = "sms"
    id: ChannelId | None = None
    mobile: str | None = None

    @field_validator("mobile")
    @classmethod
    def _e164(cls, value: str | None) -> str | None:
        return None if value is None else e164_mobile(value)


FullChannel = (
    InboxChannel
    | WebhookChannel
    | WeComChannel
    | DingTalkChannel
    | FeishuChannel
    | EmailChannel
    | SmsChannel
)

# A channel with everything needed to send through it (what the roster file holds).
Channel = Annotated[FullChannel, Field(discriminator="kind")]


class ChannelRef(_Tagged):
    """A channel by reference, as workflow data carries it: its kind and the id the roster
    declares for it. Where and how it sends (URL, key, secret, address, mobiles) stays in the
    worker's roster, looked up by `Roster.resolve` at delivery time."""

    ref: Literal[True] = True
    kind: ChannelKind
    id: ChannelId


def _channel_tag(value: Any) -> str | None:
    if isinstance(value, dict):
        return "ref" if value.get("ref") else value.get("kind")
    if isinstance(value, ChannelRef):
        return "ref"
    return getattr(value, "kind", None)


# A channel in full (a roster file, an incident started before channel references) or by reference
# (an incident's public roster snapshot, a notification, a delivery).
AnyChannel = Annotated[
    Annotated[InboxChannel, Tag("inbox")]
    | Annotated[WebhookChannel, Tag("webhook")]
    | Annotated[WeComChannel, Tag("wecom")]
    | Annotated[DingTalkChannel, Tag("dingtalk")]
    | Annotated[FeishuChannel, Tag("feishu")]
    | Annotated[EmailChannel, Tag("email")]
    | Annotated[SmsChannel, Tag("sms")]
    | Annotated[ChannelRef, Tag("ref")],
    Discriminator(_channel_tag),
]


def channel_target(channel: FullChannel | ChannelRef) -> str:
    """Where a channel delivers, for the outbox key and messages (never its secret). A reference
    is named by its kind and declared id; a channel in full (deliveries of incidents started
    before references) as it always was, so their outbox keys stay the same."""
    if isinstance(channel, ChannelRef):
        return f"{channel.kind}:{channel.id}"
    if isinstance(channel, EmailChannel):
        return f"email:{channel.address}"
    if isinstance(channel, InboxChannel):
        return "inbox"
    if isinstance(channel, SmsChannel):
        return f"sms:{channel.id or 'sms'}"  # never the number
    return f"{channel.kind}:{channel.url.split('?')[0]}"


def channel_ref(channel: FullChannel | ChannelRef) -> ChannelRef:
    """The reference to a channel of a loaded roster (whose channels all have ids)."""
    if isinstance(channel, ChannelRef):
        return channel
    if channel.id is None:
        raise RosterError(f"“{channel.kind}”渠道没有 id，无法引用")
    return ChannelRef(kind=channel.kind, id=channel.id)


def _default_channel_ids(value: Any) -> Any:
    """A channel without an id is given its kind as id when it is the only channel of that kind
    of its person or unit (and no other channel declares that id); otherwise it is left without
    one, and `parse_roster` refuses the file."""
    if not isinstance(value, list):
        return value
    kinds = [c.get("kind") for c in value if isinstance(c, dict)]
    declared = {c.get("id") for c in value if isinstance(c, dict) and c.get("id")}
    out = []
    for c in value:
        if isinstance(c, dict) and not c.get("id") and not c.get("ref"):
            kind = c.get("kind")
            if isinstance(kind, str) and kinds.count(kind) == 1 and kind not in declared:
                c = {**c, "id": kind}
        out.append(c)
    return out


def _unique_channel_ids(channels: list[FullChannel | ChannelRef]) -> None:
    ids = [c.id for c in channels if c.id is not None]
    for ident in ids:
        if ids.count(ident) > 1:
            raise ValueError(f"渠道 id “{ident}”重复：同一人员或单位的每个渠道须有不同的 id")


class Person(_Strict):
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    name: str = Field(min_length=1)
    unit: str
    title: str | None = None
    # The landline or office number, shown on the pages for one-tap calling.
    phone: str | None = None
    # The mobile number SMS goes to (an "sms" channel), E.164 (+86…) once loaded.
    mobile: str | None = None
    channels: list[AnyChannel] = Field(default_factory=list)

    _default_ids = field_validator("channels", mode="before")(_default_channel_ids)

    @field_validator("mobile")
    @classmethod
    def _e164(cls, value: str | None) -> str | None:
        return None if value is None else e164_mobile(value)

    @model_validator(mode="after")
    def _channel_ids(self) -> Person:
        _unique_channel_ids(self.channels)
        return self


class Unit(_Strict):
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    name: str = Field(min_length=1)
    head: str
    first_responsible: str
    # Group channels (a unit's WeCom/DingTalk/Feishu group): told whenever the unit is.
    channels: list[AnyChannel] = Field(default_factory=list)

    _default_ids = field_validator("channels", mode="before")(_default_channel_ids)

    @model_validator(mode="after")
    def _channel_ids(self) -> Unit:
        _unique_channel_ids(self.channels)
        return self


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

    # --- the public part, and resolving references (the worker's roster) ---

    def public(self) -> Roster:
        """The roster without what must never reach a workflow history: each channel becomes a
        reference (kind and id), and phone and mobile numbers are left out. Raises RosterError
        for a channel without an id (a roster `parse_roster` would have refused)."""
        return self.model_copy(
            update={
                "people": [
                    p.model_copy(
                        update={
                            "phone": None,
                            "mobile": None,
                            # Nothing in an incident reads a title (issue 21: payload bytes).
                            "title": None,
                            "channels": [channel_ref(c) for c in p.channels],
                        }
                    )
                    for p in self.people
                ],
                "units": [
                    u.model_copy(update={"channels": [channel_ref(c) for c in u.channels]})
                    for u in self.units
                ],
            }
        )

    def resolve(self, recipient_id: str, ref: ChannelRef) -> FullChannel | str:
        """The channel a reference names, for a recipient (a person id, or "unit:" + a unit id
        for a unit's group channels); or, when this roster no longer has it, why (in Chinese)."""
        target: Person | Unit | None
        if recipient_id.startswith("unit:"):
            unit_id = recipient_id.removeprefix("unit:")
            target = self.unit(unit_id)
            if target is None:
                return f"名册中已没有单位“{unit_id}”"
        else:
            target = self.person(recipient_id)
            if target is None:
                return f"名册中已没有人员“{recipient_id}”"
        found = next((c for c in target.channels if c.id == ref.id), None)
        if found is None or isinstance(found, ChannelRef):
            return f"名册中{target.name}已没有 id 为“{ref.id}”的通知渠道"
        if found.kind != ref.kind:
            return f"名册中{target.name}的渠道“{ref.id}”已改为{found.kind}（原为{ref.kind}）"
        if isinstance(found, SmsChannel):
            mobile = target.mobile if isinstance(target, Person) else None
            if mobile is None:
                return f"名册中{target.name}未登记手机号（mobile），无法发送短信"
            return found.model_copy(update={"mobile": mobile})
        return found

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
        roster = Roster.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = _describe_location(data, err["loc"])
            msg = str(err["msg"]).removeprefix("Value error, ")
            lines.append(f"{loc}: {msg}" if loc else msg)
        raise RosterError(f"{source}: invalid roster:\n  " + "\n  ".join(lines)) from exc
    problems = _channel_problems(roster)
    if problems:
        raise RosterError(f"{source}: invalid roster:\n  " + "\n  ".join(problems))
    return roster


def _channel_problems(roster: Roster) -> list[str]:
    """A roster file declares every channel in full, each with an id (which a channel may leave
    out only when it is its person's or unit's one channel of its kind: its id is then the kind),
    and a webhook's secret is one Standard Webhooks consumers can verify (standard_webhook_key).
    Checked here, at load, not on the model: incidents started before channel references carry
    channels in full in their histories, and must still read (the sender refuses a bad one)."""
    problems = []
    targets: list[tuple[str, Person | Unit]] = [(f"people[{p.id}]", p) for p in roster.people]
    targets += [(f"units[{u.id}]", u) for u in roster.units]
    for where, target in targets:
        for channel in target.channels:
            if isinstance(channel, ChannelRef):
                problems.append(
                    f"{where}.channels[{channel.id}]: 名册文件中的渠道须写明地址，不能只写引用"
                )
            elif channel.id is None:
                problems.append(
                    f"{where}.channels: 有多个“{channel.kind}”渠道，须为每个渠道写明不同的 id"
                    f'（如 id = "{channel.kind}-1"）'
                )
            if isinstance(channel, SmsChannel):
                if isinstance(target, Unit):
                    problems.append(
                        f"{where}.channels[{channel.id or channel.kind}]: 短信渠道只能登记在人员下"
                        "（发往本人的手机号），单位请用群机器人"
                    )
                elif channel.mobile is not None:
                    problems.append(
                        f"{where}.channels[{channel.id or channel.kind}]: 手机号请写在人员的 mobile"
                        "字段，短信渠道中不写号码"
                    )
                elif target.mobile is None:
                    problems.append(
                        f"{where}.channels[{channel.id or channel.kind}]: 有短信渠道，但未登记手机号"
                        '（mobile = "+86…"）'
                    )
            if isinstance(channel, WebhookChannel) and channel.secret is not None:
                try:
                    standard_webhook_key(channel.secret)
                except ValueError as exc:
                    problems.append(f"{where}.channels[{channel.id or channel.kind}].secret: {exc}")
    return list(dict.fromkeys(problems))


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
