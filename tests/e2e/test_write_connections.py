"""SQLite: the group commits write through one connection of their own, never lent to reads.

SQLite empties a connection's page cache when another connection has written since its last
transaction, so a commit that takes whichever pooled connection is free finds the indexes'
pages gone again; the writer's own connection keeps them (`graph.app.build_runtime`). With
writer processes (FAILCAST_WRITER_PROCESS=true) that connection is the writer's, in its own
process: the server's connections only read.
"""

import sqlite3
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient
from support import ORIGINAL_EXAMPLE, count_rows, gql

from graph.app import create_app
from graph.settings import Settings
from persistence import SQLITE_CACHE_KIB, is_sqlite, writer

PREDICT = "mutation P($input: PredictInput!) { predict(input: $input) { id } }"
PAGE = "{ predictions(first: 5) { nodes { id } } }"


@pytest.fixture
def statements(db_url: str) -> Iterator[list[tuple[int, str]]]:
    """(connection, SQL) of every statement any SQLite connection opened from now on runs."""
    if not is_sqlite(db_url):
        pytest.skip("PostgreSQL has no per-connection page cache to keep: one shared pool")
    seen: list[tuple[int, str]] = []

    def traced(dbapi_connection: Any, _record: Any) -> None:
        if isinstance(dbapi_connection, sqlite3.Connection):
            key = id(dbapi_connection)
            dbapi_connection.set_trace_callback(lambda sql: seen.append((key, sql)))

    sa.event.listen(sa.pool.Pool, "connect", traced)
    try:
        yield seen
    finally:
        sa.event.remove(sa.pool.Pool, "connect", traced)


def _serve(settings: Settings, auth_headers: dict[str, str]) -> None:
    with TestClient(create_app(settings)) as client:
        for _ in range(4):
            body = gql(client, PREDICT, {"input": ORIGINAL_EXAMPLE}, auth_headers)
            assert "errors" not in body, body
            page = gql(client, PAGE, None, auth_headers)
            assert "errors" not in page, page


def _connections(statements: list[tuple[int, str]]) -> tuple[set[int], set[int]]:
    writers = {key for key, sql in statements if sql.startswith("INSERT INTO audit_event")}
    readers = {key for key, sql in statements if "FROM prediction" in sql and "LIMIT" in sql}
    assert readers, "the page of predictions was read through no traced connection"
    return writers, readers


def test_group_commits_in_threads_reuse_one_connection_that_reads_never_take(
    settings, db_engine, active_model, auth_headers, statements
):
    assert settings.writer_processes == 0  # the default
    _serve(settings, auth_headers)
    writers, readers = _connections(statements)
    assert len(writers) == 1, statements
    assert not writers & readers


def test_with_a_writer_process_the_servers_connections_only_read(
    settings, db_engine, active_model, auth_headers, statements
):
    processes = settings.model_copy(update={"writer_process": True})
    assert processes.writer_processes == 1
    _serve(processes, auth_headers)
    writers, _ = _connections(statements)
    assert not writers, "the server wrote audit rows itself"
    assert count_rows(db_engine, "prediction") == 4  # written by its writer process


def test_an_app_with_writer_processes_stores_what_it_answers(
    settings, db_engine, active_model, auth_headers
):
    """Both databases: requests through the app, committed by its writer processes."""
    processes = settings.model_copy(update={"writer_process": True})
    assert processes.writer_processes >= 1
    with TestClient(create_app(processes)) as client:
        answers = [
            gql(client, PREDICT, {"input": ORIGINAL_EXAMPLE}, auth_headers) for _ in range(3)
        ]
        writers = client.app.state.runtime.writer_processes.pids()  # type: ignore[attr-defined]
    assert all("errors" not in body for body in answers), answers
    assert len(writers) == processes.writer_processes
    stored = {str(uuid.UUID(str(row))) for row in _prediction_ids(db_engine)}
    assert stored == {body["data"]["predict"]["id"] for body in answers}


def _prediction_ids(engine: sa.Engine) -> list[Any]:
    with engine.connect() as connection:
        return list(connection.execute(sa.text("SELECT id FROM prediction")).scalars())


def _cache_kib(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        value = connection.exec_driver_sql("PRAGMA cache_size").scalar_one()
    return -int(value)  # negative: KiB; positive would be pages


def test_the_writers_connection_has_the_page_cache_the_setting_gives(
    settings, db_engine, active_model, auth_headers, statements
):
    """A 1,000-row batch for a fleet dirties a page of the device index per device: in the
    default 4 MiB cache of the other connections, SQLite spilled and read pages again."""
    assert Settings().sqlite_writer_cache_mib == 16
    given = settings.model_copy(update={"sqlite_writer_cache_mib": 48})
    with TestClient(create_app(given)) as client:
        body = gql(client, PREDICT, {"input": ORIGINAL_EXAMPLE}, auth_headers)
        assert "errors" not in body, body
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        assert _cache_kib(runtime.writes) == 48 * 1024
        assert _cache_kib(runtime.engine) == SQLITE_CACHE_KIB  # the readers keep theirs
    processes = given.model_copy(update={"writer_process": True})
    with TestClient(create_app(processes)) as client:
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        assert runtime.writer_processes.sqlite_cache_kib == 48 * 1024


def test_a_writer_process_connects_with_the_cache_it_is_asked_for(db_url):
    if not is_sqlite(db_url):
        pytest.skip("a page cache per connection is SQLite's")
    engine = writer._warm_engine(db_url, None, 12_345)  # what the zygote forks writers with
    try:
        assert _cache_kib(engine) == 12_345
    finally:
        engine.dispose()
