"""POST /predict: the original REST service's contract, on the same use case as the mutation."""

from datetime import UTC, datetime
from typing import Any

import orjson
from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import Response

from auth import Scope
from graph import services
from graph.audit import request_audit
from graph.errors import ServiceError, error_payload, public_error
from graph.http import RequestRefused, _read_body, authenticate, json_response, refusal
from graph.permissions import check_rate
from model import DEVICE_FEATURES
from persistence import PredictionBlock

NUMBER = (int, float)


def _row(body: dict[str, Any]) -> services.TelemetryRow:
    metrics: dict[str, float] = {}
    for name in DEVICE_FEATURES:
        value = body.get(name)
        if isinstance(value, bool) or not isinstance(value, NUMBER):
            raise ServiceError(f"{name} is required and must be a number", "BAD_USER_INPUT", name)
        metrics[name] = float(value)
    device = body.get("deviceId", body.get("device"))
    if device is not None and not isinstance(device, str):
        raise ServiceError("deviceId must be a string", "BAD_USER_INPUT", "deviceId")
    return services.TelemetryRow(metrics=metrics, device_id=device)


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
    }


async def predict_route(request: Request) -> Response:
    """Predict from the original JSON body; same token, scope, checks, storage and audit."""
    audit = request_audit(request.scope)
    assert audit is not None, "the audit middleware must wrap /predict"
    audit.operation_type, audit.operation_name = "rest", "predict"
    principal, auth_error = authenticate(request, audit)
    if principal is None:
        message = str(auth_error) if auth_error else "a bearer token is required"
        return _fail(audit, 401, "UNAUTHENTICATED", message)
    if not principal.has(Scope.PREDICT):
        return _fail(audit, 403, "FORBIDDEN", "the token lacks the 'predict' scope")
    try:
        check_rate(request.app.state.services.limiter, principal.subject, Scope.PREDICT)
    except GraphQLError as error:
        refused = _fail(audit, 429, "RATE_LIMITED", error.message)
        refused.headers["retry-after"] = str((error.extensions or {}).get("retryAfter", 1))
        return refused
    try:
        row = _row(await _read_body(request))
        block = services.predict(request.app.state.services.models, audit, [row]).block
    except RequestRefused as error:
        return refusal(audit, error)
    except ServiceError as error:
        code, message, _ = public_error(error) or (error.code, str(error), {})
        status = 400 if code == "BAD_USER_INPUT" else 503
        return _fail(audit, status, code, message)
    return Response(orjson.dumps(_original_format(block)), media_type="application/json")


def _fail(audit: Any, status: int, code: str, message: str) -> Response:
    audit.add_codes([code])
    return json_response(error_payload(code, message, audit.id), status)
