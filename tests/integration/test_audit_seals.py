"""Sealed audit blocks: intact after concurrent sealing, and every kind of tampering reported."""

import threading
import time
import uuid
from datetime import UTC, datetime

import sqlalchemy as sa

from persistence import (
    RequestRecord,
    new_id,
    seal_pending,
    sealed_count,
    verify_seals,
    write_records,
)


def _event(**overrides) -> dict:
    now = datetime.now(UTC)
    row = {
        "id": new_id(),
        "received_at": now,
        "finished_at": now,
        "duration_ms": 1.25,
        "subject": "tester",
        "client_addr": "127.0.0.1",
        "user_agent": "pytest",
        "http_method": "POST",
        "http_path": "/graphql",
        "http_status": 200,
        "operation_type": "query",
        "operation_name": "Q",
        "query_sha256": "ab" * 32,
        "outcome": "ok",
        "error_codes": [],
        "predictions_created": 0,
    }
    return {**row, **overrides}


def _write(engine, n: int) -> list[uuid.UUID]:
    events = [_event() for _ in range(n)]
    write_records(engine, [RequestRecord(audit=e) for e in events])
    # Sealing with no lag takes ids older than the current millisecond: let it pass.
    time.sleep(0.002)
    return [e["id"] for e in events]


def test_sealed_trail_verifies(db_engine):
    _write(db_engine, 40)
    assert seal_pending(db_engine, lag_seconds=0, block_size=15) == 40
    report = verify_seals(db_engine)
    assert report.ok and report.blocks == 3 and report.events == 40


def test_events_younger_than_the_lag_are_not_sealed(db_engine):
    _write(db_engine, 5)
    assert seal_pending(db_engine, lag_seconds=3600) == 0
    assert sealed_count(db_engine) == 0


def test_altered_row_is_reported(db_engine):
    ids = _write(db_engine, 10)
    seal_pending(db_engine, lag_seconds=0)
    with db_engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE audit_event SET subject = 'mallory' WHERE id = :i"),
            {"i": _param(db_engine, ids[4])},
        )
    report = verify_seals(db_engine)
    assert report.altered == [str(ids[4])] and not report.deleted and not report.inserted


def test_deleted_row_is_reported(db_engine):
    ids = _write(db_engine, 10)
    seal_pending(db_engine, lag_seconds=0)
    with db_engine.begin() as connection:
        connection.execute(
            sa.text("DELETE FROM audit_event WHERE id = :i"), {"i": _param(db_engine, ids[7])}
        )
    assert verify_seals(db_engine).deleted == [str(ids[7])]


def test_row_inserted_inside_a_sealed_block_is_reported(db_engine):
    ids = _write(db_engine, 10)
    seal_pending(db_engine, lag_seconds=0)
    forged = uuid.UUID(int=ids[2].int + 1)  # sorts between two sealed rows
    write_records(db_engine, [RequestRecord(audit=_event(id=forged))])
    assert verify_seals(db_engine).inserted == [str(forged)]


def test_concurrent_sealers_keep_one_intact_chain(db_engine):
    _write(db_engine, 300)
    threads = [threading.Thread(target=seal_pending, args=(db_engine, 0, 25)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seal_pending(db_engine, lag_seconds=0, block_size=25)
    report = verify_seals(db_engine)
    assert report.ok
    assert report.events == sealed_count(db_engine) == 300


def _param(engine, value: uuid.UUID):
    # SQLite stores sa.Uuid as 32 hex characters; PostgreSQL has a native uuid type.
    return value.hex if engine.dialect.name == "sqlite" else value
