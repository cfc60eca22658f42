"""Write a Dataset in the public CSV format (gzipped when the name ends in .gz)."""

import csv
import gzip
import io
from pathlib import Path

import numpy as np
import numpy.typing as npt

from training.dataset import Dataset

PUBLIC_HEADER: tuple[str, ...] = (
    "date",
    "device",
    "failure",
    *(f"metric{i}" for i in range(1, 10)),
)


def write_dataset_csv(dataset: Dataset, path: Path) -> Path:
    """Write `dataset` to `path` as `date,device,failure,metric1..metric9`; returns the path."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(PUBLIC_HEADER)
    writer.writerows(zip(*(column.tolist() for column in _columns(dataset)), strict=True))
    data = buffer.getvalue().encode("latin-1")
    if path.name.endswith(".gz"):
        # mtime=0 keeps the bytes, and so the file fingerprint, reproducible.
        data = gzip.compress(data, compresslevel=6, mtime=0)
    path.write_bytes(data)
    return path


def _columns(dataset: Dataset) -> list[npt.NDArray[np.str_]]:
    by_name = {name: _text(dataset.X[:, j]) for j, name in enumerate(dataset.feature_names)}
    by_name["metric8"] = by_name["metric7"]  # the public format repeats metric7 as metric8
    metrics = [by_name[f"metric{i}"] for i in range(1, 10)]
    return [
        dataset.dates.astype("datetime64[D]").astype(np.str_),
        dataset.devices,
        dataset.y.astype(np.str_),
        *metrics,
    ]


def _text(values: npt.NDArray[np.float64]) -> npt.NDArray[np.str_]:
    # Counters are integers: write them without a trailing ".0", as the public file does.
    if np.all(values == np.floor(values)):
        return values.astype(np.int64).astype(np.str_)
    return np.array([repr(float(v)) for v in values])
