"""Sample grids: one row per prompt set (e.g. per FST), one column per noise seed.

Column ``j`` uses the same initial noise in every row, so that rows differ only by their prompts:
what changes down a column is what the prompt (the skin type) changes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import torch
from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from fairaug.data.labels import FST_ROMAN, FST_VALUES
from fairaug.diffusion.prompts import build_prompt

LABEL_WIDTH = 48


@torch.no_grad()
def sample_grid(
    pipeline: StableDiffusionPipeline,
    prompts_by_row: Sequence[Sequence[str]],
    seed: int,
    steps: int = 20,
    guidance: float = 5.0,
    negative_prompt: str = "",
    tile: int = 96,
    row_labels: Sequence[str] | None = None,
) -> Image.Image:
    """Generate ``prompts_by_row`` with DPM-Solver++ (``steps``, classifier-free ``guidance``) into one image.

    Tiles are upscaled (nearest) to ``tile`` pixels so that tiny-profile images can be looked at; the
    pipeline's own scheduler is left untouched.
    """
    sampler = type(pipeline)(
        **{**pipeline.components, "scheduler": DPMSolverMultistepScheduler.from_config(pipeline.scheduler.config)},
        requires_safety_checker=False,
    )
    sampler.set_progress_bar_config(disable=True)
    margin = LABEL_WIDTH if row_labels else 0
    columns = max(len(row) for row in prompts_by_row)
    grid = Image.new("RGB", (margin + columns * tile, len(prompts_by_row) * tile), "white")
    draw = ImageDraw.Draw(grid)
    for row, prompts in enumerate(tqdm(prompts_by_row, desc="sample grid", unit="row", disable=None)):
        images = sampler(
            list(prompts),
            negative_prompt=[negative_prompt] * len(prompts),
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=[torch.Generator().manual_seed(seed + column) for column in range(len(prompts))],
        ).images
        for column, image in enumerate(images):
            grid.paste(image.resize((tile, tile), Image.Resampling.NEAREST), (margin + column * tile, row * tile))
        if row_labels:
            draw.text((4, row * tile + tile // 2), row_labels[row], fill="black", anchor="lm")
    return grid


def fst_sample_grid(
    pipeline: StableDiffusionPipeline,
    templates: Mapping[str, str],
    domain: str,
    labels: Sequence[str],
    seed: int,
    steps: int = 20,
    guidance: float = 5.0,
    negative_prompt: str = "",
    seeds_per_label: int = 2,
) -> Image.Image:
    """A grid with one row per FST (I..VI) and, per label, ``seeds_per_label`` columns; then a column
    of healthy skin (the ``skin`` template, when there is one), which shows the skin type alone."""
    columns = [(templates[domain], domain, label) for label in labels for _ in range(seeds_per_label)]
    if "skin" in templates:
        columns.append((templates["skin"], "skin", ""))
    prompts = [[build_prompt(template, dom, label, fst) for template, dom, label in columns] for fst in FST_VALUES]
    row_labels = [f"FST {FST_ROMAN[fst]}" for fst in FST_VALUES]
    return sample_grid(pipeline, prompts, seed, steps, guidance, negative_prompt, row_labels=row_labels)


def most_common(labels: Iterable[str], n: int) -> list[str]:
    """The ``n`` most frequent labels, ties broken by name (a grid that does not change between runs)."""
    counts = Counter(labels)
    return sorted(counts, key=lambda label: (-counts[label], label))[:n]
