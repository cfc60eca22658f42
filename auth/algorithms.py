"""JWS algorithm families and public-key loading."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from auth.errors import AuthConfigError, Reason

VerifyKey = RSAPublicKey | ec.EllipticCurvePublicKey

# Digest size in bytes: RFC 7518 3.2 wants an HMAC key at least this long.
HMAC_ALGORITHMS: Mapping[str, int] = MappingProxyType({"HS256": 32, "HS384": 48, "HS512": 64})
RSA_ALGORITHMS: frozenset[str] = frozenset({"RS256", "RS384", "RS512", "PS256"})
EC_CURVES: Mapping[str, type[ec.EllipticCurve]] = MappingProxyType(
    {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1}
)
SUPPORTED_ALGORITHMS: frozenset[str] = (
    frozenset(HMAC_ALGORITHMS) | RSA_ALGORITHMS | frozenset(EC_CURVES)
)


def is_hmac(algorithm: str) -> bool:
    """Return True for a shared-secret (HS*) algorithm."""
    return algorithm in HMAC_ALGORITHMS


def load_public_key(pem: str) -> VerifyKey:
    """Parse a PEM public key (RSA or EC), raising AuthConfigError otherwise."""
    try:
        key = load_pem_public_key(pem.encode("utf-8"))
    except (ValueError, TypeError) as exc:
        raise AuthConfigError(
            Reason.INVALID_CONFIG, "public_key_pem is not a valid PEM public key"
        ) from exc
    if not isinstance(key, RSAPublicKey | ec.EllipticCurvePublicKey):
        raise AuthConfigError(
            Reason.INVALID_CONFIG, "public_key_pem must be an RSA or EC public key"
        )
    return key


def key_fits(algorithm: str, key: VerifyKey) -> bool:
    """Return True when `key` can verify signatures made with `algorithm`."""
    if algorithm in RSA_ALGORITHMS:
        return isinstance(key, RSAPublicKey)
    curve = EC_CURVES.get(algorithm)
    if curve is None:
        return False
    return isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, curve)
