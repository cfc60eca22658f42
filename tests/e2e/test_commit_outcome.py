"""What the client is told about its rows is what the database ends up holding.

A real uvicorn whose database stalls while a request waits for its commit: PostgreSQL behind the
loopback fault proxy (bytes read, nothing forwarded), SQLite held by another connection's write
lock. The request stops waiting after FAILCAST_COMMIT_TIMEOUT_SECONDS and answers 503 with
`extensions.stored`; once the database is back, the audit row written for that request id is
the 503's (no prediction), never the 200 the client did not get. Meanwhile /healthz stays fast.
"""

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from faultproxy import FaultProxy
from servers import PREDICT, HealthPoller, make_token, run_server, wait_audit_row
from support import ORIGINAL_EXAMPLE

from persistence import is_sqlite

COMMIT_TIMEOUT_S = 1.0
STALL_S = 2.5
ENV = {
    "FAILCAST_COMMIT_TIMEOUT_SECONDS": str(COMMIT_TIMEOUT_S),
    "FAILCAST_MODEL_REFRESH_SECONDS": "0.2",
    "FAILCAST_LOG_LEVEL": "warning",
}


@pytest.fixture
def served(db_url: str) -> Iterator[tuple[str, object]]:
    """(the URL the server uses, a context manager that stalls its database for STALL_S)."""
    if is_sqlite(db_url):
        yield db_url, lambda: _sqlite_locked(db_url)
        return
    url = sa.make_url(db_url)
    with FaultProxy(url.port or 5432, "127.0.0.1") as proxy:
        proxy.start()
        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(False)
        yield proxied, lambda: _stalled(proxy)


@contextlib.contextmanager
def _stalled(proxy: FaultProxy) -> Iterator[None]:
    proxy.stall()
    try:
        yield
    finally:
        proxy.accept()


@contextlib.contextmanager
def _sqlite_locked(db_url: str) -> Iterator[None]:
    connection = sqlite3.connect(sa.make_url(db_url).database, isolation_level=None, timeout=5)
    connection.execute("BEGIN IMMEDIATE")  # writers wait (busy_timeout); readers go on
    try:
        yield
    finally:
        connection.execute("ROLLBACK")
        connection.close()


def test_a_commit_stalled_past_the_timeout_is_answered_and_audited_alike(
    served, db_engine, active_model, tmp_path: Path
):
    url, stall = served
    headers = {"Authorization": f"Bearer {make_token('stall')}"}
    body = {"query": PREDICT, "variables": {"i": ORIGINAL_EXAMPLE}}
    with run_server(url, ENV, tmp_path / "uvicorn.log") as server:
        warm = httpx.post(f"{server.base}/graphql", json=body, headers=headers, timeout=10)
        assert warm.status_code == 200, warm.text
        with HealthPoller(server) as poller:
            with stall():
                started = time.monotonic()
                response = httpx.post(f"{server.base}/graphql", json=body, headers=headers,
                                      timeout=15)  # fmt: skip
                answered_s = time.monotonic() - started
                time.sleep(max(0.0, STALL_S - answered_s))
            time.sleep(0.5)
        log = server.log()
        request_id = response.json()["errors"][0]["extensions"]["requestId"]
        row = wait_audit_row(db_engine, request_id, timeout=15)
    assert response.status_code == 503, response.text
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "SERVICE_UNAVAILABLE"
    assert error["extensions"]["stored"] is False, error
    assert response.headers["retry-after"]
    assert COMMIT_TIMEOUT_S <= answered_s < COMMIT_TIMEOUT_S + 2.5, answered_s
    assert (row["http_status"], row["outcome"], row["predictions_created"]) == (503, "error", 0)
    assert "SERVICE_UNAVAILABLE" in str(row["error_codes"])
    with db_engine.connect() as connection:
        stored = connection.execute(sa.text("SELECT audit_event_id FROM prediction")).scalars()
        stored_for = [str(i).replace("-", "") for i in stored]
    assert request_id.replace("-", "") not in stored_for, "a prediction behind a 503 was stored"
    assert len(stored_for) == 1  # the warm-up's
    slow = [(status, round(s, 3)) for status, s in poller.answers if status != 200 or s >= 0.1]
    assert len(poller.answers) >= 10 and not slow, (slow, log[-2000:])


def test_a_key_whose_answer_was_not_stored_runs_again_on_retry(
    served, db_engine, active_model, tmp_path: Path
):
    url, stall = served
    headers = {"Authorization": f"Bearer {make_token('stall')}", "Idempotency-Key": "retry-me"}
    body = {"query": PREDICT, "variables": {"i": ORIGINAL_EXAMPLE}}
    with run_server(url, ENV, tmp_path / "uvicorn.log") as server:
        with stall():
            started = time.monotonic()
            refused = httpx.post(f"{server.base}/graphql", json=body, headers=headers, timeout=15)
            time.sleep(max(0.0, STALL_S - (time.monotonic() - started)))
        time.sleep(0.5)
        retried = httpx.post(f"{server.base}/graphql", json=body, headers=headers, timeout=15)
        replayed = httpx.post(f"{server.base}/graphql", json=body, headers=headers, timeout=15)
    assert (
        refused.status_code == 503 and refused.json()["errors"][0]["extensions"]["stored"] is False
    )
    # Nothing of the 503's request was kept, its answer included: the retry runs.
    assert retried.status_code == 200 and "idempotent-replayed" not in retried.headers
    assert replayed.headers["idempotent-replayed"] == "true"
    assert replayed.content == retried.content
    with db_engine.connect() as connection:
        keys = connection.execute(sa.text("SELECT request_id FROM idempotency_key")).scalars()
        kept = [str(k).replace("-", "") for k in keys]
        predictions = connection.execute(sa.text("SELECT count(*) FROM prediction")).scalar()
    assert kept == [retried.headers["x-request-id"].replace("-", "")]
    assert predictions == 1


@contextlib.contextmanager
def _slow_commits(engine: sa.Engine, seconds: float, fail: bool) -> Iterator[None]:
    """PostgreSQL: every COMMIT that carries an audit row takes `seconds` (and fails if asked).

    A deferred constraint trigger runs at COMMIT time, after every INSERT went through and the
    rows were claimed: the one moment whose outcome a waiting request cannot know.
    """
    refuse = " RAISE EXCEPTION 'commit refused';" if fail else ""
    # Only the request's own row (200): the 503 row written instead must go through.
    body = (
        f"IF NEW.http_status = 200 THEN PERFORM pg_sleep({seconds});{refuse} END IF; RETURN NULL;"
    )
    with engine.begin() as connection:
        connection.execute(sa.text(
            "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            + body + " END $$"
        ))  # fmt: skip
        connection.execute(sa.text(
            "CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON audit_event "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit()"
        ))  # fmt: skip
    try:
        yield
    finally:
        with engine.begin() as connection:
            connection.execute(sa.text("DROP TRIGGER IF EXISTS slow_commit ON audit_event"))
            connection.execute(sa.text("DROP FUNCTION IF EXISTS slow_commit()"))


@pytest.mark.parametrize("fail", [False, True], ids=["commit-lands", "commit-fails"])
def test_a_commit_whose_outcome_is_unknown_says_so_and_the_trail_settles_it(
    db_url, db_engine, active_model, tmp_path: Path, fail: bool
):
    if is_sqlite(db_url):
        pytest.skip("a COMMIT that takes seconds needs PostgreSQL's deferred triggers")
    headers = {"Authorization": f"Bearer {make_token('unknown')}", "X-Request-ID": "retry-me-1"}
    body = {"query": PREDICT, "variables": {"i": ORIGINAL_EXAMPLE}}
    with (
        run_server(db_url, ENV, tmp_path / "uvicorn.log") as server,
        _slow_commits(db_engine, COMMIT_TIMEOUT_S * 3, fail),
    ):
        started = time.monotonic()
        response = httpx.post(f"{server.base}/graphql", json=body, headers=headers, timeout=15)
        answered_s = time.monotonic() - started
        request_id = response.json()["errors"][0]["extensions"]["requestId"]
        row = wait_audit_row(db_engine, request_id, timeout=15)
    error = response.json()["errors"][0]
    assert response.status_code == 503 and error["extensions"]["stored"] == "unknown", error
    assert answered_s < COMMIT_TIMEOUT_S + 1.5, answered_s
    assert row["client_request_id"] == "retry-me-1"  # what the client looks it up by
    with db_engine.connect() as connection:
        stored = connection.execute(sa.text("SELECT count(*) FROM prediction")).scalar_one()
    if fail:  # the COMMIT failed: the 503's own row, and nothing else
        assert (row["http_status"], row["predictions_created"], stored) == (503, 0, 0)
    else:  # it landed: the trail says so, and the prediction is there to be found
        assert (row["http_status"], row["predictions_created"], stored) == (200, 1, 1)
