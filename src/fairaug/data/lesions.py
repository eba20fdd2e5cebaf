"""Lesions (HAM10000 diagnoses) and wounds (healing phases I/P/R) painted on a rendered skin canvas.

Shapes live in "scene" coordinates (units of the image side, origin at the lesion site); each image
views the scene through its own rotation, flip and shift (`fairaug.skin.render.skin_canvas`), so the
images of one lesion show the same lesion. Lesion colours are offsets from the skin colour that fade
with its FST's contrast (`Canvas.tone`); so are wound tissue colours (those seen on FST I). The
fixtures draw the lesions and write the images (`fairaug.data.fixtures`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from fairaug.skin.render import Canvas, Lab, Skin, photograph, sample_lattice, sample_skin, skin_canvas

Renderer = Callable[[Canvas], None]  # paints one lesion onto a canvas


@dataclass(frozen=True)
class _Blob:
    """A closed shape with a wavy border: radius(phi) = radius * (1 + sum amp_k cos(k phi + phase_k))."""

    centre: np.ndarray  # (2,)
    radius: float
    harmonics: np.ndarray  # (K, 3): k, amplitude, phase
    elongation: float = 1.0  # major/minor axis ratio, area-preserving
    orientation: float = 0.0
    softness: float = 1.5  # border width in pixels

    def alpha(self, canvas: Canvas, scale: float = 1.0) -> np.ndarray:
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


def _disc_alpha(canvas: Canvas, centre: np.ndarray, radius: float, softness: float = 1.5) -> np.ndarray:
    distance = np.hypot(canvas.u - centre[0], canvas.v - centre[1])
    return np.clip((radius - distance) / (softness * canvas.pixel) + 0.5, 0.0, 1.0)


def _bezier(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, points: int = 16) -> np.ndarray:
    t = np.linspace(0.0, 1.0, points)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


def _line_alpha(canvas: Canvas, polyline: np.ndarray, width: float) -> np.ndarray:
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


# --------------------------------------------------------------------------------------------------
# Dermoscopy


# What makes diagnoses overlap, as in real dermoscopy (no label noise: every image shows its lesion):
# lesions of one diagnosis range from faint to vivid (`Canvas.strength`); naevi and melanomas lie on
# one continuum of atypia, each diagnosis drawing it from its own Beta distribution, which overlap
# (dysplastic naevi, early melanomas); some keratoses are as dark as melanomas, some basal cell
# carcinomas pigmented; images of one lesion differ in scale (camera distance).
_LESION_STRENGTH = (0.6, 1.15)
_ATYPIA: dict[str, tuple[float, float]] = {"nv": (2.0, 5.0), "mel": (5.0, 2.0)}
_CAMERA_DISTANCE = (0.9, 1.1)


@dataclass(frozen=True)
class DermLesion:
    skin: Skin
    paint_lesion: Renderer
    strength: float  # `Canvas.strength`: lesions of one diagnosis range from faint to vivid
    hairs: tuple[tuple[np.ndarray, float, Lab], ...]  # (polyline, width, colour)
    vignette_radius: float | None  # None: no dermoscope frame in the photo


def sample_derm_lesion(rng: np.random.Generator, dx: str, fst: int) -> DermLesion:
    skin = sample_skin(rng, fst)
    hairs = []
    for _ in range(rng.choice(5, p=(0.35, 0.3, 0.2, 0.1, 0.05))):
        ends = rng.uniform(-0.7, 0.7, size=(2, 2))
        bend = ends.mean(axis=0) + rng.normal(0, 0.15, size=2)
        colour = np.array([rng.uniform(8, 22), rng.uniform(1, 5), rng.uniform(2, 8)])
        hairs.append((_bezier(ends[0], bend, ends[1]), rng.uniform(0.7, 1.3), colour))
    return DermLesion(
        skin=skin,
        paint_lesion=_LESION_SAMPLERS[dx](rng),
        strength=float(rng.uniform(*_LESION_STRENGTH)),
        hairs=tuple(hairs),
        vignette_radius=float(rng.uniform(0.47, 0.62)) if rng.random() < 0.7 else None,
    )


def render_derm(lesion: DermLesion, rng: np.random.Generator, size: int, zoom: float = 1.0) -> np.ndarray:
    """One image of the lesion; ``zoom`` > 1: a close-up crop (magnified scene, no dermoscope frame)."""
    canvas, x, y = skin_canvas(rng, size, lesion.skin)
    scale = zoom * rng.uniform(*_CAMERA_DISTANCE)  # the dermoscope never sits at quite the same height
    canvas.u, canvas.v, canvas.pixel = canvas.u / scale, canvas.v / scale, canvas.pixel / scale
    canvas.strength = lesion.strength
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
    return photograph(canvas, rng)


def _sample_melanocytic(rng: np.random.Generator, atypia: float) -> Renderer:
    """A melanocytic lesion of ``atypia`` 0 (a banal naevus: small, round, regular border, uniform brown,
    darker centre, faint network) to 1 (a florid melanoma: large, asymmetric, irregular border, several
    colours: dark brown, black, blue-grey)."""
    blob = _random_blob(rng, (0.14 + 0.07 * atypia, 0.2 + 0.09 * atypia), (2, 3, 4, 5, 7),
                        (0.01 + 0.04 * atypia, 0.03 + 0.09 * atypia), elongation=(1.0, 1.15 + 0.35 * atypia),
                        softness=1.8 - 0.8 * atypia)  # fmt: skip
    network_period = rng.uniform(0.05, 0.07)
    brown = (rng.uniform(-27, -20) - 6 * atypia, rng.uniform(1, 4), rng.uniform(7, 11) - 4 * atypia)
    palette = [(-55, -9, -12), (-25, -13, -24), (-14, 2, 10), (-40, 2, 0)]  # black, blue-grey, light/dark brown
    blotches = [
        (blob.centre + rng.normal(0, 0.09, 2), rng.uniform(0.05, 0.1), palette[i])
        for i in rng.permutation(len(palette))[: rng.binomial(len(palette), atypia)]
    ]
    roughness = rng.standard_normal((12, 12))

    def paint(canvas: Canvas) -> None:
        alpha = blob.alpha(canvas)
        canvas.paint(alpha, canvas.tone(brown))
        canvas.paint(0.5 * blob.alpha(canvas, scale=0.5) * alpha, canvas.tone((-32, 3, 6)))
        uneven = sample_lattice(roughness, canvas.u, canvas.v)
        for (centre_u, centre_v), spread, colour in blotches:
            bump = np.exp(-((canvas.u - centre_u) ** 2 + (canvas.v - centre_v) ** 2) / (2 * spread**2))
            canvas.paint(alpha * np.clip((bump + 0.25 * uneven - 0.4) * 3.0, 0.0, 0.95), canvas.tone(colour))
        network = np.cos(2 * np.pi * canvas.u / network_period) * np.cos(2 * np.pi * canvas.v / network_period)
        contrast = canvas.skin.contrast * canvas.strength
        canvas.lab[..., 0] -= 2.5 * contrast * alpha * network * (1 - 0.5 * atypia)
        canvas.lab[..., 0] += 3.0 * contrast * alpha * uneven * atypia

    return paint


def _sample_nv(rng: np.random.Generator) -> Renderer:
    return _sample_melanocytic(rng, rng.beta(*_ATYPIA["nv"]))


def _sample_mel(rng: np.random.Generator) -> Renderer:
    return _sample_melanocytic(rng, rng.beta(*_ATYPIA["mel"]))


def _sample_bkl(rng: np.random.Generator) -> Renderer:
    """Benign keratosis: sharp light-brown oval, cerebriform texture, milia-like and comedo-like dots."""
    blob = _random_blob(rng, (0.16, 0.24), (3, 5), (0.02, 0.06), elongation=(1.3, 1.7), softness=1.0)
    pigment = rng.uniform(0.8, 2.2)  # light-brown to as dark as a melanoma
    texture = rng.standard_normal((18, 18))
    dots = [(blob.centre + rng.normal(0, 0.07, 2), bool(rng.random() < 0.6)) for _ in range(rng.integers(3, 8))]

    def paint(canvas: Canvas) -> None:
        alpha = blob.alpha(canvas)
        canvas.paint(alpha, canvas.tone((-14 * pigment, -1, 7)))
        canvas.lab[..., 0] += 5.0 * canvas.skin.contrast * canvas.strength * alpha * sample_lattice(texture, canvas.u, canvas.v)
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
    pigmented = rng.random() < 0.25  # pigmented basal cell carcinoma: many blue-grey nests
    nests = [(blob.centre + rng.normal(0, 0.06, 2), rng.uniform(0.015, 0.03))
             for _ in range(rng.integers(3, 7) if pigmented else rng.integers(0, 3))]  # fmt: skip

    def paint(canvas: Canvas) -> None:
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

    def paint(canvas: Canvas) -> None:
        alpha = blob.alpha(canvas)
        erythema = np.clip(0.75 + 0.3 * sample_lattice(patchiness, canvas.u, canvas.v), 0.3, 1.0)
        canvas.paint(alpha * erythema, canvas.tone((-9, 17, 2)))
        scale_cover = np.clip((sample_lattice(scale, canvas.u, canvas.v) - 0.5) * 2.5, 0.0, 0.9)
        canvas.paint(alpha * scale_cover, canvas.tone((12, -6, 4)))

    return paint


def _sample_df(rng: np.random.Generator) -> Renderer:
    """Dermatofibroma: small and round; a central white scar-like patch inside a brown ring."""
    ring = _random_blob(rng, (0.1, 0.14), (2, 3), (0.02, 0.06), elongation=(1.0, 1.25), softness=2.5)
    scar = _Blob(ring.centre, ring.radius * rng.uniform(0.4, 0.5), _harmonics(rng, (3, 4), (0.05, 0.12)))
    scar_opacity = rng.uniform(0.4, 0.9)  # the central white patch is not always clear

    def paint(canvas: Canvas) -> None:
        canvas.paint(ring.alpha(canvas), canvas.tone((-18, 2, 8)))
        canvas.paint(scar_opacity * scar.alpha(canvas), canvas.tone((13, -6, -6)))

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

    def paint(canvas: Canvas) -> None:
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
class WoundPatient:
    skin: Skin
    wound: _Blob  # the wound's site and outline at its largest (inflammatory phase)
    slough: np.ndarray  # lattice: where the inflammatory bed is covered by slough
    granules: np.ndarray  # lattice: unevenness of the granulation tissue


def sample_wound_patient(rng: np.random.Generator, fst: int) -> WoundPatient:
    return WoundPatient(
        skin=sample_skin(rng, fst),
        wound=_random_blob(rng, (0.13, 0.25), (2, 3, 4), (0.05, 0.13), elongation=(1.0, 1.8)),
        slough=rng.standard_normal((10, 10)),
        granules=rng.standard_normal((40, 40)),
    )


# Healing is a continuum: a visit's progress (0: a fresh wound, 1: a mature scar) is drawn from its
# phase's Beta distribution, and neighbouring phases overlap (a wound late in I looks like one early in
# P), as wound-care annotators find. Everything the phase changes follows the progress.
_HEALING_PROGRESS: dict[str, tuple[float, float]] = {"I": (2.0, 7.0), "P": (8.0, 8.0), "R": (7.0, 2.0)}


def render_wound(patient: WoundPatient, phase: str, rng: np.random.Generator, size: int) -> np.ndarray:
    canvas, _, _ = skin_canvas(rng, size, patient.skin)
    wound = patient.wound
    progress = rng.beta(*_HEALING_PROGRESS[phase])
    inflammation = max(0.0, 1.0 - progress / 0.5)  # swelling, erythema and slough of the first days
    granulation = max(0.0, 1.0 - abs(progress - 0.45) / 0.35)  # beefy granular tissue, mid-way
    closure = min(1.0, max(0.0, (progress - 0.45) / 0.45))  # epithelialised share of the bed
    # Every colour is seen against the skin (`Canvas.tone`): the bed's tissue colours are those of FST
    # I, and on darker skin erythema, rim, bed, slough and the granular sheen all differ less from the
    # skin around them, as wound tissue and inflammation are harder to assess on dark skin.
    canvas.paint(0.8 * inflammation * wound.alpha(canvas, scale=1.45) ** 0.5, canvas.tone((-6, 22, 6)))
    # The pink epithelial rim grows inwards into a smaller, pale, elongated scar.
    scar = _Blob(wound.centre, wound.radius * (1.12 - 0.42 * closure), wound.harmonics,
                 elongation=wound.elongation * (1.0 + 0.5 * closure), orientation=wound.orientation,
                 softness=2.0)  # fmt: skip
    canvas.paint(0.9 * scar.alpha(canvas), canvas.tone((4 + 6 * closure, 12 - 4 * closure, -5 * closure)))
    if closure < 1.0:
        bed = wound.alpha(canvas, scale=0.95 * (1.0 - closure) ** 0.6)
        dark_red, beefy_red = np.array([40.0, 42.0, 26.0]), np.array([46.0, 50.0, 30.0])
        bed_colour = dark_red + min(1.0, progress / 0.45) * (beefy_red - dark_red)
        canvas.paint(bed, canvas.tone(bed_colour - patient.skin.colour))
        slough = np.clip((sample_lattice(patient.slough, canvas.u, canvas.v) + 0.3 - 1.6 * progress) * 1.5, 0.0, 0.9)
        canvas.paint(bed * slough, canvas.tone(np.array([74.0, 8.0, 46.0]) - patient.skin.colour))
        sheen = 5.0 * patient.skin.contrast * granulation
        canvas.lab[..., 0] += sheen * bed * sample_lattice(patient.granules, canvas.u, canvas.v)
    return photograph(canvas, rng)
