"""Switching the active model version, its history, and how servers hear of a switch.

A switch is one transaction: the old version loses the active flag, the new one gets it, and a
`model_activation` row says who, when, from which version to which and why. It is checked
against the version that was active when the switch was decided (`from_version_id`): a switch
made meanwhile by someone else makes this one a Conflict, never a silent overwrite. On
PostgreSQL the switch takes a transaction-scoped advisory lock (two switches queue, they never
interleave) and sends `NOTIFY failcast_model_activation` in the same transaction, so every
listening server hears of it when, and only if, it commits. SQLite has one writer at a time and
no notifications: servers find the switch when they next poll the registry.
"""

import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import aliased
from sqlmodel import Session, col

from persistence import notifications
from persistence.errors import Conflict, NotFound
from persistence.tables import ModelActivation, ModelVersion

log = logging.getLogger("failcast.lifecycle")

CHANNEL = "failcast_model_activation"
VIA = ("api", "cli", "train")
_LOCK_KEY = 0x6661696C63617374  # "failcast": the advisory lock of model switches
_VERSION: sa.Table = ModelVersion.__table__  # type: ignore[attr-defined]
_ACTIVATION: sa.Table = ModelActivation.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Activation:
    """A switch of the active version, applied in the transaction of whoever asked for it."""

    to_version_id: int
    from_version_id: int | None  # the version active when the switch was decided
    via: str
    subject: str | None = None
    reason: str | None = None
    request_id: uuid.UUID | None = None
    activated_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        if self.via not in VIA:
            raise ValueError(f"via must be one of {VIA}")

    def apply(self, connection: Connection) -> None:
        """Make the switch on this connection (the caller commits); Conflict if it is stale."""
        postgres = connection.dialect.name == "postgresql"
        if postgres:
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        current = connection.execute(
            sa.select(_VERSION.c.id).where(_VERSION.c.is_active.is_(True))
        ).scalar_one_or_none()
        if current != self.from_version_id:
            raise Conflict(
                "the active model version changed while this switch was being made: "
                "read the active version again and retry"
            )
        connection.execute(
            sa.update(_VERSION).where(_VERSION.c.is_active.is_(True)).values(is_active=False)
        )
        switched = connection.execute(
            sa.update(_VERSION)
            .where(_VERSION.c.id == self.to_version_id)
            .values(is_active=True, activated_at=self.activated_at)
        )
        if switched.rowcount != 1:
            raise NotFound(f"no model version with id {self.to_version_id}")
        connection.execute(
            sa.insert(_ACTIVATION).values(
                activated_at=self.activated_at,
                to_version_id=self.to_version_id,
                from_version_id=self.from_version_id,
                subject=self.subject[:255] if self.subject else None,
                reason=self.reason,
                via=self.via,
                request_id=self.request_id,
            )
        )
        notifications.notify(connection, CHANNEL, str(self.to_version_id))


@dataclass(frozen=True)
class ActivationEntry:
    """One row of the activation history, with version names."""

    id: int
    activated_at: datetime
    to_version: str
    from_version: str | None
    subject: str | None
    reason: str | None
    via: str
    request_id: uuid.UUID | None


def active_id(session: Session) -> int | None:
    """The id of the active version, or None."""
    query = sa.select(col(ModelVersion.id)).where(col(ModelVersion.is_active).is_(True))
    return session.execute(query).scalar_one_or_none()


def previous_id(session: Session) -> int | None:
    """The version that was active before the current one (what a rollback re-activates)."""
    current = active_id(session)
    if current is None:
        return None
    query = (
        sa.select(_ACTIVATION.c.from_version_id)
        .where(_ACTIVATION.c.to_version_id == current)
        .order_by(_ACTIVATION.c.id.desc())
        .limit(1)
    )
    return session.execute(query).scalar_one_or_none()


def activation_page(session: Session, first: int, before: int | None) -> list[ActivationEntry]:
    """Up to `first` entries of the history, newest first, older than entry `before`."""
    to_v, from_v = aliased(_VERSION), aliased(_VERSION)
    query = (
        sa.select(_ACTIVATION, to_v.c.version.label("to_name"), from_v.c.version.label("from_name"))
        .join(to_v, to_v.c.id == _ACTIVATION.c.to_version_id)
        .outerjoin(from_v, from_v.c.id == _ACTIVATION.c.from_version_id)
        .order_by(_ACTIVATION.c.id.desc())
        .limit(first)
    )
    if before is not None:
        query = query.where(_ACTIVATION.c.id < before)
    return [
        ActivationEntry(
            id=row.id,
            activated_at=row.activated_at,
            to_version=row.to_name,
            from_version=row.from_name,
            subject=row.subject,
            reason=row.reason,
            via=row.via,
            request_id=row.request_id,
        )
        for row in session.execute(query)
    ]


def activation_count(session: Session) -> int:
    """How many switches the history holds."""
    return int(session.execute(sa.select(sa.func.count()).select_from(_ACTIVATION)).scalar_one())


def listens(engine: Engine) -> bool:
    """Whether servers on this database hear of switches (PostgreSQL) or must poll (SQLite)."""
    return notifications.listens(engine)


def activations_heard(engine: Engine) -> AsyncIterator[str]:
    """Yield the payload (the new version's id) of each switch committed from now on.

    Raises DatabaseUnavailable when the connection is lost: the caller reconnects and re-reads
    the registry, since switches made while nobody listened are not replayed.
    """
    return notifications.heard(engine, CHANNEL, "model switches")
