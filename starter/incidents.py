"""Starting incidents and acting on them: the one path the web pages, the JSON API and the CLI share.

Bad input is refused here, before anything reaches Temporal, with messages in Chinese that name
the field. Refusals from the workflow's update validators come back as the same kind of error.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ValidationError
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from config.settings import Settings
from plan.actions import ACTIONS, UPLOADS
from plan.models import (
    SHORT_MAX,
    Absences,
    ActionDone,
    AttachRequest,
    IncidentInput,
    IncidentView,
    Submission,
)
from plan.roster import Roster
from plan.spec import plan_from
from starter.errors import FIELD_LABELS, FieldError, field_label, translate
from store import absences, incident_rows
from store.db import session_scope
from workflows.incident import IncidentWorkflow
from workflows.search_attributes import at_start

# An action that meets an incident in its first moment is tried again this often.
ACT_ATTEMPTS = 5

# A submitted discovery time may run ahead of the server's clock by this much (clock skew).
CLOCK_SKEW = timedelta(minutes=5)

# No post, discovery or call is older than this: an earlier time is a typo or a bad clock (and a
# time near year 1 cannot even be shown in the town's zone, so its workflow could not run).
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)

# Invisible on the pages, unsafe in e-mail and webhooks, refused by PostgreSQL (NUL): C0 controls
# other than tab, line feed and carriage return, and DEL. Refused in every text field.
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

# A title is one line: it becomes an e-mail's Subject (a header, which may not break), the head of
# every robot message and the Temporal summary. Refused (not collapsed), so what the office reads is
# what was sent: every character str.splitlines() breaks on, the e-mail package's own test.
LINE_BREAKS = re.compile(r"[\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")

# Action fields that name roster units or people; checked here so an unknown one is a 422 naming
# the field, before anything reaches Temporal (the workflow's validators check again).
UNIT_FIELDS = ("responsible_unit", "unit", "units", "co_units")
PERSON_FIELDS = ("spokesperson", "person", "participants", "persons")

# Each action is the workflow update of the same name (kebab-case → snake_case); an action of the
# table without one of its own goes through the generic update `act` (by name).
UPDATES = {
    name: getattr(IncidentWorkflow, name.replace("-", "_"))
    for name in ACTIONS
    if hasattr(IncidentWorkflow, name.replace("-", "_"))
}


class ServiceError(Exception):
    """An error shown to the person: `status` is the HTTP status the API answers with."""

    def __init__(self, status: int, message: str, fields: list[FieldError] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.fields = fields or []


@dataclass
class Submitted:
    view: IncidentView
    created: bool  # False when the same submission_key had already started it (R-DEDUP)


def incident_id_for(sub: Submission) -> str:
    """The workflow id (R-DEDUP). A submission key maps to one id, and so does an identical
    submission without one (a double click, a retried request), so a resubmission finds its
    incident instead of starting another. It is a hash: nothing personal goes into it."""
    if sub.submission_key:
        basis = "key:" + sub.submission_key
    else:
        fields = sub.model_dump(mode="json", exclude={"submission_key"})
        basis = "content:" + json.dumps(fields, sort_keys=True, ensure_ascii=False)
    digest = hashlib.sha256(basis.encode()).hexdigest()[:12].upper()
    return f"YQ-{sub.discovered_at:%Y%m%d}-{digest}"


TIME_FIELDS = ("discovered_at", "posted_at", "oral_reported_at")
FACT_FIELDS = (*TIME_FIELDS, "reporter_unit", "responsible_unit", "oral")


def _instant(value: Any) -> datetime | None:
    """A stated time as the schema would read it, or None (absent, or not a time with a zone)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else None
    try:
        at = datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None
    return at if at is not None and at.tzinfo is not None else None


def _fact_errors(data: dict[str, Any], roster: Roster, now: datetime) -> list[FieldError]:
    """The checks on the submission's facts (times against now and each other, units against the
    roster), on whichever fields can be read: run with the schema's own, so every field's error
    comes in one answer (issue 18: the future-date error came only once the others were fixed)."""
    errors: list[FieldError] = []
    at = {name: _instant(data.get(name)) for name in TIME_FIELDS}
    for name, when in at.items():
        if when is not None and when < EARLIEST:
            errors.append(FieldError(name, f"{FIELD_LABELS[name]}不能早于2000年1月1日"))
    reporter, responsible = data.get("reporter_unit"), data.get("responsible_unit")
    if isinstance(reporter, str) and reporter and roster.unit(reporter) is None:
        errors.append(FieldError("reporter_unit", f"报告单位“{reporter}”不在名册中"))
    if isinstance(responsible, str) and responsible and roster.unit(responsible) is None:
        errors.append(FieldError("responsible_unit", f"责任单位“{responsible}”不在名册中"))
    discovered, posted, oral_at = at["discovered_at"], at["posted_at"], at["oral_reported_at"]
    if discovered is not None and discovered > now + CLOCK_SKEW:
        errors.append(FieldError("discovered_at", "发现时间不能晚于当前时间"))
    if posted is not None and posted > now + CLOCK_SKEW:
        errors.append(FieldError("posted_at", "发帖时间不能晚于当前时间"))
    if oral_at is not None:
        # R-WRITTEN counts from the call: a call in the future or before the post was found would
        # move that deadline.
        if data.get("oral") not in (True, "true", "on", "1", 1):
            errors.append(FieldError("oral_reported_at", "仅电话口头报告需要填写口头报告时间"))
        elif oral_at > now + CLOCK_SKEW:
            errors.append(FieldError("oral_reported_at", "口头报告时间不能晚于当前时间"))
        elif discovered is not None and oral_at < discovered:
            errors.append(FieldError("oral_reported_at", "口头报告时间不能早于发现时间"))
    return errors


def parse_submission(data: dict[str, Any], roster: Roster, now: datetime) -> Submission:
    """Validate a submission against its schema and the roster; raise ServiceError(422) with
    every field's error at once."""
    sub: Submission | None = None
    try:
        sub = Submission.model_validate(data)
    except ValidationError as exc:
        errors = translate(exc)
    else:
        errors = _text_errors(sub)
        if LINE_BREAKS.search(sub.title) and not any(e.field == "title" for e in errors):
            errors.append(FieldError("title", f"{_label('title')}：不能换行，请写在一行内"))
    facts = data if sub is None else {name: getattr(sub, name) for name in FACT_FIELDS}
    named = {e.field for e in errors}
    errors += [e for e in _fact_errors(facts, roster, now) if e.field not in named]
    if errors or sub is None:
        raise ServiceError(422, "提交内容有误", errors)
    return sub


async def submit(
    client: Client,
    settings: Settings,
    roster: Roster,
    data: dict[str, Any],
    *,
    submitted_by: str | None = None,
    evidence: list[AttachRequest] | None = None,
) -> Submitted:
    """Start an incident from a submission; `submitted_by` is the signed-in person who sent it
    (None: anonymous, whose stated times are shown but never clear a deadline). `evidence`: the
    references of files sent with it, already checked and on disk (issue 19, item 5)."""
    received_at = datetime.now(UTC)
    sub = parse_submission(data, roster, received_at)
    incident_id = incident_id_for(sub)
    related, absences = await asyncio.to_thread(
        _from_store, settings, sub.url, incident_id, received_at
    )
    plan = plan_from(settings.plan_file)
    inp = IncidentInput(
        incident_id=incident_id,
        submission=sub,
        received_at=received_at,
        submitted_by=submitted_by,
        # Only the roster's public part: channels by reference, no phone numbers. The worker
        # resolves each channel in its own roster when it delivers (issue 15).
        roster=roster.public(),
        plan=plan,
        plan_version=plan.version,
        timezone=settings.timezone,
        escalation_waits_minutes=settings.escalation_waits_minutes,
        public_url=settings.public_url,
        search_attributes=settings.search_attributes,
        related=related,
        continue_as_new_after=settings.continue_as_new_after,
        delivery_give_up_minutes=settings.delivery_give_up_minutes,
        evidence=evidence or [],
        absences=absences if absences.items else None,
    )
    created = True
    try:
        handle = await client.start_workflow(
            IncidentWorkflow.run,
            inp,
            id=incident_id,
            task_queue=settings.temporal_task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            static_summary=("【演练】" if sub.is_drill else "") + _clip(sub.title, 150),
            static_details=f"来源：{_clip(sub.source, 60)}　报告单位：{roster.unit_name(sub.reporter_unit)}",
            # Found by its phase, severity, drill flag, plan version… from the start, before a
            # worker has run it; the workflow upserts them as they change.
            search_attributes=at_start(inp, received_at) if settings.search_attributes else None,
        )
    except WorkflowAlreadyStartedError:
        created = False
        handle = client.get_workflow_handle(incident_id)
    if created:
        for other in related:
            # Best effort: the link is already in the new incident's own history.
            with contextlib.suppress(RPCError):
                await client.get_workflow_handle(other).signal(
                    IncidentWorkflow.related_reported, incident_id
                )
    try:
        view = await handle.query(IncidentWorkflow.view)
    except RPCError as exc:
        # The incident is started and safe in Temporal; only its first answer is late (a busy
        # worker). Say so with its id: sending the same report again returns it (R-DEDUP).
        raise ServiceError(
            503,
            f"报告已受理，事件编号 {incident_id}；系统繁忙，暂时无法显示其期限，请稍后在事件列表中查看"
            f"（{exc.message}）",
        ) from exc
    return Submitted(view=view, created=created)


def _from_store(
    settings: Settings, url: str | None, incident_id: str, now: datetime
) -> tuple[list[str], Absences]:
    """What a new incident starts with from the store, in one session: R-DEDUP, the open
    incidents about the same post (linked as related); 代理, the absences not yet over."""
    with session_scope(settings.database_url) as s:
        related = incident_rows.open_incidents_with_url(s, url=url) if url else []
        return [i for i in related if i != incident_id], absences.current(s, now=now)


async def get(client: Client, incident_id: str, *, run_id: str | None = None) -> IncidentView:
    """The incident's view (of its current run, or of `run_id`)."""
    handle = client.get_workflow_handle(incident_id, run_id=run_id)
    try:
        for attempt in range(QUERY_ATTEMPTS):
            try:
                return await handle.query(IncidentWorkflow.view, rpc_timeout=QUERY_TIMEOUT)
            except RPCError as exc:
                # A query that reached a run in the moment it continued as new, or a worker too
                # busy to answer within QUERY_TIMEOUT (the client's own timeout comes back as
                # CANCELLED "Timeout expired"), can go unanswered: ask again.
                if exc.status not in UNANSWERED or attempt == QUERY_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")
    except WorkflowQueryFailedError as exc:
        # The worker could not answer for this incident (for instance its history does not
        # replay on this code): say so with the id, never a bare 500.
        raise ServiceError(
            503, f"事件“{incident_id}”的状态暂时无法读取，请联系系统管理员（{exc}）"
        ) from exc
    except RPCError as exc:
        if exc.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
            raise ServiceError(404, f"事件“{incident_id}”不存在") from exc
        if exc.status in UNANSWERED:
            # Temporal or the worker is too busy to answer now: a 503 that says so, never a 500
            # (after an accepted action the API answers 200 "操作已受理" instead).
            raise ServiceError(503, f"事件“{incident_id}”的状态暂时无法读取，请稍后刷新") from exc
        raise


UNANSWERED = (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED)
QUERY_ATTEMPTS = 3
QUERY_TIMEOUT = timedelta(seconds=5)


async def act(
    client: Client,
    incident_id: str,
    action: str,
    data: dict[str, Any],
    actor: str,
    *,
    roster: Roster | None = None,
) -> IncidentView:
    """`perform`, then the incident as it is after the action (one query more), read from the run
    that took the action: an action can be the one that makes the incident continue as new, and
    the next run may not answer yet."""
    done = await perform(client, incident_id, action, data, actor, roster=roster)
    return await get(client, incident_id, run_id=done.run_id)


def parse_action(
    action: str, data: dict[str, Any], actor: str, *, roster: Roster | None = None
) -> BaseModel:
    """The action's command from its fields, or ServiceError (404 unknown, 422 invalid): what
    `perform` checks before it asks the workflow."""
    entry = ACTIONS.get(action) or UPLOADS.get(action)
    if entry is None:
        raise ServiceError(404, f"未知操作“{action}”")
    try:
        payload = entry.command.model_validate({**data, "actor": actor})
    except ValidationError as exc:
        raise ServiceError(422, "操作内容有误", translate(exc, action)) from exc
    errors = _text_errors(payload, action) + _action_errors(payload, roster, action)
    if errors:
        raise ServiceError(422, "操作内容有误", errors)
    return payload


async def perform(
    client: Client,
    incident_id: str,
    action: str,
    data: dict[str, Any],
    actor: str,
    *,
    roster: Roster | None = None,
) -> ActionDone:
    """Perform a staff action as `actor` (already authenticated). Wrong phase, wrong role, an
    unknown or a closed incident: ServiceError, and nothing changes. With `roster`, units and
    people the action names are checked against it here (422) rather than by the workflow."""
    payload = parse_action(action, data, actor, roster=roster)
    handle = client.get_workflow_handle(incident_id)
    for attempt in range(ACT_ATTEMPTS):
        try:
            update = UPDATES.get(action)
            if update is None:
                return await handle.execute_update(
                    IncidentWorkflow.act, args=[action, payload.model_dump(mode="json")]
                )
            return await handle.execute_update(update, payload)  # type: ignore[arg-type]
        except WorkflowUpdateFailedError as exc:
            cause = exc.cause
            if (
                isinstance(cause, ApplicationError)
                and cause.type == "NotReady"
                and attempt < ACT_ATTEMPTS - 1
            ):
                # The incident's first moment (its deadlines being set up): try again shortly.
                await asyncio.sleep(0.2 * (attempt + 1))
                continue
            refusal = _refusal(exc)
            if refusal is exc:
                raise
            raise refusal from exc
        except WorkflowUpdateRPCTimeoutOrCancelledError as exc:
            # No answer in time (a busy or stuck worker): whether it was taken is not known.
            raise ServiceError(503, UNCONFIRMED) from exc
        except RPCError as exc:
            if exc.status in UNANSWERED:
                raise ServiceError(503, UNCONFIRMED) from exc
            if exc.status is not RPCStatusCode.NOT_FOUND:
                raise
            gone = await _not_found_or_closed(client, incident_id)
            if gone is None and attempt < ACT_ATTEMPTS - 1:
                # The run it reached had just continued as new, and the incident goes on in the
                # next one: the action was not taken, so take it there.
                continue
            raise (gone or ServiceError(404, f"事件“{incident_id}”不存在")) from exc
    raise AssertionError("unreachable")


UNCONFIRMED = "操作已送出，但系统暂未确认是否受理：请稍后刷新事件查看是否已生效，再决定是否重试"


def _label(name: str, action: str | None = None) -> str:
    return field_label(name, action)


def _text_errors(model: BaseModel, action: str | None = None) -> list[FieldError]:
    """Control characters in any text field (or list of texts) (of `action`'s request, if one)."""
    errors = []
    for name in type(model).model_fields:
        value = getattr(model, name)
        items = value if isinstance(value, list) else [value]
        if any(isinstance(v, str) and CONTROL_CHARS.search(v) for v in items):
            label = _label(name, action)
            errors.append(FieldError(name, f"{label}：不能包含控制字符", label))
    return errors


def _action_errors(
    payload: BaseModel, roster: Roster | None, action: str | None = None
) -> list[FieldError]:
    """What the schema cannot say: each listed id within the short limit, a link that is a web
    link, and (with the roster) units and people that exist."""
    errors: list[FieldError] = []
    fields = type(payload).model_fields
    for name in (*UNIT_FIELDS, *PERSON_FIELDS):
        if name not in fields:
            continue
        value = getattr(payload, name)
        items = [v for v in (value if isinstance(value, list) else [value]) if v]
        if any(len(v) > SHORT_MAX for v in items):
            errors.append(FieldError(name, f"{_label(name)}：每项不能超过{SHORT_MAX}个字"))
            continue
        if roster is None:
            continue
        find = roster.unit if name in UNIT_FIELDS else roster.person
        missing = [v for v in items if find(v) is None]
        if missing:
            errors.append(FieldError(name, f"{_label(name)}：“{_clip(missing[0], 40)}”不在名册中"))
    url = getattr(payload, "url", None)
    if isinstance(url, str) and url and not url.startswith(("http://", "https://")):
        label = _label("url", action)
        errors.append(FieldError("url", f"{label}：链接须以 http:// 或 https:// 开头", label))
    return errors


def _refusal(exc: WorkflowUpdateFailedError) -> Exception:
    """A validator's refusal as the person's error; anything else as it was."""
    cause = exc.cause
    if isinstance(cause, ApplicationError):
        status = 403 if cause.type == "Forbidden" else 409
        return ServiceError(status, cause.message)
    return exc


async def _not_found_or_closed(client: Client, incident_id: str) -> ServiceError | None:
    """Why an update found no run: unknown (404), or ended (409); None when the incident is
    running after all (the run asked had just continued as new)."""
    # The raw call reads the status without decoding search attributes.
    request = DescribeWorkflowExecutionRequest(
        namespace=client.namespace, execution=WorkflowExecution(workflow_id=incident_id)
    )
    try:
        desc = await client.workflow_service.describe_workflow_execution(request)
    except RPCError:
        return ServiceError(404, f"事件“{incident_id}”不存在")
    if desc.workflow_execution_info.status != WorkflowExecutionStatus.RUNNING.value:
        return ServiceError(
            409, "事件已结案，流程已结束（结案后补记期已届满或不适用），不再接受操作"
        )
    return None


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
