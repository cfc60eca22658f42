"""Device-grouped splits: no device ever sits on two sides of a split."""

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.model_selection import StratifiedGroupKFold

from training.dataset import Dataset
from training.errors import InsufficientDataError

Rows = npt.NDArray[np.intp]
Folds = list[tuple[Rows, Rows]]

TEST_FOLDS = 5  # one fold of five: ~20% of devices held out for the test
VALIDATION_FOLDS = 4  # one fold of four of the rest: ~20% of all devices for validation


@dataclass(frozen=True)
class DeviceSplit:
    """Row indices of the training, validation and test devices."""

    train: Rows
    validation: Rows
    test: Rows

    def sizes(self, dataset: Dataset) -> dict[str, dict[str, int]]:
        """Devices, rows and failures on each side (for lineage)."""
        return {
            name: _size(dataset, rows)
            for name, rows in (
                ("train", self.train),
                ("validation", self.validation),
                ("test", self.test),
            )
        }


def _size(dataset: Dataset, rows: Rows) -> dict[str, int]:
    return {
        "devices": int(np.unique(dataset.devices[rows]).size),
        "rows": int(rows.size),
        "failures": int(dataset.y[rows].sum()),
    }


def failing_devices(dataset: Dataset) -> int:
    """How many distinct devices have a failure row."""
    return int(np.unique(dataset.devices[dataset.y == 1]).size)


def require_failing_devices(dataset: Dataset, needed: int, purpose: str) -> None:
    """Fail clearly when stratification cannot put a failing device in every fold."""
    found = failing_devices(dataset)
    if found < needed:
        raise InsufficientDataError(
            f"{purpose} needs at least {needed} failing devices, the data has {found}"
        )


def grouped_folds(dataset: Dataset, folds: int, seed: int, rows: Rows | None = None) -> Folds:
    """Stratified folds grouped by device, shuffled with `seed`, over `rows` (default: all)."""
    within = np.arange(len(dataset)) if rows is None else rows
    require_failing_devices(dataset.subset(within), folds, f"{folds}-fold cross-validation")
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    parts = splitter.split(within, dataset.y[within], dataset.devices[within])
    return [(within[np.asarray(a)], within[np.asarray(b)]) for a, b in parts]


def split_devices(dataset: Dataset, seed: int) -> DeviceSplit:
    """Hold out ~20% of devices for test, then ~25% of the rest for validation."""
    require_failing_devices(dataset, TEST_FOLDS, "the train/validation/test split")
    development, test = _first_fold(dataset, np.arange(len(dataset)), TEST_FOLDS, seed)
    train, validation = _first_fold(dataset, development, VALIDATION_FOLDS, seed)
    split = DeviceSplit(train, validation, test)
    for name, size in split.sizes(dataset).items():
        if size["failures"] == 0:
            raise InsufficientDataError(f"no failing device landed in the {name} split")
    return split


def _first_fold(dataset: Dataset, rows: Rows, folds: int, seed: int) -> tuple[Rows, Rows]:
    splitter: Any = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    keep, held = next(splitter.split(rows, dataset.y[rows], dataset.devices[rows]))
    return np.sort(rows[keep]), np.sort(rows[held])
