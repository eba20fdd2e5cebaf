"""Batched, resumable, sharded sampling of a generation plan with a LoRA-tuned pipeline."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
)

from fairaug.config.generation import GenerateConfig
from fairaug.diffusion.base import load_base_pipeline
from fairaug.diffusion.lora import WEIGHTS_BY_CHOICE
from fairaug.generation import storage
from fairaug.progress import progress_bar

SCHEDULERS = {
    "dpmsolver++": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++"}),
    "ddim": (DDIMScheduler, {}),
    "pndm": (PNDMScheduler, {"skip_prk_steps": True}),
    "euler": (EulerDiscreteScheduler, {}),
}
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def load_sampler(base_dir: Path, lora_dir: Path | None, config: GenerateConfig,
                 device: torch.device | str = "cpu") -> StableDiffusionPipeline:
    """The base pipeline with the configured scheduler and the LoRA loaded (and fused, if asked)."""
    pipeline = load_base_pipeline(base_dir, torch_dtype=DTYPES[config.dtype])
    scheduler_cls, options = SCHEDULERS[config.scheduler]
    pipeline.scheduler = scheduler_cls.from_config(pipeline.scheduler.config, **options)
    if lora_dir is not None:
        pipeline.load_lora_weights(lora_dir, weight_name=WEIGHTS_BY_CHOICE[config.lora_weights])
        if config.fuse_lora:
            pipeline.fuse_lora()
    pipeline.set_progress_bar_config(disable=True)
    return pipeline.to(device)


def sample_batch(pipeline: StableDiffusionPipeline, rows: pd.DataFrame, config: GenerateConfig,
                 negative_prompt: str = "") -> list[np.ndarray]:
    """One pipeline call; each image's generator is seeded by its plan seed."""
    generators = [torch.Generator(device="cpu").manual_seed(int(seed)) for seed in rows["seed"]]
    images = pipeline(
        list(rows["prompt"]), negative_prompt=[negative_prompt] * len(rows),
        num_inference_steps=config.steps, guidance_scale=config.guidance_scale, generator=generators,
        output_type="np",
    ).images
    return [(np.clip(image, 0, 1) * 255).round().astype(np.uint8) for image in images]


def generate_shards(pipeline: StableDiffusionPipeline, plan: pd.DataFrame, out_dir: Path, config: GenerateConfig,
                    fingerprint: str, negative_prompt: str = "", rank: int = 0, world_size: int = 1) -> list[int]:
    """Sample every shard of this process (shards rank, rank + world_size, ...) not yet on disk.

    Shards, and the batches inside them, hold the same images whatever the process count, so a
    run on N processes writes the bytes one process writes.
    """
    done = storage.done_shards(out_dir, fingerprint)
    mine = [s for s in sorted(plan["shard"].unique()) if s % world_size == rank and s not in done]
    todo = int(plan["shard"].isin(mine).sum())
    written = []
    with progress_bar(total=todo, desc=f"generate (rank {rank})", unit="img") as progress:
        start = time.perf_counter()
        for shard in mine:
            rows = plan[plan["shard"] == shard]
            images = []
            for first in range(0, len(rows), config.batch_size):
                batch = rows.iloc[first : first + config.batch_size]
                images.extend(storage.png_bytes(i) for i in sample_batch(pipeline, batch, config, negative_prompt))
                progress.update(len(batch))
                progress.set_postfix(img_per_s=f"{progress.n / (time.perf_counter() - start):.2f}")
            storage.write_shard(storage.shard_path(out_dir, shard), rows, images, fingerprint)
            written.append(int(shard))
    return written
