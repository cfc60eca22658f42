"""The feature schema of device telemetry, and the checks every input row must pass."""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

# metric8 is an exact copy of metric7 in the data, so it carries no information.
DEVICE_FEATURES: tuple[str, ...] = (
    "metric1",
    "metric2",
    "metric3",
    "metric4",
    "metric5",
    "metric6",
    "metric7",
    "metric9",
)


# Trees compare float32 copies of the inputs (as scikit-learn does): larger values cannot be told
# apart, and scikit-learn itself refuses them.
MAX_VALUE = float(np.finfo(np.float32).max)
# Up to this many rows, a valid matrix is recognised in plain Python: 1 us for a one-row
# request, against 4.6 us for numpy's eight calls (NaN fails both comparisons, as inf the upper).
_SMALL = 8


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One invalid value: which row, which field, and why."""

    row: int
    field: str
    reason: str


def find_invalid_values(
    matrix: npt.NDArray[np.float64], feature_names: Sequence[str], limit: int = 20
) -> list[FieldProblem]:
    """Return the values that are not finite, negative or above MAX_VALUE (at most `limit`)."""
    if len(matrix) <= _SMALL and all(0.0 <= v <= MAX_VALUE for row in matrix.tolist() for v in row):
        return []  # a few rows, all valid (the common case): without numpy's cost per call
    finite = np.isfinite(matrix)
    values = np.where(finite, matrix, 0.0)
    bad = ~finite | (values < 0) | (values > MAX_VALUE)
    if not bad.any():
        return []
    problems = []
    for row, col in zip(*np.nonzero(bad), strict=True):
        value = matrix[row, col]
        reason = _reason(float(value))
        problems.append(FieldProblem(int(row), feature_names[col], reason))
        if len(problems) >= limit:
            break
    return problems


def _reason(value: float) -> str:
    if not np.isfinite(value):
        return "must be a finite number"
    return "must be >= 0" if value < 0 else f"must be <= {MAX_VALUE:.7g}"
