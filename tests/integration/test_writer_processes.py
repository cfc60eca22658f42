"""Group commits written by writer processes: rows stored as a thread stores them, the COMMIT
asked for on the server's side, effects' results carried back, and an answer that agrees with
the database when a writer dies at any point of a write. On both databases, real processes."""

import asyncio
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa
from support import count_rows, register_version, request_record

from graph.runtime.writers import WriterProcesses
from persistence import (
    METRIC_COLUMNS,
    Conflict,
    DatabaseUnavailable,
    RequestRecord,
)


@dataclass
class _Counted:
    """An effect whose `apply` notes how many audit rows its transaction sees (carried)."""

    seen: int = -1
    carried: ClassVar[tuple[str, ...]] = ("seen",)

    def apply(self, connection: Any) -> None:
        self.seen = connection.execute(sa.text("SELECT count(*) FROM audit_event")).scalar_one()


@dataclass(frozen=True)
class _Dies:
    """An effect that kills the writer applying it: while the rows are written ("writing"), or
    once the transaction is over ("committed": its connection goes back to the pool after
    COMMIT, before the writer can answer)."""

    when: str

    def apply(self, connection: Any) -> None:
        if self.when == "writing":
            os.kill(os.getpid(), signal.SIGKILL)
        sa.event.listen(connection.engine.pool, "checkin", _die, once=True)


def _die(*_: Any) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _record(version_id: int, *effects: Any, rows: int = 2) -> RequestRecord:
    now = datetime.now(UTC)
    made = [(f"dev-{i}", now, 0.25) for i in range(rows)]
    metrics = {m: [float(i) for i in range(rows)] for m in METRIC_COLUMNS}
    return request_record(version_id, made, subject=None, metrics=metrics, effects=effects)


@pytest.fixture
def writers(db_url, db_engine) -> Iterator[Callable[..., Any]]:
    """Run a coroutine function with started writer processes on the test database."""

    def run(body: Callable[[WriterProcesses], Any], count: int = 1) -> Any:
        async def main() -> Any:
            processes = WriterProcesses(db_url, db_engine, count)
            await processes.start()
            try:
                return await body(processes)
            finally:
                await processes.stop()

        return asyncio.run(main())

    yield run


def _yes() -> bool:
    return True


def _pids(processes: WriterProcesses) -> list[int]:
    return processes.pids()


def _gone(pid: int) -> bool:
    """Whether a process has ended and been reaped (its zygote reaps it), within 5 s."""
    for _ in range(500):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.01)
    return False


def test_a_writer_stores_the_records_and_asks_before_its_commit(writers, db_engine, demo_artifact):
    version = register_version(db_engine, demo_artifact)
    asked: list[int] = []
    counted = _Counted()

    def confirm() -> bool:
        asked.append(count_rows(db_engine, "audit_event"))  # nothing visible before COMMIT
        return True

    async def body(processes: WriterProcesses) -> bool:
        return await processes.write(
            [_record(version.id), _record(version.id, counted, rows=3)], confirm
        )

    assert writers(body) is True
    assert asked == [0]
    assert count_rows(db_engine, "audit_event") == 2
    assert count_rows(db_engine, "prediction") == 5
    assert counted.seen == 2  # set in the writer, carried back to the server's own effect


def test_a_commit_refused_by_the_server_is_rolled_back(writers, db_engine, demo_artifact):
    version = register_version(db_engine, demo_artifact)

    async def body(processes: WriterProcesses) -> tuple[bool, bool]:
        refused = await processes.write([_record(version.id)], lambda: False)
        return refused, await processes.write([_record(version.id)], _yes)

    assert writers(body) == (False, True)  # and the same writer goes on
    assert count_rows(db_engine, "audit_event") == 1
    assert count_rows(db_engine, "prediction") == 2


def test_a_writers_error_reaches_the_server_and_the_writer_goes_on(
    writers, db_engine, demo_artifact
):
    version = register_version(db_engine, demo_artifact)
    first = _record(version.id)

    async def body(processes: WriterProcesses) -> list[int]:
        await processes.write([first], _yes)
        pids = _pids(processes)
        with pytest.raises(Conflict):  # the same audit id again
            await processes.write([first], _yes)
        await processes.write([_record(version.id)], _yes)
        return pids + _pids(processes)

    pids = writers(body)
    assert pids[0] == pids[1]
    assert count_rows(db_engine, "audit_event") == 2


@pytest.mark.parametrize("when", ["writing", "asked"])
def test_a_writer_that_dies_before_its_commit_stored_nothing_and_is_replaced(
    writers, db_engine, demo_artifact, when
):
    version = register_version(db_engine, demo_artifact)

    async def body(processes: WriterProcesses) -> list[int]:
        first = _pids(processes)

        def kill_then_grant() -> bool:  # granted to a writer that dies before it can read it
            os.kill(first[0], signal.SIGKILL)
            return True

        effects = [_Dies("writing")] if when == "writing" else []
        confirm = kill_then_grant if when == "asked" else _yes
        with pytest.raises(DatabaseUnavailable):
            await processes.write([_record(version.id, *effects)], confirm)
        assert await processes.write([_record(version.id)], _yes) is True
        return first + _pids(processes)

    first, second = writers(body)
    assert first != second
    assert count_rows(db_engine, "audit_event") == 1
    assert count_rows(db_engine, "prediction") == 2


def test_a_writer_that_dies_after_its_commit_reports_it_stored(writers, db_engine, demo_artifact):
    version = register_version(db_engine, demo_artifact)

    async def body(processes: WriterProcesses) -> bool:
        stored = await processes.write([_record(version.id, _Dies("committed"))], _yes)
        assert await processes.write([_record(version.id)], _yes) is True
        return stored

    assert writers(body) is True  # read back from the database: the answer agrees with it
    assert count_rows(db_engine, "audit_event") == 2


def test_writers_ignore_a_ctrl_c_and_stop_when_told(writers, db_engine, demo_artifact):
    version = register_version(db_engine, demo_artifact)
    seen: dict[str, Any] = {}

    async def body(processes: WriterProcesses) -> None:
        assert len(_pids(processes)) == 2  # each started and ready
        for pid in _pids(processes):
            os.kill(pid, signal.SIGINT)  # a Ctrl-C reaches the whole process group
        writes = [processes.write([_record(version.id)], _yes) for _ in range(4)]
        seen["committed"] = await asyncio.gather(*writes)
        seen["before"] = _pids(processes)

    writers(body, count=2)
    assert seen["committed"] == [True] * 4
    assert len(set(seen["before"])) == 2
    assert all(_gone(pid) for pid in seen["before"])
    assert count_rows(db_engine, "audit_event") == 4


def test_a_write_needs_started_writers(db_url, db_engine):
    async def body() -> None:
        with pytest.raises(RuntimeError, match="not started"):
            await WriterProcesses(db_url, db_engine).write([], _yes)

    asyncio.run(body())
