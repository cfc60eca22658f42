"""Input profiles: computed from training inputs as documented, and live values checked against them."""

import json

import numpy as np
import pytest

from model.profile import (
    QUANTILES,
    SAMPLE_SIZE,
    InputRanges,
    bin_index,
    build_profile,
    ranges,
)

NAMES = ("metric1", "metric2")


def _matrix(rows: int = 5000) -> np.ndarray:
    rng = np.random.default_rng(7)
    dense = rng.uniform(0, 100, rows)
    sparse = np.where(rng.uniform(size=rows) < 0.9, 0.0, rng.integers(1, 50, rows))
    return np.column_stack([dense, sparse]).astype(np.float64)


def test_a_profile_holds_each_features_facts_and_is_plain_json():
    matrix = _matrix()
    profile = json.loads(json.dumps(build_profile(matrix, NAMES)))
    assert profile["rows"] == 5000 and set(profile["features"]) == set(NAMES)
    dense, sparse = profile["features"]["metric1"], profile["features"]["metric2"]
    assert dense["min"] == matrix[:, 0].min() and dense["max"] == matrix[:, 0].max()
    assert sparse["zero_share"] == pytest.approx(np.mean(matrix[:, 1] == 0))
    assert [q for q, _ in dense["quantiles"]] == list(QUANTILES)
    assert dense["quantiles"][4][1] == pytest.approx(np.median(matrix[:, 0]))
    assert len(dense["sample"]) == SAMPLE_SIZE and dense["sample"] == sorted(dense["sample"])


def test_bins_are_distinct_deciles_with_counted_shares():
    matrix = _matrix()
    sparse = build_profile(matrix, NAMES)["features"]["metric2"]
    edges, shares = sparse["bins"]["edges"], sparse["bins"]["shares"]
    assert edges == sorted(set(edges)) and edges[0] == 0.0  # the zeros get one bin of their own
    assert len(shares) == len(edges) + 1 and sum(shares) == pytest.approx(1.0)
    counted = np.bincount(bin_index(matrix[:, 1], edges), minlength=len(shares)) / len(matrix)
    assert shares == pytest.approx(counted.tolist())
    assert shares[0] == pytest.approx(np.mean(matrix[:, 1] == 0))


def test_bins_are_right_closed():
    assert bin_index(np.array([0.0, 0.5, 1.0, 1.5, 9.0]), [0.0, 1.0]).tolist() == [0, 1, 1, 2, 2]


def test_the_sample_is_the_same_rows_for_every_feature():
    matrix = np.column_stack([np.arange(10000.0), np.arange(10000.0) * 2])
    features = build_profile(matrix, NAMES)["features"]
    assert [2 * v for v in features["metric1"]["sample"]] == features["metric2"]["sample"]


def test_values_inside_the_range_make_no_warnings_at_all():
    limits = ranges(build_profile(_matrix(), NAMES), NAMES)
    low, high = limits.low, limits.high
    assert limits.warnings(np.array([[low[0], high[1]], [high[0], low[1]]])) is None


def test_each_value_outside_the_range_is_named_in_its_row():
    limits = InputRanges(NAMES, np.array([1.0, 0.0]), np.array([10.0, 5.0]))
    found = limits.warnings(np.array([[5.0, 1.0], [0.5, 7.0], [12.0, 5.0]]))
    assert found == [
        None,
        [
            "metric1 = 0.5 is below the training range (min 1)",
            "metric2 = 7 is above the training range (max 5)",
        ],
        ["metric1 = 12 is above the training range (max 10)"],
    ]


def test_one_row_is_judged_as_in_a_batch():
    # a single row is checked in plain Python: the same bounds, edges included, the same notes
    limits = InputRanges(NAMES, np.array([1.0, 0.0]), np.array([10.0, 5.0]))
    rows = [[1.0, 5.0], [10.0, 0.0], [np.nextafter(1.0, 0), 2.0], [3.0, np.nextafter(5.0, 6)],
            [0.5, 7.0], [np.nan, 1.0], [2.0, -0.0], [np.nan, 7.0], [np.inf, -np.inf], [1.0, 7.0], [10.0, -1.0]]  # fmt: skip
    batch = limits.warnings(np.array(rows))
    assert batch is not None
    for row, expected in zip(rows, batch, strict=True):
        assert limits.warnings(np.array([row])) == (None if expected is None else [expected])
    assert [limits.warnings(np.array([r])) is None for r in rows] == [
        True, True, False, False, False, True, True, False, False, False, False]  # fmt: skip


def test_an_empty_matrix_has_no_profile():
    with pytest.raises(ValueError, match="non-empty"):
        build_profile(np.zeros((0, 2)), NAMES)
