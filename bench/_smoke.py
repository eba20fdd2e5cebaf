"""Bench sizes: what a bench measures with, or, under FAIRAUG_BENCH_SMOKE=1, the least that still
runs all of its code (tests/test_bench.py: does every bench still run and report? Its numbers at
those sizes measure nothing)."""

from __future__ import annotations

import os
from typing import TypeVar

T = TypeVar("T")
SMOKE = os.environ.get("FAIRAUG_BENCH_SMOKE") == "1"


def sizes(measured: T, smoke: T) -> T:
    """``measured``, or ``smoke`` in a smoke run."""
    return smoke if SMOKE else measured
