"""quality_report's LPIPS metrics, with an LPIPS on a random backbone injected (the code path; the
real backbone weights are absent offline), and group keys of a labelled folder-free set."""

from __future__ import annotations

import math

import lpips
import numpy as np
import pandas as pd
import pytest

from fairaug.config.quality import EvaluateQualityConfig
from fairaug.metrics.extractors import build_extractors
from fairaug.metrics.features import FeatureCache, ImageSet
from fairaug.metrics.perceptual import lpips_from_module
from fairaug.metrics.report import quality_report


def in_memory_set(images: list[np.ndarray], rows: pd.DataFrame) -> ImageSet:
    lookup = dict(zip(rows["path"], images, strict=True))

    def batches(size: int):
        for start in range(0, len(rows), size):
            yield rows.iloc[start : start + size], images[start : start + size]

    image_set = ImageSet(rows, batches, version="memory")
    object.__setattr__(image_set, "image", lookup.__getitem__)  # single images by path, from memory
    return image_set


@pytest.fixture
def sets():
    rng = np.random.default_rng(0)

    def make(n: int, shift: int, prefix: str) -> ImageSet:
        base = rng.integers(60, 200, size=(n, 1, 1, 3))
        images = list(np.clip(base + rng.integers(-20, 20, size=(n, 24, 24, 3)) + shift, 0, 255).astype(np.uint8))
        rows = pd.DataFrame({"path": [f"{prefix}{i}" for i in range(n)], "fst": np.arange(n) % 3 + 1,
                             "label": np.where(np.arange(n) % 2, "mel", "nv")})  # fmt: skip
        return in_memory_set(images, rows)

    return make(40, 0, "r"), make(24, 10, "s")


def test_lpips_and_group_keys(sets):
    real, synthetic = sets
    module = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
    config = EvaluateQualityConfig(extractors=["pixels"], n_bootstrap=10, cache_dir=None, lpips_max_per_cell=3)
    report = quality_report(real, synthetic, build_extractors(["pixels"]), config, FeatureCache(None),
                            lpips_from_module("alex", module))  # fmt: skip
    assert report["quality/lpips.alex"] > 0 and report["quality/lpips.alex.n"] == 24
    assert report["quality/lpips.alex.ci_low"] <= report["quality/lpips.alex.ci_high"]
    assert report["quality/diversity.lpips_alex"] > 0
    assert report["quality/diversity.lpips_alex.n"] == 18  # 3 kept in each of the 6 (fst, label) cells
    for group in ("fst1", "fst2", "fst3", "label_mel", "label_nv"):
        assert not math.isnan(report[f"quality/kid.pixels.{group}"]) and f"quality/lpips.alex.{group}" in report
    assert report["quality/n_synthetic.fst1"] == 8 and report["quality/fst1.small_group"] is False
    assert math.isnan(report["quality/kid.pixels.fst4"])  # no images asked for FST 4
    assert report["quality/kid.pixels.fst4.reason"] == "needs at least 2 images in each set, has 0"
    assert report["quality/fst4.small_group"] is True
