"""Pydantic models of the downstream classifier and fairness-evaluation params.

Defaults are the `tiny` profile: a small CNN that trains in seconds on 2 CPU cores on a few hundred
32 px fixture images. Real profiles switch `arch` to a torchvision backbone with ImageNet weights.

`MixConfig` (params section ``mix``) says how train_classifier_augmented@<dataset> adds kept
synthetic images to the real train split; it is its own section so that changing it never retrains
the real-only classifier (DVC tracks params per section).
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
    seed: int = Field(0, description="seeds python, numpy and torch: same seed, same weights (CPU, same thread count)")
    evaluator_seed: int = Field(
        1, description="seed of the evaluator (train_evaluator@<d>), the classifier evaluate_quality "
        "grades synthetic images with: never the filter's, so a different seed from `seed`"
    )
    num_workers: int = Field(
        0, ge=0, description="DataLoader worker processes: decode every image once, then prepare each batch (0: none)"
    )
    device: Literal["cpu", "cuda"] = Field(
        "cpu", description="torch device; results are bit-reproducible on CPU at the same thread count"
    )
    pretrained: bool = Field(
        False, description="torchvision backbones: download the IMAGENET1K_V1 weights (needs internet)"
    )
    weights_path: str | None = Field(
        None, description="torchvision backbones: local .safetensors file with the backbone's ImageNet weights"
    )
    fst_confusion_weight: float = Field(
        0.0,
        ge=0,
        description="fairness-aware training (FairDisCo-style): weight of the loss that makes the features "
        "confuse a branch predicting skin type (0: off)",
    )
    fst_branch_lr: float = Field(
        1e-3, gt=0, description="AdamW learning rate of that skin-type branch (used when fst_confusion_weight > 0)"
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


class SyntheticRatios(StrictModel):
    """Per FST group k, the synthetic ratio r_k of `MixConfig` (FairSkin-style: more synthetic images
    for the skin types that are rare in real data)."""

    fst1: float = Field(0.2, ge=0, le=1, description="FST I: synthetic ratio r_1")
    fst2: float = Field(0.3, ge=0, le=1, description="FST II: synthetic ratio r_2")
    fst3: float = Field(0.4, ge=0, le=1, description="FST III: synthetic ratio r_3")
    fst4: float = Field(0.5, ge=0, le=1, description="FST IV: synthetic ratio r_4")
    fst5: float = Field(0.7, ge=0, le=1, description="FST V: synthetic ratio r_5")
    fst6: float = Field(0.8, ge=0, le=1, description="FST VI: synthetic ratio r_6")

    def of(self, fst: int) -> float:
        return float(getattr(self, f"fst{fst}"))


class MixConfig(StrictModel):
    """The augmented classifier's train split: every real train image plus S_k kept synthetic images
    of each FST group k. With R_k real train images of FST k, A_k kept synthetic images of FST k and
    the ratio r_k:

    - ``target_per_fst: null``: S_k = min(A_k, round(R_k * r_k / (1 - r_k))), so that synthetic
      images are the share r_k of group k's training images (r_k = 0.8: 4 synthetic per real image);
      every r_k must then be below 1, and a group without real images gets none;
    - ``target_per_fst: T``: S_k = min(A_k, round(r_k * max(0, T - R_k))): group k is topped up
      towards T images, r_k of the way (r_k = 1: all the way); groups with T or more real images
      get none.

    round() rounds halves up. Which S_k of the A_k images: a seeded random choice within the group
    (same seed and synthetic set, same images), independent of the other groups' counts. Validation
    and test splits stay real-only: they measure the effect on real patients. The counts per group
    (real, available, wanted, synthetic, share) are written to mix.json and logged to MLflow.

    ``mode`` says how the S_k images are used: ``concat`` adds them to the real train split;
    ``pretrain_finetune`` (From Fake to Real, arXiv 2308.04553) trains on them alone for
    ``pretrain_epochs``, then goes on with the same model on the real train split alone with a fresh
    optimizer and the usual early stopping, which avoids a real/synthetic shortcut in one mixed set.
    """

    synthetic_ratio: SyntheticRatios = Field(
        default_factory=SyntheticRatios, description="r_k per FST group: see target_per_fst for its meaning"
    )
    target_per_fst: int | None = Field(
        None,
        gt=0,
        description="null: r_k is the synthetic share of FST k's training images; T: top each FST group up "
        "towards T training images, r_k of the way",
    )
    seed: int = Field(0, description="seed of the choice of synthetic images within each FST group")
    mode: Literal["concat", "pretrain_finetune"] = Field(
        "concat",
        description="concat: train on real + synthetic images together; pretrain_finetune: first on the chosen "
        "synthetic images alone, then on the real train split (fresh optimizer, early stopping), From Fake to Real",
    )
    pretrain_epochs: int = Field(
        10, gt=0, description="pretrain_finetune: epochs on the synthetic images (no early stopping: val is real)"
    )

    @model_validator(mode="after")
    def _shares_below_one(self) -> MixConfig:
        if self.target_per_fst is None:
            full = [name for name, value in self.synthetic_ratio.model_dump().items() if value >= 1]
            if full:
                raise ValueError(
                    f"synthetic_ratio.{full[0]} = 1 is a share of 100% synthetic images: without "
                    "target_per_fst every ratio must be below 1"
                )
        return self
