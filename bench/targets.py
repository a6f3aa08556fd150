"""The targets of issue 21, each from the figures of every run: ours, bare and ours/bare as the
median of the runs with their spread (min–max), and pass or fail (on the median)."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MIB = 2**20


@dataclass(frozen=True)
class Target:
    key: str
    what: str
    step: str  # the measurement its figures come from
    ours: Callable[[dict[str, Any]], float | None]
    bare: Callable[[dict[str, Any]], float | None] | None
    limit: float
    on_ratio: bool  # the limit is on ours/bare (else on ours itself)
    unit: str  # how values are shown: ms, s, B, MiB
    scale: float = 1.0  # shown value = value * scale (latencies are in seconds, shown in ms)
    at_n: tuple[str, int] | None = None  # (the argument, the N the target is stated for)


def _get(*path: str | int) -> Callable[[dict[str, Any]], float | None]:
    def get(step: dict[str, Any]) -> float | None:
        value: Any = step
        for key in path:
            try:
                value = value[key]
            except (KeyError, IndexError, TypeError):
                return None
        return None if value is None else float(value)

    return get


TARGETS = (
    Target(
        "lifecycle_worker_cpu",
        "worker CPU per lifecycle incident",
        "lifecycle",
        _get("ours_worker_cpu_ms_per_incident"),
        _get("bare_worker_cpu_ms_per_incident"),
        1.25,
        True,
        "ms",
    ),
    Target(
        "payload_bytes",
        "payload bytes per completed incident (median)",
        "history",
        _get("payload_bytes", "median"),
        _get("bare_payload_bytes", "median"),
        8000,
        False,
        "B",
    ),
    Target(
        "submission_p99",
        "submission p99 (20 clients)",
        "submission",
        _get("ours", "latency_s", "p99"),
        _get("bare", "latency_s", "p99"),
        1.5,
        True,
        "ms",
        1000,
    ),
    Target(
        "burst_last",
        "escalation burst: last first step in the store after T0",
        "escalation",
        _get("ours", "last_in_store_after_t0_s"),
        _get("bare", "last_in_store_after_t0_s"),
        1.25,
        True,
        "s",
        1.0,
        ("burst_n", 1000),
    ),
    Target(
        "lifecycle_wall",
        "lifecycle wall per incident (median)",
        "lifecycle",
        _get("ours_s", "median"),
        _get("bare_s", "median"),
        1.15,
        True,
        "ms",
        1000,
        ("n", 200),
    ),
    Target(
        "scale_worker_rss",
        "open incidents: worker RSS",
        "scale",
        _get("rss_after_bytes", "worker"),
        _get("bare", "rss_after_bytes"),
        250 * MIB,
        False,
        "MiB",
        1 / MIB,
        ("scale_n", 10_000),
    ),
    Target(
        "list_page_p99",
        "GET /incidents p99 (signed in)",
        "scale",
        _get("list_page", "latency_s", "p99"),
        None,
        0.050,
        False,
        "ms",
        1000,
        ("scale_n", 10_000),
    ),
    Target(
        "api_overdue_p99",
        "GET /api/incidents?overdue=true p99",
        "scale",
        _get("api_overdue", "latency_s", "p99"),
        None,
        0.050,
        False,
        "ms",
        1000,
        ("scale_n", 10_000),
    ),
    Target(
        "api_list_p99",
        "GET /api/incidents p99",
        "scale",
        _get("api_list", "latency_s", "p99"),
        None,
        0.050,
        False,
        "ms",
        1000,
        ("scale_n", 10_000),
    ),
)


def spread(values: list[float]) -> dict[str, Any] | None:
    if not values:
        return None
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": len(values),
        "values": values,
    }


def evaluate(runs: list[dict[str, Any]], args: dict[str, Any]) -> list[dict[str, Any]]:
    """A row per target from the runs' results (each: measurement name -> its result)."""
    rows = []
    for t in TARGETS:
        steps = [run[t.step] for run in runs if t.step in run]
        ours = [v for s in steps if (v := t.ours(s)) is not None]
        bare = [v for s in steps if t.bare and (v := t.bare(s)) is not None]
        ratios = []
        for s in steps:
            o, b = t.ours(s), t.bare(s) if t.bare else None
            if o is not None and b:
                ratios.append(o / b)
        judged = spread(ratios if t.on_ratio else ours)
        status = "n/a" if judged is None else "pass" if judged["median"] <= t.limit else "FAIL"
        note = ""
        if t.at_n and args.get(t.at_n[0]) != t.at_n[1]:
            note = f"at {t.at_n[0].replace('_', '-')}={args.get(t.at_n[0])}, target at {t.at_n[1]}"
        if t.step == "lifecycle" and any(not s.get("steps_match", True) for s in steps):
            status, note = "INVALID", "the baseline's Temporal steps differ from ours"
        rows.append(
            {
                "key": t.key,
                "target": t.what,
                "limit": t.limit,
                "limit_on": "ours/bare" if t.on_ratio else "ours",
                "unit": t.unit,
                "scale": t.scale,
                "ours": spread(ours),
                "bare": spread(bare),
                "ratio": spread(ratios),
                "result": status,
                "note": note,
            }
        )
    return rows


def _value(v: float, digits: int) -> str:
    return f"{v:,.{digits}f}"


def _cell(s: dict[str, Any] | None, scale: float, digits: int) -> str:
    if s is None:
        return "—"
    med = _value(s["median"] * scale, digits)
    if s["runs"] == 1:
        return med
    return f"{med} ({_value(s['min'] * scale, digits)}–{_value(s['max'] * scale, digits)})"


DIGITS = {"ms": 1, "s": 2, "MiB": 1, "B": 0}


def _limit(t: dict[str, Any]) -> str:
    if t["limit_on"] == "ours/bare":
        return f"≤ {t['limit']:.2f}x bare"
    return f"≤ {_value(t['limit'] * t['scale'], DIGITS[t['unit']])} {t['unit']}"


def table(rows: list[dict[str, Any]]) -> str:
    """The targets as a Markdown table: median (min–max) over the runs."""
    lines = [
        "| target | unit | ours | bare | ours/bare | limit | result |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        digits = DIGITS[r["unit"]]
        result = r["result"] + (f" ({r['note']})" if r["note"] else "")
        lines.append(
            f"| {r['target']} | {r['unit']} | {_cell(r['ours'], r['scale'], digits)} "
            f"| {_cell(r['bare'], r['scale'], digits)} | {_cell(r['ratio'], 1, 2)} "
            f"| {_limit(r)} | {result} |"
        )
    return "\n".join(lines)
