"""Procedurally generated dermoscopy and wound data sets, written in the layouts of the real ones.

Each image is a patch of skin whose colour is drawn from the ITA range of its Fitzpatrick skin type
(FST) (`fairaug.skin.render`), with a lesion (HAM10000 diagnosis) or a wound (healing phase I/P/R)
whose shape and colours follow the class (`fairaug.data.lesions`). This module plans the data sets
and writes them: FSTs are imbalanced like real data (few V-VI), and darker skin makes lesions harder
to read (less contrast, faded colours, uneven pigmentation, noisier photos: see
`fairaug.skin.render.LESION_CONTRAST`), so that FST estimation and per-FST fairness effects (a
classifier doing worse on V-VI) can be measured against the true FST, which the fixtures record.

Output is deterministic: the same arguments give byte-identical files (per-image generators are
derived from ``(seed, index)``, JPEGs have a fixed quality and no metadata, CSVs a fixed format).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal, TypeVar

import numpy as np
import pandas as pd
from PIL import Image

from fairaug.data.lesions import render_derm, render_wound, sample_derm_lesion, sample_wound_patient
from fairaug.errors import FairaugError
from fairaug.io import atomic_dir, atomic_write_text
from fairaug.labels import WOUND_PHASES
from fairaug.progress import progress_bar

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
FST_PROBABILITIES: dict[int, float] = {1: 0.20, 2: 0.27, 3: 0.22, 4: 0.14, 5: 0.10, 6: 0.07}
PHASE_PROBABILITIES: dict[str, float] = {"I": 0.30, "P": 0.45, "R": 0.25}

JPEG_QUALITY = 92
_IMAGES_PER_LESION = ((1, 2, 3, 4), (0.6, 0.25, 0.1, 0.05))  # HAM10000: 10015 images of 7470 lesions
_IMAGES_PER_PATIENT = ((1, 2, 3, 4, 5), (0.15, 0.25, 0.25, 0.2, 0.15))
_PROGRESS_MIN_IMAGES = 200

# Seed streams: plan (labels, metadata), per lesion/patient, per image, per close-up choice.
_PLAN, _SUBJECT, _IMAGE, _CLOSEUP = 0, 1, 2, 3
_CLOSEUP_ZOOM = (2.5, 4.0)  # a close-up magnifies the scene so that the lesion fills most of the frame

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
        lesions = zip(images_per_lesion, dx_per_lesion, fst_per_lesion, strict=True)
        for lesion_index, (count, dx, fst) in enumerate(lesions):
            lesion = sample_derm_lesion(_rng(seed, _SUBJECT, lesion_index), dx, fst)
            lesion_row = {"lesion_id": f"HAM_{lesion_index:07d}", "dx": dx} | _sample_ham_metadata(plan_rng, dx)
            for _ in range(count):
                number = int(image_numbers[image_index])
                image_id = f"ISIC_{number:07d}"
                part = 1 if number < first_part_size else 2
                zoom = _closeup_zoom(_rng(seed, _CLOSEUP, image_index), closeup_share)
                rgb = render_derm(lesion, _rng(seed, _IMAGE, image_index), size, zoom)
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
        for patient_index, (count, fst) in enumerate(zip(visits_per_patient, fst_per_patient, strict=True)):
            patient = sample_wound_patient(_rng(seed, _SUBJECT, patient_index), fst)
            group_id = f"P{patient_index + 1:04d}"
            # A patient's visits heal in order: I before P before R.
            visit_phases = sorted(phases[image_index : image_index + count], key=phase_order.index)
            for phase in visit_phases:
                name = f"wound_{image_index:05d}.jpg"
                image = f"images/{name}" if layout == "csv" else f"{phase}/{name}"
                rgb = render_wound(patient, phase, _rng(seed, _IMAGE, image_index), size)
                _write_jpeg(tmp / image, rgb)
                rows.append({"image": image, "label": phase, "fst": fst, "group_id": group_id})
                image_index += 1
                progress.update()
        if layout == "csv":
            _write_csv(tmp / "labels.csv", rows, WOUND_CSV_COLUMNS)
        else:
            _write_csv(tmp / "ground_truth.csv", rows, WOUND_GROUND_TRUTH_COLUMNS)
    return out


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
    assigned = [label for label, quota in zip(labels, quotas, strict=True) for _ in range(int(quota))]
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


def _closeup_zoom(rng: np.random.Generator, share: float) -> float:
    """1 (the usual view), or with probability ``share`` a close-up's magnification."""
    return float(rng.uniform(*_CLOSEUP_ZOOM)) if share and rng.random() < share else 1.0


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


