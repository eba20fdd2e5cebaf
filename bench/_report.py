"""What every bench ends with: its timing of two things side by side, and its one JSON line, the last
line of its output, which bench/run_all.py reads into docs/performance.md's table."""

from __future__ import annotations

import json
from collections.abc import Callable


def best_of_alternating(first: Callable[[], float], second: Callable[[], float], repeats: int) -> tuple[float, float]:
    """Each one's fewest seconds over ``repeats`` runs, run in turn so that drifting machine load hits both alike."""
    firsts, seconds = [], []
    for _ in range(repeats):
        firsts.append(first())
        seconds.append(second())
    return min(firsts), min(seconds)


def report(bench: str, value: float, unit: str, target: str, *, digits: int = 3) -> None:
    """Print the bench's JSON line; ``target`` is "<= X" or ">= X", shown as written and checked against ``value``."""
    operator, bound = target.split()
    if operator not in ("<=", ">="):
        raise ValueError(f"target {target!r}: not '<= X' or '>= X'")
    holds = value <= float(bound) if operator == "<=" else value >= float(bound)
    print(json.dumps({"bench": bench, "value": round(value, digits), "unit": unit, "target": target, "holds": holds}))
