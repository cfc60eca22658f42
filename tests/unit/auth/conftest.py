"""Shared fixtures for auth tests: keys, a loopback JWKS server, a token factory."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

# The project is not installed into the venv and pytest's config has no `pythonpath`,
# so make the repository root importable when running plain `pytest tests/unit/auth`.
_REPO_ROOT = str(Path(__file__).resolve().parents[3])
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

NOW = 1_700_000_000.0
# 64 bytes so even HS512 test tokens do not trigger PyJWT's short-key warning.
SECRET = "k3Y-Qm9vZ1xR7tW2pL8sN4vB6cH0jF5dA1eG3iK7mO9qS2uX4yZ6wT8rP0nM2bV4"
OTHER_SECRET = "Zx9-Wv8Ut7Sr6Qp5On4Ml3Kj2Ih1Gf0Ed9Cb8Ay7Bz6Cx5Dw4Ev3Fu2Gt1Hs0Ir"


def _private_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@dataclass(frozen=True)
class KeyPair:
    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey  # signing with the object
    private_pem: str  # avoids re-loading the PEM (RSA key checks are slow)
    public_pem: str
    jwk: dict[str, Any]


def _rsa_pair(kid: str) -> KeyPair:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    assert isinstance(jwk, dict)
    jwk.update(kid=kid, alg="RS256", use="sig")
    return KeyPair(key, _private_pem(key), _public_pem(key), jwk)


def _ec_pair(kid: str) -> KeyPair:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    assert isinstance(jwk, dict)
    jwk.update(kid=kid, alg="ES256", use="sig")
    return KeyPair(key, _private_pem(key), _public_pem(key), jwk)


@dataclass(frozen=True)
class Keys:
    rsa: KeyPair
    rsa2: KeyPair
    ec: KeyPair


@pytest.fixture(scope="session")
def keys() -> Keys:
    return Keys(rsa=_rsa_pair("rsa-1"), rsa2=_rsa_pair("rsa-2"), ec=_ec_pair("ec-1"))


@dataclass
class JwksServer:
    url: str
    body: bytes = b""
    hits: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


# Paths on the JWKS server that answer with something unusable.
BROKEN_BODIES = {"not-json": b"<html>oops</html>", "no-keys": b'{"keys": []}', "list": b"[]"}


@pytest.fixture(scope="session")
def jwks_server(keys: Keys) -> Iterator[JwksServer]:
    """A loopback JWKS endpoint serving rsa-1, rsa-2 (rotation) and ec-1 (and broken paths)."""
    state = JwksServer(url="")
    state.body = json.dumps({"keys": [keys.rsa.jwk, keys.rsa2.jwk, keys.ec.jwk]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with state.lock:
                state.hits += 1
            body = BROKEN_BODIES.get(self.path.rsplit("/", 1)[-1], state.body)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # keep pytest output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


class Tokens:
    """Crafts tokens around the fixed test clock NOW."""

    now = NOW
    secret = SECRET
    other_secret = OTHER_SECRET

    def __init__(self, keys: Keys) -> None:
        self.keys = keys

    @staticmethod
    def now_fn() -> float:
        return NOW

    @staticmethod
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    def claims(self, **overrides: Any) -> dict[str, Any]:
        """Valid claims; pass claim=None to drop a claim."""
        claims: dict[str, Any] = {
            "iss": "failcast",
            "aud": "failcast-api",
            "sub": "device-fleet-1",
            "iat": int(NOW),
            "exp": int(NOW) + 600,
            "scope": "predict",
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def hs(self, claims: dict[str, Any], alg: str = "HS256", secret: str = SECRET) -> str:
        return jwt.encode(claims, secret, algorithm=alg)

    def rs(self, claims: dict[str, Any], pair: KeyPair | None = None, **headers: Any) -> str:
        pair = pair or self.keys.rsa
        return jwt.encode(claims, pair.private_key, algorithm="RS256", headers=headers or None)

    def es(self, claims: dict[str, Any], **headers: Any) -> str:
        key = self.keys.ec.private_key
        return jwt.encode(claims, key, algorithm="ES256", headers=headers or None)

    def raw(
        self,
        header: dict[str, Any],
        claims: dict[str, Any],
        sign: Callable[[bytes], bytes] = lambda _: b"",
    ) -> str:
        """Hand-made token: PyJWT refuses to produce the malicious ones."""
        encoded = [self.b64(json.dumps(part).encode()) for part in (header, claims)]
        signing_input = ".".join(encoded)
        return f"{signing_input}.{self.b64(sign(signing_input.encode()))}"

    def hmac_signer(self, key: bytes) -> Callable[[bytes], bytes]:
        return lambda data: hmac.new(key, data, hashlib.sha256).digest()


@pytest.fixture(scope="session")
def tokens(keys: Keys) -> Tokens:
    return Tokens(keys)


@pytest.fixture
def make_verifier() -> Callable[..., Any]:
    """Build a TokenVerifier on the fixed clock NOW (or a supplied clock)."""
    from auth import AuthConfig, TokenVerifier  # after the sys.path fix above

    def build(clock: Callable[[], float] = lambda: NOW, **config: Any) -> TokenVerifier:
        return TokenVerifier(AuthConfig(**config), clock=clock)

    return build
