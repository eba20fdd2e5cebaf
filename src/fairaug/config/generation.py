"""Params of the generate stage."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from fairaug.config.base import StrictModel
from fairaug.skin.types import FST_VALUES


class FilterConfig(StrictModel):
    min_confidence: float = Field(
        0.3, ge=0, le=1, description="least real-only-classifier probability of the intended label (when it exists)"
    )
    max_ssim_to_real: float = Field(
        0.95, gt=0, le=1, description="an image this similar (SSIM) to its nearest real training image is a near copy"
    )


class GenerateConfig(StrictModel):
    fsts: list[int] = Field(list(FST_VALUES), description="skin types to generate")
    labels: list[str] | None = Field(None, description="labels to generate; null: every label of the train split")
    per_cell: int | None = Field(12, gt=0, description="kept images per (FST, label); or set top_up_to")
    top_up_to: int | None = Field(
        None, gt=0, description="fill each (FST, label) cell of the train split up to this many real + synthetic"
    )
    overgenerate: float = Field(
        3.0,
        ge=1,
        description="images sampled per image kept, for the filter to choose from (tiny: 3 give dermoscopy 0.03 "
        "more label confidence than 1.5)",
    )
    scheduler: Literal["dpmsolver++", "ddim", "pndm", "euler"] = Field("dpmsolver++", description="sampler")
    steps: int = Field(
        8, gt=0, description="sampler steps (tiny: 8 keep label confidence and skin type of 12 or 25 steps)"
    )
    guidance_scale: float = Field(5.0, ge=1, description="classifier-free guidance")
    batch_size: int = Field(16, gt=0, description="images per pipeline call")
    shard_size: int = Field(64, gt=0, description="images per shard file: the unit of resume and of process sharding")
    dtype: Literal["fp32", "fp16", "bf16"] = Field("fp32", description="pipeline dtype (fp16/bf16 on GPU)")
    vae_slicing: bool = Field(
        False, description="decode a batch's latents one image at a time: VAE memory of one image, not of the batch"
    )
    vae_tiling: bool = Field(
        False, description="decode images larger than the VAE's sample size (512 px for SD) in overlapping tiles: "
        "bounded memory, but blended tile seams change the pixels",
    )
    channels_last: bool = Field(
        False, description="UNet and VAE in channels-last memory format (faster convolutions on CUDA tensor cores)"
    )
    compile: bool = Field(False, description="torch.compile the UNet (slow first batch, then faster on a GPU)")
    lora_weights: Literal["ema", "final", "latest"] = Field(
        "ema", description="which LoRA of train_lora to load: ema (the moving average at the last step), final (the "
        "validation train_lora.select_by selected), latest (the last step's)",
    )
    fuse_lora: bool = Field(True, description="fuse the LoRA into the UNet (faster sampling)")
    filter: FilterConfig = Field(default_factory=FilterConfig)
    seed: int = Field(0, description="base seed; each image's seed derives from (seed, fst, label, index)")

    @model_validator(mode="after")
    def _one_target(self) -> GenerateConfig:
        if (self.per_cell is None) == (self.top_up_to is None):
            raise ValueError("set exactly one of per_cell and top_up_to")
        if self.shard_size % self.batch_size:
            raise ValueError("shard_size must be a multiple of batch_size")
        return self
