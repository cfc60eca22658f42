"""Group commit: records share commits, at most `writers` run at once, and a request that stops
waiting gets an answer its audit row agrees with."""

import asyncio
import threading
import time

import pytest

from graph.runtime.recorder import Recorder, Stored, in_thread
from persistence import Conflict, DatabaseUnavailable, RequestRecord


class _Writes:
    """A writer that takes real time in a worker thread and notes what it committed.

    `before` seconds pass before every row is written (INSERTs), `commit` seconds between the
    confirmation and the COMMIT; `fail_commit` makes the COMMIT fail after the confirmation.
    """

    def __init__(self, before: float = 0.05, commit: float = 0.0, fail_commit: bool = False):
        self.before, self.commit, self.fail_commit = before, commit, fail_commit
        self.batches: list[list[str]] = []
        self.rolled_back: list[list[str]] = []
        self.running = 0
        self.most = 0
        self._lock = threading.Lock()

    def __call__(self, records, confirm) -> bool:
        ids = [f"{r.audit['id']}/{r.audit['http_status']}" for r in records]
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(self.before)
            if any(i.startswith("bad/") for i in ids):
                raise Conflict("refused")
            if not confirm():
                self.rolled_back.append(ids)
                return False
            failing = self.fail_commit  # decided as the COMMIT is sent
            time.sleep(self.commit)
            if failing:
                raise DatabaseUnavailable("the connection broke during COMMIT")
            self.batches.append(ids)
            return True
        finally:
            with self._lock:
                self.running -= 1


def _record(i: str, status: int = 200) -> RequestRecord:
    return RequestRecord(audit={"id": i, "http_status": status})


async def _record_all(recorder: Recorder, ids: list[str]) -> list[BaseException | Stored]:
    recorder.start()
    try:
        results = await asyncio.gather(
            *(recorder.record(_record(i)) for i in ids), return_exceptions=True
        )
    finally:
        await recorder.stop()
    return list(results)


@pytest.mark.parametrize("writers", [1, 2, 3])
def test_at_most_writers_commits_run_at_once(writers):
    writes = _Writes()
    ids = [str(i) for i in range(40)]
    results = asyncio.run(
        _record_all(Recorder(in_thread(writes), max_batch=5, writers=writers), ids)
    )
    assert results == [Stored.YES] * 40
    committed = sorted(i for batch in writes.batches for i in batch)
    assert committed == sorted(f"{i}/200" for i in ids)  # each once
    assert writes.most == writers
    assert len(writes.batches) < len(ids)  # records shared commits


def test_a_bad_record_fails_alone_even_with_parallel_writers():
    writes = _Writes(before=0.01)
    ids = ["a", "bad", "b", "c"]
    results = asyncio.run(_record_all(Recorder(in_thread(writes), writers=2), ids))
    assert [r if isinstance(r, Stored) else type(r).__name__ for r in results] == [
        Stored.YES, "Conflict", Stored.YES, Stored.YES
    ]  # fmt: skip


def test_a_recorder_needs_a_writer():
    with pytest.raises(ValueError, match="at least one writer"):
        Recorder(in_thread(_Writes()), writers=0)


async def _one(writes: _Writes, timeout: float, linger: float) -> tuple[Stored, Recorder]:
    recorder = Recorder(in_thread(writes))
    recorder.start()
    try:
        stored = await recorder.record(_record("r1"), timeout, lambda s: _record("r1", 503))
        await asyncio.sleep(linger)  # let the writer finish what it started
    finally:
        await recorder.stop()
    return stored, recorder


def test_rows_still_being_written_when_the_wait_ends_are_replaced_by_the_answers_row():
    writes = _Writes(before=0.3)  # the INSERTs outlive the request's wait
    stored, _ = asyncio.run(_one(writes, timeout=0.05, linger=0.5))
    assert stored is Stored.NO
    assert writes.rolled_back == [["r1/200"]]  # the first write was not committed...
    assert writes.batches == [["r1/503"]]  # ...the second, with the 503 row, was


def test_a_commit_in_flight_when_the_wait_ends_leaves_the_outcome_unknown():
    writes = _Writes(before=0.0, commit=0.3)  # confirmed, then a slow COMMIT
    stored, _ = asyncio.run(_one(writes, timeout=0.05, linger=0.5))
    assert stored is Stored.UNKNOWN
    assert writes.batches == [["r1/200"]] and writes.rolled_back == []  # the 200 row landed


def test_after_an_unknown_outcome_a_failed_commit_writes_the_answers_row():
    writes = _Writes(before=0.0, commit=0.2, fail_commit=True)
    results: list[Stored] = []

    async def run() -> None:
        recorder = Recorder(in_thread(writes))
        recorder.start()
        fallback = lambda s: _record("r1", 503)  # noqa: E731
        results.append(await recorder.record(_record("r1"), 0.05, fallback))
        writes.fail_commit = False  # the database is back
        await asyncio.sleep(0.6)
        await recorder.stop()

    asyncio.run(run())
    assert results == [Stored.UNKNOWN]
    assert writes.batches == [["r1/503"]]  # only the answer's row, written once it failed


def test_a_commit_that_finishes_in_time_is_reported_stored():
    writes = _Writes(before=0.01)
    stored, _ = asyncio.run(_one(writes, timeout=1.0, linger=0.0))
    assert stored is Stored.YES and writes.rolled_back == []


def test_rows_queued_by_outcomes_during_stop_are_committed_too():
    writes = _Writes(before=0.01)

    async def run() -> None:
        recorder = Recorder(in_thread(writes))
        recorder.start()
        pending = recorder._enqueue(_record("first"))
        # an outcome that queues a row of its own (as an answer's row after a failed commit)
        pending.future.add_done_callback(lambda _: recorder.write_later(_record("after")))
        await recorder.stop()

    asyncio.run(run())
    assert [i for batch in writes.batches for i in batch] == ["first/200", "after/200"]


def test_each_group_commit_is_timed():
    writes, timed = _Writes(before=0.03, commit=0.02), []
    recorder = Recorder(in_thread(writes), timed=timed.append)
    results = asyncio.run(_record_all(recorder, [str(i) for i in range(12)]))
    assert results == [Stored.YES] * 12
    assert len(timed) == len(writes.batches) >= 1
    assert all(seconds >= 0.05 for seconds in timed)  # its INSERTs and its COMMIT
