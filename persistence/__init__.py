"""Persistence: tables, engines, the unit of work and repositories (all SQL lives here)."""

from persistence.engine import create_db_engine, is_sqlite, ping
from persistence.errors import Conflict, DatabaseUnavailable, NotFound, PersistenceError
from persistence.ids import id_floor, id_time_ms, new_id
from persistence.records import RequestRecord, write_records
from persistence.repositories import (
    AuditRepository,
    ModelVersionRepository,
    PredictionFilter,
    PredictionRepository,
)
from persistence.session import session_scope, translate_errors
from persistence.tables import OUTCOMES, AuditEvent, ModelVersion, Prediction

metadata = AuditEvent.metadata

__all__ = [
    "OUTCOMES",
    "AuditEvent",
    "AuditRepository",
    "Conflict",
    "DatabaseUnavailable",
    "ModelVersion",
    "ModelVersionRepository",
    "NotFound",
    "PersistenceError",
    "Prediction",
    "PredictionFilter",
    "PredictionRepository",
    "RequestRecord",
    "create_db_engine",
    "id_floor",
    "id_time_ms",
    "is_sqlite",
    "metadata",
    "new_id",
    "ping",
    "session_scope",
    "translate_errors",
    "write_records",
]
