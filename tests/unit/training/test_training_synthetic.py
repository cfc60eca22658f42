"""The synthetic fleet: shape, determinism, failure rate and the shapes of SOURCE.md."""

import time

import numpy as np
import pytest

from model import DEVICE_FEATURES
from training import InvalidOptionsError, generate_synthetic


@pytest.fixture(scope="module")
def fleet():
    return generate_synthetic(devices=1200, days=300, seed=3)


def column(dataset, name):
    return dataset.X[:, DEVICE_FEATURES.index(name)]


def test_arrays_have_the_dataset_shapes(fleet):
    n = len(fleet)
    assert fleet.X.shape == (n, len(DEVICE_FEATURES)) and fleet.X.dtype == np.float64
    assert fleet.y.shape == (n,) and set(np.unique(fleet.y)) == {0, 1}
    assert fleet.devices.shape == (n,) and fleet.dates.dtype == np.dtype("datetime64[D]")
    assert fleet.feature_names == DEVICE_FEATURES


def test_every_device_reports_and_ids_are_synthetic(fleet):
    ids = np.unique(fleet.devices)
    assert ids.size == 1200
    assert all(len(i) == 8 and i.startswith("SY") for i in ids)


def test_same_seed_gives_identical_data():
    a, b = generate_synthetic(200, 60, seed=5), generate_synthetic(200, 60, seed=5)
    for left, right in ((a.X, b.X), (a.y, b.y), (a.devices, b.devices), (a.dates, b.dates)):
        np.testing.assert_array_equal(left, right)
    assert a.fingerprint == b.fingerprint


def test_another_seed_gives_other_data_and_fingerprint():
    a, b = generate_synthetic(200, 60, seed=5), generate_synthetic(200, 60, seed=6)
    assert a.fingerprint.sha256 != b.fingerprint.sha256
    assert len(a) != len(b) or not np.array_equal(a.X, b.X)


def test_fingerprint_names_synthetic_parameters(fleet):
    fp = fleet.fingerprint
    assert fleet.synthetic
    assert fp.sha256.startswith("synthetic:") and len(fp.sha256) == len("synthetic:") + 64
    assert fp.rows == len(fleet) and fp.failures == int(fleet.y.sum())
    assert fp.source == "synthetic(devices=1200,days=300,seed=3)"
    assert str(fp.date_from) == "2015-01-01" and fp.date_to <= fp.date_from.replace(
        month=10, day=27
    )


def test_failure_rate_is_about_one_in_a_thousand(fleet):
    assert 0.0008 <= fleet.y.mean() <= 0.0012


def test_each_failing_device_fails_once_on_its_last_day(fleet):
    for device in np.unique(fleet.devices[fleet.y == 1]):
        rows = fleet.devices == device
        assert fleet.y[rows].sum() == 1
        assert fleet.dates[rows & (fleet.y == 1)][0] == fleet.dates[rows].max()


def test_devices_drop_out_over_time(fleet):
    _, per_day = np.unique(fleet.dates, return_counts=True)
    assert per_day[:10].mean() > 3 * per_day[-10:].mean()


def test_zero_inflated_metrics_have_the_published_zero_shares(fleet):
    shares = {"metric2": 0.95, "metric3": 0.93, "metric4": 0.93, "metric7": 0.99, "metric9": 0.78}
    for name, share in shares.items():
        assert abs(np.mean(column(fleet, name) == 0) - share) < 0.03, name


def test_value_ranges_match_the_public_data(fleet):
    assert column(fleet, "metric1").min() >= 0 and column(fleet, "metric1").max() < 2.44e8
    assert column(fleet, "metric5").min() >= 1 and column(fleet, "metric5").max() <= 98
    values = fleet.X
    assert np.all(values == np.floor(values)) and values.min() >= 0


def test_metric6_never_decreases_within_a_device(fleet):
    order = np.lexsort((fleet.dates, fleet.devices))
    devices, metric6 = fleet.devices[order], column(fleet, "metric6")[order]
    same_device = devices[1:] == devices[:-1]
    assert np.all(np.diff(metric6)[same_device] >= 0)


def test_failure_rows_have_raised_metric2_4_7(fleet):
    failed = fleet.y == 1
    for name in ("metric2", "metric4", "metric7"):
        assert column(fleet, name)[failed].mean() > 5 * column(fleet, name)[~failed].mean(), name


def test_rows_are_sorted_by_date_then_device(fleet):
    assert np.all(np.diff(fleet.dates.astype(np.int64)) >= 0)


def test_hundred_thousand_rows_take_well_under_a_second():
    start = time.perf_counter()
    dataset = generate_synthetic(devices=2000, days=120, seed=1)
    assert len(dataset) > 90_000
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize(("devices", "days"), [(1, 100), (100, 1)])
def test_degenerate_sizes_are_rejected(devices, days):
    with pytest.raises(InvalidOptionsError):
        generate_synthetic(devices, days)
