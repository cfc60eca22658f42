"""Writing what one or more requests produced: audit rows and their predictions, together."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine

from persistence.repositories import AuditRepository, PredictionRepository
from persistence.session import session_scope


@dataclass
class RequestRecord:
    """The rows one request must leave behind: its audit event and any predictions."""

    audit: Mapping[str, Any]
    predictions: Sequence[Mapping[str, Any]] = field(default_factory=list)


def write_records(engine: Engine, records: Sequence[RequestRecord]) -> None:
    """Write the records of several requests in one transaction (all or nothing)."""
    with session_scope(engine) as session:
        AuditRepository(session).add_many([r.audit for r in records])
        PredictionRepository(session).add_many([p for r in records for p in r.predictions])
