"""PostgreSQL LISTEN/NOTIFY: announcing a change in the transaction that makes it, and hearing it.

`notify` is called inside a writing transaction: PostgreSQL delivers the notification when, and
only if, that transaction commits, so listeners never hear of a rolled-back write. `queue` does
the same for the effects of a group commit, whose notifications then go in one statement. `heard`
holds one connection of its own (outside the engine's pool, in autocommit mode) and yields the
payload of each notification on a channel. SQLite has no notifications: `listens` says so, and
callers fall back to polling or to their own process.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from persistence.errors import DatabaseUnavailable

log = logging.getLogger("failcast.notifications")

MAX_PAYLOAD_BYTES = 7999  # PostgreSQL refuses a NOTIFY payload of 8000 bytes or more
_QUEUED = "failcast.queued_notifications"  # connection.info: (transaction, [(channel, payload)])


def listens(engine: Engine) -> bool:
    """Whether servers on this database hear notifications (PostgreSQL) or must poll (SQLite)."""
    return engine.dialect.name == "postgresql"


def notify(connection: Connection, channel: str, payload: str) -> None:
    """Send a notification with the transaction of `connection` (a no-op on SQLite)."""
    if connection.dialect.name != "postgresql":
        return
    _check(channel, payload)
    connection.execute(sa.text("SELECT pg_notify(:c, :p)"), {"c": channel, "p": payload})


def queue(connection: Connection, channel: str, payload: str) -> None:
    """`notify`, sent with the other notifications this transaction queues in one statement
    when the writer calls `send_queued` before its COMMIT (persistence.records.write_records):
    a group commit of many requests announces them in one round trip, not one each. A
    notification queued in a transaction that never reaches `send_queued` is never sent."""
    if connection.dialect.name != "postgresql":
        return
    _check(channel, payload)
    transaction = connection.get_transaction()
    held = connection.info.get(_QUEUED)
    if held is None or held[0] is not transaction:  # the first of this transaction
        queued: list[tuple[str, str]] = []
        held = connection.info[_QUEUED] = (transaction, queued)
    held[1].append((channel, payload))


def send_queued(connection: Connection) -> None:
    """Send what this transaction queued (`queue`), in order, in one statement."""
    held = connection.info.pop(_QUEUED, None)
    if held is None or held[0] is not connection.get_transaction() or not held[1]:
        return  # nothing queued, or only by an earlier transaction that never got here
    channels, payloads = zip(*held[1], strict=True)
    connection.execute(
        sa.text(
            "SELECT pg_notify(n.c, n.p) FROM unnest(CAST(:c AS text[]), CAST(:p AS text[]))"
            " WITH ORDINALITY AS n(c, p, i) ORDER BY n.i"
        ),
        {"c": list(channels), "p": list(payloads)},
    )


def _check(channel: str, payload: str) -> None:
    if len(payload.encode()) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"a NOTIFY payload must stay under 8000 bytes ({channel})")


async def heard(engine: Engine, channel: str, what: str) -> AsyncIterator[str]:
    """Yield the payload of each notification on `channel` committed from now on.

    Raises DatabaseUnavailable when the connection cannot be made or is lost: the caller
    reconnects, and catches up by itself, since notifications sent while nobody listened are
    not replayed. `what` names the notifications in log lines and errors.
    """
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:
            await connection.execute(f"LISTEN {channel}")
            log.info("listening for %s", what)
            async for notice in connection.notifies():
                yield notice.payload
    except (psycopg.Error, OSError) as error:
        raise DatabaseUnavailable(f"listening for {what}: {error}") from error


async def close_quietly(generator: AsyncIterator[str]) -> None:
    """Close a listening generator (its connection with it), ignoring a lost connection."""
    aclose = getattr(generator, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(psycopg.Error, OSError, TimeoutError, DatabaseUnavailable):
            await asyncio.wait_for(aclose(), 2.0)
