"""`python -m bench [--n N] [--only NAME[,NAME]] [--scale-n N] [--out FILE] [--database-url URL]`.

Measurements, in this order: submission, lifecycle, escalation, scale, history (history reads the
lifecycle's incidents, so it runs the lifecycle too). Results are printed and written as JSON
(default test-artifacts/bench/results-<n>.json). Exit status 1 when a measurement failed; the JSON
then has what was measured before, and the error.
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

from bench import measure
from bench.harness import ROOT, describe_machine, machine, running_stack
from bench.stats import cpu_delta, fmt_cpu

NAMES = ("submission", "lifecycle", "escalation", "scale", "history")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="incidents per measurement (200)")
    parser.add_argument(
        "--only",
        default=",".join(NAMES),
        help=f"comma-separated measurements to run (default all: {','.join(NAMES)})",
    )
    parser.add_argument(
        "--scale-n", type=int, default=10_000, help="open incidents for the scale step (10000)"
    )
    parser.add_argument(
        "--out", type=Path, help="JSON results (test-artifacts/bench/results-<n>.json)"
    )
    parser.add_argument(
        "--database-url",
        help="the store, e.g. postgresql://user:pass@host/db (default: a migrated SQLite file in "
        "a temporary directory); it is migrated, and the bare baseline uses a bench_marks table "
        "in it that is dropped afterwards",
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
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(chosen) - set(NAMES)
    if unknown or not chosen:
        parser.error(f"--only: unknown {sorted(unknown)}; choose from {', '.join(NAMES)}")
    if args.n < 1 or args.scale_n < 1:
        parser.error("--n and --scale-n must be at least 1")
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


async def run(args: argparse.Namespace, out: dict[str, Any]) -> None:
    results: dict[str, Any] = out["results"]
    chosen = list(args.only)
    if "history" in chosen and "lifecycle" not in chosen:
        print("history reads the lifecycle's incidents: running the lifecycle too")
        chosen.insert(chosen.index("history"), "lifecycle")
    async with running_stack(
        args.database_url, keep=args.keep, bytecode_cache=not args.no_bytecode_cache
    ) as stack:
        out["store"] = stack.backend
        print(f"store: {stack.backend}; processes started (files in {stack.tmp})\n")
        for name in chosen:
            stack.check_running()
            begin = time.perf_counter()
            cpu = stack.cpu()
            if name == "submission":
                results[name] = await measure.submission(stack, args.n)
            elif name == "lifecycle":
                results[name] = await measure.lifecycle(stack, args.n)
            elif name == "escalation":
                per_second = results.get("submission", {}).get("throughput_per_s")
                results[name] = await measure.escalation(stack, args.n, per_second)
            elif name == "scale":
                results[name] = await measure.scale(stack, args.scale_n)
            elif name == "history":
                life = results["lifecycle"]
                results[name] = await measure.histories(stack, life["ours_ids"], life["bare_ids"])
            results[name]["step_wall_s"] = time.perf_counter() - begin
            results[name]["step_cpu_s"] = used = cpu_delta(cpu, stack.cpu())
            print(
                f"            ({name} took {results[name]['step_wall_s']:.1f} s; CPU s: "
                f"{fmt_cpu(used)})\n",
                flush=True,
            )
        stack.check_running()
        out["rss_at_end_bytes"] = stack.rss()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.perf_counter()
    m = machine()
    print(describe_machine(m))
    print(f"measurements: {', '.join(args.only)}; n={args.n}, scale-n={args.scale_n}\n", flush=True)
    out: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(),
        "revision": git_revision(),
        "args": {
            "n": args.n,
            "only": args.only,
            "scale_n": args.scale_n,
            "database_url": bool(args.database_url),
            "bytecode_cache": not args.no_bytecode_cache,
        },
        "machine": m,
        "results": {},
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
