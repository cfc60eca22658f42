"""The GraphQL schema: root fields, each with its declared scope."""

import uuid
from collections.abc import Callable
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    DisableIntrospection,
    ParserCache,
    SchemaExtension,
    ValidationCache,
)
from strawberry.types import Info

from graph import services
from graph.audit_types import (
    AuditEventConnectionType,
    AuditEventEdgeType,
    AuditEventFilterInput,
    AuditEventType,
)
from graph.errors import bad_input
from graph.extensions import AuditExtension
from graph.inputs import PredictInput, PredictionFilterInput
from graph.permissions import requires
from graph.types import (
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


def _predicted(info: Info, rows: list[dict[str, Any]]) -> list[PredictionType]:
    loaded = info.context.services.models.current
    if loaded is not None:
        info.context.versions.prime(loaded.version_id, loaded.info)
    return [PredictionType.from_values(row) for row in rows]


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Predict whether a device is about to fail; the prediction is stored.",
        extensions=requires("predict"),
    )
    def predict(self, info: Info, input: PredictInput) -> PredictionType:
        context = info.context
        rows = services.predict(context.services.models, context.audit, [input.row()])
        return _predicted(info, rows)[0]

    @strawberry.mutation(
        description="Predict for 1..1000 devices at once: all stored, or none if any is invalid.",
        extensions=requires("predictBatch"),
    )
    def predict_batch(self, info: Info, inputs: list[PredictInput]) -> list[PredictionType]:
        context = info.context
        limit = context.services.settings.max_batch_size
        if not 1 <= len(inputs) <= limit:
            raise bad_input(f"inputs must hold 1..{limit} items, got {len(inputs)}", "inputs")
        rows = [item.row() for item in inputs]
        return _predicted(
            info, services.predict(context.services.models, context.audit, rows, True)
        )


def _page_args(info: Info, first: int | None, after: str | None) -> tuple[int, uuid.UUID | None]:
    limit = info.context.services.settings.max_page_size
    first = 20 if first is None else first
    if not 1 <= first <= limit:
        raise bad_input(f"first must be 1..{limit}", "first")
    return first, decode_cursor(after) if after else None


def _connection(page: services.Page[Any], node: Callable[[Any], Any], edge: Any, conn: Any) -> Any:
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
    return AuditFilter(where.subject, where.outcome, where.from_, where.to, where.operation_name)


def _filter(where: PredictionFilterInput | None) -> PredictionFilter:
    if where is None:
        return PredictionFilter()
    is_failure = None if where.label is None else where.label is FailureClassEnum.FAILURE
    return PredictionFilter(where.device_id, where.model_version, is_failure)


@strawberry.type
class Query:
    @strawberry.field(description="One stored prediction by id.", extensions=requires("prediction"))
    async def prediction(self, info: Info, id: strawberry.ID) -> PredictionType | None:
        found = await services.get_prediction(info.context.services.engine, parse_id(str(id)))
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
        first, before = _page_args(info, first, after)
        engine = info.context.services.engine
        page = await services.history_page(
            engine, PredictionRepository, first, before, _filter(filter)
        )
        return _connection(  # type: ignore[no-any-return]
            page, PredictionType.from_values, PredictionEdgeType, PredictionConnectionType
        )

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
        first, before = _page_args(info, first, after)
        engine = info.context.services.engine
        page = await services.history_page(
            engine, AuditRepository, first, before, _audit_filter(filter)
        )
        return _connection(  # type: ignore[no-any-return]
            page, AuditEventType.from_row, AuditEventEdgeType, AuditEventConnectionType
        )

    @strawberry.field(
        description="Every registered model version, newest first.",
        extensions=requires("modelVersions"),
    )
    async def model_versions(self, info: Info) -> list[ModelVersionType]:
        rows = await services.model_versions(info.context.services.engine)
        return [ModelVersionType.from_row(row) for row in rows]

    @strawberry.field(description="One model version by name.", extensions=requires("modelVersion"))
    async def model_version(self, info: Info, version: str) -> ModelVersionType | None:
        rows = await services.model_versions(info.context.services.engine)
        found = [row for row in rows if row.version == version]
        return ModelVersionType.from_row(found[0]) if found else None

    @strawberry.field(
        description="The version serving predictions, if any.", extensions=requires("activeModel")
    )
    async def active_model(self, info: Info) -> ModelVersionType | None:
        row = await services.active_model_version(info.context.services.engine)
        return None if row is None else ModelVersionType.from_row(row)

    @strawberry.field(
        description="The caller, as its token describes it.", extensions=requires("me")
    )
    def me(self, info: Info) -> MeType:
        principal = info.context.principal
        return MeType(subject=principal.subject, scopes=sorted(s.value for s in principal.scopes))


class FailcastSchema(strawberry.Schema):
    """Errors are logged once, with the request id, where they are formatted."""

    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        return None


def build_schema(introspection: bool = True) -> FailcastSchema:
    """The schema with its extensions; introspection off when asked."""
    # AuditExtension first: it must wrap the caches to see the errors their hooks raise.
    # Factories: strawberry builds the extensions per request; the caches live at module level.
    extensions: list[Callable[[], SchemaExtension]] = [
        AuditExtension,
        lambda: ParserCache(maxsize=1024),
        lambda: ValidationCache(maxsize=1024),
    ]
    if not introspection:
        extensions.append(DisableIntrospection)
    return FailcastSchema(query=Query, mutation=Mutation, extensions=extensions)
