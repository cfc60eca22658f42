"""PostgreSQL LISTEN/NOTIFY: announcing a change in the transaction that makes it, and hearing it.

`notify` is called inside a writing transaction: PostgreSQL delivers the notification when, and
only if, that transaction commits, so listeners never hear of a rolled-back write. `heard`
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


def listens(engine: Engine) -> bool:
    """Whether servers on this database hear notifications (PostgreSQL) or must poll (SQLite)."""
    return engine.dialect.name == "postgresql"


def notify(connection: Connection, channel: str, payload: str) -> None:
    """Send a notification with the transaction of `connection` (a no-op on SQLite)."""
    if connection.dialect.name != "postgresql":
        return
    if len(payload.encode()) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"a NOTIFY payload must stay under 8000 bytes ({channel})")
    connection.execute(sa.text("SELECT pg_notify(:c, :p)"), {"c": channel, "p": payload})


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
