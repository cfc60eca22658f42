"""predictColumns' input through the one telemetry decoder and the use case's checks: the same
telemetry as the rows it lays out, its type errors located, its shape refused with named lists."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from graph.errors import ErrorCode, FailcastError
from graph.runtime.telemetry import (
    INPUT_FIELDS,
    TelemetryTypeError,
    decode_columns,
    decode_telemetry,
)
from graph.runtime.usecases import Layout, check_columns, check_telemetry
from model import DEVICE_FEATURES

ROWS = [
    {"deviceId": "D-1", "metric1": 215630672, "metric2": 56, "metric3": 0, "metric4": 52,
     "metric5": 6, "metric6": 407438, "metric7": 0, "metric9": 7},
    {"deviceId": None, "metric1": 1.5, "metric2": 0, "metric3": 3, "metric4": 0, "metric5": 12,
     "metric6": 2**70, "metric7": 1e30, "metric9": 0.25},
    {"deviceId": "D-3", "observedAt": "2026-11-28T09:30:00+02:00", "metric1": 0, "metric2": 1,
     "metric3": 2, "metric4": 3, "metric5": 4, "metric6": 5, "metric7": 6, "metric9": 7},
]  # fmt: skip


def _columns(rows: list[dict]) -> dict[str, list]:
    """The rows laid out as PredictColumnsInput: one list per field any row gives."""
    given = [name for name in INPUT_FIELDS if any(name in row for row in rows)]
    return {name: [row.get(name) for row in rows] for name in given}


def test_columns_decode_to_the_telemetry_of_their_rows():
    columns = decode_columns(_columns(ROWS))
    assert columns.lengths() == dict.fromkeys(INPUT_FIELDS, 3) and columns.rows == 3
    decoded, expected = columns.telemetry(), decode_telemetry(ROWS)
    assert decoded.matrix.dtype == np.float64 and decoded.matrix.flags.c_contiguous
    np.testing.assert_array_equal(decoded.matrix, expected.matrix)
    assert decoded.device_ids == expected.device_ids
    assert decoded.observed_at == expected.observed_at
    assert decoded.observed_at[2] == datetime(2026, 11, 28, 7, 30, tzinfo=UTC)


def test_optional_lists_left_out_or_all_null_are_no_list():
    plain = [{k: v for k, v in row.items() if k not in ("deviceId", "observedAt")} for row in ROWS]
    columns = decode_columns(_columns(plain))
    assert columns.device_ids is None and columns.observed_at is None
    assert list(columns.lengths()) == list(DEVICE_FEATURES)
    telemetry = columns.telemetry()
    assert telemetry.device_ids == [None] * 3 and telemetry.observed_at is None
    nulls = decode_columns({**_columns(plain), "deviceId": None, "observedAt": [None] * 3})
    assert nulls.telemetry().observed_at is None
    assert decode_telemetry(plain).observed_at is None


@pytest.mark.parametrize(
    ("change", "field", "item"),
    [
        ({"metric3": [0, "1", 2]}, "metric3", 1),
        ({"metric3": [0, 1, True]}, "metric3", 2),
        ({"metric5": [None, 1, 2]}, "metric5", 0),
        ({"metric6": [0, 10**400, 2]}, "metric6", 1),  # beyond a double
        ({"metric1": 5}, "metric1", 0),  # not a list
        ({"metric9": None}, "metric9", 0),
        ({"deviceId": ["a", 7, "c"]}, "deviceId", 1),
        ({"deviceId": "a"}, "deviceId", 0),
        ({"observedAt": [None, "yesterday", None]}, "observedAt", 1),
        ({"observedAt": [None, None, 5]}, "observedAt", 2),
        ({"metric8": [0, 0, 0]}, "metric8", 0),
    ],
)
def test_ill_typed_columns_name_the_list_and_the_row(change, field, item):
    with pytest.raises(TelemetryTypeError) as raised:
        decode_columns({**_columns(ROWS), **change})
    assert (raised.value.field, raised.value.item) == (field, item)


def test_columns_must_be_an_object():
    with pytest.raises(TelemetryTypeError):
        decode_columns([_columns(ROWS)])


def _refusal(lengths: dict[str, int], limit: int = 1000) -> tuple[str, str]:
    with pytest.raises(FailcastError) as raised:
        check_columns(lengths, limit)
    assert raised.value.code is ErrorCode.BAD_USER_INPUT
    assert raised.value.field is not None
    return raised.value.field, raised.value.message


def test_columns_must_hold_one_value_per_row_within_the_batch_limit():
    check_columns(dict.fromkeys(INPUT_FIELDS, 1000), 1000)
    check_columns(dict.fromkeys(DEVICE_FEATURES, 1), 1000)
    uneven = {**dict.fromkeys(DEVICE_FEATURES, 10), "metric4": 9}
    assert _refusal(uneven) == (
        "input.metric4",
        "input.metric4 holds 9 values and input.metric1 10: every list must hold one value per row",
    )
    assert _refusal({"deviceId": 11, **dict.fromkeys(DEVICE_FEATURES, 10)})[0] == "input.deviceId"
    over = dict.fromkeys(DEVICE_FEATURES, 1001)
    assert _refusal(over) == (
        "input.metric1",
        "input.metric1 must hold 1..1000 values (one per row), got 1001",
    )
    assert _refusal(dict.fromkeys(DEVICE_FEATURES, 5), limit=4)[0] == "input.metric1"
    assert _refusal(dict.fromkeys(DEVICE_FEATURES, 0))[1].endswith("got 0")
    with pytest.raises(ValueError, match="differ in length"):
        decode_columns({**_columns(ROWS), "metric2": [1, 2]}).telemetry()


def test_a_bad_value_is_named_by_its_list_and_row():
    late = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    cases = [
        ({"metric3": [0, 1, -2]}, "input.metric3.2"),
        ({"metric7": [0, float("nan"), 1]}, "input.metric7.1"),
        ({"deviceId": ["a", "", "c"]}, "input.deviceId.1"),
        ({"observedAt": [None, late, None]}, "input.observedAt.1"),
    ]
    for change, where in cases:
        telemetry = decode_columns({**_columns(ROWS), **change}).telemetry()
        with pytest.raises(FailcastError) as raised:
            check_telemetry(telemetry, Layout.COLUMNS)
        assert raised.value.field == where
        with pytest.raises(FailcastError) as rows:  # the same rule, named as predictBatch does
            check_telemetry(telemetry, Layout.ROWS)
        row = where.rsplit(".", 1)[1]
        assert rows.value.field == f"inputs.{row}.{where.split('.')[1]}"


def test_layouts_name_places_as_their_operations_do():
    assert Layout.ONE.where(0, "metric1") == "input.metric1"
    assert Layout.ROWS.where(3, "metric1") == "inputs.3.metric1"
    assert Layout.COLUMNS.where(3, "metric1") == "input.metric1.3"
