"""R-ORG: the roster loads, plays every role, and a broken roster is refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from plan.roster import (
    ChannelRef,
    DingTalkChannel,
    InboxChannel,
    Role,
    Roster,
    RosterError,
    WebhookChannel,
    load_roster,
    parse_roster,
)
from tests.conftest import EXAMPLE_ROSTER

# A small valid roster; the broken variants below each change one thing in it.
MINIMAL = """
town = "测试镇"

[leading_group]
leader = "boss"
deputy = "vice"
members = ["member1"]

[roles]
office = "office"
publicity = "pub"
party_office = "party"
discipline_contact = "disc"
supervision_contact = "sup"

[[units]]
id = "office"
name = "办公室"
head = "ohead"
first_responsible = "ohead"

[[units]]
id = "pub"
name = "宣传办"
head = "vice"
first_responsible = "vice"

[[units]]
id = "party"
name = "党政办"
head = "member1"
first_responsible = "member1"

[[units]]
id = "works"
name = "建设办"
head = "whead"
first_responsible = "wfirst"

[[people]]
id = "boss"
name = "组长"
unit = "party"

[[people]]
id = "vice"
name = "副组长"
unit = "pub"

[[people]]
id = "member1"
name = "成员"
unit = "party"

[[people]]
id = "disc"
name = "纪委"
unit = "party"

[[people]]
id = "sup"
name = "监察"
unit = "party"

[[people]]
id = "ohead"
name = "办公室主任"
unit = "office"

[[people]]
id = "wstaff"
name = "建设办员工"
unit = "works"

[[people]]
id = "wfirst"
name = "建设办第一责任人"
unit = "works"
channels = [{ kind = "inbox" }, { kind = "webhook", url = "https://hooks.example/wfirst" }]

[[people]]
id = "whead"
name = "建设办主任"
unit = "works"
"""


def broken(old: str, new: str) -> str:
    """MINIMAL with exactly one occurrence of `old` replaced (so a typo here cannot pass)."""
    assert MINIMAL.count(old) == 1, old
    return MINIMAL.replace(old, new)


def refused(text: str) -> str:
    with pytest.raises(RosterError) as info:
        parse_roster(text, source="test-roster")
    message = str(info.value)
    assert message.startswith("test-roster: ")
    return message


# --- the shipped example ---


def test_example_roster_loads_with_every_role(roster: Roster) -> None:
    """R-ORG: the example roster is valid and someone plays each role."""
    assert roster.town == "清溪镇"
    played = set().union(*(roster.roles_of(p.id) for p in roster.people))
    assert played == set(Role)
    for role in (
        Role.leader,
        Role.deputy,
        Role.office,
        Role.publicity,
        Role.party_office,
        Role.discipline,
        Role.supervision,
        Role.unit_head,
        Role.first_responsible,
    ):
        assert any(role in roster.roles_of(p.id) for p in roster.people), role


def test_example_roster_roles_of_named_people(roster: Roster) -> None:
    """R-ORG: roles come from where the roster places a person."""
    assert roster.roles_of("wang.jianguo") == {Role.unit_staff, Role.leader}
    assert Role.deputy in roster.roles_of("li.xiaomei")
    assert Role.publicity in roster.roles_of("li.xiaomei")
    assert roster.roles_of("liu.yang") == {
        Role.unit_staff,
        Role.unit_head,
        Role.first_responsible,
        Role.office,
    }
    assert roster.roles_of("zhou.ting") == {Role.unit_staff, Role.office}
    assert roster.roles_of("zhou.wenbin") >= {Role.party_office, Role.member}
    assert Role.discipline in roster.roles_of("zhao.min")
    assert Role.supervision in roster.roles_of("qian.jun")
    # 社会事务办: huang.li heads it, wu.fang is its first-responsible person (R-DUTY).
    assert roster.roles_of("huang.li") == {Role.unit_staff, Role.unit_head, Role.member}
    assert roster.roles_of("wu.fang") == {Role.unit_staff, Role.first_responsible}
    assert roster.roles_of("xu.lei") == {Role.unit_staff}
    assert roster.roles_of("nobody") == set()


def test_load_roster_reads_the_file(tmp_path: Path) -> None:
    path = tmp_path / "roster.toml"
    path.write_text(MINIMAL, encoding="utf-8")
    loaded = load_roster(path)
    assert loaded == parse_roster(MINIMAL)
    assert loaded == load_roster(str(path))
    assert load_roster(EXAMPLE_ROSTER).town == "清溪镇"


def test_load_roster_missing_file_is_a_roster_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(RosterError, match="cannot read roster file") as info:
        load_roster(missing)
    assert str(missing) in str(info.value)


def test_channels_are_parsed() -> None:
    r = parse_roster(MINIMAL)
    first = r.person("wfirst")
    assert first is not None
    # Each target's one channel of a kind may leave its id out: the id is then the kind.
    assert first.channels == [
        InboxChannel(id="inbox"),
        WebhookChannel(id="webhook", url="https://hooks.example/wfirst"),
    ]
    whead = r.person("whead")
    assert whead is not None and whead.channels == []


# --- channel ids, the public roster and resolving references (issue 15) ---

TWO_HOOKS = (
    'channels = [{ id = "duty", kind = "webhook", url = "https://hooks.example/duty?token=t1", '
    'secret = "whsec_ZHV0eS1ob29rLXNlY3JldC0yNGJ5dGVz" }, { id = "group", kind = "webhook", '
    'url = "https://hooks.example/group" }, { kind = "dingtalk", '
    'url = "https://oapi.dingtalk.example/robot/send?access_token=dt", secret = "SECx", '
    'at_mobiles = ["13900000000"] }]\nphone = "13800000000"'
)
WITH_IDS = MINIMAL.replace(
    'channels = [{ kind = "inbox" }, { kind = "webhook", url = "https://hooks.example/wfirst" }]',
    TWO_HOOKS,
)


def test_channels_declare_their_ids() -> None:
    first = parse_roster(WITH_IDS).person("wfirst")
    assert first is not None
    assert [(c.kind, c.id) for c in first.channels] == [
        ("webhook", "duty"),
        ("webhook", "group"),
        ("dingtalk", "dingtalk"),
    ]


def test_two_channels_of_a_kind_without_ids_are_refused() -> None:
    """Never a position: two channels of one kind must each declare an id."""
    message = refused(
        broken(
            '{ kind = "webhook", url = "https://hooks.example/wfirst" }',
            '{ kind = "webhook", url = "https://hooks.example/a" }, '
            '{ kind = "webhook", url = "https://hooks.example/b" }',
        )
    )
    assert "people[wfirst].channels" in message
    assert "有多个“webhook”渠道，须为每个渠道写明不同的 id" in message


def test_duplicated_channel_id_is_refused() -> None:
    message = refused(
        broken(
            '{ kind = "inbox" }, { kind = "webhook"',
            '{ id = "x", kind = "inbox" }, { id = "x", kind = "webhook"',
        )
    )
    assert "people[wfirst]" in message and "渠道 id “x”重复" in message


def test_a_bare_reference_in_the_file_is_refused() -> None:
    message = refused(
        broken('{ kind = "inbox" }, ', '{ ref = true, kind = "webhook", id = "hook" }, ')
    )
    assert "people[wfirst].channels[hook]" in message and "不能只写引用" in message


def test_public_roster_has_references_and_no_phone_or_secret() -> None:
    full = parse_roster(WITH_IDS)
    public = full.public()
    text = public.model_dump_json()
    for secret in (
        "token=t1",
        "whsec_ZHV0eS1ob29rLXNlY3JldC0yNGJ5dGVz",
        "hooks.example",
        "access_token",
        "SECx",
    ):
        assert secret not in text
    assert "13900000000" not in text and "13800000000" not in text
    first = public.person("wfirst")
    assert first is not None and first.phone is None
    assert first.channels == [
        ChannelRef(kind="webhook", id="duty"),
        ChannelRef(kind="webhook", id="group"),
        ChannelRef(kind="dingtalk", id="dingtalk"),
    ]
    # The public roster still reads back as a roster (an incident's input), references and all.
    assert Roster.model_validate_json(text) == public
    # Everything else is the same roster.
    assert public.roles_of("wfirst") == full.roles_of("wfirst")
    assert [p.id for p in public.people] == [p.id for p in full.people]


def test_resolve_a_reference_in_the_workers_roster() -> None:
    full = parse_roster(WITH_IDS)
    found = full.resolve("wfirst", ChannelRef(kind="dingtalk", id="dingtalk"))
    assert isinstance(found, DingTalkChannel) and found.secret == "SECx"
    assert full.resolve("wfirst", ChannelRef(kind="webhook", id="gone")) == (
        "名册中建设办第一责任人已没有 id 为“gone”的通知渠道"
    )
    assert full.resolve("ghost", ChannelRef(kind="webhook", id="duty")) == (
        "名册中已没有人员“ghost”"
    )
    assert full.resolve("unit:ghost", ChannelRef(kind="wecom", id="wecom")) == (
        "名册中已没有单位“ghost”"
    )
    changed = full.resolve("wfirst", ChannelRef(kind="wecom", id="duty"))
    assert isinstance(changed, str) and "已改为webhook" in changed


def test_old_snapshots_with_channels_in_full_still_read() -> None:
    """Incidents started before channel ids carry channels in full without ids: they still
    deserialise (replay), however many channels of a kind a person had."""
    full = parse_roster(MINIMAL).model_dump(mode="json")
    for person in full["people"]:
        for channel in person["channels"]:
            channel.pop("id")
    full["people"][0]["channels"] = [
        {"kind": "webhook", "url": "https://a.example"},
        {"kind": "webhook", "url": "https://b.example"},
    ]
    old = Roster.model_validate(full)
    assert [c.id for c in old.people[0].channels] == [None, None]


# --- broken rosters: the message names the bad entry ---


def test_unit_head_unknown_person() -> None:
    message = refused(broken('head = "whead"', 'head = "ghost.person"'))
    assert "units[works].head" in message
    assert "ghost.person" in message


def test_unit_first_responsible_unknown_person() -> None:
    message = refused(broken('first_responsible = "wfirst"', 'first_responsible = "ghost"'))
    assert "units[works].first_responsible" in message
    assert "'ghost'" in message


def test_person_in_unknown_unit() -> None:
    text = broken(
        'id = "wstaff"\nname = "建设办员工"\nunit = "works"',
        'id = "wstaff"\nname = "x"\nunit = "mars"',
    )
    message = refused(text)
    assert "people[wstaff].unit" in message
    assert "mars" in message


def test_duplicated_person_id() -> None:
    message = refused(broken('id = "wstaff"', 'id = "wfirst"'))
    assert "wfirst" in message
    assert "twice" in message


def test_duplicated_unit_id() -> None:
    message = refused(broken('id = "party"', 'id = "works"'))
    assert "unit id 'works'" in message


def test_invalid_toml() -> None:
    message = refused(MINIMAL + "\n[[people]\nid = \n")
    assert "not valid TOML" in message


def test_missing_leading_group() -> None:
    text = broken('[leading_group]\nleader = "boss"\ndeputy = "vice"\nmembers = ["member1"]\n', "")
    message = refused(text)
    assert "leading_group" in message
    assert "Field required" in message


def test_leading_group_names_unknown_people() -> None:
    message = refused(broken('leader = "boss"', 'leader = "emperor"'))
    assert "leading_group.leader" in message and "emperor" in message
    message = refused(broken('members = ["member1"]', 'members = ["member1", "stranger"]'))
    assert "leading_group.members" in message and "stranger" in message


def test_roles_name_unknown_units_and_people() -> None:
    message = refused(broken('office = "office"', 'office = "attic"'))
    assert "roles.office" in message and "attic" in message
    message = refused(broken('supervision_contact = "sup"', 'supervision_contact = "spy"'))
    assert "roles.supervision_contact" in message and "spy" in message


def test_webhook_channel_with_non_http_url() -> None:
    text = broken('url = "https://hooks.example/wfirst"', 'url = "ftp://hooks.example/wfirst"')
    message = refused(text)
    assert "people[wfirst].channels[1]" in message
    assert "url" in message
    assert "https?://" in message


def test_unknown_field_is_refused() -> None:
    message = refused(broken('name = "建设办主任"', 'name = "建设办主任"\nemail = "x@example.com"'))
    assert "people[whead].email" in message


def test_bad_person_id_is_named_by_position() -> None:
    message = refused(broken('id = "wstaff"', 'id = "w staff!"'))
    assert "people[w staff!].id" in message


# --- look-ups ---


def test_members_of_puts_head_and_first_responsible_first() -> None:
    """R-DUTY: the unit's head and its first-responsible person lead the list, once each."""
    r = parse_roster(MINIMAL)
    # In the file the unit's people are listed staff, first-responsible, head.
    assert r.members_of("works") == ["whead", "wfirst", "wstaff"]
    # Head and first-responsible the same person: listed once.
    assert r.members_of("office") == ["ohead"]
    assert r.members_of("party") == ["member1", "boss", "disc", "sup"]
    assert r.members_of("mars") == []


def test_members_of_includes_a_first_responsible_from_another_unit() -> None:
    """R-DUTY: the first-responsible person is on the unit's list even when placed elsewhere."""
    r = parse_roster(broken('first_responsible = "wfirst"', 'first_responsible = "ohead"'))
    assert r.members_of("works") == ["whead", "ohead", "wstaff", "wfirst"]
    assert Role.first_responsible in r.roles_of("ohead")
    assert Role.first_responsible not in r.roles_of("wfirst")


def test_roles_of_minimal() -> None:
    r = parse_roster(MINIMAL)
    assert r.roles_of("boss") == {Role.unit_staff, Role.leader, Role.party_office}
    assert r.roles_of("vice") == {
        Role.unit_staff,
        Role.deputy,
        Role.publicity,
        Role.unit_head,
        Role.first_responsible,
    }
    assert r.roles_of("disc") == {Role.unit_staff, Role.party_office, Role.discipline}
    assert r.roles_of("sup") == {Role.unit_staff, Role.party_office, Role.supervision}
    assert r.roles_of("ohead") == {
        Role.unit_staff,
        Role.office,
        Role.unit_head,
        Role.first_responsible,
    }
    assert r.roles_of("wstaff") == {Role.unit_staff}
    assert r.roles_of("wfirst") == {Role.unit_staff, Role.first_responsible}
    assert r.roles_of("whead") == {Role.unit_staff, Role.unit_head}


def test_name_lookups_and_membership(roster: Roster) -> None:
    assert roster.unit_name("sswb") == "社会事务办"
    assert roster.unit_name("unknown") == "unknown"
    assert roster.unit_name(None) == "未指定"
    assert roster.person_name("wu.fang") == "吴芳"
    assert roster.person_name("ghost") == "ghost"
    assert roster.person_name(None) == ""
    assert roster.is_head_of("huang.li", "sswb")
    assert not roster.is_head_of("wu.fang", "sswb")
    assert not roster.is_head_of("huang.li", None)
    assert roster.belongs_to("xu.lei", "sswb")
    assert not roster.belongs_to("xu.lei", "cjb")
    assert not roster.belongs_to("ghost", "sswb")
    assert not roster.belongs_to("xu.lei", None)
