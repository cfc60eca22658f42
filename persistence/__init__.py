"""Persistence: tables, engines, the unit of work and repositories (all SQL lives here)."""

from persistence import alerts, idempotency, lifecycle, notifications, predictions, webhooks
from persistence.engine import (
    SQLITE_CACHE_KIB,
    WalCheckpoints,
    create_db_engine,
    is_sqlite,
    is_sqlite_file,
    ping,
)
from persistence.errors import Conflict, DatabaseUnavailable, NotFound, PersistenceError
from persistence.ids import id_floor, id_time_ms, new_id, new_ids
from persistence.instances import heartbeat, leave
from persistence.predictions import OrderField, Position, PredictionFilter
from persistence.records import (
    METRIC_COLUMNS,
    Effect,
    PredictionBlock,
    RequestRecord,
    write_records,
)
from persistence.repositories import (
    AuditFilter,
    AuditRepository,
    ModelVersionRepository,
    PredictionRepository,
)
from persistence.sealing import SealReport, seal_pending, sealed_count, verify_seals
from persistence.session import session_scope, translate_errors
from persistence.tables import (
    OUTCOMES,
    AuditEvent,
    AuditSeal,
    IdempotencyKey,
    ModelActivation,
    ModelEvaluation,
    ModelRefusal,
    ModelVersion,
    Outcome,
    Prediction,
    RefusalTally,
    ServerInstance,
    Webhook,
    WebhookDelivery,
)
from persistence.tallies import (
    RefusalCount,
    RefusalTallyRepository,
    minute_window,
    record_refusal_counts,
)

metadata = AuditEvent.metadata

__all__ = [
    "METRIC_COLUMNS",
    "OUTCOMES",
    "SQLITE_CACHE_KIB",
    "AuditEvent",
    "AuditFilter",
    "AuditRepository",
    "AuditSeal",
    "Conflict",
    "DatabaseUnavailable",
    "Effect",
    "IdempotencyKey",
    "ModelActivation",
    "ModelEvaluation",
    "ModelRefusal",
    "ModelVersion",
    "ModelVersionRepository",
    "NotFound",
    "OrderField",
    "Outcome",
    "PersistenceError",
    "Position",
    "Prediction",
    "PredictionBlock",
    "PredictionFilter",
    "PredictionRepository",
    "RefusalCount",
    "RefusalTally",
    "RefusalTallyRepository",
    "RequestRecord",
    "SealReport",
    "ServerInstance",
    "WalCheckpoints",
    "Webhook",
    "WebhookDelivery",
    "alerts",
    "create_db_engine",
    "heartbeat",
    "id_floor",
    "id_time_ms",
    "idempotency",
    "is_sqlite",
    "is_sqlite_file",
    "leave",
    "lifecycle",
    "metadata",
    "minute_window",
    "new_id",
    "new_ids",
    "notifications",
    "ping",
    "predictions",
    "record_refusal_counts",
    "seal_pending",
    "sealed_count",
    "session_scope",
    "translate_errors",
    "verify_seals",
    "webhooks",
    "write_records",
]
