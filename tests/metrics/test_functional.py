"""The functional core against independent references: scipy's sqrtm for FID, a numpy unbiased MMD^2
for KID, scikit-image for SSIM, closed forms for the rest."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
from skimage.metrics import structural_similarity

from fairaug.metrics import functional as F
from fairaug.stats import UndefinedMetricError


def scipy_fid(real: np.ndarray, fake: np.ndarray) -> float:
    mu_r, mu_f = real.mean(axis=0), fake.mean(axis=0)
    sigma_r, sigma_f = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    root = scipy.linalg.sqrtm(sigma_r @ sigma_f).real
    return float(((mu_r - mu_f) ** 2).sum() + np.trace(sigma_r + sigma_f - 2 * root))


def numpy_kid(real: np.ndarray, fake: np.ndarray) -> float:
    """Unbiased MMD^2, kernel k(x, y) = (x.y / d + 1)^3 (Binkowski et al. 2018)."""
    d, m, n = real.shape[1], len(real), len(fake)
    k_rr, k_ff, k_rf = ((real @ real.T) / d + 1) ** 3, ((fake @ fake.T) / d + 1) ** 3, ((real @ fake.T) / d + 1) ** 3
    return float((k_rr.sum() - np.trace(k_rr)) / (m * (m - 1)) + (k_ff.sum() - np.trace(k_ff)) / (n * (n - 1))
                 - 2 * k_rf.mean())


@pytest.mark.parametrize(("n_real", "n_fake", "dim"), [(300, 250, 16), (120, 90, 32), (40, 30, 96)])
def test_fid_matches_scipy_sqrtm(n_real, n_fake, dim):
    rng = np.random.default_rng(dim)
    real = rng.normal(size=(n_real, dim))
    fake = rng.normal(size=(n_fake, dim)) @ rng.normal(scale=0.4, size=(dim, dim)) + 0.3
    assert F.fid(real, fake) == pytest.approx(scipy_fid(real, fake), rel=1e-4)


@pytest.mark.parametrize(("n", "dim"), [(200, 16), (30, 64)])
def test_fid_is_torchmetrics_value(n, dim):
    import torch
    from torchmetrics.image.fid import FrechetInceptionDistance

    rng = np.random.default_rng(n)
    real, fake = rng.normal(size=(n, dim)), rng.normal(loc=0.5, size=(n + 5, dim))
    metric = FrechetInceptionDistance(feature=F.Precomputed(dim))
    metric.update(torch.from_numpy(real), real=True)
    metric.update(torch.from_numpy(fake), real=False)
    assert F.fid(real, fake) == pytest.approx(float(metric.compute()), rel=1e-6)


def test_fid_of_a_set_with_itself_is_zero():
    features = np.random.default_rng(0).normal(size=(200, 8))
    assert abs(F.fid(features, features)) < 1e-6


@pytest.mark.parametrize("dim", [8, 64])
def test_kid_matches_numpy_unbiased_mmd(dim):
    rng = np.random.default_rng(dim)
    real, fake = rng.normal(size=(80, dim)), rng.normal(loc=0.2, size=(80, dim))
    assert F.kid(real, fake, subset_size=1000) == pytest.approx(numpy_kid(real, fake), rel=1e-6)


def test_kid_of_unequal_sets_within_the_subset_size_is_the_whole_sets_mmd():
    rng = np.random.default_rng(2)
    real, fake = rng.normal(size=(90, 16)), rng.normal(loc=0.3, size=(35, 16))
    assert F.kid(real, fake, subset_size=1000) == pytest.approx(numpy_kid(real, fake), rel=1e-9)


def test_kid_subsets_of_unequal_sets_average_subset_mmds():
    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(100, 8)), rng.normal(loc=1.0, size=(60, 8))
    value = F.kid(real, fake, subset_size=50, subsets=20, seed=3)
    assert value == F.kid(real, fake, subset_size=50, subsets=20, seed=3)  # seeded
    assert value == pytest.approx(numpy_kid(real, fake), rel=0.2)


def test_ssim_matches_skimage():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(40, 48, 3), dtype=np.uint8)
    noisy = np.clip(image.astype(int) + rng.integers(-30, 30, size=image.shape), 0, 255).astype(np.uint8)
    reference = structural_similarity(image, noisy, channel_axis=2, data_range=255)
    assert F.ssim(image, noisy) == pytest.approx(reference, abs=1e-4)
    assert F.ssim(image, image) == pytest.approx(1.0)


def test_inception_score_closed_forms():
    classes = 5
    confident = np.where(np.eye(classes, dtype=bool), 50.0, 0.0).repeat(20, axis=0)  # every class, sure
    assert F.inception_score(confident, splits=1) == pytest.approx(classes, rel=1e-3)
    assert F.inception_score(np.zeros((100, classes)), splits=1) == pytest.approx(1.0)


def test_precision_recall_of_same_and_disjoint_sets():
    features = np.random.default_rng(0).normal(size=(50, 4))
    assert F.precision_recall(features, features, k=3) == (1.0, 1.0)
    assert F.precision_recall(features, features + 100.0, k=3) == (0.0, 0.0)
    half = F.precision_recall(features, np.concatenate([features[:25], features[:25] + 100.0]), k=3)
    assert half[0] == 0.5
    with pytest.raises(UndefinedMetricError):
        F.precision_recall(features[:3], features, k=3)


def test_nearest_distances_match_brute_force():
    rng = np.random.default_rng(0)
    query, reference = rng.normal(size=(30, 5)), rng.normal(size=(40, 5))
    brute = np.linalg.norm(query[:, None] - reference[None], axis=-1)
    distances, indices = F.nearest_distances(query, reference)
    np.testing.assert_allclose(distances, brute.min(axis=1), atol=1e-9)
    np.testing.assert_array_equal(indices, brute.argmin(axis=1))
    own, _ = F.nearest_distances(reference, reference, exclude_self=True)
    brute_own = np.linalg.norm(reference[:, None] - reference[None], axis=-1) + np.diag(np.full(40, np.inf))
    np.testing.assert_allclose(own, brute_own.min(axis=1), atol=1e-9)


def test_mean_pairwise_distance():
    assert F.mean_pairwise_distance(np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0]])) == pytest.approx(10 / 3)


@pytest.fixture(scope="module")
def fixture_thumbnails(tmp_path_factory):
    """Pixel features of 160 fixture images, and of the same images blurred."""
    from PIL import Image, ImageFilter

    from fairaug.data.fixtures import write_derm_fixture
    from fairaug.metrics.extractors import thumbnail_features

    root = write_derm_fixture(tmp_path_factory.mktemp("realness"), n=160, seed=4)
    images = [Image.open(p).convert("RGB") for p in sorted(root.rglob("*.jpg"))]
    blurred = [image.filter(ImageFilter.GaussianBlur(3)) for image in images]
    return thumbnail_features([np.asarray(i) for i in images]), thumbnail_features([np.asarray(i) for i in blurred])


def test_realness_auc_is_chance_for_one_real_set_and_high_for_blurred_copies(fixture_thumbnails):
    real, blurred = fixture_thumbnails
    rng = np.random.default_rng(0)
    halves = []
    for seed in range(5):  # random halves of the one real set
        order = rng.permutation(len(real))
        halves.append(F.realness_auc(real[order[:80]], real[order[80:]], seed=seed))
    assert abs(np.mean(halves) - 0.5) < 0.1  # two halves of one set: the probe cannot tell them apart
    assert F.realness_auc(real[:80], blurred[80:]) > 0.9  # blurred copies of other images: it can
    with pytest.raises(UndefinedMetricError, match="at least 5 real and synthetic"):
        F.realness_auc(real[:4], blurred[:50])
