"""History features of a Dataset, through model.history (the definition serving uses too).

A Dataset's rows may come in any order (a file sorted by date, rows read from the database):
each device's rows are put in date order, its features computed by
`model.history.HistoryFeatures` exactly as serving computes them from the device's stored
history, and the result is put back in the dataset's row order. Rows of one device on the same
date are one observation (the last of them in the dataset's order), as serving stores them.

The candidate feature sets are named: every set holds the plain counters, and cross-validation
on the training devices chooses one (training.selection). A version's `feature_names` are the
columns of its set, which serving computes with the same class.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import numpy.typing as npt

from model import DEVICE_FEATURES
from model.history import HistoryFeatures, history_feature_names
from training.dataset import Dataset, FloatArray

COUNTERS = "counters"
# Candidate sets, from the counters alone (depth 0) to the richer history.
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    COUNTERS: DEVICE_FEATURES,
    "counters+delta+max7": (
        *DEVICE_FEATURES,
        *history_feature_names(("delta", "max7"), observations=False),
    ),
    "counters+delta+max7+zero_run+observations": (
        *DEVICE_FEATURES,
        *history_feature_names(("delta", "max7", "zero_run")),
    ),
}


def depth_of(names: Sequence[str]) -> int:
    """Earlier observations of a device the features read (what serving fetches per device;
    `observations` counts them all, with one count, and reads none)."""
    return HistoryFeatures(names).depth


def device_runs(dataset: Dataset) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """(order, bounds): `order` lists the rows by device, then date (stable); the rows of the
    i-th device are order[bounds[i]:bounds[i + 1]]."""
    order = np.lexsort((dataset.dates, dataset.devices)).astype(np.intp)
    devices = dataset.devices[order]
    starts = np.flatnonzero(devices[1:] != devices[:-1]) + 1
    return order, np.r_[0, starts, order.size].astype(np.intp)


def history_matrix(dataset: Dataset, names: Sequence[str]) -> FloatArray:
    """(rows, len(names)): the features `names` of every row, in the dataset's row order.

    Each device's rows go through `HistoryFeatures.of_device` in date order, as serving sees
    them: rows of one device and date count as one observation (the last of them)."""
    features = HistoryFeatures(names)
    counters = [dataset.feature_names.index(name) for name in DEVICE_FEATURES]
    X = dataset.X[:, counters]
    if not features.uses_history:
        return np.ascontiguousarray(features.plain(X))
    order, bounds = device_runs(dataset)
    out = np.empty((len(dataset), len(features.feature_names)), dtype=np.float64)
    for start, end in pairwise(bounds.tolist()):
        rows = order[start:end]
        out[rows] = features.of_device(dataset.dates[rows], X[rows])
    return out


@dataclass(frozen=True, eq=False)
class FeatureTable:
    """Every candidate feature of a dataset's rows, computed once; sets are column selections."""

    names: tuple[str, ...]
    matrix: FloatArray

    def columns(self, names: Sequence[str]) -> FloatArray:
        """The features `names`, in that order."""
        index = [self.names.index(name) for name in names]
        return np.ascontiguousarray(self.matrix[:, index])


def feature_table(dataset: Dataset, sets: Sequence[Sequence[str]]) -> FeatureTable:
    """The union of the sets' features of every row (one pass over the devices)."""
    names = tuple(dict.fromkeys(name for names in sets for name in names))
    return FeatureTable(names, history_matrix(dataset, names))
