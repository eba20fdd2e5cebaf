"""The generate stage: plan, sample (resumable, sharded across processes), filter, manifest.

outputs/<d>/synthetic is a DVC `persist` out: finished shards survive a kill, and a rerun (also
with more or fewer images per cell, or other batch or shard sizes) samples only the images it does
not have yet (`fairaug.data.storage`). The manifest is rebuilt from the shards on disk every
time, so it never lists an image that is not there, nor one twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from accelerate import PartialState
from PIL import Image

from fairaug.config import Params
from fairaug.data import storage
from fairaug.data.files import MANIFEST
from fairaug.errors import ConfigError, DataError
from fairaug.fairness.files import WEIGHTS
from fairaug.fairness.model import Classifier, load_classifier
from fairaug.generation.filter import RealNeighbours, label_confidence, select
from fairaug.generation.plan import build_plan
from fairaug.generation.sampler import generate_shards, load_sampler
from fairaug.io import atomic_write_bytes
from fairaug.tracking import stage_run
from fairaug.tracking.lineage import dvc_md5

KEPT_GRID = "samples/kept.png"  # MLflow artifact: kept images, one row per (FST, label)
# the generate params that change a sampled image; the others (counts, labels, batch and shard sizes,
# the filter) only change which images there are or how they are stored, and the speed options
# (vae_slicing, channels_last, compile) float rounding at most. Seeds and prompts are checked per image
# (`storage.IMAGE_KEY`).
PIXEL_PARAMS = {"scheduler", "steps", "guidance_scale", "dtype", "lora_weights", "fuse_lora", "vae_tiling"}
MANIFEST_COLUMNS = ["path", "id", "fst", "label", "prompt", "seed", "index", "confidence", "ssim_to_real",
                    "nearest_real", "kept", "reason"]


def plan_for(params: Params, dataset: str, manifest: pd.DataFrame) -> pd.DataFrame:
    """The plan of `build_plan` for the train split's labels (or `generate.labels`, which must be among
    them: the LoRA learnt no other); a ConfigError when a label is unknown or nothing is to be sampled."""
    config, data = params.generate, params.dataset(dataset)
    train = manifest[manifest["split"] == "train"]
    known = sorted(train["label"].unique())
    labels = config.labels or known
    if unknown := sorted(set(labels) - set(known)):
        raise ConfigError(f"generate.labels: {', '.join(unknown)} not among the labels of the train split of "
                          f"{dataset} ({', '.join(known)})")  # fmt: skip
    real_counts = train.groupby(["fst", "label"]).size()
    plan = build_plan(config, params.prompts.templates[data.domain], data.domain, labels, real_counts)
    if plan.empty:
        raise ConfigError(f"generate.top_up_to: nothing to sample, every (fst, label) cell of {dataset}'s train "
                          f"split already has {config.top_up_to} real images or more")  # fmt: skip
    return plan


def filter_classifier(classifier_dir: Path | None, labels: list[str]) -> Classifier | None:
    """The real-only classifier that scores the intended label, if there is one; a DataError when it
    does not know a planned label (it was trained on other classes)."""
    weights = classifier_dir / WEIGHTS if classifier_dir is not None else None
    if weights is None or not weights.exists():
        return None
    classifier = load_classifier(weights)
    if unknown := sorted(set(labels) - set(classifier.classes)):
        raise DataError(f"the filter's classifier does not know the generate labels {', '.join(unknown)} (its "
                        f"classes: {', '.join(classifier.classes)}); rerun train_classifier", file=weights)  # fmt: skip
    return classifier


def sampling_fingerprint(params: Params, base_dir: Path, lora_dir: Path) -> str:
    """What an image's pixels depend on besides its prompt and seed: the sampler params, the negative
    prompt, the base model (resolution included) and the LoRA."""
    payload = json.dumps({
        "generate": params.generate.model_dump(include=PIXEL_PARAMS), "negative": params.prompts.negative,
        "base": dvc_md5(base_dir), "lora": dvc_md5(lora_dir),
    }, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def filter_pool(params: Params, dataset: str, manifest: pd.DataFrame, plan: pd.DataFrame, out_dir: Path,
                classifier: Classifier | None) -> pd.DataFrame:
    """Score every sampled image (shard by shard: bounded memory) and select the kept ones."""
    real_rows = manifest[manifest["split"] == "train"].reset_index(drop=True)
    neighbours = RealNeighbours([Path(params.dataset(dataset).root) / path for path in real_rows["path"]])
    scored = []
    for shard in storage.iter_shards(out_dir):
        images = [storage.decode(png) for png in shard["png"]]
        nearest, ssim = neighbours.query(images)
        confidence = (label_confidence(classifier, images, list(shard["label"])) if classifier is not None
                      else np.full(len(shard), np.nan))
        scored.append(shard.drop(columns=["png"]).assign(
            confidence=confidence, ssim_to_real=ssim, nearest_real=real_rows["path"].to_numpy()[nearest],
            path=shard["shard_file"] + "#" + shard["id"]))
    pool = pd.concat(scored, ignore_index=True).merge(plan[["id", "target"]], on="id")
    return select(pool, params.generate.filter)[MANIFEST_COLUMNS]


def kept_grid(selected: pd.DataFrame, out_dir: Path, per_cell: int = 4) -> Image.Image | None:
    """Kept images, one row per (FST, label), for a look at what the filter let through (None when
    it let nothing through: the stages that read the set say so)."""
    shown = selected[selected["kept"]].groupby(["fst", "label"]).head(per_cell)
    if shown.empty:
        return None
    images = {image_id: image for rows, decoded in storage.read_synthetic(out_dir, shown)
              for image_id, image in zip(rows["id"], decoded, strict=True)}
    tile = next(iter(images.values())).shape[0]
    cells = list(shown.groupby(["fst", "label"]))
    grid = Image.new("RGB", (per_cell * tile, len(cells) * tile), "white")
    for r, (_, cell) in enumerate(cells):
        for c, image_id in enumerate(cell["id"]):
            grid.paste(Image.fromarray(images[image_id]), (c * tile, r * tile))
    return grid


def acceptance_metrics(selected: pd.DataFrame) -> dict[str, float]:
    passed = selected["reason"].isin(["passed", "passed, cell already full"])
    rates = passed.groupby([selected["fst"], selected["label"]]).mean()
    metrics = {f"generate/acceptance.fst{fst}.{label}": float(rate) for (fst, label), rate in rates.items()}
    return metrics | {"generate/acceptance": float(passed.mean()), "generate/kept": float(selected["kept"].sum()),
                      "generate/sampled": float(len(selected))}


def generate_synthetic(params: Params, dataset: str, prepared_dir: Path, base_dir: Path, lora_dir: Path,
                       classifier_dir: Path | None, out_dir: Path) -> Path:
    state = PartialState()
    manifest = pd.read_parquet(prepared_dir / MANIFEST)
    plan = plan_for(params, dataset, manifest)
    classifier = filter_classifier(classifier_dir, sorted(plan["label"].unique()))
    fingerprint = sampling_fingerprint(params, base_dir, lora_dir)
    if state.is_main_process:
        storage.prepare_resume(out_dir, fingerprint, plan)
    state.wait_for_everyone()
    upstream = {"prepare": prepared_dir, "base_model": base_dir, "train_lora": lora_dir}
    if classifier_dir is not None:
        upstream["train_classifier"] = classifier_dir
    tracked = (stage_run("generate", dataset, params, {"generate": params.generate.model_dump()}, upstream=upstream,
                         outs=[out_dir]) if state.is_main_process else contextlib.nullcontext())
    with tracked:
        pipeline = load_sampler(base_dir, lora_dir, params.generate, device=state.device)
        generate_shards(pipeline, plan, out_dir, params.generate, fingerprint, params.prompts.negative,
                        state.process_index, state.num_processes)
        state.wait_for_everyone()
        if state.is_main_process:
            storage.drop_reusable(out_dir)
            selected = filter_pool(params, dataset, manifest, plan, out_dir, classifier)
            buffer = selected.to_parquet(index=False)
            atomic_write_bytes(out_dir / MANIFEST, buffer)
            mlflow.log_metrics(acceptance_metrics(selected))
            if (grid := kept_grid(selected, out_dir)) is not None:
                mlflow.log_image(grid, KEPT_GRID)
            mlflow.log_artifact(str(out_dir / MANIFEST), artifact_path="synthetic")
    return out_dir
