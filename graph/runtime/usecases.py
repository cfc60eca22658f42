"""Use cases shared by the GraphQL schema and the REST route: predict, and reading history."""

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy.engine import Engine
from sqlmodel import Session

from graph.errors import ErrorCode, FailcastError, bad_input
from graph.runtime.audit import RequestAudit
from graph.runtime.models import ModelService
from graph.runtime.telemetry import Telemetry
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
class Predicted:
    """What one predict call made, and the model that made it."""

    block: PredictionBlock
    model: LoadedModel


def _where(batch: bool, row: int, field: str) -> str:
    return f"inputs.{row}.{field}" if batch else f"input.{field}"


def check_batch_size(count: int, limit: int) -> None:
    """BAD_USER_INPUT unless a batch holds 1..limit rows."""
    if not 1 <= count <= limit:
        raise bad_input(f"inputs must hold 1..{limit} items, got {count}", "inputs")


def check_telemetry(telemetry: Telemetry, batch: bool) -> None:
    """BAD_USER_INPUT, naming the first bad value, unless every value may be predicted from."""
    for row, device_id in enumerate(telemetry.device_ids):
        if device_id is None:
            continue
        where = _where(batch, row, "deviceId")
        if not device_id or len(device_id) > MAX_DEVICE_ID:
            raise bad_input(f"deviceId must be 1..{MAX_DEVICE_ID} characters", where)
        if not device_id.isprintable():
            raise bad_input("deviceId must not contain control characters", where)
    problems = find_invalid_values(telemetry.matrix, DEVICE_FEATURES, limit=1)
    if problems:
        where = _where(batch, problems[0].row, problems[0].field)
        raise bad_input(f"{where} {problems[0].reason}", where)


def predict(
    models: ModelService, audit: RequestAudit, telemetry: Telemetry, batch: bool = False
) -> Predicted:
    """Check, predict, and queue the predictions for storage with the request's audit row."""
    check_telemetry(telemetry, batch)
    loaded = models.current
    if loaded is None:
        raise FailcastError(
            ErrorCode.MODEL_UNAVAILABLE, "no model is available to serve predictions"
        )
    columns = [DEVICE_FEATURES.index(name) for name in loaded.predictor.feature_names]
    matrix = telemetry.matrix
    probabilities = loaded.predictor.predict_proba(matrix[:, columns])
    threshold = loaded.predictor.threshold
    block = PredictionBlock(
        audit_event_id=audit.id,
        model_version_id=loaded.version_id,
        threshold=threshold,
        created_at=datetime.now(UTC),
        ids=new_ids(len(telemetry)),
        device_ids=list(telemetry.device_ids),
        metrics={name: matrix[:, i].tolist() for i, name in enumerate(DEVICE_FEATURES)},
        failure_probability=probabilities.tolist(),
        is_failure=(probabilities >= threshold).tolist(),
    )
    audit.add_predictions(block, loaded.version)
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
