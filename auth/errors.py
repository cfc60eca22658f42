"""Authentication errors with stable, client-safe codes and reasons."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar


class Reason(StrEnum):
    """Stable machine-readable reasons carried by AuthError.reason."""

    MISSING = "missing"
    MALFORMED = "malformed"
    ALGORITHM_NOT_ALLOWED = "algorithm_not_allowed"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    WRONG_ISSUER = "wrong_issuer"
    WRONG_AUDIENCE = "wrong_audience"
    MISSING_CLAIM = "missing_claim"
    UNKNOWN_KID = "unknown_kid"
    KEY_UNAVAILABLE = "key_unavailable"
    # Reasons used by AuthConfigError (start-up / mint time, never sent for a request).
    INVALID_CONFIG = "invalid_config"
    INSECURE_CONFIG = "insecure_config"
    INVALID_TTL = "invalid_ttl"
    UNKNOWN_SCOPE = "unknown_scope"
    INVALID_ARGUMENT = "invalid_argument"


class AuthError(Exception):
    """A request could not be authenticated; `message` is safe to show to clients."""

    code: ClassVar[str] = "UNAUTHENTICATED"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        # str() so a Reason member is stored as its plain value for serialisers.
        self.reason: str = str(reason)
        self.message: str = message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reason={self.reason!r}, message={self.message!r})"


class AuthConfigError(AuthError):
    """Authentication is misconfigured (raised at start-up or mint time)."""

    code: ClassVar[str] = "AUTH_CONFIG"
