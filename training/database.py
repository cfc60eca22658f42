"""A Dataset from what the service stored: its predictions' telemetry, labeled by outcomes.

`load_database_dataset` reads `persistence.trainingset.training_rows`: one row per device and
UTC day of the predictions that carry a device id (observed in the window [from 00:00 UTC, to
00:00 UTC) when given), the latest stored prediction of the device-day winning, labeled 1 when
that device-day's outcome (`recordOutcome`, `failcast outcomes import`) says failed, else 0.
The rows are sorted by device id (code points) and day, so the dataset, and the digest of its
rows, are the same whichever database holds them and in whatever order it returns them.

The fingerprint's sha256 is `database:` and the sha256 of the canonical rows (`rows_digest`);
`DataFingerprint.database` (a `DatabaseSelection`) says which rows were used, for lineage.
"""

import hashlib
from datetime import UTC, date, datetime, time

import numpy as np
from sqlalchemy.engine import URL, Engine

from model import DEVICE_FEATURES
from persistence.trainingset import TrainingBatch, training_rows
from training.dataset import (
    DatabaseSelection,
    DataFingerprint,
    Dataset,
    DateArray,
    FloatArray,
    IntArray,
    StrArray,
)
from training.errors import EmptyDatasetError, InvalidOptionsError, NoFailuresError

DIGEST_PREFIX = "database:"
_DIGEST_FORMAT = b"failcast training rows v1\n"
_EPOCH = np.datetime64("1970-01-01", "D")


def load_database_dataset(
    engine: Engine, date_from: date | None = None, date_to: date | None = None
) -> Dataset:
    """The training rows stored in `engine`'s database, observed in [date_from, date_to)."""
    if date_from is not None and date_to is not None and date_from >= date_to:
        raise InvalidOptionsError(f"date_from {date_from} must be before date_to {date_to}")
    source = database_source(engine, date_from, date_to)
    window = _window_text(date_from, date_to)
    when = f"in {window}" if window else "at any time"
    rows = _read(engine, date_from, date_to)
    if rows is None:
        raise EmptyDatasetError(
            f"{source}: no stored prediction with a device id was observed {when}; "
            "predictions without a deviceId cannot be labeled and are not used"
        )
    failures = int(rows.failed.sum())
    if failures == 0:
        raise NoFailuresError(
            f"{source}: none of the {len(rows)} device-days observed {when} has an outcome "
            f"saying the device failed (outcomes recorded: {int(rows.recorded.sum())}); "
            "record failures with recordOutcome or `failcast outcomes import FILE` first"
        )
    order = np.lexsort((rows.days, rows.devices))
    devices, dates = rows.devices[order], rows.days[order]
    X = np.ascontiguousarray(rows.values[order])
    y = rows.failed[order].astype(np.int64)
    digest = rows_digest(devices, dates, X, y)
    selection = DatabaseSelection(
        window_from=date_from,
        window_to=date_to,
        predictions=int(rows.stored.sum()),
        rows=len(rows),
        devices=int(np.unique(devices).size),
        failures=failures,
        duplicates_dropped=int(rows.stored.sum()) - len(rows),
        rows_without_outcome=len(rows) - int(rows.recorded.sum()),
        rows_sha256=digest,
    )
    fingerprint = DataFingerprint(
        sha256=DIGEST_PREFIX + digest,
        rows=int(y.size),
        failures=failures,
        date_from=_as_date(dates.min()),
        date_to=_as_date(dates.max()),
        source=source,
        database=selection,
    )
    return Dataset(X, y, devices, dates, fingerprint)


def database_source(engine: Engine, date_from: date | None, date_to: date | None) -> str:
    """The source's name: "database:", the URL without its password and query (which may
    hold secrets), and the window."""
    u = engine.url
    url = URL.create(u.drivername, u.username, None, u.host, u.port, u.database)
    url_text = url.render_as_string(hide_password=False)
    window = _window_text(date_from, date_to)
    return f"database:{url_text}" + (f" {window}" if window else "")


def rows_digest(devices: StrArray, dates: DateArray, X: FloatArray, y: IntArray) -> str:
    """sha256 of rows in their given order (training sorts them by device, then day).

    The bytes hashed: a format line; the device ids, UTF-8, each followed by a newline (ids
    are printable, so never hold one); the days as little-endian int64 days since 1970-01-01;
    X row by row (each row's values in DEVICE_FEATURES order) as little-endian float64; the
    labels as one byte each (0 or 1).
    """
    h = hashlib.sha256(_DIGEST_FORMAT)
    h.update("".join(f"{device}\n" for device in devices.tolist()).encode("utf-8"))
    h.update((dates.astype("datetime64[D]") - _EPOCH).astype("<i8").tobytes())
    h.update(np.ascontiguousarray(X, dtype="<f8").tobytes())
    h.update(y.astype(np.uint8).tobytes())
    return h.hexdigest()


def _read(engine: Engine, date_from: date | None, date_to: date | None) -> TrainingBatch | None:
    """Every training row of the window in one batch (None: there is none)."""
    batches = list(training_rows(engine, DEVICE_FEATURES, _midnight(date_from), _midnight(date_to)))
    return TrainingBatch.joined(batches) if batches else None


def _midnight(day: date | None) -> datetime | None:
    return None if day is None else datetime.combine(day, time(0), tzinfo=UTC)


def _window_text(date_from: date | None, date_to: date | None) -> str:
    if date_from is None and date_to is None:
        return ""
    return f"[{date_from or ''}..{date_to or ''})"


def _as_date(value: np.datetime64) -> date:
    return date.fromisoformat(str(value.astype("datetime64[D]")))
