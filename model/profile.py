"""What a model's training inputs looked like, and how live inputs compare with it.

A profile is plain JSON (stored with the model version, `model_version.input_profile`):

    {"format": 1, "rows": <training rows>, "features": {<name>: {
        "min", "max", "zero_share", "mean",
        "quantiles": [[q, value], ...]           # at QUANTILES
        "bins": {"edges": [...], "shares": [...]}  # PSI bins (see below)
        "sample": [...]                          # sorted, at most SAMPLE_SIZE values
    }}}

PSI bins are right-closed: bin 0 holds values <= edges[0], bin i values in
(edges[i-1], edges[i]], the last bin values > edges[-1]. The edges are the distinct deciles of
the training values, so a feature that is mostly zeros (most of these counters) gets a bin of
its own for zero instead of ten equal ones; `shares` are the training rows' shares per bin, as
counted, not assumed. The sample (the same training rows for every feature, chosen with a fixed
seed) is what the two-sample Kolmogorov-Smirnov test compares live inputs against.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
PROFILE_FORMAT = 1
QUANTILES = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)
DECILES = tuple(i / 10 for i in range(1, 10))
SAMPLE_SIZE = 2000
SAMPLE_SEED = 20261129


def build_profile(matrix: FloatArray, feature_names: Sequence[str]) -> dict[str, Any]:
    """The profile of training inputs: an (n, features) array whose columns are `feature_names`."""
    if matrix.ndim != 2 or matrix.shape[1] != len(feature_names) or matrix.shape[0] == 0:
        raise ValueError(f"expected a non-empty (n, {len(feature_names)}) array")
    rows = matrix.shape[0]
    rng = np.random.default_rng(SAMPLE_SEED)
    picked = rng.choice(rows, size=SAMPLE_SIZE, replace=False) if rows > SAMPLE_SIZE else None
    features = {}
    for i, name in enumerate(feature_names):
        values = np.asarray(matrix[:, i], dtype=np.float64)
        sample = values if picked is None else values[picked]
        features[name] = _feature(values, np.sort(sample))
    return {"format": PROFILE_FORMAT, "rows": int(rows), "features": features}


def _feature(values: FloatArray, sample: FloatArray) -> dict[str, Any]:
    edges = np.unique(np.quantile(values, DECILES))
    counts = np.bincount(bin_index(values, edges), minlength=len(edges) + 1)
    return {
        "min": float(values.min()),
        "max": float(values.max()),
        "mean": float(values.mean()),
        "zero_share": float(np.mean(values == 0.0)),
        "quantiles": [
            [q, float(v)] for q, v in zip(QUANTILES, np.quantile(values, QUANTILES), strict=True)
        ],
        "bins": {"edges": edges.tolist(), "shares": (counts / len(values)).tolist()},
        "sample": sample.tolist(),
    }


def bin_index(values: FloatArray, edges: Sequence[float] | FloatArray) -> npt.NDArray[np.intp]:
    """The PSI bin of each value (right-closed bins, see the module docstring)."""
    return np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="left")


@dataclass(frozen=True, eq=False)
class InputRanges:
    """The training range of each input of a model, in its predictor's feature order, and the
    warnings about live values outside it. Built once when a version is loaded: the parts of a
    warning that depend only on the range are written then, not on every request."""

    feature_names: tuple[str, ...]
    low: FloatArray  # the training minimums
    high: FloatArray  # the training maximums
    # Per feature: the ending of a warning about a value (above, below) its range.
    endings: tuple[tuple[str, str], ...] = field(init=False, repr=False)
    # (low, high) per feature as floats: one row is checked without numpy's per-call cost
    _bounds: tuple[tuple[float, float], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        endings = tuple(
            (
                f" is above the training range (max {h:.6g})",
                f" is below the training range (min {lo:.6g})",
            )
            for lo, h in zip(self.low.tolist(), self.high.tolist(), strict=True)
        )
        object.__setattr__(self, "endings", endings)
        bounds = tuple(zip(self.low.tolist(), self.high.tolist(), strict=True))
        object.__setattr__(self, "_bounds", bounds)

    def warnings(self, matrix: FloatArray) -> list[list[str] | None] | None:
        """Per row, a sentence for each value outside [low, high]; None when every value is
        inside. One vectorised comparison decides the common case (nothing outside) for a
        whole batch (a single row: one pass in plain Python)."""
        if matrix.shape[0] == 1:
            return self._one_row(matrix[0].tolist())
        below = matrix < self.low
        above = matrix > self.high
        outside = below | above
        if not outside.any():
            return None
        names, endings = self.feature_names, self.endings
        rows, cols = np.nonzero(outside)
        found: list[list[str] | None] = [None] * matrix.shape[0]
        for row, col, value, is_below in zip(
            rows.tolist(),
            cols.tolist(),
            matrix[rows, cols].tolist(),
            below[rows, cols].tolist(),
            strict=True,
        ):
            note = f"{names[col]} = {value:.6g}{endings[col][is_below]}"
            notes = found[row]
            if notes is None:
                found[row] = [note]
            else:
                notes.append(note)
        return found

    def _one_row(self, row: list[float]) -> list[list[str] | None] | None:
        """`warnings` of one row, in plain Python: the same notes, in the same order (a NaN is
        outside no range, as in the vectorised comparisons)."""
        bounds = self._bounds
        if all(lo <= v <= hi for v, (lo, hi) in zip(row, bounds, strict=True)):
            return None
        notes = []
        for col, value in enumerate(row):
            lo, hi = bounds[col]
            if value < lo or value > hi:
                ending = self.endings[col][value < lo]
                notes.append(f"{self.feature_names[col]} = {value:.6g}{ending}")
        return [notes] if notes else None


def ranges(profile: Mapping[str, Any], feature_names: Sequence[str]) -> InputRanges:
    """The training range of each input in `feature_names` order, from a profile."""
    features = profile["features"]
    low = np.array([features[name]["min"] for name in feature_names], dtype=np.float64)
    high = np.array([features[name]["max"] for name in feature_names], dtype=np.float64)
    return InputRanges(tuple(feature_names), low, high)
