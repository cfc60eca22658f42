"""Webhooks and their outbox: the receivers, and one delivery row per prediction to POST.

A delivery row is written by the transaction that stores its prediction (`enqueue`, from the
predictions' effect), so it exists exactly when the prediction does. Workers in any process
claim due rows (`claim_due`: on PostgreSQL with FOR UPDATE SKIP LOCKED, so two workers never
claim the same row, and no worker waits for another's), each claim a lease of its own
(`claim`, `claimed_until`) committed before the POST: a worker that dies mid-POST leaves its
rows to be claimed again once the lease ends. The outcome is recorded only under the claim it
was made with (`record_attempt`), so a late worker never overwrites a newer one's.
"""

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session

from persistence.errors import NotFound
from persistence.session import driver_errors, translate_errors
from persistence.tables import Webhook, WebhookDelivery

_WEBHOOK: sa.Table = Webhook.__table__  # type: ignore[attr-defined]
_DELIVERY: sa.Table = WebhookDelivery.__table__  # type: ignore[attr-defined]
_TARGETS = "failcast_webhook_targets"  # connection.info key: this transaction's webhooks

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"


@dataclass(frozen=True)
class Target:
    """What the outbox needs of a webhook to decide whether a prediction is for it."""

    id: uuid.UUID
    min_probability: float | None
    device_id_prefix: str | None


@dataclass(frozen=True)
class Claimed:
    """A delivery a worker claimed: what to POST, where, and the key to sign it with."""

    id: uuid.UUID
    webhook_id: uuid.UUID
    url: str
    secret: str
    body: bytes
    attempts: int  # made before this one
    claim: uuid.UUID


def insert(connection: Connection, webhook: Mapping[str, Any]) -> None:
    """Store a new webhook on a connection (the effect of the request that creates it)."""
    connection.execute(sa.insert(_WEBHOOK).values(**webhook))


def delete(connection: Connection, webhook_id: uuid.UUID) -> None:
    """Delete a webhook and its deliveries, pending ones included; NotFound if it is gone."""
    connection.execute(sa.delete(_DELIVERY).where(_DELIVERY.c.webhook_id == webhook_id))
    deleted = connection.execute(sa.delete(_WEBHOOK).where(_WEBHOOK.c.id == webhook_id))
    if deleted.rowcount != 1:
        raise NotFound(f"no webhook with id {webhook_id}")


def list_all(session: Session) -> list[Webhook]:
    """Every webhook, oldest first."""
    return list(session.execute(sa.select(Webhook).order_by(_WEBHOOK.c.id)).scalars())


def get(session: Session, webhook_id: uuid.UUID) -> Webhook | None:
    """One webhook, or None."""
    return session.get(Webhook, webhook_id)


def count(session: Session) -> int:
    """How many webhooks there are."""
    return int(session.execute(sa.select(sa.func.count()).select_from(_WEBHOOK)).scalar_one())


def targets(connection: Connection) -> list[Target]:
    """The webhooks, as seen by this transaction: read once per transaction, however many
    blocks of predictions it stores."""
    transaction = connection.get_transaction()
    cached = connection.info.get(_TARGETS)
    if cached is not None and cached[0] is transaction:
        found: list[Target] = cached[1]
        return found
    found = _read_targets(connection)
    connection.info[_TARGETS] = (transaction, found)
    return found


_TARGET_COLUMNS = (_WEBHOOK.c.id, _WEBHOOK.c.min_probability, _WEBHOOK.c.device_id_prefix)
_TARGET_TEXT: dict[sa.Dialect, str] = {}  # the SELECT, compiled once per dialect
# per dialect and the driver's type codes of the columns: each one's result processor
_TARGET_PROCESSORS: dict[tuple[Any, ...], list[Callable[[Any], Any] | None]] = {}


def _read_targets(connection: Connection) -> list[Target]:
    """The webhooks' targets through the driver, on the transaction's connection: every group
    commit that stores predictions reads them, and SQLAlchemy's execution of this one SELECT
    took 4 times the query itself (in the writer thread every request of the group waits on).
    Each value goes through its column type's result processor for the type the driver
    reports, as SQLAlchemy's own execution does."""
    dialect = connection.dialect
    text = _TARGET_TEXT.get(dialect)
    if text is None:
        text = _TARGET_TEXT[dialect] = str(sa.select(*_TARGET_COLUMNS).compile(dialect=dialect))
    with driver_errors(dialect):
        cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(text)
            codes = (dialect, *(column[1] for column in cursor.description))
            rows = cursor.fetchall()
        finally:
            cursor.close()
    processors = _TARGET_PROCESSORS.get(codes)
    if processors is None:
        processors = _TARGET_PROCESSORS[codes] = [
            column.type._cached_result_processor(dialect, code)
            for column, code in zip(_TARGET_COLUMNS, codes[1:], strict=True)
        ]
    converted = (
        [p(v) if p is not None else v for p, v in zip(processors, row, strict=True)] for row in rows
    )
    return [Target(*values) for values in converted]


def enqueue(connection: Connection, deliveries: Sequence[Mapping[str, Any]]) -> None:
    """Write deliveries (id, webhook_id, prediction_id, created_at, body), due at once."""
    if deliveries:
        rows = [
            {**row, "status": PENDING, "attempts": 0, "next_attempt_at": row["created_at"]}
            for row in deliveries
        ]
        connection.execute(sa.insert(_DELIVERY), rows)


def claim_due(engine: Engine, now: datetime, limit: int, lease: timedelta) -> list[Claimed]:
    """Claim up to `limit` due deliveries for `lease`, committed before the caller POSTs."""
    claim = uuid.uuid4()
    due = (
        sa.select(_DELIVERY.c.id)
        .where(
            _DELIVERY.c.status == PENDING,
            _DELIVERY.c.next_attempt_at <= now,
            sa.or_(_DELIVERY.c.claimed_until.is_(None), _DELIVERY.c.claimed_until < now),
        )
        .order_by(_DELIVERY.c.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)  # PostgreSQL; SQLite has one writer at a time
    )
    taken = (
        sa.update(_DELIVERY)
        .where(_DELIVERY.c.id.in_(due.scalar_subquery()))
        .values(claim=claim, claimed_until=now + lease)
        .returning(_DELIVERY.c.id, _DELIVERY.c.webhook_id, _DELIVERY.c.body, _DELIVERY.c.attempts)
    )
    with translate_errors(), engine.begin() as connection:
        rows = connection.execute(taken).all()
        if not rows:
            return []
        hooks = {
            row.id: row
            for row in connection.execute(
                sa.select(_WEBHOOK.c.id, _WEBHOOK.c.url, _WEBHOOK.c.secret).where(
                    _WEBHOOK.c.id.in_({row.webhook_id for row in rows})
                )
            )
        }
    return [
        Claimed(
            row.id,
            row.webhook_id,
            hooks[row.webhook_id].url,
            hooks[row.webhook_id].secret,
            bytes(row.body),
            row.attempts,
            claim,
        )
        for row in sorted(rows, key=lambda r: r.id)
        if row.webhook_id in hooks
    ]


@dataclass(frozen=True)
class Attempt:
    """How one POST of a delivery went."""

    at: datetime
    delivered: bool
    status_code: int | None = None
    error: str | None = None


def record_attempt(
    engine: Engine, claimed: Claimed, attempt: Attempt, retry_at: datetime | None
) -> bool:
    """Record an attempt under its claim: delivered, retried at `retry_at`, or dead (None).

    False when the claim was lost (its lease ended and another worker took the row, or the
    webhook was deleted meanwhile): nothing is written.
    """
    values: dict[str, Any] = {
        "attempts": claimed.attempts + 1,
        "last_attempt_at": attempt.at,
        "last_status_code": attempt.status_code,
        "last_error": attempt.error[:500] if attempt.error else None,
        "claim": None,
        "claimed_until": None,
    }
    if attempt.delivered:
        values.update(status=DELIVERED, delivered_at=attempt.at, next_attempt_at=None)
    elif retry_at is None:
        values.update(status=DEAD, next_attempt_at=None)
    else:
        values.update(next_attempt_at=retry_at)
    query = (
        sa.update(_DELIVERY)
        .where(_DELIVERY.c.id == claimed.id, _DELIVERY.c.claim == claimed.claim)
        .values(**values)
    )
    with translate_errors(), engine.begin() as connection:
        return connection.execute(query).rowcount == 1


def delivery_page(
    session: Session, webhook_id: uuid.UUID, first: int, before: uuid.UUID | None
) -> list[WebhookDelivery]:
    """Up to `first` deliveries of a webhook, newest first, older than delivery `before`."""
    query = (
        sa.select(WebhookDelivery)
        .where(_DELIVERY.c.webhook_id == webhook_id)
        .order_by(_DELIVERY.c.id.desc())
        .limit(first)
    )
    if before is not None:
        query = query.where(_DELIVERY.c.id < before)
    return list(session.execute(query).scalars())


def delivery_count(session: Session, webhook_id: uuid.UUID) -> int:
    """How many deliveries a webhook has."""
    query = sa.select(sa.func.count()).where(_DELIVERY.c.webhook_id == webhook_id)
    return int(session.execute(query).scalar_one())
