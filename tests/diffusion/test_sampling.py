"""FstSamples: the grid layout, and fst_fidelity against a hand count on skin patches of known ITA."""

import numpy as np
from PIL import Image
from skimage.color import lab2rgb

from fairaug.diffusion.sampling import LABEL_WIDTH, FstSamples

ITA_IN_BIN = {1: 65, 2: 48, 3: 34, 4: 19, 5: -10, 6: -45}  # degrees, inside each Kinyanjui bin


def skin(fst: int) -> Image.Image:
    """A uniform patch whose CIELAB colour has an ITA inside ``fst``'s bin (b* = 15: L* follows)."""
    lab = np.empty((32, 32, 3))
    lab[...] = (50 + 15 * np.tan(np.radians(ITA_IN_BIN[fst])), 10, 15)
    return Image.fromarray((np.clip(lab2rgb(lab), 0, 1) * 255).round().astype(np.uint8))


def test_fidelity_counts_samples_within_one_type_of_their_row():
    # row FST I asks three times and gets I, I and IV (3 types off); row II gets III (one off: counts)
    rows = [[skin(1), skin(1), skin(4)], [skin(3)], [skin(3)], [skin(4)], [skin(5)], [skin(6)]]
    samples = FstSamples(rows)
    assert samples.fidelity() == 7 / 8
    all_dark = FstSamples([[skin(6)] for _ in range(6)])
    assert all_dark.fidelity() == 2 / 6  # only rows V and VI are within one type of VI
    assert samples.grid().size == (LABEL_WIDTH + 3 * 96, 6 * 96)
