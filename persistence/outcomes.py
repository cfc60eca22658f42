"""Outcomes (what really happened to a device on a day) and the labels they give predictions.

One `outcome` row per device and UTC day: recording it again replaces it (an upsert on
(device_id, day), so the API mutation and `failcast outcomes import` are idempotent). Labels
are never written into `prediction`: a prediction is labeled at query time by the outcomes that
cover it, those of its device whose `observed_at` lies in [its observed_at, its observed_at +
horizon), i.e. the prediction's observed_at is in (outcome.observed_at - horizon,
outcome.observed_at]. Covered by a failed outcome: a failure; else by a non-failed one: a
non-failure; else unlabeled.

`labeled_groups` streams, in descending order of failure probability, one row per distinct
probability of the labeled predictions of a window: (probability, failures, non-failures,
true positives, false positives), the predicted class being each prediction's stored
`is_failure`. The join is driven either way by an index: (device_id, observed_at) of
`prediction` from each outcome, or (device_id, day) of `outcome` from each prediction.
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlmodel import Session

from persistence.drift import in_window
from persistence.tables import Outcome, Prediction
from persistence.types import UTCDateTime

_OUTCOME: sa.Table = Outcome.__table__  # type: ignore[attr-defined]
_PREDICTION: sa.Table = Prediction.__table__  # type: ignore[attr-defined]
GROUP_BATCH = 10_000  # probability groups per batch streamed to the caller
_UPSERT_ROWS = 500  # rows per INSERT statement (6 values each: far below SQLite's limits)
_REPLACED = ("failed", "observed_at", "recorded_at", "subject")  # what recording again changes


@dataclass(frozen=True)
class OutcomeRecord:
    """One outcome to store (replacing the device's outcome of the same UTC day)."""

    device_id: str
    failed: bool
    observed_at: datetime
    recorded_at: datetime
    subject: str | None = None

    @property
    def day(self) -> date:
        """The UTC day the outcome belongs to."""
        return self.observed_at.astimezone(UTC).date()

    def row(self) -> dict[str, Any]:
        """The `outcome` row."""
        return {
            "device_id": self.device_id,
            "day": self.day,
            "failed": self.failed,
            "observed_at": self.observed_at,
            "recorded_at": self.recorded_at,
            "subject": self.subject[:255] if self.subject else None,
        }

    def apply(self, connection: Connection) -> None:
        """Store it in the caller's transaction (the request's, with its audit row)."""
        upsert_outcomes(connection, [self])


def upsert_outcomes(connection: Connection, records: Sequence[OutcomeRecord]) -> int:
    """Insert or replace outcomes, keyed by (device_id, day); the last of a key wins.

    Returns how many distinct (device, day) keys were written.
    """
    latest = {(r.device_id, r.day): r.row() for r in records}  # one row per key per statement
    rows = list(latest.values())
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    for start in range(0, len(rows), _UPSERT_ROWS):
        insert = dialect.insert(_OUTCOME).values(rows[start : start + _UPSERT_ROWS])
        replaced = {name: insert.excluded[name] for name in _REPLACED}
        upsert = insert.on_conflict_do_update(index_elements=["device_id", "day"], set_=replaced)
        connection.execute(upsert)
    return len(rows)


def count_outcomes(session: Session) -> int:
    """How many outcomes are stored."""
    return int(session.execute(sa.select(sa.func.count()).select_from(_OUTCOME)).scalar_one())


def covered_predictions(session: Session, device_id: str, observed_at: datetime, days: int) -> int:
    """How many of a device's predictions an outcome observed then would label."""
    p = _PREDICTION.c
    query = sa.select(sa.func.count()).where(
        p.device_id == device_id,
        p.observed_at > sa.literal(observed_at - timedelta(days=days), UTCDateTime()),
        p.observed_at <= sa.literal(observed_at, UTCDateTime()),
    )
    return int(session.execute(query).scalar_one())


def window_count(session: Session, version_id: int, start: datetime | None, end: datetime) -> int:
    """How many predictions of a version were observed in [start, end)."""
    query = sa.select(sa.func.count()).where(*in_window(version_id, start, end))
    return int(session.execute(query).scalar_one())


def _horizon_start(session: Session, days: int) -> Any:
    """An outcome's observed_at minus the horizon, in each database's stored form."""
    at = _OUTCOME.c.observed_at
    if session.get_bind().dialect.name == "sqlite":
        # Stored as 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC): shift the seconds, keep the fraction,
        # so the result compares as text exactly like the stored values.
        moved = sa.func.strftime("%Y-%m-%d %H:%M:%S", sa.func.substr(at, 1, 19), f"-{days} days")
        return sa.type_coerce(moved.concat(sa.func.substr(at, 20)), UTCDateTime())
    return sa.type_coerce(at - sa.literal(timedelta(days=days), sa.Interval()), UTCDateTime())


def _count(condition: Any) -> Any:
    return sa.func.sum(sa.case((condition, 1), else_=0))


def labeled_groups(
    session: Session, version_id: int, start: datetime | None, end: datetime, days: int
) -> Iterator[npt.NDArray[np.float64]]:
    """Batches of (probability, failures, non-failures, tp, fp) rows, highest probability first.

    Each row is one distinct failure probability among the window's labeled predictions.
    """
    p, o = _PREDICTION.c, _OUTCOME.c
    covers = sa.and_(
        o.device_id == p.device_id,
        p.observed_at <= o.observed_at,
        p.observed_at > _horizon_start(session, days),
    )
    failed = sa.func.max(sa.case((o.failed, 1), else_=0)).label("failed")
    labeled = (
        sa.select(p.id, p.failure_probability, p.is_failure, failed)
        .select_from(_PREDICTION.join(_OUTCOME, covers))
        .where(*in_window(version_id, start, end))
        .group_by(p.id, p.failure_probability, p.is_failure)
        .subquery("labeled")
    )
    one, flag = labeled.c.failed, labeled.c.is_failure
    query = (
        sa.select(
            labeled.c.failure_probability,
            _count(one == 1),
            _count(one == 0),
            _count(sa.and_(flag, one == 1)),
            _count(sa.and_(flag, one == 0)),
        )
        .group_by(labeled.c.failure_probability)
        .order_by(labeled.c.failure_probability.desc())
    )
    result = session.execute(query, execution_options={"yield_per": GROUP_BATCH})
    for part in result.partitions():
        yield np.asarray(part, dtype=np.float64).reshape(len(part), 5)
