"""Fetching and parsing a JWK set: bounded in size and time, never following redirects."""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

# Real sets are a few KiB; the bound caps what a broken or hostile endpoint costs us.
MAX_JWKS_BYTES = 1 << 20
_CHUNK_BYTES = 64 * 1024


class JwksFetchError(Exception):
    """The JWK set could not be fetched, or it holds no usable signing key."""


@dataclass(frozen=True)
class SigningKey:
    """A usable public JWK and its canonical JSON (to notice a kid whose key changed)."""

    jwk: jwt.PyJWK
    fingerprint: str


KeySet = Mapping[str, SigningKey]


class _Readable(Protocol):
    def read1(self, size: int = -1, /) -> bytes: ...


def fetch_jwks(url: str, timeout: float) -> KeySet:
    """Download the JWK set at `url` and return its signing keys by kid, or raise JwksFetchError."""
    return parse_jwks(_download(url, timeout))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirect would let whoever controls its target hand us signing keys.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _download(url: str, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    opener = urllib.request.build_opener(_NoRedirect())
    # AuthConfig.validate() admits only http(s) URLs, so no file:// or ftp:// reaches here.
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310
    try:
        with opener.open(request, timeout=timeout) as response:
            _check_length(response.headers.get("Content-Length"))
            return _read_bounded(response, deadline)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise JwksFetchError(f"JWKS endpoint answered HTTP {exc.code}") from exc
    except (OSError, http.client.HTTPException, ValueError) as exc:
        # OSError covers URLError, refused connections and socket timeouts.
        raise JwksFetchError(f"JWKS endpoint unreachable: {exc}") from exc


def _check_length(declared: str | None) -> None:
    if declared is not None and declared.isdigit() and int(declared) > MAX_JWKS_BYTES:
        raise JwksFetchError("JWKS response is too large")


def _read_bounded(response: _Readable, deadline: float) -> bytes:
    # read1 returns after one socket read, so the deadline also stops a server that
    # drips bytes just fast enough to beat the per-read socket timeout.
    body = bytearray()
    while chunk := response.read1(_CHUNK_BYTES):
        body += chunk
        if len(body) > MAX_JWKS_BYTES:
            raise JwksFetchError("JWKS response is too large")
        if time.monotonic() > deadline:
            raise JwksFetchError("JWKS response took too long")
    return bytes(body)


def parse_jwks(body: bytes) -> KeySet:
    """Return the usable signing keys of a JWK set document by kid, or raise JwksFetchError."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise JwksFetchError("JWKS response is not JSON") from exc
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwksFetchError("JWKS response is not a JWK set")
    keys: dict[str, SigningKey] = {}
    for entry in document["keys"]:
        found = _signing_key(entry)
        if found is not None:
            keys.setdefault(*found)  # the first key for a kid wins, as in PyJWKClient
    if not keys:
        raise JwksFetchError("JWK set has no usable signing key")
    return keys


def _signing_key(entry: Any) -> tuple[str, SigningKey] | None:
    if not isinstance(entry, dict):
        return None
    kid = entry.get("kid")
    if not isinstance(kid, str) or not kid or entry.get("use") not in ("sig", None):
        return None
    try:
        jwk = jwt.PyJWK.from_dict(entry)
    except (jwt.PyJWTError, TypeError, KeyError, ValueError):
        # PyJWK lets TypeError (e.g. a list as "alg") and KeyError escape its own checks.
        return None
    # Only public RSA/EC keys: an "oct" secret or a private key published by mistake
    # must never verify anything (a private key object would even crash PyJWT's verify).
    if not isinstance(jwk.key, RSAPublicKey | EllipticCurvePublicKey):
        return None
    return kid, SigningKey(jwk, json.dumps(entry, sort_keys=True))
