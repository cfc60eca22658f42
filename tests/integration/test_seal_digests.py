"""Row digests stay what they were when audit_event gains columns, so old seals still verify."""

import time
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from test_audit_seals import _event, _param

from persistence import AuditEvent, RequestRecord, seal_pending, verify_seals, write_records
from persistence.sealing import FIRST_SEALED_COLUMNS, row_digest

# A fixed row, and its digests computed by the rule in force before audit_event had any column
# besides FIRST_SEALED_COLUMNS (every column, null or not, commit 77017e4). Never recompute them:
# they are what seals written by that code hold.
PINNED_ROW = {
    "id": uuid.UUID("01936f3a-8c2e-7b41-9d5e-0123456789ab"),
    "received_at": datetime(2026, 11, 26, 12, 0, 0, 123456, tzinfo=UTC),
    "finished_at": datetime(2026, 11, 26, 13, 0, 0, 250000, tzinfo=timezone(timedelta(hours=1))),
    "duration_ms": 0.1 + 0.2,
    "subject": "tester-é",
    "client_addr": "203.0.113.7",
    "user_agent": "pytest/9",
    "http_method": "POST",
    "http_path": "/graphql",
    "http_status": 200,
    "operation_type": "mutation",
    "operation_name": "Predict",
    "query_sha256": "ab" * 32,
    "outcome": "ok",
    "error_codes": ["RATE_LIMITED", "TIMEOUT"],
    "predictions_created": 3,
}
PINNED_DIGEST = "70ffad488237d251d20343392714867359147050c312c4d808e2033b76886d7b"
SPARSE_ROW = {
    **PINNED_ROW,
    **dict.fromkeys(
        ["subject", "client_addr", "user_agent", "operation_type", "operation_name"], None
    ),
    "query_sha256": None,
    "error_codes": [],
    "predictions_created": 0,
    "outcome": "denied",
    "http_status": 401,
}
SPARSE_DIGEST = "38f9529b593b8bae8ea86baca993ab37821584c909a211257d2035f26d9dc95f"


def test_digest_of_a_row_sealed_before_new_columns_is_unchanged():
    assert row_digest(AuditEvent(**PINNED_ROW)) == PINNED_DIGEST


def test_nulls_in_first_sealed_columns_are_still_digested():
    assert row_digest(AuditEvent(**SPARSE_ROW)) == SPARSE_DIGEST


def test_every_later_column_is_nullable_without_a_server_default():
    # A later column filled in for old rows (NOT NULL, or a server default) would change their
    # digests: the null-skipping rule only keeps old seals valid for columns that start null.
    columns = AuditEvent.__table__.columns
    assert FIRST_SEALED_COLUMNS.issubset(column.name for column in columns)
    later = [column for column in columns if column.name not in FIRST_SEALED_COLUMNS]
    assert all(column.nullable and column.server_default is None for column in later)


def test_a_later_column_with_a_value_is_part_of_the_digest():
    with_id = AuditEvent(**PINNED_ROW, client_request_id="r-1")
    assert row_digest(with_id) != PINNED_DIGEST
    assert row_digest(with_id) != row_digest(AuditEvent(**PINNED_ROW, client_request_id="r-2"))
    assert row_digest(with_id) != row_digest(AuditEvent(**PINNED_ROW, auth_failure="r-1"))


def _sealed(engine, **columns) -> uuid.UUID:
    events = [_event(**columns) for _ in range(3)]
    write_records(engine, [RequestRecord(audit=e) for e in events])
    time.sleep(0.002)  # sealing with no lag takes ids older than the current millisecond
    assert seal_pending(engine, lag_seconds=0) == 3
    return events[1]["id"]


def _set(engine, event_id: uuid.UUID, column: str, value: str | None) -> None:
    with engine.begin() as connection:
        connection.execute(
            sa.text(f"UPDATE audit_event SET {column} = :v WHERE id = :i"),
            {"v": value, "i": _param(engine, event_id)},
        )


def test_sealed_rows_with_later_columns_set_verify(db_engine):
    _sealed(db_engine, client_request_id="r-1", auth_failure="expired")
    report = verify_seals(db_engine)
    assert report.ok and report.events == 3


@pytest.mark.parametrize("column", ["client_request_id", "auth_failure"])
def test_a_later_column_set_on_a_sealed_row_is_reported(db_engine, column):
    event_id = _sealed(db_engine)
    _set(db_engine, event_id, column, "forged")
    report = verify_seals(db_engine)
    assert report.altered == [str(event_id)] and not report.deleted and not report.inserted


@pytest.mark.parametrize("column", ["client_request_id", "auth_failure"])
def test_a_later_column_changed_on_a_sealed_row_is_reported(db_engine, column):
    event_id = _sealed(db_engine, client_request_id="r-1", auth_failure="expired")
    _set(db_engine, event_id, column, "forged")
    assert verify_seals(db_engine).altered == [str(event_id)]


@pytest.mark.parametrize("column", ["client_request_id", "auth_failure"])
def test_a_later_column_cleared_on_a_sealed_row_is_reported(db_engine, column):
    event_id = _sealed(db_engine, client_request_id="r-1", auth_failure="expired")
    _set(db_engine, event_id, column, None)
    assert verify_seals(db_engine).altered == [str(event_id)]
