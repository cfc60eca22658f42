"""A device's stored observations, for the history features of its next prediction.

The history of a device is its stored predictions' telemetry, one observation per `observed_at`
(a prediction made again for the same device and time, a retry or a re-run, counts once: the
latest stored, by id). Every read goes through `ix_prediction_device_id_observed_at`:

- `latest_observations`: each device's newest observations (one statement on PostgreSQL, a
  LATERAL join over the devices; one short indexed statement per device on SQLite, in one
  transaction);
- `observations_before`: a device's newest observations before a time (a row that arrives out
  of order);
- `CommitLog.requests_since` and `devices_between` (SQLite): the requests whose predictions
  were committed after a rowid, and the devices of those another process made. SQLite has one
  writer at a time and gives each new row the next rowid, so rowid order is commit order: a
  server reads what other processes stored since it last looked, exactly;
- `block_observations` (PostgreSQL): the observations of a block another process announced
  (when its notification could not carry them).
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from persistence.records import METRIC_COLUMNS, DeviceObservation
from persistence.tables import Prediction

_TABLE = Prediction.__table__  # type: ignore[attr-defined]
_COLUMNS = [_TABLE.c.observed_at, _TABLE.c.id, *(_TABLE.c[name] for name in METRIC_COLUMNS)]


@dataclass(frozen=True, slots=True)
class Observation:
    """One stored observation of a device: when, which prediction, the counters (METRIC_COLUMNS)."""

    observed_at: datetime
    id: uuid.UUID
    values: tuple[float, ...]


def _distinct(rows: Sequence[Sequence[object]]) -> list[Observation]:
    """Observations, newest first, one per time (rows come newest first, ties by id desc)."""
    found: list[Observation] = []
    for row in rows:
        moment = row[0]
        assert isinstance(moment, datetime)
        if found and found[-1].observed_at == moment:
            continue  # an older prediction of the same observation
        ident = row[1]
        assert isinstance(ident, uuid.UUID)
        found.append(Observation(moment, ident, tuple(map(float, row[2:]))))  # type: ignore[arg-type]
    return found


def _newest_first(device: str, before: datetime | None, limit: int) -> sa.Select[Any]:
    query = sa.select(*_COLUMNS).where(_TABLE.c.device_id == device)
    if before is not None:
        query = query.where(_TABLE.c.observed_at < before)
    return query.order_by(_TABLE.c.observed_at.desc(), _TABLE.c.id.desc()).limit(limit)


@dataclass(frozen=True, slots=True)
class History:
    """A device's newest observations (newest first), whether they are all it has, and how many
    it has in all (one per time; counted only when asked, else -1)."""

    observations: list[Observation]
    complete: bool
    count: int


def _count(device: str, before: datetime | None) -> sa.Select[Any]:
    query = sa.select(sa.func.count(sa.distinct(_TABLE.c.observed_at))).where(
        _TABLE.c.device_id == device
    )
    if before is not None:
        query = query.where(_TABLE.c.observed_at < before)
    return query


def latest_observations(
    connection: Connection, devices: Sequence[str], wanted: int, count: bool = False
) -> dict[str, History]:
    """Per device: its newest `wanted` observations and, if asked, how many it has."""
    found: dict[str, History] = {}
    if not devices:
        return found
    # Duplicates of one observation are rare: read twice what is wanted, and read again with no
    # limit a device that had so many duplicates that fewer than `wanted` remained.
    rows = _latest_rows(connection, devices, 2 * wanted)
    for device in devices:
        found[device] = _history(connection, device, None, wanted, count, rows.get(device, []))
    return found


def _history(
    connection: Connection,
    device: str,
    before: datetime | None,
    wanted: int,
    count: bool,
    raw: Sequence[Sequence[object]],
) -> History:
    """A History from the newest 2 * `wanted` rows of a device (before `before`, if given)."""
    observations = _distinct(raw)
    if len(observations) < wanted and len(raw) == 2 * wanted:  # many duplicates: read them all
        observations = _distinct(connection.execute(_newest_first(device, before, 1 << 62)).all())
    complete = len(observations) <= wanted
    total = -1
    if count:
        total = len(observations) if complete else _counted(connection, device, before)
    return History(observations[:wanted], complete, total)


def _counted(connection: Connection, device: str, before: datetime | None) -> int:
    found: int = connection.execute(_count(device, before)).scalar_one()
    return found


def _latest_rows(
    connection: Connection, devices: Sequence[str], limit: int
) -> dict[str, list[Sequence[object]]]:
    if connection.dialect.name != "postgresql":
        return {d: list(connection.execute(_newest_first(d, None, limit)).all()) for d in devices}
    wanted = (
        sa.func.unnest(sa.literal(list(devices), sa.ARRAY(sa.String)))
        .table_valued("device")
        .render_derived(name="wanted")
    )
    inner = (
        sa.select(*_COLUMNS)
        .where(_TABLE.c.device_id == wanted.c.device)
        .order_by(_TABLE.c.observed_at.desc(), _TABLE.c.id.desc())
        .limit(limit)
        .lateral("latest")
    )
    query = sa.select(wanted.c.device, *inner.c).select_from(wanted).join(inner, sa.true())
    rows: dict[str, list[Sequence[object]]] = {}
    for row in connection.execute(query):
        rows.setdefault(row[0], []).append(row[1:])
    return rows


def observations_before(
    connection: Connection, device: str, before: datetime, wanted: int, count: bool = False
) -> History:
    """A device's newest `wanted` observations strictly before `before` and, if asked, how many
    it has before then."""
    raw = connection.execute(_newest_first(device, before, 2 * wanted)).all()
    return _history(connection, device, before, wanted, count, raw)


def observations_between(
    connection: Connection, device: str, start: datetime, end: datetime
) -> list[Observation]:
    """A device's observations with start <= observed_at < end, newest first."""
    query = (
        sa.select(*_COLUMNS)
        .where(
            _TABLE.c.device_id == device,
            _TABLE.c.observed_at >= start,
            _TABLE.c.observed_at < end,
        )
        .order_by(_TABLE.c.observed_at.desc(), _TABLE.c.id.desc())
    )
    return _distinct(connection.execute(query).all())


_LAST_ROWID = "SELECT max(rowid) FROM prediction"
# Each request's predictions among the first N committed after a rowid: grouped in SQLite, so a
# server reads one row per request, not one per prediction (a 1,000-row batch: 1 row, not 1,000).
_REQUESTS_SINCE = (
    "SELECT max(rowid), audit_event_id, count(*) FROM (SELECT rowid, audit_event_id "
    "FROM prediction WHERE rowid > ? ORDER BY rowid LIMIT ?) GROUP BY audit_event_id"
)
_DEVICES_BETWEEN = (
    "SELECT DISTINCT device_id FROM prediction WHERE rowid > ? AND rowid <= ? "
    "AND device_id IS NOT NULL AND audit_event_id IN ({})"
)
_IN_LIST = 500  # request ids per statement: well under SQLite's 32,766 variables


@dataclass(frozen=True, slots=True)
class Committed:
    """The predictions one request committed after a rowid: its last rowid, and how many."""

    last_rowid: int
    request_id: uuid.UUID
    count: int


class CommitLog:
    """SQLite: what was committed to the prediction table, in commit order, by rowid.

    Plain SQL straight to the driver (no statement to compile or cache-key): a server looks at
    it on the event loop, once for the requests that read histories together. `held(engine)`
    keeps a connection of the pool for that look alone (a pool checkout and a compiled select
    cost ~0.5 ms a request, half of a history-reading `predict`).
    """

    def __init__(self, run: Any, close: Any = None) -> None:
        self._run = run  # (sql, parameters) -> rows
        self._close = close

    @classmethod
    def held(cls, engine: Engine) -> "CommitLog":
        """Read through a driver connection taken from the engine's pool and kept until
        `close` (each statement its own snapshot: the latest commits)."""
        dbapi = engine.raw_connection()

        def run(sql: str, parameters: tuple[Any, ...]) -> list[Any]:
            cursor = dbapi.cursor()
            try:
                return list(cursor.execute(sql, parameters).fetchall())
            finally:
                cursor.close()

        return cls(run, dbapi.close)

    def last_rowid(self) -> int:
        """The highest rowid of the prediction table, 0 when it is empty."""
        ((value,),) = self._run(_LAST_ROWID, ())
        return int(value or 0)

    def requests_since(self, rowid: int, limit: int) -> list[Committed]:
        """The requests whose predictions are among the first `limit` committed after `rowid`,
        one entry per request (in no particular order)."""
        return [
            Committed(int(last), event if isinstance(event, uuid.UUID) else uuid.UUID(event), n)
            for last, event, n in self._run(_REQUESTS_SINCE, (rowid, limit))
        ]

    def devices_between(self, after: int, upto: int, requests: Sequence[uuid.UUID]) -> set[str]:
        """The device ids of the predictions of `requests` with a rowid in (after, upto]."""
        found: set[str] = set()
        for start in range(0, len(requests), _IN_LIST):
            part = [r.hex for r in requests[start : start + _IN_LIST]]
            sql = _DEVICES_BETWEEN.format(", ".join("?" * len(part)))
            found.update(device for (device,) in self._run(sql, (after, upto, *part)))
        return found

    def close(self) -> None:
        """Give the held connection back."""
        if self._close is not None:
            self._close()
            self._close = None


def block_observations(
    connection: Connection, request_id: uuid.UUID, first: uuid.UUID, last: uuid.UUID
) -> list[DeviceObservation]:
    """The observations of one announced block of predictions, in id order (see
    persistence.alerts): (device id, observed_at, counters) of each prediction with a device."""
    query = (
        sa.select(_TABLE.c.device_id, _TABLE.c.observed_at, *(_TABLE.c[n] for n in METRIC_COLUMNS))
        .where(
            _TABLE.c.audit_event_id == request_id,
            _TABLE.c.id >= first,
            _TABLE.c.id <= last,
            _TABLE.c.device_id.is_not(None),
        )
        .order_by(_TABLE.c.id)
    )
    return [(row[0], row[1], tuple(float(v) for v in row[2:])) for row in connection.execute(query)]
