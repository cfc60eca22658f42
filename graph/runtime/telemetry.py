"""The one decoder of telemetry: `PredictInput` values, from GraphQL or from the REST body, and
`PredictColumnsInput` values (the same fields, one list each).

Callers hand mappings keyed by PredictInput's field names (`deviceId`, `metric1`...), one per row
(`decode_telemetry`) or one list per field (`decode_columns`); the decoder checks their types in
bulk and returns the values column by column. It checks types only; the values themselves
(finite, in range, a printable device id) are the use case's to check, and so is the shape of
columns (`usecases.check_columns`), so every path refuses a bad value with the same error.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from dateutil.parser import isoparse

from model import DEVICE_FEATURES

# PredictInput's fields, as clients name them
INPUT_FIELDS = ("deviceId", "observedAt", *DEVICE_FEATURES)
_KNOWN = frozenset(INPUT_FIELDS)
_NUMBERS = frozenset({int, float})
_DEVICE_IDS = frozenset({str, type(None)})


@dataclass(frozen=True)
class Telemetry:
    """Telemetry of one or more devices: row i of `matrix` (DEVICE_FEATURES order) is device i."""

    matrix: np.ndarray
    device_ids: list[str | None]
    observed_at: list[datetime | None] | None = None  # None: no row gave one

    def __len__(self) -> int:
        return len(self.device_ids)


class TelemetryTypeError(Exception):
    """A value of the wrong type, a missing or an unknown field; `item` and `field` say where."""

    def __init__(self, item: int, field: str, message: str) -> None:
        super().__init__(message)
        self.item, self.field, self.message = item, field, message


def decode_telemetry(items: Sequence[Mapping[str, Any]]) -> Telemetry:
    """Telemetry from mappings keyed by PredictInput's fields; TelemetryTypeError when ill-typed."""
    try:
        values = [item[name] for item in items for name in DEVICE_FEATURES]
        device_ids = [item.get("deviceId") for item in items]
    except (TypeError, KeyError, AttributeError):
        raise _first_problem(items) from None
    if not set(map(type, values)) <= _NUMBERS or not set(map(type, device_ids)) <= _DEVICE_IDS:
        raise _first_problem(items)
    if not all(item.keys() <= _KNOWN for item in items):
        raise _first_problem(items)
    try:
        matrix = np.array(values, dtype=float).reshape(len(items), len(DEVICE_FEATURES))
    except OverflowError:  # an integer beyond a double
        raise _first_problem(items) from None
    return Telemetry(matrix, device_ids, _observed(items))


def _observed(items: Sequence[Mapping[str, Any]]) -> list[datetime | None] | None:
    """The observation times, parsed as the GraphQL DateTime scalar parses them."""
    given = [item.get("observedAt") for item in items]
    if all(value is None for value in given):
        return None
    return _times(given)


def _times(given: Sequence[Any]) -> list[datetime | None]:
    """Times (or None) parsed as the GraphQL DateTime scalar parses them; TelemetryTypeError
    naming the index of the first value that is not one."""
    found: list[datetime | None] = []
    for index, value in enumerate(given):
        if value is None or isinstance(value, datetime):
            found.append(value)
            continue
        try:
            found.append(isoparse(value) if isinstance(value, str) else _not_a_time(value))
        except ValueError:
            message = f"observedAt must be an ISO 8601 date and time, got {str(value)[:40]!r}"
            raise TelemetryTypeError(index, "observedAt", message) from None
    return found


def _not_a_time(value: Any) -> datetime:
    raise ValueError(f"not a string: {type(value).__name__}")


def _first_problem(items: Sequence[Any]) -> TelemetryTypeError:
    """The first ill-typed value, for the error message (only run once decoding failed)."""
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            return TelemetryTypeError(index, "", "must be an object of telemetry fields")
        for name in DEVICE_FEATURES:
            problem = _number_problem(item.get(name))
            if problem:
                return TelemetryTypeError(index, name, f"{name} {problem}")
        device = item.get("deviceId")
        if device is not None and not isinstance(device, str):
            return TelemetryTypeError(index, "deviceId", "deviceId must be a string")
        observed = item.get("observedAt")
        if observed is not None and not isinstance(observed, str | datetime):
            return TelemetryTypeError(index, "observedAt", "observedAt must be a string")
        unknown = sorted(set(item) - _KNOWN)
        if unknown:
            return TelemetryTypeError(index, unknown[0], f"{unknown[0]} is not a telemetry field")
    return TelemetryTypeError(0, "", "no telemetry")


def _number_problem(value: Any) -> str | None:
    if type(value) not in _NUMBERS:
        return "is required and must be a number"
    if isinstance(value, int) and abs(value) > 1.7e308:
        return "is beyond the range of a double"
    return None


@dataclass(frozen=True)
class Columns:
    """`PredictColumnsInput` values with their types checked: one float64 array per counter
    (DEVICE_FEATURES order) and the optional lists as given (None: not given). Their lengths are
    the use case's to check (`usecases.check_columns`) before `telemetry()` lines them up."""

    metrics: tuple[np.ndarray, ...]
    device_ids: list[str | None] | None = None
    observed_at: list[datetime | None] | None = None

    def lengths(self) -> dict[str, int]:
        """The length of every column given, keyed and ordered as INPUT_FIELDS."""
        found = {}
        if self.device_ids is not None:
            found["deviceId"] = len(self.device_ids)
        if self.observed_at is not None:
            found["observedAt"] = len(self.observed_at)
        found.update((n, len(c)) for n, c in zip(DEVICE_FEATURES, self.metrics, strict=True))
        return found

    @property
    def rows(self) -> int:
        """The rows the request asks for: its longest column (at least 1, as a batch counts)."""
        return column_rows(self.lengths().values())

    def telemetry(self) -> Telemetry:
        """Row i of every column as device i's telemetry (ValueError unless every column has
        the same length)."""
        count = len(self.metrics[0])
        if any(length != count for length in self.lengths().values()):
            raise ValueError("the columns differ in length")
        matrix = np.empty((count, len(DEVICE_FEATURES)), dtype=np.float64)
        for index, column in enumerate(self.metrics):
            matrix[:, index] = column
        device_ids = self.device_ids if self.device_ids is not None else [None] * count
        observed = self.observed_at
        if observed is not None and all(moment is None for moment in observed):
            observed = None  # as decode_telemetry: no row gave one
        return Telemetry(matrix, list(device_ids), observed)


def column_rows(lengths: Iterable[int]) -> int:
    """The rows columns of these lengths ask for: the longest (at least 1)."""
    return max(lengths, default=0) or 1


def decode_columns(columns: Mapping[str, Any]) -> Columns:
    """`PredictColumnsInput` values keyed by its fields (lists, or None where optional); each
    counter's list becomes one float64 array. TelemetryTypeError when ill-typed: `field` names
    the column, `item` the index of the first bad value in it."""
    if not isinstance(columns, Mapping):
        raise TelemetryTypeError(0, "", "must be an object of telemetry columns")
    unknown = sorted(set(columns) - _KNOWN)
    if unknown:
        raise TelemetryTypeError(0, unknown[0], f"{unknown[0]} is not a telemetry field")
    metrics = tuple(_number_column(name, columns.get(name)) for name in DEVICE_FEATURES)
    device_ids = columns.get("deviceId")
    if device_ids is not None:
        if type(device_ids) is not list:
            raise TelemetryTypeError(0, "deviceId", "deviceId must be a list of strings")
        if not set(map(type, device_ids)) <= _DEVICE_IDS:
            index = next(i for i, d in enumerate(device_ids) if type(d) not in _DEVICE_IDS)
            raise TelemetryTypeError(index, "deviceId", "deviceId must be a string")
    observed = columns.get("observedAt")
    if observed is not None:
        if type(observed) is not list:
            raise TelemetryTypeError(0, "observedAt", "observedAt must be a list of times")
        observed = _times(observed)
    return Columns(metrics, device_ids, observed)


def _number_column(name: str, values: Any) -> np.ndarray:
    """A counter's list as one float64 array, its types checked in bulk."""
    if type(values) is not list:
        raise TelemetryTypeError(0, name, f"{name} is required and must be a list of numbers")
    if set(map(type, values)) <= _NUMBERS:
        try:
            return np.array(values, dtype=np.float64)
        except OverflowError:  # an integer beyond a double: found below
            pass
    for index, value in enumerate(values):
        problem = _number_problem(value)
        if problem:
            raise TelemetryTypeError(index, name, f"{name} {problem}")
    raise AssertionError("unreachable: a column of numbers within a double converts")
