"""Checks on decoded claims that PyJWT does not do (or does with the wall clock)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from auth.errors import AuthError, Reason
from auth.scopes import Scope, parse_scopes

REQUIRED_CLAIMS: tuple[str, ...] = ("exp", "iat", "iss", "aud", "sub")

# 9999-12-31T23:59:59Z: the last instant datetime can represent, so every accepted
# moment converts without OverflowError/ValueError/OSError from fromtimestamp().
MAX_NUMERIC_DATE = 253_402_300_799


def _numeric_date(payload: Mapping[str, Any], claim: str) -> float | None:
    value = payload.get(claim)
    if value is None:
        return None
    # bool is an int subclass; NaN/inf would make every comparison meaningless.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AuthError(Reason.MALFORMED, f"token '{claim}' claim is not a timestamp")
    if isinstance(value, float) and not math.isfinite(value):
        raise AuthError(Reason.MALFORMED, f"token '{claim}' claim is not a timestamp")
    # Compared before float(): a 400-digit int would overflow the conversion itself.
    if not 0 <= value <= MAX_NUMERIC_DATE:
        raise AuthError(Reason.CLAIM_OUT_OF_RANGE, f"token '{claim}' claim is out of range")
    return float(value)


def check_times(payload: Mapping[str, Any], now: float, leeway: float) -> float:
    """Check exp/nbf/iat are in range, then against `now` (± leeway); return exp."""
    # All three are range-checked before any comparison, so the reason does not
    # depend on which claim happens to be compared first.
    exp, nbf, iat = (_numeric_date(payload, claim) for claim in ("exp", "nbf", "iat"))
    if exp is None:
        raise AuthError(Reason.MISSING_CLAIM, "token is missing the 'exp' claim")
    if exp <= now - leeway:
        raise AuthError(Reason.EXPIRED, "token has expired")
    for moment in (nbf, iat):
        if moment is not None and moment > now + leeway:
            raise AuthError(Reason.NOT_YET_VALID, "token is not yet valid")
    return exp


def subject_of(payload: Mapping[str, Any]) -> str:
    """Return the non-empty string `sub` claim."""
    subject = payload.get("sub")
    if subject is None:
        raise AuthError(Reason.MISSING_CLAIM, "token is missing the 'sub' claim")
    if not isinstance(subject, str):
        raise AuthError(Reason.MALFORMED, "token subject is not a string")
    if not subject.strip():
        raise AuthError(Reason.MISSING_CLAIM, "token subject is empty")
    return subject


def _claim_scopes(value: Any) -> frozenset[Scope]:
    # Issuers disagree on shapes: accept a space-separated string or a list of strings.
    if isinstance(value, str | list | tuple):
        return parse_scopes(value)
    return frozenset()


def _role_scopes(value: Any, roles: Mapping[str, frozenset[Scope]]) -> frozenset[Scope]:
    names = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    granted: set[Scope] = set()
    for name in names:
        if isinstance(name, str):
            granted |= roles.get(name, frozenset())
    return frozenset(granted)


def scopes_of(
    payload: Mapping[str, Any], roles: Mapping[str, frozenset[Scope]]
) -> frozenset[Scope]:
    """Union of the `scope`, `scp` and role-mapped scopes; unknown names are ignored."""
    return (
        _claim_scopes(payload.get("scope"))
        | _claim_scopes(payload.get("scp"))
        | _role_scopes(payload.get("roles"), roles)
    )
