"""Analytics over stored predictions: the devices most at risk, and statistics per time bucket.

Neither reads the whole table, and neither sorts more than one bucket's rows at a time.

`devices_at_risk` is a loose index scan. A recursive CTE walks the distinct device ids on the
index (device_id, observed_at): each step is one seek to the first id after the previous one
(`ORDER BY device_id LIMIT 1`), so the walk costs one seek per device however many predictions
each has. Each device's latest prediction is one more seek on the same index, backwards
(observation time, then id). Only those rows, one per device, are filtered by probability and
`since`, ranked with RANK() and cut to the page. A device id prefix starts the walk at the
prefix (`>=`) and LIKE keeps the matching ids; the walk goes on to the last device id rather
than stopping where the prefix ends, because under a linguistic collation (PostgreSQL's
en_US, say) ids that share a prefix need not be adjacent. 1,000,000 predictions of 1,000
devices: about 25 ms on PostgreSQL and 15 ms on SQLite (bench/history.py, a shared 2-core
machine).

`prediction_stats` never groups the table by a computed bucket, which would sort every row it
reads (PostgreSQL takes a bucket of a timestamp to have as many values as the timestamp, so
it plans a sort, and SQLite always sorts to group). Instead:

1. `walk`: a recursive CTE walks the buckets that hold predictions: the first row of the
   filter (one seek on the time column's index), its bucket, then the first row at or after
   that bucket's end, and so on; a step per non-empty bucket, at most `limit` steps.
2. `ranges`: each bucket as a time range, clipped to the filter's own range on that column.
3. `groups`: the predictions of each range (a range scan on the index, which covers the
   columns aggregated so the table is not read) counted, summed and averaged per model
   version: a hash aggregation on PostgreSQL.
4. p95, per group: the nearest-rank percentile, the value at 1-based rank ceil(0.95 * n) in
   ascending order, i.e. at rank n - ceil(0.95 * n) + 1 in descending order, with ceil in
   integer arithmetic ((95 * n + 99) / 100). A correlated subquery ranks the group's rows
   with ROW_NUMBER() (descending) and keeps the row at that rank; it sorts one group's rows,
   and PostgreSQL stops the window at that rank.

Buckets are computed by each database's own expression, both in UTC: on PostgreSQL
`date_bin` from a Monday (2000-01-03) with a fixed stride (hours, so no session time zone
enters), and the bucket's end by adding the stride; on SQLite, which stores UTC timestamps as
text (`YYYY-MM-DD HH:MM:SS.ffffff`, see types.UTCDateTime), `strftime` of the text cut to the
second (SQLite rounds fractions to the millisecond, which would move 23:59:59.9999 into the
next day), formatted like the stored text so that ranges compare as text. A 30-day daily window
over 1,000,000 predictions (90 days): about 160 ms on PostgreSQL, 320 ms on SQLite (SQLite
sorts to group, and has no hash aggregation).
"""

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import aliased
from sqlmodel import Session

from persistence.predictions import PredictionFilter, filtered
from persistence.predictions import _prefix as prefix_conditions  # the same prefix semantics
from persistence.tables import ModelVersion, Prediction
from persistence.types import UTCDateTime

_PREDICTION: sa.Table = Prediction.__table__  # type: ignore[attr-defined]
_VERSION: sa.Table = ModelVersion.__table__  # type: ignore[attr-defined]


class Bucket(StrEnum):
    """How long a statistics bucket is; weeks start on Monday, 00:00 UTC."""

    HOUR = "hour"
    DAY = "day"
    WEEK = "week"


class TimeField(StrEnum):
    """Which time of a prediction puts it in a bucket."""

    CREATED_AT = "created_at"
    OBSERVED_AT = "observed_at"


@dataclass(frozen=True)
class DeviceAtRisk:
    """A device, its latest prediction, and its rank by that prediction's probability."""

    device_id: str
    rank: int
    latest: Prediction


@dataclass(frozen=True)
class BucketStats:
    """The predictions of one model version in one bucket, summarised."""

    bucket_start: datetime
    model_version: str
    count: int
    predicted_failures: int
    failure_rate: float
    mean_probability: float
    p95_probability: float


def devices_at_risk(
    session: Session,
    min_probability: float,
    since: datetime | None,
    device_id_prefix: str | None,
    limit: int,
) -> list[DeviceAtRisk]:
    """Devices whose latest prediction is at least `min_probability`, riskiest first."""
    p = _PREDICTION.c
    latest = _latest_per_device(device_id_prefix)
    rank = sa.func.rank().over(order_by=p.failure_probability.desc()).label("rank")
    query = sa.select(_PREDICTION, rank).join(latest, p.id == latest.c.id)
    query = query.where(p.failure_probability >= min_probability)
    if since is not None:
        query = query.where(p.observed_at >= sa.literal(since, UTCDateTime()))
    ranked = query.subquery("ranked")
    row = aliased(Prediction, ranked)
    order = (ranked.c.rank, _binary(session, ranked.c.device_id))
    page = sa.select(row, ranked.c.rank).order_by(*order).limit(limit)
    found = session.execute(page).all()
    return [DeviceAtRisk(str(r.device_id), int(n), r) for r, n in found]


def _latest_per_device(prefix: str | None) -> Any:
    """The id of each device's latest prediction (by observation time, then id)."""
    p = _PREDICTION.c
    start = [p.device_id.is_not(None)] if prefix is None else [p.device_id >= prefix]
    first = sa.select(p.device_id).where(*start).order_by(p.device_id).limit(1)
    walk = sa.select(first.scalar_subquery().label("device_id")).cte("walk", recursive=True)
    after = sa.select(p.device_id).where(p.device_id > walk.c.device_id)
    step = after.order_by(p.device_id).limit(1).scalar_subquery()
    walk = walk.union_all(sa.select(step).where(walk.c.device_id.is_not(None)))
    newest = sa.select(p.id).where(p.device_id == walk.c.device_id)
    newest = newest.order_by(p.observed_at.desc(), p.id.desc()).limit(1)
    devices = [walk.c.device_id.is_not(None), *prefix_conditions(walk.c.device_id, prefix)]
    return sa.select(newest.scalar_subquery().label("id")).where(*devices).cte("latest")


def prediction_stats(
    session: Session, where: PredictionFilter, bucket: Bucket, field: TimeField, limit: int
) -> list[BucketStats]:
    """Up to `limit` rows of statistics, one per bucket and model version, in that order."""
    if session.get_bind().dialect.name == "postgresql":
        # Compiling this plan (JIT) takes 20-80 ms, more than the query then saves.
        session.execute(sa.text("SET LOCAL jit = off"))
    time = _PREDICTION.c[field.value]
    low, high, rest = _split(where, field)
    start, end = _bucket_sql(session, bucket)
    walk = _walk_buckets(time, start, end, low, high, rest, limit)
    b = walk.c.bucket_start
    lo = b if low is None else sa.case((b < _at(low), _at(low)), else_=b)
    hi = end(b) if high is None else sa.case((end(b) > _at(high), _at(high)), else_=end(b))
    ranges = sa.select(b, lo.label("lo"), hi.label("hi")).where(b.is_not(None)).cte("ranges")
    groups = _groups(ranges, time, rest)
    version = _VERSION.c.version
    n = groups.c.n
    rate = sa.cast(groups.c.failures, sa.Float) / n
    query = (
        sa.select(
            groups.c.bucket_start, version, n, groups.c.failures, rate, groups.c.mean,
            _p95(ranges, groups, time, rest),
        )
        .join_from(groups, ranges, ranges.c.bucket_start == groups.c.bucket_start)
        .join(_VERSION, _VERSION.c.id == groups.c.model_version_id)
        .order_by(groups.c.bucket_start, _binary(session, version))
        .limit(limit)
    )  # fmt: skip
    return [
        BucketStats(r[0], r[1], int(r[2]), int(r[3]), float(r[4]), float(r[5]), float(r[6]))
        for r in session.execute(query)
    ]


def _split(
    where: PredictionFilter, field: TimeField
) -> tuple[datetime | None, datetime | None, PredictionFilter]:
    """The filter's range on the bucketed time, and the rest of the filter."""
    if field is TimeField.OBSERVED_AT:
        rest = replace(where, observed_from=None, observed_to=None)
        return where.observed_from, where.observed_to, rest
    return where.created_from, where.created_to, replace(where, created_from=None, created_to=None)


def _at(moment: datetime) -> Any:
    """A time bound as a parameter of the stored type (UTC, in SQLite's text form)."""
    return sa.literal(moment, UTCDateTime())


def _walk_buckets(
    time: Any,
    start: Callable[[Any], Any],
    end: Callable[[Any], Any],
    low: datetime | None,
    high: datetime | None,
    rest: PredictionFilter,
    limit: int,
) -> Any:
    """The non-empty buckets in time order (at most `limit`): one index seek each."""

    def first_bucket(at_or_after: Any) -> Any:
        # One lower and one upper bound on the column: SQLite seeks on one bound per side.
        query = sa.select(start(time)).order_by(time).limit(1)
        if at_or_after is not None:
            query = query.where(time >= at_or_after)
        if high is not None:
            query = query.where(time < _at(high))
        return filtered(query, rest).scalar_subquery()

    anchor = first_bucket(None if low is None else _at(low))
    one = sa.literal_column("1", sa.Integer)
    walk = sa.select(anchor.label("bucket_start"), one.label("step")).cte("walk", recursive=True)
    following = first_bucket(end(walk.c.bucket_start))
    more = sa.and_(walk.c.bucket_start.is_not(None), walk.c.step < limit)
    return walk.union_all(sa.select(following, walk.c.step + 1).where(more))


def _groups(ranges: Any, time: Any, rest: PredictionFilter) -> Any:
    """Count, predicted failures and mean probability per bucket and model version."""
    p = _PREDICTION.c
    inside = sa.and_(time >= ranges.c.lo, time < ranges.c.hi)
    failures = sa.func.sum(sa.case((p.is_failure, 1), else_=0))
    query = (
        sa.select(
            ranges.c.bucket_start, p.model_version_id, sa.func.count().label("n"),
            failures.label("failures"), sa.func.avg(p.failure_probability).label("mean"),
        )
        .select_from(ranges.join(_PREDICTION, inside))
        .group_by(ranges.c.bucket_start, p.model_version_id)
    )  # fmt: skip
    return filtered(query, rest).cte("groups")


def _p95(ranges: Any, groups: Any, time: Any, rest: PredictionFilter) -> Any:
    """The nearest-rank 95th percentile of a group's probabilities (a correlated subquery)."""
    p = _PREDICTION.c
    rank = sa.func.row_number().over(order_by=p.failure_probability.desc())
    members = sa.select(p.failure_probability.label("value"), rank.label("rank")).where(
        time >= ranges.c.lo, time < ranges.c.hi, p.model_version_id == groups.c.model_version_id
    )
    ranked = filtered(members, rest).correlate(ranges, groups).subquery("ranked")
    n = groups.c.n
    from_top = n - (95 * n + 99) // 100 + 1  # ceil(0.95 n) from the bottom, counted from the top
    return sa.select(ranked.c.value).where(ranked.c.rank == from_top).scalar_subquery()


_STRIDE_HOURS = {Bucket.HOUR: 1, Bucket.DAY: 24, Bucket.WEEK: 168}
_SQLITE_START = {
    Bucket.HOUR: ("%Y-%m-%d %H:00:00.000000",),
    Bucket.DAY: ("%Y-%m-%d 00:00:00.000000",),
    # Back six days, then forward to the next Monday (or stay on it): the week's Monday.
    Bucket.WEEK: ("%Y-%m-%d 00:00:00.000000", "-6 days", "weekday 1"),
}
_SQLITE_STRIDE = {Bucket.HOUR: "+1 hour", Bucket.DAY: "+1 day", Bucket.WEEK: "+7 days"}


def _bucket_sql(
    session: Session, bucket: Bucket
) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    """Each dialect's expressions of a time's bucket start, and of a bucket start's end."""
    if session.get_bind().dialect.name == "sqlite":
        form, *shift = _SQLITE_START[bucket]
        stride = _SQLITE_STRIDE[bucket]

        def sqlite_start(time: Any) -> Any:
            to_second = sa.func.substr(time, 1, 19)
            return sa.type_coerce(sa.func.strftime(form, to_second, *shift), UTCDateTime())

        def sqlite_end(begin: Any) -> Any:
            moved = sa.func.strftime("%Y-%m-%d %H:%M:%S.000000", begin, stride)
            return sa.type_coerce(moved, UTCDateTime())

        return sqlite_start, sqlite_end
    stride_sql: Any = sa.literal_column(f"INTERVAL '{_STRIDE_HOURS[bucket]} hours'")
    monday: Any = sa.literal_column("TIMESTAMPTZ '2000-01-03 00:00:00+00'")

    def postgres_start(time: Any) -> Any:
        return sa.type_coerce(sa.func.date_bin(stride_sql, time, monday), UTCDateTime())

    def postgres_end(begin: Any) -> Any:
        return sa.type_coerce(begin + stride_sql, UTCDateTime())

    return postgres_start, postgres_end


def _binary(session: Session, column: Any) -> Any:
    """A string column ordered by code point on both databases (SQLite's default)."""
    if session.get_bind().dialect.name == "postgresql":
        return sa.collate(column, "C")
    return column
