"""Horizon labels: a row is positive when its device fails within N days on or after it."""

import numpy as np
import pytest

from training import InvalidOptionsError, generate_synthetic
from training.dataset import make_dataset
from training.labels import horizon_labels, with_horizon


def fleet_of(rows):
    """A dataset from (device, ISO date, failure) rows; counters are zeros."""
    devices = np.array([r[0] for r in rows])
    dates = np.array([r[1] for r in rows], dtype="datetime64[D]")
    y = np.array([r[2] for r in rows], dtype=np.int64)
    X = np.zeros((len(rows), 8))
    return make_dataset(X, y, devices, dates, sha256="test", source="test")


# Device A fails on 01-10 and reports with a gap (01-04..01-06 missing); B fails on 01-03;
# C never fails; D reports on after its failure (as 5 devices of the original data did).
ROWS = [
    ("A", "2015-01-01", 0), ("A", "2015-01-02", 0), ("A", "2015-01-03", 0),
    ("A", "2015-01-07", 0), ("A", "2015-01-08", 0), ("A", "2015-01-09", 0),
    ("A", "2015-01-10", 1),
    ("B", "2015-01-01", 0), ("B", "2015-01-02", 0), ("B", "2015-01-03", 1),
    ("C", "2015-01-01", 0), ("C", "2015-01-09", 0), ("C", "2015-01-10", 0),
    ("D", "2015-01-05", 0), ("D", "2015-01-06", 1), ("D", "2015-01-07", 0),
    ("D", "2015-01-08", 0),
]  # fmt: skip


def positives(dataset, labels):
    return sorted(
        (str(d), str(t)) for d, t, label in zip(dataset.devices, dataset.dates, labels) if label
    )


def test_one_day_is_the_failure_event_itself():
    fleet = fleet_of(ROWS)
    np.testing.assert_array_equal(horizon_labels(fleet, 1), fleet.y)
    synthetic = generate_synthetic(devices=300, days=60, seed=5)
    np.testing.assert_array_equal(horizon_labels(synthetic, 1), synthetic.y)


def test_a_horizon_counts_calendar_days_before_the_failure_and_never_after():
    fleet = fleet_of(ROWS)
    assert positives(fleet, horizon_labels(fleet, 3)) == [
        ("A", "2015-01-08"), ("A", "2015-01-09"), ("A", "2015-01-10"),
        ("B", "2015-01-01"), ("B", "2015-01-02"), ("B", "2015-01-03"),
        ("D", "2015-01-05"), ("D", "2015-01-06"),
    ]  # fmt: skip
    # 7 days: A's 01-03 is 7 days before its failure (out), 01-07 is 3 days before (in), and
    # the gap holds no rows to label.
    seven = positives(fleet, horizon_labels(fleet, 7))
    assert [t for d, t in seven if d == "A"] == [
        "2015-01-07", "2015-01-08", "2015-01-09", "2015-01-10"
    ]  # fmt: skip
    assert [t for d, t in seven if d == "D"] == ["2015-01-05", "2015-01-06"]
    assert all(d != "C" for d, _ in seven)


def test_rows_in_any_order_get_the_same_labels():
    fleet = fleet_of(ROWS)
    shuffled_rows = [ROWS[i] for i in np.random.default_rng(0).permutation(len(ROWS))]
    shuffled = fleet_of(shuffled_rows)
    for days in (1, 2, 7, 30):
        assert positives(shuffled, horizon_labels(shuffled, days)) == positives(
            fleet, horizon_labels(fleet, days)
        )


def test_a_device_failing_twice_is_positive_before_each_failure():
    fleet = fleet_of([
        ("E", "2015-01-01", 0), ("E", "2015-01-02", 1), ("E", "2015-01-03", 0),
        ("E", "2015-01-04", 0), ("E", "2015-01-05", 1),
    ])  # fmt: skip
    assert horizon_labels(fleet, 2).tolist() == [1, 1, 0, 1, 1]


def test_with_horizon_relabels_and_keeps_the_source_fingerprint():
    fleet = fleet_of(ROWS)
    week = with_horizon(fleet, 7)
    assert week.fingerprint == fleet.fingerprint and week.y.sum() > fleet.y.sum()
    assert week.X is fleet.X and week.devices is fleet.devices


@pytest.mark.parametrize("days", [0, -1, 366])
def test_horizons_outside_one_day_to_a_year_are_refused(days):
    with pytest.raises(InvalidOptionsError, match="horizon_days"):
        horizon_labels(fleet_of(ROWS), days)
