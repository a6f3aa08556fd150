"""The five measurements. Each takes the running stack, prints its figures and returns them."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
from sqlalchemy import func, select
from temporalio.client import WorkflowHandle

from bench import history
from bench.bare import BareLifecycleWorkflow, BareTimerWorkflow, LifecyclePlan
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


def report(tag: str, i: int, **overrides: Any) -> dict[str, Any]:
    """A submission of its own (a unique key and post URL: no deduplication, no related links)."""
    key = f"bench-{tag}-{i}-{uuid.uuid4().hex[:8]}"
    data: dict[str, Any] = {
        "title": f"基准测试（{tag}）第{i}号：东湖村道路积水多日无人处理",
        "content": "网帖称东湖村主干道积水一周，影响学生上学，质疑镇政府不作为。",
        "source": "微博",
        "discovered_at": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
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


async def submission(stack: Stack, n: int) -> dict[str, Any]:
    """N incidents posted to POST /api/incidents by 20 concurrent clients with a personal token
    (a known sender: no rate limit)."""
    log(f"submission: {n} POST /api/incidents from {SUBMIT_CLIENTS} concurrent clients")
    todo = iter(range(n))
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    errors: list[str] = []

    async def client() -> None:
        async with httpx.AsyncClient(
            base_url=stack.web_url, timeout=120, headers=stack.bearer(OFFICE)
        ) as http:
            for i in todo:
                begin = time.perf_counter()
                try:
                    r = await http.post("/api/incidents", json=report("submission", i))
                except httpx.HTTPError as exc:  # the server gave up on the request
                    latencies.append(time.perf_counter() - begin)
                    statuses[type(exc).__name__] += 1
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])
                    continue
                latencies.append(time.perf_counter() - begin)
                statuses[str(r.status_code)] += 1
                if r.status_code != 201:
                    errors.append(f"{r.status_code}: {r.text[:200]}")

    async with httpx.AsyncClient(
        base_url=stack.web_url, timeout=120, headers=stack.bearer(OFFICE)
    ) as http:  # one not counted: the web app connects to Temporal on its first request
        r = await http.post("/api/incidents", json=report("submission", -1))
        r.raise_for_status()
    begin = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(SUBMIT_CLIENTS)))
    wall = time.perf_counter() - begin
    result = {
        "n": n,
        "clients": SUBMIT_CLIENTS,
        "latency_s": summary(latencies),
        "wall_s": wall,
        "throughput_per_s": n / wall,
        "statuses": dict(sorted(statuses.items())),
        "errors": errors[:5],
    }
    print(f"submission  latency {fmt(result['latency_s'])}")
    print(f"            throughput {result['throughput_per_s']:.1f}/s ({n} in {wall:.1f} s)")
    if set(statuses) != {"201"}:
        print(f"            WARNING: statuses {dict(statuses)}; first errors: {errors[:3]}")
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


async def lifecycle(stack: Stack, n: int) -> dict[str, Any]:
    log(
        f"lifecycle: one probe incident, then {n} drills and {n} bare, {LIFECYCLE_CONCURRENCY} at a time"
    )
    probe_id, _ = await _ours_lifecycle(stack, -1)
    probe = await stack.client.get_workflow_handle(probe_id).fetch_history()
    ours_counts = history.counts(probe)
    plan = history.lifecycle_plan(probe)
    bare_probe_id, _ = await _bare_lifecycle(stack, plan, -1)
    bare_counts = history.counts(
        await stack.client.get_workflow_handle(bare_probe_id).fetch_history()
    )
    matched = {
        k: (ours_counts[k], bare_counts[k])
        for k in (
            "updates_accepted",
            "activities_scheduled",
            "timers_started",
            "timers_fired",
            "timers_canceled",
            "search_attribute_upserts",
        )
    }

    cpu0 = stack.cpu()
    begin = time.perf_counter()
    ours, ours_errors = await settled(n, LIFECYCLE_CONCURRENCY, lambda i: _ours_lifecycle(stack, i))
    ours_wall = time.perf_counter() - begin
    cpu1 = stack.cpu()
    begin = time.perf_counter()
    bare, bare_errors = await settled(
        n, LIFECYCLE_CONCURRENCY, lambda i: _bare_lifecycle(stack, plan, i)
    )
    bare_wall = time.perf_counter() - begin
    cpu2 = stack.cpu()
    ours_cpu, bare_cpu = cpu_delta(cpu0, cpu1), cpu_delta(cpu1, cpu2)
    ours_s = summary([d for _, d in ours])
    bare_s = summary([d for _, d in bare])
    result = {
        "n": n,
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
        "probe_counts": ours_counts,
        "bare_probe_counts": bare_counts,
        "ours_vs_bare_counts": matched,
        "bare_plan": [
            {
                "batches": s.batches,
                "long_timers": s.long_timers,
                "short_timers": s.short_timers,
                "cancel": s.cancel,
                "upserts": s.upserts,
            }
            for s in plan.segments
        ],
        "ours_s": ours_s,
        "bare_s": bare_s,
        "ours_wall_s": ours_wall,
        "bare_wall_s": bare_wall,
        "ours_per_s": n / ours_wall,
        "bare_per_s": n / bare_wall,
        "ratio_median": ratio(ours_s["median"], bare_s["median"]),
        "ratio_p99": ratio(ours_s["p99"], bare_s["p99"]),
        "ours_failures": _failures("of ours", ours_errors),
        "bare_failures": _failures("bare", bare_errors),
        "ours_cpu_s": ours_cpu,
        "bare_cpu_s": bare_cpu,
        "ours_worker_cpu_ms_per_incident": 1000 * ours_cpu.get("worker", 0) / n,
        "bare_worker_cpu_ms_per_incident": 1000 * bare_cpu.get("bare-worker", 0) / n,
        "ours_ids": [i for i, _ in ours],
        "bare_ids": [i for i, _ in bare],
    }
    c = ours_counts
    print(
        f"lifecycle   per incident: {c['updates_accepted']} updates, {c['activities_scheduled']} "
        f"activities, {c['timers_started']} timers ({c['timers_canceled']} cancelled, "
        f"{c['timers_fired']} fired), {c['events']} events; bare matched (ours, bare): {matched}"
    )
    print(f"            ours wall per incident {fmt(ours_s)}  ({n / ours_wall:.1f} incidents/s)")
    print(f"            bare wall per incident {fmt(bare_s)}  ({n / bare_wall:.1f} workflows/s)")
    print(f"            ours/bare (medians) {_x(result['ratio_median'])}")
    print(f"            CPU s during ours: {fmt_cpu(ours_cpu)}")
    print(f"            CPU s during bare: {fmt_cpu(bare_cpu)}")
    print(
        f"            worker CPU per incident: ours {result['ours_worker_cpu_ms_per_incident']:.1f} ms, "
        f"bare {result['bare_worker_cpu_ms_per_incident']:.1f} ms"
    )
    return result


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

    submitted_ids, submit_errors = await settled(n, SUBMIT_CONCURRENCY, submit)
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

    t0b = _t0_after(n, per_second)
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
    want = min(float(stack.settings.worker_cached_workflows), cache_before + n)
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


async def _sizes(stack: Stack, ids: list[str]) -> list[dict[str, Any]]:
    async def one(i: int) -> dict[str, Any]:
        h = await stack.client.get_workflow_handle(ids[i]).fetch_history()
        return history.sizes(h)

    return await bounded(len(ids), 10, one)


async def histories(stack: Stack, ours_ids: list[str], bare_ids: list[str]) -> dict[str, Any]:
    log(f"history: {len(ours_ids)} completed lifecycle incidents (and {len(bare_ids)} bare)")
    ours = await _sizes(stack, ours_ids)
    bare = await _sizes(stack, bare_ids)
    result: dict[str, Any] = {"n": len(ours)}
    for key in ("events", "json_bytes", "payloads", "payload_bytes"):
        result[key] = summary([float(s[key]) for s in ours])
        result[f"bare_{key}"] = summary([float(s[key]) for s in bare])
        result[f"ratio_{key}"] = ratio(result[key]["median"], result[f"bare_{key}"]["median"])
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
    return result
