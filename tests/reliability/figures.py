"""The reliability suite's figures: each test adds what it measured to one JSON file, and
`python -m tests.reliability.figures` prints the summary line `make reliability` ends with.

Counts add up across tests (incidents, faults, notifications, inputs, 500s …); docs/RELIABILITY.md
quotes the file of the last run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
FILE = ROOT / "test-artifacts" / "reliability" / "figures.json"

# The summary line's fields, in order, with their Chinese-free labels.
SUMMARY = [
    ("incidents", "incidents"),
    ("faults_injected", "faults injected"),
    ("notifications_expected", "notifications expected"),
    ("notifications_received", "received"),
    ("notifications_duplicated", "duplicated"),
    ("notifications_redelivered", "redelivered (same webhook-id)"),
    ("notifications_missed", "missed"),
    ("incidents_lost", "incidents lost"),
    ("incidents_stuck", "stuck"),
    ("inputs_tried", "bad inputs tried"),
    ("responses_500", "500s"),
    ("invalid_started_or_changed", "invalid requests that changed something"),
    ("process_runs", "process runs"),
    ("unclean_exits", "unclean exits"),
]


def reset() -> None:
    FILE.parent.mkdir(parents=True, exist_ok=True)
    FILE.write_text("{}", encoding="utf-8")


def load() -> dict[str, Any]:
    if not FILE.exists():
        return {}
    return dict(json.loads(FILE.read_text(encoding="utf-8")))


def add(test: str, **counts: int | float | str) -> None:
    """Record a test's figures: numbers add to the totals, and each test's own are kept too."""
    data = load()
    totals = data.setdefault("totals", {})
    for key, value in counts.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            totals[key] = totals.get(key, 0) + value
    data.setdefault("tests", {})[test] = counts
    FILE.parent.mkdir(parents=True, exist_ok=True)
    FILE.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")


def summary_line(data: dict[str, Any]) -> str:
    totals = data.get("totals", {})
    parts = [f"{label} {totals.get(key, 0)}" for key, label in SUMMARY]
    return "RELIABILITY: " + ", ".join(parts)


if __name__ == "__main__":
    data = load()
    if not data.get("tests"):
        print("RELIABILITY: no figures recorded (did the suite run?)", file=sys.stderr)
        sys.exit(1)
    print(summary_line(data))
