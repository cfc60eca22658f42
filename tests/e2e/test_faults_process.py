"""A real uvicorn stopped (SIGTERM) or killed (SIGKILL) under load: no answered prediction is lost.

Every input carries a unique deviceId, so each request is found in the database whatever its
client saw. A prediction recorded for a client that never got its answer is allowed after a
crash (the commit happened, the response died with the process), never after a clean stop.
"""

import contextlib
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from servers import Load, Outcome, missing_from_store, run_server
from sqlalchemy.engine import Engine

from persistence import is_sqlite

SHUTDOWN_LIMIT_S = 15.0
ENV = {"FAILCAST_MODEL_REFRESH_SECONDS": "0.2", "FAILCAST_LOG_LEVEL": "warning"}

AUDIT_WITHOUT_ITS_PREDICTIONS = """
SELECT a.id, a.predictions_created, count(p.id) AS stored
FROM audit_event a LEFT JOIN prediction p ON p.audit_event_id = a.id
GROUP BY a.id, a.predictions_created
HAVING count(p.id) <> a.predictions_created
"""
PREDICTIONS_WITHOUT_AUDIT = """
SELECT p.id FROM prediction p LEFT JOIN audit_event a ON a.id = p.audit_event_id
WHERE a.id IS NULL
"""


def _loads(base: str, prefix: str) -> tuple[Load, Load]:
    """Single predictions from 8 clients and 50-row batches from 2 more."""
    return (
        Load(base, workers=8, prefix=f"{prefix}1"),
        Load(base, workers=2, prefix=f"{prefix}b", batch_size=50),
    )


def _stored_device_ids(engine: Engine, prefix: str) -> set[str]:
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text("SELECT device_id FROM prediction WHERE device_id LIKE :p"),
            {"p": f"{prefix}%"},
        )
        return {row[0] for row in rows}


def _unanswered(outcomes: list[Outcome]) -> set[str]:
    return {device for o in outcomes if o.status is None for device in o.device_ids}


def _query(engine: Engine, sql: str) -> list[tuple]:
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(sa.text(sql))]


@contextlib.contextmanager
def _writes_blocked(db_url: str, engine: Engine) -> Iterator[None]:
    """Hold the database's write lock, so every commit of the server waits for us."""
    if is_sqlite(db_url):
        database = sa.make_url(db_url).database
        assert database is not None
        connection = sqlite3.connect(database, isolation_level=None, timeout=10)
        try:
            connection.execute("BEGIN IMMEDIATE")
            yield
            connection.execute("ROLLBACK")
        finally:
            connection.close()
    else:
        with engine.begin() as locked:  # shorter than the server's 5 s statement timeout
            locked.execute(sa.text("LOCK TABLE audit_event IN EXCLUSIVE MODE"))
            yield


def test_sigterm_under_load_finishes_in_flight_requests_and_exits_in_time(
    db_url, db_engine, active_model, tmp_path: Path
):
    with run_server(db_url, ENV, tmp_path / "uvicorn.log") as server:
        singles, batches = _loads(server.base, "term")
        with singles, batches:
            singles.wait_ok(30)
            batches.wait_ok(2)
            with _writes_blocked(db_url, db_engine):
                time.sleep(0.5)  # every client's request is now in flight, waiting to commit
                signalled = time.monotonic()
                server.process.send_signal(signal.SIGTERM)
                time.sleep(1.0)
                exited_early = server.process.poll()
                released = time.monotonic()
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.process.wait(timeout=SHUTDOWN_LIMIT_S + 5)
            exit_s = time.monotonic() - signalled
            outcomes = singles.stop() + batches.stop()
        returncode = server.process.returncode
        log = server.log()
    assert exited_early is None, "the server exited with requests in flight"
    assert returncode is not None and exit_s < SHUTDOWN_LIMIT_S, f"exit took {exit_s:.1f} s"
    # uvicorn re-raises the signal it shut down on, so a clean stop exits with -SIGTERM
    assert returncode in (0, -signal.SIGTERM), f"exit code {returncode}\n{log}"
    assert "Traceback" not in log and "shutdown failed" not in log, log
    assert [o for o in outcomes if o.status not in (200, None)] == []
    # sent well before the signal (so surely read by the server), answered after the release
    in_flight = [o for o in outcomes if o.started < signalled - 0.2 < released < o.finished]
    assert len(in_flight) >= 5, f"only {len(in_flight)} requests were held in flight"
    assert [o for o in in_flight if not o.ok] == [], "in-flight requests were not finished"
    late = [o for o in outcomes if o.ok and o.started > signalled + 0.5]
    assert late == [], "requests sent after the stop began were still served"
    assert missing_from_store(outcomes, db_engine) == []
    dropped = _unanswered(outcomes) & _stored_device_ids(db_engine, "term")
    assert dropped == set(), "requests processed and stored, but their answers were dropped"
    print(
        f"\nSIGTERM: exit {exit_s:.2f} s after the signal (code {returncode}), the last"
        f" {exit_s - (released - signalled):.2f} s after the database was released;"
        f" {len(outcomes)} requests, {sum(o.ok for o in outcomes)} ok,"
        f" {len(in_flight)} held in flight and finished,"
        f" {sum(o.status is None for o in outcomes)} refused or closed"
    )


def test_sigkill_under_load_loses_no_answered_prediction_and_leaves_no_orphan(
    db_url, db_engine, active_model, tmp_path: Path
):
    with run_server(db_url, ENV, tmp_path / "uvicorn.log") as server:
        singles, batches = _loads(server.base, "kill")
        with singles, batches:
            singles.wait_ok(30)
            batches.wait_ok(2)
            time.sleep(0.3)
            server.process.kill()
            server.process.wait(timeout=10)
            outcomes = singles.stop() + batches.stop()
    assert missing_from_store(outcomes, db_engine) == []
    # the schema refuses such rows too (tests/integration/test_prediction_references.py)
    assert _query(db_engine, PREDICTIONS_WITHOUT_AUDIT) == []
    assert _query(db_engine, AUDIT_WITHOUT_ITS_PREDICTIONS) == [], "a request half stored"
    if is_sqlite(db_url):
        assert _query(db_engine, "PRAGMA integrity_check") == [("ok",)]
        assert _query(db_engine, "PRAGMA foreign_key_check") == []
    unseen = _unanswered(outcomes) & _stored_device_ids(db_engine, "kill")
    print(
        f"\nSIGKILL: {len(outcomes)} requests, {sum(o.ok for o in outcomes)} ok,"
        f" {sum(o.status is None for o in outcomes)} unanswered,"
        f" of which {len(unseen)} predictions stored but never seen by their client"
    )
