"""Reading and resizing single images as HxWx3 uint8 arrays, shared by the stages that compare them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from fairaug.errors import DataError

# every command reads these (validate, prepare, quality): one list, lower-case
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def read_rgb(path: Path) -> np.ndarray:
    """The image at ``path`` as RGB; a DataError naming the file when it cannot be read."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as err:
        raise DataError(f"cannot read image: {err}", file=path) from None


def resized(image: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``image`` at the height and width of ``shape`` (bicubic), itself when it has them already."""
    if image.shape[:2] == tuple(shape[:2]):
        return image
    return np.asarray(Image.fromarray(image).resize((shape[1], shape[0]), Image.Resampling.BICUBIC))
