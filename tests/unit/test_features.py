"""The value checks of every input row: the same verdicts for a few rows (checked in plain
Python) and for many (checked with numpy)."""

import math

import numpy as np
import pytest

from model.features import DEVICE_FEATURES, MAX_VALUE, find_invalid_values

BAD = [
    (math.nan, "must be a finite number"),
    (math.inf, "must be a finite number"),
    (-math.inf, "must be a finite number"),
    (-1e-300, "must be >= 0"),
    (float(np.nextafter(MAX_VALUE, math.inf)), f"must be <= {MAX_VALUE:.7g}"),
]


@pytest.mark.parametrize("rows", [1, 8, 9, 1000])
@pytest.mark.parametrize(("value", "reason"), BAD)
def test_a_bad_value_is_named_however_many_rows(rows, value, reason):
    matrix = np.full((rows, len(DEVICE_FEATURES)), 3.0)
    matrix[-1, 5] = value
    (problem,) = find_invalid_values(matrix, DEVICE_FEATURES)
    assert (problem.row, problem.field, problem.reason) == (rows - 1, "metric6", reason)


@pytest.mark.parametrize("rows", [1, 8, 9, 1000])
def test_the_bounds_themselves_are_valid(rows):
    matrix = np.zeros((rows, len(DEVICE_FEATURES)))
    matrix[-1, :] = MAX_VALUE
    assert find_invalid_values(matrix, DEVICE_FEATURES) == []
