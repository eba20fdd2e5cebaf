"""Where a synthetic image loses its label: the evaluator's confidence in the label asked for at each
link of the chain, on a project whose pipeline has run (issue 17.3).

Links: real test images; their reconstructions by the base's VAE; samples of the base alone; samples
of base + LoRA under the generate params, then with one sampling setting changed at a time. Each row
gives `label_confidence` (mean evaluator probability of the label; overall and the worst FST group),
`fst_fidelity` (share within one type of the FST asked for) and the minutes it took. Prints a
Markdown table:

    python scripts/label_fidelity.py --dataset ham10000 --per-cell 4 >> docs/label_fidelity.md

With --pretrain, it measures a pretraining change instead of the chain: it pretrains a base the way
base_model does, with the given params changed, once for each of --seeds. A key is a base.pretrain
param (`unet_steps`), or a base param when its first part names one (`tiny.latent_channels`,
`prediction_type`); values are read as YAML. It then scores that base's samples on every data set,
with no LoRA, and its VAE's reconstructions of the test images (the most its samples can show). One
pretraining run is not enough to judge a change: the spread between seeds is as large as most changes.

    python scripts/label_fidelity.py --pretrain unet_batch_size=16 unet_steps=2000 --seeds 0 1 2
    python scripts/label_fidelity.py --pretrain tiny.latent_channels=8 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from fairaug.config import load_params
from fairaug.config.diffusion import BaseConfig
from fairaug.data.files import MANIFEST
from fairaug.diffusion.base import load_base_pipeline, save_tiny_base
from fairaug.diffusion.data import ManifestImages
from fairaug.diffusion.pretrain import pretrain_base
from fairaug.fairness.files import WEIGHTS
from fairaug.generation.plan import build_plan
from fairaug.generation.sampler import load_sampler, sample_batch
from fairaug.metrics.extractors import evaluator_extractor
from fairaug.metrics.functional import label_scores
from fairaug.skin.ita import estimate_fst
from fairaug.skin.types import within_one_type

SAMPLING_VARIANTS = ({}, {"guidance_scale": 1.0}, {"guidance_scale": 9.0}, {"steps": 50}, {"scheduler": "ddim"})


def confidence_row(link: str, extractor, images: list[np.ndarray], labels: list[str], fsts: list[int],
                   started: float, sampled: bool) -> dict:
    own, _ = label_scores(extractor.extract(images).logits, extractor.classes, labels)
    by_fst = pd.Series(own).groupby(np.asarray(fsts)).mean()
    row = {"link": link, "n": len(images), "label_confidence": own.mean(), "worst FST": by_fst.min(),
           "worst FST group": f"FST {by_fst.idxmin()}"}
    if sampled:
        estimated = [estimate_fst(image)[0] for image in images]
        pairs = [(e, f) for e, f in zip(estimated, fsts, strict=True) if e is not None]
        row["fst_fidelity"] = within_one_type(*zip(*pairs, strict=True)).mean() if pairs else np.nan
    row["minutes"] = (time.perf_counter() - started) / 60
    return row


@torch.no_grad()
def real_and_reconstructed(pipeline, test: pd.DataFrame, root: Path, resolution: int) -> tuple[list, list]:
    """The test images at the base's resolution, and their round trip through its VAE."""
    pixels = torch.stack([item["pixels"] for item in ManifestImages(test, root, resolution, [""] * len(test))])
    decoded = pipeline.vae.decode(pipeline.vae.encode(pixels).latent_dist.mean).sample

    def as_arrays(batch: torch.Tensor) -> list[np.ndarray]:
        return [np.asarray(image) for image in pipeline.image_processor.postprocess(batch, output_type="pil")]

    return as_arrays(pixels), as_arrays(decoded)


def sample(pipeline, plan: pd.DataFrame, config, negative_prompt: str) -> list[np.ndarray]:
    images = []
    for start in range(0, len(plan), config.batch_size):
        images += sample_batch(pipeline, plan.iloc[start:start + config.batch_size], config, negative_prompt)
    return images


def chain_rows(project: Path, params, dataset_name: str, per_cell: int) -> list[dict]:
    """The rows of every link of ``dataset_name``'s chain, from the project's base, LoRA and evaluator."""
    dataset, outputs = params.dataset(dataset_name), project / "outputs" / dataset_name
    base_dir, lora_dir = project / "outputs" / "models" / "base", outputs / "models" / "lora"
    extractor = evaluator_extractor(outputs / "classifier" / "evaluator" / WEIGHTS)
    manifest = pd.read_parquet(outputs / "prepared" / MANIFEST)
    test = manifest[(manifest["split"] == "test") & (manifest["fst"] >= 1)]
    rows = []

    started = time.perf_counter()
    real, reconstructed = real_and_reconstructed(load_base_pipeline(base_dir), test, project / dataset.root,
                                                 params.base.resolution)
    for link, images in (("real test images", real), ("their VAE reconstructions", reconstructed)):
        rows.append(confidence_row(link, extractor, images, list(test["label"]), list(test["fst"]), started,
                                   sampled=False))

    config, plan = sampling_plan(params, dataset_name, manifest, per_cell)
    for link, lora, changes in [("base alone", None, {}), *(("base + LoRA", lora_dir, c) for c in SAMPLING_VARIANTS)]:
        started = time.perf_counter()
        varied = config.model_copy(update=changes)
        images = sample(load_sampler(base_dir, lora, varied), plan, varied, params.prompts.negative)
        setting = ", ".join(f"{k}={v}" for k, v in changes.items()) or (
            f"generate params ({config.scheduler}, {config.steps} steps, guidance {config.guidance_scale})")
        rows.append(confidence_row(f"{link}: {setting}", extractor, images, list(plan["label"]),
                                   list(plan["fst"]), started, sampled=True))
    return rows


def sampling_plan(params, dataset_name: str, manifest: pd.DataFrame, per_cell: int):
    """The generate params with ``per_cell`` images per (FST, label) and nothing over-generated, and their plan."""
    dataset = params.dataset(dataset_name)
    labels = sorted(manifest.loc[manifest["split"] == "train", "label"].unique())
    config = params.generate.model_copy(update={"per_cell": per_cell, "overgenerate": 1.0})
    return config, build_plan(config, params.prompts.templates[dataset.domain], dataset.domain, labels)


def changed_base(base: BaseConfig, changes: dict[str, str], seed: int) -> BaseConfig:
    """``base`` with ``changes`` (keys relative to base.pretrain, or to base when their first part names
    a base param; YAML values) and pretraining seed ``seed``."""
    values = base.model_dump()
    for key, value in changes.items():
        path = key.split(".")
        node = values if path[0] in values else values["pretrain"]
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = yaml.safe_load(value)
    values["pretrain"]["seed"] = seed
    return BaseConfig.model_validate(values)


def pretrain_rows(project: Path, params, changes: dict[str, str], seeds: list[int], per_cell: int) -> list[dict]:
    """For each seed, a base pretrained as base_model does with ``changes`` (`changed_base`), then the
    "base alone" row of every data set with the project's evaluator."""
    datasets = {name: dataset.model_copy(update={"root": str(project / dataset.root)})
                for name, dataset in params.datasets.items()}  # fmt: skip
    splits = {name: pd.read_parquet(project / "outputs" / "base_train" / f"{name}.parquet") for name in datasets}
    graders = {}  # data set -> its evaluator, test split, sampler config and plan: the same for every seed
    for name in datasets:
        outputs = project / "outputs" / name
        manifest = pd.read_parquet(outputs / "prepared" / MANIFEST)
        test = manifest[(manifest["split"] == "test") & (manifest["fst"] >= 1)]
        graders[name] = (evaluator_extractor(outputs / "classifier" / "evaluator" / WEIGHTS), test,
                         *sampling_plan(params, name, manifest, per_cell))  # fmt: skip
    rows = []
    for seed in seeds:
        base = changed_base(params.base, changes, seed)
        started = time.perf_counter()
        pipeline, _ = pretrain_base(base, params.prompts, datasets, splits, progress=False)
        pretrain_minutes = (time.perf_counter() - started) / 60
        with tempfile.TemporaryDirectory() as base_dir:
            save_tiny_base(pipeline, Path(base_dir))
            for name, (extractor, test, config, plan) in graders.items():
                started = time.perf_counter()
                _, reconstructed = real_and_reconstructed(pipeline, test, Path(datasets[name].root), base.resolution)
                ceiling = confidence_row("VAE reconstructions", extractor, reconstructed, list(test["label"]),
                                         list(test["fst"]), started, sampled=False)
                started = time.perf_counter()
                images = sample(load_sampler(Path(base_dir), None, config), plan, config, params.prompts.negative)
                row = confidence_row("base alone", extractor, images, list(plan["label"]), list(plan["fst"]),
                                     started, sampled=True)
                rows.append({"seed": seed, "dataset": name, **row, "reconstructions": ceiling["label_confidence"],
                             "pretrain minutes": pretrain_minutes})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", help="the data set whose chain to follow (not with --pretrain)")
    parser.add_argument("--project", type=Path, default=Path("."), help="a project whose pipeline has run")
    parser.add_argument("--per-cell", type=int, default=4, help="samples per (FST, label)")
    parser.add_argument("--pretrain", nargs="*", metavar="KEY=VALUE",
                        help="base.pretrain (or base) params to change; pretrain and score such a base instead of the chain")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="pretraining seeds of --pretrain")
    args = parser.parse_args()
    if (args.pretrain is None) == (args.dataset is None):
        parser.error("give either --dataset (the chain) or --pretrain (a pretraining change)")
    params = load_params(args.project / "params.yaml")
    if args.pretrain is None:
        print(f"\n### {args.dataset}\n")
        print(pd.DataFrame(chain_rows(args.project, params, args.dataset, args.per_cell)).to_markdown(
            index=False, floatfmt=".2f"))
        return
    changes = dict(change.split("=", 1) for change in args.pretrain)
    rows = pd.DataFrame(pretrain_rows(args.project, params, changes, args.seeds, args.per_cell))
    print(f"\n### base: {', '.join(args.pretrain) or 'as in params.yaml'}\n")
    print(rows.drop(columns="link").to_markdown(index=False, floatfmt=".3f"))
    summary = rows.groupby("dataset")[["label_confidence", "worst FST", "fst_fidelity", "reconstructions"]].agg(
        ["mean", "std"])
    summary.columns = [f"{column} {statistic}" for column, statistic in summary.columns]
    print(f"\nmean and sd over seeds {args.seeds}:\n")
    print(summary.to_markdown(floatfmt=".3f"))


if __name__ == "__main__":
    main()
