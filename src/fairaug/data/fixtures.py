"""Procedurally generated dermoscopy and wound data sets, written in the layouts of the real ones.

Each image is a patch of skin whose colour is drawn from the ITA range of its Fitzpatrick skin type
(FST), with a lesion (HAM10000 diagnosis) or a wound (healing phase I/P/R) whose shape and colours
follow the class. FSTs are imbalanced like real data (few V-VI), and darker skin makes lesions harder
to read (less contrast, faded colours, uneven pigmentation, noisier photos: see LESION_CONTRAST), so
that FST estimation and per-FST fairness effects (a classifier doing worse on V-VI) can be measured
against the true FST, which the fixtures record.

Output is deterministic: the same arguments give byte-identical files (per-image generators are
derived from ``(seed, index)``, JPEGs have a fixed quality and no metadata, CSVs a fixed format).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

import numpy as np
import pandas as pd
from PIL import Image
from skimage.color import lab2rgb

from fairaug.errors import FairaugError
from fairaug.io import atomic_dir, atomic_write_text
from fairaug.labels import WOUND_PHASES
from fairaug.progress import progress_bar
from fairaug.skin.ita import ITA_RANGE

HAM10000_COLUMNS: tuple[str, ...] = (
    "lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization", "fitzpatrick",
)  # fmt: skip
WOUND_CSV_COLUMNS: tuple[str, ...] = ("image", "label", "fst", "group_id")
WOUND_GROUND_TRUTH_COLUMNS: tuple[str, ...] = ("image", "fst", "group_id")

# HAM10000 is ~67% nv; flattened so that every diagnosis has a useful count in a small fixture.
DX_PROBABILITIES: dict[str, float] = {
    "nv": 0.40, "mel": 0.15, "bkl": 0.15, "bcc": 0.10, "akiec": 0.08, "vasc": 0.06, "df": 0.06,
}  # fmt: skip
# Skewed to light skin like dermatology data sets (Fitzpatrick17k, ISIC): few V-VI.
FST_PROBABILITIES: dict[int, float] = {1: 0.22, 2: 0.30, 3: 0.24, 4: 0.12, 5: 0.08, 6: 0.04}
PHASE_PROBABILITIES: dict[str, float] = {"I": 0.30, "P": 0.45, "R": 0.25}
# How darker skin hides lesions, per FST. Melanin absorbs light: a lesion's lightness difference to
# the skin shrinks with LESION_CONTRAST and its hue difference (the red of erythema and vessels, the
# blue-grey of melanoma) with its square; pigmentation is more uneven (SKIN_UNEVENNESS scales the
# mottling, blobs of a lesion's size) and photos are noisier (PHOTO_NOISE scales the pixel noise).
# With these, the tiny profile's real-only classifier has a clearly lower AUROC on V-VI than on I-II
# (about 0.8 against 1.0 on 1200 held-out fixture images), as dermatology classifiers do.
LESION_CONTRAST: dict[int, float] = {1: 1.0, 2: 0.9, 3: 0.75, 4: 0.58, 5: 0.35, 6: 0.22}
SKIN_UNEVENNESS: dict[int, float] = {1: 1.0, 2: 1.0, 3: 1.3, 4: 1.7, 5: 2.5, 6: 3.0}
PHOTO_NOISE: dict[int, float] = {1: 1.0, 2: 1.0, 3: 1.2, 4: 1.5, 5: 2.2, 6: 2.8}

JPEG_QUALITY = 92
_IMAGES_PER_LESION = ((1, 2, 3, 4), (0.6, 0.25, 0.1, 0.05))  # HAM10000: 10015 images of 7470 lesions
_IMAGES_PER_PATIENT = ((1, 2, 3, 4, 5), (0.15, 0.25, 0.25, 0.2, 0.15))
_ITA_INTERIOR = 0.15  # skin ITA is drawn away from the FST bin edges by this fraction of the range
_MAX_SKIN_L = 82.0
_PROGRESS_MIN_IMAGES = 200

# Seed streams: plan (labels, metadata), per lesion/patient, per image, per close-up choice.
_PLAN, _SUBJECT, _IMAGE, _CLOSEUP = 0, 1, 2, 3
_CLOSEUP_ZOOM = (2.5, 4.0)  # a close-up magnifies the scene so that the lesion fills most of the frame

Lab = np.ndarray  # a CIELAB colour (3,) or image (H, W, 3), float64
Renderer = Callable[["_Canvas"], None]  # paints one lesion onto a canvas
T = TypeVar("T")


# --------------------------------------------------------------------------------------------------
# Public API


def write_derm_fixture(out: str | Path, n: int, seed: int, size: int = 64, closeup_share: float = 0.0) -> Path:
    """Write ``n`` dermoscopy images in the HAM10000 layout to ``out`` (replacing it) and return it.

    ``out/HAM10000_metadata.csv`` has the HAM10000 columns plus ``fitzpatrick`` (the true FST); images
    ``<image_id>.jpg`` are split between ``HAM10000_images_part_1/`` (first half of the ids) and
    ``HAM10000_images_part_2/``. A lesion has 1-4 images (rotated, flipped, shifted, relit). About
    ``closeup_share`` of the images are close-ups that the lesion fills, with little skin around it
    (where an ITA estimate must abstain); the other images do not depend on it.
    """
    if not 0.0 <= closeup_share <= 1.0:
        raise FairaugError(f"closeup share must be between 0 and 1, got {closeup_share}")
    out = Path(out)
    _check_arguments(out, n, seed, size, markers=("HAM10000_metadata.csv",))
    plan_rng = _rng(seed, _PLAN)
    images_per_lesion = _group_sizes(plan_rng, n, *_IMAGES_PER_LESION)
    dx_per_lesion = _assign_by_quota(plan_rng, len(images_per_lesion), DX_PROBABILITIES)
    fst_per_lesion = _assign_by_quota(plan_rng, len(images_per_lesion), FST_PROBABILITIES)
    image_numbers = plan_rng.permutation(n)
    first_part_size = math.ceil(n / 2)

    rows: list[dict[str, object]] = []
    with atomic_dir(out) as tmp, _progress(n, "derm fixture") as progress:
        image_index = 0
        for lesion_index, (count, dx, fst) in enumerate(zip(images_per_lesion, dx_per_lesion, fst_per_lesion)):
            lesion = _sample_derm_lesion(_rng(seed, _SUBJECT, lesion_index), dx, fst)
            lesion_row = {"lesion_id": f"HAM_{lesion_index:07d}", "dx": dx} | _sample_ham_metadata(plan_rng, dx)
            for _ in range(count):
                number = int(image_numbers[image_index])
                image_id = f"ISIC_{number:07d}"
                part = 1 if number < first_part_size else 2
                zoom = _closeup_zoom(_rng(seed, _CLOSEUP, image_index), closeup_share)
                rgb = _render_derm(lesion, _rng(seed, _IMAGE, image_index), size, zoom)
                _write_jpeg(tmp / f"HAM10000_images_part_{part}" / f"{image_id}.jpg", rgb)
                rows.append(lesion_row | {"image_id": image_id, "fitzpatrick": fst})
                image_index += 1
                progress.update()
        # Both parts exist even for n == 1, as in the real download.
        for part in (1, 2):
            (tmp / f"HAM10000_images_part_{part}").mkdir(exist_ok=True)
        _write_csv(tmp / "HAM10000_metadata.csv", rows, HAM10000_COLUMNS)
    return out


def write_wound_fixture(
    out: str | Path,
    n: int,
    seed: int,
    size: int = 64,
    layout: Literal["csv", "imagefolder"] = "csv",
) -> Path:
    """Write ``n`` wound images (phases I, P, R) to ``out`` (replacing it) and return it.

    ``layout="csv"``: ``out/labels.csv`` (``image,label,fst,group_id``, image = ``images/<name>.jpg``)
    and ``out/images/``. ``layout="imagefolder"``: ``out/<label>/<name>.jpg`` and
    ``out/ground_truth.csv`` (``image,fst,group_id``, image relative to ``out``) with the true FST.
    A patient (``group_id`` like ``P0001``) has 1-5 visits whose phases follow the healing order.
    """
    out = Path(out)
    if layout not in ("csv", "imagefolder"):
        raise FairaugError(f"wound fixture layout must be 'csv' or 'imagefolder', got {layout!r}")
    _check_arguments(out, n, seed, size, markers=("labels.csv", "ground_truth.csv"))
    plan_rng = _rng(seed, _PLAN)
    visits_per_patient = _group_sizes(plan_rng, n, *_IMAGES_PER_PATIENT)
    fst_per_patient = _assign_by_quota(plan_rng, len(visits_per_patient), FST_PROBABILITIES)
    phases = _assign_by_quota(plan_rng, n, PHASE_PROBABILITIES)
    phase_order = list(WOUND_PHASES)

    rows: list[dict[str, object]] = []
    with atomic_dir(out) as tmp, _progress(n, "wound fixture") as progress:
        image_index = 0
        for patient_index, (count, fst) in enumerate(zip(visits_per_patient, fst_per_patient)):
            patient = _sample_wound_patient(_rng(seed, _SUBJECT, patient_index), fst)
            group_id = f"P{patient_index + 1:04d}"
            # A patient's visits heal in order: I before P before R.
            visit_phases = sorted(phases[image_index : image_index + count], key=phase_order.index)
            for phase in visit_phases:
                name = f"wound_{image_index:05d}.jpg"
                image = f"images/{name}" if layout == "csv" else f"{phase}/{name}"
                rgb = _render_wound(patient, phase, _rng(seed, _IMAGE, image_index), size)
                _write_jpeg(tmp / image, rgb)
                rows.append({"image": image, "label": phase, "fst": fst, "group_id": group_id})
                image_index += 1
                progress.update()
        if layout == "csv":
            _write_csv(tmp / "labels.csv", rows, WOUND_CSV_COLUMNS)
        else:
            _write_csv(tmp / "ground_truth.csv", rows, WOUND_GROUND_TRUTH_COLUMNS)
    return out


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


# --------------------------------------------------------------------------------------------------
# Plan: how many images per subject, which labels, which metadata


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *key]))


def _check_arguments(out: Path, n: int, seed: int, size: int, markers: Sequence[str]) -> None:
    if seed < 0:
        raise FairaugError(f"fixture seed must be a non-negative integer, got {seed}")
    if n < 1:
        raise FairaugError(f"fixture size n must be at least 1, got {n}")
    if size < 16:
        raise FairaugError(f"fixture image size must be at least 16 px, got {size}")
    # The fixture replaces `out`: refuse to delete anything but an empty directory or an earlier fixture.
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    if not out.is_dir() or not any((out / marker).is_file() for marker in markers):
        raise FairaugError(f"{out}: exists and is not a fixture written before; refusing to replace it")


def _group_sizes(
    rng: np.random.Generator, n: int, sizes: Sequence[int], probabilities: Sequence[float]
) -> list[int]:
    """Images per subject, drawn until they add up to ``n`` (the last subject is cut to fit)."""
    counts: list[int] = []
    while (total := sum(counts)) < n:
        counts.append(min(int(rng.choice(sizes, p=probabilities)), n - total))
    return counts


def _assign_by_quota(rng: np.random.Generator, count: int, probabilities: Mapping[T, float]) -> list[T]:
    """``count`` labels in proportion to ``probabilities`` (largest remainder), shuffled.

    Every label gets at least one item when there are enough items, so rare classes are never missing.
    """
    labels = list(probabilities)
    expected = np.array([probabilities[label] for label in labels]) * count
    quotas = np.floor(expected).astype(int)
    for index in np.argsort(-(expected - quotas), kind="stable")[: count - quotas.sum()]:
        quotas[index] += 1
    if count >= len(labels):
        for index in np.flatnonzero(quotas == 0):
            quotas[np.argmax(quotas)] -= 1
            quotas[index] = 1
    assigned = [label for label, quota in zip(labels, quotas) for _ in range(int(quota))]
    return [assigned[i] for i in rng.permutation(count)]


_DX_TYPES: dict[str, tuple[tuple[str, ...], tuple[float, ...]]] = {
    "nv": (("follow_up", "histo", "consensus"), (0.55, 0.35, 0.10)),
    "mel": (("histo",), (1.0,)),
    "bkl": (("histo", "consensus", "confocal"), (0.5, 0.3, 0.2)),
    "bcc": (("histo",), (1.0,)),
    "akiec": (("histo",), (1.0,)),
    "vasc": (("consensus", "histo"), (0.5, 0.5)),
    "df": (("consensus", "histo"), (0.5, 0.5)),
}
_MEAN_AGE = {"nv": 42, "mel": 61, "bkl": 59, "bcc": 66, "akiec": 67, "vasc": 50, "df": 52}
_LOCALIZATIONS: dict[str, float] = {
    "back": 0.22, "lower extremity": 0.21, "trunk": 0.14, "upper extremity": 0.11, "abdomen": 0.10,
    "face": 0.07, "chest": 0.04, "foot": 0.03, "neck": 0.02, "scalp": 0.02, "hand": 0.01, "ear": 0.01,
    "genital": 0.005, "acral": 0.005, "unknown": 0.01,
}  # fmt: skip


def _sample_ham_metadata(rng: np.random.Generator, dx: str) -> dict[str, object]:
    dx_types, dx_type_probabilities = _DX_TYPES[dx]
    localization_weights = np.array(list(_LOCALIZATIONS.values()))
    return {
        "dx_type": str(rng.choice(dx_types, p=dx_type_probabilities)),
        "age": float(np.clip(5 * round(rng.normal(_MEAN_AGE[dx], 14) / 5), 5, 85)),  # multiples of 5, as in HAM
        "sex": "male" if rng.random() < 0.54 else "female",
        "localization": str(rng.choice(list(_LOCALIZATIONS), p=localization_weights / localization_weights.sum())),
    }


# --------------------------------------------------------------------------------------------------
# Files


def _write_jpeg(path: Path, rgb: np.ndarray) -> None:
    buffer = io.BytesIO()
    # Explicit quality and chroma subsampling (4:2:0, as in camera JPEGs): bytes depend on nothing else.
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=JPEG_QUALITY, subsampling=2, optimize=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())  # the whole fixture directory is renamed into place atomically


def _write_csv(path: Path, rows: list[dict[str, object]], columns: Sequence[str]) -> None:
    frame = pd.DataFrame(rows, columns=list(columns))
    atomic_write_text(path, frame.to_csv(index=False, lineterminator="\n", float_format="%.1f"))


def _progress(n: int, description: str):
    return progress_bar(total=n, desc=description, unit="img", hide=n < _PROGRESS_MIN_IMAGES)


# --------------------------------------------------------------------------------------------------
# Rendering primitives. Shapes live in "scene" coordinates (units of the image side, origin at the
# lesion site); each image views the scene through its own rotation, flip and shift, so the images of
# one lesion show the same lesion. Colours are CIELAB, composited by alpha, converted to sRGB at the end.


@dataclass(frozen=True)
class _Skin:
    """A subject's skin: colour, texture (in scene coordinates), and for its FST the lesion contrast,
    the unevenness of its pigmentation and the noise of its photos."""

    colour: Lab
    contrast: float
    unevenness: float
    noise: float
    texture: np.ndarray  # (3, cells, cells) lattices for L*, a*, b*
    furrow_directions: np.ndarray  # (2,) angles of the criss-cross skin lines


def _sample_skin(rng: np.random.Generator, fst: int) -> _Skin:
    return _Skin(
        colour=sample_skin_lab(rng, fst),
        contrast=LESION_CONTRAST[fst],
        unevenness=SKIN_UNEVENNESS[fst],
        noise=PHOTO_NOISE[fst],
        texture=rng.standard_normal((3, 7, 7)),
        furrow_directions=rng.uniform(0, np.pi, size=2),
    )


@dataclass
class _Canvas:
    """A CIELAB image being painted, with the scene coordinates of its pixels."""

    lab: np.ndarray  # (H, W, 3)
    u: np.ndarray  # scene coordinates, (H, W)
    v: np.ndarray
    pixel: float  # one pixel in scene units
    skin: _Skin

    def paint(self, alpha: np.ndarray, colour: Lab) -> None:
        self.lab += alpha[..., None] * (colour - self.lab)

    def tone(self, offset: Sequence[float]) -> Lab:
        """A lesion colour: the skin colour moved by ``offset`` (given for FST I), its L* scaled by the
        contrast and its a*, b* by the contrast squared (hues fade faster than darkness)."""
        contrast = self.skin.contrast
        return self.skin.colour + np.asarray(offset, dtype=np.float64) * (contrast, contrast**2, contrast**2)


def _skin_canvas(rng: np.random.Generator, size: int, skin: _Skin) -> tuple[_Canvas, np.ndarray, np.ndarray]:
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
    canvas = _Canvas(np.empty((size, size, 3)), u, v, 1.0 / size, skin)

    lab = canvas.lab
    lab[:] = skin.colour
    for channel, amplitude in enumerate((1.5, 0.8, 0.8)):
        lab[..., channel] += skin.unevenness * amplitude * _sample_lattice(skin.texture[channel], u, v)
    for direction in skin.furrow_directions:
        phase = (math.cos(direction) * u + math.sin(direction) * v) / 0.09
        lab[..., 0] -= 0.7 * np.cos(np.pi * phase) ** 16
    lab += rng.standard_normal(lab.shape) * np.multiply((0.8, 0.4, 0.4), skin.noise)
    gradient = rng.uniform(-1.0, 1.0, size=2)
    lab[..., 0] += rng.uniform(-0.8, 0.8) + gradient[0] * x + gradient[1] * y
    return canvas, x, y


def _sample_lattice(lattice: np.ndarray, u: np.ndarray, v: np.ndarray, extent: float = 0.75) -> np.ndarray:
    """Smooth noise: bilinear interpolation of a lattice spread over [-extent, extent]^2, at points (u, v)."""
    cells = lattice.shape[0]
    col = np.clip((u + extent) / (2 * extent) * (cells - 1), 0, cells - 1.001)
    row = np.clip((v + extent) / (2 * extent) * (cells - 1), 0, cells - 1.001)
    col0, row0 = col.astype(int), row.astype(int)
    col_weight, row_weight = col - col0, row - row0
    top = lattice[row0, col0] * (1 - col_weight) + lattice[row0, col0 + 1] * col_weight
    bottom = lattice[row0 + 1, col0] * (1 - col_weight) + lattice[row0 + 1, col0 + 1] * col_weight
    return top * (1 - row_weight) + bottom * row_weight


@dataclass(frozen=True)
class _Blob:
    """A closed shape with a wavy border: radius(phi) = radius * (1 + sum amp_k cos(k phi + phase_k))."""

    centre: np.ndarray  # (2,)
    radius: float
    harmonics: np.ndarray  # (K, 3): k, amplitude, phase
    elongation: float = 1.0  # major/minor axis ratio, area-preserving
    orientation: float = 0.0
    softness: float = 1.5  # border width in pixels

    def alpha(self, canvas: _Canvas, scale: float = 1.0) -> np.ndarray:
        du, dv = canvas.u - self.centre[0], canvas.v - self.centre[1]
        cos, sin = math.cos(self.orientation), math.sin(self.orientation)
        stretch = math.sqrt(self.elongation)
        along, across = (cos * du + sin * dv) / stretch, (-sin * du + cos * dv) * stretch
        distance, phi = np.hypot(along, across), np.arctan2(across, along)
        border = np.ones_like(phi)
        for k, amplitude, phase in self.harmonics:
            border += amplitude * np.cos(k * phi + phase)
        border *= self.radius * scale
        return np.clip((border - distance) / (self.softness * canvas.pixel) + 0.5, 0.0, 1.0)


def _random_blob(
    rng: np.random.Generator,
    radius: tuple[float, float],
    orders: Sequence[int],
    waviness: tuple[float, float],
    elongation: tuple[float, float] = (1.0, 1.0),
    softness: float = 1.5,
) -> _Blob:
    """A blob near the scene centre with radius, border harmonics and elongation drawn from the ranges."""
    return _Blob(
        centre=rng.normal(0, 0.03, size=2),
        radius=rng.uniform(*radius),
        harmonics=_harmonics(rng, orders, waviness),
        elongation=rng.uniform(*elongation),
        orientation=rng.uniform(0, np.pi),
        softness=softness,
    )


def _harmonics(rng: np.random.Generator, orders: Sequence[int], amplitude: tuple[float, float]) -> np.ndarray:
    return np.array([(k, rng.uniform(*amplitude), rng.uniform(0, 2 * np.pi)) for k in orders]).reshape(-1, 3)


def _disc_alpha(canvas: _Canvas, centre: np.ndarray, radius: float, softness: float = 1.5) -> np.ndarray:
    distance = np.hypot(canvas.u - centre[0], canvas.v - centre[1])
    return np.clip((radius - distance) / (softness * canvas.pixel) + 0.5, 0.0, 1.0)


def _bezier(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, points: int = 16) -> np.ndarray:
    t = np.linspace(0.0, 1.0, points)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


def _line_alpha(canvas: _Canvas, polyline: np.ndarray, width: float) -> np.ndarray:
    """Anti-aliased coverage of a polyline (N, 2).

    ``width`` is in pixels of a 64 px image; lines thicken only slowly with the image size (a hair stays
    a hair).
    """
    width_px = width * max(1.0, 1.0 / (96 * canvas.pixel))
    (start_u, start_v), (step_u, step_v) = polyline[:-1].T, np.diff(polyline, axis=0).T
    du, dv = canvas.u[..., None] - start_u, canvas.v[..., None] - start_v  # (H, W, segments)
    along = np.clip((du * step_u + dv * step_v) / np.maximum(step_u**2 + step_v**2, 1e-12), 0.0, 1.0)
    distance = np.sqrt(((du - along * step_u) ** 2 + (dv - along * step_v) ** 2).min(axis=-1))
    return np.clip(width_px / 2 - distance / canvas.pixel + 0.5, 0.0, 1.0)


def _to_rgb(lab: np.ndarray) -> np.ndarray:
    lab[..., 0] = np.clip(lab[..., 0], 0.0, 100.0)
    return np.round(lab2rgb(lab) * 255.0).astype(np.uint8)


# --------------------------------------------------------------------------------------------------
# Dermoscopy


@dataclass(frozen=True)
class _DermLesion:
    skin: _Skin
    paint_lesion: Renderer
    hairs: tuple[tuple[np.ndarray, float, Lab], ...]  # (polyline, width, colour)
    vignette_radius: float | None  # None: no dermoscope frame in the photo


def _sample_derm_lesion(rng: np.random.Generator, dx: str, fst: int) -> _DermLesion:
    skin = _sample_skin(rng, fst)
    hairs = []
    for _ in range(rng.choice(5, p=(0.35, 0.3, 0.2, 0.1, 0.05))):
        ends = rng.uniform(-0.7, 0.7, size=(2, 2))
        bend = ends.mean(axis=0) + rng.normal(0, 0.15, size=2)
        colour = np.array([rng.uniform(8, 22), rng.uniform(1, 5), rng.uniform(2, 8)])
        hairs.append((_bezier(ends[0], bend, ends[1]), rng.uniform(0.7, 1.3), colour))
    return _DermLesion(
        skin=skin,
        paint_lesion=_LESION_SAMPLERS[dx](rng),
        hairs=tuple(hairs),
        vignette_radius=float(rng.uniform(0.47, 0.62)) if rng.random() < 0.7 else None,
    )


def _closeup_zoom(rng: np.random.Generator, share: float) -> float:
    """1 (the usual view), or with probability ``share`` a close-up's magnification."""
    return float(rng.uniform(*_CLOSEUP_ZOOM)) if share and rng.random() < share else 1.0


def _render_derm(lesion: _DermLesion, rng: np.random.Generator, size: int, zoom: float = 1.0) -> np.ndarray:
    """One image of the lesion; ``zoom`` > 1: a close-up crop (magnified scene, no dermoscope frame)."""
    canvas, x, y = _skin_canvas(rng, size, lesion.skin)
    canvas.u, canvas.v, canvas.pixel = canvas.u / zoom, canvas.v / zoom, canvas.pixel / zoom
    lesion.paint_lesion(canvas)
    for polyline, width, colour in lesion.hairs:
        canvas.paint(0.9 * _line_alpha(canvas, polyline, width), colour)
    if lesion.vignette_radius is not None and zoom == 1.0:
        # The dermoscope's field: fixed in the image (not the scene), slightly off-centre.
        radius = lesion.vignette_radius + rng.uniform(-0.01, 0.01)
        distance = np.hypot(x - rng.uniform(-0.02, 0.02), y - rng.uniform(-0.02, 0.02))
        # Optics darken the rim of the field a little before the frame goes black.
        canvas.lab[..., 0] *= 1.0 - 0.05 * np.clip(distance / radius, 0.0, 1.0) ** 4
        frame = np.clip((distance - radius) / 0.035 + 0.5, 0.0, 1.0)
        canvas.paint(frame, np.array([3.0, 0.5, 1.0]) + rng.normal(0, 0.4, size=(size, size, 1)))
    return _to_rgb(canvas.lab)


def _sample_nv(rng: np.random.Generator) -> Renderer:
    """Melanocytic nevus: round, regular border, uniform brown, slightly darker centre, faint network."""
    blob = _random_blob(rng, (0.15, 0.24), (2, 3), (0.0, 0.04), elongation=(1.0, 1.15), softness=1.8)
    network_period = rng.uniform(0.05, 0.07)
    brown = (rng.uniform(-27, -20), rng.uniform(1, 4), rng.uniform(7, 11))

    def paint(canvas: _Canvas) -> None:
        alpha = blob.alpha(canvas)
        canvas.paint(alpha, canvas.tone(brown))
        canvas.paint(0.5 * blob.alpha(canvas, scale=0.5) * alpha, canvas.tone((-32, 3, 6)))
        network = np.cos(2 * np.pi * canvas.u / network_period) * np.cos(2 * np.pi * canvas.v / network_period)
        canvas.lab[..., 0] -= 2.5 * canvas.skin.contrast * alpha * network

    return paint


def _sample_mel(rng: np.random.Generator) -> Renderer:
    """Melanoma: large, asymmetric, irregular border, several colours (dark brown, black, blue-grey)."""
    blob = _random_blob(rng, (0.2, 0.29), (2, 3, 4, 5, 7), (0.04, 0.12), elongation=(1.1, 1.5), softness=1.0)
    palette = [(-55, -9, -12), (-25, -13, -24), (-14, 2, 10), (-40, 2, 0)]  # black, blue-grey, light/dark brown
    blotches = [
        (blob.centre + rng.normal(0, 0.09, 2), rng.uniform(0.05, 0.1), palette[i])
        for i in rng.permutation(len(palette))[: rng.integers(2, 5)]
    ]
    roughness = rng.standard_normal((12, 12))

    def paint(canvas: _Canvas) -> None:
        alpha = blob.alpha(canvas)
        canvas.paint(alpha, canvas.tone((-33, 3, 6)))
        uneven = _sample_lattice(roughness, canvas.u, canvas.v)
        for (centre_u, centre_v), spread, colour in blotches:
            bump = np.exp(-((canvas.u - centre_u) ** 2 + (canvas.v - centre_v) ** 2) / (2 * spread**2))
            canvas.paint(alpha * np.clip((bump + 0.25 * uneven - 0.4) * 3.0, 0.0, 0.95), canvas.tone(colour))
        canvas.lab[..., 0] += 3.0 * canvas.skin.contrast * alpha * uneven

    return paint


def _sample_bkl(rng: np.random.Generator) -> Renderer:
    """Benign keratosis: sharp light-brown oval, cerebriform texture, milia-like and comedo-like dots."""
    blob = _random_blob(rng, (0.16, 0.24), (3, 5), (0.02, 0.06), elongation=(1.3, 1.7), softness=1.0)
    texture = rng.standard_normal((18, 18))
    dots = [(blob.centre + rng.normal(0, 0.07, 2), bool(rng.random() < 0.6)) for _ in range(rng.integers(3, 8))]

    def paint(canvas: _Canvas) -> None:
        alpha = blob.alpha(canvas)
        canvas.paint(alpha, canvas.tone((-14, -1, 7)))
        canvas.lab[..., 0] += 5.0 * canvas.skin.contrast * alpha * _sample_lattice(texture, canvas.u, canvas.v)
        for centre, milium in dots:
            dot = _disc_alpha(canvas, centre, 0.016, softness=1.0)
            canvas.paint(alpha * dot, canvas.tone((12, -6, 0) if milium else (-30, 0, 2)))

    return paint


def _sample_bcc(rng: np.random.Generator) -> Renderer:
    """Basal cell carcinoma: pinkish pearly translucent patch, red arborizing vessels, blue-grey nests."""
    blob = _random_blob(rng, (0.16, 0.23), (2, 3, 5), (0.03, 0.09), elongation=(1.0, 1.4), softness=2.5)
    vessels = []
    for _ in range(rng.integers(1, 3)):
        trunk = _bezier(*(blob.centre + rng.uniform(-0.14, 0.14, size=(3, 2))))
        vessels.append((trunk, rng.uniform(1.0, 1.4)))
        for point in trunk[rng.choice(len(trunk), size=rng.integers(2, 4), replace=False)]:
            branch = _bezier(point, point + rng.normal(0, 0.04, 2), point + rng.normal(0, 0.07, 2), points=8)
            vessels.append((branch, 0.7))
    nests = [(blob.centre + rng.normal(0, 0.06, 2), rng.uniform(0.015, 0.03)) for _ in range(rng.integers(0, 3))]

    def paint(canvas: _Canvas) -> None:
        alpha = blob.alpha(canvas)
        canvas.paint(0.85 * alpha, canvas.tone((5, 9, -6)))
        for centre, radius in nests:
            canvas.paint(0.8 * alpha * _disc_alpha(canvas, centre, radius), canvas.tone((-28, -12, -22)))
        for polyline, width in vessels:
            canvas.paint(0.9 * alpha * _line_alpha(canvas, polyline, width), canvas.tone((-24, 32, 8)))

    return paint


def _sample_akiec(rng: np.random.Generator) -> Renderer:
    """Actinic keratosis / Bowen's disease: ill-defined patchy red patch with rough white-yellow scale."""
    blob = _random_blob(rng, (0.18, 0.27), (2, 3, 4), (0.05, 0.11), elongation=(1.0, 1.4), softness=3.5)
    patchiness, scale = rng.standard_normal((8, 8)), rng.standard_normal((28, 28))

    def paint(canvas: _Canvas) -> None:
        alpha = blob.alpha(canvas)
        erythema = np.clip(0.75 + 0.3 * _sample_lattice(patchiness, canvas.u, canvas.v), 0.3, 1.0)
        canvas.paint(alpha * erythema, canvas.tone((-9, 17, 2)))
        scale_cover = np.clip((_sample_lattice(scale, canvas.u, canvas.v) - 0.5) * 2.5, 0.0, 0.9)
        canvas.paint(alpha * scale_cover, canvas.tone((12, -6, 4)))

    return paint


def _sample_df(rng: np.random.Generator) -> Renderer:
    """Dermatofibroma: small and round; a central white scar-like patch inside a brown ring."""
    ring = _random_blob(rng, (0.1, 0.14), (2, 3), (0.02, 0.06), elongation=(1.0, 1.25), softness=2.5)
    scar = _Blob(ring.centre, ring.radius * rng.uniform(0.4, 0.5), _harmonics(rng, (3, 4), (0.05, 0.12)))

    def paint(canvas: _Canvas) -> None:
        canvas.paint(ring.alpha(canvas), canvas.tone((-18, 2, 8)))
        canvas.paint(0.9 * scar.alpha(canvas), canvas.tone((13, -6, -6)))

    return paint


def _sample_vasc(rng: np.random.Generator) -> Renderer:
    """Vascular lesion (angioma): clustered round red/purple lacunae separated by pale septa."""
    halo = _random_blob(rng, (0.12, 0.2), (2, 3), (0.03, 0.08), softness=2.5)
    lacunae = []
    while len(lacunae) < 12 and (len(lacunae) < 6 or rng.random() < 0.85):
        offset = rng.uniform(-0.8, 0.8, size=2) * halo.radius
        if np.hypot(*offset) <= 0.8 * halo.radius:
            colour = ((-26, 32, 8), (-36, 17, -20))[int(rng.random() < 0.4)]  # red or purple
            lacunae.append((halo.centre + offset, rng.uniform(0.03, 0.05), colour))

    def paint(canvas: _Canvas) -> None:
        canvas.paint(0.7 * halo.alpha(canvas), canvas.tone((-4, 10, 0)))
        for centre, radius, colour in lacunae:
            canvas.paint(0.95 * _disc_alpha(canvas, centre, radius, softness=1.2), canvas.tone(colour))

    return paint


_LESION_SAMPLERS: dict[str, Callable[[np.random.Generator], Renderer]] = {
    "akiec": _sample_akiec, "bcc": _sample_bcc, "bkl": _sample_bkl, "df": _sample_df,
    "mel": _sample_mel, "nv": _sample_nv, "vasc": _sample_vasc,
}  # fmt: skip


# --------------------------------------------------------------------------------------------------
# Wounds


@dataclass(frozen=True)
class _WoundPatient:
    skin: _Skin
    wound: _Blob  # the wound's site and outline at its largest (inflammatory phase)
    slough: np.ndarray  # lattice: where the inflammatory bed is covered by slough
    granules: np.ndarray  # lattice: unevenness of the granulation tissue


def _sample_wound_patient(rng: np.random.Generator, fst: int) -> _WoundPatient:
    return _WoundPatient(
        skin=_sample_skin(rng, fst),
        wound=_random_blob(rng, (0.16, 0.23), (2, 3, 4), (0.05, 0.13), elongation=(1.0, 1.8)),
        slough=rng.standard_normal((10, 10)),
        granules=rng.standard_normal((40, 40)),
    )


def _render_wound(patient: _WoundPatient, phase: str, rng: np.random.Generator, size: int) -> np.ndarray:
    canvas, _, _ = _skin_canvas(rng, size, patient.skin)
    wound = patient.wound
    # Tissue colours are absolute (a wound bed is red on any skin); erythema and scars depend on the skin.
    if phase == "I":
        # Inflammatory: swollen red margin around a dark-red bed with yellow slough/exudate.
        canvas.paint(0.8 * wound.alpha(canvas, scale=1.45) ** 0.5, canvas.tone((-6, 18, 4)))
        bed = wound.alpha(canvas)
        canvas.paint(bed, np.array([36.0, 38.0, 24.0]))
        cover = np.clip((_sample_lattice(patient.slough, canvas.u, canvas.v) + 0.2) * 1.5, 0.0, 0.95)
        canvas.paint(bed * cover, np.array([74.0, 8.0, 46.0]))
    elif phase == "P":
        # Proliferative: beefy red granulation tissue with a granular surface and a pink epithelial rim.
        canvas.paint(wound.alpha(canvas, scale=1.12), canvas.tone((4, 12, 0)))
        bed = wound.alpha(canvas, scale=0.9)
        canvas.paint(bed, np.array([46.0, 50.0, 30.0]))
        canvas.lab[..., 0] += 5.0 * bed * _sample_lattice(patient.granules, canvas.u, canvas.v)
    else:
        # Remodeling: a smaller, smooth, pale pink epithelialised scar.
        scar = _Blob(wound.centre, wound.radius * 0.7, wound.harmonics, elongation=wound.elongation * 1.5,
                     orientation=wound.orientation, softness=2.0)  # fmt: skip
        canvas.paint(0.9 * scar.alpha(canvas), canvas.tone((10, 8, -5)))
    return _to_rgb(canvas.lab)
