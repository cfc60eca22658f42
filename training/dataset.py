"""The in-memory dataset: feature matrix, labels, devices, dates and a fingerprint of the source."""

from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt

from model import DEVICE_FEATURES
from training.errors import EmptyDatasetError, NoFailuresError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
StrArray = npt.NDArray[np.str_]
DateArray = npt.NDArray[np.datetime64]


@dataclass(frozen=True)
class DatabaseSelection:
    """Which stored rows a dataset read from the database holds (training/database.py)."""

    window_from: date | None  # observed_at >= this day's 00:00 UTC; None: no lower bound
    window_to: date | None  # observed_at < this day's 00:00 UTC; None: no upper bound
    predictions: int  # stored predictions with a device id in the window
    rows: int  # device-days: one row each, its latest prediction
    devices: int
    failures: int  # rows whose device-day has an outcome saying failed
    duplicates_dropped: int  # predictions - rows: older predictions of a device-day
    rows_without_outcome: int  # labeled 0 because no outcome was recorded for the device-day
    rows_sha256: str  # training.database.rows_digest of the rows, sorted by device and day

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form, days as ISO strings (None: unbounded)."""
        data = asdict(self)
        for name in ("window_from", "window_to"):
            value = getattr(self, name)
            data[name] = None if value is None else value.isoformat()
        return data


@dataclass(frozen=True)
class DataFingerprint:
    """What identifies the data a model was trained on (stored with every model version)."""

    # of the file bytes, "synthetic:<sha256 of generator params + seed>", or
    # "database:<sha256 of the rows used>"
    sha256: str
    rows: int
    failures: int
    date_from: date
    date_to: date
    source: str
    database: DatabaseSelection | None = None  # read from the service's database: which rows

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form, dates as ISO strings; `database` only for data read from one."""
        data = asdict(self)
        data["date_from"] = self.date_from.isoformat()
        data["date_to"] = self.date_to.isoformat()
        del data["database"]
        if self.database is not None:
            data["database"] = self.database.to_json()
        return data


@dataclass(frozen=True, eq=False)
class Dataset:
    """Rows of device telemetry: X in DEVICE_FEATURES order, y in {0, 1}."""

    X: FloatArray
    y: IntArray
    devices: StrArray
    dates: DateArray
    fingerprint: DataFingerprint
    synthetic: bool = False
    feature_names: tuple[str, ...] = DEVICE_FEATURES

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, rows: npt.NDArray[np.intp]) -> "Dataset":
        """The rows at `rows`, keeping the source fingerprint (it names where they came from)."""
        return Dataset(
            self.X[rows],
            self.y[rows],
            self.devices[rows],
            self.dates[rows],
            self.fingerprint,
            self.synthetic,
            self.feature_names,
        )

    def relabelled(self, y: IntArray) -> "Dataset":
        """The same rows with other labels (a failure horizon's); the fingerprint is kept."""
        if y.shape != self.y.shape:
            raise ValueError("one label per row")
        return Dataset(
            self.X,
            y,
            self.devices,
            self.dates,
            self.fingerprint,
            self.synthetic,
            self.feature_names,
        )


def _as_date(value: np.datetime64) -> date:
    return date.fromisoformat(str(value.astype("datetime64[D]")))


def make_dataset(
    X: FloatArray,
    y: IntArray,
    devices: StrArray,
    dates: DateArray,
    *,
    sha256: str,
    source: str,
    synthetic: bool = False,
) -> Dataset:
    """Assemble a Dataset, computing the fingerprint's counts and date range from the arrays."""
    if y.shape[0] == 0:
        raise EmptyDatasetError(f"{source}: no data rows")
    failures = int(y.sum())
    if failures == 0:
        raise NoFailuresError(f"{source}: no row has failure = 1")
    fingerprint = DataFingerprint(
        sha256=sha256,
        rows=int(y.shape[0]),
        failures=failures,
        date_from=_as_date(dates.min()),
        date_to=_as_date(dates.max()),
        source=source,
    )
    return Dataset(X, y, devices, dates, fingerprint, synthetic)
