"""Loading the public CSV format: round trips through the writer, and clear errors."""

import gzip
import hashlib

import numpy as np
import pytest

from training import (
    DataNotFoundError,
    EmptyDatasetError,
    MalformedRowError,
    MissingColumnsError,
    NoFailuresError,
    TrainingError,
    generate_synthetic,
    load_dataset,
    write_dataset_csv,
)

HEADER = (
    "date,device,failure,metric1,metric2,metric3,metric4,metric5,metric6,metric7,metric8,metric9"
)
ROW_OK = "2015-01-01,AB000001,0,215630672,56,0,52,6,407438,0,0,7"
ROW_FAIL = "2015-01-02,AB000001,1,1,2,3,4,5,407500,7,7,9"


@pytest.fixture(scope="module")
def fleet():
    return generate_synthetic(devices=150, days=40, seed=11)


def write(tmp_path, *lines, name="data.csv"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="latin-1")
    return path


def assert_same_rows(left, right):
    for a, b in (
        (left.X, right.X),
        (left.y, right.y),
        (left.devices, right.devices),
        (left.dates, right.dates),
    ):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["fleet.csv", "fleet.csv.gz"])
def test_written_csv_loads_back_identically(tmp_path, fleet, name):
    path = write_dataset_csv(fleet, tmp_path / name)
    loaded = load_dataset(path)
    assert_same_rows(fleet, loaded)
    assert not loaded.synthetic


@pytest.mark.parametrize("name", ["fleet.csv", "fleet.csv.gz"])
def test_fingerprint_is_the_sha256_of_the_file_bytes(tmp_path, fleet, name):
    path = write_dataset_csv(fleet, tmp_path / name)
    fp = load_dataset(path).fingerprint
    assert fp.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (fp.rows, fp.failures, fp.source) == (len(fleet), int(fleet.y.sum()), name)
    assert (fp.date_from, fp.date_to) == (fleet.fingerprint.date_from, fleet.fingerprint.date_to)


def test_gzipped_output_is_byte_reproducible(tmp_path, fleet):
    first = write_dataset_csv(fleet, tmp_path / "a.csv.gz").read_bytes()
    assert write_dataset_csv(fleet, tmp_path / "b.csv.gz").read_bytes() == first


def test_written_file_has_the_public_header_and_metric8_copy(tmp_path, fleet):
    lines = gzip.decompress(write_dataset_csv(fleet, tmp_path / "f.csv.gz").read_bytes()).split(
        b"\n"
    )
    assert lines[0].decode() == HEADER
    fields = lines[1].decode().split(",")
    assert fields[9] == fields[10]


def test_gzip_is_detected_by_content_not_name(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(gzip.compress(f"{HEADER}\n{ROW_OK}\n{ROW_FAIL}\n".encode()))
    assert len(load_dataset(path)) == 2


def test_columns_are_found_by_name_in_any_order(tmp_path):
    header = "failure,device,date,metric9,metric7,metric6,metric5,metric4,metric3,metric2,metric1"
    path = write(tmp_path, header, "1,AB000001,2015-03-04,9,7,6,5,4,3,2,1")
    loaded = load_dataset(path)
    np.testing.assert_array_equal(loaded.X[0], [1, 2, 3, 4, 5, 6, 7, 9])
    assert loaded.y[0] == 1 and loaded.devices[0] == "AB000001"


def test_device_ids_with_non_ascii_bytes_are_read_as_latin1(tmp_path):
    path = tmp_path / "data.csv"
    path.write_bytes(f"{HEADER}\n{ROW_FAIL}\n".replace("AB000001", "W1F0\xe9ABC").encode("latin-1"))
    assert load_dataset(path).devices[0] == "W1F0\u00e9ABC"


def test_blank_lines_are_not_rows(tmp_path):
    assert len(load_dataset(write(tmp_path, HEADER, ROW_OK, "", ROW_FAIL, ""))) == 2


def test_missing_columns_are_named(tmp_path):
    path = write(tmp_path, "date,device,failure,metric1,metric2", "2015-01-01,A,1,1,2")
    with pytest.raises(MissingColumnsError) as caught:
        load_dataset(path)
    assert caught.value.missing == [
        "metric3",
        "metric4",
        "metric5",
        "metric6",
        "metric7",
        "metric9",
    ]
    assert caught.value.code == "DATA_MISSING_COLUMNS"
    assert "metric9" in str(caught.value)


@pytest.mark.parametrize(
    ("bad_row", "reason"),
    [
        ("2015-01-03,AB000002,0,12x,0,0,0,1,1,0,0,0", "metric1"),
        ("2015-01-03,AB000002,0,1,0,0,0,1,1,0,0", "expected 12 fields"),
        ("2015-01-03,AB000002,2,1,0,0,0,1,1,0,0,0", "failure"),
        ("2015-13-03,AB000002,0,1,0,0,0,1,1,0,0,0", "date"),
        ("2015-01,AB000002,0,1,0,0,0,1,1,0,0,0", "date"),
        ("2015-01-03,AB000002,0,1,-5,0,0,1,1,0,0,0", "metric2"),
        ("2015-01-03,AB000002,0,1,0,0,0,1,nan,0,0,0", "metric6"),
        ("2015-01-03,,0,1,0,0,0,1,1,0,0,0", "device"),
    ],
)
def test_unparsable_row_is_reported_with_its_line_number(tmp_path, bad_row, reason):
    path = write(tmp_path, HEADER, ROW_OK, ROW_FAIL, bad_row, ROW_OK)
    with pytest.raises(MalformedRowError) as caught:
        load_dataset(path)
    assert caught.value.line == 4
    assert str(caught.value).startswith("line 4:") and reason in str(caught.value)
    assert caught.value.code == "DATA_MALFORMED_ROW"


def test_line_numbers_count_blank_lines(tmp_path):
    path = write(tmp_path, HEADER, "", ROW_FAIL, "2015-01-03,X,0,a,0,0,0,1,1,0,0,0")
    with pytest.raises(MalformedRowError) as caught:
        load_dataset(path)
    assert caught.value.line == 4


def test_empty_file_is_rejected(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(EmptyDatasetError, match="empty file"):
        load_dataset(path)


def test_empty_gzip_file_is_rejected(tmp_path):
    path = tmp_path / "empty.csv.gz"
    path.write_bytes(gzip.compress(b""))
    with pytest.raises(EmptyDatasetError):
        load_dataset(path)


def test_header_without_rows_is_rejected(tmp_path):
    with pytest.raises(EmptyDatasetError, match="no data rows"):
        load_dataset(write(tmp_path, HEADER))


def test_data_without_failures_is_rejected(tmp_path):
    with pytest.raises(NoFailuresError) as caught:
        load_dataset(write(tmp_path, HEADER, ROW_OK))
    assert caught.value.code == "DATA_NO_FAILURES"


def test_missing_file_is_a_training_error(tmp_path):
    with pytest.raises(DataNotFoundError) as caught:
        load_dataset(tmp_path / "absent.csv")
    assert isinstance(caught.value, TrainingError) and caught.value.code == "DATA_NOT_FOUND"


def test_corrupt_gzip_is_a_training_error(tmp_path):
    path = tmp_path / "bad.csv.gz"
    path.write_bytes(gzip.compress(f"{HEADER}\n{ROW_OK}\n".encode())[:30])
    with pytest.raises(TrainingError) as caught:
        load_dataset(path)
    assert caught.value.code == "DATA_UNREADABLE"
