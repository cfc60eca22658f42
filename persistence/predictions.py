"""Reading stored predictions: filters, orderings and keyset pages, counts, devices.

Pages are keyset pages: rows after (or before) a position `(sort value, id)` in an ordering whose
ties are broken by the id, so a page stays put while rows are added, and every filter and order
is served by an index (see the indexes of `Prediction`).
"""

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from persistence.tables import HIGH_RISK, AuditEvent, ModelVersion, Prediction


@dataclass(frozen=True)
class PredictionFilter:
    """Optional narrowing of the predictions: every given condition must hold.

    Times and probabilities are ranges: `*_from` inclusive, `*_to` exclusive; the probability
    bounds are both inclusive. `subject` is who asked (the request's audit row).
    """

    device_id: str | None = None
    device_id_prefix: str | None = None
    model_version: str | None = None
    is_failure: bool | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    observed_from: datetime | None = None
    observed_to: datetime | None = None
    min_probability: float | None = None
    max_probability: float | None = None
    subject: str | None = None


class OrderField(StrEnum):
    """What a page of predictions is ordered by (ties broken by the id)."""

    CREATED_AT = "created_at"
    OBSERVED_AT = "observed_at"
    FAILURE_PROBABILITY = "failure_probability"


@dataclass(frozen=True)
class Position:
    """A place in an ordering: the sort value of a row, and its id."""

    value: Any
    id: uuid.UUID


def filtered(query: Any, where: PredictionFilter) -> Any:
    """`query` narrowed by every condition of the filter."""
    conditions = _conditions(where)
    return query.where(*conditions) if conditions else query


def _conditions(where: PredictionFilter) -> list[Any]:
    c = Prediction.__table__.c  # type: ignore[attr-defined]
    given: list[tuple[Any, Callable[[Any], Any]]] = [
        (where.device_id, lambda v: c.device_id == v),
        (where.is_failure, lambda v: c.is_failure.is_(v)),
        (where.created_from, lambda v: c.created_at >= v),
        (where.created_to, lambda v: c.created_at < v),
        (where.observed_from, lambda v: c.observed_at >= v),
        (where.observed_to, lambda v: c.observed_at < v),
        (where.min_probability, lambda v: c.failure_probability >= v),
        (where.max_probability, lambda v: c.failure_probability <= v),
        (where.model_version, lambda v: c.model_version_id == _version_id(v)),
        (where.subject, lambda v: c.audit_event_id.in_(_asked_by(v))),
    ]
    found = [condition(value) for value, condition in given if value is not None]
    return found + _prefix(c.device_id, where.device_id_prefix)


def _prefix(column: Any, prefix: str | None) -> list[Any]:
    """device ids starting with `prefix`: a range an index serves, and LIKE to be exact."""
    if prefix is None:
        return []
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return [column >= prefix, column.like(escaped + "%", escape="\\")]


def _version_id(version: str) -> Any:
    query = sa.select(col(ModelVersion.id)).where(col(ModelVersion.version) == version)
    return query.scalar_subquery()


def _asked_by(subject: str) -> Any:
    return sa.select(col(AuditEvent.id)).where(col(AuditEvent.subject) == subject)


def ordered_page(
    session: Session,
    where: PredictionFilter,
    field: OrderField,
    descending: bool,
    limit: int,
    after: Position | None = None,
) -> list[Prediction]:
    """Up to `limit` predictions in this order, from just after `after` (from the start).

    Highest probabilities first is read from the small index of the high-risk rows (those at
    or above HIGH_RISK) while they last, and only then from the rest of the table.
    """
    if field is not OrderField.FAILURE_PROBABILITY or not descending:
        return _page(session, where, field, descending, limit, after, None)
    if after is not None and after.value < HIGH_RISK:
        return _page(session, where, field, descending, limit, after, low=True)
    found = _page(session, where, field, descending, limit, after, low=False)
    if len(found) == limit or (where.min_probability or 0.0) >= HIGH_RISK:
        return found
    return found + _page(session, where, field, descending, limit - len(found), None, low=True)


def _page(
    session: Session,
    where: PredictionFilter,
    field: OrderField,
    descending: bool,
    limit: int,
    after: Position | None,
    low: bool | None,
) -> list[Prediction]:
    key = getattr(Prediction.__table__.c, field.value)  # type: ignore[attr-defined]
    ident = Prediction.__table__.c.id  # type: ignore[attr-defined]
    query = filtered(select(Prediction), where)
    if low is not None:  # a literal, so that both planners see the partial index applies
        query = query.where(sa.text(f"failure_probability {'<' if low else '>='} {HIGH_RISK}"))
    if after is not None:
        beyond = (key < after.value) if descending else (key > after.value)
        tie = (ident < after.id) if descending else (ident > after.id)
        query = query.where(sa.or_(beyond, sa.and_(key == after.value, tie)))
    order = (key.desc(), ident.desc()) if descending else (key.asc(), ident.asc())
    return list(session.exec(query.order_by(*order).limit(limit)))


def count(session: Session, where: PredictionFilter) -> int:
    """How many predictions the filter matches."""
    query = filtered(sa.select(sa.func.count()).select_from(Prediction), where)
    return int(session.execute(query).scalar_one())


def sort_value(row: Prediction, field: OrderField) -> Any:
    """A row's value in an ordering, for its position."""
    return getattr(row, field.value)


def latest_for_devices(session: Session, device_ids: Sequence[str]) -> dict[str, Prediction]:
    """Each device's latest prediction (by observation time, then id)."""
    found: dict[str, Prediction] = {}
    for device_id in device_ids:
        query = select(Prediction).where(col(Prediction.device_id) == device_id)
        query = query.order_by(col(Prediction.observed_at).desc(), col(Prediction.id).desc())
        row = session.exec(query.limit(1)).first()
        if row is not None:
            found[device_id] = row
    return found


def max_probability(
    session: Session, device_id: str, observed_from: datetime | None, observed_to: datetime | None
) -> float | None:
    """The highest failure probability of a device's predictions in a window."""
    where = PredictionFilter(
        device_id=device_id, observed_from=observed_from, observed_to=observed_to
    )
    query = filtered(sa.select(sa.func.max(col(Prediction.failure_probability))), where)
    value = session.execute(query).scalar_one()
    return None if value is None else float(value)
