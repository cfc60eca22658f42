"""The root fields of the schema (Query and Mutation), each with its declared scope."""

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated

import strawberry
from graphql import FieldNode, FragmentSpreadNode, InlineFragmentNode
from strawberry.types import Info
from strawberry.types.nodes import SelectedField, Selection

from graph.errors import ErrorCode, FailcastError, bad_input
from graph.runtime import lifecycle, usecases, webhooks
from graph.runtime.alerts import AlertsDropped, AlertStream, alert_filter
from graph.runtime.telemetry import Telemetry, decode_columns, decode_telemetry
from graph.runtime.usecases import Predicted
from graph.schema import analytics, monitoring
from graph.schema.analytics import (
    DeviceAtRiskType,
    PredictionStatsType,
    StatsBucketEnum,
    StatsTimeFieldEnum,
)
from graph.schema.audit_types import (
    AuditEventConnectionType,
    AuditEventEdgeType,
    AuditEventFilterInput,
    AuditEventType,
)
from graph.schema.cursors import scope_of
from graph.schema.history import (
    DeviceType,
    aware,
    newest_first,
    prediction_connection,
    prediction_filter,
)
from graph.schema.inputs import (
    PredictColumnsInput,
    PredictInput,
    PredictionFilterInput,
    PredictionOrderInput,
)
from graph.schema.lifecycle import ModelActivationConnectionType, activation_connection
from graph.schema.monitoring import DriftReportType, ModelPerformanceType, OutcomeType
from graph.schema.permissions import requires
from graph.schema.types import (
    MeType,
    ModelVersionType,
    PredictColumnsPayloadType,
    PredictionConnectionType,
    PredictionType,
    parse_id,
)
from graph.schema.webhooks import (
    CreateWebhookPayloadType,
    WebhookDeliveryConnectionType,
    WebhookType,
    delivery_connection,
    webhook_id,
)
from graph.settings import MAX_WEBHOOKS
from persistence import OUTCOMES, AuditFilter

# The alert filter's arguments, the same for failureAlerts and createWebhook (one matcher).
MinProbability = Annotated[
    float | None,
    strawberry.argument(description="Least failureProbability (0..1); default: FAILURE."),
]
DeviceIdPrefix = Annotated[
    str | None, strawberry.argument(description="Only devices whose id starts with this.")
]


async def _predict(
    info: Info, inputs: list[PredictInput], layout: usecases.Layout
) -> list[PredictionType]:
    """The resolvers' side of predict and predictBatch (compiled plans do the same in bulk)."""
    context = info.context
    if layout is usecases.Layout.ROWS:
        usecases.check_batch_size(len(inputs), context.runtime.settings.max_batch_size)
    telemetry = decode_telemetry([item.as_input() for item in inputs])
    predicted = await _predicted(info, telemetry, layout)
    return PredictionType.from_block(predicted.block)


async def _predict_columns(info: Info, input: PredictColumnsInput) -> PredictColumnsPayloadType:
    """The resolver's side of predictColumns (its compiled plan does the same in bulk)."""
    context = info.context
    columns = decode_columns(input.as_input())  # its lists are coerced by GraphQL already
    telemetry = usecases.column_telemetry(columns, context.runtime.settings.max_batch_size)
    predicted = await _predicted(info, telemetry, usecases.Layout.COLUMNS)
    version = context.version_type(predicted.model.info)
    audit = context.audit
    return PredictColumnsPayloadType.from_block(predicted.block, audit.id, version, audit.subject)


async def _predicted(info: Info, telemetry: Telemetry, layout: usecases.Layout) -> Predicted:
    """The use case, run as every predict resolver runs it."""
    context = info.context
    explain = _mentions(info, "explanation") and _selects(info.selected_fields, "explanation")
    runtime = context.runtime
    predicted = await usecases.predict(
        runtime.models, runtime.histories, runtime.alerts, context.audit, telemetry, layout, explain
    )
    context.versions.prime(predicted.model.version_id, predicted.model.info)
    context.subjects.prime(context.audit.id, context.audit.subject)  # its row is not stored yet
    return predicted


def _mentions(info: Info, name: str) -> bool:
    """Whether the root field's selection names the field at all (a walk of the document's
    nodes, cheaper than strawberry's `selected_fields`, which only then decides)."""
    raw = info._raw_info
    pending = [node.selection_set for node in raw.field_nodes]
    while pending:
        selection_set = pending.pop()
        for node in selection_set.selections if selection_set else ():
            if isinstance(node, FieldNode):
                if node.name.value == name:
                    return True
            elif isinstance(node, FragmentSpreadNode):
                pending.append(raw.fragments[node.name.value].selection_set)
            elif isinstance(node, InlineFragmentNode):
                pending.append(node.selection_set)
    return False


def _selects(selections: list[Selection], name: str) -> bool:
    """Whether the answer selects a field of the root field's type (through fragments too)."""
    for root in selections:
        for selection in root.selections:
            if _skipped(selection.directives):
                continue
            if isinstance(selection, SelectedField):
                if selection.name == name:
                    return True
            elif _selects([selection], name):  # a fragment: its selections, one level down
                return True
    return False


def _skipped(directives: dict[str, dict[str, object]]) -> bool:
    skip, include = directives.get("skip"), directives.get("include")
    return (skip is not None and skip.get("if") is True) or (
        include is not None and include.get("if") is False
    )


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Predict whether a device is about to fail; the prediction is stored.",
        extensions=requires("predict"),
    )
    async def predict(self, info: Info, input: PredictInput) -> PredictionType:
        return (await _predict(info, [input], usecases.Layout.ONE))[0]

    @strawberry.mutation(
        description="Predict for 1..1000 devices at once: all stored, or none if any is invalid.",
        extensions=requires("predictBatch"),
    )
    async def predict_batch(self, info: Info, inputs: list[PredictInput]) -> list[PredictionType]:
        return await _predict(info, inputs, usecases.Layout.ROWS)

    @strawberry.mutation(
        description=(
            "predictBatch sent and answered column by column: one list per field of "
            "PredictInput (row i is item i of every list), 1..1000 rows, and one list per field "
            "of Prediction in the answer. The same scope, rate (one per row), checks (a bad "
            "value is named by its list and row: input.metric3.17), storage and audit: all "
            "stored, or none if any row is invalid."
        ),
        extensions=requires("predictColumns"),
    )
    async def predict_columns(
        self, info: Info, input: PredictColumnsInput
    ) -> PredictColumnsPayloadType:
        return await _predict_columns(info, input)

    @strawberry.mutation(
        description=(
            "Make a registered version the one serving predictions, after checking this server "
            "can load it (digest, features, golden set). Recorded in `modelActivations` with "
            "the request, in one transaction; activating the active version changes nothing."
        ),
        extensions=requires("activateModelVersion"),
    )
    async def activate_model_version(
        self,
        info: Info,
        version: str,
        reason: str | None = None,
    ) -> ModelVersionType:
        runtime, audit = info.context.runtime, info.context.audit
        row = await lifecycle.activate(runtime.engine, runtime.models, audit, version, reason)
        return ModelVersionType.from_row(row)

    @strawberry.mutation(
        description=(
            "Re-activate the version that was active before the current one (CONFLICT when "
            "there was none). Recorded in `modelActivations` like any switch."
        ),
        extensions=requires("rollbackModel"),
    )
    async def rollback_model(self, info: Info, reason: str | None = None) -> ModelVersionType:
        runtime, audit = info.context.runtime, info.context.audit
        row = await lifecycle.rollback(runtime.engine, runtime.models, audit, reason)
        return ModelVersionType.from_row(row)

    @strawberry.mutation(
        description=(
            "Record what happened to a device: it labels the device's predictions observed in "
            "(observedAt - FAILCAST_OUTCOME_HORIZON_DAYS, observedAt]. One outcome per device "
            "and UTC day: recording it again replaces it."
        ),
        extensions=requires("recordOutcome"),
    )
    async def record_outcome(
        self,
        info: Info,
        device_id: Annotated[str, strawberry.argument(description="The device (1..64 chars).")],
        failed: Annotated[bool, strawberry.argument(description="Whether it failed.")],
        observed_at: Annotated[
            datetime,
            strawberry.argument(description="When (with an offset; 2000-01-01 to now + 5 min)."),
        ],
    ) -> OutcomeType:
        return await monitoring.record_outcome(info, device_id, failed, observed_at)

    @strawberry.mutation(
        description=(
            "POST every prediction stored from now on that matches (as failureAlerts does) to "
            "`url`, signed with the secret in the answer (shown this once). The URL's host "
            "must be on FAILCAST_WEBHOOK_ALLOWED_HOSTS (else BAD_USER_INPUT naming url)."
        ),
        extensions=requires("createWebhook"),
    )
    async def create_webhook(
        self,
        info: Info,
        url: Annotated[str, strawberry.argument(description="https:// URL of the receiver.")],
        min_probability: MinProbability = None,
        device_id_prefix: DeviceIdPrefix = None,
    ) -> CreateWebhookPayloadType:
        runtime, audit = info.context.runtime, info.context.audit
        row, secret = await webhooks.create(
            runtime.engine, runtime.deliveries.policy, audit, url, min_probability, device_id_prefix
        )
        return CreateWebhookPayloadType(webhook=WebhookType.from_row(row), secret=secret)

    @strawberry.mutation(
        description="Delete a webhook and its deliveries (pending ones are not sent).",
        extensions=requires("deleteWebhook"),
    )
    async def delete_webhook(self, info: Info, id: strawberry.ID) -> WebhookType:
        runtime, audit = info.context.runtime, info.context.audit
        row = await webhooks.delete(runtime.engine, audit, webhook_id(str(id), "id"))
        return WebhookType.from_row(row)


def _audit_filter(where: AuditEventFilterInput | None) -> AuditFilter:
    if where is None:
        return AuditFilter()
    if where.outcome is not None and where.outcome not in OUTCOMES:
        raise bad_input(f"outcome must be one of {', '.join(OUTCOMES)}", "filter.outcome")
    return AuditFilter(
        where.subject,
        where.outcome,
        aware(where.from_, "filter.from"),
        aware(where.to, "filter.to"),
        where.operation_name,
        where.client_request_id,
    )


@strawberry.type
class Query:
    @strawberry.field(description="One stored prediction by id.", extensions=requires("prediction"))
    async def prediction(self, info: Info, id: strawberry.ID) -> PredictionType | None:
        found = await usecases.get_prediction(info.context.runtime.engine, parse_id(str(id)))
        return None if found is None else PredictionType.from_values(found)

    @strawberry.field(
        description="Stored predictions: filtered, ordered (newest first by default), paged.",
        extensions=requires("predictions"),
    )
    async def predictions(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        filter: PredictionFilterInput | None = None,
        order_by: PredictionOrderInput | None = None,
    ) -> PredictionConnectionType:
        where = prediction_filter(filter)
        return await prediction_connection(info, where, order_by, (first, after, last, before))

    @strawberry.field(description="One device and its history.", extensions=requires("device"))
    async def device(self, info: Info, id: str) -> DeviceType | None:
        if await info.context.latest.load(id) is None:
            return None
        return DeviceType(id=strawberry.ID(id), device_id=id)

    @strawberry.field(
        description="The audit trail, newest first (cursor pagination).",
        extensions=requires("auditEvents"),
    )
    async def audit_events(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: AuditEventFilterInput | None = None,
    ) -> AuditEventConnectionType:
        where = _audit_filter(filter)
        engine = info.context.runtime.engine
        return await newest_first(  # type: ignore[no-any-return]
            info,
            scope_of("auditEvents", where),
            first,
            after,
            lambda size, before: usecases.audit_page(engine, where, size, before),
            AuditEventType.from_row,
            (AuditEventEdgeType, AuditEventConnectionType),
            lambda: usecases.audit_count(engine, where),
        )

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
        description="Switches of the active model version, newest first.",
        extensions=requires("modelActivations"),
    )
    async def model_activations(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> ModelActivationConnectionType:
        return await activation_connection(info, first, after)

    @strawberry.field(
        description="The version serving predictions, if any.", extensions=requires("activeModel")
    )
    async def active_model(self, info: Info) -> ModelVersionType | None:
        row = await usecases.active_model_version(info.context.runtime.engine)
        return None if row is None else ModelVersionType.from_row(row)

    @strawberry.field(
        description=f"Every webhook, oldest first (at most {MAX_WEBHOOKS}).",
        extensions=requires("webhooks"),
    )
    async def webhooks(self, info: Info) -> list[WebhookType]:
        rows = await webhooks.listed(info.context.runtime.engine)
        return [WebhookType.from_row(row) for row in rows]

    @strawberry.field(
        description="What was POSTed to a webhook, newest first: pending, delivered and dead.",
        extensions=requires("webhookDeliveries"),
    )
    async def webhook_deliveries(
        self,
        info: Info,
        webhook_id: strawberry.ID,
        first: int | None = None,
        after: str | None = None,
    ) -> WebhookDeliveryConnectionType:
        return await delivery_connection(info, str(webhook_id), first, after)

    @strawberry.field(
        description="The caller, as its token describes it.", extensions=requires("me")
    )
    def me(self, info: Info) -> MeType:
        principal = info.context.principal
        return MeType(subject=principal.subject, scopes=sorted(s.value for s in principal.scopes))

    @strawberry.field(
        description=(
            "The maintenance work list: devices ranked by the failure probability of their "
            "latest prediction (by observedAt, ties by id), highest first, ties by device id."
        ),
        extensions=requires("devicesAtRisk"),
    )
    async def devices_at_risk(
        self,
        info: Info,
        min_probability: Annotated[
            float | None,
            strawberry.argument(description="Only latest predictions at least this (0..1)."),
        ] = analytics.DEFAULT_MIN_PROBABILITY,
        since: Annotated[
            datetime | None,
            strawberry.argument(description="Only latest predictions observed at or after."),
        ] = None,
        device_id_prefix: Annotated[
            str | None, strawberry.argument(description="Only devices whose id starts with this.")
        ] = None,
        first: Annotated[
            int | None, strawberry.argument(description="How many devices, 1..500.")
        ] = analytics.DEFAULT_DEVICES,
    ) -> list[DeviceAtRiskType]:
        return await analytics.devices_at_risk(
            info, min_probability, since, device_id_prefix, first
        )

    @strawberry.field(
        description=(
            "Prediction statistics per time bucket and model version, ordered by bucketStart "
            "then version; buckets without predictions are left out. At most "
            "FAILCAST_MAX_STATS_ROWS rows (5,000), else BAD_USER_INPUT."
        ),
        extensions=requires("predictionStats"),
    )
    async def prediction_stats(
        self,
        info: Info,
        filter: Annotated[
            PredictionFilterInput | None,
            strawberry.argument(description="Which predictions count (all by default)."),
        ] = None,
        bucket: Annotated[
            StatsBucketEnum | None, strawberry.argument(description="The bucket length.")
        ] = StatsBucketEnum.DAY,
        time_field: Annotated[
            StatsTimeFieldEnum | None,
            strawberry.argument(description="The time that puts a prediction in a bucket."),
        ] = StatsTimeFieldEnum.OBSERVED_AT,
    ) -> list[PredictionStatsType]:
        return await analytics.prediction_stats(info, filter, bucket, time_field)

    @strawberry.field(
        description=(
            "Input drift of a model version: per feature, the population stability index of the "
            "inputs it received in [from, to) (by observedAt) against its training profile, and "
            "a two-sample Kolmogorov-Smirnov test; statuses per feature and overall."
        ),
        extensions=requires("drift"),
    )
    async def drift(
        self,
        info: Info,
        model_version: monitoring.VersionArgument = None,
        from_: Annotated[
            datetime | None,
            strawberry.argument(
                name="from", description="Start (default: `to` - FAILCAST_DRIFT_WINDOW_HOURS)."
            ),
        ] = None,
        to: monitoring.ToArgument = None,
    ) -> DriftReportType:
        return await monitoring.drift(info, model_version, from_, to)

    @strawberry.field(
        description=(
            "Live performance of a model version: its predictions observed in [from, to) "
            "against recorded outcomes, side by side with its training test-set figures."
        ),
        extensions=requires("modelPerformance"),
    )
    async def model_performance(
        self,
        info: Info,
        model_version: monitoring.VersionArgument = None,
        from_: Annotated[
            datetime | None,
            strawberry.argument(name="from", description="Start (default: the first prediction)."),
        ] = None,
        to: monitoring.ToArgument = None,
    ) -> ModelPerformanceType:
        return await monitoring.model_performance(info, model_version, from_, to)


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description=(
            "Every prediction committed from now on (by any server process on PostgreSQL; by "
            "this one on SQLite) whose failureProbability is at least minProbability (default: "
            "the threshold of the version that made it, so FAILURE predictions) and whose "
            "deviceId starts with deviceIdPrefix. WebSocket only (graphql-transport-ws)."
        ),
        extensions=requires("failureAlerts"),
    )
    async def failure_alerts(
        self,
        info: Info,
        min_probability: MinProbability = None,
        device_id_prefix: DeviceIdPrefix = None,
    ) -> AsyncIterator[PredictionType]:
        where = alert_filter(min_probability, device_id_prefix)  # refused before it starts
        return _alerts(info.context.runtime.alerts.hub.subscribe(where))


async def _alerts(stream: AlertStream) -> AsyncIterator[PredictionType]:
    try:
        async for prediction in stream:
            yield PredictionType.from_values(prediction)
    except AlertsDropped as dropped:
        raise FailcastError(ErrorCode.SERVICE_UNAVAILABLE, str(dropped)) from None
    finally:
        stream.close()
