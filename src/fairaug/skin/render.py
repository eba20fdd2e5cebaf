"""Skin rendered in CIELAB: the colour, texture, pigment unevenness and photo noise of a Fitzpatrick
skin type (FST), on a canvas that lesions can be painted on.

Colours are drawn from the ITA range of their FST (`fairaug.skin.ita.ITA_RANGE`), so that an ITA
estimate of a rendered image gives back its FST. The fixtures (`fairaug.data.fixtures`) paint lesions
and wounds on these canvases; the tiny base model is also pretrained on plain rendered skin of every
FST (`fairaug.diffusion.pretrain`). Deterministic: everything is drawn from the generator passed in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.color import lab2rgb

from fairaug.skin.ita import ITA_RANGE

# How darker skin hides lesions, per FST. Melanin absorbs light: a lesion's lightness difference to
# the skin shrinks with LESION_CONTRAST and its hue difference (the red of erythema and vessels, the
# blue-grey of melanoma) with its square; pigmentation is more uneven (SKIN_UNEVENNESS scales the
# mottling, blobs of a lesion's size) and photos are noisier (PHOTO_NOISE scales the pixel noise).
# Lesions stay visible on V-VI, only fainter, so that more V-VI training images can help. With these,
# the tiny profile's real-only classifier trained on the 1500-image derm fixture has a balanced
# accuracy of 0.93 on I-II against 0.49 on V-VI and an AUROC of 0.99 against 0.88 (1000 held-out
# fixture images), as dermatology classifiers do worse on dark skin.
LESION_CONTRAST: dict[int, float] = {1: 1.0, 2: 0.92, 3: 0.8, 4: 0.66, 5: 0.46, 6: 0.36}
SKIN_UNEVENNESS: dict[int, float] = {1: 1.0, 2: 1.0, 3: 1.3, 4: 1.7, 5: 2.5, 6: 3.0}
PHOTO_NOISE: dict[int, float] = {1: 1.0, 2: 1.0, 3: 1.2, 4: 1.5, 5: 2.2, 6: 2.8}

# Skin ITA is drawn from the middle of its FST bin, this fraction of the range away from either edge:
# lesion pixels that the skin mask keeps (faint lesions, noisy borders) pull the ITA estimate a degree
# or two darker, and a skin colour at a bin edge would then be read as the next type.
_ITA_INTERIOR = 0.25
_MAX_SKIN_L = 82.0
_DEFOCUS_PX = (0.3, 0.7)  # Gaussian blur sigma of a photo, in pixels of a 64 px image

Lab = np.ndarray  # a CIELAB colour (3,) or image (H, W, 3), float64


def sample_skin_lab(rng: np.random.Generator, fst: int) -> Lab:
    """A CIELAB skin colour whose ITA lies well inside the ITA range of ``fst``.

    ITA is drawn from the interior of ``ITA_RANGE[fst]``, a* from 8-16 and b* from 12-22 (less for the
    palest skin, so that L* stays at most 82); L* = 50 + b* tan(ITA) then gives exactly that ITA.
    """
    low, high = ITA_RANGE[fst]
    margin = _ITA_INTERIOR * (high - low)
    ita = rng.uniform(low + margin, high - margin)
    slope = math.tan(math.radians(ita))
    b_max = 22.0 if slope <= 0 else min(22.0, (_MAX_SKIN_L - 50.0) / slope)
    b = rng.uniform(min(12.0, 0.8 * b_max), b_max)
    a = rng.uniform(8.0, 16.0)
    return np.array([50.0 + b * slope, a, b])


# A canvas has "scene" coordinates (units of the image side, origin at the lesion site) beside its
# pixels: each image views the scene through its own rotation, flip and shift, so the images of one
# subject show the same skin. Colours are CIELAB, composited by alpha, converted to sRGB at the end.


@dataclass(frozen=True)
class Skin:
    """A subject's skin: colour, texture (in scene coordinates), and for its FST the lesion contrast,
    the unevenness of its pigmentation and the noise of its photos."""

    colour: Lab
    contrast: float
    unevenness: float
    noise: float
    texture: np.ndarray  # (3, cells, cells) lattices for L*, a*, b*
    furrow_directions: np.ndarray  # (2,) angles of the criss-cross skin lines


def sample_skin(rng: np.random.Generator, fst: int) -> Skin:
    """A subject's skin of type ``fst``: colour, texture and skin lines drawn from ``rng``."""
    return Skin(
        colour=sample_skin_lab(rng, fst),
        contrast=LESION_CONTRAST[fst],
        unevenness=SKIN_UNEVENNESS[fst],
        noise=PHOTO_NOISE[fst],
        texture=rng.standard_normal((3, 7, 7)),
        furrow_directions=rng.uniform(0, np.pi, size=2),
    )


@dataclass
class Canvas:
    """A CIELAB image being painted, with the scene coordinates of its pixels."""

    lab: np.ndarray  # (H, W, 3)
    u: np.ndarray  # scene coordinates, (H, W)
    v: np.ndarray
    pixel: float  # one pixel in scene units
    skin: Skin
    strength: float = 1.0  # how strongly the lesion being painted stands out (per lesion: faint to vivid)

    def paint(self, alpha: np.ndarray, colour: Lab) -> None:
        self.lab += alpha[..., None] * (colour - self.lab)

    def tone(self, offset: Sequence[float]) -> Lab:
        """A lesion colour: the skin colour moved by ``offset`` (given for FST I and a lesion of
        strength 1) times the strength, its L* scaled by the contrast and its a*, b* by the contrast
        squared (hues fade faster than darkness)."""
        contrast = self.skin.contrast
        scale = self.strength * np.array([contrast, contrast**2, contrast**2])
        return self.skin.colour + np.asarray(offset, dtype=np.float64) * scale


def skin_canvas(rng: np.random.Generator, size: int, skin: Skin) -> tuple[Canvas, np.ndarray, np.ndarray]:
    """A canvas of skin seen through a random small rotation, flip and shift; also the image coordinates.

    The skin has the subject's colour and texture (more uneven on darker skin) and its skin lines. The
    photo's noise and lighting come last, over whatever is painted on it (`photograph`).
    """
    centres = (np.arange(size) + 0.5) / size - 0.5
    y, x = np.meshgrid(centres, centres, indexing="ij")
    angle = rng.uniform(-np.pi / 6, np.pi / 6)
    shift_x, shift_y = rng.uniform(-0.04, 0.04, size=2)
    u = math.cos(angle) * (x - shift_x) - math.sin(angle) * (y - shift_y)
    v = math.sin(angle) * (x - shift_x) + math.cos(angle) * (y - shift_y)
    if rng.random() < 0.5:
        u = -u
    canvas = Canvas(np.empty((size, size, 3)), u, v, 1.0 / size, skin)

    lab = canvas.lab
    lab[:] = skin.colour
    for channel, amplitude in enumerate((1.5, 0.8, 0.8)):
        lab[..., channel] += skin.unevenness * amplitude * sample_lattice(skin.texture[channel], u, v)
    for direction in skin.furrow_directions:
        phase = (math.cos(direction) * u + math.sin(direction) * v) / 0.09
        lab[..., 0] -= 0.7 * np.cos(np.pi * phase) ** 16
    return canvas, x, y


def photograph(canvas: Canvas, rng: np.random.Generator) -> np.ndarray:
    """The sRGB uint8 photo of a painted canvas: a little defocus, relighting (an offset and a
    zero-mean gradient, as between two photos) and sensor noise (more on darker skin, photographed
    with more gain) over the whole picture, lesion included, as a camera would."""
    lab = canvas.lab
    sigma = rng.uniform(*_DEFOCUS_PX) * lab.shape[0] / 64
    lab[:] = ndimage.gaussian_filter(lab, sigma=(sigma, sigma, 0), mode="nearest")
    size = lab.shape[0]
    centres = (np.arange(size) + 0.5) / size - 0.5
    y, x = np.meshgrid(centres, centres, indexing="ij")
    gradient = rng.uniform(-1.0, 1.0, size=2)
    lab[..., 0] += rng.uniform(-0.8, 0.8) + gradient[0] * x + gradient[1] * y
    lab += rng.standard_normal(lab.shape) * np.multiply((0.8, 0.4, 0.4), canvas.skin.noise)
    return to_rgb(lab)


def sample_lattice(lattice: np.ndarray, u: np.ndarray, v: np.ndarray, extent: float = 0.75) -> np.ndarray:
    """Smooth noise: bilinear interpolation of a lattice spread over [-extent, extent]^2, at points (u, v)."""
    cells = lattice.shape[0]
    col = np.clip((u + extent) / (2 * extent) * (cells - 1), 0, cells - 1.001)
    row = np.clip((v + extent) / (2 * extent) * (cells - 1), 0, cells - 1.001)
    col0, row0 = col.astype(int), row.astype(int)
    col_weight, row_weight = col - col0, row - row0
    top = lattice[row0, col0] * (1 - col_weight) + lattice[row0, col0 + 1] * col_weight
    bottom = lattice[row0 + 1, col0] * (1 - col_weight) + lattice[row0 + 1, col0 + 1] * col_weight
    return top * (1 - row_weight) + bottom * row_weight


def to_rgb(lab: np.ndarray) -> np.ndarray:
    """The sRGB uint8 image of a CIELAB one (L* clipped to 0-100 in place)."""
    lab[..., 0] = np.clip(lab[..., 0], 0.0, 100.0)
    return np.round(lab2rgb(lab) * 255.0).astype(np.uint8)
