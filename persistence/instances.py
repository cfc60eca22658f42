"""Heartbeats of server processes: how many share a deployment's limits right now."""

import os
import socket
import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import col

from persistence.session import session_scope
from persistence.tables import ServerInstance


def heartbeat(engine: Engine, instance_id: uuid.UUID, stale_after_s: float) -> int:
    """Record that this process is alive; return how many processes are alive."""
    now = datetime.now(UTC)
    with session_scope(engine) as session:
        row = session.get(ServerInstance, instance_id)
        if row is None:
            row = ServerInstance(
                id=instance_id,
                hostname=socket.gethostname()[:255],
                pid=os.getpid(),
                started_at=now,
                last_seen=now,
            )
        row.last_seen = now
        session.add(row)
        session.flush()
        horizon = now - timedelta(seconds=stale_after_s)
        stale = col(ServerInstance.last_seen) < horizon
        session.execute(sa.delete(ServerInstance).where(stale))
        live = sa.select(sa.func.count()).select_from(ServerInstance)
        return int(session.execute(live).scalar_one())


def leave(engine: Engine, instance_id: uuid.UUID) -> None:
    """Remove this process from the live set (on shutdown)."""
    with session_scope(engine) as session:
        session.execute(sa.delete(ServerInstance).where(col(ServerInstance.id) == instance_id))
