"""`python -m bench [--quick] [--n N] [--burst-n N] [--scale-n N] [--runs R] [--burst-runs R]
[--only NAME[,NAME]] [--store auto|sqlite|postgres] [--database-url URL] [--out FILE]`.

Measurements, in this order: submission, lifecycle, escalation, scale, history (history reads the
lifecycle's incidents, so it runs the lifecycle too). Submission, lifecycle and history run `--runs`
times, the escalation burst `--burst-runs` times and scale once, on the same stack; the targets of
issue 21 are then printed as a table, each the median of the runs with their spread. Results are
printed and written as JSON (default test-artifacts/bench/results-<n>.json). Exit status 1 when a
measurement failed or the lifecycle's baseline did not make the same Temporal steps as ours; the
JSON then has what was measured, and the error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import harness, history, measure, targets
from bench.harness import ROOT, describe_machine, machine
from bench.stats import cpu_delta, fmt_cpu

NAMES = ("submission", "lifecycle", "escalation", "scale", "history")
# `make bench` (about 25 minutes on the 2-core machine, bench/README.md) and `--quick` (a few).
DEFAULTS = {"n": 200, "burst_n": 1000, "scale_n": 10_000, "runs": 3, "burst_runs": 1}
QUICK = {"n": 20, "burst_n": 100, "scale_n": 300, "runs": 1, "burst_runs": 1}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    d = DEFAULTS
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a quick look, a few minutes: "
        + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in QUICK.items())
        + " (any given explicitly wins)",
    )
    parser.add_argument("--n", type=int, help=f"incidents for submission and lifecycle ({d['n']})")
    parser.add_argument(
        "--burst-n",
        type=int,
        help=f"incidents in the escalation burst ({d['burst_n']}: more than the worker's cache of "
        "300, so most replay from history)",
    )
    parser.add_argument(
        "--scale-n", type=int, help=f"open incidents for the scale step ({d['scale_n']})"
    )
    parser.add_argument(
        "--runs",
        type=int,
        help=f"runs of submission, lifecycle and history ({d['runs']}); targets are their median",
    )
    parser.add_argument(
        "--burst-runs", type=int, help=f"runs of the escalation burst ({d['burst_runs']})"
    )
    parser.add_argument(
        "--only",
        default=",".join(NAMES),
        help=f"comma-separated measurements to run (default all: {','.join(NAMES)})",
    )
    parser.add_argument(
        "--out", type=Path, help="JSON results (test-artifacts/bench/results-<n>.json)"
    )
    parser.add_argument(
        "--store",
        choices=("auto", "sqlite", "postgres"),
        default="auto",
        help="the store: auto (default) is PostgreSQL when one answers (at --database-url, "
        f"${harness.BENCH_DATABASE_ENV} or {harness.DEFAULT_POSTGRES}), else SQLite",
    )
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL server to make a scratch database on (yuqing_bench_<pid>, migrated, "
        "dropped afterwards), e.g. postgresql://user@host:5432/postgres; or a SQLite file "
        f"(sqlite:///path) to use as it is. Default ${harness.BENCH_DATABASE_ENV}",
    )
    parser.add_argument(
        "--step-tolerance",
        type=float,
        default=history.STEP_TOLERANCE,
        help="how far (relative) the baseline's total updates, activities, timers and upserts "
        f"may be from ours ({history.STEP_TOLERANCE})",
    )
    parser.add_argument(
        "--timing-tolerance",
        type=float,
        default=history.TIMING_TOLERANCE,
        help=f"how far its total events may be ({history.TIMING_TOLERANCE})",
    )
    parser.add_argument(
        "--task-tolerance",
        type=float,
        default=history.TASK_TOLERANCE,
        help="how far its total workflow tasks may be (how completions group into tasks depends "
        f"on timing; {history.TASK_TOLERANCE})",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary directory (logs, databases)"
    )
    parser.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="run the processes with PYTHONDONTWRITEBYTECODE as the environment has it (by "
        "default they cache bytecode in the temporary directory, as an installed release has it)",
    )
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(chosen) - set(NAMES)
    if unknown or not chosen:
        parser.error(f"--only: unknown {sorted(unknown)}; choose from {', '.join(NAMES)}")
    if min(args.n, args.burst_n, args.scale_n, args.runs, args.burst_runs) < 1:
        parser.error("--n, --burst-n, --scale-n, --runs and --burst-runs must be at least 1")
    args.only = [name for name in NAMES if name in chosen]
    args.out = args.out or ROOT / "test-artifacts" / "bench" / f"results-{args.n}.json"
    return args


def git_revision() -> str | None:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return None
    return f"{rev}{'+dirty' if dirty else ''}" if rev else None


def times(args: argparse.Namespace) -> dict[str, int]:
    """How many runs each measurement makes."""
    return {
        "submission": args.runs,
        "lifecycle": args.runs,
        "history": args.runs,
        "escalation": args.burst_runs,
        "scale": 1,
    }


async def run(args: argparse.Namespace, out: dict[str, Any]) -> None:
    chosen = list(args.only)
    if "history" in chosen and "lifecycle" not in chosen:
        print("history reads the lifecycle's incidents: running the lifecycle too")
        chosen.insert(chosen.index("history"), "lifecycle")
    choice = harness.choose_store(args.store, args.database_url)
    out["store"] = choice.backend
    out["store_why"] = choice.why
    print(f"store: {choice.backend}: {choice.why}")
    repeat = times(args)
    async with harness.running_stack(
        choice, keep=args.keep, bytecode_cache=not args.no_bytecode_cache
    ) as stack:
        out["worker_cached_workflows"] = stack.cached_workflows
        print(
            f"store: {stack.backend}; payload codec off; worker cache {stack.cached_workflows} "
            f"workflows; processes started (files in {stack.tmp})\n"
        )
        for r in range(max(repeat[name] for name in chosen)):
            results: dict[str, Any] = {}
            out["runs"].append(results)
            life: measure.Lifecycle | None = None
            for name in chosen:
                if r >= repeat[name]:
                    continue
                if r or len(out["runs"]) > 1 or args.runs > 1:
                    print(f"--- run {r + 1}: {name}")
                stack.check_running()
                # What the step before started (a backlog of first workflow tasks after scale,
                # say) must not run on into this one.
                waited = await measure.quiesce(stack, within=300)
                if waited > 5:
                    print(f"            (waited {waited:.0f} s for the processes to be idle)")
                begin = time.perf_counter()
                cpu = stack.cpu()
                if name == "submission":
                    results[name] = await measure.submission(stack, args.n)
                elif name == "lifecycle":
                    life = await measure.lifecycle(
                        stack,
                        args.n,
                        step_tolerance=args.step_tolerance,
                        timing_tolerance=args.timing_tolerance,
                        task_tolerance=args.task_tolerance,
                    )
                    results[name] = life.result
                elif name == "escalation":
                    per_second = None
                    for done in reversed(out["runs"]):
                        per_second = per_second or done.get("submission", {}).get(
                            "throughput_per_s"
                        )
                    results[name] = await measure.escalation(stack, args.burst_n, per_second)
                elif name == "scale":
                    results[name] = await measure.scale(stack, args.scale_n)
                elif name == "history":
                    assert life is not None
                    results[name] = measure.histories(life.ours, life.bare)
                results[name]["step_wall_s"] = time.perf_counter() - begin
                results[name]["step_cpu_s"] = used = cpu_delta(cpu, stack.cpu())
                print(
                    f"            ({name} took {results[name]['step_wall_s']:.1f} s; CPU s: "
                    f"{fmt_cpu(used)})\n",
                    flush=True,
                )
        stack.check_running()
        out["rss_at_end_bytes"] = stack.rss()


def finish(args: argparse.Namespace, out: dict[str, Any]) -> list[str]:
    """The targets table (printed, and into `out`); what makes the run invalid."""
    rows = targets.evaluate(out["runs"], vars(args))
    out["targets"] = rows
    if rows and out["runs"]:
        print(
            f"\ntargets (issue 21), store {out.get('store')}: median of {args.runs} run(s) "
            f"(burst: {args.burst_runs}; scale: 1), (min–max) when more than one"
        )
        print(targets.table(rows))
    problems = []
    for i, results in enumerate(out["runs"], 1):
        life = results.get("lifecycle")
        if life and not life["steps_match"]:
            problems.append(
                f"run {i}: the lifecycle baseline's steps differ: {life['steps_differ']}"
            )
    return problems


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.perf_counter()
    m = machine()
    print(describe_machine(m))
    print(
        f"measurements: {', '.join(args.only)}; n={args.n}, burst-n={args.burst_n}, "
        f"scale-n={args.scale_n}, runs={args.runs}, burst-runs={args.burst_runs}"
        + (" (--quick)" if args.quick else "")
        + "\n",
        flush=True,
    )
    out: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(),
        "revision": git_revision(),
        "args": {
            "quick": args.quick,
            "n": args.n,
            "burst_n": args.burst_n,
            "scale_n": args.scale_n,
            "runs": args.runs,
            "burst_runs": args.burst_runs,
            "only": args.only,
            "store": args.store,
            "database_url": bool(args.database_url),
            "step_tolerance": args.step_tolerance,
            "timing_tolerance": args.timing_tolerance,
            "task_tolerance": args.task_tolerance,
            "bytecode_cache": not args.no_bytecode_cache,
        },
        "machine": m,
        "text_sizes": measure.TEXT_SIZES,
        "runs": [],
    }
    status = 0
    signalled: list[str] = []

    async def guarded() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()

        def on_signal(sig: signal.Signals) -> None:
            signalled.append(sig.name)
            task.cancel()  # the stack stops its processes on the way out

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig)
        await run(args, out)

    try:
        asyncio.run(guarded())
    except (KeyboardInterrupt, asyncio.CancelledError):
        signalled.append("SIGINT")
    except Exception as exc:
        if not signalled:
            traceback.print_exc()
            out["error"] = f"{type(exc).__name__}: {exc}"
            status = 1
    if not signalled:
        try:
            problems = finish(args, out)
        except Exception as exc:  # the table must not hide the results
            traceback.print_exc()
            problems = [f"targets: {type(exc).__name__}: {exc}"]
        if problems:
            print("\nERROR: " + "; ".join(problems), file=sys.stderr)
            out["error"] = "; ".join([*([out["error"]] if "error" in out else []), *problems])
            status = 1
    if signalled:
        out["error"] = f"interrupted ({signalled[0]})"
        print(f"interrupted ({signalled[0]}): every process stopped", file=sys.stderr)
        status = 130
    out["wall_s"] = time.perf_counter() - began
    out["load_average_at_end"] = list(os.getloadavg())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(out, indent=2, ensure_ascii=False, default=str), encoding="utf-8"
    )
    load = ", ".join(f"{x:.2f}" for x in out["load_average_at_end"])
    print(f"wall time {out['wall_s']:.1f} s; load average at end {load}; results in {args.out}")
    return status


if __name__ == "__main__":
    sys.exit(main())
