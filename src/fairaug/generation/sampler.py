"""Batched, resumable, sharded sampling of a generation plan with a LoRA-tuned pipeline."""

from __future__ import annotations

import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
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
from fairaug.data import storage
from fairaug.diffusion.base import load_base_pipeline
from fairaug.diffusion.files import trained_weights
from fairaug.diffusion.speed import speed_up
from fairaug.progress import progress_bar

SCHEDULERS = {
    "dpmsolver++": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++"}),
    "ddim": (DDIMScheduler, {}),
    "pndm": (PNDMScheduler, {"skip_prk_steps": True}),
    "euler": (EulerDiscreteScheduler, {}),
}
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# PNG encoding (zlib, outside the GIL) of one batch runs on these threads while the next batch samples:
# at 512 px an image takes 50-200 ms to encode, as long as a GPU takes to sample it
PNG_ENCODERS = min(8, os.cpu_count() or 1)


def load_sampler(base_dir: Path, lora_dir: Path | None, config: GenerateConfig,
                 device: torch.device | str = "cpu") -> StableDiffusionPipeline:
    """The base pipeline in ``config.dtype`` with the LoRA loaded (and fused, if asked), set up by
    `configure_sampler`; only weights that the LoRA run wrote are loaded."""
    weights = trained_weights(lora_dir, config.lora_weights) if lora_dir is not None else None
    pipeline = load_base_pipeline(base_dir, torch_dtype=DTYPES[config.dtype])
    if weights is not None:
        pipeline.load_lora_weights(weights.parent, weight_name=weights.name)
        if config.fuse_lora:
            pipeline.fuse_lora()
    return configure_sampler(pipeline, config, device)


def configure_sampler(pipeline: StableDiffusionPipeline, config: GenerateConfig,
                      device: torch.device | str = "cpu") -> StableDiffusionPipeline:
    """A loaded pipeline with the configured scheduler and speed options (VAE slicing / tiling,
    channels-last, compile), on ``device``."""
    scheduler_cls, options = SCHEDULERS[config.scheduler]
    pipeline.scheduler = scheduler_cls.from_config(pipeline.scheduler.config, **options)
    pipeline.set_progress_bar_config(disable=True)
    if config.vae_slicing:
        pipeline.vae.enable_slicing()
    if config.vae_tiling:
        pipeline.vae.enable_tiling()
    pipeline = pipeline.to(device)
    speed_up(pipeline.vae, channels_last=config.channels_last)
    speed_up(pipeline.unet, config.channels_last, config.compile)  # after fusing: the fused weights compiled
    return pipeline


def sample_batch(pipeline: StableDiffusionPipeline, rows: pd.DataFrame, config: GenerateConfig,
                 negative_prompt: str = "") -> list[np.ndarray]:
    """One pipeline call of exactly `config.batch_size` images; each image's generator is seeded by
    its plan seed. A short batch is padded with copies of its last row (dropped after): kernels may
    round differently at another batch size, so this way an image's bytes do not depend on how many
    other images were missing when it was sampled."""
    padded = pd.concat([rows, rows.iloc[[-1] * (config.batch_size - len(rows))]])
    generators = [torch.Generator(device="cpu").manual_seed(int(seed)) for seed in padded["seed"]]
    images = pipeline(
        list(padded["prompt"]), negative_prompt=[negative_prompt] * len(padded),
        num_inference_steps=config.steps, guidance_scale=config.guidance_scale, generator=generators,
        output_type="np",
    ).images[: len(rows)]
    return [(np.clip(image, 0, 1) * 255).round().astype(np.uint8) for image in images]


def generate_shards(pipeline: StableDiffusionPipeline, plan: pd.DataFrame, out_dir: Path, config: GenerateConfig,
                    fingerprint: str, negative_prompt: str = "", rank: int = 0, world_size: int = 1) -> list[int]:
    """Write every shard of this process (shards rank, rank + world_size, ...) not yet on disk,
    sampling only the images that `storage.prepare_resume` did not set aside as reusable.

    The images to sample go through the pipeline in plan order, `batch_size` at a time across shard
    boundaries, and a shard is written as soon as all its images are there. An image's pixels depend
    on its seed and prompt, not on the other images of its batch, so a run on N processes, or one
    that reuses images, writes the bytes one process writes from nothing (at the same batch size).
    """
    done = storage.done_shards(out_dir, fingerprint, plan)
    mine = plan[(plan["shard"] % world_size == rank) & ~plan["shard"].isin(done)]
    reusable = mine.merge(storage.reusable_images(out_dir), on=storage.IMAGE_KEY)
    to_sample = mine[~mine["id"].isin(reusable["id"])]
    batches = (to_sample.iloc[first : first + config.batch_size]
               for first in range(0, len(to_sample), config.batch_size))
    sampled: dict[str, Future[bytes]] = {}  # images sampled for this shard or, at the end of a batch, the next
    written = []
    with (ThreadPoolExecutor(PNG_ENCODERS, thread_name_prefix="png") as encoder,
          progress_bar(total=len(to_sample), desc=f"generate (rank {rank})", unit="img") as progress):
        start = time.perf_counter()
        for shard, rows in mine.groupby("shard"):
            images = storage.read_reusable(reusable[reusable["shard"] == shard])
            while not set(rows["id"]) <= images.keys() | sampled.keys():
                batch = next(batches)
                pixels = sample_batch(pipeline, batch, config, negative_prompt)
                sampled |= {image_id: encoder.submit(storage.png_bytes, image)
                            for image_id, image in zip(batch["id"], pixels, strict=True)}
                progress.update(len(batch))
                progress.set_postfix(img_per_s=f"{progress.n / (time.perf_counter() - start):.2f}")
            images |= {image_id: sampled.pop(image_id).result() for image_id in rows["id"] if image_id in sampled}
            storage.write_shard(storage.shard_path(out_dir, shard), rows[storage.IMAGE_COLUMNS],
                                [images[image_id] for image_id in rows["id"]], fingerprint)
            written.append(int(shard))
    return written
