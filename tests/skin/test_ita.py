import math

import numpy as np
import pytest
from skimage.color import lab2rgb, rgb2lab

from fairaug.skin.ita import (
    FST_ITA_EDGES,
    ITA_RANGE,
    estimate_fst,
    estimate_skin,
    fst_from_ita,
    ita_degrees,
    set_abstention_reason,
    skin_mask,
)
from fairaug.skin.types import FST_UNKNOWN


def hand_cielab(rgb: tuple[int, int, int]) -> tuple[float, float, float]:
    """sRGB (8 bit) -> CIELAB (D65, 2 degree observer) from the textbook formulas."""

    def linear(channel: int) -> float:
        c = channel / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = map(linear, rgb)
    x = 0.412453 * r + 0.357580 * g + 0.180423 * b
    y = 0.212671 * r + 0.715160 * g + 0.072169 * b
    z = 0.019334 * r + 0.119193 * g + 0.950227 * b

    def f(t: float) -> float:
        delta = 6 / 29
        return t ** (1 / 3) if t > delta**3 else t / (3 * delta**2) + 4 / 29

    fx, fy, fz = f(x / 0.95047), f(y / 1.0), f(z / 1.08883)
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)


@pytest.mark.parametrize("rgb", [(224, 172, 138), (255, 224, 196), (141, 85, 36), (92, 58, 40), (60, 40, 30)])
def test_ita_matches_hand_computation(rgb):
    L, _, b = hand_cielab(rgb)
    expected = math.degrees(math.atan((L - 50) / b))
    lab = rgb2lab(np.array([[rgb]], dtype=np.uint8))[0, 0]
    assert ita_degrees(lab[0], lab[2]) == pytest.approx(expected, abs=1e-3)


def test_ita_degrees_is_vectorised_and_safe_at_zero_b():
    L = np.array([70.0, 50.0, 30.0, 60.0])
    b = np.array([20.0, 15.0, 20.0, 0.0])
    ita = ita_degrees(L, b)
    assert ita.shape == (4,)
    np.testing.assert_allclose(ita[:3], np.degrees(np.arctan((L[:3] - 50) / b[:3])))
    assert ita[3] == 90.0


@pytest.mark.parametrize(
    ("ita", "fst"),
    [
        (80.0, 1), (55.001, 1), (55.0, 2), (54.999, 2), (48.0, 2), (41.001, 2), (41.0, 3), (40.999, 3),
        (35.0, 3), (28.001, 3), (28.0, 4), (27.999, 4), (20.0, 4), (10.001, 4), (10.0, 5), (9.999, 5),
        (0.0, 5), (-29.999, 5), (-30.0, 5), (-30.001, 6), (-45.0, 6), (-90.0, 6),
    ],
)  # fmt: skip
def test_fst_bins_at_and_around_each_edge(ita, fst):
    assert fst_from_ita(ita) == fst
    assert isinstance(fst_from_ita(ita), int)


def test_fst_from_ita_arrays_and_ranges():
    midpoints = np.array([(low + high) / 2 for low, high in ITA_RANGE.values()])
    np.testing.assert_array_equal(fst_from_ita(midpoints), list(ITA_RANGE))
    # Neighbouring ranges meet at the bin edges.
    assert [ITA_RANGE[fst][0] for fst in range(1, 6)] == list(FST_ITA_EDGES)
    assert all(ITA_RANGE[fst + 1][1] == ITA_RANGE[fst][0] for fst in range(1, 6))
    with pytest.raises(ValueError, match="NaN"):
        fst_from_ita(np.array([30.0, np.nan]))


def lab_to_uint8(lab: np.ndarray) -> np.ndarray:
    return np.round(lab2rgb(lab) * 255).astype(np.uint8)


def dermoscopy_like(size: int = 128, skin=(66.0, 13.0, 17.0), seed: int = 0, lesion_radius: float = 0.2):
    """Uniform noisy skin with a dark lesion, three hairs and a dermoscope vignette; also its parts' masks."""
    rng = np.random.default_rng(seed)
    lab = np.empty((size, size, 3))
    lab[:] = skin
    lab += rng.normal(0, 0.8, lab.shape)
    rows, cols = np.indices((size, size))
    radius = np.hypot(rows - size / 2, cols - size / 2)
    lesion = radius < lesion_radius * size
    lab[lesion] = (35.0, 16.0, 24.0)
    hair = np.zeros((size, size), bool)
    for offset in (0.15, 0.5, 0.8):
        hair |= np.abs(rows - (offset * size + 0.3 * cols)) < 0.6
    lab[hair] = (15.0, 3.0, 5.0)
    vignette = radius > 0.47 * size
    lab[vignette] = (3.0, 0.0, 0.0)
    return lab_to_uint8(lab), lesion, hair, vignette


def test_estimate_ita_recovers_skin_ita_despite_lesion_hair_and_vignette():
    rgb, lesion, hair, vignette = dermoscopy_like()
    skin_rgb = lab_to_uint8(np.array([[[66.0, 13.0, 17.0]]]))
    skin_lab = rgb2lab(skin_rgb)[0, 0]
    expected = float(ita_degrees(skin_lab[0], skin_lab[2]))
    estimate = estimate_skin(rgb)
    assert estimate.ita == pytest.approx(expected, abs=2.0)
    assert estimate_fst(rgb) == (fst_from_ita(estimate.ita), estimate.ita)
    assert 0.5 < estimate.skin_fraction < 1.0

    mask = skin_mask(rgb)
    assert mask.dtype == bool and mask.shape == rgb.shape[:2]
    assert not (mask & (lesion | vignette)).any()
    assert (mask & hair).sum() <= 0.05 * hair.sum()
    assert mask.sum() >= 0.4 * (~(lesion | hair | vignette)).sum()


@pytest.mark.parametrize("skin", [(80.0, 10.0, 11.0), (62.0, 13.0, 18.0), (30.0, 12.0, 18.0)])
def test_estimate_ita_across_skin_types(skin):
    rgb, *_ = dermoscopy_like(skin=skin)
    lab = rgb2lab(lab_to_uint8(np.array([[skin]])))[0, 0]
    assert estimate_skin(rgb).ita == pytest.approx(float(ita_degrees(lab[0], lab[2])), abs=2.0)


@pytest.mark.parametrize("lesion_radius", [0.4, 0.42])
def test_a_lesion_that_fills_the_field_leaves_the_fst_unknown(lesion_radius):
    # light skin (FST II) around a dark lesion that reaches the dermoscope's rim: reading the lesion as
    # skin would say FST V; the skin left is too little, so the estimate abstains
    rgb, *_ = dermoscopy_like(lesion_radius=lesion_radius)
    lesion_only = estimate_skin(rgb)
    assert lesion_only.fst is None and lesion_only.skin_fraction < 0.2
    assert estimate_skin(dermoscopy_like(lesion_radius=0.2)[0]).fst == 2
    # the threshold is the caller's: at 0 only the missing skin surround makes it abstain
    assert estimate_skin(rgb, min_skin_fraction=0.0).fst is None
    assert estimate_skin(dermoscopy_like(lesion_radius=0.3)[0], min_skin_fraction=0.9).fst is None

@pytest.mark.parametrize(
    "rgb",
    [
        np.zeros((32, 32, 3), np.uint8),
        np.full((32, 32, 3), 200, np.uint8),
        np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8),
    ],
    ids=["black", "uniform", "noise"],
)
def test_degenerate_images_give_an_estimate_or_an_abstention(rgb):
    estimate = estimate_skin(rgb)
    assert (estimate.fst is None) or (np.isfinite(estimate.ita) and estimate.fst == fst_from_ita(estimate.ita))
    assert estimate.mask.shape == rgb.shape[:2] and 0.0 <= estimate.skin_fraction <= 1.0


def test_rejects_non_rgb_uint8():
    with pytest.raises(ValueError, match="RGB uint8"):
        estimate_skin(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="RGB uint8"):
        skin_mask(np.zeros((8, 8), np.uint8))


@pytest.mark.parametrize(
    ("estimates", "void"),
    [
        ([1, 2, None, 5], False),  # 1 of 4 abstained: 25% <= 30%
        ([1, FST_UNKNOWN, None, 5], True),  # 2 of 4 (None and FST_UNKNOWN both abstain): 50%
        ([1, float("nan"), 4, 5, 6], False),  # NaN (a missing estimate in a float column) abstains too: 20%
        ([1, float("nan"), float("nan"), 5], True),
        ([3] * 7 + [None] * 3, False),  # exactly 30% stays
        ([3] * 6 + [None] * 4, True),
        ([], False),
    ],
)
def test_a_set_that_mostly_abstains_is_void_as_a_whole(estimates, void):
    reason = set_abstention_reason(estimates)
    assert (reason is not None) == void
    if void:
        assert "lesion crops" in reason
    assert set_abstention_reason(estimates, max_abstention_share=1.0) is None
