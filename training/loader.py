"""Load the public device-failure CSV format (plain or gzipped) into a Dataset.

Format: a header `date,device,failure,metric1,...,metric9`, then one row per device and day.
Columns are found by name; `metric8` (an exact copy of metric7) and any extra column are ignored.
"""

import csv
import gzip
import io
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from model import DEVICE_FEATURES, sha256_hex
from training.dataset import Dataset, make_dataset
from training.errors import (
    DataNotFoundError,
    EmptyDatasetError,
    MalformedRowError,
    MissingColumnsError,
    UnreadableDataError,
)

REQUIRED_COLUMNS: tuple[str, ...] = ("date", "device", "failure", *DEVICE_FEATURES)
_GZIP_MAGIC = b"\x1f\x8b"
_UTF8_BOM = b"\xef\xbb\xbf"

Column = Sequence[str]


def load_dataset(path: Path) -> Dataset:
    """Read a data file; the fingerprint is the sha256 of its bytes as stored."""
    raw = _read_bytes(path)
    text = _decode(raw, path)
    reader = csv.reader(io.StringIO(text))
    index, width = _header_index(next(reader, None), path)
    columns, lines = _read_columns(reader, index, width)
    if not lines:
        raise EmptyDatasetError(f"{path.name}: header but no data rows")
    return make_dataset(
        _features(columns, lines),
        _failures(columns["failure"], lines),
        _devices(columns["device"], lines),
        _dates(columns["date"], lines),
        sha256=sha256_hex(raw),
        source=path.name,
    )


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise DataNotFoundError(f"no data file at {path}") from exc
    except OSError as exc:
        raise DataNotFoundError(f"cannot read {path}: {exc.strerror}") from exc


def _decode(raw: bytes, path: Path) -> str:
    # Detect gzip by its magic bytes, not the file name; latin-1 because the original data
    # has a device id with a non-ASCII byte, and latin-1 decodes any byte.
    if raw.startswith(_GZIP_MAGIC):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise UnreadableDataError(f"{path.name}: corrupt gzip data") from exc
    return raw.removeprefix(_UTF8_BOM).decode("latin-1")


def _header_index(header: list[str] | None, path: Path) -> tuple[dict[str, int], int]:
    """Positions of the required columns, and the number of fields every row must have."""
    if not header:
        raise EmptyDatasetError(f"{path.name}: empty file (no header)")
    names = [name.strip().lower() for name in header]
    missing = [name for name in REQUIRED_COLUMNS if name not in names]
    if missing:
        raise MissingColumnsError(missing)
    return {name: names.index(name) for name in REQUIRED_COLUMNS}, len(names)


def _read_columns(
    reader: Any, index: dict[str, int], width: int
) -> tuple[dict[str, Column], list[int]]:
    rows: list[list[str]] = []
    lines: list[int] = []
    for row in reader:
        if not row:
            continue  # a blank line (typically the last one) is not a row
        if len(row) != width:
            raise MalformedRowError(reader.line_num, f"expected {width} fields, found {len(row)}")
        rows.append(row)
        lines.append(reader.line_num)
    if not rows:
        return {}, lines
    transposed = list(zip(*rows, strict=True))
    return {name: transposed[index[name]] for name in REQUIRED_COLUMNS}, lines


def _convert(
    values: Column, lines: list[int], name: str, convert: Callable[[Column], np.ndarray]
) -> np.ndarray:
    # Convert the whole column at C speed; only on failure walk it to name the bad line.
    try:
        return convert(values)
    except ValueError:
        pass
    for value, line in zip(values, lines, strict=True):
        try:
            convert([value])
        except ValueError:
            raise MalformedRowError(line, f"{name}: cannot parse {value!r}") from None
    raise AssertionError("unreachable: the column converted row by row")  # pragma: no cover


def _check(
    ok: npt.NDArray[np.bool_], values: Column, lines: list[int], name: str, rule: str
) -> None:
    if not ok.all():
        bad = int(np.argmin(ok))
        raise MalformedRowError(lines[bad], f"{name}: {values[bad]!r} {rule}")


def _features(columns: dict[str, Column], lines: list[int]) -> npt.NDArray[np.float64]:
    matrix = np.empty((len(lines), len(DEVICE_FEATURES)), dtype=np.float64)
    for j, name in enumerate(DEVICE_FEATURES):
        values = columns[name]
        matrix[:, j] = _convert(values, lines, name, lambda v: np.asarray(v, dtype=np.float64))
        finite = np.isfinite(matrix[:, j])
        _check(
            finite & (np.where(finite, matrix[:, j], 0.0) >= 0),
            values,
            lines,
            name,
            "must be a finite number >= 0",
        )
    return matrix


def _failures(values: Column, lines: list[int]) -> npt.NDArray[np.int64]:
    _check(np.isin(np.asarray(values), ["0", "1"]), values, lines, "failure", "must be 0 or 1")
    return np.asarray(values, dtype=np.int64)


def _devices(values: Column, lines: list[int]) -> npt.NDArray[np.str_]:
    devices = np.char.strip(np.asarray(values, dtype=np.str_))
    _check(np.char.str_len(devices) > 0, values, lines, "device", "must not be empty")
    return devices


def _dates(values: Column, lines: list[int]) -> npt.NDArray[np.datetime64]:
    # numpy also accepts "2015-01" or "2015"; the format is strictly YYYY-MM-DD.
    _check(
        np.char.str_len(np.asarray(values, dtype=np.str_)) == 10,
        values,
        lines,
        "date",
        "is not a YYYY-MM-DD date",
    )
    return _convert(values, lines, "date", lambda v: np.asarray(v, dtype="datetime64[D]"))
