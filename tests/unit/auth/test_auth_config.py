"""AuthConfig.validate and check_production_ready."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from auth import (
    MIN_SECRET_BYTES,
    AuthConfig,
    AuthConfigError,
    AuthError,
    Scope,
    check_production_ready,
    generate_secret,
)

GOOD_SECRET = "k3Y-Qm9vZ1xR7tW2pL8sN4vB6cH0jF5d"  # 32 bytes, varied


def _pem(algorithm: str, pem: str) -> dict[str, Any]:
    return {"algorithms": (algorithm,), "public_key_pem": pem}


Factory = Callable[[Any], dict[str, Any]]

REFUSALS: list[tuple[str, Factory]] = [
    ("no-algorithm", lambda k: {"algorithms": (), "secret": GOOD_SECRET}),
    ("algorithms-as-string", lambda k: {"algorithms": "HS256", "secret": GOOD_SECRET}),
    ("none", lambda k: {"algorithms": ("HS256", "none"), "secret": GOOD_SECRET}),
    ("NONE", lambda k: {"algorithms": ("NONE",), "secret": GOOD_SECRET}),
    ("unsupported-EdDSA", lambda k: {"algorithms": ("EdDSA",), "secret": GOOD_SECRET}),
    ("unsupported-lowercase", lambda k: {"algorithms": ("hs256",), "secret": GOOD_SECRET}),
    ("hs-without-secret", lambda k: {"algorithms": ("HS256",)}),
    ("hs-with-empty-secret", lambda k: {"algorithms": ("HS256",), "secret": ""}),
    ("rs-without-pem-or-jwks", lambda k: {"algorithms": ("RS256",), "secret": GOOD_SECRET}),
    ("es-without-pem-or-jwks", lambda k: {"algorithms": ("ES256",)}),
    ("pem-does-not-parse", lambda k: {"algorithms": ("RS256",), "public_key_pem": "-----BEGIN"}),
    ("pem-is-private-key", lambda k: _pem("RS256", k.rsa.private_pem)),
    ("ec-pem-for-rs256", lambda k: _pem("RS256", k.ec.public_pem)),
    ("rsa-pem-for-es256", lambda k: _pem("ES256", k.rsa.public_pem)),
    ("p256-pem-for-es384", lambda k: _pem("ES384", k.ec.public_pem)),
    ("jwks-not-http", lambda k: {"algorithms": ("RS256",), "jwks_url": "file:///etc/passwd"}),
    ("negative-leeway", lambda k: {"secret": GOOD_SECRET, "leeway_seconds": -1}),
    ("huge-leeway", lambda k: {"secret": GOOD_SECRET, "leeway_seconds": 86400}),
    ("zero-jwks-cache", lambda k: {"secret": GOOD_SECRET, "jwks_cache_seconds": 0}),
    ("negative-jwks-timeout", lambda k: {"secret": GOOD_SECRET, "jwks_timeout_seconds": -1.0}),
    ("zero-min-refresh", lambda k: {"secret": GOOD_SECRET, "jwks_min_refresh_seconds": 0}),
    ("negative-min-refresh", lambda k: {"secret": GOOD_SECRET, "jwks_min_refresh_seconds": -5}),
    ("nan-min-refresh", lambda k: {"secret": GOOD_SECRET, "jwks_min_refresh_seconds": float("nan")}),
    ("zero-failure-cache", lambda k: {"secret": GOOD_SECRET, "jwks_failure_cache_seconds": 0}),
    ("inf-failure-cache", lambda k: {"secret": GOOD_SECRET, "jwks_failure_cache_seconds": float("inf")}),
    ("string-failure-cache", lambda k: {"secret": GOOD_SECRET, "jwks_failure_cache_seconds": "10"}),
    ("bool-jwks-cache", lambda k: {"secret": GOOD_SECRET, "jwks_cache_seconds": True}),
    ("empty-issuer", lambda k: {"secret": GOOD_SECRET, "issuer": ""}),
    ("empty-audience", lambda k: {"secret": GOOD_SECRET, "audience": ""}),
    ("roles-with-strings", lambda k: {"secret": GOOD_SECRET, "roles": {"r": {"predict"}}}),
]  # fmt: skip


@pytest.mark.parametrize("factory", [f for _, f in REFUSALS], ids=[n for n, _ in REFUSALS])
def test_validate_refuses(factory: Factory, keys: Any) -> None:
    with pytest.raises(AuthConfigError) as caught:
        AuthConfig(**factory(keys)).validate()
    assert caught.value.code == "AUTH_CONFIG"
    assert caught.value.reason == "invalid_config"
    assert isinstance(caught.value, AuthError)


@pytest.mark.parametrize(
    "config",
    [
        {"secret": GOOD_SECRET},
        {"algorithms": ("RS256", "PS256"), "public_key_pem": "rsa"},
        {"algorithms": ("ES256",), "public_key_pem": "ec"},
        {"algorithms": ("RS256", "ES256", "ES384"), "jwks_url": "https://idp.example/jwks"},
        # mixing families is fine: each family has its own key source
        {"algorithms": ("HS256", "RS256"), "secret": GOOD_SECRET, "public_key_pem": "rsa"},
        # EC PEM covers ES256, JWKS covers RS256
        {"algorithms": ("ES256", "RS256"), "public_key_pem": "ec", "jwks_url": "http://x/j"},
    ],
)
def test_validate_accepts(config: dict[str, Any], keys: Any) -> None:
    if "public_key_pem" in config:
        config = {**config, "public_key_pem": getattr(keys, config["public_key_pem"]).public_pem}

    AuthConfig(**config).validate()


def test_jwks_timing_defaults() -> None:
    config = AuthConfig()

    assert (config.jwks_min_refresh_seconds, config.jwks_failure_cache_seconds) == (30, 10)
    assert (config.jwks_cache_seconds, config.jwks_timeout_seconds) == (300, 5.0)


def test_fractional_jwks_timings_are_accepted() -> None:
    AuthConfig(
        secret=GOOD_SECRET,
        jwks_cache_seconds=0.5,
        jwks_min_refresh_seconds=0.25,
        jwks_failure_cache_seconds=0.3,
    ).validate()


def test_repr_hides_secret() -> None:
    assert GOOD_SECRET not in repr(AuthConfig(secret=GOOD_SECRET))


def test_roles_default_is_empty_and_not_shared() -> None:
    assert AuthConfig().roles == {} and AuthConfig().roles is not AuthConfig().roles
    AuthConfig(secret=GOOD_SECRET, roles={"ops": frozenset({Scope.PREDICT})}).validate()


@pytest.mark.parametrize(
    ("config", "known"),
    [
        (AuthConfig(), ()),  # no key source at all
        (AuthConfig(secret="short-but-random-Q7x"), ()),
        (AuthConfig(secret="x" * 31 + "Q"), ()),
        (AuthConfig(secret="secret"), ()),
        (AuthConfig(secret="changeme"), ()),
        (AuthConfig(secret="changeme-please-use-a-long-value-here"), ()),
        (AuthConfig(secret="dev-secret-0123456789-abcdefghijklmnop"), ()),
        (AuthConfig(secret="a" * 64), ()),
        (AuthConfig(secret="abababababababababababababababababab"), ()),
        (AuthConfig(secret=GOOD_SECRET), (GOOD_SECRET,)),
        (AuthConfig(secret=GOOD_SECRET, algorithms=("HS512",)), ()),  # HS512 wants 64 bytes
        (AuthConfig(algorithms=("RS256",)), ()),  # invalid: no key for RS256
        (AuthConfig(algorithms=("RS256",), jwks_url="http://idp.internal/jwks"), ()),
    ],
    ids=[
        "no-key-source", "short", "31-bytes", "secret", "changeme", "padded-changeme",
        "padded-dev-secret", "repeated-char", "low-variety", "known-dev-secret",
        "too-short-for-hs512", "invalid-config", "jwks-over-plain-http",
    ],
)  # fmt: skip
def test_production_ready_refuses(config: AuthConfig, known: tuple[str, ...]) -> None:
    with pytest.raises(AuthConfigError) as caught:
        check_production_ready(config, known_dev_secrets=known)

    assert caught.value.reason in {"insecure_config", "invalid_config"}
    # Error messages must never echo the secret itself.
    secret = config.secret or ""
    assert len(secret) < 10 or secret not in str(caught.value)


def test_production_ready_accepts_generated_secret() -> None:
    secret = generate_secret()

    assert len(secret.encode()) >= 48 > MIN_SECRET_BYTES
    check_production_ready(AuthConfig(secret=secret), known_dev_secrets=["dev-only"])


def test_production_ready_accepts_public_key_only(keys: Any) -> None:
    check_production_ready(AuthConfig(algorithms=("RS256",), public_key_pem=keys.rsa.public_pem))


@pytest.mark.parametrize("url", ["https://idp.example/jwks", "http://127.0.0.1:8080/jwks"])
def test_production_ready_accepts_jwks(url: str) -> None:
    check_production_ready(AuthConfig(algorithms=("RS256",), jwks_url=url))


def test_generated_secrets_differ() -> None:
    assert generate_secret() != generate_secret()
