"""Authorisation scopes and their parsing."""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import StrEnum

from auth.errors import AuthConfigError, Reason


class Scope(StrEnum):
    """A permission a token can carry."""

    PREDICT = "predict"
    PREDICTIONS_READ = "predictions:read"
    MODELS_READ = "models:read"
    MODELS_WRITE = "models:write"
    OUTCOMES_WRITE = "outcomes:write"
    AUDIT_READ = "audit:read"
    METRICS_READ = "metrics:read"
    WEBHOOKS_READ = "webhooks:read"
    WEBHOOKS_WRITE = "webhooks:write"


ALL_SCOPES: frozenset[Scope] = frozenset(Scope)

_BY_NAME: dict[str, Scope] = {scope.value: scope for scope in Scope}
# RFC 6749 scopes are space-separated; commas are accepted too for CLI convenience.
_SEPARATORS = re.compile(r"[\s,]+")


def _names(value: str | Iterable[str]) -> list[str]:
    if isinstance(value, str):
        return [name for name in _SEPARATORS.split(value) if name]
    # Non-string items can only come from a hostile or buggy issuer: skip them.
    return [item.strip() for item in value if isinstance(item, str) and item.strip()]


def parse_scopes(value: str | Iterable[str]) -> frozenset[Scope]:
    """Parse scope names, silently ignoring unknown ones (forward compatible for tokens)."""
    return frozenset(_BY_NAME[name] for name in _names(value) if name in _BY_NAME)


def parse_scopes_strict(value: str | Iterable[str]) -> frozenset[Scope]:
    """Parse scope names, raising AuthConfigError on any unknown name (for the CLI)."""
    names = _names(value)
    unknown = sorted({name for name in names if name not in _BY_NAME})
    if unknown:
        known = ", ".join(sorted(_BY_NAME))
        raise AuthConfigError(
            Reason.UNKNOWN_SCOPE, f"unknown scope(s): {', '.join(unknown)} (known: {known})"
        )
    return frozenset(_BY_NAME[name] for name in names)
