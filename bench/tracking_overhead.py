"""Tracking overhead of one stage run: `fairaug.tracking.stage_run` (lineage tags, params, the out's
md5 tag, dataset inputs) with N_METRICS metrics and N_ARTIFACTS artifacts, logged to the embedded
store (sqlite + mlartifacts/) and to an MLflow server on PostgreSQL with S3 artifacts
(scripts/services.py: PostgreSQL, moto, `mlflow server` on 127.0.0.1), interleaved, median of
ROUNDS each after one warm-up. Value: server time over embedded time per stage run."""

from __future__ import annotations

import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import report
from _smoke import sizes

REPO = Path(__file__).resolve().parents[1]
N_METRICS = int(os.environ.get("BENCH_N_METRICS", sizes(100, 5)))  # a report's numbers, one batch
N_STEPS = int(os.environ.get("BENCH_N_STEPS", sizes(20, 2)))  # a per-epoch loss series, one call per step
N_ARTIFACTS, ARTIFACT_BYTES = int(os.environ.get("BENCH_N_ARTIFACTS", sizes(5, 1))), 200_000
ROUNDS = int(os.environ.get("BENCH_ROUNDS", sizes(5, 1)))
TARGET = 3.0


def load_services():
    spec = importlib.util.spec_from_file_location("fairaug_services", REPO / "scripts" / "services.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def project(root: Path) -> Path:
    """dvc.yaml and params in a git repo: what stage_run reads for its tags."""
    root.mkdir()
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy2(REPO / name, root / name)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    return root


def one_stage_run(root: Path, params, payload: Path) -> float:
    import mlflow

    from fairaug.tracking import stage_run

    out = root / "outputs" / "wound" / "prepared"
    start = time.perf_counter()
    with stage_run("prepare", "wound", params, {"prepare": params.prepare.model_dump()}, root=root, outs=[out]):
        out.mkdir(parents=True, exist_ok=True)
        (out / "manifest.txt").write_text(str(time.time()))
        for step in range(N_STEPS):
            mlflow.log_metrics({"classifier/train_loss": 1 / (step + 1)}, step=step)
        mlflow.log_metrics({f"bench/m{i}": float(i) for i in range(N_METRICS)})
        mlflow.log_artifacts(str(payload), artifact_path="bench")
    return time.perf_counter() - start


def main() -> None:
    from fairaug.config import Params

    services_module = load_services()
    params = Params()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        payload = tmp / "payload"
        payload.mkdir()
        for i in range(N_ARTIFACTS):
            (payload / f"artifact-{i}.bin").write_bytes(os.urandom(ARTIFACT_BYTES))
        embedded_root, server_root = project(tmp / "embedded"), project(tmp / "server")
        services = services_module.start(tmp / "services", mlflow_workers=1)
        try:
            times: dict[str, list[float]] = {"embedded": [], "server": []}
            for round_ in range(ROUNDS + 1):  # round 0: warm-up (experiment creation, connections)
                for store, root in (("embedded", embedded_root), ("server", server_root)):
                    os.environ.pop("MLFLOW_TRACKING_URI", None)
                    if store == "server":
                        os.environ.update(services.env)
                    took = one_stage_run(root, params, payload)
                    if round_:
                        times[store].append(took)
        finally:
            services.stop()
    embedded, server = statistics.median(times["embedded"]), statistics.median(times["server"])
    ratio = server / embedded
    print(f"one stage run with {N_METRICS} metrics, {N_STEPS} steps, {N_ARTIFACTS} artifacts of "
          f"{ARTIFACT_BYTES // 1000} kB: embedded sqlite {embedded:.2f} s, server (PostgreSQL + S3) {server:.2f} s "
          f"(median of {ROUNDS})")  # fmt: skip
    report("tracking_overhead", ratio, "server/embedded time per stage run", f"<= {TARGET:.2f}")


if __name__ == "__main__":
    main()
