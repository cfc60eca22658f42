"""Prediction blocks: written by the driver's bulk path, read back exactly, on both databases."""

import dataclasses
import json
import sys
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from support import contributions_explanation, register_version

from persistence import (
    METRIC_COLUMNS,
    AuditEvent,
    Prediction,
    PredictionBlock,
    PredictionRepository,
    RequestRecord,
    new_id,
    new_ids,
    session_scope,
    write_records,
)
from persistence.records import audit_rows


def _audit(event_id) -> dict:
    now = datetime.now(UTC)
    return {
        "id": event_id, "received_at": now, "finished_at": now, "duration_ms": 1.0,
        "http_method": "POST", "http_path": "/graphql", "http_status": 200, "outcome": "ok",
        "error_codes": [], "predictions_created": 3,
    }  # fmt: skip


def _block(event_id, version_id: int, count: int = 3) -> PredictionBlock:
    awkward = [0.0, 1e-300, sys.float_info.max / 1e10, 123456789.125, 0.1 + 0.2]
    return PredictionBlock(
        audit_event_id=event_id,
        model_version_id=version_id,
        threshold=0.3333333333333333,
        created_at=datetime(2026, 11, 26, 12, 0, 0, 123456, tzinfo=UTC),
        ids=new_ids(count),
        device_ids=["dev-é-1", None, "x" * 64][:count],
        observed_at=[
            datetime(2001, 2, 3, 4, 5, 6, 789012, tzinfo=UTC),
            datetime(2026, 11, 26, 11, 59, 59, tzinfo=UTC),
            datetime(2026, 11, 26, 12, 0, 0, 123456, tzinfo=UTC),
        ][:count],
        metrics={
            m: [awkward[(i + j) % 5] for j in range(count)] for i, m in enumerate(METRIC_COLUMNS)
        },
        failure_probability=[0.1 + 0.2, 1e-17, 0.9999999999999999][:count],
        is_failure=[False, False, True][:count],
    )


def test_a_block_is_stored_value_for_value(db_engine, demo_artifact):
    version = register_version(db_engine, demo_artifact)
    event_id = new_id()
    block = _block(event_id, version.id)
    write_records(db_engine, [RequestRecord(audit=_audit(event_id), predictions=[block])])
    with session_scope(db_engine) as session:
        repo = PredictionRepository(session)
        for expected in block.rows():
            stored = repo.get(expected["id"])
            assert stored is not None
            assert {name: getattr(stored, name) for name in expected} == expected


def test_explanations_and_warnings_are_stored_where_given_and_null_elsewhere(
    db_engine, demo_artifact
):
    version = register_version(db_engine, demo_artifact)
    event_id = new_id()
    explanation = {
        "kind": "CONTRIBUTIONS",
        "score": -3.25,
        "baseValue": -4.0,
        "contributions": [{"feature": "metric4", "value": 7.0, "contribution": 0.75}],
    }
    with_them = dataclasses.replace(
        _block(event_id, version.id),
        explanations=[explanation, None, {"kind": "DECISION_PATH", "path": [], "note": "é\"'"}],
        warnings=[["metric4 above the training range (max 41)"], None, []],
    )
    without = _block(event_id, version.id, 2)
    record = RequestRecord(audit=_audit(event_id), predictions=[with_them, without])
    write_records(db_engine, [record])
    with session_scope(db_engine) as session:
        repo = PredictionRepository(session)
        stored = [repo.get(i) for i in [*with_them.ids, *without.ids]]
    assert [p.explanation for p in stored] == [*with_them.explanations, None, None]
    assert [p.warnings for p in stored] == [*with_them.warnings, None, None]


def test_several_requests_share_one_transaction(db_engine, demo_artifact):
    version = register_version(db_engine, demo_artifact)
    events = [new_id() for _ in range(3)]
    records = [
        RequestRecord(audit=_audit(e), predictions=[_block(e, version.id, n)])
        for e, n in zip(events, (1, 2, 3), strict=True)
    ]
    write_records(db_engine, records)
    with session_scope(db_engine) as session:
        stored = PredictionRepository(session).count()
    assert stored == 6 == sum(r.prediction_count for r in records)


def test_a_block_with_ragged_columns_is_refused():
    block = _block(new_id(), 1)
    with pytest.raises(ValueError, match="one value per id"):
        PredictionBlock(**{**block.__dict__, "device_ids": ["only-one"]})
    with pytest.raises(ValueError, match="exactly the columns"):
        PredictionBlock(**{**block.__dict__, "metrics": {"metric1": [1.0, 2.0, 3.0]}})


def test_ids_increase_even_past_4096_in_one_millisecond():
    ids = [*new_ids(10_000), new_id(), *new_ids(3)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert {i.version for i in ids} == {7} and {i.variant for i in ids} == {"specified in RFC 4122"}


def test_no_ids_asked_none_made_and_the_next_still_increase():
    before = new_id()
    assert new_ids(0) == []
    assert new_id() > before


def test_audit_rows_are_stored_as_sqlalchemys_own_insert_stores_them(db_engine):
    """write_records puts the audit rows of a group commit in one multi-row INSERT on SQLite;
    each stored value must be what SQLAlchemy's INSERT stores (the seals hash them)."""
    full = {
        **_audit(None),
        "received_at": datetime(2026, 11, 30, 10, 0, 0, 1, tzinfo=UTC),
        "finished_at": datetime(2026, 11, 30, 10, 0, 0, 999999, tzinfo=UTC),
        "duration_ms": 0.1 + 0.2,
        "subject": "sübject",
        "user_agent": "agent \u2603",
        "operation_type": "mutation",
        "operation_name": "P",
        "outcome": "invalid",
        "error_codes": ["BAD_USER_INPUT", "RATE_LIMITED"],
        "replay_of": new_id(),
        "client_request_id": "req-1",
    }
    bare = {
        k: v for k, v in _audit(None).items() if k not in ("error_codes", "predictions_created")
    }
    pairs = [(new_id(), new_id(), row) for row in (full, bare)]
    with db_engine.begin() as connection:
        for theirs, _, row in pairs:
            connection.execute(sa.insert(AuditEvent), audit_rows([{**row, "id": theirs}]))
    write_records(db_engine, [RequestRecord(audit={**row, "id": mine}) for _, mine, row in pairs])
    table = AuditEvent.__table__
    with db_engine.connect() as connection:
        for theirs, mine, _ in pairs:
            stored = [
                connection.execute(sa.select(table).where(table.c.id == i)).one()._asdict()
                for i in (theirs, mine)
            ]
            assert {**stored[0], "id": None} == {**stored[1], "id": None}
            if db_engine.dialect.name == "sqlite":  # the very text and numbers stored
                raw = [
                    connection.exec_driver_sql(
                        "SELECT * FROM audit_event WHERE id = ?", (i.hex,)
                    ).one()[1:]
                    for i in (theirs, mine)
                ]
                assert raw[0] == raw[1]


def test_a_group_commits_audit_rows_take_one_statement_step_on_sqlite(db_engine):
    """Each statement sqlite3 runs lets go of the GIL and must take it back, behind the event
    loop when it is busy: 30 one-row requests committed together must not insert their audit
    rows one statement execution at a time (executemany did, 30 executions)."""
    if db_engine.dialect.name != "sqlite":
        pytest.skip("SQLite's statement trace; PostgreSQL gets the rows in one pipeline")
    executed: list[str] = []

    def traced(dbapi, _record):
        dbapi.set_trace_callback(executed.append)

    db_engine.dispose()  # new connections, traced
    sa.event.listen(db_engine, "connect", traced)
    try:
        write_records(db_engine, [RequestRecord(audit=_audit(new_id())) for _ in range(30)])
    finally:
        sa.event.remove(db_engine, "connect", traced)
        db_engine.dispose()
    inserts = [s for s in executed if s.lstrip().upper().startswith("INSERT INTO AUDIT_EVENT")]
    assert len(inserts) == 1
    with db_engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM audit_event").scalar() >= 30


def test_a_groups_blocks_are_stored_as_sqlalchemys_own_insert_stores_them(db_engine, demo_artifact):
    """A group commit binds each column of all its blocks at once: every stored value of every
    block (blocks of 1 to 3 rows, some with explanations or warnings, from several requests)
    must be what SQLAlchemy's own INSERT of the same rows stores."""
    version = register_version(db_engine, demo_artifact)
    events = [new_id() for _ in range(4)]
    blocks = [
        _block(events[0], version.id, 1),
        dataclasses.replace(
            _block(events[1], version.id, 3),
            explanations=[
                {"kind": "DECISION_PATH", "path": [], "note": "é"},
                None,
                contributions_explanation(3),
            ],
        ),
        dataclasses.replace(_block(events[1], version.id, 2), warnings=[None, ["w"]]),
        dataclasses.replace(
            _block(events[2], version.id, 2), threshold=0.5, model_version_id=version.id
        ),
        _block(events[3], version.id, 3),
    ]
    by_event: dict = {}
    for block in blocks:
        by_event.setdefault(block.audit_event_id, []).append(block)
    write_records(
        db_engine,
        [RequestRecord(audit=_audit(e), predictions=found) for e, found in by_event.items()],
    )
    theirs = {}
    with db_engine.begin() as connection:
        for block in blocks:
            for row in block.rows():
                twin = new_id()
                theirs[row["id"]] = twin
                connection.execute(sa.insert(Prediction), [{**row, "id": twin}])
    table = Prediction.__table__
    with db_engine.connect() as connection:
        for mine, twin in theirs.items():
            stored = [
                connection.execute(sa.select(table).where(table.c.id == i)).one()._asdict()
                for i in (mine, twin)
            ]
            assert {**stored[0], "id": None} == {**stored[1], "id": None}
            if db_engine.dialect.name == "sqlite":  # the very text and numbers stored
                columns = [c.name for c in table.columns]
                raw = [
                    dict(
                        zip(
                            columns,
                            connection.exec_driver_sql(
                                "SELECT * FROM prediction WHERE id = ?", (i.hex,)
                            ).one(),
                            strict=True,
                        )
                    )
                    for i in (mine, twin)
                ]
                for name in ("explanation", "warnings"):  # JSON: orjson's text, same value
                    given = [None if r[name] is None else json.loads(r[name]) for r in raw]
                    assert given[0] == given[1]
                for name in ("id", "explanation", "warnings"):
                    raw[0].pop(name), raw[1].pop(name)
                assert raw[0] == raw[1]


def _stored_explanation(engine, prediction_id) -> dict:
    """The explanation column as the database holds it, read past SQLAlchemy's types."""
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            sql, key = "SELECT explanation FROM prediction WHERE id = ?", prediction_id.hex
            return json.loads(connection.exec_driver_sql(sql, (key,)).scalar_one())
        sql = "SELECT explanation FROM prediction WHERE id = %s"
        return connection.exec_driver_sql(sql, (prediction_id,)).scalar_one()


def test_a_models_explanation_is_stored_as_columns_on_sqlite_and_read_back_ascontributions_explanation(
    db_engine, demo_artifact
):
    version = register_version(db_engine, demo_artifact)
    event_id = new_id()
    made = [
        contributions_explanation(31),
        contributions_explanation(0),
        {"kind": "DECISION_PATH", "score": 0.5, "path": []},
    ]
    block = dataclasses.replace(_block(event_id, version.id), explanations=made)
    write_records(db_engine, [RequestRecord(audit=_audit(event_id), predictions=[block])])
    stored = _stored_explanation(db_engine, block.ids[0])
    if db_engine.dialect.name == "sqlite":
        assert "contributions" not in stored
        columns = stored["contributionColumns"]
        assert list(columns) == ["feature", "value", "contribution"]
        assert columns["feature"] == [c["feature"] for c in made[0]["contributions"]]
        assert columns["contribution"] == [c["contribution"] for c in made[0]["contributions"]]
    else:  # as made: PostgreSQL compresses the objects (TOAST), smaller than the columns
        assert stored == made[0]
    with session_scope(db_engine) as session:
        repo = PredictionRepository(session)
        read = [repo.get(i).explanation for i in block.ids]
    assert read == made
    if db_engine.dialect.name == "sqlite":  # (JSONB keeps no order of keys)
        assert [list(e) for e in read] == [list(e) for e in made]  # the keys in their places


def test_explanations_stored_as_objects_before_read_back_the_same(db_engine, demo_artifact):
    version = register_version(db_engine, demo_artifact)
    event_id = new_id()
    block = _block(event_id, version.id, 1)
    write_records(db_engine, [RequestRecord(audit=_audit(event_id), predictions=[block])])
    before = contributions_explanation(3)  # as rows written before the columns were
    table = Prediction.__table__
    with db_engine.begin() as connection:
        connection.execute(
            table.update()
            .where(table.c.id == block.ids[0])
            .values(explanation=sa.func.json(json.dumps(before)))
            if db_engine.dialect.name == "sqlite"
            else sa.text("UPDATE prediction SET explanation = CAST(:e AS jsonb) WHERE id = :i"),
            {}
            if db_engine.dialect.name == "sqlite"
            else {"e": json.dumps(before), "i": block.ids[0]},
        )
    assert "contributions" in _stored_explanation(db_engine, block.ids[0])
    with session_scope(db_engine) as session:
        assert PredictionRepository(session).get(block.ids[0]).explanation == before


def test_explained_predictions_take_about_half_a_sqlite_page_each(db_engine, demo_artifact):
    """A blend's explanation (31 contributions) as objects made each row need a 4 KiB page of
    its own; as columns two rows share one."""
    if db_engine.dialect.name != "sqlite":
        pytest.skip("SQLite's pages; PostgreSQL compresses large values itself (TOAST)")
    version = register_version(db_engine, demo_artifact)

    def used_pages() -> int:
        with db_engine.connect() as connection:
            count = connection.exec_driver_sql("PRAGMA page_count").scalar_one()
            return count - connection.exec_driver_sql("PRAGMA freelist_count").scalar_one()

    before, rows = used_pages(), 0
    for _ in range(10):
        event_id = new_id()
        block = dataclasses.replace(
            _block(event_id, version.id), explanations=[contributions_explanation(31)] * 3
        )
        write_records(db_engine, [RequestRecord(audit=_audit(event_id), predictions=[block])])
        rows += len(block)
    assert (used_pages() - before) / rows < 0.7
