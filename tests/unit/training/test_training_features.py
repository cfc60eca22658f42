"""History features of a Dataset: model.history's definition per device, in the dataset's order."""

import numpy as np
import pytest

from model import DEVICE_FEATURES
from model.history import HistoryFeatures, history_feature_names
from training import generate_synthetic
from training.features import (
    COUNTERS,
    FEATURE_SETS,
    depth_of,
    feature_table,
    history_matrix,
)

NAMES = (*DEVICE_FEATURES, *history_feature_names(("delta", "max3", "zero_run")))


@pytest.fixture(scope="module")
def fleet():
    # The generator writes rows sorted by date, then device, as the public file is.
    return generate_synthetic(devices=80, days=40, seed=11)


def by_device(dataset, names):
    """The definition, spelled out: each device's rows in date order through of_device."""
    features = HistoryFeatures(names)
    out = {}
    for device in np.unique(dataset.devices):
        rows = np.flatnonzero(dataset.devices == device)
        rows = rows[np.argsort(dataset.dates[rows], kind="stable")]
        computed = features.of_device(dataset.dates[rows], dataset.X[rows])
        out.update(zip(rows.tolist(), computed, strict=True))
    return np.array([out[i] for i in range(len(dataset))])


def test_each_row_gets_its_devices_history_features(fleet):
    np.testing.assert_array_equal(history_matrix(fleet, NAMES), by_device(fleet, NAMES))


def test_rows_in_any_order_get_the_same_features(fleet):
    order = np.random.default_rng(1).permutation(len(fleet))
    shuffled = fleet.subset(order)
    np.testing.assert_array_equal(
        history_matrix(shuffled, NAMES), history_matrix(fleet, NAMES)[order]
    )


def test_a_devices_first_row_has_no_history(fleet):
    matrix = history_matrix(fleet, NAMES)
    first = np.unique(fleet.devices, return_index=True)[1]  # rows sorted by date: first seen
    deltas = [NAMES.index(f"{m}_delta") for m in DEVICE_FEATURES]
    assert np.all(matrix[np.ix_(first, deltas)] == 0)


def test_counters_alone_are_the_columns_as_they_are(fleet):
    np.testing.assert_array_equal(history_matrix(fleet, DEVICE_FEATURES[::-1]), fleet.X[:, ::-1])


def test_a_feature_table_holds_every_set_and_selects_each(fleet):
    table = feature_table(fleet, list(FEATURE_SETS.values()))
    for names in FEATURE_SETS.values():
        np.testing.assert_array_equal(table.columns(names), history_matrix(fleet, names))


def test_candidate_sets_start_from_the_counters_and_say_how_far_back_they_read():
    assert FEATURE_SETS[COUNTERS] == DEVICE_FEATURES and depth_of(DEVICE_FEATURES) == 0
    for names in FEATURE_SETS.values():
        assert names[: len(DEVICE_FEATURES)] == DEVICE_FEATURES
        assert depth_of(names) == HistoryFeatures(names).depth
