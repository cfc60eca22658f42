"""Repositories: all SQL of the project. They flush; the unit of work commits."""

import os
import socket
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import defer
from sqlmodel import Session, col, select

from persistence import lifecycle
from persistence.errors import NotFound
from persistence.records import audit_rows
from persistence.tables import AuditEvent, ModelRefusal, ModelVersion, Prediction


class ModelVersionRepository:
    """The model registry."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, version: ModelVersion) -> ModelVersion:
        """Store a new version (inactive unless activated afterwards)."""
        version.is_active = False
        if version.created_at is None:
            version.created_at = datetime.now(UTC)
        self.session.add(version)
        self.session.flush()
        return version

    def list_all(self) -> list[ModelVersion]:
        """Every version, newest first, without artifact bytes."""
        query = select(ModelVersion).options(defer(ModelVersion.artifact))  # type: ignore[arg-type]
        return list(self.session.exec(query.order_by(col(ModelVersion.id).desc())))

    def get(self, version: str, with_artifact: bool = False) -> ModelVersion:
        """A version by its name; NotFound when there is none."""
        where = ModelVersion.version == version
        return self._one(where, with_artifact, f"no model version {version!r}")

    def get_by_id(self, version_id: int, with_artifact: bool = False) -> ModelVersion:
        """A version by its primary key; NotFound when there is none."""
        where = ModelVersion.id == version_id
        return self._one(where, with_artifact, f"no model version with id {version_id}")

    def _one(self, where: Any, with_artifact: bool, missing: str) -> ModelVersion:
        query = select(ModelVersion).where(where)
        if not with_artifact:
            query = query.options(defer(ModelVersion.artifact))  # type: ignore[arg-type]
        found = self.session.exec(query).first()
        if found is None:
            raise NotFound(missing)
        return found

    def get_many(self, ids: Sequence[int]) -> dict[int, ModelVersion]:
        """Versions by primary key, without artifact bytes."""
        query = select(ModelVersion).where(col(ModelVersion.id).in_(list(ids)))
        rows = self.session.exec(query.options(defer(ModelVersion.artifact)))  # type: ignore[arg-type]
        return {row.id: row for row in rows if row.id is not None}

    def active(self, with_artifact: bool = False) -> ModelVersion | None:
        """The active version, or None when no version is active."""
        query = select(ModelVersion).where(col(ModelVersion.is_active).is_(True))
        if not with_artifact:
            query = query.options(defer(ModelVersion.artifact))  # type: ignore[arg-type]
        return self.session.exec(query).first()

    def active_ref(self) -> tuple[int, str] | None:
        """(id, artifact sha256) of the active version: the cheap query a poller runs."""
        query = sa.select(col(ModelVersion.id), col(ModelVersion.artifact_sha256)).where(
            col(ModelVersion.is_active).is_(True)
        )
        row = self.session.execute(query).first()
        return None if row is None else (int(row[0]), str(row[1]))

    def activate(
        self,
        version: str,
        *,
        via: str = "cli",
        subject: str | None = None,
        reason: str | None = None,
    ) -> ModelVersion:
        """Make exactly this version active, and record the switch (see persistence.lifecycle).

        Activating the version that is already active changes and records nothing.
        """
        target = self.get(version)
        current = lifecycle.active_id(self.session)
        if target.id != current:
            assert target.id is not None
            change = lifecycle.Activation(target.id, current, via, subject, reason)
            change.apply(self.session.connection())
            self.session.expire_all()  # the flags changed under the ORM's feet
        return self.get(version)

    def rollback(
        self, *, via: str = "cli", subject: str | None = None, reason: str | None = None
    ) -> ModelVersion:
        """Re-activate the version that was active before the current one; NotFound if none."""
        previous = lifecycle.previous_id(self.session)
        if previous is None:
            raise NotFound("no version was active before the current one: nothing to roll back to")
        name = self.get_many([previous])[previous].version
        return self.activate(name, via=via, subject=subject, reason=reason)

    def record_refusal(self, version_id: int, sha256: str, reason: str) -> None:
        """Note that this process refused to load a version, and why."""
        self.session.add(
            ModelRefusal(
                model_version_id=version_id,
                artifact_sha256=sha256,
                reason=reason[:1000],
                refused_at=datetime.now(UTC),
                hostname=socket.gethostname()[:255],
                pid=os.getpid(),
            )
        )
        self.session.flush()

    def refusals(self, version_id: int) -> list[ModelRefusal]:
        """The recorded refusals of a version, oldest first."""
        query = select(ModelRefusal).where(ModelRefusal.model_version_id == version_id)
        return list(self.session.exec(query.order_by(col(ModelRefusal.id))))

    def next_version_name(self, today: date | None = None) -> str:
        """The next free name of the form YYYY.MM.DD-N."""
        prefix = (today or datetime.now(UTC).date()).strftime("%Y.%m.%d")
        query = sa.select(col(ModelVersion.version)).where(
            col(ModelVersion.version).startswith(f"{prefix}-")
        )
        taken = [name.rsplit("-", 1)[-1] for name in self.session.execute(query).scalars()]
        numbers = [int(n) for n in taken if n.isdigit()]
        return f"{prefix}-{max(numbers, default=0) + 1}"


class PredictionRepository:
    """Stored predictions."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def add_many(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert prediction rows in one statement."""
        if rows:
            self.session.execute(sa.insert(Prediction), list(rows))

    def get(self, prediction_id: uuid.UUID) -> Prediction | None:
        """One prediction by id."""
        return self.session.get(Prediction, prediction_id)

    def count(self) -> int:
        """How many predictions are stored."""
        return int(
            self.session.execute(sa.select(sa.func.count()).select_from(Prediction)).one()[0]
        )


@dataclass(frozen=True)
class AuditFilter:
    """Optional narrowing of the audit trail."""

    subject: str | None = None
    outcome: str | None = None
    received_from: datetime | None = None
    received_to: datetime | None = None
    operation_name: str | None = None
    client_request_id: str | None = None


def _filter_audit(query: Any, where: AuditFilter) -> Any:
    if where.subject is not None:
        query = query.where(AuditEvent.subject == where.subject)
    if where.outcome is not None:
        query = query.where(AuditEvent.outcome == where.outcome)
    if where.received_from is not None:
        query = query.where(col(AuditEvent.received_at) >= where.received_from)
    if where.received_to is not None:
        query = query.where(col(AuditEvent.received_at) < where.received_to)
    if where.operation_name is not None:
        query = query.where(AuditEvent.operation_name == where.operation_name)
    if where.client_request_id is not None:
        query = query.where(AuditEvent.client_request_id == where.client_request_id)
    return query


class AuditRepository:
    """The audit trail: insert and read, never update or delete."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def add_many(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert audit rows in one statement."""
        if rows:
            self.session.execute(sa.insert(AuditEvent), audit_rows(rows))

    def page(
        self, first: int, before: uuid.UUID | None, where: AuditFilter | None = None
    ) -> list[AuditEvent]:
        """Up to `first` events, newest first, older than `before` when given."""
        query = select(AuditEvent)
        if before is not None:
            query = query.where(col(AuditEvent.id) < before)
        if where is not None:
            query = _filter_audit(query, where)
        return list(self.session.exec(query.order_by(col(AuditEvent.id).desc()).limit(first)))

    def get(self, event_id: uuid.UUID) -> AuditEvent | None:
        """One audit event by its request id."""
        return self.session.get(AuditEvent, event_id)

    def subjects(self, event_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str | None]:
        """The subject of each request, by request id, in one query."""
        query = sa.select(col(AuditEvent.id), col(AuditEvent.subject))
        rows = self.session.execute(query.where(col(AuditEvent.id).in_(list(event_ids))))
        return {row[0]: row[1] for row in rows}

    def count(self, where: AuditFilter | None = None) -> int:
        """How many audit events are stored (that the filter matches)."""
        query = sa.select(sa.func.count()).select_from(AuditEvent)
        if where is not None:
            query = _filter_audit(query, where)
        return int(self.session.execute(query).scalar_one())
