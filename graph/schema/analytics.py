"""Analytics for planners and dashboards: devices ranked by risk, statistics per time bucket.

Both are plain lists, bounded: `devicesAtRisk` by `first` (1..FAILCAST_MAX_PAGE_SIZE, charged by
the cost limit like a page), `predictionStats` by FAILCAST_MAX_STATS_ROWS (beyond it the answer
is refused, not cut, and the cost limit charges that many rows). The SQL is in
persistence/analytics.py.
"""

from datetime import datetime
from enum import Enum

import strawberry
from strawberry.types import Info

from graph.runtime import usecases
from graph.schema.history import aware, prediction_filter
from graph.schema.inputs import PredictionFilterInput
from graph.schema.types import PredictionType
from persistence.analytics import Bucket, BucketStats, DeviceAtRisk, TimeField

DEFAULT_MIN_PROBABILITY = 0.5
DEFAULT_DEVICES = 50


@strawberry.enum(name="StatsBucket", description="How long a statistics bucket is (UTC).")
class StatsBucketEnum(Enum):
    HOUR = "hour"
    DAY = "day"
    WEEK = "week"


@strawberry.enum(name="StatsTimeField", description="Which time of a prediction buckets it.")
class StatsTimeFieldEnum(Enum):
    CREATED_AT = "created_at"
    OBSERVED_AT = "observed_at"


@strawberry.type(name="DeviceAtRisk", description="A device ranked by its latest prediction.")
class DeviceAtRiskType:
    device_id: str = strawberry.field(description="The device id clients send.")
    latest_prediction: PredictionType = strawberry.field(
        description="The device's prediction with the latest observation time (ties by id)."
    )
    rank: int = strawberry.field(
        description="1 for the riskiest; equal probabilities share a rank (1, 1, 3)."
    )

    @classmethod
    def from_found(cls, found: DeviceAtRisk) -> "DeviceAtRiskType":
        """Build from a ranked device."""
        latest = PredictionType.from_values(found.latest)
        return cls(device_id=found.device_id, latest_prediction=latest, rank=found.rank)


@strawberry.type(
    name="PredictionStats",
    description="The predictions of one model version in one time bucket, summarised.",
)
class PredictionStatsType:
    bucket_start: datetime = strawberry.field(
        description="Start of the bucket, UTC (hours and days on the hour; weeks on Monday)."
    )
    model_version: str = strawberry.field(description="The model version's name.")
    count: int = strawberry.field(description="How many predictions.")
    predicted_failures: int = strawberry.field(description="How many were FAILURE.")
    failure_rate: float = strawberry.field(description="predictedFailures / count.")
    mean_probability: float = strawberry.field(description="Mean failureProbability.")
    p95_probability: float = strawberry.field(
        description=(
            "95th percentile of failureProbability, nearest rank: the value at rank "
            "ceil(0.95 * count) in ascending order."
        )
    )

    @classmethod
    def from_row(cls, row: BucketStats) -> "PredictionStatsType":
        """Build from a row of statistics."""
        return cls(
            bucket_start=row.bucket_start,
            model_version=row.model_version,
            count=row.count,
            predicted_failures=row.predicted_failures,
            failure_rate=row.failure_rate,
            mean_probability=row.mean_probability,
            p95_probability=row.p95_probability,
        )


async def devices_at_risk(
    info: Info,
    min_probability: float | None,
    since: datetime | None,
    device_id_prefix: str | None,
    first: int | None,
) -> list[DeviceAtRiskType]:
    """The devicesAtRisk answer (null arguments take their defaults)."""
    runtime = info.context.runtime
    minimum = DEFAULT_MIN_PROBABILITY if min_probability is None else min_probability
    size = DEFAULT_DEVICES if first is None else first
    usecases.check_devices_at_risk(minimum, size, runtime.settings.max_page_size)
    found = await usecases.devices_at_risk(
        runtime.engine, minimum, aware(since, "since"), device_id_prefix, size
    )
    return [DeviceAtRiskType.from_found(item) for item in found]


async def prediction_stats(
    info: Info,
    where: PredictionFilterInput | None,
    bucket: StatsBucketEnum | None,
    time_field: StatsTimeFieldEnum | None,
) -> list[PredictionStatsType]:
    """The predictionStats answer (null arguments take their defaults)."""
    runtime = info.context.runtime
    rows = await usecases.prediction_stats(
        runtime.engine,
        prediction_filter(where),
        Bucket((bucket or StatsBucketEnum.DAY).value),
        TimeField((time_field or StatsTimeFieldEnum.OBSERVED_AT).value),
        runtime.settings.max_stats_rows,
    )
    return [PredictionStatsType.from_row(row) for row in rows]
