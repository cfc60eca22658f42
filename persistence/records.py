"""Writing what one or more requests produced: audit rows and their predictions, together.

Predictions are the bulk of the writes (a batch request stores up to 1,000), so they travel
column by column (`PredictionBlock`) and bypass SQLAlchemy's per-statement machinery: values go
through the driver's fastest bulk path inside the same transaction as the audit rows: binary COPY
on PostgreSQL (persistence/pgcopy.py), multi-row INSERTs on SQLite with the values put through
the column types' own bind processors (the conversions SQLAlchemy applies; values shared by a
whole block are converted once). On SQLite the audit rows of a group commit go in one
multi-row INSERT too (see `_insert_sqlite`).
"""

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from itertools import repeat
from operator import itemgetter
from typing import Any, Protocol

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from persistence import notifications, pgcopy
from persistence.ids import packed, unpacked
from persistence.session import driver_errors, translate_errors
from persistence.tables import AuditEvent, Prediction
from persistence.types import bind_step

_AUDIT: sa.Table = AuditEvent.__table__  # type: ignore[attr-defined]
_AUDIT_COLUMNS = [column.name for column in _AUDIT.columns]
_AUDIT_ITEMS = itemgetter(*_AUDIT_COLUMNS)  # a row's values, in column order
# Every column a request may leave out, with the default the model declares (None, [], 0).
_AUDIT_DEFAULTS = {
    name: spec.get_default(call_default_factory=True)
    for name, spec in AuditEvent.model_fields.items()
    if not spec.is_required()
}
_PREDICTION: sa.Table = Prediction.__table__  # type: ignore[attr-defined]
_COLUMNS = [column.name for column in _PREDICTION.columns]
_BINARY = pgcopy.BinaryCopy(_PREDICTION)
_SHARED = frozenset({"created_at", "audit_event_id", "model_version_id", "threshold"})
_OPTIONAL = {"explanation": "explanations", "warnings": "warnings"}  # column -> block field
METRIC_COLUMNS = tuple(name for name in _COLUMNS if name.startswith("metric"))
_METRIC_SET = frozenset(METRIC_COLUMNS)
# One stored observation of a device: its id, observed_at, counters in METRIC_COLUMNS order.
DeviceObservation = tuple[str, datetime, tuple[float, ...]]


@dataclass(frozen=True)
class PredictionBlock:
    """The predictions one call made, column by column: row i of each sequence is prediction i.

    `metrics` maps each metric column (METRIC_COLUMNS) to its values; the four leading fields
    are shared by every prediction of the block. `explanations` and `warnings` are None when no
    prediction of the block has one (their columns are then NULL), else one entry per id.
    """

    audit_event_id: uuid.UUID
    model_version_id: int
    threshold: float
    created_at: datetime
    ids: Sequence[uuid.UUID]
    device_ids: Sequence[str | None]
    observed_at: Sequence[datetime]
    metrics: Mapping[str, Sequence[float]]
    failure_probability: Sequence[float]
    is_failure: Sequence[bool]
    explanations: Sequence[dict[str, Any] | None] | None = None
    warnings: Sequence[list[str] | None] | None = None

    def __post_init__(self) -> None:
        if self.metrics.keys() != _METRIC_SET:
            raise ValueError(f"metrics must have exactly the columns {METRIC_COLUMNS}")
        count = len(self.ids)
        for column in (self.device_ids, self.observed_at, self.failure_probability,
                       self.is_failure, self.explanations, self.warnings,
                       *self.metrics.values()):  # fmt: skip
            if column is not None and len(column) != count:
                raise ValueError("every column of a prediction block must have one value per id")

    def __len__(self) -> int:
        return len(self.ids)

    def column(self, name: str) -> Sequence[Any]:
        """The values of one `prediction` column, one per prediction."""
        if name in _SHARED:
            return [getattr(self, name)] * len(self)
        if name in self.metrics:
            return self.metrics[name]
        if name == "id":
            return self.ids
        if name == "device_id":
            return self.device_ids
        if name in _OPTIONAL:
            values = getattr(self, _OPTIONAL[name])
            return [None] * len(self) if values is None else values
        return getattr(self, name)  # type: ignore[no-any-return]

    def observations(self) -> list["DeviceObservation"]:
        """(device id, observed_at, counters in METRIC_COLUMNS order) of each prediction with a
        device id, in block order: what the block adds to its devices' histories."""
        columns = [self.metrics[name] for name in METRIC_COLUMNS]
        return [
            (device, self.observed_at[i], tuple(float(c[i]) for c in columns))
            for i, device in enumerate(self.device_ids)
            if device is not None
        ]

    def rows(self) -> list[dict[str, Any]]:
        """One dict per prediction, keyed by column name."""
        columns = [self.column(name) for name in _COLUMNS]
        return [dict(zip(_COLUMNS, values, strict=True)) for values in zip(*columns, strict=True)]

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled (for a writer process) with its ids packed into one bytes object."""
        values = [getattr(self, name) for name in _BLOCK_FIELDS]
        values[_BLOCK_FIELDS.index("ids")] = packed(self.ids)
        return (_unpickled_block, tuple(values))


_BLOCK_FIELDS = tuple(spec.name for spec in fields(PredictionBlock))


def _unpickled_block(*values: Any) -> PredictionBlock:
    given = dict(zip(_BLOCK_FIELDS, values, strict=True))
    given["ids"] = unpacked(given["ids"])
    return PredictionBlock(**given)


def audit_rows(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Audit rows with every column present: those not given take the model's defaults."""
    # One INSERT for many rows takes its columns from the first row: a key only later rows have
    # would be dropped from them, or refused. Requests set optional columns independently.
    return [{**_AUDIT_DEFAULTS, **row} for row in rows]


class Effect(Protocol):
    """A change a request makes besides its rows (a model switch), committed with them."""

    def apply(self, connection: Connection) -> None:
        """Make the change on the connection of the transaction (raise to refuse it)."""


@dataclass
class RequestRecord:
    """The rows one request must leave behind: its audit event, predictions, other changes."""

    audit: Mapping[str, Any]
    predictions: Sequence[PredictionBlock] = field(default_factory=list)
    effects: Sequence[Effect] = ()

    @property
    def prediction_count(self) -> int:
        """How many predictions the request made."""
        return sum(len(block) for block in self.predictions)


def write_records(
    engine: Engine, records: Sequence[RequestRecord], confirm: Callable[[], bool] | None = None
) -> bool:
    """Write the records of several requests in one transaction (all or nothing).

    Each record's effects are applied after the audit rows, in order; one that raises (a
    Conflict) fails the transaction, and the recorder retries the records one by one.

    `confirm` is asked right before COMMIT, once every row is written: when it answers False the
    transaction is rolled back instead (the caller changed its mind, e.g. a request stopped
    waiting) and False is returned; True means committed.
    """
    blocks = [block for r in records for block in r.predictions if len(block)]
    with translate_errors(), engine.connect() as connection:
        transaction = connection.begin()
        _insert_audit(connection, audit_rows(r.audit for r in records))
        for effect in (effect for r in records for effect in r.effects):
            effect.apply(connection)
        if blocks:
            _insert_predictions(connection, blocks)
        notifications.send_queued(connection)  # the effects' announcements, in one statement
        if confirm is not None and not confirm():
            transaction.rollback()
            return False
        transaction.commit()
    return True


def _insert_audit(connection: Connection, rows: list[dict[str, Any]]) -> None:
    """The audit rows; on SQLite in multi-row INSERTs (see `_insert_sqlite`), each value put
    through its column type's bind processor, as SQLAlchemy's own INSERT would."""
    dialect = connection.dialect
    if dialect.name != "sqlite":
        connection.execute(_AUDIT.insert(), rows)
        return
    values = _audit_values(dialect, rows)
    with driver_errors(dialect):
        _insert_sqlite(connection.connection.driver_connection, _AUDIT.name, _AUDIT_COLUMNS, values)


def _audit_values(dialect: sa.Dialect, rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The driver-level values of audit rows, in column order: only the columns whose type
    has a bind processor (ids, times, the duration, JSON: 7 of 22) go through it, a column of
    the whole group at a time (one `map` per column rather than a call per row and column)."""
    if not rows:
        return []
    columns: list[Any] = list(zip(*map(_AUDIT_ITEMS, rows), strict=True))
    for i, process in enumerate(_processors(dialect, _AUDIT, _AUDIT_COLUMNS)):
        if process is not None:
            columns[i] = _processed(process, columns[i])
    return list(zip(*columns, strict=True))


def _insert_predictions(connection: Connection, blocks: Sequence[PredictionBlock]) -> None:
    dialect = connection.dialect
    if dialect.name not in ("sqlite", "postgresql"):
        connection.execute(_PREDICTION.insert(), [row for b in blocks for row in b.rows()])
        return
    driver = connection.connection.driver_connection
    with driver_errors(dialect):
        if dialect.name == "sqlite":
            _insert_sqlite(driver, _PREDICTION.name, _COLUMNS, _bound_tuples(dialect, blocks))
        else:
            with driver.cursor() as cursor, cursor.copy(_BINARY.statement()) as copy:  # type: ignore[union-attr]
                copy.write(pgcopy.HEADER)
                for block in blocks:
                    copy.write(_BINARY.encode(len(block), block.column))
                copy.write(pgcopy.TRAILER)


_SQLITE_VARIABLES = 9_000  # per statement: well under SQLite's 32,766


def _insert_sqlite(
    driver: Any, table: str, columns: Sequence[str], values: Sequence[tuple[Any, ...]]
) -> None:
    # Multi-row INSERTs rather than executemany: sqlite3 releases the GIL around each statement
    # step, and executemany steps once per row; under load every re-acquisition of the GIL can
    # wait a whole switch interval behind the event loop (a group commit of 30 one-row requests
    # stepped 30 times for their audit rows alone). One step per 500 predictions avoids that.
    row = "(" + ", ".join("?" * len(columns)) + ")"
    head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "  # noqa: S608 (table names)
    per_statement = _SQLITE_VARIABLES // len(columns)
    for start in range(0, len(values), per_statement):
        part = values[start : start + per_statement]
        driver.execute(head + ", ".join([row] * len(part)), [v for r in part for v in r])


def _processors(
    dialect: sa.Dialect, table: sa.Table, columns: Sequence[str]
) -> list[Callable[[Any], Any] | None]:
    """Each column's bind processor on this dialect (None: the value goes as it is); looked up
    once per dialect (12 us for the audit table's 22 columns, on every group commit)."""
    key = (dialect, table.name, tuple(columns))  # a dialect hashes and compares by identity
    found = _PROCESSORS.get(key)
    if found is None:
        found = [table.c[name].type._cached_bind_processor(dialect) for name in columns]
        _PROCESSORS[key] = found
    return found


_PROCESSORS: dict[tuple[sa.Dialect, str, tuple[str, ...]], list[Callable[[Any], Any] | None]] = {}


def _bound_tuples(dialect: sa.Dialect, blocks: Sequence[PredictionBlock]) -> list[tuple[Any, ...]]:
    """The driver-level rows of the blocks, in `prediction` column order: each column of the
    whole group gathered first and put through its processor at once (a group commit of 32
    one-row requests: 0.43 -> 0.24 ms, in the writer thread that every request of it waits
    on; per block, column by column, most of the time went to the calls around each value)."""
    processors = [
        _json_text if name in _OPTIONAL else process
        for name, process in zip(_COLUMNS, _processors(dialect, _PREDICTION, _COLUMNS), strict=True)
    ]
    columns: list[Sequence[Any]] = []
    for name, process in zip(_COLUMNS, processors, strict=True):
        values: list[Any] = []
        if name in _SHARED:
            for block in blocks:
                value = getattr(block, name)
                values += repeat(process(value) if process else value, len(block))
        elif name in _OPTIONAL:
            kept = bind_step(_PREDICTION.c[name], dialect)  # e.g. the explanation's stored form
            for block in blocks:
                given = getattr(block, _OPTIONAL[name])
                if given is None:
                    values += repeat(None, len(block))
                else:
                    values += map(_json_text, given if kept is None else map(kept, given))
        else:
            for block in blocks:
                values += block.column(name)
            if process is not None:
                values = _processed(process, values)
        columns.append(values)
    return list(zip(*columns, strict=True))


def _json_text(value: Any) -> str | None:
    """A JSON column's bound value (None: SQL NULL), through orjson: explanations are the bulk
    of a block that has them, and orjson writes the same JSON text in a tenth of the time."""
    return None if value is None else orjson.dumps(value).decode()


def _processed(process: Callable[[Any], Any], values: Sequence[Any]) -> list[Any]:
    """Bound values of a column; a value that repeats (a batch's observation time) once."""
    if len(values) > 1 and isinstance(values[0], datetime):
        memo: dict[Any, Any] = {}
        return [memo[v] if v in memo else memo.setdefault(v, process(v)) for v in values]
    return list(map(process, values))
