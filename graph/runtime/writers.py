"""Group commits written by processes of their own (`persistence.writer`), for the recorder.

`WriterProcesses.write` has the recorder's writer contract (records, confirm -> committed?),
awaited on the event loop instead of run in a thread: the records go to an idle writer process
pickled, the writer asks before its COMMIT and `confirm` answers on the loop, under the
recorder's lock as it would from a thread. The loop's own part is the pickling of the records
and three small frames per commit; every row's binding, INSERT and the COMMIT run in the
writer's interpreter, so the loop never waits for the GIL of a commit and the commit never
waits for the loop's.

A writer that ends (killed, crashed) is replaced at the next write. If it ended during a write:
- before its question: nothing was committed (SQLite rolls an unfinished transaction back), and
  the write fails with DatabaseUnavailable, as a lost connection does;
- after it was told to COMMIT: the COMMIT may or may not have happened. The audit row of the
  first record says which (the transaction is all or nothing), read on the server's engine:
  present, the write succeeded; absent (or unreadable), it failed.

Writers are forked by a zygote (`persistence.writer.zygote`), one per server process, started
at the first writer with the server's sys.path and the modules the records' classes live in
(`preload`) imported: a writer starts in milliseconds, with nothing of the server's threads or
event loop in it.
"""

import asyncio
import json
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import Any

from sqlalchemy.engine import Engine

from persistence import SQLITE_CACHE_KIB, DatabaseUnavailable, RequestRecord
from persistence import writer as protocol

log = logging.getLogger("failcast.writers")

STOP_SECONDS = 5.0  # a writer told to stop finishes within this, or is killed
START_SECONDS = 30.0  # from a fork request to the writer's "ready" (a zygote's start: ~1 s)


class _Zygote:
    """This process's zygote: started on first use (again if it ended), asked for a writer
    under a lock (one request and its answer at a time)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None

    def fork(self, preload: Sequence[str], database_url: str, timeout_ms: int | None,
             cache_kib: int, channel: socket.socket) -> int:  # fmt: skip
        """A new writer on `channel` (the writer's end); its pid. Blocking."""
        with self._lock:
            try:
                control = self._running(preload)
                request = json.dumps([database_url, timeout_ms, cache_kib]).encode()
                socket.send_fds(control, [request], [channel.fileno()])
                answer = control.recv(protocol.HEADER.size)
            except OSError as error:
                self._stop()
                raise DatabaseUnavailable("no writer process could be started") from error
            if len(answer) != protocol.HEADER.size:
                self._stop()
                raise DatabaseUnavailable("the writer processes' zygote ended")
            return int(protocol.HEADER.unpack(answer)[0])

    def prestart(self, preload: Sequence[str]) -> None:
        """Start the zygote now if none runs, without waiting for its imports (about a second
        of a server's start, overlapped with the rest of it)."""
        with self._lock:
            self._running(preload)

    def _running(self, preload: Sequence[str]) -> socket.socket:
        if self._process is not None and self._process.poll() is None and self._control:
            return self._control
        self._stop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._process = subprocess.Popen(  # noqa: S603 (this interpreter, our own code)
                [
                    sys.executable,
                    "-c",
                    protocol.BOOT,
                    json.dumps(sys.path),
                    str(theirs.fileno()),
                    *preload,
                ],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        self._control = ours
        return ours

    def _stop(self) -> None:
        if self._control is not None:
            self._control.close()  # the zygote ends when it reads the end of its socket
        self._control = None
        if self._process is not None and self._process.poll() is None:
            with suppress(subprocess.TimeoutExpired):
                self._process.wait(STOP_SECONDS)
        self._process = None


_ZYGOTE = _Zygote()


class _Writer:
    """One writer process and the server's end of its socket."""

    def __init__(self, pid: int, reader: asyncio.StreamReader, stream: asyncio.StreamWriter):
        self.pid = pid
        self.reader = reader
        self.stream = stream
        self.broken = False

    @property
    def usable(self) -> bool:
        """Neither broken by a failed write nor ended while idle (its socket's end was read)."""
        return not (self.broken or self.reader.at_eof())

    async def write(
        self, records: Sequence[RequestRecord], confirm: Callable[[], bool], engine: Engine
    ) -> bool:
        granted = False
        try:
            self.stream.write(protocol.frame(("write", list(records))))
            await self.stream.drain()
            while (message := await self.receive())[0] == "confirm":
                granted = confirm()
                self.stream.write(protocol.frame(("confirm", granted)))
        except (OSError, EOFError, asyncio.IncompleteReadError):
            self.broken = True
            log.error("writer process %d ended during a commit", self.pid)
        except BaseException:  # cancelled: the writer's state is unknown, it will not be reused
            self.broken = True
            raise
        else:
            if message[0] == "failed":
                raise message[1]
            protocol.carry(records, message[2])
            return message[1]  # type: ignore[no-any-return]
        if granted and await asyncio.to_thread(_stored, engine, records):
            return True
        raise DatabaseUnavailable("the writer process ended before its commit was confirmed")

    async def receive(self) -> Any:
        """The writer's next message."""
        header = await self.reader.readexactly(protocol.HEADER.size)
        body = await self.reader.readexactly(protocol.HEADER.unpack(header)[0])
        return pickle.loads(body)  # noqa: S301 (our own writer's frames)

    async def stop(self) -> None:
        """Tell the writer to stop and wait for it to close its socket (else kill it)."""
        with suppress(OSError):
            if self.usable:
                self.stream.write(protocol.frame(("stop",)))
                await self.stream.drain()
        try:
            await asyncio.wait_for(self.reader.read(), STOP_SECONDS)
        except (TimeoutError, OSError):
            log.error(
                "writer process %d did not stop within %.0f s: killed", self.pid, STOP_SECONDS
            )
            with suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        self.stream.close()


def _stored(engine: Engine, records: Sequence[RequestRecord]) -> bool:
    try:
        return bool(records) and protocol.stored(engine, records[0].audit["id"])
    except DatabaseUnavailable:
        return False  # unreadable: reported as not stored, as a failed COMMIT would be


class WriterProcesses:
    """`count` writer processes on one database, each taking one group commit at a time.

    Made, it starts this process's zygote if none runs (its imports take about a second, so
    they overlap the rest of the server's start); `start` forks the writers."""

    def __init__(
        self,
        database_url: str,
        engine: Engine,
        count: int = 1,
        preload: Sequence[str] = (),
        statement_timeout_ms: int | None = None,
        sqlite_cache_kib: int = SQLITE_CACHE_KIB,
    ) -> None:
        if count < 1:
            raise ValueError("at least one writer process is needed")
        self.database_url = database_url
        self.engine = engine  # the server's: to read a commit's outcome when its writer ended
        self.count = count
        self.preload = ["persistence.writer", *preload]
        self.statement_timeout_ms = statement_timeout_ms
        self.sqlite_cache_kib = sqlite_cache_kib  # each writer's page cache, on a SQLite file
        self._idle: asyncio.Queue[_Writer] | None = None
        self._all: list[_Writer] = []
        _ZYGOTE.prestart(self.preload)

    async def start(self) -> None:
        """Start the writers (the zygote's first start takes about a second)."""
        if self._idle is not None:
            return
        self._idle = asyncio.Queue()
        for writer in await asyncio.gather(*(self._spawn() for _ in range(self.count))):
            self._idle.put_nowait(writer)

    async def write(self, records: Sequence[RequestRecord], confirm: Callable[[], bool]) -> bool:
        """Write one group commit's records in an idle writer (the recorder's Writer)."""
        if self._idle is None:
            raise RuntimeError("the writer processes are not started")
        writer = await self._idle.get()
        try:
            if not writer.usable:
                writer = await self._replace(writer)
            return await writer.write(records, confirm, self.engine)
        finally:
            if self._idle is not None:
                self._idle.put_nowait(writer)
            else:  # stopped meanwhile (a shutdown cancelled this write)
                with suppress(ProcessLookupError):
                    os.kill(writer.pid, signal.SIGKILL)

    def pids(self) -> list[int]:
        """The writers' process ids, as started or replaced."""
        return [writer.pid for writer in self._all]

    async def stop(self) -> None:
        """Stop every writer (call once no write is in flight)."""
        writers, self._all, self._idle = self._all, [], None
        await asyncio.gather(*(writer.stop() for writer in writers))

    async def _replace(self, writer: _Writer) -> _Writer:
        log.warning("replacing writer process %d, which ended", writer.pid)
        if writer in self._all:
            self._all.remove(writer)
            await writer.stop()
        return await self._spawn()

    async def _spawn(self) -> _Writer:
        ours, theirs = socket.socketpair()
        try:
            pid = await asyncio.to_thread(
                _ZYGOTE.fork,
                self.preload,
                self.database_url,
                self.statement_timeout_ms,
                self.sqlite_cache_kib,
                theirs,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        reader, stream = await asyncio.open_unix_connection(sock=ours)
        writer = _Writer(pid, reader, stream)
        self._all.append(writer)
        try:
            ready = await asyncio.wait_for(writer.receive(), START_SECONDS)
        except (OSError, EOFError, TimeoutError, asyncio.IncompleteReadError) as error:
            ready = error
        if ready != ("ready",):
            writer.broken = True
            raise DatabaseUnavailable(f"writer process {pid} did not start: {ready!r}")
        return writer
