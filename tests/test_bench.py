"""Every bench still runs and reports: each bench/<name>.py at its smoke sizes (FAIRAUG_BENCH_SMOKE=1,
bench/_smoke.py) in its own process, as `make bench` runs it. `make bench` alone runs them at
their measuring sizes (minutes each), so without this a bench broken by a change goes unnoticed
until then. repro_parallel is left out: its work is `make fixtures`, `fairaug profile ci` and
`fairaug repro --jobs 2` on a fresh clone, which tests/e2e/test_fresh_clone.py runs as they are."""

from __future__ import annotations

import importlib
import json

import pytest

from conftest import REPO_ROOT

BENCH_DIR = REPO_ROOT / "bench"
BENCHES = sorted(p.stem for p in BENCH_DIR.glob("[!_]*.py") if p.stem not in {"run_all", "repro_parallel"})


@pytest.mark.slow
@pytest.mark.parametrize("name", BENCHES)
def test_bench_runs_and_reports_one_json_line(name, monkeypatch):
    monkeypatch.setenv("FAIRAUG_BENCH_SMOKE", "1")  # each bench works in a temporary directory it removes
    monkeypatch.syspath_prepend(str(BENCH_DIR))
    result = importlib.import_module("run_all").run_bench(BENCH_DIR / f"{name}.py")  # as `make bench` runs it
    assert "error" not in result, result["error"]
    assert result["bench"] == name
    assert {"value", "unit", "target", "holds"} <= set(result), result
    json.dumps(result, allow_nan=False)  # standard JSON, as docs/performance.md's table is made from
    if result.get("skipped"):  # a GPU bench on a machine without one
        assert result["value"] is None and name.startswith("gpu_"), result
    else:
        assert isinstance(result["value"], (int, float)) and isinstance(result["holds"], bool), result
