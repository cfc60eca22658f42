"""A prediction's references, its audit row and its model version, hold on both databases: on
SQLite as foreign keys; on PostgreSQL as triggers that check and lock each distinct key once
per statement (alembic 0012), with the foreign keys' guarantees, locks and SQLSTATEs."""

import dataclasses
from typing import Any

import pytest
import sqlalchemy as sa
from support import count_rows, register_version
from test_records import _audit, _block

from failcast.migrations import upgrade
from persistence import (
    AuditEvent,
    Conflict,
    ModelVersion,
    Prediction,
    RequestRecord,
    create_db_engine,
    new_id,
    write_records,
)

_PREDICTION = Prediction.__table__  # type: ignore[attr-defined]
_AUDIT = AuditEvent.__table__  # type: ignore[attr-defined]
_VERSION = ModelVersion.__table__  # type: ignore[attr-defined]


def _stored(engine: sa.Engine, version_id: int, predictions: int = 3):
    """A committed audit row with `predictions` predictions naming it (and the version)."""
    event_id = new_id()
    blocks = [_block(event_id, version_id, predictions)] if predictions else []
    write_records(engine, [RequestRecord(audit=_audit(event_id), predictions=blocks)])
    return event_id


@pytest.mark.parametrize("reference", ["audit_event_id", "model_version_id"])
def test_predictions_naming_a_row_that_does_not_exist_are_refused_with_their_request(
    db_engine, demo_artifact, reference
):
    version = register_version(db_engine, demo_artifact)
    event_id = new_id()
    good = _block(event_id, version.id)
    wrong = {"audit_event_id": new_id(), "model_version_id": version.id + 1_000}[reference]
    bad = dataclasses.replace(_block(event_id, version.id), **{reference: wrong})
    record = RequestRecord(audit=_audit(event_id), predictions=[good, bad])
    with pytest.raises(Conflict):
        write_records(db_engine, [record])
    # all or nothing: neither block nor the audit row stayed
    assert count_rows(db_engine, "prediction") == 0
    assert count_rows(db_engine, "audit_event") == 0


def test_an_audit_row_or_a_version_that_predictions_name_is_kept(db_engine, demo_artifact):
    version = register_version(db_engine, demo_artifact)
    event_id = _stored(db_engine, version.id)
    audit, versions, predictions = _AUDIT, _VERSION, _PREDICTION
    refused = [
        sa.delete(audit).where(audit.c.id == event_id),
        sa.update(audit).where(audit.c.id == event_id).values(id=new_id()),
        sa.delete(versions).where(versions.c.id == version.id),
        sa.update(predictions).values(audit_event_id=new_id()),
        sa.update(predictions).values(model_version_id=version.id + 1_000),
    ]
    for statement in refused:
        with pytest.raises(sa.exc.IntegrityError), db_engine.begin() as connection:
            connection.execute(statement)
    assert count_rows(db_engine, "prediction") == 3 and count_rows(db_engine, "audit_event") == 1
    # rows no prediction names go as before
    with db_engine.begin() as connection:
        connection.execute(sa.text("UPDATE audit_event SET duration_ms = 2.0"))
        connection.execute(sa.text("DELETE FROM prediction"))
        connection.execute(sa.delete(audit).where(audit.c.id == event_id))
    assert count_rows(db_engine, "audit_event") == 0


def _postgres(engine: sa.Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's references: SQLite has foreign keys, and no TRUNCATE")


def test_truncating_what_predictions_name_needs_the_predictions_truncated_too(
    db_engine, demo_artifact
):
    _postgres(db_engine)
    version = register_version(db_engine, demo_artifact)
    _stored(db_engine, version.id)
    for table in ("audit_event", "model_version"):
        with pytest.raises(sa.exc.NotSupportedError), db_engine.begin() as connection:
            connection.execute(sa.text(f"TRUNCATE {table} CASCADE"))
    assert count_rows(db_engine, "prediction") == 3
    with db_engine.connect() as connection:  # together they go (rolled back: other tables)
        connection.execute(sa.text("TRUNCATE prediction, audit_event, model_version CASCADE"))
        assert connection.execute(sa.text("SELECT count(*) FROM audit_event")).scalar() == 0
        connection.rollback()


def _lock_timeout(connection: sa.Connection) -> None:
    connection.execute(sa.text("SET LOCAL lock_timeout = '300ms'"))


def _audit_row_and_a_prediction_of_it(engine: sa.Engine, artifact: bytes) -> tuple[Any, dict]:
    """A committed audit row no prediction names yet (PostgreSQL), and a prediction row of it."""
    _postgres(engine)
    version = register_version(engine, artifact)
    event_id = _stored(engine, version.id, predictions=0)
    return event_id, _block(event_id, version.id, 1).rows()[0]


def test_a_delete_waits_for_a_prediction_being_stored_then_is_refused(db_engine, demo_artifact):
    event_id, row = _audit_row_and_a_prediction_of_it(db_engine, demo_artifact)
    with db_engine.connect() as storing, db_engine.connect() as deleting:
        storing.execute(sa.insert(_PREDICTION), [row])  # not committed: it holds a KEY SHARE lock
        _lock_timeout(deleting)
        with pytest.raises(sa.exc.OperationalError, match="lock timeout"):
            deleting.execute(sa.text("DELETE FROM audit_event WHERE id = :e"), {"e": event_id})
        deleting.rollback()
        storing.commit()
        with pytest.raises(sa.exc.IntegrityError):
            deleting.execute(sa.text("DELETE FROM audit_event WHERE id = :e"), {"e": event_id})
    assert count_rows(db_engine, "prediction") == 1


def test_a_prediction_waits_for_a_delete_of_its_audit_row_then_is_refused(db_engine, demo_artifact):
    event_id, row = _audit_row_and_a_prediction_of_it(db_engine, demo_artifact)
    with db_engine.connect() as deleting, db_engine.connect() as storing:
        deleting.execute(sa.text("DELETE FROM audit_event WHERE id = :e"), {"e": event_id})
        _lock_timeout(storing)
        with pytest.raises(sa.exc.OperationalError, match="lock timeout"):
            storing.execute(sa.insert(_PREDICTION), [row])
        storing.rollback()
        deleting.commit()
        with pytest.raises(sa.exc.IntegrityError, match="is not present in table"):
            storing.execute(sa.insert(_PREDICTION), [row])
    assert count_rows(db_engine, "prediction") == 0 and count_rows(db_engine, "audit_event") == 0


def test_the_check_looks_each_key_up_by_index_not_the_whole_table(scratch_url, demo_artifact):
    """A session keeps its trigger's plans. Joined with the statement's new rows, audit_event
    was planned as a whole-table scan while it was young and never analyzed (as in each of the
    bench's new databases), and scanned so at every statement as it grew: ~2 ms each. Each key
    is now looked up by the primary key, as a foreign key's own check does."""
    engine = create_db_engine(scratch_url, pool_size=1)  # one server session throughout
    try:
        _postgres(engine)
        upgrade(scratch_url)
        version = register_version(engine, demo_artifact)
        with engine.begin() as connection:
            connection.execute(sa.text("ALTER TABLE audit_event SET (autovacuum_enabled = false)"))
        for _ in range(100):  # group commits of 11 requests, from an empty audit_event
            ids = [new_id() for _ in range(11)]
            records = [RequestRecord(_audit(i), [_block(i, version.id, 1)]) for i in ids]
            write_records(engine, records)
        with engine.connect() as session:
            session.execute(sa.text("SELECT pg_stat_force_next_flush()"))
            session.commit()
            scans = sa.text(
                "SELECT seq_scan, seq_tup_read FROM pg_stat_user_tables"
                " WHERE relname = 'audit_event' AND schemaname = current_schema()"
            )
            _, read = session.execute(scans).one()
        # before: 204 scans read 111,100 rows; now a few scans while it is empty, if any
        assert read < 1_100, f"scans read {read} audit rows: the table was scanned whole"
    finally:
        engine.dispose()
