"""`yuqing`: the staff tool on the command line.

Incident commands talk to the web app's JSON API (YUQING_API_URL), so they obey exactly the rules
the pages and the API do; administration commands (migrate, token, check-roster) work on the
database and roster directly.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import types
import typing
import urllib.parse
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, NoReturn
from zoneinfo import ZoneInfo

import httpx
import typer
from pydantic import BaseModel

from config.settings import get_settings
from plan import reach
from plan.actions import ACTIONS
from plan.models import ATTACHMENT_TYPES
from plan.roster import RosterError, load_roster
from plan.spec import PlanSpec, plan_from, shipped
from starter.errors import field_label

# Exit codes, so scripts can tell a refusal by role from one by the plan (the API's 403 / 409).
EXIT_ERROR = 1  # anything else (2 is click's: the command line itself is wrong)
EXIT_FORBIDDEN = 3  # no or bad token, or the role may not do this (HTTP 401/403)
EXIT_NOT_FOUND = 4  # no such incident (HTTP 404)
EXIT_REFUSED = 5  # the plan does not allow it now: wrong phase, closed, already done (HTTP 409)
EXIT_INVALID = 6  # the input is invalid (HTTP 400/413/422)
EXIT_UNREACHABLE = 7  # the API (or Temporal) could not be reached
EXIT_BY_STATUS = {
    400: EXIT_INVALID,
    401: EXIT_FORBIDDEN,
    403: EXIT_FORBIDDEN,
    404: EXIT_NOT_FOUND,
    409: EXIT_REFUSED,
    413: EXIT_INVALID,
    422: EXIT_INVALID,
}

app = typer.Typer(
    help="舆情应急处置：员工命令行工具。\n\n退出码：0 成功；1 其他错误；2 命令用法错误；3 未登录或无权操作；"
    "4 事件不存在；5 当前阶段不允许（已办理、已结案等）；6 输入无效；7 无法连接。",
    no_args_is_help=True,
    add_completion=False,
)
token_app = typer.Typer(help="管理个人访问令牌", no_args_is_help=True)
app.add_typer(token_app, name="token")
link_app = typer.Typer(help="管理通知中的一次性登录链接", no_args_is_help=True)
app.add_typer(link_app, name="link")
absence_app = typer.Typer(
    help="不在岗与代理：登记请假、出差期间的代理人，销假，查看登记", no_args_is_help=True
)
app.add_typer(absence_app, name="absence")

TokenOpt = Annotated[
    str | None,
    typer.Option("--token", envvar="YUQING_TOKEN", help="个人令牌（yuqing token create）"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="输出原始JSON")]


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"错误：{message}", err=True)
    raise typer.Exit(code)


def _http() -> httpx.Client:
    """The client the incident commands talk to the web app's JSON API with (YUQING_API_URL)."""
    return httpx.Client(base_url=get_settings().api_url, timeout=60)


def _request(
    method: str,
    path: str,
    *,
    token: str | None = None,
    body: Any = None,
    files: dict[str, Any] | None = None,
) -> Any:
    settings = get_settings()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with _http() as http:
            response = http.request(method, path, json=body, files=files, headers=headers)
    except httpx.HTTPError as exc:
        _fail(
            f"无法连接 {settings.api_url}（{exc}）；请先运行 make up 或设置 YUQING_API_URL",
            EXIT_UNREACHABLE,
        )
    try:
        data = response.json()
    except ValueError:
        _fail(f"HTTP {response.status_code}: {response.text[:200]}")
    if response.is_error:
        lines = [str(data.get("detail", response.status_code))]
        lines += [f"  - {e['message']}" for e in data.get("errors", [])]
        _fail("\n".join(lines), EXIT_BY_STATUS.get(response.status_code, EXIT_ERROR))
    return data


def _download(path: str, *, token: str | None = None) -> bytes:
    """A file the API answers with (e.g. an Excel workbook); refusals as `_request` says them."""
    settings = get_settings()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with _http() as http:
            response = http.get(path, headers=headers)
    except httpx.HTTPError as exc:
        _fail(
            f"无法连接 {settings.api_url}（{exc}）；请先运行 make up 或设置 YUQING_API_URL",
            EXIT_UNREACHABLE,
        )
    if response.is_error:
        try:
            detail = str(response.json().get("detail", response.status_code))
        except ValueError:
            detail = f"HTTP {response.status_code}: {response.text[:200]}"
        _fail(detail, EXIT_BY_STATUS.get(response.status_code, EXIT_ERROR))
    return response.content


def _local(value: str | None) -> str:
    if not value:
        return "-"
    tz = ZoneInfo(get_settings().timezone)
    return datetime.fromisoformat(value).astimezone(tz).strftime("%Y-%m-%d %H:%M")


def _print_incident(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    typer.echo(f"{data['id']}  {data['title']}" + ("  【演练】" if data["drill"] else ""))
    typer.echo(
        f"  阶段：{data['phase']}  等级：{data['severity']}  类别：{data['category'] or '-'}"
        f"  责任单位：{data['responsible_unit'] or '-'}"
    )
    states = {
        "pending": "进行中",
        "overdue": "已逾期",
        "met": "已完成",
        "met_late": "已完成（逾期）",
        "replaced": "已声明延期，仍须完成",
        "cancelled": "已取消",
    }
    for d in data["deadlines"]:
        since = f"{d['anchor_label']} {_local(d['anchor_at'])}起，" if d.get("anchor_at") else ""
        typer.echo(
            f"  期限 {d['title']}：{since}{_local(d['due_at'])}前  {states.get(d['state'], d['state'])}"
        )
    for e in data["escalations"]:
        typer.echo(f"  督办 {_local(e['at'])} {e['summary']}")
    typer.echo(f"  Temporal UI：{data['temporal_ui']}")


# ---------------------------------------------------------------- administration


@app.command()
def migrate() -> None:
    """应用数据库迁移（建表、升级）。"""
    from store.migrate import upgrade

    settings = get_settings()
    upgrade(settings.database_url)
    typer.echo(f"数据库已是最新：{settings.database_url.split('@')[-1]}")


@app.command("check-roster")
def check_roster(path: Annotated[Path | None, typer.Argument(help="名册文件")] = None) -> None:
    """检查名册文件（R-ORG）。"""
    target = path or get_settings().roster_file
    try:
        roster = load_roster(target)
    except RosterError as exc:
        _fail(str(exc))
    typer.echo(f"名册有效：{roster.town}，{len(roster.units)}个单位，{len(roster.people)}人")
    # R-ESCALATE's reach (issue 20): a warning, not a failure; the inbox alone still works.
    missing = reach.unreached(roster, plan_from(get_settings().plan_file))
    if missing:
        typer.echo(
            f"警告：以下{len(missing)}人在督办链上，但除站内消息外没有本人的通知渠道"
            "（短信、邮件、机器人或推送），逾期督办可能无人及时看到：",
            err=True,
        )
        for u in missing:
            typer.echo(f"  {u.name}（{u.person}）：{'、'.join(u.steps)}", err=True)
        typer.echo("请在名册中为其添加 channels，再用 yuqing notify test 人员编号 测试。", err=True)
    # An SMS channel with no account to send from fails on its first message: say so now.
    texting = [p.name for p in roster.people if any(c.kind == "sms" for c in p.channels)]
    if not texting:
        return
    from activities.channels import SmsSettings

    unset = SmsSettings.from_settings(get_settings()).missing()
    if unset:
        typer.echo(
            f"警告：{'、'.join(texting)}有短信渠道，但未设置短信账号（{'、'.join(unset)}），"
            "短信将无法发送。",
            err=True,
        )


@token_app.command("create")
def token_create(
    person_id: str,
    label: Annotated[str | None, typer.Option(help="备注")] = None,
    expires_days: Annotated[
        int | None,
        typer.Option(
            "--expires-days",
            min=1,
            max=3650,
            help="有效天数（1至3650；默认取 YUQING_TOKEN_DAYS，出厂180天）",
        ),
    ] = None,
) -> None:
    """为名册中的人员生成新令牌并打印（只显示这一次）；到期后在接口和登录时均被拒绝。"""
    from datetime import UTC, timedelta
    from zoneinfo import ZoneInfo

    from store import credentials
    from store.db import session_scope

    settings = get_settings()
    roster = load_roster(settings.roster_file)
    if roster.person(person_id) is None:
        _fail(f"人员“{person_id}”不在名册中")
    days = expires_days or settings.token_days
    with session_scope(settings.database_url) as s:
        token = credentials.create_token(s, person_id=person_id, label=label, days=days)
    until = datetime.now(UTC) + timedelta(days=days)
    typer.echo(token)  # stdout: the token alone, for scripts
    local = until.astimezone(ZoneInfo(settings.timezone)).strftime("%Y-%m-%d %H:%M")
    typer.echo(f"有效期至 {local}（{days}天）", err=True)


@token_app.command("revoke")
def token_revoke(person_id: str) -> None:
    """吊销某人的全部令牌。"""
    from store import credentials
    from store.db import session_scope

    with session_scope(get_settings().database_url) as s:
        count = credentials.revoke_tokens(s, person_id=person_id)
    typer.echo(f"已吊销{count}个令牌（其登录会话和尚未使用的登录链接一并失效）")


@link_app.command("revoke")
def link_revoke(person_id: str) -> None:
    """吊销某人尚未使用的全部一次性登录链接（如手机遗失、消息被转发）；令牌和会话不受影响。"""
    from store import credentials
    from store.db import session_scope

    with session_scope(get_settings().database_url) as s:
        count = credentials.revoke_links(s, person_id=person_id)
    typer.echo(f"已吊销{count}个登录链接")


@token_app.command("list")
def token_list() -> None:
    """列出全部令牌（编号、人员、创建时间、到期时间、状态；令牌本身从不保存，也不显示）。"""
    from datetime import UTC
    from zoneinfo import ZoneInfo

    from store import credentials
    from store.db import session_scope

    settings = get_settings()
    roster = load_roster(settings.roster_file)
    tz = ZoneInfo(settings.timezone)

    def when(value: Any) -> str:
        return value.astimezone(tz).strftime("%Y-%m-%d %H:%M") if value else "-"

    with session_scope(settings.database_url) as s:
        rows = [
            (t.id, t.person_id, t.label, t.created_at, t.expires_at, t.revoked_at)
            for t in credentials.list_tokens(s)
        ]
    if not rows:
        typer.echo("暂无令牌")
        return
    now = datetime.now(UTC)
    typer.echo("编号\t人员\t创建时间\t到期时间\t状态\t备注")
    for token_id, person_id, label, created, expires, revoked in rows:
        if revoked:
            state = f"已吊销 {when(revoked)}"
        elif expires <= now:
            state = "已过期"
        else:
            state = "有效"
        person = f"{person_id}（{roster.person_name(person_id)}）"
        line = [str(token_id), person, when(created), when(expires), state, label or ""]
        typer.echo("\t".join(line))


@app.command()
def retention(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="只列出已到期的事件，不作改动")
    ] = False,
) -> None:
    """归档与个人信息保存期限：补充归档已结案事件的处置台账；结案超过
    YUQING_PERSONAL_DATA_RETENTION_DAYS 天的事件，删除公众个人信息（舆情内容、原帖链接、报告人
    姓名）并记录，重新生成归档。每天的定时任务也执行同样的操作；重复执行不会重复删除或记录。"""
    import getpass
    from datetime import UTC, timedelta

    from activities.archive import apply_retention
    from store import archives
    from store.db import session_scope

    settings = get_settings()
    days = settings.personal_data_retention_days
    now = datetime.now(UTC)
    if dry_run:
        with session_scope(settings.database_url) as s:
            missing = archives.unarchived(s)
            due = (
                archives.due_for_redaction(s, closed_before=now - timedelta(days=days))
                if days
                else []
            )
        typer.echo(f"待补充归档：{len(missing)}件" + ("：" + "、".join(missing) if missing else ""))
        if not days:
            typer.echo("个人信息保存期限：未设置（YUQING_PERSONAL_DATA_RETENTION_DAYS=0），不删除")
        else:
            typer.echo(
                f"结案超过{days}天、待删除个人信息：{len(due)}件"
                + ("：" + "、".join(due) if due else "")
            )
        return
    try:
        user = getpass.getuser()
    except Exception:  # no user name in this environment
        user = "未知用户"
    outcome = apply_retention(settings, at=now, by=f"命令行 yuqing retention（{user}）")
    typer.echo(f"补充归档：{len(outcome.archived)}件")
    if days:
        typer.echo(f"按保存期限（结案后{days}天）删除个人信息：{len(outcome.redacted)}件")
        for incident_id in outcome.redacted:
            typer.echo(f"  {incident_id}")
    else:
        typer.echo("个人信息保存期限：未设置（YUQING_PERSONAL_DATA_RETENTION_DAYS=0），不删除")
    if outcome.failed:
        _fail("以下事件处理失败（详见日志）：" + "、".join(outcome.failed))


@app.command()
def worker() -> None:
    """运行 worker（执行事件流程和活动）。"""
    from runtime.worker import run

    run()


@app.command()
def web(host: str = "127.0.0.1", port: Annotated[int, typer.Option(help="端口")] = 8000) -> None:
    """运行网页和 JSON 接口。"""
    import uvicorn

    from runtime.observability import configure_logging, secret_values

    # As the worker's: YUQING_LOG_FORMAT (text or JSON lines), secrets redacted, uvicorn's own
    # lines (the access log with each URL) included.
    settings = get_settings()
    configure_logging(settings.log_format, secrets=secret_values(settings))
    uvicorn.run("starter.web.app:create_app", factory=True, host=host, port=port, log_config=None)


codec_app = typer.Typer(help="载荷加密密钥（YUQING_CODEC_KEYS）", no_args_is_help=True)
app.add_typer(codec_app, name="codec-key")


@codec_app.command("new")
def codec_key_new(key_id: Annotated[str, typer.Argument(help="密钥编号，如 2026-11")]) -> None:
    """生成一个新的 AES-256 密钥条目（KEY_ID:BASE64）。轮换：把新条目放在最前，旧条目保留用于解密。"""
    from runtime.codec import new_key_entry

    if not key_id.strip() or ":" in key_id or "," in key_id:
        _fail("密钥编号不能为空，也不能含“:”或“,”", EXIT_INVALID)
    typer.echo(new_key_entry(key_id.strip()))


@app.command("export-history")
def export_history(
    incident_id: Annotated[str, typer.Argument(help="事件编号（工作流 ID）")],
    out: Annotated[Path | None, typer.Option("--out", help="写入文件（默认输出到屏幕）")] = None,
    decode: Annotated[
        bool, typer.Option("--decode", help="用 YUQING_CODEC_KEYS 解密后导出（供审计或回放测试）")
    ] = False,
) -> None:
    """导出事件的 Temporal 历史（JSON），供回放测试（tests/histories/）或审计存档。"""
    import asyncio

    from google.protobuf import json_format
    from temporalio.service import RPCError

    from runtime.client import codec_for, connect
    from runtime.codec import decode_message

    async def run() -> str:
        settings = get_settings()
        try:
            client = await connect(settings)
        except Exception as exc:
            _fail(f"无法连接 Temporal {settings.temporal_address}（{exc}）", EXIT_UNREACHABLE)
        try:
            history = await client.get_workflow_handle(incident_id).fetch_history()
        except RPCError as exc:
            _fail(f"无法读取事件“{incident_id}”的历史：{exc.message}", EXIT_NOT_FOUND)
        proto = history.to_json_dict()
        if decode:
            codec = codec_for(settings)
            if codec is None:
                _fail("未设置 YUQING_CODEC_KEYS，无法解密", EXIT_INVALID)
            from temporalio.api.history.v1 import History

            message = json_format.ParseDict(proto, History())
            await decode_message(message, codec)
            proto = json_format.MessageToDict(message)
        return json.dumps(proto, ensure_ascii=False, indent=2)

    text = asyncio.run(run())
    if out is None:
        typer.echo(text)
    else:
        out.write_text(text + "\n", encoding="utf-8")
        typer.echo(f"已写入 {out}")


@app.command("search-attributes")
def search_attributes(
    cli_args: Annotated[
        bool,
        typer.Option(
            "--cli-args", help="输出 temporal server start-dev 的 --search-attribute 参数"
        ),
    ] = False,
) -> None:
    """列出事件流程的搜索属性（名称=类型）；yuqing setup 注册的、scripts/up.sh 传给开发服务器的即此清单。"""
    from workflows.search_attributes import cli_args as dev_server_args

    args = dev_server_args()
    if cli_args:
        typer.echo(" ".join(args))
    else:
        for value in args[1::2]:
            typer.echo(value)


@app.command()
def setup() -> None:
    """注册搜索属性，创建或更新每日简报、每周问责汇总、每日归档和每月通联测试的定时任务。"""
    import asyncio

    asyncio.run(_setup())


async def _setup() -> None:
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import (
        AddSearchAttributesRequest,
        ListSearchAttributesRequest,
    )
    from temporalio.service import RPCError

    from runtime.client import connect
    from starter.schedules import (
        REACH_TEST_SCHEDULE_ID,
        RETENTION_LABEL,
        RETENTION_SCHEDULE_ID,
        SCHEDULES,
        ensure_schedules,
        reach_test_label,
    )
    from workflows.search_attributes import SEARCH_ATTRIBUTES

    settings = get_settings()
    try:
        client = await connect(settings)
    except Exception as exc:  # connection refused, bad TLS files, …
        _fail(f"无法连接 Temporal {settings.temporal_address}（{exc}）", EXIT_UNREACHABLE)
    namespace = settings.temporal_namespace
    typer.echo(f"Temporal {settings.temporal_address}，命名空间 {namespace}")

    # The search attributes IncidentWorkflow upserts (README: Production).
    def type_name(value: int) -> str:
        name = IndexedValueType.Name(IndexedValueType.ValueType(value))
        return name.removeprefix("INDEXED_VALUE_TYPE_").title()

    try:
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
        existing = {**listed.system_attributes, **listed.custom_attributes}
        missing = {}
        for key in SEARCH_ATTRIBUTES:
            wanted = int(key.indexed_value_type)
            have = existing.get(key.name)
            if have is None:
                missing[key.name] = wanted
            elif int(have) != wanted:
                typer.echo(
                    f"  警告：搜索属性 {key.name} 已注册为 {type_name(have)}，"
                    f"流程需要 {type_name(wanted)}，请人工处理",
                    err=True,
                )
            else:
                typer.echo(f"  搜索属性 {key.name}（{type_name(wanted)}）：已存在")
        if missing:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(
                    namespace=namespace,
                    search_attributes={
                        name: IndexedValueType.ValueType(value) for name, value in missing.items()
                    },
                )
            )
            for name, value in missing.items():
                typer.echo(f"  搜索属性 {name}（{type_name(value)}）：已注册")
    except RPCError as exc:
        # Temporal Cloud registers them through its own console or tcld, not the operator API.
        typer.echo(
            f"  警告：无法检查或注册搜索属性（{exc.message}）；请按 README“Production”一节手工注册",
            err=True,
        )

    try:
        done = dict(await ensure_schedules(client, settings))
    except RPCError as exc:
        _fail(f"无法创建定时任务：{exc.message}")
    words = {"created": "已创建", "updated": "已更新"}
    labels = [(spec.id, spec.label) for spec in SCHEDULES]
    labels.append((RETENTION_SCHEDULE_ID, RETENTION_LABEL))
    labels.append((REACH_TEST_SCHEDULE_ID, reach_test_label(settings)))
    for schedule_id, label in labels:
        typer.echo(
            f"  定时任务 {schedule_id}（{label}，{settings.timezone}，"
            f"任务队列 {settings.temporal_task_queue}）：{words[done[schedule_id]]}"
        )


notify_app = typer.Typer(help="通知渠道", no_args_is_help=True)
app.add_typer(notify_app, name="notify")

TEST_SUBJECT = "【测试】舆情应急处置系统通知测试"


@notify_app.command("test")
def notify_test(person_id: Annotated[str, typer.Argument(help="名册中的人员编号")]) -> None:
    """向某人名册中的每个通知渠道发送一条测试消息（同时写入站内信），逐个报告结果。"""
    import uuid
    from datetime import UTC

    from activities.channels import Channels, OutgoingMessage, SmsSettings, SmtpSettings
    from plan.roster import ChannelRef, InboxChannel, SmsChannel, channel_ref, channel_target
    from store import notifications
    from store.db import session_scope

    settings = get_settings()
    try:
        roster = load_roster(settings.roster_file)
    except RosterError as exc:
        _fail(str(exc))
    person = roster.person(person_id)
    if person is None:
        _fail(f"人员“{person_id}”不在名册中（{settings.roster_file}）")
    now = datetime.now(UTC)
    stamp = now.astimezone(ZoneInfo(settings.timezone)).strftime("%Y-%m-%d %H:%M:%S")
    message = OutgoingMessage(
        key=f"notify-test:{person.id}:{uuid.uuid4().hex}",
        subject=TEST_SUBJECT,
        body=(
            f"{person.name}：这是一条测试消息，用于确认您在名册中登记的通知渠道可以收到"
            f"{roster.town}舆情应急处置系统的通知，无需回复或处理。\n发送时间：{stamp}"
        ),
        link=settings.public_url,
        rule="R-ORG",
        incident_id="notify-test",
        recipient_id=person.id,
        recipient_name=person.name,
        sent_at=now.isoformat(),
        brief=["测试消息，无需回复或处理。", f"发送时间：{stamp}"],
        # A test SMS: number 000 of today, "（通知测试）：新通知，请登录系统查看".
        short_number=now.astimezone(ZoneInfo(settings.timezone)).strftime("%Y-%m%d-000"),
        deadline="通知测试",
    )
    typer.echo(f"向{person.name}（{person.id}）发送测试消息：")
    failed = 0
    try:
        with session_scope(settings.database_url) as session:
            notifications.write_inbox(
                session,
                key=message.key,
                incident_id=message.incident_id,
                rule=message.rule,
                recipient=person.id,
                subject=message.subject,
                body=message.body,
                link=message.link,
                drill=False,
                created_at=now,
            )
        typer.echo("  站内信  OK")
    except Exception as exc:  # a database that is down or not migrated
        failed += 1
        typer.echo(f"  站内信  失败：{exc}")
    smtp = SmtpSettings.from_settings(settings)
    # A roster file declares its channels in full (load_roster refuses bare references).
    external = [c for c in person.channels if not isinstance(c, InboxChannel | ChannelRef)]
    with httpx.Client(timeout=settings.webhook_timeout_seconds) as http:
        channels = Channels(http, smtp, SmsSettings.from_settings(settings))
        for channel in external:
            target = channel_target(channel)
            try:
                if isinstance(channel, SmsChannel):
                    # The number is the person's (mobile), filled in as the worker does.
                    resolved = roster.resolve(person.id, channel_ref(channel))
                    if isinstance(resolved, str):
                        raise ValueError(resolved)
                    channels.send(message, resolved)
                else:
                    channels.send(message, channel)
            except Exception as exc:  # Retryable, Refused, or anything unexpected
                failed += 1
                typer.echo(f"  {target}  失败：{exc}")
            else:
                typer.echo(f"  {target}  OK")
    if failed:
        typer.echo(f"{failed}个渠道发送失败", err=True)
        raise typer.Exit(1)
    typer.echo(f"全部{len(external) + 1}个渠道发送成功")


# ---------------------------------------------------------------- incidents


@app.command()
def submit(
    title: Annotated[str, typer.Option(help="标题")],
    content: Annotated[str, typer.Option(help="内容摘要")],
    source: Annotated[str, typer.Option(help="来源；上级交办的写“上级交办”")],
    discovered_at: Annotated[
        str, typer.Option(help="发现时间，ISO 8601，如 2026-11-29T08:30:00+08:00")
    ],
    reporter_unit: Annotated[str, typer.Option(help="报告单位编号")],
    url: Annotated[str | None, typer.Option(help="原帖链接")] = None,
    posted_at: Annotated[str | None, typer.Option(help="发帖时间")] = None,
    reporter_name: Annotated[str | None, typer.Option(help="报告人")] = None,
    severity: Annotated[str | None, typer.Option(help="general / major / urgent")] = None,
    category: Annotated[
        str | None, typer.Option(help="inquiry / hype / fabrication / suggestion")
    ] = None,
    responsible_unit: Annotated[str | None, typer.Option(help="责任单位编号")] = None,
    oral: Annotated[bool, typer.Option(help="已电话口头报告（R-WRITTEN）")] = False,
    oral_at: Annotated[
        str | None,
        typer.Option(help="电话口头报告时间，ISO 8601；已登录报告时视为报告时间（R-REPORT）"),
    ] = None,
    drill_speedup: Annotated[float | None, typer.Option(help="演练加速倍数（R-DRILL）")] = None,
    key: Annotated[str | None, typer.Option(help="提交编号（重复提交只立一个事件）")] = None,
    lead: Annotated[
        bool, typer.Option("--lead", help="作为监测线索报送，待办公室确认（R-OFFICE）")
    ] = False,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """报告一条舆情（或报送监测线索），启动处置流程。"""
    body: dict[str, Any] = {
        "title": title,
        "content": content,
        "source": source,
        "discovered_at": discovered_at,
        "reporter_unit": reporter_unit,
        "oral": oral,
    }
    optional = {
        "url": url,
        "posted_at": posted_at,
        "reporter_name": reporter_name,
        "severity": severity,
        "category": category,
        "responsible_unit": responsible_unit,
        "drill_speedup": drill_speedup,
        "submission_key": key,
        "oral_reported_at": oral_at,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    path = "/api/leads" if lead else "/api/incidents"
    _print_incident(_request("POST", path, body=body, token=token), as_json)


@app.command()
def show(incident_id: str, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """查看一个事件的状态、期限台账和督办情况。"""
    _print_incident(_request("GET", f"/api/incidents/{incident_id}", token=token), as_json)


@app.command("list")
def list_(
    phase: Annotated[
        str | None, typer.Option(help="lead / triage / handling / tracking / summary / closed")
    ] = None,
    unit: Annotated[str | None, typer.Option(help="责任单位编号")] = None,
    overdue: Annotated[
        bool | None, typer.Option("--overdue/--not-overdue", help="只看逾期/未逾期")
    ] = None,
    q: Annotated[
        str | None, typer.Option("--q", "-q", help="关键词或短编号（如 2026-1130-007）")
    ] = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """列出事件，最近的期限在前；-q 按标题、内容或短编号查找。"""
    params = {"phase": phase, "unit": unit, "overdue": overdue, "q": q}
    query = urllib.parse.urlencode(
        {
            k: str(v).lower() if isinstance(v, bool) else v
            for k, v in params.items()
            if v is not None
        }
    )
    data = _request("GET", "/api/incidents" + (f"?{query}" if query else ""), token=token)
    if as_json:
        typer.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    for item in data["items"]:
        flag = "  已逾期" if item["overdue"] else ""
        typer.echo(
            f"{item['id']}  {item.get('short_number') or '-'}  {item['phase']:<8} "
            f"{item['severity']:<7} "
            f"下一期限 {_local(item['next_due_at'])}{flag}  {item['title']}"
        )
    if not data["items"]:
        typer.echo("暂无事件")


@app.command()
def report(
    start: Annotated[str, typer.Option(help="开始日期，如 2026-11-01")],
    end: Annotated[str, typer.Option(help="结束日期（含）")],
    token: TokenOpt = None,
    as_json: JsonOpt = False,
    xlsx: Annotated[
        Path | None, typer.Option("--xlsx", help="另存为 Excel 文件（含标题行和合计行）")
    ] = None,
) -> None:
    """各单位按期完成率、迟报/逾期/谎报/瞒报/漏报次数（误报撤销作废的不计）和表彰（R-ACCOUNT、R-COMMEND），不含演练。"""
    if xlsx is not None:
        query = urllib.parse.urlencode({"start": start, "end": end})
        content = _download(f"/api/reports/accountability.xlsx?{query}", token=token)
        xlsx.write_bytes(content)
        typer.echo(f"已导出 Excel：{xlsx}（{start} 至 {end}，不含演练）")
        return
    data = _request("GET", f"/api/reports/accountability?start={start}&end={end}", token=token)
    if as_json:
        typer.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    typer.echo(f"{data['start']} 至 {data['end']}")
    for row in data["units"]:
        rate = "-" if row["on_time_rate"] is None else f"{row['on_time_rate'] * 100:.1f}%"
        records = "，".join(f"{k}{v}次" for k, v in row["records"].items()) or "无"
        typer.echo(
            f"  {row['unit_name']}：按期{row['on_time']}，逾期完成{row['late']}，"
            f"未完成{row['missed']}，进行中{row['pending']}，按期率{rate}；"
            f"问责记录：{records}"
            + (f"（另有{row['voided']}条因误报撤销作废）" if row.get("voided") else "")
            + f"；表彰{len(row['commendations'])}次"
        )
    if not data["units"]:
        typer.echo("  该期间无记录")


@app.command("reach-test")
def reach_test(token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """立即发起通联测试：向领导小组成员、办公室人员和各单位负责人的每个通知渠道各发一条消息，请本人确认收到（限领导小组办公室和组长）。"""
    data = _request("POST", "/api/reach-tests", token=_need_token(token))
    if as_json:
        typer.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    typer.echo(f"通联测试已发起，编号：{data['run_id']}")
    typer.echo("结果见领导小组看板“通联情况”；各人须登录后在收件箱中确认收到。")


@app.command("reach-confirm")
def reach_confirm(token: TokenOpt = None) -> None:
    """确认收到最近一次通联测试（本人令牌）。"""
    data = _request("POST", "/api/reach-tests/confirm", token=_need_token(token))
    typer.echo(data["message"])


def _need_token(token: str | None) -> str:
    if not token:
        _fail(
            "需要令牌：使用 --token 或设置 YUQING_TOKEN（yuqing token create 人员编号）",
            EXIT_FORBIDDEN,
        )
    return token


@app.command()
def attach(
    incident_id: Annotated[str, typer.Argument(help="事件编号")],
    path: Annotated[Path, typer.Argument(help="要上传的文件：图片（PNG、JPEG、WebP）、PDF或DOCX")],
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """为事件添加附件（按文件内容识别类型）；书面信息、书面总结以文档报送时，将显示的附件编号
    用于 file-written-report 或 submit-summary 的 --attachment-id。"""
    token = _need_token(token)
    if not path.is_file():
        _fail(f"文件不存在或不可读：{path}", EXIT_INVALID)
    with path.open("rb") as f:
        data = _request(
            "POST",
            f"/api/incidents/{urllib.parse.quote(incident_id)}/attachments",
            token=token,
            files={"file": (path.name, f, "application/octet-stream")},
        )
    if as_json:
        typer.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    typer.echo(f"已添加附件：{data['name']}（{_kind(data['media_type'])}，{data['size']}字节）")
    typer.echo(f"  附件编号：{data['id']}")


def _kind(media_type: str) -> str:
    return ATTACHMENT_TYPES.get(media_type, media_type)


@app.command()
def attachments(
    incident_id: Annotated[str, typer.Argument(help="事件编号")],
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """列出事件的附件（编号、文件名、类型、添加人和时间）。"""
    token = _need_token(token)
    data = _request("GET", f"/api/incidents/{urllib.parse.quote(incident_id)}", token=token)
    items = data.get("attachments", [])
    if as_json:
        typer.echo(json.dumps(items, ensure_ascii=False, indent=2))
        return
    for a in items:
        typer.echo(
            f"{a['id']}  {a['name']}  {_kind(a['media_type'])}  {a['size']}字节  "
            f"{a['added_by']}  {_local(a.get('added_at'))}"
        )
    if not items:
        typer.echo("该事件暂无附件")


# ---------------------------------------------------------------- 代理 (issue 20, item 3)


def _instant(value: str | None, flag: str) -> str | None:
    """A time on the command line: ISO 8601, in the town's zone when it names none."""
    if not value:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        _fail(f"{flag} 时间格式不正确，应为 2026-12-01T18:00 或带时区的 ISO 8601", EXIT_INVALID)
    return (at if at.tzinfo else at.replace(tzinfo=ZoneInfo(get_settings().timezone))).isoformat()


def _print_absence(a: dict[str, Any]) -> None:
    reason = f"  事由：{a['reason']}" if a.get("reason") else ""
    typer.echo(
        f"{a['id']}  {a['person_name']}（{a['person']}）  {a['period']}  "
        f"代理人：{a['stand_in_name']}（{a['stand_in']}）  {a['state']}{reason}"
    )


@absence_app.command("declare")
def absence_declare(
    stand_in: Annotated[str, typer.Option("--stand-in", help="代理人（名册人员编号）")],
    until: Annotated[str, typer.Option("--until", help="结束时间，如 2026-12-05T18:00")],
    start: Annotated[str | None, typer.Option("--from", help="开始时间（不填为现在）")] = None,
    person: Annotated[
        str | None, typer.Option("--person", help="不在岗人员（不填为本人；为他人登记限办公室）")
    ] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="事由（如 出差）")] = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """登记不在岗：期间由代理人代为审批、签收，督办通知改发代理人。"""
    body: dict[str, Any] = {"stand_in": stand_in, "ends_at": _instant(until, "--until")}
    extra = {"starts_at": _instant(start, "--from"), "person": person, "reason": reason}
    body.update({k: v for k, v in extra.items() if v})
    data = _request("POST", "/api/absences", token=_need_token(token), body=body)
    if as_json:
        typer.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    typer.echo("已登记：")
    _print_absence(data["absence"])
    typer.echo(data["told"]["message"])


@absence_app.command("list")
def absence_list(token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """列出未结束和近7天结束的不在岗登记。"""
    data = _request("GET", "/api/absences", token=_need_token(token))
    if as_json:
        typer.echo(json.dumps(data["absences"], ensure_ascii=False, indent=2))
        return
    for a in data["absences"]:
        _print_absence(a)
    if not data["absences"]:
        typer.echo("暂无不在岗登记")


@absence_app.command("end")
def absence_end(
    absence_id: Annotated[int, typer.Argument(help="登记编号（yuqing absence list）")],
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """销假：不在岗提前结束（未开始的即撤销）。"""
    data = _request("POST", f"/api/absences/{absence_id}/end", token=_need_token(token))
    if as_json:
        typer.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    typer.echo("已销假：")
    _print_absence(data["absence"])
    typer.echo(data["told"]["message"])


@absence_app.command("sync")
def absence_sync() -> None:
    """把当前的不在岗登记再次通知所有办理中的事件（管理命令：通知失败后重试）。"""
    import asyncio

    from runtime.client import connect
    from starter.standins import tell_incidents

    async def run() -> str:
        settings = get_settings()
        try:
            client = await connect(settings)
        except Exception as exc:  # connection refused, bad TLS files, …
            _fail(f"无法连接 Temporal {settings.temporal_address}（{exc}）", EXIT_UNREACHABLE)
        told = await tell_incidents(client, settings)
        if told.failed:
            _fail(told.words(), EXIT_UNREACHABLE)
        return told.words()

    typer.echo(asyncio.run(run()))


# ---------------------------------------------------------------- staff actions


def _act(
    incident_id: str, action: str, body: dict[str, Any], token: str | None, as_json: bool
) -> None:
    if not token:
        _fail(
            "需要令牌：使用 --token 或设置 YUQING_TOKEN（yuqing token create 人员编号）",
            EXIT_FORBIDDEN,
        )
    data = _request(
        "POST", f"/api/incidents/{incident_id}/actions/{action}", token=token, body=body
    )
    _print_incident(data, as_json)


def _option_type(annotation: Any) -> tuple[Any, bool]:
    """A request field's type as typer takes it, and whether it is a list."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (types.UnionType, typing.Union) and len(args) == 1:
        annotation = args[0]
    if typing.get_origin(annotation) is list:
        return typing.get_args(annotation)[0], True
    return annotation, False


def _action_command(name: str, model: type[BaseModel]) -> None:
    """`yuqing NAME INCIDENT_ID --field …`: one command per staff action, built from the request
    schema its API route uses, so the two cannot drift apart."""
    params = [
        inspect.Parameter(
            "incident_id",
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            annotation=Annotated[str, typer.Argument(help="事件编号")],
        )
    ]
    for field, info in model.model_fields.items():
        kind, many = _option_type(info.annotation)
        flag = "--" + field.replace("_", "-")
        label = field_label(field, name)
        default: Any
        if kind is bool:
            default = info.default if isinstance(info.default, bool) else False
            annotation: Any = Annotated[
                bool, typer.Option(f"{flag}/--no-{field.replace('_', '-')}", help=label)
            ]
        elif many:
            default = None
            annotation = Annotated[
                list[kind] | None,  # type: ignore[valid-type]
                typer.Option(flag, help=f"{label}（可重复）"),
            ]
        elif info.is_required():
            default = ...
            annotation = Annotated[kind, typer.Option(flag, help=label)]
        else:
            default = info.default
            annotation = Annotated[kind | None, typer.Option(flag, help=label)]
        params.append(
            inspect.Parameter(
                field, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
            )
        )
    params += [
        inspect.Parameter(
            "token", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=TokenOpt
        ),
        inspect.Parameter(
            "as_json", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=JsonOpt
        ),
    ]

    def command(**kwargs: Any) -> None:
        incident_id = kwargs.pop("incident_id")
        token = kwargs.pop("token")
        as_json = kwargs.pop("as_json")
        body: dict[str, Any] = {}
        for key, value in kwargs.items():
            if value is None:
                continue
            if isinstance(value, list):
                value = [v.value if isinstance(v, Enum) else v for v in value]
            body[key] = value.value if isinstance(value, Enum) else value
        _act(incident_id, name, body, token, as_json)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    _ACTION_COMMANDS[name] = command
    app.command(name)(command)


_ACTION_COMMANDS: dict[str, Any] = {}

for _name, _rule in ACTIONS.items():
    _action_command(_name, _rule.request)


def describe(spec: PlanSpec) -> None:
    """The action commands' help, naming the periods of `spec` (typer reads it when it runs)."""
    for name, command in _ACTION_COMMANDS.items():
        rule = ACTIONS[name]
        command.__doc__ = f"{rule.help_for(spec)}（由{rule.who.value}执行）"


describe(shipped())  # the console script runs `app` directly: its help names the shipped plan


def main() -> None:  # pragma: no cover - console entry
    # The help names the periods of the plan new incidents start under (YUQING_PLAN_FILE).
    describe(plan_from(get_settings().plan_file))
    app(prog_name=os.path.basename(sys.argv[0]))
