"""quality_report's LPIPS metrics, with an LPIPS on a random backbone injected (the code path; the
real backbone weights are absent offline), and group keys of a labelled folder-free set."""

from __future__ import annotations

import math

import lpips
import numpy as np
import pandas as pd
import pytest
from skimage.color import lab2rgb

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


def test_lpips_is_zero_for_copies_and_grows_with_distortion(sets):
    real, _ = sets
    module = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
    config = EvaluateQualityConfig(extractors=["pixels"], n_bootstrap=0, cache_dir=None)
    rows = real.rows.iloc[:12].reset_index(drop=True)
    originals = [real.image(path) for path in rows["path"]]
    rng = np.random.default_rng(1)

    def report_of(noise: float, sampled_ssim=None) -> dict:
        images = [np.clip(image + rng.normal(0, noise, image.shape), 0, 255).astype(np.uint8) for image in originals]
        synthetic = in_memory_set(images, rows.assign(path=[f"s{i}" for i in range(12)]))
        return quality_report(real, synthetic, build_extractors(["pixels"]), config, FeatureCache(None),
                              lpips_from_module("alex", module), sampled_ssim)  # fmt: skip

    copies, slightly, strongly = report_of(0.0), report_of(8.0), report_of(30.0)
    assert copies["quality/lpips.alex"] == pytest.approx(0.0, abs=1e-6)
    assert copies["quality/ssim"] == pytest.approx(1.0) and copies["quality/memorization.ssim_near_copy"] == 1.0
    assert 0 < slightly["quality/lpips.alex"] < strongly["quality/lpips.alex"]
    assert strongly["quality/ssim"] < slightly["quality/ssim"] < 1.0
    # measured on what the generator sampled when a filter chose the set: 3 of 4 samples were copies
    chosen = report_of(30.0, sampled_ssim=[1.0, 0.99, 0.97, 0.2])
    assert chosen["quality/memorization.ssim_near_copy"] == 0.75 and chosen["quality/memorization.ssim_near_copy.n"] == 4


def _skin_images(specs: list[tuple[int, bool]]) -> tuple[ImageSet, ImageSet]:
    """(real, synthetic) sets of FST III or V skin per (requested FST, lesion fills the frame)."""
    size = 32
    skin = {2: (66.0, 13.0, 17.0), 5: (38.0, 12.0, 22.0)}  # ITA 35 (III) and -29 (V): CIELAB of real skin
    rows, images = [], []
    rows_grid, cols_grid = np.indices((size, size))
    lesion = np.hypot(rows_grid - size / 2, cols_grid - size / 2) < 0.62 * size  # fills all but the corners
    for i, (requested, filled) in enumerate(specs):
        lab = np.empty((size, size, 3))
        lab[:] = skin[2] if requested <= 3 else skin[5]
        if filled:
            lab[lesion] = (30.0, 16.0, 24.0)
        images.append((lab2rgb(lab) * 255).round().astype(np.uint8))
        rows.append({"path": f"s{i}", "fst": requested, "label": "nv"})
    synthetic = in_memory_set(images, pd.DataFrame(rows))
    real = in_memory_set(images[:4], pd.DataFrame(rows[:4]).assign(path=[f"r{i}" for i in range(4)]))
    return real, synthetic


def _pixels_report(real: ImageSet, synthetic: ImageSet) -> dict:
    config = EvaluateQualityConfig(extractors=["pixels"], n_bootstrap=0, cache_dir=None)
    return quality_report(real, synthetic, build_extractors(["pixels"]), config, FeatureCache(None))


def test_fst_fidelity_leaves_out_and_counts_abstentions():
    report = _pixels_report(*_skin_images([(2, False), (3, False), (5, False), (5, False), (5, False),
                                           (2, True), (3, True)]))
    # 2 of 7 abstained; of the other 5, FST III skin asked as II or III is within one type, FST V as V
    assert report["quality/fst_fidelity.abstention"] == pytest.approx(2 / 7)
    assert report["quality/fst_fidelity"] == 1.0 and report["quality/fst_fidelity.n"] == 5
    assert report["quality/fst_fidelity.fst2.n"] == 1 and report["quality/fst_fidelity.fst5.n"] == 3
    # each real cell holds copies of one image: no diversity to compare with, said instead of a crash
    assert math.isnan(report["quality/diversity.pixels_ratio"])
    assert "identical" in report["quality/diversity.pixels_ratio.reason"]


def test_fst_fidelity_of_a_set_that_mostly_abstains_is_unavailable():
    # 3 of 7 lesion-filled (43% > 30%): a set of lesion crops, whose other images' skin is not to be trusted
    report = _pixels_report(*_skin_images([(2, False), (3, False), (5, False), (5, False),
                                           (2, True), (3, True), (5, True)]))
    assert report["quality/fst_fidelity.abstention"] == pytest.approx(3 / 7)
    assert math.isnan(report["quality/fst_fidelity"]) and "lesion crops" in report["quality/fst_fidelity.reason"]
    assert "quality/fst_fidelity.fst5" not in report
