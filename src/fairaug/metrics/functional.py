"""Quality metrics as pure functions of features (n, d) or images, numpy in and floats out.

KID and the Inception Score are torchmetrics' own implementations: their feature module is the
identity (`Precomputed`), because features are extracted once per image set (and cached for the
real set) by `fairaug.metrics.extractors`, then shared by every metric, group and bootstrap resample.
FID is torchmetrics' value in a faster closed form (see `fid`).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from numpy.typing import NDArray
from scipy.spatial.distance import pdist
from skimage.metrics import structural_similarity
from torch import nn
from torchmetrics.image.inception import InceptionScore
from torchmetrics.image.kid import KernelInceptionDistance, poly_kernel

from fairaug.stats import UndefinedMetricError

Array = NDArray[np.float64]
BLOCK = 1 << 16  # entries of a pairwise distance / kernel block (512 KiB): bounded memory for any set size


class Precomputed(nn.Module):
    """torchmetrics' feature module for features extracted beforehand: the identity."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """torchmetrics warns that KID and IS keep every feature: here they are given features, not images."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module="torchmetrics")
        warnings.filterwarnings("ignore", message=".*degrees of freedom.*")
        yield


def _tensor(features: Array) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(features, dtype=np.float64))


def _need(n: int, least: int, what: str) -> None:
    if n < least:
        raise UndefinedMetricError(f"needs at least {least} {what}, has {n}")


def _covariance_factor(features: Array) -> Array:
    """A with A @ A.T = the covariance (n - 1 denominator): the centred rows (d x n) when there are
    fewer rows than dimensions, else the symmetric square root (d x d)."""
    centred = features - features.mean(axis=0)
    if len(features) <= features.shape[1]:
        return centred.T / np.sqrt(len(features) - 1)
    eigenvalues, eigenvectors = np.linalg.eigh(centred.T @ centred / (len(features) - 1))
    return eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))


def fid(real: Array, fake: Array) -> float:
    """Frechet distance between Gaussians fitted to the two feature sets: torchmetrics'
    FrechetInceptionDistance's value (tested), in closed form. tr sqrt(S_r S_f) is the sum of the
    singular values of A_r.T @ A_f for any A with A @ A.T = S: a symmetric eigendecomposition (none
    when n < d) instead of torchmetrics' general eigenvalues of S_r S_f (7.7 s at d = 768 on 2 cores,
    here 0.05 s)."""
    _need(min(len(real), len(fake)), 2, "images in each set")
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    a, b = _covariance_factor(real), _covariance_factor(fake)
    mean_term = float(((real.mean(axis=0) - fake.mean(axis=0)) ** 2).sum())
    return mean_term + float((a**2).sum() + (b**2).sum()) - 2.0 * float(np.linalg.svd(a.T @ b, compute_uv=False).sum())


def kid(real: Array, fake: Array, subset_size: int = 1000, subsets: int = 100, seed: int = 0) -> float:
    """Kernel Inception Distance: unbiased MMD^2 with the cubic polynomial kernel (torchmetrics').
    Sets larger than ``subset_size``: torchmetrics' KernelInceptionDistance, the mean over
    ``subsets`` random subsets of ``subset_size`` (capped at the smaller set). Smaller sets: the
    unbiased MMD^2 of the whole sets, the value those subset means estimate, without their noise
    and at 1/subsets of the cost (torchmetrics' subsets must be of equal size)."""
    _need(min(len(real), len(fake)), 2, "images in each set")
    if max(len(real), len(fake)) <= subset_size:
        return _unbiased_mmd(_tensor(real), _tensor(fake))
    with _quiet():
        metric = KernelInceptionDistance(feature=Precomputed(real.shape[1]), subsets=subsets,
                                         subset_size=min(subset_size, len(real), len(fake)))  # fmt: skip
    metric.update(_tensor(real), real=True)
    metric.update(_tensor(fake), real=False)
    with torch.random.fork_rng():  # KID draws its subsets from torch's global generator
        torch.manual_seed(seed)
        mean, _ = metric.compute()
    return float(mean)


def _unbiased_mmd(real: torch.Tensor, fake: torch.Tensor) -> float:
    """Blockwise, so that memory does not grow with the sets (torchmetrics' kernel on each block)."""

    def kernel_sum(x: torch.Tensor, y: torch.Tensor) -> float:
        chunks = _row_chunks(len(x), len(y))
        return sum(float(poly_kernel(x[start : start + chunks.step], y).sum()) for start in chunks)

    def diagonal_sum(x: torch.Tensor) -> float:  # k(x, x) with poly_kernel's defaults: gamma 1 / d, coef 1
        return float((((x * x).sum(dim=1) / x.shape[1] + 1) ** 3).sum())

    m, n = len(real), len(fake)
    within = (kernel_sum(real, real) - diagonal_sum(real)) / (m * (m - 1)) \
        + (kernel_sum(fake, fake) - diagonal_sum(fake)) / (n * (n - 1))
    return within - 2 * kernel_sum(real, fake) / (m * n)


def inception_score(logits: Array, splits: int = 10, seed: int = 0) -> float:
    """exp(E KL(p(y|x) || p(y))) over class logits (torchmetrics), the mean over ``splits`` splits."""
    _need(len(logits), 2, "images")
    with _quiet():
        metric = InceptionScore(feature=Precomputed(logits.shape[1]), splits=min(splits, len(logits)))
    metric.update(_tensor(logits))
    with torch.random.fork_rng(), _quiet():  # its std of one split warns; only the mean is used
        torch.manual_seed(seed)
        mean, _ = metric.compute()
    return float(mean)


def _row_chunks(n_rows: int, n_columns: int) -> range:
    return range(0, n_rows, max(1, BLOCK // max(n_columns, 1)))


def _squared_distances(a: Array, b: Array) -> Array:
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T, 0.0)


def nearest_distances(query: Array, reference: Array, exclude_self: bool = False) -> tuple[Array, NDArray[np.intp]]:
    """Euclidean distance from each query row to its nearest reference row, and that row's index;
    ``exclude_self`` when query is reference (a row is not its own neighbour)."""
    distances, indices = np.empty(len(query)), np.empty(len(query), dtype=np.intp)
    chunks = _row_chunks(len(query), len(reference))
    for start in chunks:
        block = _squared_distances(query[start : start + chunks.step], reference)
        rows = np.arange(len(block))
        if exclude_self:
            block[rows, start + rows] = np.inf
        nearest = block.argmin(axis=1)
        indices[start : start + chunks.step] = nearest
        distances[start : start + chunks.step] = np.sqrt(block[rows, nearest])
    return distances, indices


def _kth_neighbour_radii(features: Array, k: int) -> Array:
    radii = np.empty(len(features))
    chunks = _row_chunks(len(features), len(features))
    for start in chunks:
        block = _squared_distances(features[start : start + chunks.step], features)
        radii[start : start + chunks.step] = np.sqrt(np.partition(block, k, axis=1)[:, k])  # column 0: the row itself
    return radii


def _covered(points: Array, centres: Array, radii: Array) -> NDArray[np.bool_]:
    inside = np.empty(len(points), dtype=bool)
    chunks = _row_chunks(len(points), len(centres))
    for start in chunks:
        block = _squared_distances(points[start : start + chunks.step], centres)
        inside[start : start + chunks.step] = (block <= radii[None, :] ** 2).any(axis=1)
    return inside


def precision_recall(real: Array, fake: Array, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019): the share of fake images inside the
    real manifold (the union of balls reaching each real image's k-th nearest real neighbour), and
    the share of real images inside the fake manifold."""
    _need(min(len(real), len(fake)), k + 1, f"images in each set for k={k}")
    precision = _covered(fake, real, _kth_neighbour_radii(real, k)).mean()
    recall = _covered(real, fake, _kth_neighbour_radii(fake, k)).mean()
    return float(precision), float(recall)


def mean_pairwise_distance(features: Array) -> float:
    """Mean Euclidean distance over all pairs of rows: spread within a set (0 = collapsed)."""
    _need(len(features), 2, "images")
    return float(pdist(features).mean())


def realness_auc(real: Array, fake: Array, folds: int = 5, seed: int = 0) -> float:
    """Cross-validated AUROC of a linear probe (standardised features, logistic regression) telling
    real from synthetic features, over the pooled out-of-fold scores: 0.5 means indistinguishable,
    1 that a classifier trained on a mix can learn "synthetic" as a shortcut."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    _need(min(len(real), len(fake)), folds, "real and synthetic images (one per fold)")
    features = np.concatenate([real, fake])
    is_fake = np.r_[np.zeros(len(real)), np.ones(len(fake))]
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    # L-BFGS is a chain of small matrix-vector products, which BLAS threads only slow down: one
    # thread is 9x faster on 2 cores (1150 x 768 pixel features; bench/realness_probe.py)
    with threadpool_limits(limits=1, user_api="blas"):
        scores = cross_val_predict(probe, features, is_fake, method="decision_function",
                                   cv=StratifiedKFold(folds, shuffle=True, random_state=seed))  # fmt: skip
    return float(roc_auc_score(is_fake, scores))


def label_scores(logits: Array, classes: Sequence[str], labels: Sequence[str]) -> tuple[Array, Array]:
    """Per image: the classifier's probability of the label it was asked for (softmax of its logits)
    and whether its argmax is that label. A label the classifier does not know is an error."""
    unknown = sorted(set(labels) - set(classes))
    if unknown:
        raise UndefinedMetricError(f"labels {', '.join(unknown)} are not among the classifier's classes")
    column = np.array([list(classes).index(label) for label in labels], dtype=np.intp)
    probabilities = torch.softmax(torch.from_numpy(np.asarray(logits, dtype=np.float64)), dim=1).numpy()
    rows = np.arange(len(column))
    return probabilities[rows, column], (probabilities.argmax(axis=1) == column).astype(np.float64)


def ssim(image: NDArray[np.uint8], reference: NDArray[np.uint8]) -> float:
    """SSIM of two HxWx3 uint8 images of the same size, scikit-image's defaults (also the generate
    stage's near-copy filter: its numbers and memorization.ssim_near_copy line up)."""
    return float(structural_similarity(image, reference, channel_axis=2, data_range=255))


