"""Device-grouped splits: disjoint devices, failures on every side."""

import numpy as np
import pytest

from training import InsufficientDataError, generate_synthetic
from training.dataset import make_dataset
from training.splits import grouped_folds, split_devices


@pytest.fixture(scope="module")
def fleet():
    return generate_synthetic(devices=600, days=120, seed=2)


@pytest.fixture(scope="module")
def split(fleet):
    return split_devices(fleet, seed=0)


def devices(dataset, rows):
    return set(dataset.devices[rows].tolist())


def test_every_row_lands_in_exactly_one_split(fleet, split):
    rows = np.concatenate([split.train, split.validation, split.test])
    np.testing.assert_array_equal(np.sort(rows), np.arange(len(fleet)))


def test_no_device_is_on_two_sides(fleet, split):
    train, validation, test = (
        devices(fleet, r) for r in (split.train, split.validation, split.test)
    )
    assert not train & validation and not train & test and not validation & test


def test_every_side_has_failures(fleet, split):
    sizes = split.sizes(fleet)
    assert all(side["failures"] > 0 for side in sizes.values())


def test_test_and_validation_hold_about_a_fifth_of_devices_each(fleet, split):
    sizes = split.sizes(fleet)
    for side in ("test", "validation"):
        assert 0.15 <= sizes[side]["devices"] / 600 <= 0.25


def test_split_is_deterministic_given_the_seed(fleet, split):
    np.testing.assert_array_equal(split_devices(fleet, 0).test, split.test)
    assert not np.array_equal(split_devices(fleet, 1).test, split.test)


def test_grouped_folds_hold_out_disjoint_devices_with_failures(fleet):
    folds = grouped_folds(fleet, 5, seed=0)
    held = [devices(fleet, test) for _, test in folds]
    assert sum(len(h) for h in held) == len(set().union(*held)) == 600
    for train, test in folds:
        assert not devices(fleet, train) & devices(fleet, test)
        assert fleet.y[test].sum() > 0


def test_folds_within_rows_stay_within_them(fleet, split):
    within = split.train
    for train, test in grouped_folds(fleet, 3, 0, within):
        assert set(train.tolist()) | set(test.tolist()) <= set(within.tolist())


def test_too_few_failing_devices_is_a_clear_error(fleet):
    y = np.zeros_like(fleet.y)
    y[np.flatnonzero(fleet.y)[:3]] = 1
    few = make_dataset(fleet.X, y, fleet.devices, fleet.dates, sha256="x", source="few")
    with pytest.raises(InsufficientDataError, match="at least 5 failing devices"):
        split_devices(few, 0)
