"""Evaluation runs of model versions (`failcast evaluate`): stored once, read newest first."""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlmodel import Session

from persistence.tables import ModelEvaluation

_EVALUATION: sa.Table = ModelEvaluation.__table__  # type: ignore[attr-defined]


def add_evaluation(session: Session, evaluation: ModelEvaluation) -> ModelEvaluation:
    """Store an evaluation run (the unit of work commits it)."""
    session.add(evaluation)
    session.flush()
    return evaluation


def latest_evaluations(
    session: Session, version_ids: Sequence[int], first: int
) -> dict[int, list[ModelEvaluation]]:
    """Up to `first` evaluations of each version, newest first (one query for every version)."""
    if not version_ids:
        return {}
    e = _EVALUATION.c
    rank = sa.func.row_number().over(partition_by=e.model_version_id, order_by=e.id.desc())
    ranked = (
        sa.select(e.id, rank.label("rank"))
        .where(e.model_version_id.in_(sorted(set(version_ids))))
        .subquery("ranked")
    )
    query = (
        sa.select(ModelEvaluation)
        .join(ranked, ranked.c.id == e.id)
        .where(ranked.c.rank <= first)
        .order_by(e.id.desc())
    )
    found: dict[int, list[ModelEvaluation]] = {i: [] for i in version_ids}
    for row in session.execute(query).scalars():
        found[row.model_version_id].append(row)
    return found
