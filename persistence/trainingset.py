"""The training rows of what the service stored: one per device and UTC day, with its label.

`training_rows` reads the predictions that carry a device id (observed in [start, end) when
given), keeps one per device and UTC day of `observed_at` (the latest: highest observed_at,
then highest id, i.e. the one stored last of equal times, ids being UUIDv7), and labels it
from that device-day's `outcome` (one per device and day, see outcomes.py): failed -> 1, not
failed or none recorded -> 0.

It is ONE statement, read in batches: a server-side cursor on PostgreSQL (`yield_per`), a
stepped cursor on SQLite, so a million rows are never all in memory at once, and every batch
comes from the same snapshot of the tables (rows stored meanwhile are not half-seen). The
database ranks each device-day's predictions with ROW_NUMBER() (partitioned by device and day,
newest first), counts them with COUNT() over the same partition (so the caller knows how many
duplicates it dropped), keeps rank 1 and joins the outcome on (device_id, day) through its
unique index. Rows come in no particular order: the caller sorts (PostgreSQL's collation would
order device ids differently from SQLite's code points anyway).

The UTC day is each database's own expression: on PostgreSQL the date of `observed_at AT TIME
ZONE 'UTC'`; on SQLite, which stores UTC times as text (`YYYY-MM-DD HH:MM:SS.ffffff`, see
types.UTCDateTime), its first ten characters. Both return it as `YYYY-MM-DD` text, and the
window bounds are bound as UTCDateTime values, compared as the column is stored, so both
databases select, rank and label the same rows.
"""

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from persistence.session import translate_errors
from persistence.tables import Outcome, Prediction
from persistence.types import UTCDateTime

_PREDICTION: sa.Table = Prediction.__table__  # type: ignore[attr-defined]
_OUTCOME: sa.Table = Outcome.__table__  # type: ignore[attr-defined]
TRAINING_BATCH = 50_000  # rows per batch handed to the caller
# What each row holds after the metrics the caller named (device_id and day come first):
# `failed` (1 when the device-day's outcome says failed, else 0), `recorded` (1 when the
# device-day has an outcome at all) and `stored` (how many predictions the device-day had).
TRAILING_COLUMNS = ("failed", "recorded", "stored")


def training_rows(
    engine: Engine,
    metrics: Sequence[str],
    start: datetime | None = None,
    end: datetime | None = None,
    batch: int = TRAINING_BATCH,
) -> Iterator[Sequence[Sequence[Any]]]:
    """Batches of (device_id, day 'YYYY-MM-DD', *metrics, failed, recorded, stored) rows.

    One row per device and UTC day of the predictions with a device id observed in
    [start, end) (either bound may be None); see the module docstring.
    """
    unknown = [name for name in metrics if name not in _PREDICTION.c]
    if unknown:
        raise ValueError(f"not columns of prediction: {', '.join(unknown)}")
    query = _query(engine.dialect.name, metrics, start, end)
    with translate_errors(), engine.connect() as connection:
        result = connection.execution_options(yield_per=batch).execute(query)
        yield from result.partitions()


def _utc_day(dialect: str, time: Any) -> Any:
    """The UTC day of a stored time: a DATE on PostgreSQL, its 'YYYY-MM-DD' text on SQLite."""
    if dialect == "postgresql":
        return sa.cast(sa.func.timezone("UTC", time), sa.Date)
    return sa.func.substr(sa.type_coerce(time, sa.Text), 1, 10)


def _query(
    dialect: str, metrics: Sequence[str], start: datetime | None, end: datetime | None
) -> Any:
    p, o = _PREDICTION.c, _OUTCOME.c
    day = _utc_day(dialect, p.observed_at)
    device_day = (p.device_id, day)
    newest = sa.func.row_number().over(
        partition_by=device_day, order_by=(p.observed_at.desc(), p.id.desc())
    )
    stored = sa.func.count().over(partition_by=device_day)
    where: list[Any] = [p.device_id.is_not(None)]
    if start is not None:
        where.append(p.observed_at >= sa.literal(start, UTCDateTime()))
    if end is not None:
        where.append(p.observed_at < sa.literal(end, UTCDateTime()))
    ranked = (
        sa.select(
            p.device_id,
            day.label("day"),
            *(p[name] for name in metrics),
            newest.label("newest"),
            stored.label("stored"),
        )
        .where(*where)
        .subquery("ranked")
    )
    r = ranked.c
    outcome = sa.and_(o.device_id == r.device_id, o.day == r.day)
    day_text = sa.func.to_char(r.day, "YYYY-MM-DD") if dialect == "postgresql" else r.day
    return (
        sa.select(
            r.device_id,
            day_text,
            *(r[name] for name in metrics),
            sa.case((o.failed, 1), else_=0),
            sa.case((o.id.is_(None), 0), else_=1),
            r.stored,
        )
        .select_from(ranked.outerjoin(_OUTCOME, outcome))
        .where(r.newest == 1)
    )
