"""Group commit: records share commits, and at most `writers` commits run at once."""

import asyncio
import threading
import time

import pytest

from graph.recorder import Recorder
from persistence import Conflict, RequestRecord


class _Writes:
    """A writer that takes real time in a worker thread and notes how many overlap."""

    def __init__(self, seconds: float = 0.05) -> None:
        self.seconds = seconds
        self.batches: list[list[str]] = []
        self.running = 0
        self.most = 0
        self._lock = threading.Lock()

    def __call__(self, records) -> None:
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(self.seconds)
        with self._lock:
            self.running -= 1
            self.batches.append([r.audit["id"] for r in records])
        if any(r.audit["id"] == "bad" for r in records):
            raise Conflict("refused")


async def _record_all(recorder: Recorder, ids: list[str]) -> list[BaseException | None]:
    recorder.start()
    try:
        results = await asyncio.gather(
            *(recorder.record(RequestRecord(audit={"id": i})) for i in ids), return_exceptions=True
        )
    finally:
        await recorder.stop()
    return list(results)


@pytest.mark.parametrize("writers", [1, 2, 3])
def test_at_most_writers_commits_run_at_once(writers):
    writes = _Writes()
    ids = [str(i) for i in range(40)]
    results = asyncio.run(_record_all(Recorder(writes, max_batch=5, writers=writers), ids))
    assert results == [None] * 40
    assert sorted(i for batch in writes.batches for i in batch) == sorted(ids)  # each once
    assert writes.most == writers
    assert len(writes.batches) < len(ids)  # records shared commits


def test_a_bad_record_fails_alone_even_with_parallel_writers():
    writes = _Writes(seconds=0.01)
    ids = ["a", "bad", "b", "c"]
    results = asyncio.run(_record_all(Recorder(writes, writers=2), ids))
    assert [type(r).__name__ if r else None for r in results] == [None, "Conflict", None, None]


def test_a_recorder_needs_a_writer():
    with pytest.raises(ValueError, match="at least one writer"):
        Recorder(_Writes(), writers=0)
