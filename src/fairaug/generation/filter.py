"""Choosing the kept images from the overgenerated pool.

Each image gets scores and a reason: the real-only classifier's probability of the intended label
(when that classifier exists), and its nearest real training image with their SSIM (memorization:
near copies are rejected, never kept). Neighbours are searched on 16x16 thumbnails (cheap), and
SSIM at full size then says how close the pair really is. Per (fst, label) cell the first `target` passing images in
plan order are kept; if too few pass the confidence bar, the most confident of the rest fill the
cell and say so in `reason`, so every cell has exactly its planned count.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from fairaug.config.generation import FilterConfig
from fairaug.fairness.data import image_transform
from fairaug.fairness.model import Classifier
from fairaug.images import read_rgb, resized
from fairaug.metrics.extractors import thumbnail_features
from fairaug.metrics.functional import nearest_distances, ssim

class RealNeighbours:
    """The nearest real training image of synthetic images, and the SSIM between them.

    Only the real images' thumbnail features stay in memory (a real set at 512 px would not fit);
    their pixels are read again from disk for the SSIM of the pairs found.
    """

    def __init__(self, paths: list[Path], batch_size: int = 256):
        self.paths = list(paths)
        features = [thumbnail_features([read_rgb(p) for p in self.paths[first : first + batch_size]])
                    for first in range(0, len(self.paths), batch_size)]
        self.features = np.concatenate(features)

    def query(self, synthetic: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Index (into ``paths``) of each synthetic image's nearest real image, and their SSIM."""
        _, nearest = nearest_distances(thumbnail_features(synthetic), self.features)
        similarity = np.array([ssim(image, resized(read_rgb(self.paths[j]), image.shape))
                               for image, j in zip(synthetic, nearest, strict=True)])
        return nearest, similarity


@torch.no_grad()
def label_confidence(model: Classifier, images: list[np.ndarray], labels: list[str]) -> np.ndarray:
    """The classifier's probability of each image's intended label."""
    model.eval()
    transform = image_transform(model.image_size)
    batch = torch.stack([transform(image) for image in images])
    probabilities = torch.softmax(model(batch), dim=1).numpy()
    positions = [model.classes.index(label) for label in labels]
    return probabilities[np.arange(len(images)), positions]


def select(pool: pd.DataFrame, config: FilterConfig) -> pd.DataFrame:
    """Add `kept` and `reason` to a pool with columns fst, label, index, target, confidence, ssim_to_real."""
    pool = pool.sort_values(["fst", "label", "index"]).copy()
    copy = pool["ssim_to_real"] >= config.max_ssim_to_real
    unsure = pool["confidence"].notna() & (pool["confidence"] < config.min_confidence)
    pool["reason"] = np.select([copy, unsure], ["near copy of a real image", "low classifier confidence"], "passed")
    pool["kept"] = False
    for _, cell in pool.groupby(["fst", "label"], sort=False):
        target = int(cell["target"].iloc[0])
        passed = cell.index[cell["reason"] == "passed"]
        shortfall = max(0, target - len(passed))
        fill = cell[cell["reason"] == "low classifier confidence"].nlargest(shortfall, "confidence").index
        pool.loc[passed[target:], "reason"] = "passed, cell already full"
        pool.loc[passed[:target].union(fill), "kept"] = True
        pool.loc[fill, "reason"] = "kept below min_confidence to fill the cell"
    return pool
