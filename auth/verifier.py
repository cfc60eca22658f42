"""Bearer-token verification producing a Principal."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import jwt
from jwt.types import Options

from auth.cache import TokenCache
from auth.claims import REQUIRED_CLAIMS, check_times, scopes_of, subject_of
from auth.config import AuthConfig
from auth.errors import AuthError, Reason
from auth.keys import Key, KeyRing
from auth.keyset import Pending
from auth.principal import Principal

# Far above any real token; bounds the work an attacker can make us do before rejecting.
MAX_TOKEN_CHARS = 8192

_BASE64URL = re.compile(r"[A-Za-z0-9_-]+={0,2}", re.ASCII)

# Time claims are checked in auth.claims with the injectable clock, so PyJWT's
# wall-clock checks are switched off; it still enforces presence, iss, aud, sub, jti.
_DECODE_OPTIONS: Options = {
    "require": list(REQUIRED_CLAIMS),
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
}

# Most specific first: several of these subclass DecodeError / InvalidTokenError.
_TRANSLATIONS: tuple[tuple[type[jwt.PyJWTError], Reason, str], ...] = (
    (jwt.InvalidSignatureError, Reason.BAD_SIGNATURE, "token signature is invalid"),
    (jwt.InvalidAlgorithmError, Reason.ALGORITHM_NOT_ALLOWED, "token algorithm is not accepted"),
    (jwt.InvalidAudienceError, Reason.WRONG_AUDIENCE, "token audience is not accepted"),
    (jwt.InvalidIssuerError, Reason.WRONG_ISSUER, "token issuer is not accepted"),
    (jwt.ExpiredSignatureError, Reason.EXPIRED, "token has expired"),
    (jwt.ImmatureSignatureError, Reason.NOT_YET_VALID, "token is not yet valid"),
    (jwt.InvalidKeyError, Reason.BAD_SIGNATURE, "token signature is invalid"),
)


def _translate(exc: jwt.PyJWTError) -> AuthError:
    if isinstance(exc, jwt.MissingRequiredClaimError):
        # The claim name comes from our own fixed list, so it is safe to echo.
        return AuthError(Reason.MISSING_CLAIM, f"token is missing the '{exc.claim}' claim")
    for exc_type, reason, message in _TRANSLATIONS:
        if isinstance(exc, exc_type):
            return AuthError(reason, message)
    return AuthError(Reason.MALFORMED, "token is malformed")


def _check_shape(token: str) -> None:
    if not token:
        raise AuthError(Reason.MISSING, "token is missing")
    if len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
        raise AuthError(Reason.MALFORMED, "token is malformed")


def _unverified_header(token: str) -> dict[str, Any]:
    # Parsed here (header segment only) rather than via jwt.get_unverified_header, which
    # decodes all three segments and would double PyJWT's cost on every cache miss.
    # Only used to pick the key: PyJWT re-parses and re-validates it in decode().
    segment = token.partition(".")[0]
    if _BASE64URL.fullmatch(segment) is None:
        raise AuthError(Reason.MALFORMED, "token is malformed")
    segment = segment.rstrip("=")
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, binascii.Error, RecursionError) as exc:
        raise AuthError(Reason.MALFORMED, "token is malformed") from exc
    if not isinstance(header, dict) or not isinstance(header.get("kid", ""), str):
        raise AuthError(Reason.MALFORMED, "token is malformed")
    return header


def _bearer_token(authorization_header: str | None) -> str | None:
    if authorization_header is None:
        return None
    parts = authorization_header.split()
    if len(parts) != 2 or parts[0].lower() != "bearer":
        raise AuthError(Reason.MALFORMED, "authorization header must be 'Bearer <token>'")
    return parts[1]


class TokenVerifier:
    """Verifies bearer tokens against an AuthConfig; safe to share between threads and loops.

    JWKS keys are fetched on a thread owned by the verifier, never on the caller's: the
    sync methods use the keys in memory, the async ones may await one shared refresh.
    """

    def __init__(
        self,
        config: AuthConfig,
        *,
        clock: Callable[[], float] = time.time,
        cache_size: int = 1024,
    ) -> None:
        config.validate()
        self._config = config
        self._clock = clock
        self._leeway = float(config.leeway_seconds)
        self._keys = KeyRing(config)
        self._cache = TokenCache(cache_size)
        self._jwt = jwt.PyJWT()

    def verify(self, token: str) -> Principal:
        """Verify a raw JWT with the keys in memory and return its Principal, or raise AuthError.

        Never waits on the network: a JWKS key it lacks is refused now (key_unavailable or
        unknown_kid) and, where the rate limits allow, fetched in the background.
        """
        outcome = self._attempt(token, fetch=True)
        if isinstance(outcome, Pending):
            # The refresh it started (if any) goes on in the background for later calls.
            raise outcome.error
        return outcome

    async def verify_async(self, token: str) -> Principal:
        """Like verify(), but first awaits the JWKS refresh a token's key may need."""
        outcome = self._attempt(token, fetch=True)
        if isinstance(outcome, Pending):
            # Shielded: one caller's cancellation must not cancel a fetch others share.
            await asyncio.shield(asyncio.wrap_future(outcome.refresh))
            outcome = self._attempt(token, fetch=False)
            if isinstance(outcome, Pending):  # fetch=False never pends; fail closed anyway
                raise outcome.error
        return outcome

    def authenticate(self, authorization_header: str | None) -> Principal | None:
        """Return None without a header, else verify a `Bearer <token>` header (never fetches)."""
        token = _bearer_token(authorization_header)
        return None if token is None else self.verify(token)

    async def authenticate_async(self, authorization_header: str | None) -> Principal | None:
        """Like authenticate(), awaiting a JWKS refresh when the token's key needs one."""
        token = _bearer_token(authorization_header)
        return None if token is None else await self.verify_async(token)

    def refresh_keys(self) -> None:
        """Fetch the JWK set now (or join the fetch under way) and wait; blocking, not for loops."""
        refresh = self._keys.refresh_now()
        if refresh is not None and not refresh.result():
            raise AuthError(Reason.KEY_UNAVAILABLE, "token signing keys are unavailable")

    def clear_cache(self) -> None:
        """Drop every cached verification (e.g. after rotating keys)."""
        self._cache.clear()

    def close(self) -> None:
        """Stop the JWKS refresh thread (e.g. at shutdown); keys already loaded keep working."""
        self._keys.close()

    def _attempt(self, token: str, *, fetch: bool) -> Principal | Pending:
        _check_shape(token)  # before the cache, so junk is never even hashed into a lookup
        now = self._clock()
        generation = self._keys.generation  # read before the key is chosen
        cached = self._cache.get(token)
        if cached is not None and cached[2] == generation:
            return self._from_cache(token, cached[0], cached[1], now)
        selected = self._keys.select(_unverified_header(token), fetch=fetch)
        if isinstance(selected, Pending):
            return selected
        principal, exp = self._decode(token, *selected, now)
        self._cache.put(token, (principal, exp, generation))  # only successes are ever cached
        return principal

    def _from_cache(self, token: str, principal: Principal, exp: float, now: float) -> Principal:
        if exp <= now - self._leeway:
            self._cache.discard(token)
            raise AuthError(Reason.EXPIRED, "token has expired")
        # Cache hits skip key selection, so they are what keeps an old JWK set refreshing.
        self._keys.refresh_if_stale()
        return principal

    def _decode(self, token: str, algorithm: str, key: Key, now: float) -> tuple[Principal, float]:
        try:
            payload = self._jwt.decode(
                token,
                key=key,
                algorithms=[algorithm],  # exactly the allow-listed header alg
                options=_DECODE_OPTIONS,
                audience=self._config.audience,
                issuer=self._config.issuer,
            )
        except jwt.PyJWTError as exc:
            raise _translate(exc) from exc
        exp = check_times(payload, now, self._leeway)
        principal = Principal(
            subject=subject_of(payload),
            scopes=scopes_of(payload, self._config.roles),
            expires_at=datetime.fromtimestamp(exp, tz=UTC),
        )
        return principal, exp
