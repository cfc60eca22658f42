"""The group commits' writer process: `write_records` run in a process of its own.

A writer thread shares the serving process's GIL with the event loop: every statement it runs
gives the GIL up and must win it back from a busy loop, so each commit waited on the loop's
work and the loop waited on the commit (the loop was idle a fifth of a `predict` run on
SQLite). A process has its own interpreter: the rows are built, bound and committed beside the
loop, not between its callbacks.

The protocol, over a stream socket, one pickled message per frame (8-byte length, then the
pickle); the writer answers one write at a time:

    writer -> server   ("ready",)             once it ignores SIGINT: it takes writes from now
    server -> writer   ("write", records)     the records of one group commit
    writer -> server   ("confirm",)           every row is written: may it COMMIT?
    server -> writer   ("confirm", yes)       yes: COMMIT; no: roll back
    writer -> server   ("done", committed, carried)   carried: what effects set (`carried`)
    writer -> server   ("failed", error)      the write raised (nothing committed)
    server -> writer   ("stop",)              finish: the writer exits

A writer ignores SIGINT (a Ctrl-C reaches the whole process group, and must not cut a commit in
half; its server stops it once the commits in flight are done): it exits on "stop", or when its
server's end of the socket closes (the server exited).

Writers are forked by a `zygote`: a process the server starts once, with the server's sys.path
and the modules the records' classes live in already imported. Not `multiprocessing`: its
children run the server's `__main__` again (a server started from a script without a
`__main__` guard would start servers in its writers), and they took 80 ms to start.
"""

import contextlib
import importlib
import json
import os
import pickle
import signal
import socket
import struct
import traceback
import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from persistence.engine import create_db_engine
from persistence.errors import PersistenceError
from persistence.records import RequestRecord, write_records
from persistence.session import translate_errors
from persistence.tables import AuditEvent

HEADER = struct.Struct("!Q")  # a frame's length; a writer's pid
# `python -c BOOT SYS_PATH_JSON CONTROL_FD MODULE...` runs a zygote with the server's sys.path
# (its packages, and those a test session added) on the inherited control socket.
BOOT = (
    "import json, socket, sys; sys.path[:] = json.loads(sys.argv[1]); "
    "from persistence.writer import zygote; "
    "zygote(socket.socket(fileno=int(sys.argv[2])), sys.argv[3:])"
)
_AUDIT: sa.Table = AuditEvent.__table__  # type: ignore[attr-defined]

# What an effect's `apply` sets that its request needs after COMMIT (AnnouncedBlock's count of
# webhook deliveries): an effect lists those attribute names in `carried`; the writer sends
# their values back and the server sets them on its own copy of the effect.
Carried = list[tuple[int, int, dict[str, Any]]]  # (record, effect, attributes)


def frame(message: Any) -> bytes:
    """A message as one frame."""
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(body)) + body


def carried(records: Sequence[RequestRecord]) -> Carried:
    """The attributes named by each effect's `carried`, as `apply` left them."""
    return [
        (i, j, {name: getattr(effect, name) for name in names})
        for i, record in enumerate(records)
        for j, effect in enumerate(record.effects)
        if (names := getattr(effect, "carried", ()))
    ]


def carry(records: Sequence[RequestRecord], values: Carried) -> None:
    """Set what the writer's copies of the effects carried on these (the server's) effects."""
    for i, j, attributes in values:
        effect = records[i].effects[j]
        for name, value in attributes.items():
            object.__setattr__(effect, name, value)


def stored(engine: Engine, audit_id: uuid.UUID) -> bool:
    """Whether a group commit's first audit row is in the database (a transaction is all or
    nothing, so it answers for the whole group): how a server learns the outcome of a COMMIT
    whose writer process ended before it could answer."""
    with translate_errors(), engine.connect() as connection:
        found = connection.execute(sa.select(_AUDIT.c.id).where(_AUDIT.c.id == audit_id))
        return found.first() is not None


def zygote(control: socket.socket, preload: Sequence[str]) -> None:
    """Fork a writer for each request on `control` until the server closes it.

    It runs in a process of its own, started once per server process (with the server's
    sys.path) and single-threaded, so a fork of it is safe and starts with `preload` imported:
    a writer is ready in milliseconds. A request is one datagram, the JSON `[database_url,
    statement_timeout_ms, sqlite_cache_kib]` with the writer's end of its socket attached; the
    answer is the writer's pid (HEADER). Writers that end are reaped here; a database's engine
    is made and connected here once (`_warm_engine`), and every writer of that database is
    forked with it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, _reap)
    for name in preload:
        importlib.import_module(name)
    engines: dict[tuple[str, int | None, int], Engine] = {}
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(control, 4096, 1)
        except InterruptedError:  # pragma: no cover (PEP 475 retries; kept for clarity)
            continue
        if not message:
            return
        database_url, statement_timeout_ms, cache_kib = json.loads(message)
        key = (database_url, statement_timeout_ms, cache_kib)
        if key not in engines:
            engines[key] = _warm_engine(database_url, statement_timeout_ms, cache_kib)
        pid = os.fork()
        if pid == 0:  # the writer
            control.close()
            code = 1
            try:
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                serve(engines[key], socket.socket(fileno=fds[0]))
                code = 0
            except BaseException:  # reported, and the writer ends with code 1
                traceback.print_exc()
            finally:
                os._exit(code)
        os.close(fds[0])
        control.sendall(HEADER.pack(pid))


def _reap(*_: Any) -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def _warm_engine(database_url: str, statement_timeout_ms: int | None, cache_kib: int) -> Engine:
    """The engine writers of this database are forked with: made (its dialect and driver
    imported) and connected once (the dialect reads what it needs of the server, several round
    trips on PostgreSQL) here, so that a writer's first commit pays for neither; then its pool
    emptied, so no connection is shared with a writer."""
    engine = create_db_engine(
        database_url,
        pool_size=1,
        statement_timeout_ms=statement_timeout_ms,
        sqlite_cache_kib=cache_kib,
    )
    with contextlib.suppress(Exception):  # unreachable now: each writer connects when it can
        engine.connect().close()
    engine.dispose()
    return engine


def serve(engine: Engine, channel: socket.socket) -> None:
    """Run a writer on `channel`, writing through `engine` (forked with it: its pool is made
    anew), until it is told to stop or its server goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    engine.dispose(close=False)
    try:
        channel.sendall(frame(("ready",)))
        while (message := _receive(channel)) is not None and message[0] == "write":
            channel.sendall(_write(engine, channel, message[1]))
    except OSError:  # the server went away mid-write: what was not committed is rolled back
        pass
    finally:
        engine.dispose()
        channel.close()


def _write(engine: Engine, channel: socket.socket, records: list[RequestRecord]) -> bytes:
    def confirm() -> bool:
        channel.sendall(frame(("confirm",)))
        answer = _receive(channel)
        return answer is not None and answer == ("confirm", True)

    try:
        committed = write_records(engine, records, confirm)
    except Exception as error:  # the server decides what a failure means, as for a thread
        return _failed(error)
    return frame(("done", committed, carried(records) if committed else []))


def _failed(error: Exception) -> bytes:
    try:
        body = frame(("failed", error))
        pickle.loads(body[HEADER.size :])  # noqa: S301 (rebuilt as the server will rebuild it)
    except Exception:  # any pickling failure: an exception that cannot be rebuilt over there
        return frame(("failed", PersistenceError(f"{type(error).__name__}: {error}")))
    return body


def _receive(channel: socket.socket) -> Any:
    """The next message, or None once the server's end is closed."""
    header = _exactly(channel, HEADER.size)
    if header is None:
        return None
    body = _exactly(channel, HEADER.unpack(header)[0])
    return None if body is None else pickle.loads(body)  # noqa: S301 (our own server's frames)


def _exactly(channel: socket.socket, size: int) -> bytes | None:
    buffer = bytearray(size)
    view = memoryview(buffer)
    while view:
        got = channel.recv_into(view)
        if not got:
            return None
        view = view[got:]
    return bytes(buffer)
