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
from skimage.color import lab2rgb

from fairaug.skin.ita import ITA_RANGE

# How darker skin hides lesions, per FST. Melanin absorbs light: a lesion's lightness difference to
# the skin shrinks with LESION_CONTRAST and its hue difference (the red of erythema and vessels, the
# blue-grey of melanoma) with its square; pigmentation is more uneven (SKIN_UNEVENNESS scales the
# mottling, blobs of a lesion's size) and photos are noisier (PHOTO_NOISE scales the pixel noise).
# With these, the tiny profile's real-only classifier has a clearly lower AUROC on V-VI than on I-II
# (about 0.8 against 1.0 on 1200 held-out fixture images), as dermatology classifiers do.
LESION_CONTRAST: dict[int, float] = {1: 1.0, 2: 0.9, 3: 0.75, 4: 0.58, 5: 0.35, 6: 0.22}
SKIN_UNEVENNESS: dict[int, float] = {1: 1.0, 2: 1.0, 3: 1.3, 4: 1.7, 5: 2.5, 6: 3.0}
PHOTO_NOISE: dict[int, float] = {1: 1.0, 2: 1.0, 3: 1.2, 4: 1.5, 5: 2.2, 6: 2.8}

_ITA_INTERIOR = 0.15  # skin ITA is drawn away from the FST bin edges by this fraction of the range
_MAX_SKIN_L = 82.0

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

    def paint(self, alpha: np.ndarray, colour: Lab) -> None:
        self.lab += alpha[..., None] * (colour - self.lab)

    def tone(self, offset: Sequence[float]) -> Lab:
        """A lesion colour: the skin colour moved by ``offset`` (given for FST I), its L* scaled by the
        contrast and its a*, b* by the contrast squared (hues fade faster than darkness)."""
        contrast = self.skin.contrast
        return self.skin.colour + np.asarray(offset, dtype=np.float64) * (contrast, contrast**2, contrast**2)


def skin_canvas(rng: np.random.Generator, size: int, skin: Skin) -> tuple[Canvas, np.ndarray, np.ndarray]:
    """A canvas of skin seen through a random small rotation, flip and shift; also the image coordinates.

    The skin has the subject's colour and texture (more uneven on darker skin), fine noise (more on
    darker skin), and a little relighting (an offset and a zero-mean gradient, as between two photos).
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
    lab += rng.standard_normal(lab.shape) * np.multiply((0.8, 0.4, 0.4), skin.noise)
    gradient = rng.uniform(-1.0, 1.0, size=2)
    lab[..., 0] += rng.uniform(-0.8, 0.8) + gradient[0] * x + gradient[1] * y
    return canvas, x, y


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
