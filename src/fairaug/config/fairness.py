"""Pydantic models of the downstream classifier and fairness-evaluation params.

Defaults are the `tiny` profile: a small CNN that trains in seconds on 2 CPU cores on a few hundred
32 px fixture images. Real profiles switch `arch` to a torchvision backbone with ImageNet weights.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from fairaug.config.base import StrictModel

ClassifierArch = Literal["small_cnn", "resnet50", "efficientnet_b0"]


class ClassifierConfig(StrictModel):
    arch: ClassifierArch = Field(
        "small_cnn", description="small_cnn: ~100k-parameter CNN (tiny profile); or a torchvision backbone"
    )
    image_size: int = Field(32, ge=16, description="images are resized to image_size x image_size pixels")
    epochs: int = Field(30, gt=0, description="most training epochs (early stopping may end sooner)")
    batch_size: int = Field(32, gt=0, description="images per optimisation step")
    lr: float = Field(3e-3, gt=0, description="AdamW learning rate")
    weight_decay: float = Field(1e-4, ge=0, description="AdamW weight decay")
    patience: int = Field(
        5, gt=0, description="stop after this many epochs without a lower validation loss; keep the best epoch"
    )
    class_weighting: bool = Field(True, description="weight the loss by inverse class frequency in the train split")
    augment: bool = Field(True, description="random flips and small rotations of training images")
    seed: int = Field(0, description="seeds python, numpy and torch: same seed, same weights (on CPU)")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes (0: load in the training process)")
    device: Literal["cpu", "cuda"] = Field("cpu", description="torch device; results are bit-reproducible on CPU")
    pretrained: bool = Field(
        False, description="torchvision backbones: download the IMAGENET1K_V1 weights (needs internet)"
    )
    weights_path: str | None = Field(
        None, description="torchvision backbones: local .safetensors file with the backbone's ImageNet weights"
    )

    @model_validator(mode="after")
    def _weights_need_a_backbone(self) -> ClassifierConfig:
        if self.arch == "small_cnn" and (self.pretrained or self.weights_path):
            raise ValueError("pretrained / weights_path apply to resnet50 and efficientnet_b0, not small_cnn")
        if self.pretrained and self.weights_path:
            raise ValueError("set either pretrained (download) or weights_path (local file), not both")
        return self


class FairnessConfig(StrictModel):
    min_group_size: int = Field(
        5,
        ge=1,
        description="FST groups with fewer test images are flagged small_group and left out of the gaps "
        "(their own per-FST metrics are still reported)",
    )
    n_bootstrap: int = Field(200, ge=0, description="bootstrap resamples for confidence intervals (0: none)")
    confidence: float = Field(0.95, gt=0, lt=1, description="coverage of the percentile bootstrap intervals")
    stratify_by_fst: bool = Field(
        True, description="resample rows within each FST group, so that every resample keeps the group sizes"
    )
    seed: int = Field(0, description="seed of the bootstrap resamples")
