"""A run's artifacts for the dashboard: tables (manifests, plot CSVs), validation grids by step, and
the workspace directory holding a run's DVC outs (the images MLflow does not store)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from fairaug.tracking.runs import RUN_FILE, read_run_id

GRID_STEP = re.compile(r"step_(\d+)\.png$")


def read_table(client: MlflowClient, run_id: str, artifact_path: str, dst_dir: Path) -> pd.DataFrame | None:
    """A run's parquet or CSV artifact as a frame; None when the run has no such artifact.

    Args:
        client: the store to read.
        run_id: the run.
        artifact_path: e.g. ``synthetic/manifest.parquet``.
        dst_dir: where to download it (a cache directory of the caller).
    """
    try:
        local = Path(client.download_artifacts(run_id, artifact_path, str(dst_dir)))
    except (MlflowException, OSError):
        return None
    return pd.read_parquet(local) if local.suffix == ".parquet" else pd.read_csv(local)


def download(client: MlflowClient, run_id: str, artifact_path: str, dst_dir: Path) -> Path | None:
    """A local copy of one artifact file; None when the run has no such artifact."""
    try:
        return Path(client.download_artifacts(run_id, artifact_path, str(dst_dir)))
    except (MlflowException, OSError):
        return None


def validation_grids(client: MlflowClient, run_id: str, folder: str = "samples") -> dict[int, str]:
    """Training step -> artifact path of the sample grids a train_lora run logged (``samples/step_000150.png``)."""
    grids = {}
    for artifact in client.list_artifacts(run_id, folder):
        match = GRID_STEP.search(artifact.path)
        if match:
            grids[int(match.group(1))] = artifact.path
    return dict(sorted(grids.items()))


def workspace_out_dir(root: Path, dataset: str, run_id: str) -> Path | None:
    """The directory under ``root/outputs/<dataset>`` whose run file records ``run_id``: DVC keeps one
    version of each out in the workspace, so older runs' images are not there (None)."""
    for run_file in sorted((root / "outputs" / dataset).glob(f"**/{RUN_FILE}")):
        try:
            if read_run_id(run_file.parent) == run_id:
                return run_file.parent
        except (OSError, ValueError, KeyError):
            continue
    return None
