"""The whole pipeline of the ci profile on a clone of this repository's last commit, twice in this
run from nothing: `dvc repro` (one stage at a time, torch's default threads), then `fairaug repro
--jobs 2` (what `make demo` runs: the data sets side by side). Value: fairaug repro / dvc repro, wall
seconds from the command's start to its end, fixture data made before either (`make fixtures`). Each
run starts from the same state: no outputs, no dvc.lock, no run-cache, a new MLflow store.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import report

ROOT = Path(__file__).resolve().parents[1]
ENV = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MLFLOW_TRACKING_URI")} | {
    "MLFLOW_DISABLE_TELEMETRY": "true", "DVC_NO_ANALYTICS": "1",
    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # the venv's dvc and fairaug


def run(command: list[str], cwd: Path) -> None:
    env = ENV | {"PYTHONPATH": str(cwd / "src")}  # the clone's code
    subprocess.run(command, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def fresh_clone(root: Path) -> Path:
    run(["git", "clone", "-q", str(ROOT), str(root)], root.parent)
    for command in [["make", "--no-print-directory", "fixtures"], ["fairaug", "profile", "ci"]]:
        run(command, root)
    return root


def from_nothing(root: Path) -> None:
    for path in ["outputs", "dvc.lock", ".dvc/cache/runs", "mlflow.db", "mlartifacts"]:
        target = root / path
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)


def seconds(command: list[str], root: Path) -> float:
    from_nothing(root)
    start = time.perf_counter()
    run(command, root)
    return time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = fresh_clone(Path(tmp) / "clone")
        sequential = seconds(["dvc", "repro"], root)
        side_by_side = seconds(["fairaug", "repro", "--jobs", "2"], root)
    print(f"ci profile on {len(os.sched_getaffinity(0))} cores: dvc repro {sequential:.0f} s, "
          f"fairaug repro --jobs 2 {side_by_side:.0f} s")
    ratio = side_by_side / sequential
    report("repro_parallel", ratio, "fairaug repro / dvc repro", "<= 0.90")


if __name__ == "__main__":
    main()
