"""The background checkpoint keeps a busy SQLite WAL short: under writes that never pause and
readers that never stop, a WAL only starts over when told to (a RESTART checkpoint), else it
grows until the committing writer checkpoints it itself (persistence/engine.py)."""

import itertools
import threading
import time
from pathlib import Path

import sqlalchemy as sa

from persistence import create_db_engine
from persistence.engine import SQLITE_WAL_RESTART_WAIT_MS, WalCheckpoints

RESTART_BYTES = 256 * 1024


def _busy_database(
    tmp_path: Path, seconds: float, restart_bytes: int
) -> tuple[list[int], int, int]:
    """(the WAL's frame counts seen, restarts, commits) of `seconds` of commits and reads, with
    `checkpoint` every 20 ms as a server runs it."""
    path = tmp_path / "busy.db"
    engine = create_db_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB)")
    stop = threading.Event()
    commits = [0]

    def write() -> None:
        with engine.connect() as connection:
            while not stop.is_set():
                with connection.begin():
                    connection.execute(sa.text("INSERT INTO t (body) VALUES (randomblob(3000))"))
                commits[0] += 1

    def read() -> None:
        with engine.connect() as connection:
            while not stop.is_set():
                connection.exec_driver_sql("SELECT count(*) FROM t").scalar_one()
                connection.rollback()

    threads = [threading.Thread(target=write), threading.Thread(target=read)]
    for thread in threads:
        thread.start()
    seen, restarts = [], 0
    checkpoint = WalCheckpoints(engine, restart_bytes)
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            time.sleep(0.02)
            restarts += checkpoint()
            with engine.connect() as connection:
                frames = connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()[1]
            seen.append(frames)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        engine.dispose()
    return seen, restarts, commits[0]


def test_a_busy_wal_is_restarted_and_stays_short(tmp_path: Path) -> None:
    seen, restarts, commits = _busy_database(tmp_path, 1.5, RESTART_BYTES)
    assert commits > 300  # writes that never paused (and a reader that never stopped)
    assert restarts >= 2
    # started over again and again (without a RESTART the WAL only grows: 19,000-21,000 frames
    # here), and never near the 16,384 frames (64 MiB) a server keeps: 500-900 at most on a
    # quiet machine, 4,449 once under the whole suite's load
    assert sum(later < earlier for earlier, later in itertools.pairwise(seen)) >= 2
    assert max(seen) < 16_384


def _insert(engine: sa.Engine, rows: int) -> None:
    with engine.begin() as connection:
        for _ in range(rows):
            connection.exec_driver_sql("INSERT INTO t (body) VALUES (randomblob(3000))")


def _timed(checkpoint: WalCheckpoints) -> tuple[bool, float]:
    started = time.monotonic()
    restarted = checkpoint()
    return restarted, time.monotonic() - started


def test_a_short_wal_is_only_checkpointed_and_a_long_reader_is_not_waited_for_again(
    tmp_path: Path,
) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'reader.db'}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB)")
    checkpoint = WalCheckpoints(engine, RESTART_BYTES)
    wait = SQLITE_WAL_RESTART_WAIT_MS / 1000
    try:
        _insert(engine, 1)
        assert _timed(checkpoint)[0] is False  # a few frames: PASSIVE only
        with engine.connect() as reader:  # a long read (an export) holds its snapshot
            reader.exec_driver_sql("BEGIN")
            reader.exec_driver_sql("SELECT count(*) FROM t").scalar_one()
            _insert(engine, 200)  # about 600 KB: past RESTART_BYTES
            restarted, took = _timed(checkpoint)
            assert restarted is False and took >= 0.8 * wait  # waited for the reader, gave up
            restarted, took = _timed(checkpoint)
            assert restarted is False and took < 0.5 * wait  # not again for the same WAL
            _insert(engine, 200)  # grown by RESTART_BYTES more: tried again
            restarted, took = _timed(checkpoint)
            assert restarted is False and took >= 0.8 * wait
            reader.exec_driver_sql("COMMIT")
        _insert(engine, 200)
        assert checkpoint() is True  # the reader gone: restarted
        _insert(engine, 1)  # the next commit started the WAL over
        with engine.connect() as connection:
            frames = connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()[1]
        assert 0 < frames < 16
    finally:
        engine.dispose()
