"""Who may call what: the one map from root fields to scopes, and the permission that checks it."""

import math
from typing import Any

from graphql import GraphQLError
from strawberry.extensions import FieldExtension
from strawberry.permission import BasePermission, PermissionExtension
from strawberry.types import Info

from auth import Scope
from graph.ratelimit import RateLimiter

# Every root field is listed here; a test fails when one is missing.
FIELD_SCOPES: dict[str, Scope | None] = {
    "predict": Scope.PREDICT,
    "predictBatch": Scope.PREDICT,
    "prediction": Scope.PREDICTIONS_READ,
    "predictions": Scope.PREDICTIONS_READ,
    "modelVersions": Scope.MODELS_READ,
    "modelVersion": Scope.MODELS_READ,
    "activeModel": Scope.MODELS_READ,
    "auditEvents": Scope.AUDIT_READ,
    "me": None,  # any valid token
}


class ScopeRequired(BasePermission):
    """Needs a valid token (UNAUTHENTICATED otherwise) carrying the scope (else FORBIDDEN)."""

    def __init__(self, scope: Scope | None) -> None:
        self.scope = scope

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        cost = len(kwargs.get("inputs") or ()) or 1  # a batch costs one per input
        self.check(info.context, cost)
        return True

    def check(self, context: Any, cost: int = 1) -> None:
        """Raise UNAUTHENTICATED, FORBIDDEN or RATE_LIMITED unless the caller may go on."""
        if context.principal is None:
            reason = context.auth_error
            message = str(reason) if reason else "a bearer token is required"
            raise GraphQLError(message, extensions={"code": "UNAUTHENTICATED"})
        if self.scope is not None and not context.principal.has(self.scope):
            message = f"the token lacks the '{self.scope.value}' scope"
            raise GraphQLError(message, extensions={"code": "FORBIDDEN"})
        if self.scope is not None:
            check_rate(context.services.limiter, context.principal.subject, self.scope, cost)


def check_rate(limiter: RateLimiter, subject: str, scope: Scope, cost: int = 1) -> None:
    """Raise RATE_LIMITED (with retryAfter seconds) when the subject's bucket is empty."""
    wait = limiter.acquire(subject, scope.value, cost)
    if wait is not None:
        retry = max(1, math.ceil(wait)) if math.isfinite(wait) else 3600
        message = f"rate limit of '{scope.value}' exceeded; retry in {retry} s"
        raise GraphQLError(message, extensions={"code": "RATE_LIMITED", "retryAfter": retry})


def requires(field_name: str) -> list[FieldExtension]:
    """The permission extension for a root field, from FIELD_SCOPES."""
    scope = FIELD_SCOPES[field_name]
    return [PermissionExtension([ScopeRequired(scope)], use_directives=False)]
