"""The bench's storage line: the database's bytes per stored prediction (bench.stack's
`database_bytes`), measured on a real SQLite file and on the PostgreSQL test server."""

import dataclasses
from datetime import UTC, datetime

from support import register_version

from bench.measure import StorageCheck
from bench.report import Results, storage_table
from bench.stack import database_bytes
from persistence import (
    METRIC_COLUMNS,
    PredictionBlock,
    RequestRecord,
    new_id,
    new_ids,
    write_records,
)

EXPLANATION = {
    "kind": "CONTRIBUTIONS",
    "score": -3.0,
    "baseValue": -4.0,
    "contributions": [
        {
            "feature": f"metric{i % 9 + 1}_delta_{i}d",
            "value": i * 1.25,
            "contribution": 0.5 / (i + 1),
        }
        for i in range(31)
    ],
}


def _write(engine, version_id: int, rows: int, explained: bool) -> None:
    now = datetime.now(UTC)
    event = new_id()
    block = PredictionBlock(
        audit_event_id=event,
        model_version_id=version_id,
        threshold=0.5,
        created_at=now,
        ids=new_ids(rows),
        device_ids=[f"dev-{i}" for i in range(rows)],
        observed_at=[now] * rows,
        metrics={m: [float(i) for i in range(rows)] for m in METRIC_COLUMNS},
        failure_probability=[0.25] * rows,
        is_failure=[False] * rows,
    )
    if explained:
        block = dataclasses.replace(block, explanations=[EXPLANATION] * rows)
    audit = {
        "id": event, "received_at": now, "finished_at": now, "duration_ms": 1.0,
        "http_method": "POST", "http_path": "/graphql", "http_status": 200, "outcome": "ok",
        "error_codes": [], "predictions_created": rows,
    }  # fmt: skip
    write_records(engine, [RequestRecord(audit=audit, predictions=[block])])


def test_the_database_grows_by_what_its_predictions_take(db_url, db_engine, demo_artifact):
    version = register_version(db_engine, demo_artifact)
    empty = database_bytes(db_url)
    assert empty > 0
    for _ in range(20):
        _write(db_engine, version.id, 100, explained=False)
    plain = database_bytes(db_url)
    for _ in range(20):
        _write(db_engine, version.id, 100, explained=True)
    explained = database_bytes(db_url)
    # 2,000 rows each way; an explanation is stored with its prediction
    assert plain - empty > 2_000 * 100
    assert explained - plain > 2_000 * 600


def test_the_storage_table_shows_bytes_per_stored_prediction():
    check = StorageCheck("sqlite", 10, 10, 4, 4, 0, 0, database_bytes=10_000)
    [_, _, row] = storage_table_of(check)
    assert row.endswith("| exact | 2,500 |")
    [_, _, row] = storage_table_of(dataclasses.replace(check, database_bytes=None))
    assert row.endswith("| exact | - |")


def storage_table_of(check: StorageCheck) -> list[str]:
    results = Results([], [], [], [check], [], "", [])
    return storage_table(results)
