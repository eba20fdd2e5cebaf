"""Pydantic model of the evaluate_quality params (also the defaults of `fairaug quality`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from fairaug.config.base import StrictModel


class EvaluateQualityConfig(StrictModel):
    extractors: list[Literal["inception", "evaluator", "pixels"]] = Field(
        ["inception", "evaluator", "pixels"],
        min_length=1,
        description="feature extractors, each a suffix of the metric names (fid.evaluator); inception only "
        "with its weights, else reported unavailable",
    )
    inception_weights: str | None = Field(
        None,
        description="local torch-fidelity Inception-v3 FID weights (weights-inception-2015-12-05-6726825d.pth); "
        "null: torch hub's cache, if it holds them",
    )
    lpips_net: Literal["alex", "vgg", "squeeze"] = Field(
        "alex", description="LPIPS backbone (its torchvision ImageNet weights must be in torch hub's cache)"
    )
    lpips_weights: str | None = Field(
        None,
        description="local torchvision ImageNet weights of lpips_net (e.g. alexnet-owt-7be5be79.pth); null: torch "
        "hub's cache, if it holds them",
    )
    require_weights: bool = Field(
        False,
        description="missing Inception / LPIPS weights stop the stage, naming the file (real profiles); false: "
        "their metrics are reported unavailable",
    )
    reference_split: Literal["train", "val", "test"] = Field(
        "train", description="prepared split the synthetic images are compared with"
    )
    batch_size: int = Field(64, gt=0, description="real images per feature-extraction batch (synthetic: one shard)")
    kid_subset_size: int = Field(1000, gt=1, description="KID subset size (capped at the smaller set)")
    kid_subsets: int = Field(100, gt=0, description="KID subsets averaged when a set is larger than the subset size")
    is_splits: int = Field(10, gt=0, description="Inception Score splits")
    pr_k: int = Field(3, gt=0, description="k of the k-NN manifolds of precision/recall (Kynkaanniemi et al.)")
    realness_folds: int = Field(
        5, ge=2, description="cross-validation folds of the realness probe (real vs synthetic, linear)"
    )
    min_group_size: int = Field(
        5, ge=2, description="FST / label groups with fewer synthetic or real images are flagged small_group "
        "(their values are still reported: read KID there, not FID)"
    )
    n_bootstrap: int = Field(100, ge=0, description="bootstrap resamples for confidence intervals (0: none)")
    confidence: float = Field(0.95, gt=0, lt=1, description="coverage of the percentile bootstrap intervals")
    seed: int = Field(0, description="seed of bootstrap resamples and KID / IS subsets")
    near_copy_ssim: float = Field(
        0.95, gt=0, le=1, description="memorization.ssim_near_copy: share of images at least this SSIM-similar "
        "to their nearest real image"
    )
    near_copy_quantile: float = Field(
        0.05, gt=0, lt=1, description="memorization.near_copy.<extractor>: share of images closer to a real image "
        "than this quantile of the real images' distances to their nearest other real image"
    )
    diversity_max_per_cell: int = Field(
        256, ge=2, description="images per (FST, label) cell used for the pairwise diversity (a seeded sample)"
    )
    lpips_max_per_cell: int = Field(16, ge=2, description="images per (FST, label) cell kept for LPIPS diversity")
    cache_dir: str | None = Field(
        ".fairaug/cache/features", description="cache of real-set features, outside DVC outs; null: no cache"
    )
    device: Literal["cpu", "cuda"] = Field("cpu", description="torch device of the feature extractors and LPIPS")
