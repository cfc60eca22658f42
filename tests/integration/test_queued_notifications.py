"""A group commit's announcements: queued by its effects, sent in one statement before COMMIT,
heard in order once committed, and never for a transaction that does not commit."""

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from graph.runtime.alerts import AnnouncedBlock
from persistence import (
    METRIC_COLUMNS,
    PredictionBlock,
    RequestRecord,
    is_sqlite,
    new_id,
    notifications,
    write_records,
)

CHANNEL = "failcast_test_queued"


@dataclass
class _Announce:
    """An effect that announces its request (as AnnouncedBlock does for a block)."""

    payload: str

    def apply(self, connection: Connection) -> None:
        notifications.queue(connection, CHANNEL, self.payload)


def _record(payload: str) -> RequestRecord:
    now = datetime.now(UTC)
    audit = {
        "id": new_id(), "received_at": now, "finished_at": now, "duration_ms": 1.0,
        "http_method": "POST", "http_path": "/graphql", "http_status": 200, "outcome": "ok",
        "error_codes": [], "predictions_created": 0,
    }  # fmt: skip
    return RequestRecord(audit=audit, effects=[_Announce(payload)])


def _listener(engine: Engine) -> psycopg.Connection:
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    listening = psycopg.connect(url, autocommit=True)
    listening.execute(f"LISTEN {CHANNEL}")
    return listening


def _heard(listening: psycopg.Connection, expected: int) -> list[str]:
    heard: list[str] = []
    deadline = time.monotonic() + 5
    while len(heard) < expected and time.monotonic() < deadline:
        heard += [n.payload for n in listening.notifies(timeout=0.2, stop_after=expected)]
    return heard


def _notify_statements(engine: Engine, work) -> int:
    sent: list[str] = []

    def seen(conn, cursor, statement, parameters, context, executemany) -> None:
        if "pg_notify" in statement:
            sent.append(statement)

    sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        work()
    finally:
        sa.event.remove(engine, "before_cursor_execute", seen)
    return len(sent)


def test_a_group_commit_announces_every_request_in_one_statement_in_order(db_engine):
    if is_sqlite(db_engine.url):
        pytest.skip("SQLite has no notifications")
    payloads = [f"request {i} {uuid.uuid4().hex}" for i in range(40)]
    with _listener(db_engine) as listening:
        statements = _notify_statements(
            db_engine, lambda: write_records(db_engine, [_record(p) for p in payloads])
        )
        assert statements == 1  # one round trip for the 40 announcements, not 40
        assert _heard(listening, len(payloads)) == payloads


def test_a_write_that_does_not_commit_announces_nothing_and_leaves_nothing_queued(db_engine):
    if is_sqlite(db_engine.url):
        pytest.skip("SQLite has no notifications")
    with _listener(db_engine) as listening:
        assert not write_records(db_engine, [_record("rolled back")], confirm=lambda: False)
        write_records(db_engine, [_record("committed")])  # the same pooled connection, again
        assert _heard(listening, 2) == ["committed"]


class _CountedBlock(AnnouncedBlock):
    """An announced block that counts how often its notification payload is built."""

    built = 0

    @property
    def payload(self) -> str:
        type(self).built += 1
        return "origin request first last 0.5 0.5"


def test_a_block_announcement_is_built_only_where_it_is_sent(db_engine):
    now = datetime.now(UTC)
    metrics = {name: [1.0] for name in METRIC_COLUMNS}
    block = PredictionBlock(
        new_id(), 1, 0.5, now, [new_id()], ["dev"], [now], metrics, [0.9], [True]
    )
    _CountedBlock.built = 0
    with db_engine.begin() as connection:
        _CountedBlock(block, "v1", "origin").apply(connection)
        notifications.send_queued(connection)
    # SQLite has no other process to tell: building the payload (per block) would be waste.
    assert _CountedBlock.built == (0 if is_sqlite(db_engine.url) else 1)
