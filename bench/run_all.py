"""Run every bench/<name>.py in its own process and write docs/performance.md from their JSON lines."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import date
from pathlib import Path

from _smoke import SMOKE

BENCH_DIR = Path(__file__).resolve().parent
REPORT = BENCH_DIR.parent / "docs" / "performance.md"


def run_bench(script: Path) -> dict:
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        return {"bench": script.stem, "value": None, "unit": "", "target": "", "holds": False,
                "error": (result.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(lines[-1])


def commit() -> str:
    """The checked-out commit, marked ``+changes`` when the working tree differs from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=BENCH_DIR, capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def main() -> int:
    scripts = sorted(p for p in BENCH_DIR.glob("[!_]*.py") if p.name != Path(__file__).name)  # _*.py: helpers
    results = []
    for script in scripts:
        print(f"running {script.name} ...", flush=True)
        results.append(run_bench(script))
        print(json.dumps(results[-1]), flush=True)

    def holds(r: dict) -> str:
        if r.get("skipped"):  # a GPU bench on a machine without one
            return f"skipped ({r['skipped']})"
        return f"{'yes' if r['holds'] else 'no'}{' (' + r['error'] + ')' if r.get('error') else ''}"

    exit_code = 0 if all(r.get("error") is None for r in results) else 1
    if SMOKE:  # smoke sizes measure nothing: keep the report of the last measuring run
        print(f"FAIRAUG_BENCH_SMOKE=1: {REPORT} not written")
        return exit_code
    rows = "\n".join(f"| {r['bench']} | {r['value']} | {r['unit']} | {r['target']} | {holds(r)} |" for r in results)
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(
        "# Performance\n\n"
        f"Written by `make bench` on {date.today()} at commit {commit()} ({platform.machine()}, {os.cpu_count()} "
        f"cores, Python {platform.python_version()}). Each value is a ratio of two things run side by side in one "
        "process (see each script's docstring).\n\n"
        "| bench | value | unit | target | holds |\n|---|---|---|---|---|\n" + rows + "\n"
    )
    print(f"wrote {REPORT}")
    return exit_code


if __name__ == "__main__":
    raise SystemExit(main())
