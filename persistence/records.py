"""Writing what one or more requests produced: audit rows and their predictions, together.

Predictions are the bulk of the writes (a batch request stores up to 1,000), so they bypass
SQLAlchemy's per-statement machinery: values go through the column types' own bind processors
(the same conversions SQLAlchemy applies), then to the driver's fastest bulk path, COPY on
PostgreSQL and executemany on SQLite, inside the same transaction as the audit rows.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from persistence.errors import Conflict, DatabaseUnavailable
from persistence.session import session_scope
from persistence.tables import AuditEvent, Prediction

_AUDIT = AuditEvent.__table__  # type: ignore[attr-defined]
_PREDICTION: sa.Table = Prediction.__table__  # type: ignore[attr-defined]
_COLUMNS = [column.name for column in _PREDICTION.columns]


@dataclass
class RequestRecord:
    """The rows one request must leave behind: its audit event and any predictions."""

    audit: Mapping[str, Any]
    predictions: Sequence[Mapping[str, Any]] = field(default_factory=list)


def write_records(engine: Engine, records: Sequence[RequestRecord]) -> None:
    """Write the records of several requests in one transaction (all or nothing)."""
    predictions = [p for r in records for p in r.predictions]
    with session_scope(engine) as session:
        connection = session.connection()
        connection.execute(_AUDIT.insert(), [r.audit for r in records])
        if predictions:
            _insert_predictions(connection, predictions)


def _insert_predictions(connection: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    dialect = connection.dialect
    if dialect.name not in ("sqlite", "postgresql"):
        connection.execute(_PREDICTION.insert(), list(rows))
        return
    values = _bound_tuples(dialect, rows)
    driver = connection.connection.driver_connection
    try:
        if dialect.name == "sqlite":
            marks = ", ".join("?" * len(_COLUMNS))
            sql = f"INSERT INTO prediction ({', '.join(_COLUMNS)}) VALUES ({marks})"  # noqa: S608
            driver.executemany(sql, values)  # type: ignore[union-attr]
        else:
            with driver.cursor() as cursor:  # type: ignore[union-attr]
                copy_sql = f"COPY prediction ({', '.join(_COLUMNS)}) FROM STDIN"
                with cursor.copy(copy_sql) as copy:
                    for value in values:
                        copy.write_row(value)
    except dialect.loaded_dbapi.IntegrityError as error:
        raise Conflict("the write conflicts with stored data") from error
    except dialect.loaded_dbapi.Error as error:
        raise DatabaseUnavailable("the database is unavailable") from error


def _bound_tuples(dialect: sa.Dialect, rows: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
    processors: list[Callable[[Any], Any] | None] = [
        _PREDICTION.c[name].type._cached_bind_processor(dialect) for name in _COLUMNS
    ]
    pairs = list(zip(_COLUMNS, processors, strict=True))
    return [tuple(p(row[n]) if p else row[n] for n, p in pairs) for row in rows]
