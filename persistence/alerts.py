"""Committed predictions announced to every server process, for live alerts (PostgreSQL).

The transaction that stores a block of predictions sends one notification on `CHANNEL` naming
the block (its request id and the first and last prediction ids: a block's ids are made in
one run, so no other prediction of that request falls between them), so the notification
stays small whatever the size of the block. Listeners read the block's rows back with
`announced_rows`. SQLite has no notifications: a process only hears of its own predictions.
"""

import uuid
from collections.abc import Callable, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlmodel import Session, col

from persistence import notifications
from persistence.tables import Prediction

CHANNEL = "failcast_prediction"


def announce(connection: Connection, payload: Callable[[], str]) -> None:
    """Announce a block of predictions with the writing transaction (PostgreSQL only): queued,
    and sent with the transaction's other announcements in one statement by write_records.
    The payload is built only where it is sent: SQLite has no other process to tell."""
    if notifications.listens(connection.engine):
        notifications.queue(connection, CHANNEL, payload())


def announced_rows(
    session: Session, request_id: uuid.UUID, first: uuid.UUID, last: uuid.UUID
) -> Sequence[Prediction]:
    """The predictions of one announced block, in id order."""
    query = (
        sa.select(Prediction)
        .where(
            col(Prediction.audit_event_id) == request_id,
            col(Prediction.id) >= first,
            col(Prediction.id) <= last,
        )
        .order_by(col(Prediction.id))
    )
    return session.execute(query).scalars().all()
