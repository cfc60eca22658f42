"""Group commit: the records of concurrent requests share one transaction.

Each request hands its audit row and predictions to the recorder and waits for the commit that
carries them. While the commits in flight run in worker threads, new records queue up and go
together in the next one, so a burst of N requests costs about one commit instead of N. Up to
`writers` commits run at once (PostgreSQL runs them in parallel; SQLite has one writer, so 1).
A failed batch is retried record by record, so one bad record never takes its neighbours down.
"""

import asyncio
import logging
from collections.abc import Callable, Sequence
from contextlib import suppress

from persistence import DatabaseUnavailable, PersistenceError, RequestRecord

log = logging.getLogger("failcast.recorder")

Writer = Callable[[Sequence[RequestRecord]], None]
_Item = tuple[RequestRecord, asyncio.Future[None]]


class Recorder:
    """Queues request records and commits them in batches, in order of arrival."""

    def __init__(self, write: Writer, max_batch: int = 256, writers: int = 1) -> None:
        if writers < 1:
            raise ValueError("a recorder needs at least one writer")
        self._write = write
        self._max_batch = max_batch
        self._writers = writers
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._commits: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        """Start the committing task on the running loop."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="failcast-recorder")

    async def stop(self) -> None:
        """Commit what is queued, then stop."""
        if self._task is None:
            return
        await self._queue.join()
        self._task.cancel()
        with suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def record(self, record: RequestRecord) -> None:
        """Return once the record is committed; raise PersistenceError if it was not."""
        if self._task is None:
            raise RuntimeError("the recorder is not running")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._queue.put((record, future))
        await future

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

    async def _commit_batch(self, batch: list[_Item], free: asyncio.Semaphore) -> None:
        try:
            await self._commit(batch)
        finally:
            free.release()
            for _ in batch:
                self._queue.task_done()

    async def _commit(self, batch: list[_Item]) -> None:
        try:
            await asyncio.to_thread(self._write, [record for record, _ in batch])
        except PersistenceError as error:
            if len(batch) == 1 or isinstance(error, DatabaseUnavailable):
                for _, future in batch:
                    _settle(future, error)
                return
            log.warning("batch commit failed (%s); retrying records one by one", error.code)
            for item in batch:
                await self._commit([item])
            return
        except Exception as error:  # a bug must not leave requests waiting forever
            log.exception("unexpected error while committing records")
            for _, future in batch:
                _settle(future, error)
            return
        for _, future in batch:
            _settle(future, None)


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():  # the waiting request was cancelled (client went away)
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
