"""Group commit, and an answer that never contradicts what was stored.

Each request hands its rows (audit event and predictions) to the recorder and waits for the
commit that carries them. While the commits in flight run in worker threads, new records queue
up and go together in the next one, so a burst of N requests costs about one commit instead of
N. Up to `writers` commits run at once (PostgreSQL runs them in parallel; SQLite has one writer).
A failed batch is retried record by record, so one bad record never takes its neighbours down.

The loop hands each batch to the writer: `in_thread(write_records...)` writes it in a worker
thread, `graph.runtime.writers.WriterProcesses` (FAILCAST_WRITER_PROCESS=true) in a process of
its own (a thread's every statement gives the GIL up and waits for the busy loop to give it
back). Writer
threads that took batch after batch from the queue themselves were tried: on SQLite under 32
connections the writer never waited for the loop, but batches shrank from 16 requests to 5, a
commit's cost is mostly per statement, and `predict` answered about a fifth fewer requests a
second.

A request waits at most `timeout` seconds. If its rows have not been claimed for a COMMIT by
then, it abandons them: the writer writes its `fallback` (the audit row of the 503 it answers,
with no predictions) instead, so the row always says what the client was told, and the client
is told, truthfully, that nothing was stored. Rows are claimed under a lock right before COMMIT,
once every INSERT has gone through; an abandonment that arrives while the INSERTs run makes the
writer roll back and write the batch again with the fallback. Only when the COMMIT itself is
in flight and outlives a short grace (a third of the timeout, at most 1 s) is the outcome
unknown: the request answers so, and its fallback row is written afterwards only if that COMMIT
failed.
"""

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from enum import StrEnum

from graph.runtime.deadlines import time_limit
from persistence import DatabaseUnavailable, PersistenceError, RequestRecord

log = logging.getLogger("failcast.recorder")

# write(records, confirm) -> committed? `confirm` is asked right before COMMIT.
Writer = Callable[[Sequence[RequestRecord], Callable[[], bool]], bool]
# The same, awaited on the event loop (`confirm` is then asked on the loop).
AsyncWriter = Callable[[Sequence[RequestRecord], Callable[[], bool]], Awaitable[bool]]


def in_thread(write: Writer) -> AsyncWriter:
    """A blocking writer run in a worker thread (its `confirm` asked from that thread)."""

    def awaited(records: Sequence[RequestRecord], confirm: Callable[[], bool]) -> Awaitable[bool]:
        return asyncio.to_thread(write, records, confirm)

    return awaited


class Stored(StrEnum):
    """What a request can tell its client about its rows."""

    YES = "yes"
    NO = "no"  # rolled back or never written; the fallback row (if any) says so
    UNKNOWN = "unknown"  # the COMMIT was in flight when the wait ended


class _State(StrEnum):
    QUEUED = "queued"
    CLAIMED = "claimed"  # COMMIT in flight
    ABANDONED = "abandoned"  # the request stopped waiting: write the fallback instead


class _Pending:
    """One request's rows on their way to the database."""

    __slots__ = ("attempt", "fallback", "future", "record", "state")

    def __init__(self, record: RequestRecord, future: "asyncio.Future[None]") -> None:
        self.record = record
        self.fallback: RequestRecord | None = None
        self.attempt = record  # what the current write carries
        self.state = _State.QUEUED
        self.future = future


class Recorder:
    """Queues request records and commits them in batches, in order of arrival."""

    def __init__(
        self,
        write: AsyncWriter,
        max_batch: int = 256,
        writers: int = 1,
        timed: Callable[[float], None] | None = None,
    ) -> None:
        """`timed`, when given, is told each group commit's duration in seconds."""
        if writers < 1:
            raise ValueError("a recorder needs at least one writer")
        self._write = write
        self._timed = timed
        self._max_batch = max_batch
        self._writers = writers
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._commits: set[asyncio.Task[None]] = set()
        self._lock = threading.Lock()  # between a waiting request and the writer thread

    def start(self) -> None:
        """Start the committing task on the running loop."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="failcast-recorder")

    async def stop(self) -> None:
        """Commit what is queued, then stop."""
        if self._task is None:
            return
        await self._queue.join()
        # The outcomes just settled have run their callbacks, which may have queued rows of
        # their own (an answer's row after a failed commit): commit those too.
        while not self._queue.empty():
            await self._queue.join()
        self._task.cancel()
        with suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def record(
        self,
        record: RequestRecord,
        timeout: float = 3.0,
        fallback: Callable[[Stored], RequestRecord] | None = None,
    ) -> Stored:
        """Commit the record, waiting at most `timeout` (+ a grace for a COMMIT in flight).

        Raises PersistenceError (or the writer's error) when the commit failed: nothing was
        stored. With a `fallback`, the rows of the answer given instead are written in its place.
        """
        pending = self._enqueue(record)
        try:
            with time_limit(timeout):
                await asyncio.shield(pending.future)
            return Stored.YES
        except TimeoutError:
            pass
        with self._lock:
            if pending.state is _State.QUEUED and fallback is not None:
                pending.state, pending.fallback = _State.ABANDONED, fallback(Stored.NO)
                pending.future.add_done_callback(_forget)  # nobody waits for it any more
                return Stored.NO
        try:  # the COMMIT is in flight, and usually takes milliseconds: a short grace
            await asyncio.wait_for(asyncio.shield(pending.future), min(1.0, timeout / 3))
            return Stored.YES
        except TimeoutError:
            if fallback is not None:
                pending.future.add_done_callback(self._write_if_failed(fallback(Stored.UNKNOWN)))
            return Stored.UNKNOWN

    def write_later(self, record: RequestRecord) -> None:
        """Queue rows without waiting for them (the audit row of an answer after a failure)."""
        self._enqueue(record).future.add_done_callback(_forget)

    def _enqueue(self, record: RequestRecord) -> _Pending:
        if self._task is None:
            raise RuntimeError("the recorder is not running")
        pending = _Pending(record, asyncio.get_running_loop().create_future())
        self._queue.put_nowait(pending)
        return pending

    def _write_if_failed(self, fallback: RequestRecord) -> Callable[["asyncio.Future[None]"], None]:
        def settled(future: "asyncio.Future[None]") -> None:
            if not future.cancelled() and future.exception() is not None:
                self.write_later(fallback)

        return settled

    async def _run(self) -> None:
        free = asyncio.Semaphore(self._writers)
        while True:
            first = await self._queue.get()
            await free.acquire()  # while every writer is busy, more records join this batch
            batch = [first]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            commit = asyncio.create_task(self._commit_batch(batch, free))
            self._commits.add(commit)
            commit.add_done_callback(self._commits.discard)

    async def _commit_batch(self, batch: list[_Pending], free: asyncio.Semaphore) -> None:
        started = time.perf_counter()
        try:
            await self._commit(batch)
        finally:
            if self._timed is not None:
                self._timed(time.perf_counter() - started)
            free.release()
            for _ in batch:
                self._queue.task_done()

    async def _commit(self, batch: list[_Pending]) -> None:
        try:
            await self._write_confirmed(batch)
        except PersistenceError as error:
            if len(batch) == 1 or isinstance(error, DatabaseUnavailable):
                _settle_all(batch, error)
                return
            log.warning("batch commit failed (%s); retrying records one by one", error.code)
            for item in batch:
                await self._commit([item])
            return
        except Exception as error:  # a bug must not leave requests waiting forever
            log.exception("unexpected error while committing records")
            _settle_all(batch, error)
            return
        _settle_all(batch, None)

    async def _write_confirmed(self, batch: list[_Pending]) -> None:
        """Write the batch; write it again while abandonments arrive before the COMMIT."""
        while True:
            with self._lock:
                for item in batch:
                    item.attempt = item.fallback if item.fallback is not None else item.record
            if await self._write([item.attempt for item in batch], lambda: self._claim(batch)):
                return

    def _claim(self, batch: list[_Pending]) -> bool:
        with self._lock:
            if any(item.attempt is not item.fallback for item in batch if item.fallback):
                return False  # an abandonment arrived during the INSERTs: write again
            for item in batch:
                if item.state is _State.QUEUED:
                    item.state = _State.CLAIMED
            return True


def _settle_all(batch: list[_Pending], error: BaseException | None) -> None:
    for item in batch:
        if item.future.done():  # the waiting request was cancelled (client went away)
            continue
        if error is None:
            item.future.set_result(None)
        else:
            item.future.set_exception(error)


def _forget(future: "asyncio.Future[None]") -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("an answer's audit row was not written: %s", future.exception())
