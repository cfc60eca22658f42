"""Key selection for verification, built once per verifier."""

from __future__ import annotations

import http.client
from collections.abc import Mapping
from typing import Any

import jwt

from auth.algorithms import VerifyKey, is_hmac, key_fits, load_public_key
from auth.config import AuthConfig
from auth.errors import AuthError, Reason

# PyJWKClient lets a non-JSON body (ValueError) and mid-read socket errors (OSError) escape.
_FETCH_ERRORS = (jwt.PyJWTError, ValueError, OSError, http.client.HTTPException)

# What PyJWT accepts as a verification key in our setup.
Key = bytes | VerifyKey | jwt.PyJWK


class KeyRing:
    """Picks the verification key for a token from its header, never mixing key families."""

    def __init__(self, config: AuthConfig) -> None:
        self._allowed = frozenset(config.algorithms)
        hmac_needed = any(is_hmac(alg) for alg in self._allowed)
        self._secret = config.secret.encode("utf-8") if hmac_needed and config.secret else None
        self._pem_keys = _pem_keys_by_algorithm(config)
        self._jwks = _jwks_client(config.jwks_url, config) if config.jwks_url else None

    def select(self, header: Mapping[str, Any]) -> tuple[str, Key]:
        """Return (algorithm, key) for a token header, or raise AuthError."""
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self._allowed:
            # Covers "none", algorithms outside the allow-list and missing/odd values.
            raise AuthError(Reason.ALGORITHM_NOT_ALLOWED, "token algorithm is not accepted")
        # Family is decided by the (allow-listed) header alg, so an HS token can only ever
        # be checked against the shared secret and never against public-key bytes.
        if is_hmac(algorithm):
            if self._secret is None:  # unreachable after AuthConfig.validate(); fail closed
                raise AuthError(Reason.KEY_UNAVAILABLE, "token signing keys are unavailable")
            return algorithm, self._secret
        return algorithm, self._asymmetric_key(algorithm, header.get("kid"))

    def _asymmetric_key(self, algorithm: str, kid: Any) -> Key:
        if self._jwks is not None and isinstance(kid, str):
            return _jwks_key(self._jwks, kid)
        pem_key = self._pem_keys.get(algorithm)
        if pem_key is not None:
            return pem_key
        # JWKS-only set-ups need the kid to find a key.
        raise AuthError(Reason.UNKNOWN_KID, "token key id is not recognised")


def _pem_keys_by_algorithm(config: AuthConfig) -> dict[str, VerifyKey]:
    if not config.public_key_pem:
        return {}
    # Parse once here so PyJWT gets a ready key object instead of re-parsing PEM per call.
    key = load_public_key(config.public_key_pem)
    return {alg: key for alg in config.algorithms if not is_hmac(alg) and key_fits(alg, key)}


def _jwks_client(url: str, config: AuthConfig) -> jwt.PyJWKClient:
    # cache_keys stays False on purpose: PyJWT's per-kid LRU never expires, so a key
    # removed from the JWKS would stay trusted; the JWK-set cache (lifespan) is enough.
    return jwt.PyJWKClient(
        url,
        cache_keys=False,
        lifespan=config.jwks_cache_seconds,
        timeout=config.jwks_timeout_seconds,
    )


def _jwks_key(client: jwt.PyJWKClient, kid: str) -> jwt.PyJWK:
    unavailable = AuthError(Reason.KEY_UNAVAILABLE, "token signing keys are unavailable")
    try:
        # Served from the JWK-set cache; fails only when the endpoint is down or broken.
        client.get_signing_keys()
    except _FETCH_ERRORS as exc:
        raise unavailable from exc
    try:
        # Refreshes the set once for an unknown kid (rate-limited by PyJWT's cooldown).
        return client.get_signing_key(kid)
    except jwt.PyJWKClientConnectionError as exc:
        raise unavailable from exc
    except jwt.PyJWKClientError as exc:
        raise AuthError(Reason.UNKNOWN_KID, "token key id is not recognised") from exc
    except _FETCH_ERRORS as exc:
        raise unavailable from exc
