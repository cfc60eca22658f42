"""Key selection for verification, built once per verifier."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jwt

from auth.algorithms import VerifyKey, is_hmac, key_fits, load_public_key
from auth.config import AuthConfig
from auth.errors import AuthError, Reason
from auth.keyset import JwksCache, Pending, Refresh, key_unavailable, unknown_kid

# What PyJWT accepts as a verification key in our setup.
Key = bytes | VerifyKey | jwt.PyJWK


class KeyRing:
    """Picks the verification key for a token from its header, never mixing key families."""

    def __init__(self, config: AuthConfig) -> None:
        self._allowed = frozenset(config.algorithms)
        hmac_needed = any(is_hmac(alg) for alg in self._allowed)
        self._secret = config.secret.encode("utf-8") if hmac_needed and config.secret else None
        self._pem_keys = _pem_keys_by_algorithm(config)
        self._jwks = JwksCache(config.jwks_url, config) if config.jwks_url else None

    @property
    def generation(self) -> int:
        """Changes whenever a JWKS refresh drops or replaces a key."""
        return self._jwks.generation if self._jwks is not None else 0

    def select(self, header: Mapping[str, Any], *, fetch: bool) -> tuple[str, Key] | Pending:
        """Return (algorithm, key) for a token header, or the JWKS refresh it needs; never waits.

        With `fetch` False a key missing from the loaded JWK set raises at once instead.
        """
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self._allowed:
            # Covers "none", algorithms outside the allow-list and missing/odd values.
            raise AuthError(Reason.ALGORITHM_NOT_ALLOWED, "token algorithm is not accepted")
        # Family is decided by the (allow-listed) header alg, so an HS token can only ever
        # be checked against the shared secret and never against public-key bytes.
        if is_hmac(algorithm):
            if self._secret is None:  # unreachable after AuthConfig.validate(); fail closed
                raise key_unavailable()
            return algorithm, self._secret
        return self._asymmetric_key(algorithm, header.get("kid"), fetch)

    def refresh_if_stale(self) -> None:
        """Start a background JWKS refresh when the loaded set has outlived its cache period."""
        if self._jwks is not None:
            self._jwks.refresh_if_stale()

    def refresh_now(self) -> Refresh | None:
        """Start (or join) a JWKS refresh now; None when no JWKS is configured."""
        return self._jwks.refresh_now() if self._jwks is not None else None

    def close(self) -> None:
        """Stop the JWKS refresh thread (keys already loaded keep working)."""
        if self._jwks is not None:
            self._jwks.close()

    def _asymmetric_key(self, algorithm: str, kid: Any, fetch: bool) -> tuple[str, Key] | Pending:
        if self._jwks is not None and isinstance(kid, str):
            found = self._jwks.find(kid, fetch=fetch)
            return found if isinstance(found, Pending) else (algorithm, found)
        pem_key = self._pem_keys.get(algorithm)
        if pem_key is not None:
            return algorithm, pem_key
        # JWKS-only set-ups need the kid to find a key.
        raise unknown_kid()


def _pem_keys_by_algorithm(config: AuthConfig) -> dict[str, VerifyKey]:
    if not config.public_key_pem:
        return {}
    # Parse once here so PyJWT gets a ready key object instead of re-parsing PEM per call.
    key = load_public_key(config.public_key_pem)
    return {alg: key for alg in config.algorithms if not is_hmac(alg) and key_fits(alg, key)}
