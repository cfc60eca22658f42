"""Authentication configuration and its validation."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlparse

from auth.algorithms import (
    HMAC_ALGORITHMS,
    SUPPORTED_ALGORITHMS,
    is_hmac,
    key_fits,
    load_public_key,
)
from auth.errors import AuthConfigError, Reason
from auth.scopes import Scope

MIN_SECRET_BYTES = 32
MAX_LEEWAY_SECONDS = 300

# Compared case-insensitively; secrets that ship in docs, examples and compose files.
_DEFAULT_SECRETS = frozenset(
    {
        "secret", "changeme", "change-me", "change_me", "dev", "development", "test",
        "testing", "password", "default", "jwt", "jwt-secret", "jwt_secret", "jwtsecret",
        "failcast", "failcast-dev", "failcast-secret", "insecure", "example", "local",
    }
)  # fmt: skip
# Substrings that mark a placeholder even when padded past the length check.
_PLACEHOLDER_MARKERS = ("changeme", "change-me", "change_me", "insecure", "do-not-use",
                        "do_not_use", "donotuse", "not-for-prod", "placeholder", "dev-secret",
                        "dev_secret", "test-secret", "test_secret")  # fmt: skip
# Fewer distinct characters than this means "aaaa..." or "abab..." rather than random.
_MIN_DISTINCT_CHARS = 8


def _invalid(message: str) -> AuthConfigError:
    return AuthConfigError(Reason.INVALID_CONFIG, message)


def _insecure(message: str) -> AuthConfigError:
    return AuthConfigError(Reason.INSECURE_CONFIG, message)


@dataclass(frozen=True)
class AuthConfig:
    """How tokens are verified (and minted); call validate() before use."""

    issuer: str = "failcast"
    audience: str = "failcast-api"
    algorithms: tuple[str, ...] = ("HS256",)  # the allow-list
    secret: str | None = field(default=None, repr=False)  # never show in logs
    public_key_pem: str | None = field(default=None, repr=False)
    jwks_url: str | None = None
    leeway_seconds: int = 30
    roles: Mapping[str, frozenset[Scope]] = field(default_factory=dict, hash=False)
    jwks_cache_seconds: float = 300  # older sets keep serving while one refresh runs
    jwks_timeout_seconds: float = 5.0  # per fetch, connecting and reading together
    # An unknown kid may trigger a fetch only this long after the previous fetch began.
    jwks_min_refresh_seconds: float = 30
    # After a failed fetch, tokens needing one are refused this long without a request.
    jwks_failure_cache_seconds: float = 10

    def has_key_source(self) -> bool:
        """Return True when at least one of secret, PEM or JWKS is configured."""
        return bool(self.secret or self.public_key_pem or self.jwks_url)

    def validate(self) -> None:
        """Raise AuthConfigError when this configuration cannot verify tokens safely."""
        _check_claims_and_timing(self)
        _check_algorithms(self.algorithms)
        _check_key_sources(self)
        _check_roles(self.roles)


def _check_claims_and_timing(config: AuthConfig) -> None:
    if not config.issuer or not config.audience:
        raise _invalid("issuer and audience must be non-empty")
    if not 0 <= config.leeway_seconds <= MAX_LEEWAY_SECONDS:
        raise _invalid(f"leeway_seconds must be between 0 and {MAX_LEEWAY_SECONDS}")
    for name in _JWKS_DURATIONS:
        if not _is_positive_duration(getattr(config, name)):
            raise _invalid(f"{name} must be a positive number of seconds")


_JWKS_DURATIONS = (
    "jwks_cache_seconds",
    "jwks_timeout_seconds",
    "jwks_min_refresh_seconds",
    "jwks_failure_cache_seconds",
)


def _is_positive_duration(value: object) -> bool:
    # bool is an int subclass; NaN and inf would disable the timers they configure.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return value > 0


def _check_algorithms(algorithms: tuple[str, ...]) -> None:
    # A bare string would be iterated character by character.
    if isinstance(algorithms, str) or not algorithms:
        raise _invalid("algorithms must be a non-empty tuple of algorithm names")
    for algorithm in algorithms:
        if algorithm.lower() == "none":
            raise _invalid("the 'none' algorithm is never allowed")
        if algorithm not in SUPPORTED_ALGORITHMS:
            supported = ", ".join(sorted(SUPPORTED_ALGORITHMS))
            raise _invalid(f"unsupported algorithm {algorithm!r} (supported: {supported})")


def _check_key_sources(config: AuthConfig) -> None:
    if any(is_hmac(alg) for alg in config.algorithms) and not config.secret:
        raise _invalid("an HS algorithm is allowed but no secret is configured")
    if config.jwks_url is not None and urlparse(config.jwks_url).scheme not in ("http", "https"):
        raise _invalid("jwks_url must be an http(s) URL")
    pem_key = load_public_key(config.public_key_pem) if config.public_key_pem else None
    for algorithm in config.algorithms:
        if is_hmac(algorithm) or config.jwks_url:
            continue
        if pem_key is None:
            raise _invalid(f"{algorithm} is allowed but neither public_key_pem nor jwks_url is set")
        if not key_fits(algorithm, pem_key):
            raise _invalid(f"public_key_pem cannot verify {algorithm} and no jwks_url is set")


def _check_roles(roles: Mapping[str, frozenset[Scope]]) -> None:
    for role, scopes in roles.items():
        if not isinstance(role, str) or not all(isinstance(s, Scope) for s in scopes):
            raise _invalid("roles must map role names to sets of Scope members")


def check_production_ready(config: AuthConfig, known_dev_secrets: Iterable[str] = ()) -> None:
    """Raise AuthConfigError unless `config` is fit for production (valid, strong secret)."""
    if not config.has_key_source():
        raise _insecure("no key source: set FAILCAST_JWT_SECRET, a public key or a JWKS URL")
    config.validate()
    if config.jwks_url is not None and not _is_safe_jwks_url(config.jwks_url):
        raise _insecure("jwks_url must use https (plain http only on loopback)")
    if config.secret is not None:
        _check_secret_strength(config.secret, config.algorithms, known_dev_secrets)


def _is_safe_jwks_url(url: str) -> bool:
    # Over plain http anyone on the path could swap in their own signing keys.
    parsed = urlparse(url)
    return parsed.scheme == "https" or parsed.hostname in ("localhost", "127.0.0.1", "::1")


def _check_secret_strength(
    secret: str, algorithms: tuple[str, ...], known_dev_secrets: Iterable[str]
) -> None:
    # HS384/HS512 need longer keys than HS256 for their full strength (RFC 7518 3.2).
    needed = max([MIN_SECRET_BYTES, *(HMAC_ALGORITHMS.get(alg, 0) for alg in algorithms)])
    if len(secret.encode("utf-8")) < needed:
        raise _insecure(f"the JWT secret must be at least {needed} bytes")
    lowered = secret.strip().lower()
    known = {s.strip().lower() for s in known_dev_secrets}
    if lowered in known or lowered in _DEFAULT_SECRETS:
        raise _insecure("the JWT secret is a known development/default value")
    if any(marker in lowered for marker in _PLACEHOLDER_MARKERS):
        raise _insecure("the JWT secret looks like a placeholder")
    if len(set(secret)) < _MIN_DISTINCT_CHARS:
        raise _insecure("the JWT secret is not random enough")
