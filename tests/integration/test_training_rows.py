"""Training rows read from stored predictions and outcomes (`failcast train --from-database`).

A synthetic fleet is stored as predictions (one per device and day, observed at noon UTC) with
its failures recorded as outcomes, plus what a real service meets: a device-day predicted
twice (earlier, later, and at the same time), predictions without a device id, outcomes saying
"not failed" and outcomes of days nothing was predicted on. The dataset read back must be the
fleet itself, sorted by device and day, on SQLite and PostgreSQL alike.
"""

from datetime import UTC, date, datetime, time
from pathlib import Path

import numpy as np
import pytest
from support import seed_predictions

from failcast.cli import main
from model import DEVICE_FEATURES
from persistence import ModelVersionRepository, session_scope
from persistence.outcomes import OutcomeRecord, upsert_outcomes
from persistence.trainingset import TrainingBatch, training_rows
from training import (
    EmptyDatasetError,
    InvalidOptionsError,
    NoFailuresError,
    TrainOptions,
    generate_synthetic,
)
from training.database import database_source, load_database_dataset, rows_digest
from training.options import validate_options
from training.trainer import load_training_data

NOON = time(12, 0)
RECORDED = datetime(2025, 1, 1, tzinfo=UTC)


def _at(day: np.datetime64, clock: time = NOON) -> datetime:
    return datetime.combine(date.fromisoformat(str(day)), clock, tzinfo=UTC)


def _store(engine, version_id, devices, times, X):
    """Predictions of these devices, observed then, with these metric rows (one request)."""
    rows = [(d if d is None else str(d), t, 0.1) for d, t in zip(devices, times, strict=True)]
    metrics = {name: X[:, j].tolist() for j, name in enumerate(DEVICE_FEATURES)}
    seed_predictions(engine, version_id, rows, metrics=metrics)


def _outcomes(engine, rows):
    records = [OutcomeRecord(device, failed, at, RECORDED) for device, at, failed in rows]
    with engine.begin() as connection:
        upsert_outcomes(connection, records)


def _sorted(devices, dates, X, y):
    order = np.lexsort((dates, devices))
    return devices[order], dates[order], X[order], y[order]


@pytest.fixture(scope="module")
def fleet():
    return generate_synthetic(120, 20, seed=11, failure_rate=0.02)


@pytest.fixture
def stored_fleet(db_engine, active_model, fleet):
    """The fleet stored, with duplicates and noise; returns the rows expected back."""
    engine, version = db_engine, active_model.id
    X = fleet.X.copy()
    # Stored in two requests, the second half first: storage order must not matter.
    half = len(fleet) // 2
    for part in (slice(half, None), slice(0, half)):
        times = [_at(d) for d in fleet.dates[part]]
        _store(engine, version, fleet.devices[part], times, fleet.X[part])
    # Row 0's device-day predicted again earlier that day: dropped. Row 1's again later the
    # same UTC day (its last microsecond): wins. Row 2's again at the same time: the one
    # stored later (higher id) wins.
    other = fleet.X[:3] + 1000.0
    late = _at(fleet.dates[1], time(23, 59, 59, 999999))
    times = [_at(fleet.dates[0], time(1)), late, _at(fleet.dates[2])]
    _store(engine, version, fleet.devices[:3], times, other)
    X[1], X[2] = other[1], other[2]
    # The next day's first moment is another day (and the device's next row, if any, wins it).
    _store(engine, version, [None, None], [_at(fleet.dates[0]), late], other[:2])
    failed = fleet.y == 1
    outcomes = [
        (str(d), _at(t, time(0)), True)
        for d, t in zip(fleet.devices[failed], fleet.dates[failed], strict=True)
    ]
    outcomes += [(str(fleet.devices[i]), _at(fleet.dates[i], time(6)), False) for i in range(5)]
    outcomes += [("NEVER-PREDICTED", _at(fleet.dates[0]), True)]
    _outcomes(engine, outcomes)
    return _sorted(fleet.devices, fleet.dates, X, fleet.y)


def test_one_row_per_device_day_the_latest_wins_labeled_by_its_outcome(
    db_engine, stored_fleet, fleet
):
    devices, dates, X, y = stored_fleet
    data = load_database_dataset(db_engine)
    np.testing.assert_array_equal(data.devices, devices)
    np.testing.assert_array_equal(data.dates, dates)
    np.testing.assert_array_equal(data.X, X)
    np.testing.assert_array_equal(data.y, y)
    assert data.dates.dtype == np.dtype("datetime64[D]") and data.X.dtype == np.float64
    fingerprint = data.fingerprint
    assert fingerprint.sha256 == "database:" + rows_digest(devices, dates, X, y)
    assert (fingerprint.rows, fingerprint.failures) == (len(fleet), int(fleet.y.sum()))
    assert fingerprint.date_from == date.fromisoformat(str(fleet.dates.min()))
    assert fingerprint.source == database_source(db_engine, None, None)
    selection = fingerprint.database
    assert selection is not None
    assert selection.predictions == len(fleet) + 3 and selection.duplicates_dropped == 3
    assert selection.devices == np.unique(fleet.devices).size
    assert selection.rows_without_outcome == len(fleet) - int(fleet.y.sum()) - 5
    assert selection.window_from is None and selection.window_to is None


def test_batches_of_any_size_read_the_same_rows(db_engine, stored_fleet):
    """A device-day's predictions may straddle batches: the last of them is still the one kept."""
    whole = TrainingBatch.joined(list(training_rows(db_engine, DEVICE_FEATURES)))
    assert len(whole) == len(stored_fleet[0]) and whole.stored.sum() == len(whole) + 3
    for size in (1, 2, 3, 7, 500):
        parts = list(training_rows(db_engine, DEVICE_FEATURES, batch=size))
        assert all(len(part) <= size for part in parts)
        joined = TrainingBatch.joined(parts)
        for name in ("devices", "days", "values", "failed", "recorded", "stored"):
            np.testing.assert_array_equal(getattr(joined, name), getattr(whole, name), name)


def test_the_window_is_observed_at_in_from_to(db_engine, stored_fleet):
    devices, dates, X, y = stored_fleet
    start, end = np.datetime64("2015-01-05"), np.datetime64("2015-01-12")
    data = load_database_dataset(db_engine, date(2015, 1, 5), date(2015, 1, 12))
    inside = (dates >= start) & (dates < end)
    np.testing.assert_array_equal(data.devices, devices[inside])
    np.testing.assert_array_equal(data.dates, dates[inside])
    np.testing.assert_array_equal(data.X, X[inside])
    np.testing.assert_array_equal(data.y, y[inside])
    assert data.fingerprint.source.endswith(" [2015-01-05..2015-01-12)")
    open_start = load_database_dataset(db_engine, None, date(2015, 1, 12))
    assert len(open_start) == int((dates < end).sum())
    assert open_start.fingerprint.database.window_to == date(2015, 1, 12)


def test_no_rows_no_failures_and_bad_dates_are_clear_errors(db_engine, active_model):
    with pytest.raises(EmptyDatasetError, match="no stored prediction with a device id"):
        load_database_dataset(db_engine)
    day = np.datetime64("2015-03-01")
    _store(db_engine, active_model.id, ["D1", "D2"], [_at(day), _at(day)], np.ones((2, 8)))
    with pytest.raises(EmptyDatasetError, match=r"observed in \[2016-01-01..\)"):
        load_database_dataset(db_engine, date(2016, 1, 1))
    _outcomes(db_engine, [("D1", _at(day), False)])
    with pytest.raises(
        NoFailuresError, match=r"none of the 2 device-days .* \(outcomes recorded: 1\)"
    ):
        load_database_dataset(db_engine)
    _outcomes(db_engine, [("D1", _at(day), True)])  # recorded again: now it failed
    assert load_database_dataset(db_engine).y.tolist() == [1, 0]
    with pytest.raises(InvalidOptionsError, match="must be before"):
        load_database_dataset(db_engine, date(2015, 3, 2), date(2015, 3, 2))
    with pytest.raises(InvalidOptionsError, match="needs the database"):
        load_training_data(TrainOptions(from_database=True), lambda _: None)  # no engine
    for wrong in (
        TrainOptions(from_database=True, data_path=Path(__file__)),
        TrainOptions(date_from=date(2015, 1, 1)),
        TrainOptions(from_database=True, date_from=date(2015, 2, 1), date_to=date(2015, 1, 1)),
    ):
        with pytest.raises(InvalidOptionsError):
            validate_options(wrong)


def test_the_source_names_the_database_without_its_password():
    import sqlalchemy as sa

    engine = sa.create_engine("postgresql+psycopg://alice:s3cret@db.example:5433/fc?password=x")
    source = database_source(engine, date(2015, 1, 1), None)
    assert source == "database:postgresql+psycopg://alice@db.example:5433/fc [2015-01-01..)"


def _failcast(db_url, monkeypatch, capsys, *args):
    """Run the `failcast` entry point in this process: (exit code, stdout, stderr)."""
    monkeypatch.setenv("FAILCAST_DATABASE_URL", db_url)
    try:
        code = main(list(args))
    except SystemExit as exit_:  # argparse's usage errors
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def test_failcast_train_from_database(
    db_url, db_engine, stored_fleet, tmp_path, monkeypatch, capsys
):
    code, out, err = _failcast(
        db_url, monkeypatch, capsys, "train", "--from-database", "--from", "2015-01-01",
        "--to", "2015-01-21", "--algorithm", "logistic_regression", "--report-dir", str(tmp_path),
    )  # fmt: skip
    assert code == 0, err
    assert "3 older predictions of a device-day dropped" in err
    assert "registered (not active)" in out
    with session_scope(db_engine) as session:
        row = ModelVersionRepository(session).get(out.split()[2])  # "model version NAME (..."
    devices, dates, X, y = stored_fleet
    assert row.data_sha256 == "database:" + rows_digest(devices, dates, X, y)
    assert row.data_rows == len(y) and row.data_failures == int(y.sum())
    assert row.data_source == database_source(db_engine, date(2015, 1, 1), date(2015, 1, 21))
    assert row.data_source.endswith(" [2015-01-01..2015-01-21)")
    assert row.lineage["data_origin"] == "database"
    database = row.lineage["data"]["database"]
    assert database["window_from"] == "2015-01-01" and database["window_to"] == "2015-01-21"
    assert database["duplicates_dropped"] == 3 and database["rows"] == len(y)
    assert row.lineage["options"]["from_database"] is True


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--from-database", "--from", "2015-02-30"], "'2015-02-30' is not a YYYY-MM-DD date"),
        (["--from-database", "--to", "2015-1-2"], "is not a YYYY-MM-DD date"),
        (["--from-database", "--data", "x.csv"], "not allowed with argument"),
        (["--from", "2015-01-01"], "date_from and date_to apply to from_database only"),
        (["--from-database", "--from", "2015-02-01", "--to", "2015-02-01"], "must be before"),
        (["--from-database"], "no stored prediction with a device id"),
    ],
)
def test_failcast_train_refuses_bad_windows_and_empty_databases(
    db_url, db_engine, monkeypatch, capsys, args, words
):
    code, _, err = _failcast(db_url, monkeypatch, capsys, "train", *args)
    assert code == 2 and words in err, err
