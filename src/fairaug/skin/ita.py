"""Individual Typology Angle (ITA) and the Fitzpatrick skin type (FST) estimated from it.

ITA = arctan((L* - 50) / b*) * 180 / pi, measured in CIELAB (D65) on the non-lesion skin of an image,
binned into FST I-VI with the Del Bino / Kinyanjui thresholds. Where too little non-lesion skin is
visible (a close-up that the lesion fills), the estimate abstains: pigment is never read as skin.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage
from skimage.color import rgb2lab
from skimage.filters import threshold_otsu
from skimage.morphology import disk

from fairaug.skin.types import FST_UNKNOWN, FST_VALUES

# Lower ITA bounds of FST I..V, lightest first: ITA > 55 is I, 41 < ITA <= 55 is II, 28 < ITA <= 41
# is III, 10 < ITA <= 28 is IV, -30 <= ITA <= 10 is V and ITA < -30 is VI (-30 itself belongs to V).
FST_ITA_EDGES: tuple[float, ...] = (55.0, 41.0, 28.0, 10.0, -30.0)

# A finite, realistic ITA range per FST (the bins of I and VI are open-ended). I stops at 70 because
# a higher ITA needs L* above ~80 at the b* of real skin; VI stops at -60 (L* ~ 20).
ITA_RANGE: dict[int, tuple[float, float]] = {
    1: (55.0, 70.0),
    2: (41.0, 55.0),
    3: (28.0, 41.0),
    4: (10.0, 28.0),
    5: (-30.0, 10.0),
    6: (-60.0, -30.0),
}

# Skin-mask tuning, in CIELAB units or as fractions of the image's shorter side.
_VIGNETTE_RELATIVE_L = 0.4  # vignette: border-connected pixels darker than 0.4 x the bright skin L*
_VIGNETTE_MARGIN = 0.04  # drop the blurred rim where the field fades into the vignette
_HAIR_RADIUS = 0.012  # closing radius of the black-hat: wider than a hair, narrower than a lesion
_HAIR_MIN_DEPTH = 8.0  # a hair is at least 8 L* darker than its surroundings
_SKIN_MIN_DELTA_E = 8.0  # colour distance to the reference skin that always counts as skin
_SKIN_DELTA_E_SPREADS = 3.0  # ... or up to 3x the typical distance of skin pixels, if larger
_LESION_MARGIN = 0.03  # drop the blend zone around the lesion
_LESION_MIN_DARKENING = 5.0  # L* between the light and dark halves of the rim that make the dark one a lesion
_MIN_RIM_SKIN_SHARE = 0.5  # skin surrounds a lesion: less of the field's rim than this is no skin surround
_RIM = 0.8  # the field's rim: farther from its centre than this share of its radius
DEFAULT_MIN_SKIN_FRACTION = 0.2  # prepare.min_skin_fraction's default
DEFAULT_MAX_ABSTENTION_SHARE = 0.3  # prepare.max_abstention_share's default, and fst_fidelity's


@dataclass(frozen=True)
class SkinEstimate:
    """What the ITA estimate of one image used and found.

    Attributes:
        fst: FST 1..6, or None when the estimate abstains (too little non-lesion skin).
        ita: median ITA (degrees) of the skin pixels; NaN when no skin pixel is left.
        skin_fraction: share of the visible field (inside any dermoscope frame) that is non-lesion skin.
        mask: the skin pixels (H x W bool), for reports that show what the estimate saw.
    """

    fst: int | None
    ita: float
    skin_fraction: float
    mask: NDArray[np.bool_]


def ita_degrees(L: ArrayLike, b: ArrayLike) -> NDArray[np.float64]:
    """ITA in degrees from CIELAB L* and b* (broadcast together).

    Computed as ``arctan2(L* - 50, b*)``, which equals ``arctan((L* - 50) / b*)`` for b* > 0 (all skin)
    and stays defined at b* = 0 (+-90 degrees).
    """
    L = np.asarray(L, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return np.degrees(np.arctan2(L - 50.0, b))


def fst_from_ita(ita: ArrayLike) -> int | NDArray[np.int64]:
    """Fitzpatrick skin type 1..6 for an ITA (degrees): an int for a scalar, an int array otherwise."""
    ita = np.asarray(ita, dtype=np.float64)
    if np.isnan(ita).any():
        raise ValueError("ITA is NaN: no FST can be assigned")
    edge_1, edge_2, edge_3, edge_4, edge_5 = FST_ITA_EDGES
    # Each comparison that holds moves one type darker; the V/VI edge is the only one inclusive on V.
    fst = (
        1
        + (ita <= edge_1).astype(np.int64)
        + (ita <= edge_2)
        + (ita <= edge_3)
        + (ita <= edge_4)
        + (ita < edge_5)
    )
    return int(fst) if fst.ndim == 0 else fst


def skin_mask(rgb: np.ndarray) -> NDArray[np.bool_]:
    """Non-lesion skin pixels of a dermoscopy or clinical image (uint8, H x W x 3) as a bool H x W mask.

    Excludes, in turn: the dark dermoscope vignette, hairs, and the lesion. May be empty: nothing else
    stands in for skin (see ``estimate_skin``).
    """
    return _skin_masks(rgb2lab(_check_rgb(rgb)))[1]


def estimate_skin(rgb: np.ndarray, min_skin_fraction: float = DEFAULT_MIN_SKIN_FRACTION) -> SkinEstimate:
    """The FST of an RGB uint8 image from the ITA of its non-lesion skin, or an abstention.

    Abstains when the skin is less than ``min_skin_fraction`` of the visible field, or less than half of
    the field's rim (skin surrounds a lesion; a lesion that reaches the frame all round leaves no
    reference skin). A crop that shows no skin at all is not recognised by colour alone: a uniform
    lesion looks like skin of its colour, so data sets of such crops need FST labels.
    """
    lab = rgb2lab(_check_rgb(rgb))
    field, skin = _skin_masks(lab)
    skin_fraction = float(skin.sum() / max(field.sum(), 1))
    ita = float(np.median(ita_degrees(lab[..., 0][skin], lab[..., 2][skin]))) if skin.any() else float("nan")
    surrounded = _rim_share(skin, field) >= _MIN_RIM_SKIN_SHARE
    fst = fst_from_ita(ita) if skin_fraction >= min_skin_fraction and surrounded and skin.any() else None
    return SkinEstimate(fst, ita, skin_fraction, skin)


def set_abstention_reason(fst: Iterable[int | None], max_abstention_share: float = DEFAULT_MAX_ABSTENTION_SHARE) -> str | None:
    """Why the ITA estimates of a whole image set are void, or None when they stand.

    ``fst``: each image's estimate, None, NaN or FST_UNKNOWN where it abstained. In a set where more than
    ``max_abstention_share`` of the images show too little skin, the view is the lesion's, not the
    skin's (a set of lesion crops): there an image that seems to show skin mostly shows a lesion
    that fills the frame, which colour alone cannot tell from skin, so no image of the set gets an FST.
    """
    estimates = np.array([FST_UNKNOWN if value is None else value for value in fst], dtype=float)
    abstained = ~np.isin(estimates, FST_VALUES)  # FST_UNKNOWN, None or NaN
    if abstained.size == 0 or abstained.mean() <= max_abstention_share:
        return None
    return (f"{abstained.mean():.0%} of the images show too little skin around the lesion for an ITA estimate "
            f"(more than {max_abstention_share:.0%}): a set of lesion crops, in which the other images' 'skin' "
            "is mostly lesion; no FST is estimated")


def estimate_fst(rgb: np.ndarray) -> tuple[int | None, float]:
    """``(fst, ita)`` of an RGB uint8 image at the default skin fraction; fst None: abstained."""
    estimate = estimate_skin(rgb)
    return estimate.fst, estimate.ita


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image of shape (H, W, 3), got {rgb.dtype} {rgb.shape}")
    return rgb


def _skin_masks(lab: np.ndarray) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """The visible field (inside any dermoscope frame) and the non-lesion skin in it."""
    lightness = lab[..., 0]
    side = min(lightness.shape)
    field = ~_vignette_mask(lightness, side)
    candidates = field & ~_hair_mask(lightness, side)
    return field, candidates & ~_lesion_mask(lab, candidates, side)


def _rim_share(skin: np.ndarray, field: np.ndarray) -> float:
    """Share of the field's rim that is skin."""
    if not field.any():
        return 0.0
    rows, cols = np.nonzero(field)
    radius = np.sqrt(field.sum() / np.pi)
    row_grid, col_grid = np.indices(field.shape)
    rim = field & (np.hypot(row_grid - rows.mean(), col_grid - cols.mean()) > _RIM * radius)
    return float(skin[rim].sum() / max(rim.sum(), 1))


def _vignette_mask(lightness: np.ndarray, side: int) -> NDArray[np.bool_]:
    """The dark frame outside a dermoscope's circular field: dark pixels connected to the border.

    "Dark" is relative to the bright skin (90th percentile of L*), so FST VI skin (L* ~ 20) is not
    mistaken for the frame (L* < 10). Requiring a border connection keeps a dark lesion in the field.
    """
    dark = lightness < _VIGNETTE_RELATIVE_L * np.percentile(lightness, 90)
    components, _ = ndimage.label(dark)
    border = np.concatenate([components[[0, -1], :].ravel(), components[:, [0, -1]].ravel()])
    vignette = np.isin(components, border[border > 0])
    if not vignette.any():
        return vignette
    margin = max(1, round(_VIGNETTE_MARGIN * side))
    return ndimage.binary_dilation(vignette, structure=disk(margin))


def _hair_mask(lightness: np.ndarray, side: int) -> NDArray[np.bool_]:
    """Thin dark structures: a morphological black-hat (closing minus image) on L*, as in DullRazor."""
    radius = max(2, round(_HAIR_RADIUS * side))
    black_hat = ndimage.grey_closing(lightness, footprint=disk(radius)) - lightness
    hair = black_hat > _HAIR_MIN_DEPTH
    # Hair edges are blended with the skin around them.
    return ndimage.binary_dilation(hair, structure=disk(1))


def _lesion_mask(lab: np.ndarray, candidates: np.ndarray, side: int) -> NDArray[np.bool_]:
    """Pixels whose colour is far from the skin's, plus a margin around them.

    The reference skin colour is the median CIELAB colour of the outer part of the field, where a
    (centred) lesion rarely reaches, or of its lighter half when the rim is split into a light and a
    clearly darker part (a lesion reaching the frame: lesions are darker than the skin around them);
    it is refined once on the pixels that pass. A pixel is skin when
    its distance to the reference (delta E 1976) is within the spread of skin colour, so the test is
    symmetric around the skin: with no visible lesion it removes only outliers and biases nothing.
    """
    if candidates.sum() < 16:
        return np.zeros_like(candidates)
    rows, cols = np.nonzero(candidates)
    centre_row, centre_col = rows.mean(), cols.mean()
    field_radius = np.sqrt(candidates.sum() / np.pi)
    row_grid, col_grid = np.indices(candidates.shape)
    outer = candidates & (np.hypot(row_grid - centre_row, col_grid - centre_col) > 0.6 * field_radius)
    reference_pixels = outer if outer.sum() >= 16 else candidates
    lightness = lab[..., 0]
    threshold = threshold_otsu(lightness[reference_pixels])
    light, dark = reference_pixels & (lightness > threshold), reference_pixels & (lightness <= threshold)
    if light.sum() >= 16 and lightness[light].mean() - lightness[dark].mean() >= _LESION_MIN_DARKENING:
        reference_pixels = light

    skin_like = reference_pixels
    for _ in range(2):
        reference = np.median(lab[skin_like], axis=0)
        delta_e = np.linalg.norm(lab - reference, axis=-1)
        threshold = max(_SKIN_MIN_DELTA_E, _SKIN_DELTA_E_SPREADS * float(np.median(delta_e[skin_like])))
        skin_like = candidates & (delta_e <= threshold)
        if skin_like.sum() < 16:  # no colour is common enough to be the skin: leave the lesion unmasked
            return np.zeros_like(candidates)

    # Isolated off-colour pixels (noise, JPEG ringing) are not a lesion; only blobs get a margin.
    off_colour = candidates & ~skin_like
    components, _ = ndimage.label(off_colour)
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    blobs = sizes[components] > max(2, int(0.002 * candidates.size))
    margin = max(1, round(_LESION_MARGIN * side))
    return ndimage.binary_dilation(blobs, structure=disk(margin)) | off_colour
