"""GraphQL input types."""

from typing import Any

import strawberry
from strawberry.utils.str_converters import to_camel_case

from graph.schema.types import FailureClassEnum


@strawberry.input(name="PredictInput", description="Telemetry of one device on one day.")
class PredictInput:
    device_id: str | None = strawberry.field(
        default=None, description="Optional device id (1..64 printable characters)."
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
        fields = self.__strawberry_definition__.fields  # type: ignore[attr-defined]
        return {
            field.graphql_name or to_camel_case(field.python_name): getattr(self, field.python_name)
            for field in fields
        }


@strawberry.input(name="PredictionFilter", description="Narrow the prediction history.")
class PredictionFilterInput:
    device_id: str | None = strawberry.field(default=None, description="Only this device.")
    model_version: str | None = strawberry.field(default=None, description="Only this version.")
    label: FailureClassEnum | None = strawberry.field(default=None, description="Only this class.")
