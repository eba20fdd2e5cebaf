"""DVC stage prepare@<dataset>: validate the raw data, write manifest.parquet and the validation report."""

from __future__ import annotations

import argparse
from pathlib import Path

import mlflow

from fairaug.errors import exit_on_user_error
from fairaug.config import load_params
from fairaug.data.prepare import prepare_dataset, summary_metrics
from fairaug.data.report import render_validation_html
from fairaug.io import atomic_dir, atomic_write_text, write_json
from fairaug.progress import quiet_library_bars
from fairaug.tracking import stage_run


@exit_on_user_error
def main() -> None:
    quiet_library_bars()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--out", type=Path, required=True, help="outputs/<dataset>/prepared")
    args = parser.parse_args()

    params = load_params()
    dataset = params.dataset(args.dataset)
    stage_params = {"prepare": params.prepare.model_dump(), "dataset": dataset.model_dump()}
    with stage_run("prepare", args.dataset, params, stage_params, outs=[args.out]), atomic_dir(args.out) as out:
        manifest, report = prepare_dataset(args.dataset, dataset, params.prepare)
        manifest.to_parquet(out / "manifest.parquet", index=False)
        write_json(out / "validation.json", report)
        atomic_write_text(out / "validation.html", render_validation_html(report, manifest))
        mlflow.log_metrics(summary_metrics(report))
        mlflow.log_artifacts(str(out), artifact_path="prepared")


if __name__ == "__main__":
    main()
