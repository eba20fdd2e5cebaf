"""Shared quality-bench setup: a real set (derm fixture + its manifest), a synthetic set in the
generate stage's storage (shards of PNG bytes + manifest), a small-CNN classifier."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from fairaug.data.files import MANIFEST
from fairaug.data.fixtures import write_derm_fixture
from fairaug.data.storage import png_bytes, shard_path, write_shard
from fairaug.fairness.files import WEIGHTS
from fairaug.fairness.model import build_classifier, save_classifier
from fairaug.metrics.extractors import build_extractors
from fairaug.metrics.features import manifest_set, synthetic_set

LABELS = ["bkl", "mel", "nv"]


def real_set(root: Path, n: int, seed: int = 0, size: int = 64):
    """The derm fixture as an ImageSet of its (all-train) rows."""
    write_derm_fixture(root, n=n, seed=seed, size=size)
    metadata = pd.read_csv(root / "HAM10000_metadata.csv")
    paths = [next(root.glob(f"*/{i}.jpg")).relative_to(root).as_posix() for i in metadata["image_id"]]
    sha256 = [hashlib.sha256((root / p).read_bytes()).hexdigest() for p in paths]
    manifest = pd.DataFrame({"path": paths, "sha256": sha256, "label": metadata["dx"],
                             "fst": metadata["fitzpatrick"], "split": "train"})  # fmt: skip
    return manifest_set(manifest, root, "train")


def synthetic_dir(out: Path, n: int, size: int, shard_size: int = 50, seed: int = 0) -> Path:
    """``n`` smooth random images of ``size`` px over FST 1-6 x LABELS, written as the generate stage does."""
    rng = np.random.default_rng(seed)
    rows = pd.DataFrame({"id": [f"img{i:06d}" for i in range(n)], "fst": rng.integers(1, 7, n),
                         "label": rng.choice(LABELS, n), "kept": True})  # fmt: skip
    grid = np.linspace(0, 1, size)[:, None, None]
    pieces = []
    for shard, start in enumerate(range(0, n, shard_size)):
        chunk = rows.iloc[start : start + shard_size]
        images = []
        for _ in range(len(chunk)):
            colour = rng.uniform(60, 220, size=3)
            image = colour + 40 * grid * rng.uniform(-1, 1, 3) + rng.normal(0, 4, (size, size, 3))
            images.append(png_bytes(np.clip(image, 0, 255).astype(np.uint8)))
        path = write_shard(shard_path(out, shard), chunk[["id", "fst", "label"]], images, "bench")
        pieces.append(chunk.assign(path=[f"shards/{path.name}#{i}" for i in chunk["id"]]))
    pd.concat(pieces).to_parquet(out / MANIFEST)
    return out


def classifier(path: Path) -> Path:
    return save_classifier(build_classifier("small_cnn", LABELS, 32), path)


def real_synthetic_extractors(tmp: Path, n_real: int, real_size: int, n_synthetic: int, size: int):
    """A real set, a synthetic set and the evaluator (an untrained small CNN) and pixels extractors, under ``tmp``."""
    real = real_set(tmp / "real", n_real, size=real_size)
    synthetic = synthetic_set(synthetic_dir(tmp / "synthetic", n_synthetic, size))
    return real, synthetic, build_extractors(["evaluator", "pixels"], evaluator=classifier(tmp / WEIGHTS))
