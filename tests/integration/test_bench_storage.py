"""The bench's storage line: the database's bytes per stored prediction (bench.stack's
`database_bytes`), measured on a real SQLite file and on the PostgreSQL test server."""

import dataclasses
from datetime import UTC, datetime

from support import contributions_explanation, register_version, request_record

from bench.measure import StorageCheck
from bench.report import Results, storage_table
from bench.stack import database_bytes
from persistence import write_records


def _write(engine, version_id: int, rows: int, explained: bool) -> None:
    now = datetime.now(UTC)
    record = request_record(version_id, [(f"dev-{i}", now, 0.25) for i in range(rows)])
    if explained:
        [block] = record.predictions
        explanations = [contributions_explanation(31)] * rows
        record = dataclasses.replace(
            record, predictions=[dataclasses.replace(block, explanations=explanations)]
        )
    write_records(engine, [record])


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
