"""DVC stage base_model@<dataset>: pretrain the tiny base (tiny profile) or record a pinned hub/local one."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.entities import Metric

from fairaug.errors import exit_on_user_error
from fairaug.config import load_params
from fairaug.diffusion.base import BASE_FILE, resolve_base, save_tiny_base
from fairaug.diffusion.pretrain import pretrain_base
from fairaug.diffusion.sampling import fst_samples, most_common
from fairaug.io import atomic_dir
from fairaug.progress import quiet_library_bars
from fairaug.tracking import stage_run


@exit_on_user_error
def main() -> None:
    quiet_library_bars()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--prepared", type=Path, required=True, help="outputs/<dataset>/prepared")
    parser.add_argument("--out", type=Path, required=True, help="outputs/<dataset>/models/base")
    args = parser.parse_args()

    params = load_params()
    dataset, base, prompts = params.dataset(args.dataset), params.base, params.prompts
    stage_params = {"base": base.model_dump(), "prompts": prompts.model_dump()}
    run_context = stage_run("base_model", args.dataset, params, stage_params, upstream={"prepare": args.prepared},
                            outs=[args.out])  # fmt: skip
    with run_context as run, atomic_dir(args.out) as out:
        if base.source == "tiny":
            manifest = pd.read_parquet(args.prepared / "manifest.parquet")
            pipeline, curves = pretrain_base(base, prompts, dataset, manifest)
            save_tiny_base(pipeline, out)
            now = int(time.time() * 1000)
            losses = [Metric(f"pretrain/{name}", loss, now, step) for name, curve in curves.items()
                      for step, loss in enumerate(curve)]  # fmt: skip
            mlflow.MlflowClient().log_batch(run.run_id, metrics=losses)  # one call, not one per step
            labels = most_common(manifest.loc[manifest["split"] == "train", "label"], 4)
            samples = fst_samples(pipeline, prompts.templates, dataset.domain, labels, base.pretrain.seed,
                                  negative_prompt=prompts.negative)  # fmt: skip
            samples.grid().save(out / "samples.png")
            mlflow.log_image(samples.grid(), "samples.png")
            mlflow.log_metric("base/fst_fidelity", samples.fidelity())
        else:
            resolve_base(base, out, cache_dir=params.weights.cache_dir)
        mlflow.log_artifact(str(out / BASE_FILE))


if __name__ == "__main__":
    main()
