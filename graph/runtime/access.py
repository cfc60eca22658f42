"""Who may do what: a valid token, the scope, and room in the subject's rate limit."""

import math

from auth import Principal, Scope
from graph.errors import MISSING_TOKEN, ErrorCode, FailcastError
from graph.runtime.ratelimit import RateLimiter


def authorize(
    principal: Principal | None,
    scope: Scope | None,
    limiter: RateLimiter,
    cost: int = 1,
    why_anonymous: str | None = None,
) -> Principal:
    """The principal, if it may go on; else UNAUTHENTICATED, FORBIDDEN or RATE_LIMITED."""
    if principal is None:
        message = why_anonymous or MISSING_TOKEN
        raise FailcastError(ErrorCode.UNAUTHENTICATED, message)
    if scope is None:
        return principal
    if not principal.has(scope):
        raise FailcastError(ErrorCode.FORBIDDEN, f"the token lacks the '{scope.value}' scope")
    check_rate(limiter, principal.subject, scope.value, cost)
    return principal


def check_rate(limiter: RateLimiter, key: str, bucket: str, cost: int = 1) -> None:
    """RATE_LIMITED (with the seconds to wait) when the key's bucket has no room for `cost`."""
    wait = limiter.acquire(key, bucket, cost)
    if wait is not None:
        retry = max(1, math.ceil(wait)) if math.isfinite(wait) else 3600
        message = f"rate limit of '{bucket}' exceeded; retry in {retry} s"
        raise FailcastError(ErrorCode.RATE_LIMITED, message, retry_after=retry)
