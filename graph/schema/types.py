"""GraphQL output types. Each names the fields it exposes; internal columns stay internal."""

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import date, datetime
from enum import Enum
from typing import Annotated, Any, cast

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from graph.errors import bad_input
from graph.runtime.usecases import Explainable
from graph.schema.monitoring import DEFAULT_EVALUATIONS, ModelEvaluationType, check_first
from model import DEVICE_FEATURES
from persistence import ModelVersion, Prediction, PredictionBlock


@strawberry.enum(name="FailureClass", description="The predicted class of a device.")
class FailureClassEnum(Enum):
    FAILURE = "FAILURE"
    NON_FAILURE = "NON_FAILURE"


_LABELS = {True: FailureClassEnum.FAILURE, False: FailureClassEnum.NON_FAILURE}  # by is_failure


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


@strawberry.type(name="Quantile", description="A quantile of a feature's training values.")
class QuantileType:
    q: float = strawberry.field(description="The probability, e.g. 0.99.")
    value: float = strawberry.field(description="The training value at that quantile.")


@strawberry.type(name="FeatureProfile", description="One input's values in the training data.")
class FeatureProfileType:
    feature: str = strawberry.field(description="The input (a field of PredictInput).")
    min: float = strawberry.field(description="Its smallest training value.")
    max: float = strawberry.field(description="Its largest training value.")
    mean: float = strawberry.field(description="Its mean training value.")
    zero_share: float = strawberry.field(description="The share of training rows where it is 0.")
    quantiles: list[QuantileType] = strawberry.field(
        description="Quantiles at 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95 and 0.99."
    )


@strawberry.type(
    name="InputProfile",
    description=(
        "The reference profile of a version's training inputs: predictions warn of values "
        "outside each feature's [min, max]."
    ),
)
class InputProfileType:
    rows: int = strawberry.field(description="Training rows profiled.")
    features: list[FeatureProfileType] = strawberry.field(
        description="One per input the model reads, in its order."
    )

    @classmethod
    def from_json(
        cls, profile: Mapping[str, Any], feature_names: Sequence[str]
    ) -> "InputProfileType":
        """Build from a stored profile (model.profile), features in the model's order."""
        stored = profile["features"]
        names = [n for n in feature_names if n in stored]
        names += [n for n in stored if n not in names]
        features = [
            FeatureProfileType(
                feature=name,
                min=stored[name]["min"],
                max=stored[name]["max"],
                mean=stored[name]["mean"],
                zero_share=stored[name]["zero_share"],
                quantiles=[QuantileType(q=q, value=v) for q, v in stored[name]["quantiles"]],
            )
            for name in names
        ]
        return cls(rows=profile["rows"], features=features)


@strawberry.type(name="ModelVersion", description="A registered model and how it was made.")
class ModelVersionType:
    id: strawberry.ID = strawberry.field(description="Stable id of the version (its name).")
    version: str = strawberry.field(description="Unique version name, e.g. 2026.11.26-1.")
    algorithm: str = strawberry.field(
        description="decision_tree, logistic_regression, hist_gradient_boosting or blend."
    )
    is_active: bool = strawberry.field(description="Whether this version serves predictions.")
    created_at: datetime = strawberry.field(description="When the version was registered.")
    activated_at: datetime | None = strawberry.field(description="When it was last activated.")
    threshold: float = strawberry.field(description="P(failure) at or above which: FAILURE.")
    horizon_days: int = strawberry.field(
        description=(
            "The failure horizon in days: its failureProbability is the probability that the "
            "device fails within this many days of the observation (1: on that day)."
        )
    )
    metrics: JSON = strawberry.field(description="Held-out, validation and CV scores.")
    trained_on_synthetic_data: bool = strawberry.field(
        description="True when trained on the synthetic generator, not real telemetry."
    )
    artifact_sha256: str = strawberry.field(description="sha256 of the model artifact.")
    feature_names: list[str] = strawberry.field(description="Inputs the model reads, in order.")
    params: JSON = strawberry.field(description="Hyper-parameters of the estimator.")
    training_data: TrainingDataType = strawberry.field(description="Data fingerprint.")
    lineage: JSON = strawberry.field(description="Seed, library versions, splits, options.")
    input_profile: InputProfileType | None = strawberry.field(
        description=(
            "The profile of its training inputs (null for versions registered before profiles)."
        )
    )
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
            horizon_days=row.horizon_days,
            metrics=cast(JSON, row.metrics),
            trained_on_synthetic_data=row.trained_on_synthetic_data,
            artifact_sha256=row.artifact_sha256,
            feature_names=list(row.feature_names),
            params=cast(JSON, row.params),
            training_data=data,
            lineage=cast(JSON, row.lineage),
            row_id=row.id or 0,  # a stored row always has one
            input_profile=None
            if row.input_profile is None
            else InputProfileType.from_json(row.input_profile, row.feature_names),
        )


@strawberry.enum(name="ExplanationKind", description="How an explanation says why.")
class ExplanationKindEnum(Enum):
    DECISION_PATH = strawberry.enum_value(
        "DECISION_PATH", description="A decision tree's path from root to leaf."
    )
    CONTRIBUTIONS = strawberry.enum_value(
        "CONTRIBUTIONS",
        description=(
            "Each input's contribution to the log-odds: a logistic regression's, or a "
            "gradient-boosted model's path attributions."
        ),
    )


@strawberry.type(name="DecisionStep", description="One internal node of a tree on a path.")
class DecisionStepType:
    feature: str = strawberry.field(description="The input the node compares.")
    threshold: float = strawberry.field(description="The node's threshold.")
    value: float = strawberry.field(
        description="The input's value: as sent, or the history feature served from it."
    )
    goes_left: bool = strawberry.field(
        description=(
            "value <= threshold: the path goes to the left child (compared in float32, as "
            "scikit-learn does)."
        )
    )


@strawberry.type(name="Contribution", description="What one input adds to the log-odds.")
class ContributionType:
    feature: str = strawberry.field(description="The input.")
    value: float = strawberry.field(
        description="Its value: as sent, or the history feature served from it."
    )
    contribution: float = strawberry.field(
        description=(
            "A logistic regression's coefficient times the transformed value (signed log1p, "
            "standardised); a gradient-boosted model's sum over its trees of the change in node "
            "value where the path splits on this input."
        )
    )


@strawberry.type(
    name="Explanation",
    description=(
        "Why the model gave its score, computed with it by the version that made the prediction."
    ),
)
class ExplanationType:
    kind: ExplanationKindEnum = strawberry.field(description="DECISION_PATH or CONTRIBUTIONS.")
    score: float = strawberry.field(
        description=(
            "The model's raw score before its probability link: the log-odds of a logistic "
            "regression or a gradient-boosted model, the leaf's probability of a tree (which "
            "has no link). A calibrated version explains its inner model: this score, which "
            "calibration maps (monotonically) to failureProbability."
        )
    )
    base_value: float = strawberry.field(
        description=(
            "The intercept of a logistic regression; a gradient-boosted model's baseline plus "
            "its trees' root values; the root's probability of a tree."
        )
    )
    path: list[DecisionStepType] | None = strawberry.field(
        description="A tree's steps from root to leaf (null for a logistic regression)."
    )
    contributions: list[ContributionType] | None = strawberry.field(
        description=(
            "Contributions, largest magnitude first: baseValue + their sum = score (null for a "
            "tree; a gradient-boosted model lists the inputs its paths split on)."
        )
    )

    @classmethod
    def from_json(cls, stored: Mapping[str, Any]) -> "ExplanationType":
        """Build from an explanation as model.compiled computes and the database stores it."""
        path = stored.get("path")
        contributions = stored.get("contributions")
        return cls(
            kind=ExplanationKindEnum(stored["kind"]),
            score=stored["score"],
            base_value=stored["baseValue"],
            path=None
            if path is None
            else [
                DecisionStepType(
                    feature=s["feature"],
                    threshold=s["threshold"],
                    value=s["value"],
                    goes_left=s["goesLeft"],
                )
                for s in path
            ],
            contributions=None
            if contributions is None
            else [
                ContributionType(
                    feature=c["feature"], value=c["value"], contribution=c["contribution"]
                )
                for c in contributions
            ],
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
    warnings: list[str] = strawberry.field(
        description=(
            "One sentence per input outside the training range of the version that made the "
            "prediction (it is made all the same); empty when every input is inside."
        )
    )
    model_version_id: strawberry.Private[int]
    audit_event_id: strawberry.Private[uuid.UUID]
    stored_explanation: strawberry.Private[dict[str, Any] | None] = None

    @strawberry.field(
        description=(
            "Why the model said so: stored with the prediction when its request selected this "
            "field, otherwise computed from the prediction's own model version and inputs, so "
            "it stays true after the active model changes. Null for a model that cannot be "
            "explained (one scikit-learn evaluates)."
        )
    )
    async def explanation(self, info: Info) -> ExplanationType | None:
        found = self.stored_explanation
        if found is None:
            inputs = tuple(getattr(self.input, name) for name in DEVICE_FEATURES)
            item = Explainable(self.model_version_id, inputs, self.device_id, self.observed_at)
            found = await info.context.explanations.load(item)
        return None if found is None else ExplanationType.from_json(found)

    @strawberry.field(description="The model version that made the prediction.")
    async def model_version(self, info: Info) -> ModelVersionType:
        row = await info.context.versions.load(self.model_version_id)
        return info.context.version_type(row)  # type: ignore[no-any-return]

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
            label=_LABELS[bool(values.is_failure)],
            failure_probability=values.failure_probability,
            threshold=values.threshold,
            input=metrics,
            warnings=list(values.warnings or ()),
            model_version_id=values.model_version_id,
            audit_event_id=values.audit_event_id,
            stored_explanation=values.explanation,
        )

    @classmethod
    def from_block(cls, block: PredictionBlock) -> list["PredictionType"]:
        """Build one per prediction of a block a predict call made."""
        rows = zip(*(block.metrics[name] for name in DEVICE_FEATURES), strict=True)
        metrics = [MetricsType(**dict(zip(DEVICE_FEATURES, row, strict=True))) for row in rows]
        warnings = block.warnings or [None] * len(block)
        explanations = block.explanations or [None] * len(block)
        return [
            cls(
                id=strawberry.ID(str(block.ids[i])),
                created_at=block.created_at,
                observed_at=block.observed_at[i],
                device_id=block.device_ids[i],
                label=_LABELS[bool(block.is_failure[i])],
                failure_probability=block.failure_probability[i],
                threshold=block.threshold,
                input=metrics[i],
                warnings=list(warnings[i] or ()),
                model_version_id=block.model_version_id,
                audit_event_id=block.audit_event_id,
                stored_explanation=explanations[i],
            )
            for i in range(len(block))
        ]


@strawberry.type(
    name="MetricsColumns",
    description="The telemetry a batch of predictions was made from: one list per counter.",
)
class MetricsColumnsType:
    metric1: list[float] = strawberry.field(description="Counter 1 of each row.")
    metric2: list[float] = strawberry.field(description="Counter 2 of each row.")
    metric3: list[float] = strawberry.field(description="Counter 3 of each row.")
    metric4: list[float] = strawberry.field(description="Counter 4 of each row.")
    metric5: list[float] = strawberry.field(description="Counter 5 of each row.")
    metric6: list[float] = strawberry.field(description="Counter 6 of each row.")
    metric7: list[float] = strawberry.field(description="Counter 7 of each row.")
    metric9: list[float] = strawberry.field(description="Counter 9 of each row.")


@strawberry.type(
    name="PredictColumnsPayload",
    description=(
        "What predictColumns made, column by column: item i of every list is the prediction of "
        "input row i, stored as a Prediction (its fields, one list each); values every row "
        "shares (one model made them all, at once) are given once."
    ),
)
class PredictColumnsPayloadType:
    request_id: strawberry.ID = strawberry.field(
        description=(
            "The request that made them: its audit event's id (`auditEvents`' requestId), and "
            "`extensions.requestId` of its errors."
        )
    )
    prediction_id: list[strawberry.ID] = strawberry.field(
        description="Each row's stored prediction: its Prediction.id, for `prediction(id)`."
    )
    created_at: datetime = strawberry.field(
        description="When the predictions were made (Prediction.createdAt of every row)."
    )
    observed_at: list[datetime] = strawberry.field(
        description="When each row's telemetry was taken (the request's time unless it said)."
    )
    device_id: list[str | None] = strawberry.field(
        description="Each row's device, when the caller named it."
    )
    label: list[FailureClassEnum] = strawberry.field(
        description="Each row's class: FAILURE or NON_FAILURE."
    )
    failure_probability: list[float] = strawberry.field(description="Each row's P(failure), 0..1.")
    threshold: float = strawberry.field(
        description="The model's decision threshold (Prediction.threshold of every row)."
    )
    input: MetricsColumnsType = strawberry.field(
        description="The telemetry sent, column by column."
    )
    warnings: list[list[str]] = strawberry.field(
        description=(
            "Each row's warnings: one sentence per input outside the training range of the "
            "version (the prediction is made all the same); empty when every input is inside."
        )
    )
    explanation: list[ExplanationType | None] = strawberry.field(
        description=(
            "Why the model said so, for each row, computed with the prediction and stored with it "
            "(as Prediction.explanation when selected); null for a model that cannot be "
            "explained (one scikit-learn evaluates)."
        )
    )
    model_version: ModelVersionType = strawberry.field(
        description="The model version that made every prediction (Prediction.modelVersion)."
    )
    subject: str | None = strawberry.field(
        description="Who asked for them: the subject of the request's token (Prediction.subject)."
    )

    @classmethod
    def from_block(
        cls,
        block: PredictionBlock,
        request_id: uuid.UUID,
        version: ModelVersionType,
        subject: str | None,
    ) -> "PredictColumnsPayloadType":
        """Build from the block a predict call made, the version that made it and who asked."""
        count = len(block)
        explanations = block.explanations or [None] * count
        return cls(
            request_id=strawberry.ID(str(request_id)),
            created_at=block.created_at,
            threshold=block.threshold,
            model_version=version,
            subject=subject,
            prediction_id=[strawberry.ID(str(i)) for i in block.ids],
            observed_at=list(block.observed_at),
            device_id=list(block.device_ids),
            label=[_LABELS[bool(f)] for f in block.is_failure],
            failure_probability=list(block.failure_probability),
            input=MetricsColumnsType(**{n: list(block.metrics[n]) for n in DEVICE_FEATURES}),
            warnings=[list(w or ()) for w in block.warnings or [None] * count],
            explanation=[None if e is None else ExplanationType.from_json(e) for e in explanations],
        )


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
