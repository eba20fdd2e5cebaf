"""A run's artifacts for the dashboard: tables (manifests, plot CSVs), validation grids by step, and
the workspace directory holding a run's DVC outs (the images MLflow does not store)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from ruamel.yaml import YAML, YAMLError

from fairaug.tracking.runs import DVC_OUT_MD5_TAG

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


def locked_outs(root: Path) -> dict[str, str]:
    """Out path -> DVC md5 as dvc.lock records them: what `dvc repro` left in the workspace."""
    try:
        lock = YAML(typ="safe").load((root / "dvc.lock").read_text()) or {}
    except (OSError, YAMLError):
        return {}
    return {out["path"]: out["md5"] for stage in lock.get("stages", {}).values()
            for out in stage.get("outs", []) if "md5" in out}  # fmt: skip


def workspace_out_dir(root: Path, run_tags: Mapping[str, str]) -> Path | None:
    """The directory under ``root`` holding a run's DVC out as it wrote it (its ``dvc.out_md5.<path>``
    tag is what dvc.lock records for the path; reading dvc.lock, not hashing a synthetic set per page
    view). DVC keeps one version of each out in the workspace, so older runs' are not there (None)."""
    locked = locked_outs(root)
    for key, md5 in run_tags.items():
        path = key.removeprefix(DVC_OUT_MD5_TAG)
        if key.startswith(DVC_OUT_MD5_TAG) and locked.get(path) == md5 and (root / path).is_dir():
            return root / path
    return None
