"""The Fitzpatrick skin types (FST): their values, names, the unknown group, and nearness."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

FST_VALUES: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
# An image whose FST is unknown (no label, and the ITA estimate abstained): its own group, never a type.
FST_UNKNOWN = 0
FST_ROMAN: dict[int, str] = {1: "I", 2: "II", 3: "III", 4: "IV", 5: "V", 6: "VI"}


def within_one_type(estimated: Sequence[int], requested: Sequence[int]) -> NDArray[np.bool_]:
    """Per image: is the ITA-estimated FST within one type of the requested one?"""
    return np.abs(np.asarray(estimated) - np.asarray(requested)) <= 1
