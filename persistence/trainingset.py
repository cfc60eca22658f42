"""The training rows of what the service stored: one per device and UTC day, with its label.

`training_rows` reads the predictions that carry a device id (observed in [start, end) when
given), keeps one per device and UTC day of `observed_at`, the latest (highest observed_at,
then highest id: of equal times, the one stored last, ids being UUIDv7), and labels it from
that device-day's `outcome` (one per device and day, see outcomes.py): `failed` when the
outcome says so; a device-day without an outcome is not failed (`recorded` says which had one).

It is ONE statement, read in batches (`yield_per`: a server-side cursor on PostgreSQL, a
stepped cursor on SQLite), so every batch comes from the same snapshot and a million rows are
never all held as Python objects. The statement joins each prediction to its device-day's
outcome (through the outcome's unique (device_id, day) index on SQLite, a hash join on
PostgreSQL) and orders the rows by device_id, observed_at, id: on SQLite that is the order of
the index (device_id, observed_at) (only ties of observed_at are sorted); PostgreSQL sorts,
planning for the whole result (`cursor_tuple_fraction = 1`), not for its first rows. Each
device-day's predictions are then adjacent with the latest last, whatever the collation of
device_id, so the batches are deduplicated in numpy: the last row of each run of equal (device,
day) is kept, and the run's length is how many predictions the device-day had; the run at the
end of a batch (reduced to its latest row and its length) waits for the next batch, which may
continue it. Measured by `python -m
bench.trainingset` (1,000,000 predictions, 2 shared cores): see the README's performance notes.

Rows come out in that order, which is not the same on both databases (PostgreSQL's collation
may order device ids differently from SQLite's code points): callers that need an order sort.
The UTC day is each database's own expression: on PostgreSQL the date of `observed_at AT TIME
ZONE 'UTC'`; on SQLite, which stores UTC times as text (`YYYY-MM-DD HH:MM:SS.ffffff`, see
types.UTCDateTime), its first ten characters; both come back as `YYYY-MM-DD` text. The window
bounds are bound as UTCDateTime values, compared as the column is stored, so both databases
select, order and label the same rows.
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from persistence.session import translate_errors
from persistence.tables import Outcome, Prediction
from persistence.types import UTCDateTime

_PREDICTION: sa.Table = Prediction.__table__  # type: ignore[attr-defined]
_OUTCOME: sa.Table = Outcome.__table__  # type: ignore[attr-defined]
TRAINING_BATCH = 50_000  # predictions read per batch


@dataclass(frozen=True)
class TrainingBatch:
    """Training rows column by column: row i of every array is one device-day."""

    devices: npt.NDArray[np.str_]
    days: npt.NDArray[np.datetime64]  # datetime64[D]: the UTC day of observed_at
    values: npt.NDArray[np.float64]  # one column per metric asked for, in that order
    failed: npt.NDArray[np.bool_]  # the device-day's outcome says it failed
    recorded: npt.NDArray[np.bool_]  # the device-day has an outcome at all
    stored: npt.NDArray[np.int64]  # how many predictions the device-day had (the latest kept)

    def __len__(self) -> int:
        return int(self.devices.shape[0])

    def take(self, rows: Any) -> "TrainingBatch":
        """The rows at `rows` (an index array or a slice)."""
        return TrainingBatch(
            self.devices[rows],
            self.days[rows],
            self.values[rows],
            self.failed[rows],
            self.recorded[rows],
            self.stored[rows],
        )

    @staticmethod
    def joined(batches: Sequence["TrainingBatch"]) -> "TrainingBatch":
        """The rows of every batch, in order (at least one batch)."""
        return TrainingBatch(
            np.concatenate([b.devices for b in batches]),
            np.concatenate([b.days for b in batches]),
            np.concatenate([b.values for b in batches]),
            np.concatenate([b.failed for b in batches]),
            np.concatenate([b.recorded for b in batches]),
            np.concatenate([b.stored for b in batches]),
        )


def training_rows(
    engine: Engine,
    metrics: Sequence[str],
    start: datetime | None = None,
    end: datetime | None = None,
    batch: int = TRAINING_BATCH,
) -> Iterator[TrainingBatch]:
    """One row per device and UTC day of the predictions with a device id observed in
    [start, end) (either bound may be None), in batches; see the module docstring."""
    unknown = [name for name in metrics if name not in _PREDICTION.c]
    if unknown:
        raise ValueError(f"not columns of prediction: {', '.join(unknown)}")
    query = _query(engine.dialect.name, metrics, start, end)
    with translate_errors(), engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("SET LOCAL cursor_tuple_fraction = 1")
        result = connection.execution_options(yield_per=batch).execute(query)
        # The run at the end of the last batch, as its latest row so far (with the run's
        # length as its `stored` count): the next batch may continue it.
        held: TrainingBatch | None = None
        for part in result.partitions():
            rows = _arrays(part, len(metrics))
            if held is not None:
                rows = TrainingBatch.joined([held, rows])
            last_run = _run_starts(rows)[-1]
            held = _latest_of_runs(rows.take(slice(last_run, None)))
            if last_run:
                yield _latest_of_runs(rows.take(slice(0, last_run)))
        if held is not None:
            yield held


def _arrays(part: Sequence[Sequence[Any]], width: int) -> TrainingBatch:
    """Rows (device_id, day, *metrics, failed, recorded) as arrays, one per prediction."""
    columns = list(zip(*part, strict=True))
    return TrainingBatch(
        np.asarray(columns[0], dtype=np.str_),
        np.asarray(columns[1], dtype="datetime64[D]"),
        np.asarray(columns[2 : 2 + width], dtype=np.float64).T,
        np.asarray(columns[2 + width], dtype=np.int8).astype(np.bool_),
        np.asarray(columns[3 + width], dtype=np.int8).astype(np.bool_),
        np.ones(len(part), dtype=np.int64),
    )


def _run_starts(rows: TrainingBatch) -> npt.NDArray[np.intp]:
    """Where each run of equal (device, day) begins (rows ordered by device, then time)."""
    changes = (rows.devices[1:] != rows.devices[:-1]) | (rows.days[1:] != rows.days[:-1])
    return np.concatenate([[0], np.flatnonzero(changes) + 1]).astype(np.intp)


def _latest_of_runs(rows: TrainingBatch) -> TrainingBatch:
    """The last row of each run, with the run's length as its `stored` count."""
    starts = _run_starts(rows)
    latest = rows.take(np.append(starts[1:], len(rows)) - 1)
    counts = np.add.reduceat(rows.stored, starts)
    return TrainingBatch(
        latest.devices, latest.days, latest.values, latest.failed, latest.recorded, counts
    )


def _utc_day(dialect: str, time: Any) -> Any:
    """The UTC day of a stored time as 'YYYY-MM-DD' text."""
    if dialect == "postgresql":
        return sa.func.to_char(sa.func.timezone("UTC", time), "YYYY-MM-DD")
    return sa.func.substr(sa.type_coerce(time, sa.Text), 1, 10)


def _query(
    dialect: str, metrics: Sequence[str], start: datetime | None, end: datetime | None
) -> Any:
    p, o = _PREDICTION.c, _OUTCOME.c
    day = _utc_day(dialect, p.observed_at)
    outcome_day = day  # compared with the DATE column: the same text on SQLite,
    if dialect == "postgresql":  # a date on PostgreSQL
        outcome_day = sa.cast(sa.func.timezone("UTC", p.observed_at), sa.Date)
    where: list[Any] = [p.device_id.is_not(None)]
    if start is not None:
        where.append(p.observed_at >= sa.literal(start, UTCDateTime()))
    if end is not None:
        where.append(p.observed_at < sa.literal(end, UTCDateTime()))
    covers = sa.and_(o.device_id == p.device_id, o.day == outcome_day)
    return (
        sa.select(
            p.device_id,
            day,
            *(p[name] for name in metrics),
            sa.case((o.failed, 1), else_=0),
            sa.case((o.id.is_(None), 0), else_=1),
        )
        .select_from(_PREDICTION.outerjoin(_OUTCOME, covers))
        .where(*where)
        .order_by(p.device_id, p.observed_at, p.id)
    )
