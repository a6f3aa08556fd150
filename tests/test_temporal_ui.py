"""What the Temporal UI shows: incidents found by their search attributes, histories whose every
timer and activity says in Chinese which rule and step it is, and, with the codec on, no title,
content or name in clear text, with the codec endpoint decoding only for signed-in staff."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import subprocess
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.converter import DefaultFailureConverterWithEncodedAttributes
from temporalio.testing import WorkflowEnvironment

from config.settings import Settings
from plan.enums import Phase
from plan.roster import Roster
from runtime.client import connect, data_converter
from runtime.codec import CodecKeyError, EncryptionCodec, new_key_entry, parse_keys
from runtime.payloads import compact_data_converter
from tests.conftest import EXAMPLE_ROSTER, binary, make_settings, start_dev_server
from tests.helpers import running_worker, submission
from tests.stack import running_stack
from workflows.search_attributes import SEARCH_ATTRIBUTES


@pytest_asyncio.fixture(loop_scope="session")
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    env = await start_dev_server()
    async with env:
        yield env


async def _until(check: Any, within: float = 30.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, f"not reached within {within}s: {value!r}"
        await asyncio.sleep(0.3)


def _text(payload: Payload) -> str:
    return str(compact_data_converter.payload_converter.from_payload(payload, str))


async def test_overdue_drill_found_by_search_attributes_with_a_readable_history(
    dev_server: WorkflowEnvironment,
    database_url: str,
    roster: Roster,
    executor: ThreadPoolExecutor,
) -> None:
    """R-DRILL, R-ESCALATE: a drill past its reply deadline is found with `Overdue = true` and by
    its unit; every timer and activity in its history carries a summary naming its rule."""
    from starter import incidents

    client = dev_server.client
    settings = make_settings(database_url)
    async with running_worker(client, settings, executor):
        data = submission(
            title="演练：桥梁裂缝视频传播",
            severity="urgent",
            # Not an inquiry: a drill runs the rest of the day 3600 times faster too, so late in
            # the evening R-INQUIRY's same-day opinion would fall due first and take the timer.
            category="hype",
            responsible_unit="cjb",
            drill_speedup=3600,
            discovered_at=datetime.now(UTC).isoformat(),
        )
        view = (
            await incidents.submit(client, settings, roster, data, submitted_by="zhou.ting")
        ).view
        handle = client.get_workflow_handle(view.id)

        async def found(query: str) -> list[str]:
            return [w.id async for w in client.list_workflows(query)]

        overdue = f"Overdue = true AND IsDrill = true AND WorkflowId = '{view.id}'"
        assert view.id in await _until(lambda: found(overdue))
        by_unit = "ResponsibleUnit = 'cjb' AND ExecutionStatus = 'Running'"
        assert view.id in await _until(lambda: found(by_unit))
        typed = "IncidentCategory = 'hype' AND IncidentSeverity = 'urgent'"
        assert view.id in await _until(lambda: found(f"{typed} AND PlanVersion = '2024.1'"))
        assert view.id not in await found("Overdue = true AND IsDrill = false")

        async def escalated() -> bool:
            events = [e async for e in handle.fetch_history_events()]
            return any(
                e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
                and _text(e.user_metadata.summary).startswith("第1级督办：")
                for e in events
            )

        await _until(escalated)
        history = [e async for e in handle.fetch_history_events()]
        desc = await handle.describe()
        meta = await handle.query("__temporal_workflow_metadata")

    assert await desc.static_summary() == "【演练】演练：桥梁裂缝视频传播"
    # Search attributes hold codes and instants only; the id is a date and a hash.
    attrs = {p.key.name: p.value for p in desc.typed_search_attributes}
    assert {k.name for k in SEARCH_ATTRIBUTES} <= set(attrs)
    assert attrs["IncidentPhase"] in {p.value for p in Phase}
    assert attrs["ResponsibleUnit"] == "cjb" and attrs["IncidentCategory"] == "hype"
    for value in attrs.values():
        assert not any(name in str(value) for name in ("桥梁", "周婷", "村镇建设办")), value
    assert re.fullmatch(r"YQ-\d{8}-[0-9A-F]{12}", view.id)
    assert "村镇建设办" in (await desc.static_details() or "") or "报告单位" in (
        await desc.static_details() or ""
    )
    timers = [e for e in history if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED]
    activities = [
        e for e in history if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    assert timers and activities
    for e in timers + activities:
        assert e.user_metadata.HasField("summary"), e
    timer_texts = [_text(e.user_metadata.summary) for e in timers]
    activity_texts = [_text(e.user_metadata.summary) for e in activities]
    assert any(t.endswith("（R-REPLY）") for t in timer_texts), timer_texts
    assert any(t.startswith("临期提醒 ") and "R-REPLY" in t for t in timer_texts), timer_texts
    assert any(re.match(r"R-ESCALATE 第\d级: ", t) for t in timer_texts + activity_texts)
    assert any(t.startswith("记录：") for t in activity_texts), activity_texts
    # One write per step: the notification is told in the same activity's summary.
    assert any("；R-NOTIFY 通知：" in t for t in activity_texts), activity_texts
    # The current details always show the phase and the ledger (Markdown).
    details = _meta_details(meta)
    assert "R-REPLY" in details and "逾期" in details


def _meta_details(meta: Any) -> str:
    if hasattr(meta, "current_details"):
        return str(meta.current_details)
    return str(meta.get("currentDetails") or meta.get("current_details") or "")


# ---------------------------------------------------------------- the codec


def test_codec_keys_rotate_and_refuse_what_they_cannot_read() -> None:
    old, new = new_key_entry("2026-05"), new_key_entry("2026-11")
    secret = Payload(metadata={"encoding": b"json/plain"}, data="刘洋：东湖村积水".encode())
    written_before = asyncio.run(EncryptionCodec(parse_keys(old)).encode([secret]))[0]
    assert written_before.metadata["encryption-key-id"] == b"2026-05"
    assert "刘洋".encode() not in written_before.data
    rotated = EncryptionCodec(parse_keys(f"{new}\n{old}"))
    assert asyncio.run(rotated.decode([written_before])) == [secret]
    assert asyncio.run(rotated.encode([secret]))[0].metadata["encryption-key-id"] == b"2026-11"
    with pytest.raises(CodecKeyError, match="unknown key id '2026-05'"):
        asyncio.run(EncryptionCodec(parse_keys(new)).decode([written_before]))
    # The key id is authenticated: relabelling a payload does not make another key read it.
    relabelled = Payload()
    relabelled.CopyFrom(written_before)
    relabelled.metadata["encryption-key-id"] = b"2026-11"
    with pytest.raises(Exception):  # noqa: B017 - cryptography's InvalidTag
        asyncio.run(rotated.decode([relabelled]))
    for bad, words in [
        ("", "no codec key"),
        ("k1", "expected KEY_ID:BASE64_KEY"),
        ("k1:not base64!", "not base64"),
        (f"k1:{base64.b64encode(b'short').decode()}", "expected 32"),
        (f"{old},{old}", "listed twice"),
    ]:
        with pytest.raises(CodecKeyError, match=words):
            parse_keys(bad)


def test_failure_messages_are_encoded_with_the_codec(database_url: str) -> None:
    on = data_converter(make_settings(database_url, codec_keys=new_key_entry("k")))
    assert on.payload_codec is not None
    assert isinstance(on.failure_converter, DefaultFailureConverterWithEncodedAttributes)
    off = data_converter(make_settings(database_url))
    assert off.payload_codec is None


@pytest.fixture
def codec_town(dev_server: WorkflowEnvironment, tmp_path: Path) -> Any:
    keys = new_key_entry("test-key")
    with running_stack(
        dev_server.client.service_client.config.target_host,
        tmp_path,
        EXAMPLE_ROSTER,
        "codec",
        extra_env={
            "YUQING_CODEC_KEYS": keys,
            "YUQING_TEMPORAL_UI_URL": "http://localhost:8233",
        },
    ) as stack:
        yield stack, keys


async def test_with_the_codec_on_history_holds_no_clear_text(
    dev_server: WorkflowEnvironment, codec_town: Any, database_url: str
) -> None:
    stack, keys = codec_town
    from store import credentials
    from store.db import session_scope

    with session_scope(stack.env["YUQING_DATABASE_URL"]) as s:
        tokens = {
            p: credentials.create_token(s, person_id=p)
            for p in ("liu.yang", "lin.feng", "sun.haitao")
        }
    title = "保密测试：东湖村学校食堂卫生问题"
    content = "家长冯小红在本地论坛发帖反映食堂卫生问题，电话13800000000。"
    api = httpx.AsyncClient(base_url=stack.url, timeout=60)

    async def act(incident_id: str, action: str, person: str, body: dict[str, Any]) -> None:
        r = await api.post(
            f"/api/incidents/{incident_id}/actions/{action}",
            json=body,
            headers={"Authorization": f"Bearer {tokens[person]}"},
        )
        assert r.status_code == 200, r.text

    try:
        r = await api.post(
            "/api/incidents",
            json=submission(
                title=title, content=content, reporter_unit="dhc", reporter_name="冯刚"
            ),
            headers={"Authorization": f"Bearer {tokens['liu.yang']}"},  # the office keys it in
        )
        assert r.status_code == 201, r.text
        incident_id = r.json()["id"]
        triage = {"severity": "general", "category": "inquiry", "responsible_unit": "cjb"}
        await act(incident_id, "triage", "liu.yang", triage)
        await act(
            incident_id, "draft-reply", "lin.feng", {"text": "已责成学校整改，今日公布结果。"}
        )
        await act(incident_id, "approve-reply", "sun.haitao", {"approve": True})
        await act(incident_id, "publish-reply", "lin.feng", {"channel": "镇政府微博"})
        await act(incident_id, "track", "lin.feng", {"status": "subsided"})
        await act(incident_id, "submit-summary", "lin.feng", {"text": "书面总结：食堂已整改。"})

        # The incident closes with the codec on (the worker and web app share the keys); its
        # workflow goes on for the period after close (R-CLOSE), answering in clear to the codec.
        settings = Settings(temporal_address=stack.env["YUQING_TEMPORAL_ADDRESS"], codec_keys=keys)
        client: Client = await connect(settings)
        handle = client.get_workflow_handle(incident_id)

        async def closed() -> bool:
            view = await handle.query("view")
            return bool(view["phase"] == "closed" and view["title"] == title)

        await _until(closed)
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING

        address = stack.env["YUQING_TEMPORAL_ADDRESS"]
        show = [binary("temporal"), "workflow", "show", "--workflow-id", incident_id]
        show += ["--address", address, "--output", "json"]
        plain = subprocess.run(show, capture_output=True, text=True, timeout=60, check=True)
        history = plain.stdout
        encrypted = base64.b64encode(b"binary/encrypted").decode()
        assert len(history) > 10_000 and history.count(encrypted) > 20
        secrets = [title, content, "冯小红", "13800000000", "冯刚", "刘洋", "林峰", "孙海涛"]
        secrets += ["已责成学校整改", "食堂", "东湖村"]
        leaked = [s for s in secrets if _shows(history, s)]
        assert not leaked, leaked

        # Through the codec endpoint with a personal token, the same CLI shows it in clear.
        codec_auth = ["--codec-endpoint", f"{stack.url}/codec"]
        codec_auth += ["--codec-auth", f"Bearer {tokens['liu.yang']}"]
        decoded = subprocess.run(
            show + codec_auth, capture_output=True, text=True, timeout=60, check=True
        ).stdout
        assert all(_shows(decoded, s) for s in (title, content, "刘洋", "已责成学校整改"))

        # The endpoint: anonymous refused; a signed-in browser session decodes; the UI's origin
        # may call it with credentials, another origin gets no CORS grant.
        sample = _first_encrypted_payload(json.loads(history))
        anonymous = await api.post("/codec/decode", json={"payloads": [sample]})
        assert anonymous.status_code == 401
        bad_token = await api.post(
            "/codec/decode",
            json={"payloads": [sample]},
            headers={"Authorization": "Bearer yq_not_a_token"},
        )
        assert bad_token.status_code == 401
        login = await api.get("/login")
        csrf = re.findall(r'name="csrf_token" value="([^"]+)"', login.text)[-1]
        signed = await api.post(
            "/login", data={"csrf_token": csrf, "token": tokens["liu.yang"], "next": "/my"}
        )
        assert signed.status_code == 303
        ok = await api.post(
            "/codec/decode",
            json={"payloads": [sample]},
            headers={"Origin": "http://localhost:8233", "X-Namespace": "default"},
        )
        assert ok.status_code == 200, ok.text
        assert ok.headers["access-control-allow-origin"] == "http://localhost:8233"
        assert ok.headers["access-control-allow-credentials"] == "true"
        out = ok.json()["payloads"][0]
        assert base64.b64decode(out["metadata"]["encoding"]) != b"binary/encrypted"
        preflight = await api.options(
            "/codec/decode", headers={"Origin": "https://elsewhere.example"}
        )
        assert "access-control-allow-origin" not in preflight.headers

        # `yuqing export-history` saves the history as stored, or decrypted with the keys.
        raw_file, clear_file = stack.cwd / "raw.json", stack.cwd / "clear.json"
        raw = stack.cli("export-history", incident_id, "--out", str(raw_file))
        assert raw.returncode == 0, raw.stderr
        assert not _shows(raw_file.read_text(encoding="utf-8"), title)
        clear = stack.cli("export-history", incident_id, "--decode", "--out", str(clear_file))
        assert clear.returncode == 0, clear.stderr
        exported = clear_file.read_text(encoding="utf-8")
        assert _shows(exported, title) and _shows(exported, "已责成学校整改")
        # The decrypted export is a history the replay tests can load.
        from temporalio.client import WorkflowHistory

        assert WorkflowHistory.from_json(incident_id, exported).events[0].event_type == 1
        missing = stack.cli("export-history", "YQ-NOPE")
        assert missing.returncode == 4 and "YQ-NOPE" in missing.stderr
    finally:
        await api.aclose()


def _shows(history: str, text: str) -> bool:
    """Whether `text` can be read in a `temporal workflow show --output json` dump: as is,
    JSON-escaped, or inside any payload's base64 data (how clear payloads appear there)."""
    if text in history or json.dumps(text)[1:-1] in history:
        return True
    for match in re.findall(r'"data":\s*"([A-Za-z0-9+/=]+)"', history):
        decoded = base64.b64decode(match).decode("utf-8", "ignore")
        if text in decoded or json.dumps(text)[1:-1] in decoded:
            return True
    return False


def _first_encrypted_payload(history: Any) -> dict[str, Any]:
    found: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if found:
            return
        if isinstance(node, dict):
            meta = node.get("metadata")
            if isinstance(meta, dict) and "encryption-key-id" in meta and "data" in node:
                found.append({"metadata": meta, "data": node["data"]})
                return
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(history)
    assert found, "no encrypted payload in the history"
    return found[0]
