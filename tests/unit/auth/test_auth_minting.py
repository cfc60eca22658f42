"""parse_ttl, mint_token, mint_with_private_key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

from auth import (
    AuthConfig,
    AuthConfigError,
    Scope,
    TokenVerifier,
    mint_token,
    mint_with_private_key,
    parse_ttl,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("1h", timedelta(hours=1)),
        ("7d", timedelta(days=7)),
        ("3600", timedelta(seconds=3600)),
        (" 2H ", timedelta(hours=2)),
        ("10 m", timedelta(minutes=10)),
        ("365d", timedelta(days=365)),
        ("1", timedelta(seconds=1)),
    ],
)
def test_parse_ttl(text: str, expected: timedelta) -> None:
    assert parse_ttl(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "abc", "0", "0s", "-5m", "1.5h", "5x", "1h30m", "366d", "8761h", "h", "\u0661\u0662s",
     "9" * 13, "1e3"],
)  # fmt: skip
def test_parse_ttl_refuses(text: str) -> None:
    with pytest.raises(AuthConfigError) as caught:
        parse_ttl(text)

    assert caught.value.reason == "invalid_ttl"


def test_mint_round_trip(tokens: Any) -> None:
    config = AuthConfig(secret=tokens.secret)
    now = datetime.fromtimestamp(tokens.now, tz=UTC)

    token = mint_token(
        config, "svc-a", [Scope.PREDICT, Scope.AUDIT_READ], timedelta(minutes=5), now=now
    )
    principal = TokenVerifier(config, clock=tokens.now_fn).verify(token)

    assert principal.subject == "svc-a"
    assert principal.scopes == {Scope.PREDICT, Scope.AUDIT_READ}
    assert principal.expires_at == now + timedelta(minutes=5)


def test_mint_accepts_scope_names_as_strings(tokens: Any) -> None:
    config = AuthConfig(secret=tokens.secret)
    token = mint_token(config, "svc", ["predict", "models:read"], timedelta(minutes=1))  # type: ignore[list-item]

    assert jwt.decode(token, options={"verify_signature": False})["scope"] == "models:read predict"


def test_minted_claims(tokens: Any) -> None:
    config = AuthConfig(secret=tokens.secret, issuer="iss-x", audience="aud-y")
    now = datetime.fromtimestamp(tokens.now, tz=UTC)

    token = mint_token(
        config,
        "svc",
        [Scope.MODELS_WRITE, Scope.MODELS_READ, Scope.PREDICT],
        timedelta(hours=1),
        now=now,
        extra_claims={"tenant": "acme"},
    )
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})

    assert header["alg"] == "HS256"
    assert claims["scope"] == "models:read models:write predict"  # sorted
    assert claims["iat"] == claims["nbf"] == int(tokens.now)
    assert claims["exp"] == int(tokens.now) + 3600
    assert (claims["iss"], claims["aud"], claims["sub"]) == ("iss-x", "aud-y", "svc")
    assert claims["tenant"] == "acme"
    assert len(claims["jti"]) == 32
    assert (
        claims["jti"]
        != jwt.decode(
            mint_token(config, "svc", [], timedelta(hours=1), now=now),
            options={"verify_signature": False},
        )["jti"]
    )


def test_mint_refused_without_secret() -> None:
    with pytest.raises(AuthConfigError, match="FAILCAST_JWT_SECRET"):
        mint_token(AuthConfig(), "svc", [Scope.PREDICT], timedelta(minutes=5))


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"subject": ""}, "invalid_argument"),
        ({"ttl": timedelta(0)}, "invalid_ttl"),
        ({"ttl": timedelta(days=400)}, "invalid_ttl"),
        ({"now": datetime(2024, 1, 1)}, "invalid_argument"),  # naive
        ({"extra_claims": {"exp": 9999999999}}, "invalid_argument"),
        ({"extra_claims": {"scope": "models:write"}}, "invalid_argument"),
        ({"scopes": ["predict", "admin"]}, "unknown_scope"),
    ],
)
def test_mint_refuses_bad_arguments(kwargs: dict[str, Any], reason: str, tokens: Any) -> None:
    args: dict[str, Any] = {"subject": "svc", "scopes": [Scope.PREDICT], "ttl": timedelta(hours=1)}
    args.update(kwargs)

    with pytest.raises(AuthConfigError) as caught:
        mint_token(AuthConfig(secret=tokens.secret), **args)

    assert caught.value.reason == reason


@pytest.mark.parametrize(
    ("algorithm", "pair"), [("RS256", "rsa"), ("PS256", "rsa"), ("ES256", "ec")]
)
def test_mint_with_private_key_round_trip(algorithm: str, pair: str, tokens: Any) -> None:
    keypair = getattr(tokens.keys, pair)
    config = AuthConfig(algorithms=(algorithm,), public_key_pem=keypair.public_pem)
    now = datetime.fromtimestamp(tokens.now, tz=UTC)

    token = mint_with_private_key(
        keypair.private_pem, algorithm, config, "op", [Scope.MODELS_WRITE], timedelta(minutes=1),
        kid="rsa-1", now=now,
    )  # fmt: skip

    assert jwt.get_unverified_header(token)["kid"] == "rsa-1"
    principal = TokenVerifier(config, clock=tokens.now_fn).verify(token)
    assert principal.subject == "op" and principal.has(Scope.MODELS_WRITE)


@pytest.mark.parametrize(
    ("algorithm", "pair"), [("HS256", "rsa"), ("none", "rsa"), ("RS256", "ec")]
)
def test_mint_with_private_key_refuses(algorithm: str, pair: str, tokens: Any) -> None:
    pem = getattr(tokens.keys, pair).private_pem

    with pytest.raises(AuthConfigError):
        mint_with_private_key(pem, algorithm, AuthConfig(), "op", [], timedelta(minutes=1))
