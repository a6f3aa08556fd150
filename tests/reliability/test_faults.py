"""Faults against the real processes (tests/reliability/harness.py): drill incidents run while the
worker is killed, the Temporal dev server and PostgreSQL are restarted and the webhook receiver is
down; afterwards nothing is lost or stuck, every R-REPLY escalation step is recorded in the
workflow and the store, and every notification reached the inbox, the outbox and the receiver
exactly once. Staff actions sent twice, or by two people at once, apply once.

Drills run the plan's clock faster (`drill_speedup`): an urgent incident's R-REPLY (3 h) falls due
after 3h/S and the escalation steps follow 60 plan-minutes apart (YUQING_ESCALATION_WAITS_MINUTES).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import warnings
from collections import Counter
from collections.abc import Iterable
from typing import Any

import httpx
from temporalio.client import WorkflowExecutionStatus

from store.models import Delivery, TimelineEvent
from tests.reliability import figures
from tests.reliability.harness import (
    DEPUTY,
    LEADER,
    NAMES,
    OFFICE,
    UNIT,
    UNIT_HEAD,
    UNIT_STAFF,
    DeliveryReport,
    Stack,
    check_deliveries,
    missing_from_inbox,
    poll,
    reliability_stack,
    restart_postgres,
)

PLAN_HOUR = 3600.0
REPLY_HOURS = 3  # R-REPLY for an urgent incident
LAST_STEP_HOURS = REPLY_HOURS + 2  # step 3, two 60-minute waits after step 1


def _plan(hours: float, speedup: float) -> float:
    """Wall seconds for `hours` of a drill's plan time."""
    return hours * PLAN_HOUR / speedup


async def _sleep_until(t: float) -> None:
    await asyncio.sleep(max(0.0, t - time.monotonic()))


async def _escalated(stack: Stack, ids: list[str], within: float) -> dict[str, list[int]]:
    """Wait until the store has R-REPLY steps 1-3 for every incident (or the time is up)."""

    async def done() -> bool:
        stack.check_processes()  # a process that died is reported at once, with its log
        steps = stack.reply_steps_recorded(ids)
        return all(s == [1, 2, 3] for s in steps.values())

    try:
        await poll(done, within=within, every=2.0, what="three escalation steps for every incident")
    except AssertionError as exc:
        print(exc)
    return stack.reply_steps_recorded(ids)


def _reply_chain_problems(incident_id: str, view: dict[str, Any] | int) -> list[str]:
    """The workflow's own account: R-REPLY overdue, escalated to the unit, deputy and leader."""
    if not isinstance(view, dict):
        return [f"{incident_id}: GET answered {view}"]
    problems = []
    reply = next((d for d in view["deadlines"] if d["key"] == "R-REPLY#1"), None)
    if reply is None or not reply["overdue"] or reply["met_at"] is not None:
        problems.append(f"{incident_id}: R-REPLY#1 is not overdue and unmet: {reply}")
    chain = [e for e in view["escalations"] if e["deadline_key"] == "R-REPLY#1"]
    if [e["step"] for e in chain] != [1, 2, 3]:
        problems.append(f"{incident_id}: R-REPLY#1 escalation steps {[e['step'] for e in chain]}")
    elif (
        not {UNIT_HEAD, *OFFICE} <= set(chain[0]["targets"])
        or chain[1]["targets"] != [DEPUTY]
        or chain[2]["targets"] != [LEADER]
    ):
        problems.append(f"{incident_id}: escalation targets {[e['targets'] for e in chain]}")
    return problems


async def _withdraw(stack: Stack, ids: list[str]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """End the drill: the office withdraws each incident. Returns the views the withdrawals
    answered with (final: a closed incident decides no more notifications) and the refusals."""
    views: dict[str, dict[str, Any]] = {}
    refused = []
    limit = asyncio.Semaphore(8)

    async def withdraw(incident_id: str) -> None:
        async with limit:
            try:
                r = await stack.act(incident_id, "withdraw", OFFICE[0], {"reason": "演练结束"})
            except httpx.TransportError as exc:
                refused.append(f"{incident_id}: withdraw: {type(exc).__name__} {exc}")
                return
            if r.status_code == 200:
                views[incident_id] = dict(r.json())
            else:
                refused.append(f"{incident_id}: withdraw answered {r.status_code} {r.text}")

    t = time.monotonic()
    await asyncio.gather(*(withdraw(i) for i in ids))
    print(f"withdrawn in {time.monotonic() - t:.1f}s")
    return views, refused


async def _settled(
    stack: Stack, ids: list[str], within: float
) -> dict[str, WorkflowExecutionStatus | None]:
    """Wait until each withdrawn incident's workflow has finished its deliveries and completed."""

    async def completed() -> bool:
        statuses = await stack.statuses(ids)
        return all(s is WorkflowExecutionStatus.COMPLETED for s in statuses.values())

    try:
        await poll(completed, within=within, every=2.0, what="every incident workflow completed")
    except AssertionError as exc:
        print(exc)
    return await stack.statuses(ids)


def _record(
    test: str,
    *,
    incidents: int,
    stack: Stack,
    report: DeliveryReport,
    lost: Iterable[str],
    stuck: Iterable[str],
    **extra: int | float | str,
) -> None:
    figures.add(
        test,
        incidents=incidents,
        faults_injected=len(stack.faults),
        **report.figures(),
        incidents_lost=len(set(lost)),
        incidents_stuck=len(set(stuck)),
        store=stack.backend,
        faults="; ".join(stack.faults),
        **extra,
    )


# ---------------------------------------------------------------- 1. restarts

RESTART_INCIDENTS = 100
RESTART_SPEEDUP = 360.0  # R-REPLY due 30 s after receipt, escalation steps at 30, 40 and 50 s


async def test_restarts_lose_and_double_nothing() -> None:
    """100 drills with timers and activities pending: the worker is killed (-9), the Temporal dev
    server is killed and started again on its database file, and PostgreSQL (when it is the store)
    is restarted during activity traffic. Afterwards no incident is lost or stuck, each R-REPLY
    escalated three times in the workflow and the store, and every notification arrived once."""
    test = "restarts: worker kill -9, dev server kill, PostgreSQL restart"
    speedup = RESTART_SPEEDUP
    async with reliability_stack("restarts") as stack:
        started = time.monotonic()
        ids = await stack.submit_drills(RESTART_INCIDENTS, speedup, tag="重启")
        print(f"{len(ids)} incidents submitted in {time.monotonic() - started:.1f}s", flush=True)
        assert len(set(ids)) == RESTART_INCIDENTS

        # While the first records, inbox messages and webhooks are being written and every
        # incident's timers are pending.
        await stack.kill_worker(down_for=2)

        # Around the time R-REPLY falls due: the timers fire while the server is away. (Each
        # fault starts once the system is back from the one before.)
        await _sleep_until(started + _plan(REPLY_HOURS, speedup) - 3)
        await stack.restart_temporal(signal.SIGKILL, down_for=5)

        # While the step 1 records and deliveries are being written.
        await _sleep_until(max(started + _plan(REPLY_HOURS + 0.5, speedup), time.monotonic() + 3))
        postgres = "not the store (SQLite)"
        if stack.backend == "postgresql":
            stack.fault("PostgreSQL restart")
            why = restart_postgres()
            if why is None:
                postgres = "restarted"
            else:
                stack.faults.pop()
                postgres = f"SKIPPED: {why}"
                warnings.warn(f"PostgreSQL restart skipped: {why}", stacklevel=1)
                print(f"!!! PostgreSQL restart SKIPPED: {why}", flush=True)

        # No further faults: every incident escalates to the leader, in the store and in the
        # workflow (read through the API as the office).
        deadline = started + _plan(LAST_STEP_HOURS, speedup) + 150
        steps = await _escalated(stack, ids, within=deadline - time.monotonic())
        escalated_at = time.monotonic() - started
        not_recorded = {i: s for i, s in steps.items() if s != [1, 2, 3]}
        views = await stack.views(ids)
        lost = {i for i, v in views.items() if v == 404}
        problems = [p for i, v in views.items() for p in _reply_chain_problems(i, v)]
        print(f"escalated after {escalated_at:.0f}s, read at {time.monotonic() - started:.0f}s")

        # The drill ends: each workflow finishes its deliveries and completes.
        final, refused = await _withdraw(stack, ids)
        statuses = await _settled(stack, ids, within=120)
        print(f"closed and settled at {time.monotonic() - started:.0f}s", flush=True)
        stuck = {i for i, st in statuses.items() if st is not WorkflowExecutionStatus.COMPLETED}
        stuck |= {p.split(":")[0] for p in problems} | set(not_recorded)
        report = check_deliveries(stack, final)
        elapsed = time.monotonic() - started
        _record(
            test,
            incidents=len(ids),
            stack=stack,
            report=report,
            lost=lost,
            stuck=stuck - lost,
            speedup=speedup,
            postgres_restart=postgres,
            outbox_rows=report.outbox_rows,
            escalated_after_seconds=round(escalated_at, 1),
            wall_seconds=round(elapsed, 1),
        )
        print(f"figures: {report.figures()}, lost {len(lost)}, stuck {len(stuck)}, {elapsed:.0f}s")
        assert not lost, f"incidents lost: {sorted(lost)}"
        assert not problems, "\n".join(problems[:20])
        assert not not_recorded, f"escalations table: {not_recorded}"
        assert not refused and len(final) == len(ids), "\n".join(refused[:20])
        assert not stuck, f"incidents stuck: {sorted(stuck)[:20]}"
        assert not report.problems, "\n".join(report.problems)
        assert report.expected >= 10 * len(ids) and report.outbox_rows == report.expected
        assert report.received == report.expected and report.missed == 0
        assert report.duplicated == 0


# ---------------------------------------------------------------- 2. the receiver down

OUTAGE_INCIDENTS = 20
OUTAGE_SPEEDUP = 720.0  # R-REPLY due 15 s after receipt, escalation steps at 15, 20 and 25 s
OUTAGE_SECONDS = 60.0  # at least; until the checks made while it is down are done


async def test_receiver_down_for_a_minute() -> None:
    """The webhook receiver is down for a minute while drills fall due and escalate: the inbox
    and the escalation records are written at once, and when the receiver is back every
    notification arrives, once."""
    test = "webhook receiver down for a minute"
    async with reliability_stack("receiver-down") as stack:
        stack.receiver.stop()
        down_at = time.monotonic()
        ids = await stack.submit_drills(OUTAGE_INCIDENTS, OUTAGE_SPEEDUP, tag="断网")

        # While it is down: every incident escalates to the leader, and everything the
        # workflows decided is in the inbox and the outbox, waiting.
        steps = await _escalated(stack, ids, within=_plan(LAST_STEP_HOURS, OUTAGE_SPEEDUP) + 60)
        not_recorded = {i: s for i, s in steps.items() if s != [1, 2, 3]}
        views = await stack.views(ids)
        lost = {i for i, v in views.items() if v == 404}
        shown = {i: v for i, v in views.items() if isinstance(v, dict)}
        problems = [p for i, v in views.items() for p in _reply_chain_problems(i, v)]

        async def inbox_written() -> bool:
            return not missing_from_inbox(stack, shown)

        with contextlib.suppress(AssertionError):
            await poll(inbox_written, within=15, every=0.5, what="the inbox")
        absent = missing_from_inbox(stack, shown)
        waiting = [d for d in stack.rows(Delivery, ids) if d.kind == "webhook"]
        tried = [d for d in waiting if d.attempts >= 1 and d.last_error]
        print(
            f"while down: {len(waiting)} outbox rows, {len(tried)} tried and failing, "
            f"{Counter(d.state for d in waiting)}",
            flush=True,
        )
        assert not absent, "\n".join(absent)
        assert not not_recorded, f"escalations table while the receiver was down: {not_recorded}"
        assert not problems, "\n".join(problems[:20])
        assert waiting and all(d.state == "pending" for d in waiting)
        assert tried, "no delivery was tried while the receiver was down"
        assert not stack.receiver.snapshot()

        # The office ends the drill while the receiver is still down: the deliveries go on.
        final, refused = await _withdraw(stack, ids)
        await _sleep_until(down_at + OUTAGE_SECONDS)
        stack.receiver.start()
        back_at = time.monotonic()
        stack.fault(f"webhook receiver down {back_at - down_at:.0f}s")
        statuses = await _settled(stack, ids, within=150)
        stuck = {i for i, st in statuses.items() if st is not WorkflowExecutionStatus.COMPLETED}
        report = check_deliveries(stack, final)
        arrivals = [r.at - back_at for r in stack.receiver.snapshot()]
        _record(
            test,
            incidents=len(ids),
            stack=stack,
            report=report,
            lost=lost,
            stuck=stuck - lost,
            speedup=OUTAGE_SPEEDUP,
            outbox_rows=report.outbox_rows,
            delivery_attempts_while_down=sum(d.attempts for d in waiting),
            last_arrival_after_return_seconds=round(max(arrivals, default=0.0), 1),
        )
        print(f"figures: {report.figures()}, last arrival {max(arrivals, default=0):.0f}s after")
        assert not lost and not refused and not stuck, (sorted(lost), refused, sorted(stuck))
        assert not report.problems, "\n".join(report.problems)
        assert report.expected >= 10 * len(ids) and report.received == report.expected
        assert report.missed == report.duplicated == 0
        assert min(arrivals) >= 0


# ---------------------------------------------------------------- 3. actions twice and at once

RACE_INCIDENTS = 5


async def test_same_action_twice_and_two_people_at_once() -> None:
    """Each one-shot step of the reply, sent twice by one person and by two allowed people at the
    same moment, applies exactly once; the other request gets a 409 that says it was already done
    and by whom, and the timeline (in the workflow and the store) has one entry, in order."""
    test = "same action twice, two people at once"
    async with reliability_stack("actions") as stack:
        ids = [await stack.submit_drill(n, None, tag="并发") for n in range(1, RACE_INCIDENTS + 1)]
        outcomes = await asyncio.gather(*(_race_one(stack, i) for i in ids))
        sent = sum(o["sent"] for o in outcomes)
        refused = sum(o["refused"] for o in outcomes)
        errors = sum(o["5xx"] for o in outcomes)
        twice = sum(o["applied_twice"] for o in outcomes)
        problems = [p for o in outcomes for p in o["problems"]]
        figures.add(
            test,
            incidents=len(ids),
            faults_injected=0,
            duplicate_or_concurrent_actions=sent,
            refused_409=refused,
            responses_500=errors,
            invalid_started_or_changed=twice,
        )
        assert not problems, "\n".join(problems)
        assert errors == 0 and twice == 0
        assert refused == sent - 3 * len(ids)  # one call per step applied, the rest refused


async def _race_one(stack: Stack, incident_id: str) -> dict[str, Any]:
    problems: list[str] = []
    out: dict[str, Any] = {"sent": 0, "refused": 0, "5xx": 0, "applied_twice": 0}

    async def at_once(
        action: str, calls: list[tuple[str, dict[str, Any]]], done_by: str | None = None
    ) -> str | None:
        """Send the calls together. Exactly one applies (none when `done_by` already did it);
        every other call gets a 409 naming who did it. Returns the person whose call applied."""
        responses = await asyncio.gather(
            *(stack.act(incident_id, action, person, body) for person, body in calls)
        )
        out["sent"] += len(calls)
        out["5xx"] += sum(r.status_code >= 500 for r in responses)
        out["refused"] += sum(r.status_code == 409 for r in responses)
        winners = [calls[n][0] for n, r in enumerate(responses) if r.status_code == 200]
        if len(winners) != (0 if done_by else 1):
            problems.append(
                f"{incident_id} {action}: {len(winners)} applied: "
                f"{[(r.status_code, r.text[:200]) for r in responses]}"
            )
            out["applied_twice"] += max(0, len(winners) - 1)
        winner = done_by or (winners[0] if winners else None)
        for r in responses:
            if r.status_code == 200:
                continue
            reason = str(r.json().get("detail", "")) if r.status_code == 409 else r.text
            print(f"{incident_id} {action}: {r.status_code} {reason}")
            if r.status_code != 409 or winner is None or NAMES[winner] not in reason:
                problems.append(f"{incident_id} {action}: refusal {r.status_code} {reason[:300]}")
            if "须经" in reason:  # "must first be approved": not why an approved reply is refused
                problems.append(f"{incident_id} {action}: misleading refusal {reason}")
        return winners[0] if winners else None

    r = await stack.act(
        incident_id,
        "triage",
        OFFICE[0],
        {"severity": "urgent", "category": "inquiry", "responsible_unit": UNIT},
    )
    assert r.status_code == 200, r.text
    r = await stack.act(incident_id, "draft-reply", UNIT_STAFF, {"text": "经核查，桥梁结构安全。"})
    assert r.status_code == 200, r.text
    # The unit head's approval sent twice at once (a double click), then once more.
    approver = await at_once("approve-reply", [(UNIT_HEAD, {}), (UNIT_HEAD, {})])
    await at_once("approve-reply", [(UNIT_HEAD, {})], done_by=approver)
    # The leader and the deputy leader approve the release at the same moment, each naming a
    # different spokesperson; then the leader sends it again.
    releaser = await at_once(
        "approve-release",
        [(LEADER, {"spokesperson": DEPUTY}), (DEPUTY, {"spokesperson": "he.jing"})],
    )
    await at_once("approve-release", [(LEADER, {"spokesperson": DEPUTY})], done_by=releaser)
    # Two of the unit's people publish at the same moment, on different channels; then again.
    publisher = await at_once(
        "publish-reply",
        [(UNIT_STAFF, {"channel": "镇政府微博"}), (UNIT_HEAD, {"channel": "镇政府网站"})],
    )
    await at_once("publish-reply", [(UNIT_STAFF, {"channel": "镇政府微博"})], done_by=publisher)

    view = (await stack.views([incident_id]))[incident_id]
    assert isinstance(view, dict), view
    reply = view["replies"][-1]
    kinds = [e["kind"] for e in view["timeline"]]
    for kind in ("reply_drafted", "reply_approved", "release_approved", "reply_published"):
        if kinds.count(kind) != 1:
            problems.append(f"{incident_id}: {kinds.count(kind)} timeline entries {kind}")
            out["applied_twice"] += max(0, kinds.count(kind) - 1)
    steps = ("reply_drafted", "reply_approved", "release_approved", "reply_published")
    order = [kinds.index(k) if k in kinds else -1 for k in steps]
    if order != sorted(order) or -1 in order:
        problems.append(f"{incident_id}: timeline out of order: {kinds}")
    actors = {e["kind"]: e["actor"] for e in view["timeline"]}
    if tuple(actors.get(k) for k in steps[1:]) != (approver, releaser, publisher):
        problems.append(
            f"{incident_id}: timeline actors {actors} but 200s for "
            f"{approver}, {releaser}, {publisher}"
        )
    want_channel = "镇政府微博" if publisher == UNIT_STAFF else "镇政府网站"
    want_speaker = DEPUTY if releaser == LEADER else "he.jing"
    if (reply["published_by"], reply["channel"], reply["spokesperson"]) != (
        publisher,
        want_channel,
        want_speaker,
    ):
        problems.append(f"{incident_id}: reply {reply} does not match the applied requests")
    seqs = [e["seq"] for e in view["timeline"]]
    if seqs != list(range(1, len(seqs) + 1)):
        problems.append(f"{incident_id}: timeline seq {seqs}")

    # The store's timeline is the workflow's, entry for entry.
    async def recorded() -> list[tuple[int, str]] | None:
        rows = stack.rows(TimelineEvent, [incident_id])
        got = [(row.seq, row.kind) for row in rows]
        return got if len(got) >= len(seqs) else None

    stored = await poll(recorded, within=30, every=0.5, what="the store's timeline")
    if stored != [(e["seq"], e["kind"]) for e in view["timeline"]]:
        problems.append(f"{incident_id}: store timeline {stored} != workflow {kinds}")
    out["problems"] = problems
    return out
