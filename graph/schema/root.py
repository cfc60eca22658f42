"""The root fields of the schema (Query and Mutation), each with its declared scope."""

import uuid
from collections.abc import Callable
from typing import Any

import strawberry
from strawberry.types import Info

from graph.errors import bad_input
from graph.runtime import usecases
from graph.runtime.telemetry import decode_telemetry
from graph.schema.audit_types import (
    AuditEventConnectionType,
    AuditEventEdgeType,
    AuditEventFilterInput,
    AuditEventType,
)
from graph.schema.inputs import PredictInput, PredictionFilterInput
from graph.schema.permissions import requires
from graph.schema.types import (
    FailureClassEnum,
    MeType,
    ModelVersionType,
    PageInfoType,
    PredictionConnectionType,
    PredictionEdgeType,
    PredictionType,
    decode_cursor,
    encode_cursor,
    parse_id,
)
from persistence import (
    OUTCOMES,
    AuditFilter,
    AuditRepository,
    PredictionFilter,
    PredictionRepository,
)


def _predict(info: Info, inputs: list[PredictInput], batch: bool) -> list[PredictionType]:
    """The resolvers' side of predict and predictBatch (compiled plans do the same in bulk)."""
    context = info.context
    if batch:
        usecases.check_batch_size(len(inputs), context.runtime.settings.max_batch_size)
    telemetry = decode_telemetry([item.as_input() for item in inputs])
    predicted = usecases.predict(context.runtime.models, context.audit, telemetry, batch)
    context.versions.prime(predicted.model.version_id, predicted.model.info)
    return PredictionType.from_block(predicted.block)


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Predict whether a device is about to fail; the prediction is stored.",
        extensions=requires("predict"),
    )
    def predict(self, info: Info, input: PredictInput) -> PredictionType:
        return _predict(info, [input], batch=False)[0]

    @strawberry.mutation(
        description="Predict for 1..1000 devices at once: all stored, or none if any is invalid.",
        extensions=requires("predictBatch"),
    )
    def predict_batch(self, info: Info, inputs: list[PredictInput]) -> list[PredictionType]:
        return _predict(info, inputs, batch=True)


def _page_args(info: Info, first: int | None, after: str | None) -> tuple[int, uuid.UUID | None]:
    limit = info.context.runtime.settings.max_page_size
    first = 20 if first is None else first
    if not 1 <= first <= limit:
        raise bad_input(f"first must be 1..{limit}", "first")
    return first, decode_cursor(after) if after else None


async def _history(
    info: Info, repository: Any, first: int | None, after: str | None, where: Any
) -> usecases.Page[Any]:
    """One page of a history (predictions or audit events), newest first."""
    size, before = _page_args(info, first, after)
    engine = info.context.runtime.engine
    return await usecases.history_page(engine, repository, size, before, where)


def _connection(page: usecases.Page[Any], node: Callable[[Any], Any], edge: Any, conn: Any) -> Any:
    nodes = [node(row) for row in page.items]
    edges = [
        edge(cursor=encode_cursor(r.id), node=n) for r, n in zip(page.items, nodes, strict=True)
    ]
    end = edges[-1].cursor if edges else None
    page_info = PageInfoType(has_next_page=page.has_next, end_cursor=end)
    return conn(edges=edges, nodes=nodes, page_info=page_info)


def _audit_filter(where: AuditEventFilterInput | None) -> AuditFilter:
    if where is None:
        return AuditFilter()
    if where.outcome is not None and where.outcome not in OUTCOMES:
        raise bad_input(f"outcome must be one of {', '.join(OUTCOMES)}", "filter.outcome")
    return AuditFilter(
        where.subject,
        where.outcome,
        where.from_,
        where.to,
        where.operation_name,
        where.client_request_id,
    )


def _filter(where: PredictionFilterInput | None) -> PredictionFilter:
    if where is None:
        return PredictionFilter()
    is_failure = None if where.label is None else where.label is FailureClassEnum.FAILURE
    return PredictionFilter(where.device_id, where.model_version, is_failure)


@strawberry.type
class Query:
    @strawberry.field(description="One stored prediction by id.", extensions=requires("prediction"))
    async def prediction(self, info: Info, id: strawberry.ID) -> PredictionType | None:
        found = await usecases.get_prediction(info.context.runtime.engine, parse_id(str(id)))
        return None if found is None else PredictionType.from_values(found)

    @strawberry.field(
        description="Stored predictions, newest first (cursor pagination).",
        extensions=requires("predictions"),
    )
    async def predictions(
        self,
        info: Info,
        first: int | None = 20,
        after: str | None = None,
        filter: PredictionFilterInput | None = None,
    ) -> PredictionConnectionType:
        kinds = (PredictionType.from_values, PredictionEdgeType, PredictionConnectionType)
        page = await _history(info, PredictionRepository, first, after, _filter(filter))
        return _connection(page, *kinds)  # type: ignore[no-any-return]

    @strawberry.field(
        description="The audit trail, newest first (cursor pagination).",
        extensions=requires("auditEvents"),
    )
    async def audit_events(
        self,
        info: Info,
        first: int | None = 20,
        after: str | None = None,
        filter: AuditEventFilterInput | None = None,
    ) -> AuditEventConnectionType:
        kinds = (AuditEventType.from_row, AuditEventEdgeType, AuditEventConnectionType)
        page = await _history(info, AuditRepository, first, after, _audit_filter(filter))
        return _connection(page, *kinds)  # type: ignore[no-any-return]

    @strawberry.field(
        description="Every registered model version, newest first.",
        extensions=requires("modelVersions"),
    )
    async def model_versions(self, info: Info) -> list[ModelVersionType]:
        rows = await usecases.model_versions(info.context.runtime.engine)
        return [ModelVersionType.from_row(row) for row in rows]

    @strawberry.field(description="One model version by name.", extensions=requires("modelVersion"))
    async def model_version(self, info: Info, version: str) -> ModelVersionType | None:
        row = await usecases.model_version(info.context.runtime.engine, version)
        return None if row is None else ModelVersionType.from_row(row)

    @strawberry.field(
        description="The version serving predictions, if any.", extensions=requires("activeModel")
    )
    async def active_model(self, info: Info) -> ModelVersionType | None:
        row = await usecases.active_model_version(info.context.runtime.engine)
        return None if row is None else ModelVersionType.from_row(row)

    @strawberry.field(
        description="The caller, as its token describes it.", extensions=requires("me")
    )
    def me(self, info: Info) -> MeType:
        principal = info.context.principal
        return MeType(subject=principal.subject, scopes=sorted(s.value for s in principal.scopes))
