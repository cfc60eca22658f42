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


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One invalid value: which row, which field, and why."""

    row: int
    field: str
    reason: str


def find_invalid_values(
    matrix: npt.NDArray[np.float64], feature_names: Sequence[str], limit: int = 20
) -> list[FieldProblem]:
    """Return the values that are not finite or are negative (at most `limit`)."""
    finite = np.isfinite(matrix)
    bad = ~finite | (np.where(finite, matrix, 0.0) < 0)
    if not bad.any():
        return []
    problems = []
    for row, col in zip(*np.nonzero(bad), strict=True):
        value = matrix[row, col]
        reason = "must be a finite number" if not np.isfinite(value) else "must be >= 0"
        problems.append(FieldProblem(int(row), feature_names[col], reason))
        if len(problems) >= limit:
            break
    return problems
