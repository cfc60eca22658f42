"""Scopes, Principal and the error types."""

from __future__ import annotations

import pytest

from auth import (
    ALL_SCOPES,
    AuthConfigError,
    AuthError,
    Principal,
    Reason,
    Scope,
    parse_scopes,
    parse_scopes_strict,
)


def test_all_scopes() -> None:
    assert frozenset(Scope) == ALL_SCOPES
    assert Scope.PREDICTIONS_READ.value == "predictions:read"
    assert isinstance(Scope.PREDICT, str)  # StrEnum: usable wherever a str is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("predict models:read", {Scope.PREDICT, Scope.MODELS_READ}),
        ("  predict   predict ", {Scope.PREDICT}),
        ("predict,audit:read", {Scope.PREDICT, Scope.AUDIT_READ}),
        (["outcomes:write", "nope"], {Scope.OUTCOMES_WRITE}),
        ("future:scope", set()),
        ("", set()),
        ([], set()),
        (("models:write",), {Scope.MODELS_WRITE}),
    ],
)
def test_parse_scopes_ignores_unknown(value: str | list[str], expected: set[Scope]) -> None:
    assert parse_scopes(value) == expected


def test_parse_scopes_skips_non_strings() -> None:
    assert parse_scopes(["predict", 3, None]) == {Scope.PREDICT}  # type: ignore[list-item]


def test_parse_scopes_strict() -> None:
    assert parse_scopes_strict("predict, models:read") == {Scope.PREDICT, Scope.MODELS_READ}

    with pytest.raises(AuthConfigError) as caught:
        parse_scopes_strict(["predict", "admin", "root"])

    assert caught.value.reason == "unknown_scope"
    assert "admin, root" in caught.value.message


def test_principal_has() -> None:
    principal = Principal(subject="s", scopes=frozenset({Scope.PREDICT}))

    assert principal.has(Scope.PREDICT)
    assert not principal.has(Scope.MODELS_WRITE)
    assert principal.expires_at is None


def test_error_codes_and_reason() -> None:
    error = AuthError("expired", "token has expired")
    config_error = AuthConfigError("invalid_config", "bad")

    assert (error.code, error.reason, error.message, str(error)) == (
        "UNAUTHENTICATED",
        "expired",
        "token has expired",
        "token has expired",
    )
    assert config_error.code == "AUTH_CONFIG" and isinstance(config_error, AuthError)
    assert "expired" in repr(error)


# Audit trails store these strings: changing one would split a reason's history in two.
PUBLISHED_REASONS = {
    "MISSING": "missing",
    "MALFORMED": "malformed",
    "ALGORITHM_NOT_ALLOWED": "algorithm_not_allowed",
    "BAD_SIGNATURE": "bad_signature",
    "EXPIRED": "expired",
    "NOT_YET_VALID": "not_yet_valid",
    "WRONG_ISSUER": "wrong_issuer",
    "WRONG_AUDIENCE": "wrong_audience",
    "MISSING_CLAIM": "missing_claim",
    "UNKNOWN_KID": "unknown_kid",
    "KEY_UNAVAILABLE": "key_unavailable",
    "CLAIM_OUT_OF_RANGE": "claim_out_of_range",
    "INVALID_CONFIG": "invalid_config",
    "INSECURE_CONFIG": "insecure_config",
    "INVALID_TTL": "invalid_ttl",
    "UNKNOWN_SCOPE": "unknown_scope",
    "INVALID_ARGUMENT": "invalid_argument",
}


def test_reason_values_are_stable() -> None:
    assert {reason.name: reason.value for reason in Reason} == PUBLISHED_REASONS


def test_reason_docstring_lists_every_value() -> None:
    assert Reason.__doc__ is not None
    missing = [reason.value for reason in Reason if reason.value not in Reason.__doc__]

    assert missing == []
