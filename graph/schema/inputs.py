"""GraphQL input types."""

from datetime import datetime
from enum import Enum
from typing import Any

import strawberry
from strawberry.utils.str_converters import to_camel_case

from graph.runtime.telemetry import column_rows
from graph.schema.types import FailureClassEnum


@strawberry.input(name="PredictInput", description="Telemetry of one device on one day.")
class PredictInput:
    device_id: str | None = strawberry.field(
        default=None, description="Optional device id (1..64 printable characters)."
    )
    observed_at: datetime | None = strawberry.field(
        default=None,
        description=(
            "When the telemetry was taken, with a UTC offset (default: the request's time); "
            "2000-01-01 to 5 minutes from now."
        ),
    )
    metric1: float = strawberry.field(description="Counter 1, finite and >= 0.")
    metric2: float = strawberry.field(description="Counter 2, finite and >= 0.")
    metric3: float = strawberry.field(description="Counter 3, finite and >= 0.")
    metric4: float = strawberry.field(description="Counter 4, finite and >= 0.")
    metric5: float = strawberry.field(description="Counter 5, finite and >= 0.")
    metric6: float = strawberry.field(description="Counter 6, finite and >= 0.")
    metric7: float = strawberry.field(description="Counter 7 (= metric8), finite and >= 0.")
    metric9: float = strawberry.field(description="Counter 9, finite and >= 0.")

    def as_input(self) -> dict[str, Any]:
        """The values keyed as clients name them: what the telemetry decoder takes."""
        return _by_graphql_name(self)


@strawberry.input(
    name="PredictColumnsInput",
    description=(
        "Telemetry of many devices, column by column: one list per field of PredictInput, each "
        "holding one value per row (row i is item i of every list), the same checks applying to "
        "each value. Every list given must hold the same number of values, 1..1000 "
        "(FAILCAST_MAX_BATCH_SIZE)."
    ),
)
class PredictColumnsInput:
    device_id: list[str | None] | None = strawberry.field(
        default=None,
        description=(
            "Each row's optional device id (1..64 printable characters; null: none); "
            "null or left out: no row names its device."
        ),
    )
    observed_at: list[datetime | None] | None = strawberry.field(
        default=None,
        description=(
            "When each row's telemetry was taken, with a UTC offset (null: the request's time); "
            "2000-01-01 to 5 minutes from now. Null or left out: the request's time for every row."
        ),
    )
    metric1: list[float] = strawberry.field(description="Counter 1 of each row, finite and >= 0.")
    metric2: list[float] = strawberry.field(description="Counter 2 of each row, finite and >= 0.")
    metric3: list[float] = strawberry.field(description="Counter 3 of each row, finite and >= 0.")
    metric4: list[float] = strawberry.field(description="Counter 4 of each row, finite and >= 0.")
    metric5: list[float] = strawberry.field(description="Counter 5 of each row, finite and >= 0.")
    metric6: list[float] = strawberry.field(description="Counter 6 of each row, finite and >= 0.")
    metric7: list[float] = strawberry.field(
        description="Counter 7 (= metric8) of each row, finite and >= 0."
    )
    metric9: list[float] = strawberry.field(description="Counter 9 of each row, finite and >= 0.")

    def as_input(self) -> dict[str, Any]:
        """The lists keyed as clients name them: what the telemetry decoder takes."""
        return _by_graphql_name(self)

    @property
    def rows(self) -> int:
        """The rows the request asks for, as the rate limit counts them (its longest list)."""
        return column_rows(len(v) for v in self.as_input().values() if v is not None)


def _by_graphql_name(value: Any) -> dict[str, Any]:
    fields = value.__strawberry_definition__.fields
    return {
        field.graphql_name or to_camel_case(field.python_name): getattr(value, field.python_name)
        for field in fields
    }


@strawberry.input(name="PredictionFilter", description="Narrow the prediction history.")
class PredictionFilterInput:
    device_id: str | None = strawberry.field(default=None, description="Only this device.")
    device_id_prefix: str | None = strawberry.field(
        default=None, description="Only devices whose id starts with this."
    )
    model_version: str | None = strawberry.field(default=None, description="Only this version.")
    label: FailureClassEnum | None = strawberry.field(default=None, description="Only this class.")
    created_from: datetime | None = strawberry.field(
        default=None, description="Made at or after (with a UTC offset)."
    )
    created_to: datetime | None = strawberry.field(default=None, description="Made before.")
    observed_from: datetime | None = strawberry.field(
        default=None, description="Telemetry taken at or after."
    )
    observed_to: datetime | None = strawberry.field(
        default=None, description="Telemetry taken before."
    )
    min_probability: float | None = strawberry.field(
        default=None, description="failureProbability at least this (inclusive)."
    )
    max_probability: float | None = strawberry.field(
        default=None, description="failureProbability at most this (inclusive)."
    )
    subject: str | None = strawberry.field(
        default=None, description="Only predictions asked for by this token subject."
    )


@strawberry.enum(name="PredictionOrderField", description="What predictions are ordered by.")
class PredictionOrderFieldEnum(Enum):
    CREATED_AT = "created_at"
    OBSERVED_AT = "observed_at"
    FAILURE_PROBABILITY = "failure_probability"


@strawberry.enum(name="OrderDirection", description="Ascending or descending.")
class OrderDirectionEnum(Enum):
    ASC = "asc"
    DESC = "desc"


@strawberry.input(name="PredictionOrder", description="An ordering of predictions; ties by id.")
class PredictionOrderInput:
    field: PredictionOrderFieldEnum = strawberry.field(
        default=PredictionOrderFieldEnum.CREATED_AT, description="The sort key."
    )
    direction: OrderDirectionEnum = strawberry.field(
        default=OrderDirectionEnum.DESC, description="ASC or DESC."
    )
