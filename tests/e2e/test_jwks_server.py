"""A real server verifying tokens against a JWKS endpoint that takes 3 s to answer.

The key fetch runs off the event loop: while one request waits for it, health probes and
requests with other tokens are answered at once; tokens with random unknown key ids cannot make
the server fetch again and again.
"""

import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from servers import HealthPoller, make_token, run_server

JWKS_DELAY_S = 3.0


class _Jwks:
    """A loopback JWKS endpoint that answers after JWKS_DELAY_S, counting its fetches."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        self.body = json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]})
        self.fetches = 0
        jwks = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                jwks.fetches += 1
                time.sleep(JWKS_DELAY_S)
                data = jwks.body.encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def token(self, kid: str) -> str:
        now = int(datetime.now(UTC).timestamp())
        claims = {"iss": "failcast", "aud": "failcast-api", "sub": "idp-user", "iat": now,
                  "exp": now + 600, "scope": "predict"}  # fmt: skip
        pem = self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return jwt.encode(claims, pem, algorithm="RS256", headers={"kid": kid})


@pytest.fixture
def jwks() -> Iterator[_Jwks]:
    endpoint = _Jwks()
    endpoint.thread.start()
    yield endpoint
    endpoint.server.shutdown()
    endpoint.server.server_close()


def _me(base: str, token: str, timeout: float = 10) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = httpx.post(f"{base}/graphql", json={"query": "{ me { subject } }"},
                          headers={"Authorization": f"Bearer {token}"}, timeout=timeout)  # fmt: skip
    return response, time.monotonic() - started


def test_a_slow_jwks_endpoint_delays_only_the_requests_that_need_it(
    jwks, db_url, db_engine, active_model, tmp_path: Path
):
    env = {"FAILCAST_JWT_ALGORITHMS": "RS256,HS256", "FAILCAST_JWT_JWKS_URL": jwks.url,
           "FAILCAST_JWT_JWKS_MIN_REFRESH_SECONDS": "30"}  # fmt: skip
    with run_server(db_url, env, tmp_path / "uvicorn.log") as server:
        waiting: dict[str, object] = {}
        first = threading.Thread(
            target=lambda: waiting.update(r=_me(server.base, jwks.token("k1")))
        )
        with HealthPoller(server) as poller:
            first.start()
            time.sleep(0.3)  # the fetch is under way
            others = [_me(server.base, make_token("hs-user"), timeout=5) for _ in range(10)]
            first.join(timeout=10)
        unknown = [_me(server.base, jwks.token(uuid.uuid4().hex), timeout=5) for _ in range(20)]
        log = server.log()
    response, elapsed = waiting["r"]  # type: ignore[misc]
    assert response.status_code == 200, response.text
    assert response.json()["data"]["me"]["subject"] == "idp-user"
    assert JWKS_DELAY_S - 0.5 <= elapsed < JWKS_DELAY_S + 2, elapsed
    assert all(r.status_code == 200 and s < 0.5 for r, s in others), [
        (r.status_code, s) for r, s in others
    ]
    poller.assert_fast(at_least=10)
    assert all(r.status_code == 401 and s < 0.5 for r, s in unknown), [
        (r.status_code, s) for r, s in unknown
    ]
    assert {r.json()["errors"][0]["message"] for r, _ in unknown} == {
        "token key id is not recognised"
    }
    assert jwks.fetches == 1, (jwks.fetches, log[-2000:])
