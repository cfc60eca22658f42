"""GraphQL output types. Each names the fields it exposes; internal columns stay internal."""

import uuid
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from enum import Enum
from typing import Annotated, cast

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from graph.errors import bad_input
from graph.schema.monitoring import DEFAULT_EVALUATIONS, ModelEvaluationType, check_first
from model import DEVICE_FEATURES
from persistence import ModelVersion, Prediction, PredictionBlock


@strawberry.enum(name="FailureClass", description="The predicted class of a device.")
class FailureClassEnum(Enum):
    FAILURE = "FAILURE"
    NON_FAILURE = "NON_FAILURE"


@strawberry.type(name="Metrics", description="The telemetry a prediction was made from.")
class MetricsType:
    metric1: float
    metric2: float
    metric3: float
    metric4: float
    metric5: float
    metric6: float
    metric7: float
    metric9: float


@strawberry.type(name="TrainingData", description="Fingerprint of the data a model was trained on.")
class TrainingDataType:
    sha256: str = strawberry.field(description="sha256 of the data file (or generator spec).")
    rows: int = strawberry.field(description="Rows used.")
    failures: int = strawberry.field(description="Rows labelled as failures.")
    date_from: date | None = strawberry.field(description="First day in the data.")
    date_to: date | None = strawberry.field(description="Last day in the data.")
    source: str = strawberry.field(description="Where the data came from.")


@strawberry.type(name="ModelVersion", description="A registered model and how it was made.")
class ModelVersionType:
    id: strawberry.ID = strawberry.field(description="Stable id of the version (its name).")
    version: str = strawberry.field(description="Unique version name, e.g. 2026.11.26-1.")
    algorithm: str = strawberry.field(description="decision_tree or logistic_regression.")
    is_active: bool = strawberry.field(description="Whether this version serves predictions.")
    created_at: datetime = strawberry.field(description="When the version was registered.")
    activated_at: datetime | None = strawberry.field(description="When it was last activated.")
    threshold: float = strawberry.field(description="P(failure) at or above which: FAILURE.")
    metrics: JSON = strawberry.field(description="Held-out, validation and CV scores.")
    trained_on_synthetic_data: bool = strawberry.field(
        description="True when trained on the synthetic generator, not real telemetry."
    )
    artifact_sha256: str = strawberry.field(description="sha256 of the model artifact.")
    feature_names: list[str] = strawberry.field(description="Inputs the model reads, in order.")
    params: JSON = strawberry.field(description="Hyper-parameters of the estimator.")
    training_data: TrainingDataType = strawberry.field(description="Data fingerprint.")
    lineage: JSON = strawberry.field(description="Seed, library versions, splits, options.")
    row_id: strawberry.Private[int]

    @strawberry.field(
        description="Runs of `failcast evaluate` on this version, newest first (1..500)."
    )
    async def evaluations(
        self,
        info: Info,
        first: Annotated[
            int | None, strawberry.argument(description="How many runs, 1..500.")
        ] = DEFAULT_EVALUATIONS,
    ) -> list[ModelEvaluationType]:
        size = check_first(first, info.context.runtime.settings.max_page_size)
        rows = await info.context.evaluations.load((self.row_id, size))
        return [ModelEvaluationType.from_row(row) for row in rows]

    @classmethod
    def from_row(cls, row: ModelVersion) -> "ModelVersionType":
        """Build from a registry row."""
        data = TrainingDataType(
            sha256=row.data_sha256,
            rows=row.data_rows,
            failures=row.data_failures,
            date_from=row.data_date_from,
            date_to=row.data_date_to,
            source=row.data_source,
        )
        return cls(
            id=strawberry.ID(row.version),
            version=row.version,
            algorithm=row.algorithm,
            is_active=row.is_active,
            created_at=row.created_at,
            activated_at=row.activated_at,
            threshold=row.threshold,
            metrics=cast(JSON, row.metrics),
            trained_on_synthetic_data=row.trained_on_synthetic_data,
            artifact_sha256=row.artifact_sha256,
            feature_names=list(row.feature_names),
            params=cast(JSON, row.params),
            training_data=data,
            lineage=cast(JSON, row.lineage),
            row_id=row.id or 0,  # a stored row always has one
        )


@strawberry.type(name="Prediction", description="One stored prediction.")
class PredictionType:
    id: strawberry.ID = strawberry.field(description="Stable id of the prediction.")
    created_at: datetime = strawberry.field(description="When the prediction was made.")
    observed_at: datetime = strawberry.field(
        description="When the telemetry was taken (the request's time unless the client said)."
    )
    device_id: str | None = strawberry.field(description="The device, when the caller named it.")
    label: FailureClassEnum = strawberry.field(description="FAILURE or NON_FAILURE.")
    failure_probability: float = strawberry.field(description="P(failure), 0..1.")
    threshold: float = strawberry.field(description="The model's decision threshold.")
    input: MetricsType = strawberry.field(description="The telemetry sent.")
    model_version_id: strawberry.Private[int]
    audit_event_id: strawberry.Private[uuid.UUID]

    @strawberry.field(description="The model version that made the prediction.")
    async def model_version(self, info: Info) -> ModelVersionType:
        row = await info.context.versions.load(self.model_version_id)
        return ModelVersionType.from_row(row)

    @strawberry.field(description="Who asked for it: the subject of the request's token.")
    async def subject(self, info: Info) -> str | None:
        found: str | None = await info.context.subjects.load(self.audit_event_id)
        return found

    @classmethod
    def from_values(cls, values: Prediction) -> "PredictionType":
        """Build from a stored row."""
        metrics = MetricsType(**{name: getattr(values, name) for name in DEVICE_FEATURES})
        return cls(
            id=strawberry.ID(str(values.id)),
            created_at=values.created_at,
            observed_at=values.observed_at,
            device_id=values.device_id,
            label=FailureClassEnum.FAILURE if values.is_failure else FailureClassEnum.NON_FAILURE,
            failure_probability=values.failure_probability,
            threshold=values.threshold,
            input=metrics,
            model_version_id=values.model_version_id,
            audit_event_id=values.audit_event_id,
        )

    @classmethod
    def from_block(cls, block: PredictionBlock) -> list["PredictionType"]:
        """Build one per prediction of a block a predict call made."""
        rows = zip(*(block.metrics[name] for name in DEVICE_FEATURES), strict=True)
        metrics = [MetricsType(**dict(zip(DEVICE_FEATURES, row, strict=True))) for row in rows]
        labels = {True: FailureClassEnum.FAILURE, False: FailureClassEnum.NON_FAILURE}
        return [
            cls(
                id=strawberry.ID(str(block.ids[i])),
                created_at=block.created_at,
                observed_at=block.observed_at[i],
                device_id=block.device_ids[i],
                label=labels[bool(block.is_failure[i])],
                failure_probability=block.failure_probability[i],
                threshold=block.threshold,
                input=metrics[i],
                model_version_id=block.model_version_id,
                audit_event_id=block.audit_event_id,
            )
            for i in range(len(block))
        ]


@strawberry.type(name="PageInfo", description="Where a page sits in its connection.")
class PageInfoType:
    has_next_page: bool = strawberry.field(description="Whether more items follow this page.")
    has_previous_page: bool = strawberry.field(description="Whether items come before it.")
    start_cursor: str | None = strawberry.field(description="Pass as `before` for the page before.")
    end_cursor: str | None = strawberry.field(description="Pass as `after` for the next page.")


@strawberry.type(name="PredictionEdge", description="A prediction and its cursor.")
class PredictionEdgeType:
    cursor: str
    node: PredictionType


@strawberry.type(name="PredictionConnection", description="A page of predictions.")
class PredictionConnectionType:
    edges: list[PredictionEdgeType]
    nodes: list[PredictionType]
    page_info: PageInfoType
    counter: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field(description="How many predictions the filter matches, on every page.")
    async def total_count(self) -> int:
        return await self.counter()


@strawberry.type(name="Me", description="The caller, as its token describes it.")
class MeType:
    subject: str = strawberry.field(description="The token's subject.")
    scopes: list[str] = strawberry.field(description="The scopes the token grants.")


def parse_id(value: str) -> uuid.UUID:
    """A prediction id; BAD_USER_INPUT when malformed."""
    try:
        return uuid.UUID(value)
    except ValueError as error:
        raise bad_input("`id` is not a valid prediction id", "id") from error
