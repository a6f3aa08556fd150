"""R-ESCALATE's reach (issue 20, item 5): `yuqing check-roster` (and so `make up`) warns, naming
the people and the steps, when anyone the escalation chain can come to has no channel of their
own outside the inbox; it is a warning, never a refusal of the roster."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from plan import reach
from plan.roster import load_roster
from plan.spec import shipped
from starter.cli import app
from tests.conftest import EXAMPLE_ROSTER

runner = CliRunner()
LEADER, DEPUTY = "wang.jianguo", "li.xiaomei"


def roster_with_mail(tmp_path: Path, *, except_for: set[str]) -> Path:
    """The example roster with an e-mail channel for everyone but `except_for`."""
    text = EXAMPLE_ROSTER.read_text(encoding="utf-8")
    people = re.findall(r'\[\[people\]\]\nid = "([^"]+)"', text)

    def with_channel(match: re.Match[str]) -> str:
        person = match.group(1)
        if person in except_for:
            return match.group(0)
        channel = f'channels = [{{ kind = "email", address = "{person}@example.gov.cn" }}]\n'
        return match.group(0) + channel

    text = re.sub(r'\[\[people\]\]\nid = "([^"]+)"\n', with_channel, text)
    assert len(people) > 10
    target = tmp_path / "roster.toml"
    target.write_text(text, encoding="utf-8")
    return target


def test_the_chain_reaches_the_units_heads_the_office_the_deputy_and_the_leader() -> None:
    roster = load_roster(EXAMPLE_ROSTER)
    people = reach.escalation_people(roster, shipped())
    assert people[LEADER] == {3: "第3级（组长）"}
    assert people[DEPUTY][2] == "第2级（副组长）"
    cjb = roster.unit("cjb")
    assert cjb is not None
    assert 1 in people[cjb.head] and 1 in people[cjb.first_responsible]
    assert all(1 in people[p] for p in roster.members_of(roster.roles.office))
    # Nobody outside the chain: a monitoring-only person of a village is not in it.
    assert set(people) <= {p.id for p in roster.people}


def test_check_roster_names_an_unreachable_leader(tmp_path: Path) -> None:
    """Everyone has e-mail but the leader: the warning names him and his step, and only him."""
    path = roster_with_mail(tmp_path, except_for={LEADER})
    result = runner.invoke(app, ["check-roster", str(path)])
    assert result.exit_code == 0, result.output  # a warning, not a refusal
    assert "名册有效" in result.output
    assert "警告：以下1人在督办链上" in result.output
    assert "王建国（wang.jianguo）：第3级（组长）" in result.output
    assert reach.unreached(load_roster(path), shipped())[0].person == LEADER


def test_a_unit_group_channel_does_not_reach_its_head(tmp_path: Path) -> None:
    """A robot posting to the unit's group chat is the unit's channel, not the head's."""
    path = roster_with_mail(tmp_path, except_for={"sun.haitao"})
    text = path.read_text(encoding="utf-8")
    text = text.replace(
        'id = "cjb"\n',
        'id = "cjb"\nchannels = [{ kind = "wecom", url = "https://qyapi.weixin.qq.com/x?key=k" }]\n',
        1,
    )
    path.write_text(text, encoding="utf-8")
    roster = load_roster(path)
    cjb = roster.unit("cjb")
    assert cjb is not None and cjb.channels and cjb.head == "sun.haitao"
    missing = reach.unreached(roster, shipped())
    assert [u.person for u in missing] == ["sun.haitao"]
    assert missing[0].steps == ("第1级（责任人、单位负责人及领导小组办公室）",)


def test_everyone_reached_no_warning(tmp_path: Path) -> None:
    path = roster_with_mail(tmp_path, except_for=set())
    result = runner.invoke(app, ["check-roster", str(path)])
    assert result.exit_code == 0 and "警告" not in result.output, result.output


def test_the_leader_is_named_first(tmp_path: Path) -> None:
    """The shipped example reaches nobody but by the inbox: the leader, whom a missed deadline
    ends with, heads the list."""
    missing = reach.unreached(load_roster(EXAMPLE_ROSTER), shipped())
    assert missing[0].person == LEADER and missing[1].person == DEPUTY


def test_check_roster_warns_of_sms_channels_without_an_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An SMS channel (issue 20, item 4) with no Tencent Cloud account set fails on its first
    message: check-roster says so, naming the variables; with them set, it does not."""
    from config.settings import get_settings

    path = roster_with_mail(tmp_path, except_for=set())
    text = path.read_text(encoding="utf-8").replace(
        'channels = [{ kind = "email", address = "wang.jianguo@example.gov.cn" }]\n',
        'channels = [{ kind = "sms" }]\n',
    )
    path.write_text(text, encoding="utf-8")
    for name in ("SECRET_ID", "SECRET_KEY", "SDK_APP_ID", "SIGN_NAME", "TEMPLATE_ID"):
        monkeypatch.delenv(f"YUQING_SMS_{name}", raising=False)
    get_settings.cache_clear()
    try:
        result = runner.invoke(app, ["check-roster", str(path)])
        assert result.exit_code == 0, result.output
        assert "王建国有短信渠道，但未设置短信账号" in result.output
        assert "YUQING_SMS_SECRET_ID" in result.output and "警告：以下" not in result.output
        for name in ("SECRET_ID", "SECRET_KEY", "SDK_APP_ID", "SIGN_NAME", "TEMPLATE_ID"):
            monkeypatch.setenv(f"YUQING_SMS_{name}", "x")
        get_settings.cache_clear()
        result = runner.invoke(app, ["check-roster", str(path)])
        assert result.exit_code == 0 and "警告" not in result.output, result.output
    finally:
        get_settings.cache_clear()
