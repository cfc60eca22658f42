"""The one decoder of telemetry: `PredictInput` values, from GraphQL or from the REST body.

Callers hand mappings keyed by PredictInput's field names (`deviceId`, `metric1`...); the decoder
checks their types in bulk and returns the values column by column. It checks types only; the
values themselves (finite, in range, a printable device id) are the use case's to check, so every
path refuses a bad value with the same error.
"""

from collections.abc import Mapping, Sequence
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
