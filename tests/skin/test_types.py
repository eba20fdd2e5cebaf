import numpy as np

from fairaug.skin.types import within_one_type


def test_within_one_type_is_a_tolerance_of_one_fitzpatrick_type():
    np.testing.assert_array_equal(within_one_type([1, 3, 6, 4], [2, 5, 6, 6]), [True, False, True, False])
