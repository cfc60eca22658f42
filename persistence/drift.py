"""What drift reads from stored predictions: bin counts per feature, and a bounded sample.

The window is a model version's predictions whose `observed_at` lies in [start, end): the
time index `(observed_at, id, model_version_id, ...)` bounds the scan.

`window_bins` counts the window's values per PSI bin of every feature in ONE pass, in SQL: for
each bin edge e of a feature, SUM(CASE WHEN value <= e THEN 1 ELSE 0 END), i.e. the cumulative
count up to e; bin i is then the difference of two cumulative counts and the last bin (values
above the last edge) is the window's count minus the last cumulative one. These are the
profile's right-closed bins (model.profile.bin_index), compared in double precision on both
databases (the edges are bound as float parameters), so SQL and numpy put each value in the same
bin. Nothing of the window is loaded into Python but one row of counts.

`window_sample` reads at most `limit` rows of the window, spread evenly over it by observation
time (ties by id): with n rows, row k (1-based, in that order) is kept when
floor(k * limit / n) > floor((k - 1) * limit / n), which keeps exactly `limit` rows, about one
in n / limit, deterministically (the same window gives the same sample). The database numbers
the rows (ROW_NUMBER over the time index alone) and reads only the kept ones from the table.

`latest_start` bounds a window to its latest rows: the observation time of its `rows`-th latest
prediction, read backwards along the time index (`rows` index entries, whatever the window's
size). The drift gauges measure the window from there, so their cost does not grow with traffic.
"""

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlmodel import Session

from persistence.tables import Prediction
from persistence.types import UTCDateTime

_PREDICTION: sa.Table = Prediction.__table__  # type: ignore[attr-defined]


def in_window(version_id: int, start: datetime | None, end: datetime) -> list[Any]:
    """The conditions of a version's predictions observed in [start, end)."""
    p = _PREDICTION.c
    where = [p.model_version_id == version_id, p.observed_at < sa.literal(end, UTCDateTime())]
    if start is not None:
        where.append(p.observed_at >= sa.literal(start, UTCDateTime()))
    return where


def latest_start(
    session: Session, version_id: int, start: datetime | None, end: datetime, rows: int
) -> datetime | None:
    """The observation time of a version's `rows`-th latest prediction in [start, end), or None
    when the window holds fewer: [that time, end) holds its latest `rows` predictions (and any
    that share the `rows`-th one's observation time)."""
    p = _PREDICTION.c
    query = (
        sa.select(p.observed_at)
        .where(*in_window(version_id, start, end))
        .order_by(p.observed_at.desc())
        .offset(rows - 1)
        .limit(1)
    )
    found: datetime | None = session.execute(query).scalar()
    return found


def window_bins(
    session: Session,
    version_id: int,
    start: datetime,
    end: datetime,
    edges: Mapping[str, Sequence[float]],
) -> tuple[int, dict[str, list[int]]]:
    """(rows in the window, each feature's count per bin) for bins with these right edges."""
    p = _PREDICTION.c
    counted: list[Any] = [sa.func.count()]
    for name, cuts in edges.items():
        column = p[name]
        counted += [
            sa.func.coalesce(sa.func.sum(sa.case((column <= float(cut), 1), else_=0)), 0)
            for cut in cuts
        ]
    row = session.execute(sa.select(*counted).where(*in_window(version_id, start, end))).one()
    total = int(row[0])
    bins: dict[str, list[int]] = {}
    at = 1
    for name, cuts in edges.items():
        cumulative = [int(v) for v in row[at : at + len(cuts)]]
        at += len(cuts)
        bounds = [0, *cumulative, total]
        bins[name] = [bounds[i + 1] - bounds[i] for i in range(len(bounds) - 1)]
    return total, bins


def window_sample(
    session: Session,
    version_id: int,
    start: datetime,
    end: datetime,
    features: Sequence[str],
    total: int,
    limit: int,
) -> npt.NDArray[np.float64]:
    """At most `limit` rows (features as columns) of a window of `total` rows, spread evenly."""
    p = _PREDICTION.c
    columns = [p[name] for name in features]
    where = in_window(version_id, start, end)
    if total <= limit:
        query = sa.select(*columns).where(*where)
    else:
        # Rows are numbered from the time index alone (no table row is read for that), and
        # only the kept ones are read from the table, by primary key.
        rank = sa.func.row_number().over(order_by=(p.observed_at, p.id))
        numbered = sa.select(p.id, rank.label("k")).where(*where).subquery("numbered")
        k = numbered.c.k
        kept = sa.select(numbered.c.id).where(
            (k * limit) // total - ((k - 1) * limit) // total == 1
        )
        query = sa.select(*columns).where(p.id.in_(kept.scalar_subquery()))
    rows = session.execute(query).all()
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(features))
