"""Reading predictions for an export: every matching row in creation order, a batch at a time.

A batch is a keyset page on `(created_at, id)`, read in a short transaction of its own, so an
export holds no connection while its client reads. Every batch walks the creation-order index
(`CREATION_ORDER_INDEX`) on from where the last one stopped, whatever the filter: the
planner is told to (SQLite: `INDEXED BY`; PostgreSQL: no sorts), because otherwise a filter on
an indexed equality (model version, device, subject) or stale statistics make it gather and
sort every remaining match for each batch, and an export of a million rows would take minutes.
So an export reads its range of the index once in all; a filter only skips rows.

Rows come back as plain values, not ORM objects: the database writes the id and both times as
text itself, the way Python writes them (`str(uuid)`, and `datetime.isoformat()` of the UTC
time), so no value is converted one by one in Python.
"""

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlmodel import col

from persistence.predictions import Position, PredictionFilter, filtered
from persistence.records import METRIC_COLUMNS
from persistence.session import translate_errors
from persistence.tables import CREATION_ORDER_INDEX, ModelVersion, Prediction

# The values of an exported row, in this order; `id`, `created_at` and `observed_at` as text.
EXPORT_COLUMNS = (
    "id",
    "created_at",
    "observed_at",
    "device_id",
    "is_failure",
    "failure_probability",
    "threshold",
    "model_version_id",
    *METRIC_COLUMNS,
)
_TABLE: sa.Table = Prediction.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ExportBatch:
    """Rows of an export (values in EXPORT_COLUMNS order) and the position after the last."""

    rows: Sequence[Sequence[Any]]
    after: Position | None


def export_batch(
    engine: Engine, where: PredictionFilter, limit: int, after: Position | None = None
) -> ExportBatch:
    """Up to `limit` predictions the filter matches, oldest first, from just after `after`."""
    c = _TABLE.c
    query = filtered(sa.select(*_columns(engine.dialect.name)), where)
    if after is not None:
        position = sa.tuple_(
            sa.literal(after.value, c.created_at.type), sa.literal(after.id, c.id.type)
        )
        query = query.where(sa.tuple_(c.created_at, c.id) > position)
    query = query.order_by(c.created_at, c.id).limit(limit)
    with translate_errors(), engine.connect() as connection:
        _walk_creation_order(connection)
        # Straight from the driver: every column is selected as text or a number, which
        # SQLAlchemy would not convert, so its Row objects would only cost time.
        rows = connection.execute(query).cursor.fetchall()
    return ExportBatch(rows, _position(rows[-1]) if rows else after)


_FROM = re.compile(r"\bFROM prediction(?=\s)")
_FROM_INDEXED = f"FROM prediction INDEXED BY {CREATION_ORDER_INDEX}"


def _walk_creation_order(connection: Connection) -> None:
    """Make this connection's next query read `prediction` through the creation-order index."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("SET LOCAL enable_sort = off")  # until the transaction ends
    elif connection.dialect.name == "sqlite":
        # SQLAlchemy renders no table hints for SQLite: add it to this connection's statements.
        sa.event.listen(connection, "before_cursor_execute", _indexed_by, retval=True)


def _indexed_by(
    conn: Connection, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
) -> tuple[str, Any]:
    """The statement, reading `prediction` through the creation-order index."""
    if _FROM_INDEXED not in statement:
        statement = _FROM.sub(_FROM_INDEXED, statement, count=1)
    return statement, parameters


def version_names(engine: Engine) -> dict[int, str]:
    """The name of every model version, by id."""
    query = sa.select(col(ModelVersion.id), col(ModelVersion.version))
    with translate_errors(), engine.connect() as connection:
        return {row[0]: row[1] for row in connection.execute(query) if row[0] is not None}


def _position(row: Sequence[Any]) -> Position:
    """Where the row sits in creation order, read back from its text."""
    return Position(datetime.fromisoformat(row[1]), uuid.UUID(row[0]))


def _columns(dialect: str) -> list[Any]:
    """The selected values, in EXPORT_COLUMNS order, as this database can write them."""
    c = _TABLE.c
    # 0/1 on SQLite, a bool on PostgreSQL: either indexes ("NON_FAILURE", "FAILURE") alike,
    # and skipping the Boolean type's processor saves a call per row.
    plain = [c.device_id, sa.type_coerce(c.is_failure, sa.Integer)]
    numbers = [c.failure_probability, c.threshold, c.model_version_id]
    return [
        _id_text(c.id, dialect),
        _time_text(c.created_at, dialect),
        _time_text(c.observed_at, dialect),
        *plain,
        *numbers,
        *(c[name] for name in METRIC_COLUMNS),
    ]


_UUID_GROUPS = ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12))  # (start, length) in the hex


def _id_text(column: Any, dialect: str) -> Any:
    """The id as `str(uuid.UUID)` writes it: lower-case hex in groups of 8-4-4-4-12."""
    if dialect == "postgresql":
        return sa.cast(column, sa.Text)  # uuid's own output is that form
    raw = sa.type_coerce(column, sa.Text)  # stored as 32 hex digits
    groups = [sa.func.substr(raw, start, size) for start, size in _UUID_GROUPS]
    dashed: Any = groups[0]
    for group in groups[1:]:
        dashed = dashed + "-" + group
    return sa.func.lower(dashed)


def _time_text(column: Any, dialect: str) -> Any:
    """A time as `datetime.isoformat()` writes it in UTC: no fraction when it is .000000."""
    text: Any
    if dialect == "postgresql":
        utc = sa.func.timezone("UTC", column)
        text = sa.func.to_char(utc, 'YYYY-MM-DD"T"HH24:MI:SS.US')
    else:  # stored in UTC as 'YYYY-MM-DD HH:MM:SS.ffffff' (SQLAlchemy's SQLite format)
        raw = sa.type_coerce(column, sa.Text)
        text = sa.func.substr(raw, 1, 10) + "T" + sa.func.substr(raw, 12)
    # '.000000' can only be the fraction: nothing else in the text holds a dot.
    return sa.func.replace(text, ".000000", "") + "+00:00"
