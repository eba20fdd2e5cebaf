"""The prepare stage: validate the raw data set and write outputs/<d>/prepared:

    manifest.parquet    one row per image (`fairaug.data.prepare.MANIFEST_COLUMNS`)
    validation.json     the checks and counts of `prepare_dataset`
    validation.html     the same for a person, with example images per FST

and the train split's rows alone (`base_train`, outputs/base_train/<d>.parquet): the base model
shared by all data sets pretrains on every data set's, and depends on their directory (DVC cannot
list one dep per data set of `datasets`). Logs the summary numbers and the report to MLflow.
"""

from __future__ import annotations

import sys
from pathlib import Path

import mlflow
import pandas as pd

from fairaug.config import Params
from fairaug.data.files import MANIFEST, VALIDATION_HTML, VALIDATION_JSON
from fairaug.data.prepare import prepare_dataset, summary_metrics
from fairaug.data.report import render_validation_html
from fairaug.io import atomic_dir, atomic_write_bytes, atomic_write_text, write_json
from fairaug.tracking import stage_run


def prepare(params: Params, dataset: str, out_dir: Path, base_train: Path) -> pd.DataFrame:
    """Write the manifest and the validation report of ``dataset`` into ``out_dir`` (all or
    nothing) and its train split to ``base_train``; returns the manifest."""
    config = params.dataset(dataset)
    stage_params = {"prepare": params.prepare.model_dump(), "dataset": config.model_dump()}
    with stage_run("prepare", dataset, params, stage_params, outs=[out_dir, base_train]):
        with atomic_dir(out_dir) as out:
            manifest, report = prepare_dataset(dataset, config, params.prepare)
            manifest.to_parquet(out / MANIFEST, index=False)
            write_json(out / VALIDATION_JSON, report)
            atomic_write_text(out / VALIDATION_HTML, render_validation_html(report, manifest))
            mlflow.log_metrics(summary_metrics(report))
            if report["ita_void"]["reason"]:
                print(f"warning: {dataset}: {report['ita_void']['reason']}; give FST labels or raise "
                      "prepare.max_abstention_share", file=sys.stderr)
            mlflow.log_artifacts(str(out), artifact_path="prepared")
        atomic_write_bytes(base_train, manifest[manifest["split"] == "train"].to_parquet(index=False))
    return manifest
