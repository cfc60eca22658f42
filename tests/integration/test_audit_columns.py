"""The caller's request id and the token refusal reason: written in bulk, read and searched."""

from test_audit_seals import _event

from persistence import (
    AuditFilter,
    AuditRepository,
    RequestRecord,
    new_id,
    session_scope,
    write_records,
)


def _stored(engine, event_id):
    with session_scope(engine) as session:
        return AuditRepository(session).get(event_id)


def test_both_columns_are_written_and_read_back(db_engine):
    event = _event(client_request_id="client-req-42", auth_failure="expired", outcome="denied")
    write_records(db_engine, [RequestRecord(audit=event)])
    stored = _stored(db_engine, event["id"])
    assert (stored.client_request_id, stored.auth_failure) == ("client-req-42", "expired")


def test_rows_without_the_columns_read_back_as_null(db_engine):
    event = _event()
    write_records(db_engine, [RequestRecord(audit=event)])
    stored = _stored(db_engine, event["id"])
    assert stored.client_request_id is None and stored.auth_failure is None


def test_a_batch_mixing_rows_with_and_without_the_columns_keeps_every_value(db_engine):
    # One INSERT takes its columns from the first row: later rows' extra keys must not be lost.
    plain, full = _event(), _event(client_request_id="r-2", auth_failure="bad_signature")
    other = _event(auth_failure="missing")
    write_records(db_engine, [RequestRecord(audit=e) for e in (plain, full, other)])
    assert _stored(db_engine, plain["id"]).client_request_id is None
    assert _stored(db_engine, full["id"]).client_request_id == "r-2"
    assert _stored(db_engine, full["id"]).auth_failure == "bad_signature"
    assert _stored(db_engine, other["id"]).auth_failure == "missing"


def test_the_repository_insert_also_keeps_mixed_rows(db_engine):
    plain, full = _event(), _event(client_request_id="r-3", auth_failure="unknown_kid")
    with session_scope(db_engine) as session:
        AuditRepository(session).add_many([plain, full])
    assert _stored(db_engine, full["id"]).auth_failure == "unknown_kid"


def test_a_column_at_its_full_width_is_stored(db_engine):
    event = _event(client_request_id="x" * 64, auth_failure="y" * 32)
    write_records(db_engine, [RequestRecord(audit=event)])
    stored = _stored(db_engine, event["id"])
    assert (stored.client_request_id, stored.auth_failure) == ("x" * 64, "y" * 32)


def test_the_trail_is_searched_by_exact_client_request_id(db_engine):
    wanted = [_event(client_request_id="abc-1") for _ in range(2)]
    others = [_event(client_request_id="abc-10"), _event(client_request_id="ABC-1"), _event()]
    write_records(db_engine, [RequestRecord(audit=e) for e in [*wanted, *others]])
    with session_scope(db_engine) as session:
        found = AuditRepository(session).page(10, None, AuditFilter(client_request_id="abc-1"))
    assert [row.id for row in found] == sorted((e["id"] for e in wanted), reverse=True)


def test_the_client_request_id_filter_combines_with_the_others(db_engine):
    mine = _event(client_request_id="shared", subject="alice")
    theirs = _event(client_request_id="shared", subject="bob")
    write_records(db_engine, [RequestRecord(audit=e) for e in (mine, theirs)])
    where = AuditFilter(subject="alice", client_request_id="shared")
    with session_scope(db_engine) as session:
        assert [row.id for row in AuditRepository(session).page(10, None, where)] == [mine["id"]]


def test_an_unknown_client_request_id_finds_nothing(db_engine):
    write_records(db_engine, [RequestRecord(audit=_event(client_request_id="present"))])
    with session_scope(db_engine) as session:
        where = AuditFilter(client_request_id=str(new_id()))
        assert AuditRepository(session).page(10, None, where) == []
