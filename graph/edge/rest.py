"""POST /predict: the original REST service's contract, on the same use case as the mutation."""

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from auth import Scope
from graph.edge.audit import request_state
from graph.edge.idempotency import Claim, IdempotencyGate
from graph.edge.responses import error_response, json_response, read_json_body
from graph.errors import FailcastError, bad_input
from graph.runtime import Runtime, usecases
from graph.runtime.access import authorize
from graph.runtime.telemetry import INPUT_FIELDS, TelemetryTypeError, decode_telemetry
from persistence import PredictionBlock


def _original_format(block: PredictionBlock) -> dict[str, Any]:
    failure, probability = block.is_failure[0], block.failure_probability[0]
    # The original reported the probability of the predicted class, as a percentage.
    proba = probability if failure else 1 - probability
    return {
        "timestamp": datetime.now(UTC).isoformat(),
        "class": "Failure" if failure else "Non-Failure",
        "probability": f"{proba * 100:.1f}%",
        "failureProbability": probability,
        "predictionId": str(block.ids[0]),
        # Added like the two keys above: the inputs outside the model's training range.
        "warnings": list(block.warnings[0] or ()) if block.warnings else [],
    }


class PredictEndpoint:
    """The /predict route of one application."""

    def __init__(self, runtime: Runtime, idempotency: IdempotencyGate) -> None:
        self.runtime = runtime
        self.idempotency = idempotency

    async def handle(self, request: Request) -> Response:
        """Predict from the original JSON body; same token, scope, checks, storage and audit."""
        audit, caller = request_state(request.scope)
        audit.describe("rest", "predict", None)
        runtime = self.runtime
        claim: Claim | None = None
        try:
            authorize(caller.principal, Scope.PREDICT, runtime.limiter, 1, caller.refusal)
            body = await read_json_body(
                request, runtime.settings.max_body_bytes, runtime.settings.body_timeout_seconds
            )
            assert caller.principal is not None  # authorize refuses requests without one
            entered = await self.idempotency.enter(request, audit, caller.principal, body.raw)
            if isinstance(entered, Response):
                return entered  # the stored answer of the first request with this key
            claim = entered
            telemetry = _telemetry(body.data)
            predicted = await usecases.predict(
                runtime.models, runtime.histories, runtime.alerts, audit, telemetry
            )
            block = predicted.block
            response = json_response(_original_format(block))
        except FailcastError as error:
            audit.answered_with([error.code])
            response = error_response(error, audit.id)
        if claim is not None:
            claim.remember(audit, response)
        return response


def _telemetry(body: Any) -> Any:
    """The body's telemetry; like the original, other fields are ignored (`device` = deviceId)."""
    if not isinstance(body, dict):
        raise bad_input("the body must be a JSON object of telemetry fields")
    item = {name: body[name] for name in INPUT_FIELDS if name in body}
    if "deviceId" not in item and "device" in body:
        item["deviceId"] = body["device"]
    try:
        return decode_telemetry([item])
    except TelemetryTypeError as error:
        raise bad_input(error.message, error.field or None) from error
