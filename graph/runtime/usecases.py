"""Use cases shared by the GraphQL schema and the REST route: predict, and reading history."""

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Generic, TypeVar

import numpy as np
from sqlalchemy.engine import Engine
from sqlmodel import Session

from graph.errors import ErrorCode, FailcastError, bad_input
from graph.runtime.alerts import Alerts
from graph.runtime.audit import RequestAudit
from graph.runtime.histories import DeviceHistories
from graph.runtime.models import ModelService
from graph.runtime.telemetry import Columns, Telemetry
from model import DEVICE_FEATURES, LoadedModel, find_invalid_values
from model.compiled import Explanation
from persistence import (
    AuditEvent,
    AuditFilter,
    AuditRepository,
    ModelVersion,
    ModelVersionRepository,
    NotFound,
    OrderField,
    Position,
    Prediction,
    PredictionBlock,
    PredictionFilter,
    PredictionRepository,
    analytics,
    new_ids,
    predictions,
    session_scope,
)
from persistence.analytics import Bucket, BucketStats, DeviceAtRisk, TimeField

MAX_DEVICE_ID = 64
EARLIEST_OBSERVATION = datetime(2000, 1, 1, tzinfo=UTC)
FUTURE_SLACK = timedelta(minutes=5)  # clocks of devices and servers disagree a little
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Predicted:
    """What one predict call made, and the model that made it."""

    block: PredictionBlock
    model: LoadedModel


class Layout(Enum):
    """How a request lays its rows out: what `extensions.field` calls the place of a value."""

    ONE = "one"  # predict, POST /predict: input.metric1
    ROWS = "rows"  # predictBatch: inputs.3.metric1 (row 3)
    COLUMNS = "columns"  # predictColumns: input.metric1.3 (row 3 of the metric1 list)

    def where(self, row: int, field: str) -> str:
        """The path of a row's field in the request, as `extensions.field` names it."""
        if self is Layout.ROWS:
            return f"inputs.{row}.{field}"
        if self is Layout.COLUMNS:
            return f"input.{field}.{row}"
        return f"input.{field}"


def check_batch_size(count: int, limit: int) -> None:
    """BAD_USER_INPUT unless a batch holds 1..limit rows."""
    if not 1 <= count <= limit:
        raise bad_input(f"inputs must hold 1..{limit} items, got {count}", "inputs")


def check_columns(lengths: Mapping[str, int], limit: int) -> None:
    """BAD_USER_INPUT unless the columns of a predictColumns input (length of each list given,
    by field) hold 1..limit rows, every one of them the same number: the first column over the
    limit, or the first whose length differs from metric1's, is named."""
    for name, length in lengths.items():
        if not 1 <= length <= limit:
            message = f"input.{name} must hold 1..{limit} values (one per row), got {length}"
            raise bad_input(message, f"input.{name}")
    rows = lengths[DEVICE_FEATURES[0]]
    for name, length in lengths.items():
        if length != rows:
            message = (
                f"input.{name} holds {length} values and input.{DEVICE_FEATURES[0]} {rows}: "
                "every list must hold one value per row"
            )
            raise bad_input(message, f"input.{name}")


def column_telemetry(columns: Columns, limit: int) -> Telemetry:
    """The rows of a predictColumns input, once its columns' shape is checked (check_columns)."""
    check_columns(columns.lengths(), limit)
    return columns.telemetry()


def check_telemetry(telemetry: Telemetry, layout: Layout) -> None:
    """BAD_USER_INPUT, naming the first bad value, unless every value may be predicted from."""
    where = layout.where
    for row, device_id in enumerate(telemetry.device_ids):
        if device_id is not None:
            check_device_id(device_id, where(row, "deviceId"))
    for row, moment in enumerate(telemetry.observed_at or ()):
        if moment is not None:
            check_observed_at(moment, where(row, "observedAt"))
    problems = find_invalid_values(telemetry.matrix, DEVICE_FEATURES, limit=1)
    if problems:
        path = where(problems[0].row, problems[0].field)
        raise bad_input(f"{path} {problems[0].reason}", path)


def check_device_id(device_id: str, where: str) -> None:
    """BAD_USER_INPUT at `where` unless a device id is 1..64 printable characters."""
    if not device_id or len(device_id) > MAX_DEVICE_ID:
        raise bad_input(f"deviceId must be 1..{MAX_DEVICE_ID} characters", where)
    if not device_id.isprintable():
        raise bad_input("deviceId must not contain control characters", where)


def check_observed_at(moment: datetime, where: str) -> None:
    """BAD_USER_INPUT at `where` unless a time has an offset and lies in the accepted range."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise bad_input("observedAt needs a UTC offset (e.g. 2026-11-29T08:00:00Z)", where)
    if not EARLIEST_OBSERVATION <= moment <= datetime.now(UTC) + FUTURE_SLACK:
        raise bad_input("observedAt must lie between 2000-01-01 and 5 minutes from now", where)


async def predict(
    models: ModelService,
    histories: DeviceHistories,
    alerts: Alerts,
    audit: RequestAudit,
    telemetry: Telemetry,
    layout: Layout = Layout.ONE,
    explain: bool = False,
) -> Predicted:
    """Check, predict, and queue the predictions for storage with the request's audit row
    (and their alerts, which follow them once committed).

    `layout` says how the request laid its rows out (one row, predictBatch's rows,
    predictColumns' columns), which only the paths of errors depend on.

    A version whose features read a device's earlier observations gets them from the stored
    predictions (`DeviceHistories`); a row without a device id or without a stored history is
    scored as a first observation, with a warning. With `explain` (the answer selects
    `explanation`) each prediction's explanation is computed in the same pass and stored with
    it. Values outside the serving version's training range are noted as warnings, stored
    too; the prediction is made all the same.
    """
    check_telemetry(telemetry, layout)
    loaded = models.current
    if loaded is None:
        raise FailcastError(
            ErrorCode.MODEL_UNAVAILABLE, "no model is available to serve predictions"
        )
    predictor = loaded.predictor
    matrix = telemetry.matrix
    now = datetime.now(UTC)
    observed = _observed_or(telemetry.observed_at, now, len(telemetry))
    features = predictor.features
    missing: list[list[str] | None] | None = None
    rows, counts = matrix, None
    if features.uses_history:
        rows, counts, missing = await histories.windows(
            features, matrix, telemetry.device_ids, observed, audit.id
        )
    scores = await models.scoring.score(loaded, rows, counts, explain)
    warnings = scores.warnings
    if missing is not None and any(missing):
        warnings = _joined(warnings, missing)
    block = PredictionBlock(
        audit_event_id=audit.id,
        model_version_id=loaded.version_id,
        threshold=predictor.threshold,
        created_at=now,
        ids=new_ids(len(telemetry)),
        device_ids=list(telemetry.device_ids),
        observed_at=observed,
        metrics=dict(zip(DEVICE_FEATURES, matrix.T.tolist(), strict=True)),
        failure_probability=scores.probabilities,
        is_failure=scores.is_failure,
        explanations=scores.explanations,
        warnings=warnings,
    )
    audit.add_predictions(block, loaded.version)
    audit.after_commit(lambda: histories.committed(block))
    alerts.announce(audit, block, loaded.version)
    return Predicted(block, loaded)


def _joined(
    first: list[list[str] | None] | None, second: list[list[str] | None]
) -> list[list[str] | None]:
    """Per row, the warnings of both lists (None where neither has any)."""
    if first is None:
        return second
    return [(a or []) + (b or []) or None for a, b in zip(first, second, strict=True)]


@dataclass(frozen=True, slots=True)
class Explainable:
    """A prediction to explain: the version that made it, its inputs (DEVICE_FEATURES), and its
    device and time (where history features read the device's earlier observations)."""

    model_version_id: int
    inputs: tuple[float, ...]
    device_id: str | None
    observed_at: datetime


async def explanations(
    models: ModelService, histories: DeviceHistories, items: Sequence[Explainable]
) -> list[Explanation | None]:
    """Explain stored predictions with the versions that made them, off the event loop."""
    return await asyncio.to_thread(_explanations, models, histories, items)


def _explanations(
    models: ModelService, histories: DeviceHistories, items: Sequence[Explainable]
) -> list[Explanation | None]:
    found: list[Explanation | None] = [None] * len(items)
    by_version: dict[int, list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        by_version[item.model_version_id].append(i)
    for version_id, rows in by_version.items():  # one pass per version
        predictor = models.predictor_for(version_id)
        features = predictor.features
        inputs = np.array([items[i].inputs for i in rows], dtype=np.float64)
        if features.uses_history:  # the device's history as stored now, before each row
            moments = [(items[i].device_id, items[i].observed_at) for i in rows]
            matrix = features.compute(*histories.stored_windows(features, inputs, moments))
        else:
            matrix = features.plain(inputs)
        _, explained = predictor.explain(matrix)
        if explained is not None:  # None: a model scikit-learn answers has no explanations
            for i, explanation in zip(rows, explained, strict=True):
                found[i] = explanation
    return found


def _observed_or(
    observed: list[datetime | None] | None, now: datetime, count: int
) -> list[datetime]:
    """Each row's observation time in UTC; the request's time where the client gave none."""
    if observed is None:
        return [now] * count
    return [now if moment is None else moment.astimezone(UTC) for moment in observed]


@dataclass(frozen=True)
class Page(Generic[T]):
    """A page of a history, and whether more rows follow in its direction."""

    items: list[T]
    has_more: bool


async def read(engine: Engine, work: Callable[[Session], T]) -> T:
    """Run read-only work in a session of its own, off the event loop."""

    def run() -> T:
        with session_scope(engine) as session:
            return work(session)

    return await asyncio.to_thread(run)


def _page(rows: list[T], limit: int) -> Page[T]:
    return Page(rows[:limit], len(rows) > limit)


async def prediction_page(
    engine: Engine,
    where: PredictionFilter,
    field: OrderField,
    descending: bool,
    limit: int,
    after: Position | None,
) -> Page[Prediction]:
    """One page of predictions in an order (one row more is read, to know if more follow)."""
    rows = await read(
        engine, lambda s: predictions.ordered_page(s, where, field, descending, limit + 1, after)
    )
    return _page(rows, limit)


async def prediction_count(engine: Engine, where: PredictionFilter) -> int:
    """How many predictions a filter matches."""
    return await read(engine, lambda s: predictions.count(s, where))


async def audit_page(
    engine: Engine, where: AuditFilter, limit: int, before: uuid.UUID | None
) -> Page[AuditEvent]:
    """One page of the audit trail, newest first."""
    rows = await read(engine, lambda s: AuditRepository(s).page(limit + 1, before, where))
    return _page(rows, limit)


async def audit_count(engine: Engine, where: AuditFilter) -> int:
    """How many audit events a filter matches."""
    return await read(engine, lambda s: AuditRepository(s).count(where))


async def get_prediction(engine: Engine, prediction_id: uuid.UUID) -> Prediction | None:
    """One stored prediction, or None."""
    return await read(engine, lambda s: PredictionRepository(s).get(prediction_id))


async def request_subjects(engine: Engine, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str | None]:
    """The subjects of requests (who asked for each one's predictions)."""
    return await read(engine, lambda s: AuditRepository(s).subjects(ids))


async def latest_predictions(engine: Engine, device_ids: Sequence[str]) -> dict[str, Prediction]:
    """Each device's latest prediction, by observation time."""
    return await read(engine, lambda s: predictions.latest_for_devices(s, device_ids))


async def device_max_probability(
    engine: Engine, device_id: str, observed_from: datetime | None, observed_to: datetime | None
) -> float | None:
    """A device's highest failure probability in a window of observation times."""
    return await read(
        engine, lambda s: predictions.max_probability(s, device_id, observed_from, observed_to)
    )


def _versions(session: Session, ids: Sequence[int] | None) -> list[ModelVersion]:
    repo = ModelVersionRepository(session)
    if ids is None:
        return repo.list_all()
    found = repo.get_many(ids)
    return [found[i] for i in ids if i in found]


async def model_versions(engine: Engine, ids: Sequence[int] | None = None) -> list[ModelVersion]:
    """Registry rows (without artifacts): all of them, or those with the given ids."""
    return await read(engine, lambda s: _versions(s, ids))


def _version(session: Session, version: str) -> ModelVersion | None:
    try:
        return ModelVersionRepository(session).get(version)
    except NotFound:
        return None


async def model_version(engine: Engine, version: str) -> ModelVersion | None:
    """One registry row by version name (without artifact), or None."""
    return await read(engine, lambda s: _version(s, version))


async def active_model_version(engine: Engine) -> ModelVersion | None:
    """The registry's active version (without artifact)."""
    return await read(engine, lambda s: ModelVersionRepository(s).active())


def check_devices_at_risk(min_probability: float, first: int, max_first: int) -> None:
    """BAD_USER_INPUT unless the probability is in [0, 1] and `first` in 1..max_first."""
    if not 0.0 <= min_probability <= 1.0:
        raise bad_input("minProbability must be between 0 and 1", "minProbability")
    if not 1 <= first <= max_first:
        raise bad_input(f"first must be 1..{max_first}", "first")


async def devices_at_risk(
    engine: Engine,
    min_probability: float,
    since: datetime | None,
    device_id_prefix: str | None,
    first: int,
) -> list[DeviceAtRisk]:
    """Devices ranked by the failure probability of their latest prediction, highest first."""
    return await read(
        engine,
        lambda s: analytics.devices_at_risk(s, min_probability, since, device_id_prefix, first),
    )


async def prediction_stats(
    engine: Engine, where: PredictionFilter, bucket: Bucket, field: TimeField, max_rows: int
) -> list[BucketStats]:
    """Statistics per bucket and model version; BAD_USER_INPUT beyond `max_rows` of them."""
    rows = await read(
        engine, lambda s: analytics.prediction_stats(s, where, bucket, field, max_rows + 1)
    )
    if len(rows) > max_rows:
        message = (
            f"the statistics would take more than {max_rows} rows (one per bucket and model "
            "version): narrow the filter or choose a larger bucket"
        )
        raise bad_input(message, "filter")
    return rows
