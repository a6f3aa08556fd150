"""The `yuqing` CLI: a command per staff action, roster checks and tokens (no server needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from plan.actions import ACTIONS
from starter.cli import app
from store import credentials
from store.db import session_scope
from tests.conftest import EXAMPLE_ROSTER

runner = CliRunner()


def test_every_action_is_a_command_with_the_request_fields() -> None:
    for name, rule in ACTIONS.items():
        request_model = rule.request
        result = runner.invoke(app, [name, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, (name, result.output)
        for field in request_model.model_fields:
            assert "--" + field.replace("_", "-") in result.output, (name, field)


def test_check_roster_names_the_bad_entry(tmp_path: Path) -> None:
    """R-ORG: a broken roster is refused with the entry named."""
    assert runner.invoke(app, ["check-roster", str(EXAMPLE_ROSTER)]).exit_code == 0
    broken = tmp_path / "roster.toml"
    broken.write_text(
        EXAMPLE_ROSTER.read_text(encoding="utf-8").replace('head = "sun.haitao"', 'head = "ghost"'),
        encoding="utf-8",
    )
    result = runner.invoke(app, ["check-roster", str(broken)])
    assert result.exit_code == 1
    assert "units[cjb].head" in result.output and "ghost" in result.output


def test_token_create_and_revoke(database_url: str) -> None:
    env = {
        "YUQING_DATABASE_URL": database_url,
        "YUQING_ROSTER_FILE": str(EXAMPLE_ROSTER),
        "YUQING_TOKEN": "",
    }
    from config.settings import get_settings

    get_settings.cache_clear()
    try:
        created = runner.invoke(app, ["token", "create", "liu.yang"], env=env)
        assert created.exit_code == 0, created.output
        token = created.stdout.strip()  # the token alone; its expiry goes to stderr
        with session_scope(database_url) as s:
            assert credentials.person_for_token(s, token=token) == "liu.yang"
        unknown = runner.invoke(app, ["token", "create", "nobody"], env=env)
        assert unknown.exit_code == 1 and "不在名册中" in unknown.output
        assert runner.invoke(app, ["token", "revoke", "liu.yang"], env=env).exit_code == 0
        with session_scope(database_url) as s:
            assert credentials.person_for_token(s, token=token) is None
        # An action without a token never reaches the server.
        no_token = runner.invoke(app, ["withdraw", "YQ-X", "--reason", "误报"], env=env)
        assert no_token.exit_code == 3 and "令牌" in no_token.output
    finally:
        get_settings.cache_clear()


def test_codec_key_new_prints_a_usable_entry() -> None:
    from runtime.codec import EncryptionCodec, parse_keys

    made = runner.invoke(app, ["codec-key", "new", "2026-11"])
    assert made.exit_code == 0, made.output
    entry = made.output.strip()
    assert entry.startswith("2026-11:")
    assert EncryptionCodec(parse_keys(entry)).active_id == "2026-11"
    bad = runner.invoke(app, ["codec-key", "new", "a:b"])
    assert bad.exit_code == 6 and "密钥编号" in bad.output


def test_list_passes_the_search_and_shows_the_short_number(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 18, item 7: `yuqing list -q 关键词` asks the API's search, URL-encoded."""
    import starter.cli as cli

    asked: list[str] = []

    def fake_request(method: str, path: str, **kw: object) -> dict[str, object]:
        asked.append(path)
        item = {
            "id": "YQ-1",
            "short_number": "2026-1130-007",
            "phase": "triage",
            "severity": "general",
            "next_due_at": None,
            "overdue": False,
            "title": "东湖村道路积水",
        }
        return {"items": [item]}

    monkeypatch.setattr(cli, "_request", fake_request)
    result = runner.invoke(app, ["list", "-q", "积水 100%", "--phase", "triage"])
    assert result.exit_code == 0, result.output
    assert asked == ["/api/incidents?phase=triage&q=%E7%A7%AF%E6%B0%B4+100%25"]
    assert "YQ-1  2026-1130-007" in result.output and "东湖村道路积水" in result.output


def test_report_xlsx_saves_the_workbook_the_api_answers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`yuqing report --xlsx FILE` (issue 19, item 2; R-ACCOUNT): the API's workbook, saved."""
    import starter.cli as cli

    asked: list[str] = []

    def fake_download(path: str, **kw: object) -> bytes:
        asked.append(path)
        return b"PK-workbook"

    monkeypatch.setattr(cli, "_download", fake_download)
    target = tmp_path / "问责.xlsx"
    result = runner.invoke(
        app, ["report", "--start", "2026-11-01", "--end", "2026-11-30", "--xlsx", str(target)]
    )
    assert result.exit_code == 0, result.output
    assert asked == ["/api/reports/accountability.xlsx?start=2026-11-01&end=2026-11-30"]
    assert target.read_bytes() == b"PK-workbook" and "已导出 Excel" in result.output
