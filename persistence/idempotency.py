"""Stored answers of requests sent with an Idempotency-Key.

The answer is stored by the request's own transaction (`Remember`, an effect of its record), so a
key is taken exactly when the request's predictions and audit row are committed, and never for a
request that was rolled back. Two requests with one key that commit at the same time (on two
servers) meet at the (subject, key) unique constraint: the second gets `KeyInUse` and stores
nothing. Keys expire; an expired key is taken again as if new, and `purge` deletes expired rows.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlmodel import Session

from persistence.errors import Conflict
from persistence.tables import IdempotencyKey

_TABLE: sa.Table = IdempotencyKey.__table__  # type: ignore[attr-defined]


class KeyInUse(Conflict):
    """Another request with the same key committed first."""


@dataclass(frozen=True)
class StoredAnswer:
    """What was answered to the first request with a key."""

    request_sha256: str
    request_id: uuid.UUID
    operation_type: str | None
    operation_name: str | None
    status: int
    content_type: str
    body: bytes
    error_codes: list[str]


def find(session: Session, subject: str, key: str, now: datetime) -> StoredAnswer | None:
    """The unexpired answer stored under a subject's key, or None."""
    query = sa.select(_TABLE).where(
        _TABLE.c.subject == subject, _TABLE.c.key == key, _TABLE.c.expires_at > now
    )
    row = session.execute(query).first()
    if row is None:
        return None
    return StoredAnswer(
        row.request_sha256,
        row.request_id,
        row.operation_type,
        row.operation_name,
        row.status,
        row.content_type,
        bytes(row.body),
        list(row.error_codes),
    )


@dataclass(frozen=True)
class Remember:
    """Store a request's answer under its key, in the request's transaction (an Effect)."""

    subject: str
    key: str
    answer: StoredAnswer
    created_at: datetime
    expires_at: datetime

    def apply(self, connection: Connection) -> None:
        """Take the key (an expired holder of it is dropped first); KeyInUse if it is taken."""
        connection.execute(
            sa.delete(_TABLE).where(
                _TABLE.c.subject == self.subject,
                _TABLE.c.key == self.key,
                _TABLE.c.expires_at <= self.created_at,
            )
        )
        answer = self.answer
        values = {
            "subject": self.subject,
            "key": self.key,
            "request_sha256": answer.request_sha256,
            "request_id": answer.request_id,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "operation_type": answer.operation_type,
            "operation_name": answer.operation_name,
            "status": answer.status,
            "content_type": answer.content_type,
            "body": answer.body,
            "error_codes": answer.error_codes,
        }
        try:
            connection.execute(sa.insert(_TABLE).values(values))
        except sa.exc.IntegrityError as error:
            raise KeyInUse("another request with this Idempotency-Key was stored first") from error


def purge(session: Session, now: datetime) -> int:
    """Delete expired keys; how many."""
    result = session.connection().execute(sa.delete(_TABLE).where(_TABLE.c.expires_at <= now))
    return int(result.rowcount or 0)
