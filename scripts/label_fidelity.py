"""Where a synthetic image loses its label: the evaluator's confidence in the label asked for at each
link of the chain, on a project whose pipeline has run (issue 17.3).

Links: real test images; their reconstructions by the base's VAE; samples of the base alone; samples
of base + LoRA under the generate params, then with one sampling setting changed at a time. Each row
gives `label_confidence` (mean evaluator probability of the label; overall and the worst FST group),
`fst_fidelity` (share within one type of the FST asked for) and the minutes it took. Prints a
Markdown table:

    python scripts/label_fidelity.py --dataset ham10000 --per-cell 4 >> docs/label_fidelity.md
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from fairaug.config import load_params
from fairaug.data.files import MANIFEST
from fairaug.diffusion.base import load_base_pipeline
from fairaug.diffusion.data import ManifestImages
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--project", type=Path, default=Path("."), help="a project whose pipeline has run")
    parser.add_argument("--per-cell", type=int, default=4, help="samples per (FST, label)")
    args = parser.parse_args()
    params = load_params(args.project / "params.yaml")
    dataset, outputs = params.dataset(args.dataset), args.project / "outputs" / args.dataset
    base_dir, lora_dir = args.project / "outputs" / "models" / "base", outputs / "models" / "lora"
    extractor = evaluator_extractor(outputs / "classifier" / "evaluator" / WEIGHTS)
    manifest = pd.read_parquet(outputs / "prepared" / MANIFEST)
    test = manifest[(manifest["split"] == "test") & (manifest["fst"] >= 1)]
    labels = sorted(manifest.loc[manifest["split"] == "train", "label"].unique())
    rows = []

    started = time.perf_counter()
    real, reconstructed = real_and_reconstructed(load_base_pipeline(base_dir), test, args.project / dataset.root,
                                                 params.base.resolution)
    for link, images in (("real test images", real), ("their VAE reconstructions", reconstructed)):
        rows.append(confidence_row(link, extractor, images, list(test["label"]), list(test["fst"]), started,
                                   sampled=False))

    config = params.generate.model_copy(update={"per_cell": args.per_cell, "overgenerate": 1.0})
    plan = build_plan(config, params.prompts.templates[dataset.domain], dataset.domain, labels)
    negative = params.prompts.negative
    for link, lora, changes in [("base alone", None, {}), *(("base + LoRA", lora_dir, c) for c in SAMPLING_VARIANTS)]:
        started = time.perf_counter()
        varied = config.model_copy(update=changes)
        pipeline = load_sampler(base_dir, lora, varied)
        images = sample(pipeline, plan, varied, negative)
        setting = ", ".join(f"{k}={v}" for k, v in changes.items()) or (
            f"generate params ({config.scheduler}, {config.steps} steps, guidance {config.guidance_scale})")
        rows.append(confidence_row(f"{link}: {setting}", extractor, images, list(plan["label"]),
                                   list(plan["fst"]), started, sampled=True))
    table = pd.DataFrame(rows)
    print(f"\n### {args.dataset}\n")
    print(table.to_markdown(index=False, floatfmt=".2f"))


if __name__ == "__main__":
    main()
