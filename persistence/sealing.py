"""Tamper evidence for the audit trail: blocks of audit rows sealed by a chain of sha256 digests.

Ids are UUIDv7 made when a request starts, and rows commit when it ends, so ids can commit out
of order. A block therefore only takes rows older than a lag (longer than any request can take
to commit): below that watermark no new row can appear, and a row that appears there later was
inserted behind the application's back, which `verify_seals` reports.
"""

import hashlib
import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from persistence.errors import Conflict
from persistence.ids import id_floor
from persistence.session import session_scope
from persistence.tables import AuditEvent, AuditSeal

GENESIS = "0" * 64
DEFAULT_LAG_SECONDS = 120.0
DEFAULT_BLOCK_SIZE = 500
_AUDIT: sa.Table = AuditEvent.__table__  # type: ignore[attr-defined]
_COLUMNS = [column.name for column in _AUDIT.columns]
# The columns audit_event had when sealing began (migration 0002): every digest covers them,
# null or not. A column added later is covered only when it holds a value, so a row sealed before
# the column existed (it reads as null there) keeps its digest, while a value set on it afterwards
# still changes the digest and is reported as an alteration.
FIRST_SEALED_COLUMNS = frozenset(
    {
        "id",
        "received_at",
        "finished_at",
        "duration_ms",
        "subject",
        "client_addr",
        "user_agent",
        "http_method",
        "http_path",
        "http_status",
        "operation_type",
        "operation_name",
        "query_sha256",
        "outcome",
        "error_codes",
        "predictions_created",
    }
)


def _canonical(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    return value


def row_digest(row: Any) -> str:
    """sha256 of an audit row's columns (later columns only when not null), in a canonical form
    (`row`: an AuditEvent, or anything with the audit columns as attributes)."""
    return _digest(zip(_COLUMNS, [getattr(row, name) for name in _COLUMNS], strict=True))


def _digest(items: Iterable[tuple[str, Any]]) -> str:
    """`row_digest` of a row given as (column, value) pairs; the sealer passes a select's
    rows, in `_COLUMNS` order, as they are (a Row's attributes cost more than its digest)."""
    values = {}
    for name, value in items:
        if value is not None:
            values[name] = _canonical(value)
        elif name in FIRST_SEALED_COLUMNS:
            values[name] = None
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()


def block_digest(prev_digest: str, digests: dict[str, str]) -> str:
    """sha256 chaining the previous block's digest with this block's row digests in id order."""
    hasher = hashlib.sha256(prev_digest.encode())
    for event_id in sorted(digests, key=uuid.UUID):
        hasher.update(f"{event_id}:{digests[event_id]}".encode())
    return hasher.hexdigest()


def _last_seal(session: Session) -> Any:
    """The last seal's sequence, last event id and digest (None: no seal yet): not its row
    digests, which the next block does not need (decoding them cost more than sealing)."""
    query = sa.select(
        col(AuditSeal.sequence), col(AuditSeal.last_event_id), col(AuditSeal.digest)
    ).order_by(col(AuditSeal.sequence).desc())
    return session.execute(query.limit(1)).first()


def _seal_block(session: Session, watermark: uuid.UUID, block_size: int) -> AuditSeal | None:
    last = _last_seal(session)
    # Plain rows, not ORM objects: the same values (each column's result processor), and the
    # sealer, which holds the GIL beside the event loop while it catches up, costs a fraction.
    query = sa.select(_AUDIT).where(_AUDIT.c.id < watermark)
    if last is not None:
        query = query.where(_AUDIT.c.id > last.last_event_id)
    rows = list(session.execute(query.order_by(_AUDIT.c.id).limit(block_size)))
    if not rows:
        return None
    digests = {str(row[0]): _digest(zip(_COLUMNS, row, strict=True)) for row in rows}
    prev = last.digest if last else GENESIS
    seal = AuditSeal(
        sequence=(last.sequence + 1) if last else 1,
        sealed_at=datetime.now(UTC),
        first_event_id=rows[0].id,
        last_event_id=rows[-1].id,
        event_count=len(rows),
        row_digests=digests,
        prev_digest=prev,
        digest=block_digest(prev, digests),
    )
    session.add(seal)
    session.flush()
    return seal


def seal_pending(
    engine: Engine,
    lag_seconds: float = DEFAULT_LAG_SECONDS,
    block_size: int = DEFAULT_BLOCK_SIZE,
    max_blocks: int = 1000,
) -> int:
    """Seal every complete block older than the lag; return how many events were sealed.

    Safe beside other sealers: a block another process sealed first makes this one stop.
    """
    watermark = id_floor(int((time.time() - lag_seconds) * 1000))
    sealed = 0
    for _ in range(max_blocks):
        try:
            with session_scope(engine) as session:
                seal = _seal_block(session, watermark, block_size)
        except Conflict:
            return sealed  # another sealer extended the chain at the same moment
        if seal is None:
            return sealed
        sealed += seal.event_count
    return sealed


@dataclass
class SealReport:
    """What verification found: problems per kind, and how much it checked."""

    blocks: int = 0
    events: int = 0
    altered: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    inserted: list[str] = field(default_factory=list)
    broken_chain: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every sealed block is intact."""
        return not (self.altered or self.deleted or self.inserted or self.broken_chain)


def _check_block(session: Session, seal: AuditSeal, prev: str, report: SealReport) -> None:
    if seal.prev_digest != prev or block_digest(prev, seal.row_digests) != seal.digest:
        report.broken_chain.append(seal.sequence)
    query = select(AuditEvent).where(
        col(AuditEvent.id) >= seal.first_event_id, col(AuditEvent.id) <= seal.last_event_id
    )
    found = {str(row.id): row for row in session.exec(query)}
    for event_id, digest in seal.row_digests.items():
        row = found.pop(event_id, None)
        if row is None:
            report.deleted.append(event_id)
        elif row_digest(row) != digest:
            report.altered.append(event_id)
    report.inserted.extend(sorted(found))
    report.blocks += 1
    report.events += seal.event_count


def verify_seals(engine: Engine) -> SealReport:
    """Recompute every sealed block and the chain between them."""
    report = SealReport()
    with session_scope(engine) as session:
        seals = session.exec(select(AuditSeal).order_by(col(AuditSeal.sequence)))
        prev = GENESIS
        for expected, seal in enumerate(seals, start=1):
            if seal.sequence != expected:
                report.broken_chain.append(expected)
            _check_block(session, seal, prev, report)
            prev = seal.digest
    return report


def sealed_count(engine: Engine) -> int:
    """How many audit events are covered by seals."""
    with session_scope(engine) as session:
        total = session.execute(sa.select(sa.func.coalesce(sa.func.sum(AuditSeal.event_count), 0)))
        return int(total.scalar_one())
