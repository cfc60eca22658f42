"""Who may call what: the one map from root fields to scopes, and the permission that checks it."""

from typing import Any

from strawberry.extensions import FieldExtension
from strawberry.permission import BasePermission, PermissionExtension
from strawberry.types import Info

from auth import Scope
from graph.runtime.access import authorize
from graph.schema.inputs import PredictColumnsInput

# Every root field is listed here; a test fails when one is missing.
FIELD_SCOPES: dict[str, Scope | None] = {
    "predict": Scope.PREDICT,
    "predictBatch": Scope.PREDICT,
    "predictColumns": Scope.PREDICT,
    "prediction": Scope.PREDICTIONS_READ,
    "predictions": Scope.PREDICTIONS_READ,
    "device": Scope.PREDICTIONS_READ,
    "devicesAtRisk": Scope.PREDICTIONS_READ,
    "predictionStats": Scope.PREDICTIONS_READ,
    "modelVersions": Scope.MODELS_READ,
    "modelVersion": Scope.MODELS_READ,
    "activeModel": Scope.MODELS_READ,
    "modelActivations": Scope.MODELS_READ,
    "activateModelVersion": Scope.MODELS_WRITE,
    "rollbackModel": Scope.MODELS_WRITE,
    "drift": Scope.MODELS_READ,
    "modelPerformance": Scope.MODELS_READ,
    "recordOutcome": Scope.OUTCOMES_WRITE,
    "auditEvents": Scope.AUDIT_READ,
    "failureAlerts": Scope.PREDICTIONS_READ,
    "createWebhook": Scope.WEBHOOKS_WRITE,
    "deleteWebhook": Scope.WEBHOOKS_WRITE,
    "webhooks": Scope.WEBHOOKS_READ,
    "webhookDeliveries": Scope.WEBHOOKS_READ,
    "me": None,  # any valid token
}


class ScopeRequired(BasePermission):
    """A valid token (UNAUTHENTICATED), the field's scope (FORBIDDEN) and rate (RATE_LIMITED)."""

    def __init__(self, field_name: str) -> None:
        self.scope = FIELD_SCOPES[field_name]

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        context = info.context
        authorize(context.principal, self.scope, context.runtime.limiter, _rows(kwargs))
        return True


def _rows(arguments: dict[str, Any]) -> int:
    """What a call costs in its rate: a batch one per input, columns one per row, else 1."""
    given = arguments.get("input")
    if isinstance(given, PredictColumnsInput):
        return given.rows
    return len(arguments.get("inputs") or ()) or 1


def requires(field_name: str) -> list[FieldExtension]:
    """The permission extension of a root field, from FIELD_SCOPES."""
    return [PermissionExtension([ScopeRequired(field_name)], use_directives=False)]
