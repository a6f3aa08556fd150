"""Median and p99 (nearest rank) of a list of samples, and how to print them."""

from __future__ import annotations

import math
import statistics
from typing import Any


def summary(values: list[float]) -> dict[str, Any]:
    """n, median, p99 (nearest rank: the smallest sample at or above 99 % of them), min, max."""
    if not values:
        return {"n": 0, "median": None, "p99": None, "min": None, "max": None}
    ordered = sorted(values)
    rank = max(1, math.ceil(0.99 * len(ordered)))
    return {
        "n": len(ordered),
        "median": statistics.median(ordered),
        "p99": ordered[rank - 1],
        "min": ordered[0],
        "max": ordered[-1],
    }


def ratio(ours: float | None, bare: float | None) -> float | None:
    if ours is None or not bare:
        return None
    return ours / bare


def fmt(s: dict[str, Any], unit: str = "ms", scale: float = 1000.0, digits: int = 1) -> str:
    """'median 12.3 ms  p99 45.6 ms  (n=200)' from a summary in seconds (scale to the unit)."""
    if not s["n"]:
        return "no samples"
    med = s["median"] * scale
    p99 = s["p99"] * scale
    return f"median {med:.{digits}f} {unit}  p99 {p99:.{digits}f} {unit}  (n={s['n']})"


def mib(value: float | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:.1f} MiB"


def cpu_delta(before: dict[str, float | None], after: dict[str, float | None]) -> dict[str, float]:
    return {
        k: round(after[k] - b, 2)  # type: ignore[operator]
        for k, b in before.items()
        if b is not None and after.get(k) is not None
    }


def fmt_cpu(delta: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.1f}" for k, v in delta.items())
