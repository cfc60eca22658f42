"""Bulk history for the analysts' benches: the rows that requests of many predictions leave.

Each `stored_request` is one audited `predictBatch`-like request (an audit row and one
prediction block) handed to `persistence.write_records`, the path the server's own writer
takes, so a seeded database holds exactly what serving would have stored.
"""

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import sqlalchemy as sa

from persistence import (
    ModelVersion,
    ModelVersionRepository,
    PredictionBlock,
    RequestRecord,
    new_id,
    new_ids,
    session_scope,
)


def placeholder_version(engine: sa.Engine, version: str, source: str) -> int:
    """The id of a registered, inactive model version with no artifact (never loaded): what
    seeded predictions point at when no model serves them."""
    row = ModelVersion(
        version=version, algorithm="decision_tree", feature_names=[], threshold=0.5,
        data_sha256="bench", data_rows=0, data_failures=0, data_source=source,
        artifact_sha256="0" * 64, artifact=b"", created_at=datetime.now(UTC),
    )  # fmt: skip
    with session_scope(engine) as session:
        ModelVersionRepository(session).add(row)
    assert row.id is not None
    return row.id


def stored_request(
    *,
    model_version_id: int,
    threshold: float,
    created_at: datetime,
    device_ids: Sequence[str],
    observed_at: Sequence[datetime],
    metrics: Mapping[str, list[float]],
    probabilities: Sequence[float],
    subject: str,
) -> RequestRecord:
    """One successful request's audit row and its predictions, as the server writes them."""
    event_id, count = new_id(), len(probabilities)
    block = PredictionBlock(
        audit_event_id=event_id,
        model_version_id=model_version_id,
        threshold=threshold,
        created_at=created_at,
        ids=new_ids(count),
        device_ids=device_ids,
        observed_at=observed_at,
        metrics=metrics,
        failure_probability=probabilities,
        is_failure=[p >= threshold for p in probabilities],
    )
    audit = {
        "id": event_id, "received_at": created_at, "finished_at": created_at,
        "duration_ms": 1.0, "subject": subject, "http_method": "POST", "http_path": "/graphql",
        "http_status": 200, "outcome": "ok", "error_codes": [], "predictions_created": count,
    }  # fmt: skip
    return RequestRecord(audit=audit, predictions=[block])


def analyze(engine: sa.Engine) -> None:
    """Fresh planner statistics, as autovacuum (PostgreSQL) or a long-lived server would have."""
    with engine.begin() as connection:
        connection.execute(sa.text("ANALYZE"))
