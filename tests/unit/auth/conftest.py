"""Shared fixtures for auth tests: keys, a loopback JWKS server, a token factory."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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


def _jwks_body(*pairs: KeyPair) -> bytes:
    return json.dumps({"keys": [pair.jwk for pair in pairs]}).encode()


@pytest.fixture(scope="session")
def jwks_body() -> Callable[..., bytes]:
    """Build a JWK set document holding the public halves of the given KeyPairs."""
    return _jwks_body


# Paths on the JWKS server that answer with something unusable.
BROKEN_BODIES = {"not-json": b"<html>oops</html>", "no-keys": b'{"keys": []}', "list": b"[]"}


class JwksServer:
    """A real loopback JWKS endpoint; tests change its body, status and delay, and count hits."""

    def __init__(self, body: bytes, port: int = 0) -> None:
        self.body = body
        self.status = 200
        self.delay = 0.0  # seconds before answering; release() ends a pending wait early
        self.headers: dict[str, str] = {}
        self.send_length = True  # False: no Content-Length, the body ends when the socket closes
        self.hits = 0
        self.lock = threading.Lock()
        self._released = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.port = self._server.server_address[1]
        self.url = self.url_for(".well-known/jwks.json")
        threading.Thread(target=self._server.serve_forever, args=(0.01,), daemon=True).start()

    def url_for(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def set(
        self,
        *,
        body: bytes | None = None,
        status: int | None = None,
        delay: float | None = None,
        headers: dict[str, str] | None = None,
        send_length: bool | None = None,
    ) -> None:
        with self.lock:
            self.send_length = self.send_length if send_length is None else send_length
            self.body = self.body if body is None else body
            self.status = self.status if status is None else status
            self.delay = self.delay if delay is None else delay
            self.headers = self.headers if headers is None else headers
            self._released.clear()

    def wait_for_hits(self, count: int, timeout: float = 5.0) -> None:
        """Block until at least `count` requests have arrived (they may still be answering)."""
        deadline = time.monotonic() + timeout
        while self.hits < count:
            assert time.monotonic() < deadline, f"only {self.hits} of {count} JWKS requests arrived"
            time.sleep(0.005)

    def release(self) -> None:
        self._released.set()

    def close(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, path: str) -> tuple[int, float, dict[str, str], bytes]:
        with self.lock:
            self.hits += 1
            body = BROKEN_BODIES.get(path.rsplit("/", 1)[-1], self.body)
            headers = {"Content-Type": "application/json", **self.headers}
            if self.send_length:
                headers["Content-Length"] = str(len(body))
            return self.status, self.delay, headers, body

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        state = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, delay, headers, body = state._answer(self.path)
                state._released.wait(delay)
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(body)
                except ConnectionError:  # the client gave up (its timeout); nothing to do
                    pass

            def log_message(self, format: str, *args: Any) -> None:  # keep pytest output quiet
                pass

        return Handler


@pytest.fixture
def start_jwks_server() -> Iterator[Callable[..., JwksServer]]:
    """Start loopback JWKS servers (closed after the test): start(body, port=0)."""
    servers: list[JwksServer] = []

    def start(body: bytes, port: int = 0) -> JwksServer:
        servers.append(JwksServer(body, port))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def jwks_server(keys: Keys, start_jwks_server: Callable[..., JwksServer]) -> JwksServer:
    """A fresh loopback JWKS endpoint serving rsa-1, rsa-2 (rotation) and ec-1 (and broken paths)."""
    return start_jwks_server(_jwks_body(keys.rsa, keys.rsa2, keys.ec))


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (connections to it are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
