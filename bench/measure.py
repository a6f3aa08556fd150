"""The five measurements. Each takes the running stack, prints its figures and returns them."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
from sqlalchemy import func, select
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle, WorkflowHistory

from bench import history
from bench.bare import BareLifecycleWorkflow, BareTimerWorkflow, LifecyclePlan, Segment
from bench.bare_worker import BenchMark
from bench.harness import Stack
from bench.stats import cpu_delta, fmt, fmt_cpu, mib, ratio, summary
from starter import incidents
from store.db import session_scope
from store.models import EscalationRow, Incident
from workflows.incident import IncidentWorkflow

T = TypeVar("T")

SUBMIT_CLIENTS = 20
LIFECYCLE_CONCURRENCY = 10
SUBMIT_CONCURRENCY = 20
DRILL_SPEEDUP = 60
LIST_REQUESTS = 50
OFFICE = "liu.yang"
UNIT = "sswb"  # 市容市政服务办: staff xu.lei, head huang.li
UNIT_STAFF = "xu.lei"
UNIT_HEAD = "huang.li"

# Incidents the bench starts are reported by the office's monitoring officer (believed, issue 15).
BY = "zhou.ting"


def log(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", flush=True)


# The submitted texts have fixed sizes (the incident's number is zero-padded, every key is as long
# as any other), so that payload and history bytes compare across runs and versions.
TITLE = "基准测试：东湖村道路积水多日无人处理，第{:06d}号"
CONTENT = (
    "网帖称东湖村主干道积水已一周，低洼路段水深过膝，学生上学需绕行两公里，沿街商户无法正常营业；"
    "发帖人质疑镇政府不作为，帖子下已有数百条评论和转发，要求尽快抽排积水并说明原因。"
)
TEXT_SIZES = {
    "title_chars": len(TITLE.format(0)),
    "title_bytes": len(TITLE.format(0).encode()),
    "content_chars": len(CONTENT),
    "content_bytes": len(CONTENT.encode()),
}


def report(tag: str, i: int, **overrides: Any) -> dict[str, Any]:
    """A submission of its own (a unique key and post URL: no deduplication, no related links),
    its texts of fixed sizes (TEXT_SIZES)."""
    key = f"bench-{tag[:4]}-{uuid.uuid4().hex}"
    discovered = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    data: dict[str, Any] = {
        "title": TITLE.format(i % 1_000_000),
        "content": CONTENT,
        "source": "微博",
        "discovered_at": discovered.isoformat(),
        "reporter_unit": "yqb",
        "reporter_name": "周婷",
        "url": f"https://weibo.example/post/{key}",
        "submission_key": key,
    }
    data.update(overrides)
    return data


async def bounded(n: int, concurrency: int, one: Callable[[int], Awaitable[T]]) -> list[T]:
    """one(0) … one(n-1), at most `concurrency` at a time, results in order."""
    limit = asyncio.Semaphore(concurrency)

    async def run(i: int) -> T:
        async with limit:
            return await one(i)

    return list(await asyncio.gather(*(run(i) for i in range(n))))


async def settled(
    n: int, concurrency: int, one: Callable[[int], Awaitable[T]]
) -> tuple[list[T], list[str]]:
    """As `bounded`, but a failure (a timeout under load, say) is counted instead of stopping the
    bench: the results that succeeded, in order, and a line for each failure."""

    async def attempt(i: int) -> tuple[T | None, str | None]:
        try:
            return await one(i), None
        except Exception as exc:
            return None, f"{type(exc).__name__}: {exc}"[:300]

    done = await bounded(n, concurrency, attempt)
    return [r for r, e in done if e is None], [e for _, e in done if e is not None]  # type: ignore[misc]


def _failures(label: str, errors: list[str]) -> dict[str, Any]:
    if errors:
        print(f"            WARNING: {len(errors)} {label} failed; first: {errors[0]}")
    return {"failed": len(errors), "errors": errors[:5]}


def _progress(label: str, total: int) -> Callable[[], None]:
    done = 0
    step = max(1, total // 10)
    started = time.perf_counter()

    def tick() -> None:
        nonlocal done
        done += 1
        if total >= 500 and (done % step == 0 or done == total):
            rate = done / (time.perf_counter() - started)
            log(f"  {label}: {done}/{total} ({rate:.1f}/s)")

    return tick


# ----------------------------------------------------------------------------- 1. submission


async def _post_many(
    base_url: str, path: str, headers: dict[str, str], n: int, tag: str
) -> dict[str, Any]:
    """n POSTs of `report(tag, i)` to base_url + path from SUBMIT_CLIENTS concurrent clients."""
    todo = iter(range(n))
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    errors: list[str] = []

    async def client() -> None:
        async with httpx.AsyncClient(base_url=base_url, timeout=120, headers=headers) as http:
            for i in todo:
                begin = time.perf_counter()
                try:
                    r = await http.post(path, json=report(tag, i))
                except httpx.HTTPError as exc:  # the server gave up on the request
                    latencies.append(time.perf_counter() - begin)
                    statuses[type(exc).__name__] += 1
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])
                    continue
                latencies.append(time.perf_counter() - begin)
                statuses[str(r.status_code)] += 1
                if r.status_code != 201:
                    errors.append(f"{r.status_code}: {r.text[:200]}")

    begin = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(SUBMIT_CLIENTS)))
    wall = time.perf_counter() - begin
    return {
        "latency_s": summary(latencies),
        "wall_s": wall,
        "throughput_per_s": n / wall,
        "statuses": dict(sorted(statuses.items())),
        "errors": errors[:5],
    }


async def settled_history(stack: Stack, workflow_id: str, within: float = 20.0) -> WorkflowHistory:
    """The history once the workflow is idle: its last event a completed workflow task, and no new
    event for a second (or after `within` seconds, as it is)."""
    handle = stack.client.get_workflow_handle(workflow_id)
    deadline = time.monotonic() + within
    seen = -1
    while True:
        h = await handle.fetch_history()
        events = list(h.events)
        idle = (
            bool(events) and events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
        )
        if (idle and len(events) == seen) or time.monotonic() > deadline:
            return h
        seen = len(events)
        await asyncio.sleep(1.0)


QUIET_CPU = 0.3  # CPU s per second, the bench's processes together (the bench's own not counted)


async def quiesce(stack: Stack, within: float = 30.0) -> float:
    """Wait until what was started has finished (the workers, the web apps and the dev server use
    under QUIET_CPU CPU s in a second, or `within` seconds), so that it does not run on into the
    next measurement; how long that took."""
    begin = time.perf_counter()
    busy = ("temporal", "worker", "web", "bare-worker", "bare-web")
    while time.perf_counter() - begin < within:
        before = stack.cpu()
        await asyncio.sleep(1.0)
        used = cpu_delta(before, stack.cpu())
        if sum(used.get(k, 0.0) for k in busy) < QUIET_CPU:
            break
    return time.perf_counter() - begin


async def submission(stack: Stack, n: int) -> dict[str, Any]:
    """N incidents posted to POST /api/incidents by 20 concurrent clients with a personal token
    (a known sender: no rate limit); then N to the bare submission app (bench/bare_web.py), which
    starts a bare workflow and queries it once, as `submit` does: the same round trips to Temporal.
    The bare workflow does what the first of ours did on its own until it waited for triage."""
    log(f"submission: {n} POST /api/incidents from {SUBMIT_CLIENTS} concurrent clients, then bare")
    async with httpx.AsyncClient(
        base_url=stack.web_url, timeout=120, headers=stack.bearer(OFFICE)
    ) as http:  # one not counted: the web app connects to Temporal on its first request
        r = await http.post("/api/incidents", json=report("submission", -1))
        r.raise_for_status()
        first = r.json()["id"]
    seg0 = history.lifecycle_plan(await settled_history(stack, first)).segments[0]
    # Then it waits for an update (ours: for triage) that is never sent.
    plan = LifecyclePlan(updates=1, segments=[seg0, Segment()])
    bare_headers = {"Authorization": "Bearer bench"}
    async with httpx.AsyncClient(
        base_url=stack.bare_web_url, timeout=120, headers=bare_headers
    ) as http:
        (await http.put("/plan", json=dataclasses.asdict(plan))).raise_for_status()
        (await http.post("/submit", json=report("submission", -1))).raise_for_status()
    await quiesce(stack)
    ours = await _post_many(stack.web_url, "/api/incidents", stack.bearer(OFFICE), n, "submission")
    await quiesce(stack)
    bare = await _post_many(stack.bare_web_url, "/submit", bare_headers, n, "submission")
    result: dict[str, Any] = {
        "n": n,
        "clients": SUBMIT_CLIENTS,
        "ours": ours,
        "bare": bare,
        "bare_plan": dataclasses.asdict(plan),
        # as before: ours
        "latency_s": ours["latency_s"],
        "throughput_per_s": ours["throughput_per_s"],
        "ratio_median": ratio(ours["latency_s"]["median"], bare["latency_s"]["median"]),
        "ratio_p99": ratio(ours["latency_s"]["p99"], bare["latency_s"]["p99"]),
    }
    for name, side in (("ours", ours), ("bare", bare)):
        print(
            f"submission  {name} latency {fmt(side['latency_s'])}; "
            f"{side['throughput_per_s']:.1f}/s ({n} in {side['wall_s']:.1f} s)"
        )
        if set(side["statuses"]) != {"201"}:
            print(f"            WARNING: statuses {side['statuses']}; first: {side['errors'][:3]}")
    print(
        f"            ours/bare: p99 {_x(result['ratio_p99'])}, median {_x(result['ratio_median'])}"
        f" (bare: {sum(seg0.batches)} activities, {seg0.upserts} upserts, {seg0.patches} patches, "
        f"{seg0.long_timers + seg0.short_timers} timers after the start, as ours)"
    )
    return result


# ----------------------------------------------------------------------------- 2. lifecycle


async def _ours_lifecycle(stack: Stack, i: int) -> tuple[str, float]:
    """Submit a drill, then triage, draft, approve, publish, track subsided, submit the summary;
    until the workflow completes."""
    c, settings, roster = stack.client, stack.settings, stack.roster
    begin = time.perf_counter()
    data = report("lifecycle", i, drill_speedup=DRILL_SPEEDUP)
    incident_id = (await incidents.submit(c, settings, roster, data, submitted_by=BY)).view.id
    triage = {"severity": "general", "category": "inquiry", "responsible_unit": UNIT}
    await incidents.perform(c, incident_id, "triage", triage, OFFICE)
    draft = {"text": "已安排抽排积水，今日完成。", "kind": "official"}
    await incidents.perform(c, incident_id, "draft-reply", draft, UNIT_STAFF)
    await incidents.perform(c, incident_id, "approve-reply", {}, UNIT_HEAD)
    await incidents.perform(c, incident_id, "publish-reply", {"channel": "镇政府微博"}, UNIT_STAFF)
    await incidents.perform(c, incident_id, "track", {"status": "subsided"}, UNIT_STAFF)
    await incidents.perform(c, incident_id, "submit-summary", {"text": "总结"}, UNIT_STAFF)
    await c.get_workflow_handle_for(IncidentWorkflow.run, incident_id).result()
    return incident_id, time.perf_counter() - begin


async def _bare_lifecycle(stack: Stack, plan: LifecyclePlan, i: int) -> tuple[str, float]:
    """Start (and query once, as `submit` does), the same number of updates; until it completes."""
    begin = time.perf_counter()
    handle: WorkflowHandle[Any, int] = await stack.client.start_workflow(
        BareLifecycleWorkflow.run,
        plan,
        id=f"bare-lifecycle-{i}-{uuid.uuid4().hex[:8]}",
        task_queue=stack.bare_task_queue,
    )
    await handle.query(BareLifecycleWorkflow.count)
    for _ in range(plan.updates):
        await handle.execute_update(BareLifecycleWorkflow.step)
    await handle.result()
    return handle.id, time.perf_counter() - begin


async def fetch_histories(stack: Stack, ids: list[str]) -> list[WorkflowHistory]:
    async def one(i: int) -> WorkflowHistory:
        return await stack.client.get_workflow_handle(ids[i]).fetch_history()

    return await bounded(len(ids), 10, one)


@dataclass
class Lifecycle:
    result: dict[str, Any]
    ours: list[WorkflowHistory]
    bare: list[WorkflowHistory]


async def lifecycle(
    stack: Stack,
    n: int,
    *,
    step_tolerance: float = history.STEP_TOLERANCE,
    timing_tolerance: float = history.TIMING_TOLERANCE,
    task_tolerance: float = history.TASK_TOLERANCE,
) -> Lifecycle:
    """N drills of ours, then as many bare workflows, each replaying the plan of one of ours
    (bench.history.lifecycle_plan): the same Temporal steps in total, which is checked."""
    log(f"lifecycle: {n} drills, then as many bare, {LIFECYCLE_CONCURRENCY} at a time")
    await quiesce(stack)
    cpu0 = stack.cpu()
    begin = time.perf_counter()
    ours, ours_errors = await settled(n, LIFECYCLE_CONCURRENCY, lambda i: _ours_lifecycle(stack, i))
    ours_wall = time.perf_counter() - begin
    cpu1 = stack.cpu()
    if not ours:
        raise RuntimeError(f"no lifecycle incident of ours completed: {ours_errors[:3]}")
    ours_h = await fetch_histories(stack, [i for i, _ in ours])
    plans = [history.lifecycle_plan(h) for h in ours_h]
    m = len(plans)
    await quiesce(stack)
    cpu2 = stack.cpu()
    begin = time.perf_counter()
    bare, bare_errors = await settled(
        m, LIFECYCLE_CONCURRENCY, lambda i: _bare_lifecycle(stack, plans[i], i)
    )
    bare_wall = time.perf_counter() - begin
    cpu3 = stack.cpu()
    bare_h = await fetch_histories(stack, [i for i, _ in bare])
    ours_cpu, bare_cpu = cpu_delta(cpu0, cpu1), cpu_delta(cpu2, cpu3)
    ours_s = summary([d for _, d in ours])
    bare_s = summary([d for _, d in bare])
    ours_total = history.totals([history.counts(h) for h in ours_h])
    bare_total = history.totals([history.counts(h) for h in bare_h])
    steps = history.compare_totals(
        ours_total,
        bare_total,
        step_tolerance=step_tolerance,
        timing_tolerance=timing_tolerance,
        task_tolerance=task_tolerance,
    )
    differ = [r["step"] for r in steps if not r["ok"]]
    result: dict[str, Any] = {
        "n": n,
        "completed": {"ours": len(ours), "bare": len(bare)},
        "concurrency": LIFECYCLE_CONCURRENCY,
        "drill_speedup": DRILL_SPEEDUP,
        "procedure": [
            "submit",
            f"triage general inquiry {UNIT} ({OFFICE})",
            f"draft-reply ({UNIT_STAFF})",
            f"approve-reply ({UNIT_HEAD})",
            f"publish-reply ({UNIT_STAFF})",
            f"track subsided ({UNIT_STAFF})",
            f"submit-summary ({UNIT_STAFF})",
            "result",
        ],
        "step_totals": steps,
        "steps_match": not differ,
        "steps_differ": differ,
        "ours_s": ours_s,
        "bare_s": bare_s,
        "ours_wall_s": ours_wall,
        "bare_wall_s": bare_wall,
        "ours_per_s": len(ours) / ours_wall,
        "bare_per_s": len(bare) / bare_wall if bare_wall else None,
        "ratio_median": ratio(ours_s["median"], bare_s["median"]),
        "ratio_p99": ratio(ours_s["p99"], bare_s["p99"]),
        "ours_failures": _failures("of ours", ours_errors),
        "bare_failures": _failures("bare", bare_errors),
        "ours_cpu_s": ours_cpu,
        "bare_cpu_s": bare_cpu,
        "ours_worker_cpu_ms_per_incident": 1000 * ours_cpu.get("worker", 0) / len(ours),
        "bare_worker_cpu_ms_per_incident": (
            1000 * bare_cpu.get("bare-worker", 0) / len(bare) if bare else None
        ),
    }
    print(
        f"lifecycle   Temporal steps over the run ({len(ours)} of ours, {len(bare)} bare, each "
        "replaying one of ours):"
    )
    print(f"              {'step':<26} {'ours':>8} {'bare':>8} {'diff':>7}  tolerance")
    for r in steps:
        mark = "" if r["ok"] else "   <-- DIFFERS"
        print(
            f"              {r['step']:<26} {r['ours']:>8} {r['bare']:>8} "
            f"{100 * r['difference']:>6.1f}%  {100 * r['tolerance']:.0f}%{mark}"
        )
    if differ:
        print(
            f"            ERROR: the baseline did not make the same Temporal steps as ours: {differ}"
            " (the run is not a valid comparison)"
        )
    print(
        f"            ours wall per incident {fmt(ours_s)}  ({result['ours_per_s']:.1f} incidents/s)"
    )
    print(
        f"            bare wall per incident {fmt(bare_s)}  ({result['bare_per_s'] or 0:.1f} workflows/s)"
    )
    print(f"            ours/bare (medians) {_x(result['ratio_median'])}")
    print(f"            CPU s during ours: {fmt_cpu(ours_cpu)}")
    print(f"            CPU s during bare: {fmt_cpu(bare_cpu)}")
    o, b = result["ours_worker_cpu_ms_per_incident"], result["bare_worker_cpu_ms_per_incident"]
    print(
        f"            worker CPU per lifecycle incident: ours {o:.1f} ms, bare {b or 0:.1f} ms, "
        f"ours/bare {_x(ratio(o, b))}"
    )
    return Lifecycle(result, ours_h, bare_h)


# ----------------------------------------------------------------------------- 3. escalation


def _t0_after(n: int, per_second: float | None) -> datetime:
    """An instant the submissions will have finished by, generously: 20 s + 20 ms each, or twice
    the time the measured throughput needs, whichever is later."""
    slack = 20 + n * 0.02
    if per_second:
        slack = max(slack, 10 + 2 * n / per_second)
    return (datetime.now(UTC) + timedelta(seconds=slack)).replace(microsecond=0)


async def _calibrate(stack: Stack, k: int) -> float:
    """Submissions per second now, from k submissions (for T0, when none were measured)."""
    c, settings, roster = stack.client, stack.settings, stack.roster

    async def submit(i: int) -> None:
        await incidents.submit(c, settings, roster, report("calibration", i), submitted_by=BY)

    begin = time.perf_counter()
    await settled(k, SUBMIT_CONCURRENCY, submit)
    per_second = k / (time.perf_counter() - begin)
    log(f"escalation: {k} calibration submissions: {per_second:.1f}/s")
    return per_second


async def _watch_rows(
    query: Callable[[], list[tuple[str, datetime]]],
    wanted: set[str],
    t0: datetime,
    within: float,
    cpu: Callable[[], dict[str, float | None]],
) -> tuple[dict[str, tuple[datetime, datetime]], dict[str, float]]:
    """Poll the store every 0.1 s from just before T0: each wanted id's recorded time and when it
    was first seen, until all are there or `within` seconds after T0; and the CPU seconds each
    process used from then on."""
    await asyncio.sleep(max(0.0, (t0 - datetime.now(UTC)).total_seconds() - 0.5))
    cpu0 = cpu()
    seen: dict[str, tuple[datetime, datetime]] = {}
    deadline = t0 + timedelta(seconds=within)
    while len(seen) < len(wanted) and datetime.now(UTC) < deadline:
        rows = await asyncio.to_thread(query)
        now = datetime.now(UTC)
        for ident, at in rows:
            if ident in wanted and ident not in seen:
                seen[ident] = (at if at.tzinfo else at.replace(tzinfo=UTC), now)
        await asyncio.sleep(0.1)
    return seen, cpu_delta(cpu0, cpu())


def _burst_figures(
    seen: dict[str, tuple[datetime, datetime]], n: int, t0: datetime, submitted: datetime
) -> dict[str, Any]:
    """n: the workflows started (and watched)."""
    recorded = [(at - t0).total_seconds() for at, _ in seen.values()]
    stored = [(first - t0).total_seconds() for _, first in seen.values()]
    return {
        "n": n,
        "t0": t0.isoformat(),
        "submitted_before_t0_s": (t0 - submitted).total_seconds(),
        "in_store": len(seen),
        "missing": n - len(seen),
        "last_in_store_after_t0_s": max(stored) if stored else None,
        "lateness_recorded_s": summary(recorded),
        "lateness_in_store_s": summary(stored),
    }


async def escalation(stack: Stack, n: int, per_second: float | None) -> dict[str, Any]:
    """N urgent incidents whose R-REPLY deadlines (3 h from discovery) all fall at T0."""
    if not per_second:
        per_second = await _calibrate(stack, min(n, SUBMIT_CONCURRENCY))
    t0 = _t0_after(n, per_second)
    log(f"escalation: {n} urgent incidents, R-REPLY due at {t0:%H:%M:%S} UTC (discovered T0 - 3 h)")
    discovered = (t0 - timedelta(hours=3)).isoformat()
    c, settings, roster = stack.client, stack.settings, stack.roster
    cpu0 = stack.cpu()

    async def submit(i: int) -> str:
        data = report("escalation", i, severity="urgent", discovered_at=discovered)
        return (await incidents.submit(c, settings, roster, data, submitted_by=BY)).view.id

    submitting = time.perf_counter()
    submitted_ids, submit_errors = await settled(n, SUBMIT_CONCURRENCY, submit)
    submit_wall = time.perf_counter() - submitting
    ids = set(submitted_ids)
    submitted = datetime.now(UTC)
    cpu1 = stack.cpu()
    if submitted > t0:
        print(
            f"            WARNING: submissions ended {(submitted - t0).total_seconds():.1f} s after T0"
        )

    def ours_rows() -> list[tuple[str, datetime]]:
        with session_scope(stack.database_url) as s:
            rows = s.execute(
                select(EscalationRow.incident_id, EscalationRow.at).where(
                    EscalationRow.step == 1, EscalationRow.deadline_key == "R-REPLY#1"
                )
            ).all()
        return [(str(i), at) for i, at in rows]

    within = max(120.0, n * 0.5)
    seen, used = await _watch_rows(ours_rows, ids, t0, within, stack.cpu)
    ours = _burst_figures(seen, len(ids), t0, submitted)
    ours["cpu_s_submitting"] = cpu_delta(cpu0, cpu1)
    ours["cpu_s_from_t0_to_all_in_store"] = used

    await quiesce(stack)
    # Starting a bare workflow is less work than submitting an incident: ours' time is enough.
    t0b = (datetime.now(UTC) + timedelta(seconds=max(20.0, 10 + 1.2 * submit_wall))).replace(
        microsecond=0
    )
    log(f"escalation: {n} bare timer workflows, due at {t0b:%H:%M:%S} UTC")

    async def start_bare(i: int) -> str:
        handle = await c.start_workflow(
            BareTimerWorkflow.run,
            t0b,
            id=f"bare-timer-{i}-{uuid.uuid4().hex[:8]}",
            task_queue=stack.bare_task_queue,
        )
        return handle.id

    started_ids, start_errors = await settled(n, SUBMIT_CONCURRENCY, start_bare)
    bare_ids = set(started_ids)
    bare_submitted = datetime.now(UTC)
    if bare_submitted > t0b:
        print(
            f"            WARNING: bare starts ended {(bare_submitted - t0b).total_seconds():.1f} s "
            "after T0"
        )

    def bare_rows() -> list[tuple[str, datetime]]:
        with session_scope(stack.bare_database_url) as s:
            rows = s.execute(select(BenchMark.workflow_id, BenchMark.at)).all()
        return [(str(i), at) for i, at in rows]

    seen, used = await _watch_rows(bare_rows, bare_ids, t0b, within, stack.cpu)
    bare = _burst_figures(seen, len(bare_ids), t0b, bare_submitted)
    bare["cpu_s_from_t0_to_all_in_store"] = used
    ours |= _failures("submissions", submit_errors)
    bare |= _failures("bare starts", start_errors)
    ours["after_t0_s"] = await _milestones(stack, sorted(ids), t0)
    bare["after_t0_s"] = await _milestones(stack, sorted(bare_ids), t0b)
    result = {
        "ours": ours,
        "bare": bare,
        "ratio_last": ratio(ours["last_in_store_after_t0_s"], bare["last_in_store_after_t0_s"]),
        "ratio_recorded_median": ratio(
            ours["lateness_recorded_s"]["median"], bare["lateness_recorded_s"]["median"]
        ),
        "ratio_in_store_median": ratio(
            ours["lateness_in_store_s"]["median"], bare["lateness_in_store_s"]["median"]
        ),
    }
    for name, r in (("ours", ours), ("bare", bare)):
        last = r["last_in_store_after_t0_s"]
        print(
            f"escalation  {name}: {r['in_store']}/{r['n']} in the store, the last {last:.2f} s after T0"
            if last is not None
            else f"escalation  {name}: none in the store"
        )
        print(f"              timer lateness (recorded time - T0) {fmt(r['lateness_recorded_s'])}")
        print(f"              in the store (first seen - T0)     {fmt(r['lateness_in_store_s'])}")
        print(
            "              CPU s from T0 to all in the store: "
            + fmt_cpu(r["cpu_s_from_t0_to_all_in_store"])
        )
        print("              from the histories, seconds after T0 (median / p99):")
        for milestone, m in r["after_t0_s"].items():
            print(f"                {milestone:<28} {m['median']:7.2f} / {m['p99']:7.2f}")
    print(
        "            ours/bare: last in store "
        + _x(result["ratio_last"])
        + ", recorded lateness (medians) "
        + _x(result["ratio_recorded_median"])
        + ", in store (medians) "
        + _x(result["ratio_in_store_median"])
    )
    return result


async def _milestones(stack: Stack, ids: list[str], t0: datetime) -> dict[str, Any]:
    """From each history: when the timer fired, its workflow task ran and each activity after it
    was scheduled, started and completed (seconds after T0), as median and p99."""

    async def one(i: int) -> dict[str, float]:
        h = await stack.client.get_workflow_handle(ids[i]).fetch_history()
        return history.after_timer(h, t0)

    rows = await bounded(len(ids), 10, one)
    names: list[str] = []
    for row in rows:
        names += [k for k in row if k not in names]
    return {k: summary([row[k] for row in rows if k in row]) for k in names}


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


# ----------------------------------------------------------------------------- 4. scale


async def _sign_in(http: httpx.AsyncClient, token: str) -> None:
    """As tests/test_api.py sign_in: the login form's CSRF token, then the token."""
    login = await http.get("/login")
    csrf = re.findall(r'name="csrf_token" value="([^"]+)"', login.text)[-1]
    r = await http.post("/login", data={"csrf_token": csrf, "token": token, "next": "/incidents"})
    if r.status_code != 303:
        raise RuntimeError(f"sign-in failed: {r.status_code} {r.text[:200]}")


async def _latency(http: httpx.AsyncClient, path: str, **kw: Any) -> dict[str, Any]:
    await http.get(path, **kw)  # warm
    samples = []
    statuses: Counter[int] = Counter()
    size = 0
    for _ in range(LIST_REQUESTS):
        begin = time.perf_counter()
        r = await http.get(path, **kw)
        samples.append(time.perf_counter() - begin)
        statuses[r.status_code] += 1
        size = len(r.content)
    return {
        "latency_s": summary(samples),
        "statuses": {str(k): v for k, v in statuses.items()},
        "bytes": size,
    }


async def scale(stack: Stack, n: int) -> dict[str, Any]:
    """N open incidents waiting on their timers: the worker's memory, its cache and the lists."""
    log(
        f"scale: {n} open general incidents (not triaged), {SUBMIT_CONCURRENCY} submissions at a time"
    )
    rss_before = stack.rss()
    cache_before = await stack.metric("temporal_sticky_cache_size") or 0.0
    c, settings, roster = stack.client, stack.settings, stack.roster
    tick = _progress("submitted", n)

    async def submit(i: int) -> None:
        await incidents.submit(
            c, settings, roster, report("scale", i, source="基准测试规模"), submitted_by=BY
        )
        tick()

    begin = time.perf_counter()
    _, submit_errors = await settled(n, SUBMIT_CONCURRENCY, submit)
    submit_wall = time.perf_counter() - begin

    def stored() -> int:
        with session_scope(stack.database_url) as s:
            return int(s.scalar(select(func.count()).where(Incident.source == "基准测试规模")) or 0)

    deadline = time.monotonic() + max(120.0, n * 0.05)
    target = n - len(submit_errors)  # a failed submission may still have started its incident
    while (count := await asyncio.to_thread(stored)) < target and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    recorded_wall = time.perf_counter() - begin
    await asyncio.sleep(2)  # the last notify activities
    with session_scope(stack.database_url) as s:
        total_in_store = int(s.scalar(select(func.count()).select_from(Incident)) or 0)
    rss_after = stack.rss()
    cache = await stack.metric("temporal_sticky_cache_size")

    bare = await _bare_scale(stack, n)
    # The bare worker may still be running its workflows' first tasks (the cache holds 300).
    waited = await quiesce(stack, within=300)
    log(f"scale: waited {waited:.0f} s for the processes to be idle before the lists")

    async with httpx.AsyncClient(base_url=stack.web_url, timeout=120) as http:
        await _sign_in(http, stack.tokens[OFFICE])
        page = await _latency(http, "/incidents")
    async with httpx.AsyncClient(
        base_url=stack.web_url, timeout=120, headers=stack.bearer(OFFICE)
    ) as http:
        overdue = await _latency(http, "/api/incidents", params={"overdue": "true"})
        listed = await _latency(http, "/api/incidents")
    worker_growth = per_cached = None
    if rss_after["worker"] is not None and rss_before["worker"] is not None:
        worker_growth = rss_after["worker"] - rss_before["worker"]
        if cache is not None and cache > cache_before:
            per_cached = worker_growth / (cache - cache_before)
    result = {
        "n": n,
        "submit_concurrency": SUBMIT_CONCURRENCY,
        "submit_wall_s": submit_wall,
        "submit_per_s": n / submit_wall,
        "submit_failures": _failures("submissions", submit_errors),
        "all_recorded_wall_s": recorded_wall,
        "recorded": count,
        "incidents_in_store": total_in_store,
        "rss_before_bytes": rss_before,
        "rss_after_bytes": rss_after,
        "worker_rss_growth_bytes": worker_growth,
        "worker_rss_growth_per_cached_workflow_bytes": per_cached,
        "sticky_cache_before": cache_before,
        "sticky_cache_size": cache,
        "bare": bare,
        "idle_wait_before_lists_s": waited,
        "list_page": page,
        "api_overdue": overdue,
        "api_list": listed,
    }
    print(
        f"scale       {n} submitted in {submit_wall:.1f} s ({n / submit_wall:.1f}/s), all in the "
        f"store after {recorded_wall:.1f} s ({count}/{n}); {total_in_store} incidents in the store"
    )
    print(
        f"            worker RSS {mib(rss_after['worker'])} (before {mib(rss_before['worker'])}), "
        f"cached workflows {cache} (before {cache_before}); dev server RSS "
        f"{mib(rss_after['temporal'])}, web RSS {mib(rss_after['web'])}"
    )
    if per_cached is not None:
        print(f"            worker RSS growth per cached workflow ≈ {per_cached / 1024:.0f} KiB")
    if bare["per_cached_workflow_bytes"] is not None:
        print(
            f"            bare worker with {n} sleeping workflows: RSS {mib(bare['rss_after_bytes'])} "
            f"(before {mib(bare['rss_before_bytes'])}), cached {bare['sticky_cache_size']}, "
            f"≈ {bare['per_cached_workflow_bytes'] / 1024:.0f} KiB per cached workflow; "
            f"started in {bare['start_wall_s']:.1f} s"
        )
    print(
        f"            GET /incidents (signed in, office)   {fmt(page['latency_s'])}  {page['statuses']}"
    )
    print(
        f"            GET /api/incidents?overdue=true      {fmt(overdue['latency_s'])}  {overdue['statuses']}"
    )
    print(
        f"            GET /api/incidents                   {fmt(listed['latency_s'])}  {listed['statuses']}"
    )
    if count < target:
        print(f"            WARNING: only {count}/{target} recorded in the store")
    return result


async def _bare_scale(stack: Stack, n: int) -> dict[str, Any]:
    """The baseline of the worker's memory: N bare workflows asleep on a timer (a day long)."""
    log(f"scale: {n} bare workflows asleep on a timer")
    rss_before = stack.bare.rss_bytes()
    cache_before = await stack.metric("temporal_sticky_cache_size", bare=True) or 0.0
    t0 = datetime.now(UTC) + timedelta(days=1)

    async def start(i: int) -> None:
        await stack.client.start_workflow(
            BareTimerWorkflow.run,
            t0,
            id=f"bare-scale-{i}-{uuid.uuid4().hex[:8]}",
            task_queue=stack.bare_task_queue,
        )

    begin = time.perf_counter()
    _, start_errors = await settled(n, SUBMIT_CONCURRENCY, start)
    start_wall = time.perf_counter() - begin
    # Cached once the worker has run each one's first task; the cache holds as many as ours.
    want = min(float(stack.cached_workflows), cache_before + n)
    deadline = time.monotonic() + 120
    cache = cache_before
    while time.monotonic() < deadline:
        cache = await stack.metric("temporal_sticky_cache_size", bare=True)
        if cache is not None and cache >= want:
            break
        await asyncio.sleep(0.5)
    await asyncio.sleep(2)
    rss_after = stack.bare.rss_bytes()
    per = None
    if rss_after and rss_before and cache and cache > cache_before:
        per = (rss_after - rss_before) / (cache - cache_before)
    return {
        "n": n,
        "start_wall_s": start_wall,
        "rss_before_bytes": rss_before,
        "rss_after_bytes": rss_after,
        "sticky_cache_before": cache_before,
        "sticky_cache_size": cache,
        "per_cached_workflow_bytes": per,
        **_failures("bare starts", start_errors),
    }


# ----------------------------------------------------------------------------- 5. history


def histories(ours_h: list[WorkflowHistory], bare_h: list[WorkflowHistory]) -> dict[str, Any]:
    """Sizes of the lifecycle's completed histories (ours and bare). The payload codec is off in
    the bench: a payload encoded binary/encrypted would make the figures meaningless (an error)."""
    log(f"history: {len(ours_h)} completed lifecycle incidents (and {len(bare_h)} bare)")
    ours = [history.sizes(h) for h in ours_h]
    bare = [history.sizes(h) for h in bare_h]
    result: dict[str, Any] = {"n": len(ours), "text_sizes": TEXT_SIZES}
    for key in ("events", "json_bytes", "payloads", "payload_bytes"):
        result[key] = summary([float(s[key]) for s in ours])
        result[f"bare_{key}"] = summary([float(s[key]) for s in bare])
        result[f"ratio_{key}"] = ratio(result[key]["median"], result[f"bare_{key}"]["median"])
    encodings: Counter[str] = Counter()
    for size in ours:
        encodings.update(size["encodings"])
    result["encodings"] = dict(encodings)
    labels = {
        "events": "events",
        "json_bytes": "history JSON bytes",
        "payloads": "payloads",
        "payload_bytes": "payload bytes",
    }
    by_type: Counter[str] = Counter()
    for size in ours:
        by_type.update(size["payload_bytes_by_event"])
    result["payload_bytes_by_event_per_incident"] = {
        k: round(v / len(ours)) for k, v in by_type.most_common()
    }
    for key, label in labels.items():
        o, b = result[key], result[f"bare_{key}"]
        print(
            f"history     {label:<19} ours {fmt(o, unit='', scale=1, digits=0)}; "
            f"bare median {b['median']:.0f}; ours/bare {_x(result[f'ratio_{key}'])}"
        )
    top = list(result["payload_bytes_by_event_per_incident"].items())[:4]
    print(
        "            payload bytes per incident by event: " + ", ".join(f"{k} {v}" for k, v in top)
    )
    print(
        f"            codec off: payload encodings {dict(encodings)}; texts of fixed size "
        f"(title {TEXT_SIZES['title_bytes']} B, content {TEXT_SIZES['content_bytes']} B)"
    )
    if "binary/encrypted" in encodings:
        raise RuntimeError("payloads are encrypted: the payload codec is on in the bench")
    return result
