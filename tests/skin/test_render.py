import numpy as np
import pytest
from scipy import ndimage
from skimage.color import rgb2lab

from fairaug.skin.render import LESION_CONTRAST, Canvas, photograph, sample_skin, skin_canvas


def painted_photo(seed: int, fst: int = 2, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """A photo of skin with a flat disc painted on it (no texture of its own), and the disc's pixels."""
    rng = np.random.default_rng(seed)
    canvas, x, y = skin_canvas(rng, size, sample_skin(rng, fst))
    disc = np.hypot(x, y) < 0.25
    canvas.paint(disc.astype(float), canvas.tone((-25, 3, 8)))
    return photograph(canvas, rng), disc


def residual_noise(rgb: np.ndarray, where: np.ndarray) -> float:
    """Std of L* minus its 5x5 median, away from the disc's edge: the pixel noise, not the picture."""
    lightness = rgb2lab(rgb)[..., 0]
    residual = lightness - ndimage.median_filter(lightness, size=5)
    inner = ndimage.binary_erosion(where, iterations=3)
    return float(residual[inner].std())


def test_photo_noise_covers_what_is_painted():
    # A camera's noise lies over the whole picture: a lesion painted on the skin is as noisy as the
    # skin around it (were the noise added before painting, the lesion would be noise-free, a cue
    # no real photo has).
    ratios = []
    for seed in range(8):
        rgb, disc = painted_photo(seed)
        skin = ~ndimage.binary_dilation(disc, iterations=4)
        ratios.append(residual_noise(rgb, disc) / residual_noise(rgb, skin))
    assert np.median(ratios) > 0.7


def test_photo_noise_is_stronger_on_darker_skin():
    light = np.median([residual_noise(*painted_photo(seed, fst=1)) for seed in range(6)])
    dark = np.median([residual_noise(*painted_photo(seed, fst=6)) for seed in range(6)])
    assert dark > 1.5 * light


@pytest.mark.parametrize("strength", [0.5, 1.0])
def test_tone_fades_with_contrast_and_strength(strength):
    rng = np.random.default_rng(0)
    for fst, contrast in LESION_CONTRAST.items():
        skin = sample_skin(rng, fst)
        canvas = Canvas(np.zeros((2, 2, 3)), np.zeros((2, 2)), np.zeros((2, 2)), 0.5, skin, strength)
        offset = np.array([-20.0, 10.0, 6.0])
        expected = skin.colour + offset * strength * np.array([contrast, contrast**2, contrast**2])
        np.testing.assert_allclose(canvas.tone(offset), expected)
