"""One pass over the image files: containment, decoding, size, content hash, pHash and the ITA estimate."""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import imagehash
import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from fairaug.io import path_escape
from fairaug.progress import progress_bar
from fairaug.skin.ita import DEFAULT_MIN_SKIN_FRACTION, estimate_skin
from fairaug.skin.types import FST_UNKNOWN

SCAN_COLUMNS = ["file_status", "sha256", "width", "height", "min_side", "phash", "ita", "fst_ita", "skin_fraction"]
# ITA is a median over skin pixels: a 256 px thumbnail gives the same estimate at a fraction of the cost.
ITA_MAX_SIDE = 256


def scan_image(root: Path, relative_path: str, min_skin_fraction: float = DEFAULT_MIN_SKIN_FRACTION) -> dict:
    """Scan one image; a problem is reported in ``file_status`` rather than raised. ``fst_ita`` is
    FST_UNKNOWN where the ITA estimate abstains (see ``estimate_skin``)."""
    empty = {"sha256": "", "width": 0, "height": 0, "min_side": 0, "phash": "", "ita": np.nan,
             "fst_ita": FST_UNKNOWN, "skin_fraction": np.nan}
    if (escape := path_escape(root, relative_path)) is not None:
        return {**empty, "file_status": escape}
    path = root / relative_path
    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return {**empty, "file_status": "image file not found"}
    try:
        with Image.open(path) as image:
            image.load()  # decodes everything: a truncated file fails here, not later in training
            rgb = image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as err:
        return {**empty, "file_status": f"image cannot be decoded ({err})"}
    thumbnail = rgb.copy()
    thumbnail.thumbnail((ITA_MAX_SIDE, ITA_MAX_SIDE))
    skin = estimate_skin(np.asarray(thumbnail), min_skin_fraction)
    return {
        "file_status": "ok",
        "sha256": hashlib.sha256(data).hexdigest(),
        "width": rgb.width,
        "height": rgb.height,
        "min_side": min(rgb.size),
        "phash": str(imagehash.phash(rgb)),
        "ita": skin.ita,
        "fst_ita": FST_UNKNOWN if skin.fst is None else skin.fst,
        "skin_fraction": skin.skin_fraction,
    }


def scan_images(
    root: Path, paths: pd.Series, min_skin_fraction: float = DEFAULT_MIN_SKIN_FRACTION, workers: int | None = None
) -> pd.DataFrame:
    """Scan every image (threads: decoding and hashing release the GIL), indexed like ``paths``."""
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        rows = list(
            progress_bar(
                pool.map(lambda p: scan_image(root, p, min_skin_fraction), paths),
                total=len(paths),
                desc=f"scan {root.name}",
                unit="img",
            )
        )
    return pd.DataFrame(rows, index=paths.index, columns=SCAN_COLUMNS)
