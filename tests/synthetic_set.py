"""A small synthetic set in the generate stage's layout (shards of PNG bytes + manifest.parquet),
written directly with `fairaug.data.storage`: no diffusion model needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fairaug.data import storage
from fairaug.data.files import MANIFEST

MANIFEST_COLUMNS = ["path", "id", "fst", "label", "prompt", "seed", "index", "confidence", "ssim_to_real",
                    "nearest_real", "kept", "reason"]  # fmt: skip
# mean RGB of skin per FST, light to dark: enough for images that differ by skin type
SKIN = {1: (235, 205, 190), 2: (220, 185, 160), 3: (195, 155, 125), 4: (160, 115, 85), 5: (115, 80, 55),
        6: (70, 45, 35)}  # fmt: skip


def synthetic_image(fst: int, label_index: int, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """Skin of the FST's tone with a dark blob whose size depends on the label, plus noise."""
    image = np.empty((size, size, 3), dtype=np.float64)
    image[:] = SKIN[fst]
    yy, xx = np.mgrid[:size, :size]
    radius = 4 + 2 * label_index
    blob = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < radius**2
    image[blob] *= 0.45
    image += rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def write_synthetic_set(
    out_dir: Path, cells: dict[tuple[int, str], tuple[int, int]], classes: list[str], shard_size: int = 8, seed: int = 0
) -> pd.DataFrame:
    """``cells``: (fst, label) -> (kept, not kept) image counts. Writes shards and manifest.parquet
    into ``out_dir`` and returns the manifest (ids ``syn-<fst>-<label>-<i>``)."""
    rng = np.random.default_rng(seed)
    rows = []
    for (fst, label), (kept, dropped) in sorted(cells.items()):
        for i in range(kept + dropped):
            rows.append({"id": f"syn-{fst}-{label}-{i:03d}", "fst": fst, "label": label, "kept": i < kept,
                         "prompt": f"fst {fst} {label}", "seed": int(rng.integers(1 << 31)),
                         "index": len(rows)})  # fmt: skip
    plan = pd.DataFrame(rows)
    paths = []
    for shard, start in enumerate(range(0, len(plan), shard_size)):
        part = plan.iloc[start : start + shard_size]
        images = [storage.png_bytes(synthetic_image(r.fst, classes.index(r.label), rng)) for r in part.itertuples()]
        path = storage.write_shard(storage.shard_path(out_dir, shard), part[["id", "fst", "label", "prompt", "seed"]],
                                   images, "test-fingerprint")  # fmt: skip
        paths += [f"{storage.SHARDS}/{path.name}#{image_id}" for image_id in part["id"]]
    manifest = plan.assign(path=paths, confidence=0.9, ssim_to_real=0.2, nearest_real="x.jpg",
                           reason=np.where(plan["kept"], "passed", "low confidence"))[MANIFEST_COLUMNS]  # fmt: skip
    manifest.to_parquet(out_dir / MANIFEST, index=False)
    return manifest
