"""Model monitoring in the schema: drift, recordOutcome, modelPerformance, ModelVersion.evaluations.

The types and the resolvers' helpers; the root fields are declared in root.py. The use cases are
graph/runtime/monitoring.py, the SQL persistence/drift.py, outcomes.py and evaluations.py.
"""

from datetime import date, datetime, timedelta
from enum import Enum
from typing import Annotated, Any, cast

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from graph.errors import bad_input
from graph.runtime import monitoring
from graph.runtime.monitoring import DriftReport, FeatureDrift, Performance, RecordedOutcome
from persistence import ModelEvaluation

DEFAULT_EVALUATIONS = 20
# The arguments drift and modelPerformance share.
VersionArgument = Annotated[
    str | None, strawberry.argument(description="The version (default: the active one).")
]
ToArgument = Annotated[
    datetime | None, strawberry.argument(description="End, exclusive (default: now).")
]


@strawberry.enum(
    name="DriftStatus",
    description=(
        "OK (PSI < 0.1), WARN (0.1 to 0.25), ALERT (>= 0.25), or INSUFFICIENT_DATA: fewer "
        "predictions in the window than FAILCAST_DRIFT_MIN_SAMPLE (500)."
    ),
)
class DriftStatusEnum(Enum):
    OK = "OK"
    WARN = "WARN"
    ALERT = "ALERT"
    INSUFFICIENT_DATA = "INSUFFICIENT_DATA"


@strawberry.type(name="FeatureDrift", description="How far one input moved from training.")
class FeatureDriftType:
    feature: str = strawberry.field(description="The input, e.g. metric1.")
    psi: float | None = strawberry.field(
        description=(
            "Population stability index of the window over the profile's bins (shares floored "
            "at 1e-4); null when the window is empty."
        )
    )
    ks: float | None = strawberry.field(
        description="Two-sample Kolmogorov-Smirnov D: the training reference sample against a "
        "sample of the window (see ksSampleSize); null when the window is empty."
    )
    ks_p_value: float | None = strawberry.field(
        description="Asymptotic p-value of ks (the Kolmogorov distribution)."
    )
    status: DriftStatusEnum = strawberry.field(description="By PSI, or INSUFFICIENT_DATA.")

    @classmethod
    def from_found(cls, found: FeatureDrift) -> "FeatureDriftType":
        """Build from a feature's drift."""
        return cls(
            feature=found.feature,
            psi=found.psi,
            ks=found.ks,
            ks_p_value=found.ks_p_value,
            status=DriftStatusEnum(found.status.value),
        )


@strawberry.type(
    name="DriftReport", description="A model version's input drift over a time window."
)
class DriftReportType:
    model_version: str = strawberry.field(description="The version whose predictions these are.")
    from_: datetime = strawberry.field(name="from", description="Window start (inclusive).")
    to: datetime = strawberry.field(description="Window end (exclusive), by observedAt.")
    status: DriftStatusEnum = strawberry.field(
        description="The worst feature status; INSUFFICIENT_DATA below the minimum sample."
    )
    sample_size: int = strawberry.field(description="Predictions in the window (PSI counts all).")
    ks_sample_size: int = strawberry.field(
        description="Of them, how many the KS test read (at most FAILCAST_DRIFT_SAMPLE, spread "
        "evenly over the window by observation time)."
    )
    min_sample_size: int = strawberry.field(
        description="Predictions needed for a status other than INSUFFICIENT_DATA."
    )
    features: list[FeatureDriftType] = strawberry.field(description="One entry per model input.")

    @classmethod
    def from_report(cls, report: DriftReport) -> "DriftReportType":
        """Build from a drift report."""
        return cls(
            model_version=report.model_version,
            from_=report.start,
            to=report.end,
            status=DriftStatusEnum(report.status.value),
            sample_size=report.sample_size,
            ks_sample_size=report.ks_sample_size,
            min_sample_size=report.min_sample,
            features=[FeatureDriftType.from_found(f) for f in report.features],
        )


@strawberry.type(name="Outcome", description="What really happened to a device on a (UTC) day.")
class OutcomeType:
    id: strawberry.ID = strawberry.field(description="Stable id: the UTC day and the device id.")
    device_id: str = strawberry.field(description="The device.")
    failed: bool = strawberry.field(description="Whether it failed.")
    observed_at: datetime = strawberry.field(description="When it was observed (UTC).")
    day: date = strawberry.field(description="The UTC day: one outcome per device and day.")
    labeled_predictions: int = strawberry.field(
        description="The device's predictions this outcome labels: observedAt in "
        "(observedAt - FAILCAST_OUTCOME_HORIZON_DAYS, observedAt]."
    )

    @classmethod
    def from_recorded(cls, found: RecordedOutcome) -> "OutcomeType":
        """Build from a recorded outcome."""
        return cls(
            id=strawberry.ID(f"{found.day.isoformat()}/{found.device_id}"),
            device_id=found.device_id,
            failed=found.failed,
            observed_at=found.observed_at,
            day=found.day,
            labeled_predictions=found.labeled_predictions,
        )


def _figure(values: dict[str, Any], name: str) -> float | None:
    value = values.get(name)
    return float(value) if isinstance(value, int | float) else None


@strawberry.type(
    name="PerformanceFigures", description="A version's figures on its training test set."
)
class PerformanceFiguresType:
    precision: float | None
    recall: float | None
    f1: float | None
    false_positive_rate: float | None
    false_negative_rate: float | None
    roc_auc: float | None
    pr_auc: float | None

    @classmethod
    def from_metrics(cls, values: dict[str, Any]) -> "PerformanceFiguresType":
        """Build from metrics JSON (training's names, snake_case)."""
        return cls(**{name: _figure(values, name) for name in _FIGURES})


_FIGURES = (
    "precision", "recall", "f1", "false_positive_rate", "false_negative_rate", "roc_auc", "pr_auc",
)  # fmt: skip


@strawberry.type(
    name="ModelPerformance",
    description=(
        "A version's predictions in a window against recorded outcomes. Rates over nothing are "
        "null; the confusion matrix is at each prediction's stored label."
    ),
)
class ModelPerformanceType:
    model_version: str = strawberry.field(description="The version whose predictions these are.")
    from_: datetime | None = strawberry.field(
        name="from", description="Window start (inclusive), by observedAt; null: from the first."
    )
    to: datetime = strawberry.field(description="Window end (exclusive).")
    labeled: int = strawberry.field(description="Predictions an outcome labels.")
    unlabeled: int = strawberry.field(description="Predictions no outcome covers (yet).")
    labeled_failures: int = strawberry.field(description="Labeled predictions of failed devices.")
    true_positives: int
    false_positives: int
    true_negatives: int
    false_negatives: int
    precision: float | None
    recall: float | None
    f1: float | None
    false_positive_rate: float | None
    false_negative_rate: float | None
    roc_auc: float | None = strawberry.field(description="Null unless both classes are labeled.")
    pr_auc: float | None = strawberry.field(description="Average precision; as rocAuc.")
    training: PerformanceFiguresType | None = strawberry.field(
        description="The same figures on the version's training test set (null: not stored)."
    )
    tolerance: float = strawberry.field(
        description="How far (absolute) recall or precision may fall below training's "
        "(FAILCAST_PERFORMANCE_TOLERANCE)."
    )
    min_failures: int = strawberry.field(
        description="Labeled failures needed before degraded is said "
        "(FAILCAST_PERFORMANCE_MIN_FAILURES)."
    )
    degraded: bool | None = strawberry.field(
        description="Whether recall or precision fell below training's by more than the "
        "tolerance; null while it cannot be said (see verdict)."
    )
    verdict: str = strawberry.field(description="Why degraded is what it is.")
    findings: list[str] = strawberry.field(description="One sentence per figure that fell.")

    @classmethod
    def from_performance(cls, found: Performance) -> "ModelPerformanceType":
        """Build from a performance report."""
        figures = found.figures
        return cls(
            model_version=found.model_version,
            from_=found.window.start,
            to=found.window.end,
            labeled=found.labeled,
            unlabeled=found.unlabeled,
            labeled_failures=found.labeled_failures,
            true_positives=found.true_positives,
            false_positives=found.false_positives,
            true_negatives=found.true_negatives,
            false_negatives=found.false_negatives,
            **{name: figures.get(name) for name in _FIGURES},
            training=None
            if found.training is None
            else PerformanceFiguresType.from_metrics(found.training),
            tolerance=found.tolerance,
            min_failures=found.min_failures,
            degraded=found.degraded,
            verdict=found.verdict,
            findings=list(found.findings),
        )


@strawberry.type(
    name="ModelEvaluation",
    description="A run of `failcast evaluate`: the version scored on a labeled data file.",
)
class ModelEvaluationType:
    id: strawberry.ID = strawberry.field(description="Stable id of the run.")
    evaluated_at: datetime = strawberry.field(description="When it ran.")
    data_source: str = strawberry.field(description="The file (and which of its rows).")
    data_sha256: str = strawberry.field(description="sha256 of the file's bytes.")
    data_rows: int = strawberry.field(description="Rows scored.")
    data_failures: int = strawberry.field(description="Of them, failures.")
    same_data_as_training: bool = strawberry.field(
        description="Whether the file is the version's training data."
    )
    metrics: JSON = strawberry.field(description="The scores (training's metric names).")
    tolerance: float = strawberry.field(description="The gate's tolerance (absolute).")
    passed: bool = strawberry.field(description="Whether no figure fell beyond it.")
    findings: list[str] = strawberry.field(description="Why it did not pass.")
    hostname: str = strawberry.field(description="Where it ran.")

    @classmethod
    def from_row(cls, row: ModelEvaluation) -> "ModelEvaluationType":
        """Build from a stored run."""
        return cls(
            id=strawberry.ID(str(row.id)),
            evaluated_at=row.evaluated_at,
            data_source=row.data_source,
            data_sha256=row.data_sha256,
            data_rows=row.data_rows,
            data_failures=row.data_failures,
            same_data_as_training=row.same_data_as_training,
            metrics=cast(JSON, row.metrics),
            tolerance=row.tolerance,
            passed=row.passed,
            findings=list(row.findings),
            hostname=row.hostname,
        )


async def drift(
    info: Info, model_version: str | None, start: datetime | None, end: datetime | None
) -> DriftReportType:
    """The drift answer (the window defaults to the trailing FAILCAST_DRIFT_WINDOW_HOURS)."""
    runtime = info.context.runtime
    settings = runtime.settings
    span = monitoring.window(start, end, timedelta(hours=settings.drift_window_hours))
    report = await monitoring.drift(runtime.engine, settings, model_version, span)
    return DriftReportType.from_report(report)


async def record_outcome(
    info: Info, device_id: str, failed: bool, observed_at: datetime
) -> OutcomeType:
    """The recordOutcome answer; the outcome is committed with the request's audit row."""
    context = info.context
    recorded = await monitoring.record_outcome(
        context.runtime.engine,
        context.audit,
        device_id,
        failed,
        observed_at,
        context.runtime.settings.outcome_horizon_days,
    )
    return OutcomeType.from_recorded(recorded)


async def model_performance(
    info: Info, model_version: str | None, start: datetime | None, end: datetime | None
) -> ModelPerformanceType:
    """The modelPerformance answer (the window defaults to everything up to now)."""
    runtime = info.context.runtime
    span = monitoring.window(start, end, None)
    found = await monitoring.model_performance(
        runtime.engine, runtime.settings, model_version, span
    )
    return ModelPerformanceType.from_performance(found)


def check_first(first: int | None, max_first: int) -> int:
    """`first` of a bounded list, its default when null; BAD_USER_INPUT outside 1..max_first."""
    size = DEFAULT_EVALUATIONS if first is None else first
    if not 1 <= size <= max_first:
        raise bad_input(f"first must be 1..{max_first}", "first")
    return size
