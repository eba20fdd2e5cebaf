"""Sample grids: one row per prompt set (e.g. per FST), one column per noise seed.

Column ``j`` uses the same initial noise in every row, so that rows differ only by their prompts:
what changes down a column is what the prompt (the skin type) changes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline
from PIL import Image, ImageDraw

from fairaug.diffusion.prompts import build_prompt
from fairaug.progress import progress_bar
from fairaug.skin.ita import estimate_fst, set_abstention_reason
from fairaug.skin.types import FST_ROMAN, FST_VALUES, within_one_type

LABEL_WIDTH = 48


@torch.no_grad()
def sample_rows(
    pipeline: StableDiffusionPipeline,
    prompts_by_row: Sequence[Sequence[str]],
    seed: int,
    steps: int = 20,
    guidance: float = 5.0,
    negative_prompt: str = "",
) -> list[list[Image.Image]]:
    """Generate ``prompts_by_row`` with DPM-Solver++ (``steps``, classifier-free ``guidance``); the
    pipeline's own scheduler is left untouched."""
    sampler = type(pipeline)(
        **{**pipeline.components, "scheduler": DPMSolverMultistepScheduler.from_config(pipeline.scheduler.config)},
        requires_safety_checker=False,
    )
    sampler.set_progress_bar_config(disable=True)
    return [
        sampler(
            list(prompts),
            negative_prompt=[negative_prompt] * len(prompts),
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=[torch.Generator().manual_seed(seed + column) for column in range(len(prompts))],
        ).images
        for prompts in progress_bar(prompts_by_row, desc="sample grid", unit="row")
    ]


def grid_image(rows: Sequence[Sequence[Image.Image]], tile: int = 96, row_labels: Sequence[str] | None = None
               ) -> Image.Image:
    """The images in one picture, upscaled (nearest) to ``tile`` pixels so that tiny-profile images
    can be looked at."""
    margin = LABEL_WIDTH if row_labels else 0
    grid = Image.new("RGB", (margin + max(len(row) for row in rows) * tile, len(rows) * tile), "white")
    draw = ImageDraw.Draw(grid)
    for r, row in enumerate(rows):
        for column, image in enumerate(row):
            grid.paste(image.resize((tile, tile), Image.Resampling.NEAREST), (margin + column * tile, r * tile))
        if row_labels:
            draw.text((4, r * tile + tile // 2), row_labels[r], fill="black", anchor="lm")
    return grid


@dataclass(frozen=True)
class FstSamples:
    """Samples with one row per FST (I..VI): a grid to look at, and how often the skin type asked
    for is the one the image shows."""

    rows: list[list[Image.Image]]

    def grid(self) -> Image.Image:
        return grid_image(self.rows, row_labels=[f"FST {FST_ROMAN[fst]}" for fst in FST_VALUES])

    def fidelity(self) -> float:
        """Share of samples whose ITA-estimated FST is within one type of their row's FST, among those
        the estimate did not abstain on (NaN if it abstained on all, or on too many: a set of lesion
        crops): `quality/fst_fidelity`'s measure."""
        pairs = [(estimate_fst(np.asarray(image.convert("RGB")))[0], fst)
                 for fst, row in zip(FST_VALUES, self.rows, strict=True) for image in row]
        if set_abstention_reason([estimated for estimated, _ in pairs]) is not None:
            return float("nan")
        pairs = [(estimated, fst) for estimated, fst in pairs if estimated is not None]
        if not pairs:
            return float("nan")
        estimated, requested = zip(*pairs, strict=True)
        return float(within_one_type(estimated, requested).mean())


def fst_samples(
    pipeline: StableDiffusionPipeline,
    templates: Mapping[str, str],
    domain: str,
    labels: Sequence[str],
    seed: int,
    steps: int = 20,
    guidance: float = 5.0,
    negative_prompt: str = "",
    seeds_per_label: int = 2,
) -> FstSamples:
    """One row per FST (I..VI) and, per label, ``seeds_per_label`` columns; then a column of healthy
    skin (the ``skin`` template, when there is one), which shows the skin type alone."""
    columns = [(templates[domain], domain, label) for label in labels for _ in range(seeds_per_label)]
    if "skin" in templates:
        columns.append((templates["skin"], "skin", ""))
    prompts = [[build_prompt(template, dom, label, fst) for template, dom, label in columns] for fst in FST_VALUES]
    return FstSamples(sample_rows(pipeline, prompts, seed, steps, guidance, negative_prompt))


def most_common(labels: Iterable[str], n: int) -> list[str]:
    """The ``n`` most frequent labels, ties broken by name (a grid that does not change between runs)."""
    counts = Counter(labels)
    return sorted(counts, key=lambda label: (-counts[label], label))[:n]
