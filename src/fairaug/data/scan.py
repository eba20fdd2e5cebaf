"""One pass over the image files: containment, decoding, size, content hash, pHash and ITA."""

from __future__ import annotations

import hashlib
import os
import posixpath
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import imagehash
import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from fairaug.progress import progress_bar
from fairaug.skin.ita import estimate_ita, fst_from_ita

SCAN_COLUMNS = ["file_status", "sha256", "width", "height", "min_side", "phash", "ita", "fst_ita"]
# ITA is a median over skin pixels: a 256 px thumbnail gives the same estimate at a fraction of the cost.
ITA_MAX_SIDE = 256


def escapes_root(relative_path: str) -> bool:
    """True when a metadata path points outside the data set root (absolute, or climbing with '..')."""
    normalized = posixpath.normpath(relative_path.replace("\\", "/"))
    return posixpath.isabs(normalized) or normalized == ".." or normalized.startswith("../")


def scan_image(root: Path, relative_path: str) -> dict:
    """Scan one image; a problem is reported in ``file_status`` rather than raised."""
    empty = {"sha256": "", "width": 0, "height": 0, "min_side": 0, "phash": "", "ita": np.nan, "fst_ita": 0}
    if escapes_root(relative_path):
        return {**empty, "file_status": "path escapes the data set root"}
    path = root / relative_path
    if path.exists() and not path.resolve().is_relative_to(root.resolve()):
        return {**empty, "file_status": "path escapes the data set root (through a symbolic link)"}
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
    ita = float(estimate_ita(np.asarray(thumbnail)))
    return {
        "file_status": "ok",
        "sha256": hashlib.sha256(data).hexdigest(),
        "width": rgb.width,
        "height": rgb.height,
        "min_side": min(rgb.size),
        "phash": str(imagehash.phash(rgb)),
        "ita": ita,
        "fst_ita": int(fst_from_ita(ita)),
    }


def scan_images(root: Path, paths: pd.Series, workers: int | None = None) -> pd.DataFrame:
    """Scan every image (threads: decoding and hashing release the GIL), indexed like ``paths``."""
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        rows = list(
            progress_bar(
                pool.map(lambda p: scan_image(root, p), paths),
                total=len(paths),
                desc=f"scan {root.name}",
                unit="img",
            )
        )
    return pd.DataFrame(rows, index=paths.index, columns=SCAN_COLUMNS)
