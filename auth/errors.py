"""Authentication errors with stable, client-safe codes and reasons."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar


class Reason(StrEnum):
    """Stable machine-readable reasons carried by AuthError.reason (stored in audit trails).

    Values never change once published; new ones may be added. Request-time reasons:
    missing, malformed, algorithm_not_allowed, bad_signature, expired, not_yet_valid,
    wrong_issuer, wrong_audience, missing_claim, unknown_kid, key_unavailable,
    claim_out_of_range. Configuration and minting reasons (AuthConfigError only):
    invalid_config, insecure_config, invalid_ttl, unknown_scope, invalid_argument.
    """

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
    # A numeric date (exp/iat/nbf) outside [0, end of year 9999].
    CLAIM_OUT_OF_RANGE = "claim_out_of_range"
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
