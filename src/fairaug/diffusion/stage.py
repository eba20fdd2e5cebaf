"""The diffusion stages: base_model and train_lora.

base_model (outputs/models/base), one base for every data set, as in the real profiles where each
starts from the same hub base: the tiny profile pretrains a small Stable Diffusion from scratch on
every data set's train split (`fairaug.diffusion.pretrain`) and saves it as a diffusers pipeline with
``base.json`` and a grid of samples per FST for each data set (``samples_<d>.png``); real profiles
record a pinned hub revision or a local path in ``base.json`` (`resolve_base`). The stage has one
MLflow run in each data set's experiment, so that each data set's lineage holds its base.

train_lora (outputs/<d>/models/lora, a DVC `persist` out so checkpoints survive a rerun):
pytorch_lora_weights.safetensors (the selected validation's, `train_lora.select_by`; + _latest, _ema,
optional _kohya), lora.json (the weights files this run wrote, with their sha256, and which step was
selected and why), checkpoints/, plots/loss.csv and plots/validation.csv (every validation's scores),
samples/ (validation grids), README.md (model card). A run that does not resume one of the out's own
checkpoints starts from an empty out, so nothing of an earlier run stays in it.

The validation grids are judged by a classifier (`SampleJudge`, built in `fairaug.generation.validation`
above this package: the filter's, never the evaluator); each grid is sampled once, and the same images
are saved, looked at for their skin type and scored.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import mlflow
import numpy as np
import pandas as pd
from accelerate import Accelerator
from mlflow.entities import Metric

from fairaug.config import Params
from fairaug.data.files import MANIFEST
from fairaug.diffusion import checkpoints
from fairaug.diffusion.base import load_base_pipeline, resolve_base, save_tiny_base
from fairaug.diffusion.data import ManifestImages, balanced_weights
from fairaug.diffusion.files import BASE_FILE, EMA_WEIGHTS, LATEST_WEIGHTS, LORA_WEIGHTS, WEIGHTS_RECORD
from fairaug.diffusion.lora import CHECKPOINTS, FST_FIDELITY, LoraData, LoraTrainer, check_device_options
from fairaug.diffusion.perceptual import WEIGHTS_URLS, PerceptualLoss, vgg16_perceptual
from fairaug.diffusion.pretrain import pretrain_base
from fairaug.diffusion.prompts import build_prompt, promptable
from fairaug.diffusion.sampling import fst_samples, most_common
from fairaug.errors import DataError
from fairaug.io import atomic_dir, atomic_write_text, remove_stale_temps
from fairaug.tracking import stage_run
from fairaug.tracking.lineage import dvc_md5
from fairaug.weights.require import download_path

BASE_SAMPLES = "samples.png"  # the tiny base's grid in each data set's run (`base_samples` in the out)
SAMPLES = "samples"  # the LoRA's validation grids, samples/step_<step>.png
PLOTS = "plots/loss.csv"
VALIDATION_PLOT = "plots/validation.csv"  # one row per validation, step 0 first; `selected`: the shipped one
MODEL_CARD = "README.md"
CHECKPOINT_ONLY_PARAMS = {"checkpoint_every", "checkpoint_limit"}


class SampleJudge(Protocol):
    """Scores sampled images with the labels they were asked for: ``{LABEL_CONFIDENCE: .., KID: ..}``
    (`fairaug.diffusion.lora`'s names)."""

    source: Path  # the out holding its model: an upstream of train_lora (lineage)
    key: str  # identifies its model's weights: the selection, and so the checkpoints, depend on them

    def __call__(self, images: Sequence[np.ndarray], labels: Sequence[str]) -> dict[str, float]: ...


def base_model(params: Params, train_splits_dir: Path, out_dir: Path) -> Path:
    """Pretrain the tiny base (tiny profile) on ``train_splits_dir/<d>.parquet`` of every data set, or
    record a pinned hub/local one, into ``out_dir`` (all or nothing), with its pretraining losses,
    samples and ``base.json`` logged to each data set's MLflow run."""
    base, prompts = params.base, params.prompts
    stage_params = {"base": base.model_dump(), "prompts": prompts.model_dump()}
    split_paths = {dataset: train_splits_dir / f"{dataset}.parquet" for dataset in params.datasets}
    for dataset, path in split_paths.items():
        if not path.is_file():
            raise DataError(f"no train split of data set '{dataset}'; run `dvc repro prepare@{dataset}`", file=path)
    with contextlib.ExitStack() as stack:
        runs = {dataset: stack.enter_context(stage_run(
                    "base_model", dataset, params, stage_params, upstream={"prepare": path}, outs=[out_dir],
                    dvc_stage="base_model", nested=index > 0))
                for index, (dataset, path) in enumerate(split_paths.items())}  # fmt: skip
        client = mlflow.MlflowClient()
        with atomic_dir(out_dir) as out:
            if base.source == "tiny":
                train_splits = {dataset: pd.read_parquet(path) for dataset, path in split_paths.items()}
                pipeline, curves = pretrain_base(base, prompts, params.datasets, train_splits)
                save_tiny_base(pipeline, out)
                now = int(time.time() * 1000)
                losses = [Metric(f"pretrain/{name}", loss, now, step) for name, curve in curves.items()
                          for step, loss in enumerate(curve)]  # fmt: skip
                for dataset, run in runs.items():
                    client.log_batch(run.run_id, metrics=losses)  # one call, not one per step
                    labels = most_common(train_splits[dataset]["label"], 4)
                    samples = fst_samples(pipeline, prompts.templates, params.datasets[dataset].domain, labels,
                                          base.pretrain.seed, negative_prompt=prompts.negative)  # fmt: skip
                    samples.grid().save(out / base_samples(dataset))
                    client.log_image(run.run_id, samples.grid(), BASE_SAMPLES)
                    client.log_metric(run.run_id, "base/fst_fidelity", samples.fidelity())
            else:
                resolve_base(base, out, cache_dir=params.weights.cache_dir)
        for run in runs.values():
            client.log_artifact(run.run_id, str(out_dir / BASE_FILE))
    return out_dir


def base_samples(dataset: str) -> str:
    """The tiny base's sample grid for ``dataset``'s labels, one row per FST."""
    return f"samples_{dataset}.png"


def split_images(manifest: pd.DataFrame, split: str, root: Path, resolution: int, template: str,
                 domain: str) -> tuple[pd.DataFrame, ManifestImages]:
    rows = promptable(manifest[manifest["split"] == split]).reset_index(drop=True)
    prompts = [build_prompt(template, domain, r.label, r.fst) for r in rows.itertuples()]
    return rows, ManifestImages(rows, root, resolution, prompts)


def lora_data(params: Params, dataset: str, manifest: pd.DataFrame) -> LoraData:
    config = params.dataset(dataset)
    template = params.prompts.templates[config.domain]
    args = (Path(config.root), params.base.resolution, template, config.domain)
    train_rows, train = split_images(manifest, "train", *args)
    _, val = split_images(manifest, "val", *args)
    weights = balanced_weights(train_rows, list(params.train_lora.balance_by), params.train_lora.balance_power)
    return LoraData(train, weights, val)


def perceptual_network(params: Params) -> PerceptualLoss | None:
    """train_lora's perceptual loss network with its ImageNet weights, or None when the loss is off; a
    missing weights file stops here, named."""
    config = params.train_lora.perceptual_loss
    if config.weight == 0:
        return None
    return vgg16_perceptual(config.layers, download_path(params.weights.cache_dir, WEIGHTS_URLS[config.net],
                                                         config.weights_path))


def training_fingerprint(params: Params, base_dir: Path, manifest_path: Path, judge_key: str | None = None) -> str:
    """What the LoRA depends on: its params (less checkpoint bookkeeping), the base model, the data, and
    the judge of its samples (the selection and early stopping follow its scores)."""
    relevant = params.train_lora.model_dump(exclude=CHECKPOINT_ONLY_PARAMS)
    payload = json.dumps({"train_lora": relevant, "prompts": params.prompts.model_dump(),
                          "resolution": params.base.resolution, "base": dvc_md5(base_dir),
                          "data": dvc_md5(manifest_path), "judge": judge_key}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def write_model_card(out_dir: Path, params: Params, dataset: str, base_dir: Path, manifest_path: Path,
                     history: pd.DataFrame, selection: dict) -> Path:
    base = json.loads((base_dir / BASE_FILE).read_text()) if (base_dir / BASE_FILE).exists() else {}
    last = history.iloc[-1].to_dict() if len(history) else {}
    config = params.train_lora
    return atomic_write_text(out_dir / MODEL_CARD, f"""---
library_name: diffusers
tags: [stable-diffusion, lora, fairaug, research-only]
---
# fairaug LoRA: {dataset}

LoRA (rank {config.rank}, alpha {config.alpha}) on the UNet attention of the base model, trained with
FST-balanced sampling (cells {', '.join(config.balance_by)}, power {config.balance_power}) for
{last.get('step', 0):.0f} steps. Load with `StableDiffusionPipeline.load_lora_weights(dir)`
(`{LORA_WEIGHTS}`: step {selection['step']}'s weights, selected by {selection['rule']}: {selection['reason']};
the last step's in `{LATEST_WEIGHTS}`{f"; EMA weights in `{EMA_WEIGHTS}`" if config.ema.enabled else ""}).
Every validation's scores: `{VALIDATION_PLOT}`.

- Base model: {json.dumps(base) or base_dir}
- Data version (DVC md5 of the prepared manifest): {dvc_md5(manifest_path)}
- Profile: {params.profile}
- Final train loss: {last.get('train/loss', float('nan')):.4f}; validation loss: {last.get('val/loss', float('nan')):.4f}
- Parameters: `{json.dumps(config.model_dump(), sort_keys=True)}`

## Intended use and limits
Research on synthetic data augmentation and fairness across Fitzpatrick skin types only. Not for
diagnosis or any clinical decision. Generated images can carry the biases of the base model and of
the training data, and may reproduce training images: check memorization before sharing them.
""")


def train_lora(params: Params, dataset: str, prepared_dir: Path, base_dir: Path, out_dir: Path,
               resume: str | None = "latest", judge: SampleJudge | None = None) -> Path:
    """Train the LoRA into ``out_dir``, resuming its own checkpoint. ``judge`` scores each validation
    grid; ``train_lora.select_by: samples`` needs one."""
    if judge is None and params.train_lora.select_by == "samples":
        raise ValueError("train_lora.select_by: samples needs a judge of the validation samples (judge=)")
    accelerator = Accelerator(mixed_precision={"fp32": "no"}.get(params.train_lora.mixed_precision,
                                                                 params.train_lora.mixed_precision))
    check_device_options(params.train_lora, accelerator.device)  # before anything loads
    perceptual = perceptual_network(params)
    manifest_path = prepared_dir / MANIFEST
    manifest = pd.read_parquet(manifest_path)
    fingerprint = training_fingerprint(params, base_dir, manifest_path, judge.key if judge is not None else None)
    checkpoint = checkpoints.find_checkpoint(out_dir / CHECKPOINTS, resume, fingerprint)
    resumes_in_place = checkpoint is not None and checkpoint.resolve().parent == (out_dir / CHECKPOINTS).resolve()
    if accelerator.is_main_process and resumes_in_place:
        remove_stale_temps(out_dir, inside=True)  # a persist out: half-written checkpoints, weights of a kill
    elif accelerator.is_main_process and out_dir.exists():
        shutil.rmtree(out_dir)  # a persist out: an earlier run's files (EMA, kohya, grids, checkpoints) would stay
    accelerator.wait_for_everyone()
    pipeline = load_base_pipeline(base_dir)
    trainer = LoraTrainer(pipeline, lora_data(params, dataset, manifest), params.train_lora, out_dir, fingerprint,
                          accelerator, perceptual)
    # one row per FST, one column per label of the train split (one seed each), then healthy skin: does
    # the LoRA give the skin type asked for, and the label?
    domain = params.dataset(dataset).domain
    train_labels = manifest.loc[manifest["split"] == "train", "label"]
    grid_labels = most_common(train_labels, train_labels.nunique())

    def score_grid(step: int) -> dict[str, float]:
        samples = fst_samples(pipeline, params.prompts.templates, domain, grid_labels, seed=params.train_lora.seed,
                              steps=params.train_lora.sample_steps, guidance=params.train_lora.guidance_scale,
                              negative_prompt=params.prompts.negative, seeds_per_label=1)
        (out_dir / SAMPLES).mkdir(parents=True, exist_ok=True)
        samples.grid().save(out_dir / SAMPLES / f"step_{step:06d}.png")
        mlflow.log_image(samples.grid(), f"{SAMPLES}/step_{step:06d}.png")
        scores = {FST_FIDELITY: samples.fidelity()}
        if judge is not None:  # the label columns, not the healthy skin one
            images = [np.asarray(image.convert("RGB")) for row in samples.rows for image in row[:len(grid_labels)]]
            scores |= judge(images, grid_labels * len(samples.rows))
        return scores

    stage_params = {"train_lora": params.train_lora.model_dump(), "prompts": params.prompts.model_dump()}
    upstream = {"prepare": prepared_dir, "base_model": base_dir}
    if judge is not None:
        upstream["train_classifier"] = judge.source
    tracked = (stage_run("train_lora", dataset, params, stage_params, upstream=upstream, outs=[out_dir])
               if accelerator.is_main_process else contextlib.nullcontext())
    with tracked:
        trainer.train(checkpoint, log=lambda metrics, step: mlflow.log_metrics(metrics, step=step),
                      on_validation=score_grid)
        if accelerator.is_main_process:
            weights = trainer.save_final()
            history = trainer.history_frame()
            (out_dir / PLOTS).parent.mkdir(parents=True, exist_ok=True)
            plot = history.rename(columns={"train/loss": "train_loss", "val/loss": "val_loss"})
            atomic_write_text(out_dir / PLOTS, plot[[c for c in ("step", "train_loss", "val_loss") if c in plot]]
                              .to_csv(index=False))
            atomic_write_text(out_dir / VALIDATION_PLOT, trainer.validation_frame().to_csv(index=False))
            write_model_card(out_dir, params, dataset, base_dir, manifest_path, history, trainer.selection())
            for path in [*weights, out_dir / WEIGHTS_RECORD, out_dir / MODEL_CARD, out_dir / PLOTS,
                         out_dir / VALIDATION_PLOT]:
                mlflow.log_artifact(str(path), artifact_path=str(Path("lora", path.relative_to(out_dir)).parent))
    accelerator.wait_for_everyone()
    return out_dir
