"""The SQL tables. Constraints are declared here once; Alembic migrations mirror them."""

import uuid
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from persistence.types import ExplanationJSON, JSONType, NullableJSON, UTCDateTime

# Named constraints make migrations portable between SQLite (batch mode) and PostgreSQL.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

OUTCOMES = ("ok", "denied", "invalid", "error")
_STATS_COLUMNS = ("model_version_id", "failure_probability", "is_failure")
# The index that keeps predictions in creation order (keyset pages, statistics and exports).
CREATION_ORDER_INDEX = "ix_prediction_created_at_covering"
# Only the high-risk rows are indexed by probability: new rows land at random places in such an
# index, which cost SQLite half its batch throughput when every row was in it; the rows analysts
# page through highest first are these, and the rest of an ordering is read from the table.
HIGH_RISK = 0.5
# On PostgreSQL, `prediction`'s two references are not foreign keys but triggers that check
# (and lock) each distinct key once per statement, not once per row: about a third of a
# 1,000-row COPY was the row-by-row checks. Same guarantees, same SQLSTATE (alembic 0012).
# SQLite keeps them as foreign keys. The models declare them as foreign keys for both.
CHECKED_PER_STATEMENT_ON_POSTGRESQL = frozenset(
    {"fk_prediction_audit_event_id_audit_event", "fk_prediction_model_version_id_model_version"}
)


def in_schema_of(dialect: str) -> Callable[..., bool]:
    """Alembic's `include_object` for a database of `dialect`: what of the models its schema
    holds as such (compared by autogenerate and the migration tests)."""

    def include(_object: Any, name: str | None, type_: str, _reflected: bool, _other: Any) -> bool:
        return not (
            dialect == "postgresql"
            and type_ == "foreign_key_constraint"
            and name in CHECKED_PER_STATEMENT_ON_POSTGRESQL
        )

    return include


class ModelVersion(SQLModel, table=True):
    """A trained model: its artifact, threshold, metrics and where it came from."""

    __tablename__ = "model_version"
    __table_args__ = (
        # At most one active version: a partial unique index both databases enforce.
        sa.Index(
            "uq_model_version_single_active",
            "is_active",
            unique=True,
            sqlite_where=sa.text("is_active"),
            postgresql_where=sa.text("is_active"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    version: str = Field(max_length=64, unique=True)
    algorithm: str = Field(max_length=64)
    params: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType)
    feature_names: list[str] = Field(default_factory=list, sa_type=JSONType)
    threshold: float
    # A row is labelled a failure when its device fails within this many days of it (1: on its
    # own day), so the version's probabilities are of failure within this horizon.
    horizon_days: int = Field(default=1, sa_column_kwargs={"server_default": "1"})
    metrics: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType)
    trained_on_synthetic_data: bool = False
    data_sha256: str = Field(max_length=80)
    data_rows: int
    data_failures: int
    data_date_from: date | None = None
    data_date_to: date | None = None
    data_source: str = Field(max_length=255)
    lineage: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType)
    artifact_sha256: str = Field(max_length=64)
    artifact: bytes = Field(sa_type=sa.LargeBinary)
    created_at: datetime = Field(sa_type=UTCDateTime)
    activated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    is_active: bool = False
    # What the training inputs looked like (per-feature quantiles, min, max, share of zeros and
    # a bounded reference sample): input warnings and drift compare live inputs against it.
    # NULL for versions registered before profiles existed.
    input_profile: dict[str, Any] | None = Field(default=None, sa_type=NullableJSON)
    # Inputs and the probabilities this version gave them at registration: a server re-scores
    # them on load and refuses the version if any differs beyond 1e-9. NULL: registered before.
    golden_set: dict[str, Any] | None = Field(default=None, sa_type=NullableJSON)


class ModelActivation(SQLModel, table=True):
    """One switch of the active model version: who, when, from which to which, and why."""

    __tablename__ = "model_activation"
    __table_args__ = (sa.CheckConstraint("via IN ('api', 'cli', 'train')", name="via_known"),)

    id: int | None = Field(default=None, primary_key=True)  # increasing: newest first by id
    activated_at: datetime = Field(sa_type=UTCDateTime)
    to_version_id: int = Field(foreign_key="model_version.id", index=True)
    from_version_id: int | None = Field(default=None, foreign_key="model_version.id")
    subject: str | None = Field(default=None, max_length=255)  # the token's subject (api)
    reason: str | None = Field(default=None, max_length=1000)
    via: str = Field(max_length=16)  # 'api' (GraphQL), 'cli' (failcast models), 'train'
    # The request that made the switch (its audit event id); no foreign key: the audit row is
    # committed after the switch, with the answer.
    request_id: uuid.UUID | None = None


class ModelEvaluation(SQLModel, table=True):
    """A stored version scored on a labeled data file (`failcast evaluate`), and the verdict."""

    __tablename__ = "model_evaluation"

    id: int | None = Field(default=None, primary_key=True)
    model_version_id: int = Field(foreign_key="model_version.id", index=True)
    evaluated_at: datetime = Field(sa_type=UTCDateTime)
    data_source: str = Field(max_length=255)
    data_sha256: str = Field(max_length=80)
    data_rows: int
    data_failures: int
    same_data_as_training: bool
    metrics: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType)
    tolerance: float
    passed: bool
    # Why it did not pass: one sentence per metric that fell too far below training's.
    findings: list[str] = Field(default_factory=list, sa_type=JSONType)
    hostname: str = Field(max_length=255)


class Outcome(SQLModel, table=True):
    """What really happened to a device on a day: failed or not (the label of its predictions)."""

    __tablename__ = "outcome"
    __table_args__ = (
        # One outcome per device and day: recording it again replaces it (idempotent).
        sa.UniqueConstraint("device_id", "day"),
    )

    id: int | None = Field(default=None, primary_key=True)
    device_id: str = Field(max_length=64)
    day: date  # the UTC day of observed_at
    failed: bool
    observed_at: datetime = Field(sa_type=UTCDateTime, index=True)
    recorded_at: datetime = Field(sa_type=UTCDateTime)
    subject: str | None = Field(default=None, max_length=255)


class AuditEvent(SQLModel, table=True):
    """One row per API request, whatever its outcome. Append-only."""

    __tablename__ = "audit_event"
    __table_args__ = (
        sa.CheckConstraint("outcome IN ('ok', 'denied', 'invalid', 'error')", name="outcome_known"),
        # Searched by exact value; most requests bring no id of their own, so only those that do
        # are indexed (both databases use the index for `client_request_id = :value`).
        sa.Index(
            "ix_audit_event_client_request_id",
            "client_request_id",
            sqlite_where=sa.text("client_request_id IS NOT NULL"),
            postgresql_where=sa.text("client_request_id IS NOT NULL"),
        ),
    )

    id: uuid.UUID = Field(primary_key=True)  # the request id, sent back as X-Request-ID
    received_at: datetime = Field(sa_type=UTCDateTime, index=True)
    finished_at: datetime = Field(sa_type=UTCDateTime)
    duration_ms: float
    subject: str | None = Field(default=None, max_length=255, index=True)
    client_addr: str | None = Field(default=None, max_length=64)
    user_agent: str | None = Field(default=None, max_length=512)
    http_method: str = Field(max_length=16)
    http_path: str = Field(max_length=255)
    http_status: int
    operation_type: str | None = Field(default=None, max_length=16)
    operation_name: str | None = Field(default=None, max_length=255)
    query_sha256: str | None = Field(default=None, max_length=64)
    outcome: str = Field(max_length=16)
    error_codes: list[str] = Field(default_factory=list, sa_type=JSONType)
    predictions_created: int = 0
    # Added after sealing began: nullable, no server default (see sealing.FIRST_SEALED_COLUMNS).
    client_request_id: str | None = Field(default=None, max_length=64)  # the caller's X-Request-ID
    auth_failure: str | None = Field(default=None, max_length=32)  # why its token was refused
    idempotency_key: str | None = Field(default=None, max_length=255)  # the Idempotency-Key sent
    replay_of: uuid.UUID | None = None  # the request whose stored answer this one replayed
    # A `failureAlerts` subscription leaves two rows: 'start' and 'end', both naming it by the
    # id of its start row.
    subscription_event: str | None = Field(default=None, max_length=8)
    subscription_id: uuid.UUID | None = None


class Prediction(SQLModel, table=True):
    """One prediction, with the inputs it was made from and the request that asked for it."""

    __tablename__ = "prediction"
    __table_args__ = (
        # History queries: a device's timeline and latest prediction (and device id prefixes),
        # and pages ordered by observation or creation time or by probability, ties by id.
        sa.Index("ix_prediction_device_id_observed_at", "device_id", "observed_at"),
        # The time indexes also hold what statistics per time bucket read (analytics.py), so
        # those read the index alone. Key columns, not INCLUDE: SQLite has no INCLUDE.
        sa.Index("ix_prediction_observed_at_covering", "observed_at", "id", *_STATS_COLUMNS),
        sa.Index(CREATION_ORDER_INDEX, "created_at", "id", *_STATS_COLUMNS),
        sa.Index(
            "ix_prediction_high_risk",
            "failure_probability",
            "id",
            sqlite_where=sa.text(f"failure_probability >= {HIGH_RISK}"),
            postgresql_where=sa.text(f"failure_probability >= {HIGH_RISK}"),
        ),
    )

    id: uuid.UUID = Field(primary_key=True)  # UUIDv7: ordering by id is ordering by time
    created_at: datetime = Field(sa_type=UTCDateTime)
    observed_at: datetime = Field(sa_type=UTCDateTime)  # when the telemetry was taken
    audit_event_id: uuid.UUID = Field(foreign_key="audit_event.id", index=True)
    model_version_id: int = Field(foreign_key="model_version.id", index=True)
    device_id: str | None = Field(default=None, max_length=64)
    metric1: float
    metric2: float
    metric3: float
    metric4: float
    metric5: float
    metric6: float
    metric7: float
    metric9: float
    failure_probability: float
    threshold: float
    is_failure: bool
    # Why the model said so, as computed with the probability (model.explain); NULL when the
    # request did not ask for it (it is then computed from this row's own model version).
    explanation: dict[str, Any] | None = Field(default=None, sa_type=ExplanationJSON)
    # Inputs outside the training range of the version that made the prediction; NULL: none.
    warnings: list[str] | None = Field(default=None, sa_type=NullableJSON)


class IdempotencyKey(SQLModel, table=True):
    """A request made with an Idempotency-Key: its answer, replayed to repeats of it."""

    __tablename__ = "idempotency_key"
    __table_args__ = (sa.UniqueConstraint("subject", "key"),)

    id: int | None = Field(default=None, primary_key=True)
    subject: str = Field(max_length=255)  # keys are the caller's own: scoped to its subject
    key: str = Field(max_length=255)
    request_sha256: str = Field(max_length=64)  # method, path and body of the first request
    request_id: uuid.UUID  # the audit event of the request whose answer this is
    created_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)
    operation_type: str | None = Field(default=None, max_length=16)
    operation_name: str | None = Field(default=None, max_length=255)
    status: int
    content_type: str = Field(max_length=255)
    body: bytes = Field(sa_type=sa.LargeBinary)
    error_codes: list[str] = Field(default_factory=list, sa_type=JSONType)


DELIVERY_STATUSES = ("pending", "delivered", "dead")


class Webhook(SQLModel, table=True):
    """A receiver of failure alerts: where to POST them, which ones, and the signing secret."""

    __tablename__ = "webhook"

    id: uuid.UUID = Field(primary_key=True)  # UUIDv7: listed oldest first by id
    url: str = Field(max_length=2048)
    min_probability: float | None = None  # None: the threshold of the predicting version
    device_id_prefix: str | None = Field(default=None, max_length=64)
    # The HMAC key of Failcast-Signature: kept as is, since signing needs it; shown once.
    secret: str = Field(max_length=128)
    created_at: datetime = Field(sa_type=UTCDateTime)
    subject: str | None = Field(default=None, max_length=255)  # who created it
    request_id: uuid.UUID | None = None  # the audit event of the request that created it


class WebhookDelivery(SQLModel, table=True):
    """One prediction to POST to one webhook (the outbox): written with the prediction."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        sa.CheckConstraint("status IN ('pending', 'delivered', 'dead')", name="status_known"),
        # What the delivery workers look for: pending rows by when they are due.
        sa.Index(
            "ix_webhook_delivery_due",
            "next_attempt_at",
            sqlite_where=sa.text("status = 'pending'"),
            postgresql_where=sa.text("status = 'pending'"),
        ),
        sa.Index("ix_webhook_delivery_webhook_id_id", "webhook_id", "id"),
    )

    id: uuid.UUID = Field(primary_key=True)  # the Failcast-Delivery header: receivers dedupe
    webhook_id: uuid.UUID = Field(foreign_key="webhook.id", ondelete="CASCADE")
    # No foreign key: the prediction is inserted later in the same transaction.
    prediction_id: uuid.UUID
    created_at: datetime = Field(sa_type=UTCDateTime)
    body: bytes = Field(sa_type=sa.LargeBinary)  # the exact bytes POSTed (and signed)
    status: str = Field(default="pending", max_length=16)
    attempts: int = 0
    next_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    claim: uuid.UUID | None = None  # the worker's claim while it posts
    claimed_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_status_code: int | None = None  # the receiver's HTTP status of the last attempt
    last_error: str | None = Field(default=None, max_length=500)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class AuditSeal(SQLModel, table=True):
    """A sealed block of audit events: their digests, chained to the previous block."""

    __tablename__ = "audit_seal"

    id: int | None = Field(default=None, primary_key=True)
    sequence: int = Field(unique=True)  # 1, 2, 3...: two sealers cannot both extend the chain
    sealed_at: datetime = Field(sa_type=UTCDateTime)
    first_event_id: uuid.UUID
    last_event_id: uuid.UUID
    event_count: int
    row_digests: dict[str, str] = Field(default_factory=dict, sa_type=JSONType)
    prev_digest: str = Field(max_length=64)
    digest: str = Field(max_length=64)


class ServerInstance(SQLModel, table=True):
    """A live server process, so per-deployment limits can be shared among the processes."""

    __tablename__ = "server_instance"

    id: uuid.UUID = Field(primary_key=True)
    hostname: str = Field(max_length=255)
    pid: int
    started_at: datetime = Field(sa_type=UTCDateTime)
    last_seen: datetime = Field(sa_type=UTCDateTime, index=True)


class ModelRefusal(SQLModel, table=True):
    """A model version a server refused to load (bad digest, unknown format, wrong features)."""

    __tablename__ = "model_refusal"

    id: int | None = Field(default=None, primary_key=True)
    model_version_id: int = Field(foreign_key="model_version.id", index=True)
    artifact_sha256: str = Field(max_length=64)
    reason: str = Field(max_length=1000)
    refused_at: datetime = Field(sa_type=UTCDateTime)
    hostname: str = Field(max_length=255)
    pid: int


class RefusalTally(SQLModel, table=True):
    """Requests refused before being audited one by one, counted per client, reason and minute."""

    __tablename__ = "refusal_tally"
    __table_args__ = (
        # The key of the upsert. client_addr leads so this index also serves lookups by client;
        # window_start (purges, time ranges) has an index of its own.
        sa.UniqueConstraint("client_addr", "reason", "window_start"),
        sa.CheckConstraint("count > 0", name="count_positive"),
    )

    id: int | None = Field(default=None, primary_key=True)
    window_start: datetime = Field(sa_type=UTCDateTime, index=True)  # UTC, on a whole minute
    client_addr: str = Field(max_length=64)
    reason: str = Field(max_length=32)
    count: int
    first_seen: datetime = Field(sa_type=UTCDateTime)
    last_seen: datetime = Field(sa_type=UTCDateTime)
