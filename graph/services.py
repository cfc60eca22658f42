"""Use cases shared by the GraphQL schema and the REST routes."""

import asyncio
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
from sqlalchemy.engine import Engine
from sqlmodel import Session

from graph.audit import RequestAudit
from graph.errors import ServiceError, bad_input
from graph.models import ModelService
from model import DEVICE_FEATURES, LoadedModel, find_invalid_values
from persistence import (
    ModelVersion,
    ModelVersionRepository,
    NotFound,
    Prediction,
    PredictionBlock,
    PredictionRepository,
    new_ids,
    session_scope,
)

MAX_DEVICE_ID = 64
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class TelemetryRow:
    """One device's telemetry, as a caller sent it."""

    metrics: Mapping[str, float]
    device_id: str | None = None


def _check_device_id(device_id: str | None, path: str) -> None:
    if device_id is None:
        return
    if not device_id or len(device_id) > MAX_DEVICE_ID:
        raise bad_input(f"deviceId must be 1..{MAX_DEVICE_ID} characters", f"{path}.deviceId")
    if not device_id.isprintable():
        raise bad_input("deviceId must not contain control characters", f"{path}.deviceId")


@dataclass(frozen=True, slots=True)
class Predicted:
    """What one predict call made, and the model that made it."""

    block: PredictionBlock
    model: LoadedModel


def check_batch_size(count: int, limit: int) -> None:
    """BAD_USER_INPUT unless a batch holds 1..limit rows."""
    if not 1 <= count <= limit:
        raise bad_input(f"inputs must hold 1..{limit} items, got {count}", "inputs")


def predict(
    models: ModelService, audit: RequestAudit, rows: Sequence[TelemetryRow], batch: bool = False
) -> Predicted:
    """Validate, predict and queue the rows for storage with the request's audit record."""
    matrix = np.array([[row.metrics[f] for f in DEVICE_FEATURES] for row in rows], dtype=float)
    return predict_matrix(models, audit, matrix, [row.device_id for row in rows], batch)


def predict_matrix(
    models: ModelService,
    audit: RequestAudit,
    matrix: np.ndarray,
    device_ids: Sequence[str | None],
    batch: bool = False,
) -> Predicted:
    """`predict` for telemetry already in columns: one row of DEVICE_FEATURES per device."""
    for index, device_id in enumerate(device_ids):
        _check_device_id(device_id, f"inputs.{index}" if batch else "input")
    problems = find_invalid_values(matrix, DEVICE_FEATURES, limit=1)
    if problems:
        first = problems[0]
        where = f"inputs.{first.row}.{first.field}" if batch else f"input.{first.field}"
        raise bad_input(f"{where} {first.reason}", where)
    loaded = models.current
    if loaded is None:
        raise ServiceError("no model is available to serve predictions", "MODEL_UNAVAILABLE")
    columns = [DEVICE_FEATURES.index(name) for name in loaded.predictor.feature_names]
    probabilities = loaded.predictor.predict_proba(matrix[:, columns])
    threshold = loaded.predictor.threshold
    block = PredictionBlock(
        audit_event_id=audit.id,
        model_version_id=loaded.version_id,
        threshold=threshold,
        created_at=datetime.now(UTC),
        ids=new_ids(len(device_ids)),
        device_ids=list(device_ids),
        metrics={name: matrix[:, i].tolist() for i, name in enumerate(DEVICE_FEATURES)},
        failure_probability=probabilities.tolist(),
        is_failure=(probabilities >= threshold).tolist(),
    )
    audit.predictions.append(block)
    return Predicted(block, loaded)


@dataclass(frozen=True)
class Page(Generic[T]):
    """A page of a history (predictions or audit events), newest first."""

    items: list[T]
    has_next: bool


class _Pageable(Protocol[T]):
    def page(self, first: int, before: uuid.UUID | None, where: Any) -> list[T]: ...


async def history_page(
    engine: Engine,
    repository: Callable[[Session], _Pageable[T]],
    first: int,
    before: uuid.UUID | None,
    where: Any,
) -> Page[T]:
    """Read one page (plus one row, to know whether more follow) off the event loop."""

    def read() -> Page[T]:
        with session_scope(engine) as session:
            found = repository(session).page(first + 1, before, where)
        return Page(found[:first], len(found) > first)

    return await asyncio.to_thread(read)


def _get_prediction_sync(engine: Engine, prediction_id: uuid.UUID) -> Prediction | None:
    with session_scope(engine) as session:
        return PredictionRepository(session).get(prediction_id)


async def get_prediction(engine: Engine, prediction_id: uuid.UUID) -> Prediction | None:
    """One stored prediction, or None."""
    return await asyncio.to_thread(_get_prediction_sync, engine, prediction_id)


def _versions_sync(engine: Engine, ids: Sequence[int] | None) -> list[ModelVersion]:
    with session_scope(engine) as session:
        repo = ModelVersionRepository(session)
        if ids is None:
            return repo.list_all()
        found = repo.get_many(ids)
        return [found[i] for i in ids if i in found]


async def model_versions(engine: Engine, ids: Sequence[int] | None = None) -> list[ModelVersion]:
    """Registry rows (without artifacts): all of them, or those with the given ids."""
    return await asyncio.to_thread(_versions_sync, engine, ids)


def _version_sync(engine: Engine, version: str) -> ModelVersion | None:
    with session_scope(engine) as session:
        try:
            return ModelVersionRepository(session).get(version)
        except NotFound:
            return None


async def model_version(engine: Engine, version: str) -> ModelVersion | None:
    """One registry row by version name (without artifact), or None."""
    return await asyncio.to_thread(_version_sync, engine, version)


def _active_sync(engine: Engine) -> ModelVersion | None:
    with session_scope(engine) as session:
        return ModelVersionRepository(session).active()


async def active_model_version(engine: Engine) -> ModelVersion | None:
    """The registry's active version (without artifact)."""
    return await asyncio.to_thread(_active_sync, engine)
