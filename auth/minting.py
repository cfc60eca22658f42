"""Token minting for operators, tests and the CLI."""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from auth.algorithms import SUPPORTED_ALGORITHMS, is_hmac
from auth.config import AuthConfig
from auth.errors import AuthConfigError, Reason
from auth.scopes import Scope, parse_scopes_strict

MAX_TTL = timedelta(days=365)
_RESERVED_CLAIMS = frozenset({"iss", "aud", "sub", "iat", "nbf", "exp", "scope", "jti"})
_TTL_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
# ASCII digits only (\d would accept other scripts); 12 digits bounds int() work.
_TTL_PATTERN = re.compile(r"([0-9]{1,12})\s*([smhd]?)", re.ASCII | re.IGNORECASE)


def parse_ttl(text: str) -> timedelta:
    """Parse "90s", "15m", "1h", "7d" or plain seconds into a positive timedelta (<= 365d)."""
    match = _TTL_PATTERN.fullmatch(text.strip())
    if match is None:
        raise AuthConfigError(
            Reason.INVALID_TTL, f"invalid TTL {text!r}: use e.g. 90s, 15m, 1h, 7d"
        )
    seconds = int(match.group(1)) * _TTL_UNITS[match.group(2).lower()]
    if seconds <= 0:
        raise AuthConfigError(Reason.INVALID_TTL, "TTL must be positive")
    if seconds > MAX_TTL.total_seconds():
        raise AuthConfigError(Reason.INVALID_TTL, "TTL must not exceed 365 days")
    return timedelta(seconds=seconds)


def generate_secret() -> str:
    """Return a fresh random secret suitable for FAILCAST_JWT_SECRET."""
    return secrets.token_urlsafe(48)


def _now_utc(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise AuthConfigError(Reason.INVALID_ARGUMENT, "now must be timezone-aware")
    return now.astimezone(UTC)


def _claims(
    config: AuthConfig,
    subject: str,
    scopes: Iterable[Scope],
    ttl: timedelta,
    now: datetime | None,
) -> dict[str, Any]:
    if not subject or not subject.strip():
        raise AuthConfigError(Reason.INVALID_ARGUMENT, "subject must be a non-empty string")
    if not timedelta(0) < ttl <= MAX_TTL:
        raise AuthConfigError(Reason.INVALID_TTL, "TTL must be positive and at most 365 days")
    issued = int(_now_utc(now).timestamp())
    return {
        "iss": config.issuer,
        "aud": config.audience,
        "sub": subject,
        "iat": issued,
        "nbf": issued,
        "exp": issued + int(ttl.total_seconds()),
        # Strict parse: a typo'd scope from the CLI must fail loudly, not mint a weaker token.
        "scope": " ".join(sorted(scope.value for scope in parse_scopes_strict(list(scopes)))),
        "jti": uuid.uuid4().hex,
    }


def mint_token(
    config: AuthConfig,
    subject: str,
    scopes: Iterable[Scope],
    ttl: timedelta,
    now: datetime | None = None,
    extra_claims: Mapping[str, Any] | None = None,
) -> str:
    """Mint an HS256 token with the configured shared secret."""
    if not config.secret:
        raise AuthConfigError(Reason.INVALID_CONFIG, "minting needs FAILCAST_JWT_SECRET")
    claims = _claims(config, subject, scopes, ttl, now)
    if extra_claims:
        # Letting extras override iss/exp/scope... would silently defeat the arguments.
        clashes = sorted(_RESERVED_CLAIMS.intersection(extra_claims))
        if clashes:
            raise AuthConfigError(
                Reason.INVALID_ARGUMENT, f"extra_claims may not set {', '.join(clashes)}"
            )
        claims.update(extra_claims)
    return jwt.encode(claims, config.secret, algorithm="HS256")


def mint_with_private_key(
    private_key_pem: str,
    algorithm: str,
    config: AuthConfig,
    subject: str,
    scopes: Iterable[Scope],
    ttl: timedelta,
    kid: str | None = None,
    now: datetime | None = None,
) -> str:
    """Mint a token signed with an RSA/EC private key (RS*, PS256, ES*)."""
    if algorithm not in SUPPORTED_ALGORITHMS or is_hmac(algorithm):
        raise AuthConfigError(
            Reason.INVALID_ARGUMENT, f"{algorithm!r} is not a supported asymmetric algorithm"
        )
    claims = _claims(config, subject, scopes, ttl, now)
    headers = {"kid": kid} if kid is not None else None
    try:
        return jwt.encode(claims, private_key_pem, algorithm=algorithm, headers=headers)
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise AuthConfigError(
            Reason.INVALID_CONFIG, f"the private key cannot sign {algorithm} tokens"
        ) from exc
