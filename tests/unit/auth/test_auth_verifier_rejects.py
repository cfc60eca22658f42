"""Table of crafted tokens that must be refused, each with its expected reason."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from auth import AuthConfig, AuthError, TokenVerifier


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/jwks.json"


def _config(name: str, tokens: Any, jwks_url: str) -> AuthConfig:
    keys = tokens.keys
    configs = {
        "hs": AuthConfig(secret=tokens.secret),
        "rs_pem": AuthConfig(algorithms=("RS256",), public_key_pem=keys.rsa.public_pem),
        "mixed": AuthConfig(
            algorithms=("HS256", "RS256"), secret=tokens.secret, public_key_pem=keys.rsa.public_pem
        ),
        "jwks": AuthConfig(algorithms=("RS256", "ES256"), jwks_url=jwks_url),
        "jwks_down": AuthConfig(algorithms=("RS256",), jwks_url=_closed_port_url()),
    }
    for broken in ("not-json", "no-keys", "list"):
        url = jwks_url.rsplit("/", 1)[0] + "/" + broken
        configs[f"jwks_{broken}"] = AuthConfig(algorithms=("RS256",), jwks_url=url)
    return configs[name]


@dataclass(frozen=True)
class Case:
    id: str
    verifier: str
    token: Callable[[Any], str]
    reason: str


def _pem_as_hmac(t: Any) -> str:
    # The key-confusion attack: HS256 keyed with the server's public RSA PEM bytes.
    key = t.keys.rsa.public_pem.encode()
    token: str = t.raw({"alg": "HS256", "typ": "JWT"}, t.claims(), t.hmac_signer(key))
    return token


def _tampered(t: Any) -> str:
    header, _, signature = t.hs(t.claims()).split(".")
    forged = t.raw({"alg": "HS256"}, t.claims(scope="models:write")).split(".")[1]
    return f"{header}.{forged}.{signature}"


def _non_json_payload(t: Any) -> str:
    # Correctly signed, but the payload is not JSON.
    header = t.b64(b'{"alg": "HS256"}')
    signing_input = f"{header}.{t.b64(b'not json')}"
    signature = t.hmac_signer(t.secret.encode())(signing_input.encode())
    return f"{signing_input}.{t.b64(signature)}"


def _segments(header: bytes, payload: bytes) -> Callable[[Any], str]:
    return lambda t: f"{t.b64(header)}.{t.b64(payload)}.c2ln"


CASES = [
    # algorithm handling
    Case("alg-none", "hs", lambda t: t.raw({"alg": "none"}, t.claims()), "algorithm_not_allowed"),
    Case("alg-None-mixed-case", "hs", lambda t: t.raw({"alg": "None"}, t.claims()),
         "algorithm_not_allowed"),
    Case("alg-missing", "hs", lambda t: t.raw({"typ": "JWT"}, t.claims()), "algorithm_not_allowed"),
    Case("alg-outside-allow-list", "hs", lambda t: t.hs(t.claims(), alg="HS512"),
         "algorithm_not_allowed"),
    Case("rs256-when-only-hs256", "hs", lambda t: t.rs(t.claims()), "algorithm_not_allowed"),
    Case("key-confusion-rs-only", "rs_pem", _pem_as_hmac, "algorithm_not_allowed"),
    Case("key-confusion-mixed", "mixed", _pem_as_hmac, "bad_signature"),
    Case("es256-key-for-rs256-pem", "rs_pem", lambda t: t.es(t.claims()),
         "algorithm_not_allowed"),
    # signatures
    Case("bad-signature-hs", "hs", lambda t: t.hs(t.claims(), secret=t.other_secret),
         "bad_signature"),
    Case("bad-signature-rs", "rs_pem", lambda t: t.rs(t.claims(), t.keys.rsa2), "bad_signature"),
    Case("tampered-payload", "hs", _tampered, "bad_signature"),
    Case("empty-signature", "hs", lambda t: t.raw({"alg": "HS256"}, t.claims()), "bad_signature"),
    # JWKS
    Case("unknown-kid", "jwks", lambda t: t.rs(t.claims(), kid="nope"), "unknown_kid"),
    Case("no-kid-jwks-only", "jwks", lambda t: t.rs(t.claims()), "unknown_kid"),
    Case("kid-of-ec-key-on-rs256", "jwks", lambda t: t.rs(t.claims(), kid="ec-1"),
         "algorithm_not_allowed"),
    Case("kid-of-other-rsa-key", "jwks", lambda t: t.rs(t.claims(), kid="rsa-2"),
         "bad_signature"),
    Case("jwks-unreachable", "jwks_down", lambda t: t.rs(t.claims(), kid="rsa-1"),
         "key_unavailable"),
    Case("jwks-not-json", "jwks_not-json", lambda t: t.rs(t.claims(), kid="rsa-1"),
         "key_unavailable"),
    Case("jwks-without-keys", "jwks_no-keys", lambda t: t.rs(t.claims(), kid="rsa-1"),
         "key_unavailable"),
    Case("jwks-not-an-object", "jwks_list", lambda t: t.rs(t.claims(), kid="rsa-1"),
         "key_unavailable"),
    # time
    Case("expired", "hs", lambda t: t.hs(t.claims(exp=int(t.now) - 31)), "expired"),
    Case("expired-long-ago", "hs", lambda t: t.hs(t.claims(iat=1, exp=2)), "expired"),
    Case("nbf-in-future", "hs", lambda t: t.hs(t.claims(nbf=int(t.now) + 31)), "not_yet_valid"),
    Case("iat-in-future", "hs", lambda t: t.hs(t.claims(iat=int(t.now) + 31)), "not_yet_valid"),
    Case("exp-not-a-number", "hs", lambda t: t.hs(t.claims(exp="tomorrow")), "malformed"),
    Case("exp-boolean", "hs", lambda t: t.hs(t.claims(exp=True)), "malformed"),
    # issuer / audience
    Case("wrong-issuer", "hs", lambda t: t.hs(t.claims(iss="evil")), "wrong_issuer"),
    Case("wrong-audience", "hs", lambda t: t.hs(t.claims(aud="other-api")), "wrong_audience"),
    Case("wrong-audience-list", "hs", lambda t: t.hs(t.claims(aud=["a", "b"])), "wrong_audience"),
    # required claims
    Case("missing-exp", "hs", lambda t: t.hs(t.claims(exp=None)), "missing_claim"),
    Case("missing-iat", "hs", lambda t: t.hs(t.claims(iat=None)), "missing_claim"),
    Case("missing-iss", "hs", lambda t: t.hs(t.claims(iss=None)), "missing_claim"),
    Case("missing-aud", "hs", lambda t: t.hs(t.claims(aud=None)), "missing_claim"),
    Case("missing-sub", "hs", lambda t: t.hs(t.claims(sub=None)), "missing_claim"),
    Case("empty-sub", "hs", lambda t: t.hs(t.claims(sub="")), "missing_claim"),
    Case("blank-sub", "hs", lambda t: t.hs(t.claims(sub="   ")), "missing_claim"),
    Case("sub-not-a-string", "hs", lambda t: t.hs(t.claims(sub=42)), "malformed"),
    # malformed shapes
    Case("empty-token", "hs", lambda t: "", "missing"),
    Case("one-segment", "hs", lambda t: "abcdef", "malformed"),
    Case("two-segments", "hs", lambda t: "abc.def", "malformed"),
    Case("four-segments", "hs", lambda t: t.hs(t.claims()) + ".extra", "malformed"),
    Case("bad-base64", "hs", lambda t: "!!!.@@@.###", "malformed"),
    Case("non-json-header", "hs", _segments(b"not json", b"{}"), "malformed"),
    Case("header-not-object", "hs", _segments(b"[1]", b"{}"), "malformed"),
    Case("non-json-payload", "hs", _non_json_payload, "malformed"),
    Case("kid-not-a-string", "rs_pem", lambda t: t.raw({"alg": "RS256", "kid": 7}, t.claims()),
         "malformed"),
    Case("oversized", "hs", lambda t: "a" * 9000 + ".b.c", "malformed"),
]  # fmt: skip


def _assert_refused(
    caught: pytest.ExceptionInfo[AuthError], case: Case, tokens: Any, token: str
) -> None:
    assert caught.value.reason == case.reason
    assert caught.value.code == "UNAUTHENTICATED"
    # Client-facing messages never echo the token or key material.
    assert token[:20] not in caught.value.message or not token
    assert "PRIVATE" not in caught.value.message and tokens.secret not in caught.value.message


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_refused_with_reason_async(case: Case, tokens: Any, jwks_server: Any) -> None:
    # The server's path: a JWKS verifier really fetches (or fails to fetch) its keys here.
    verifier = TokenVerifier(_config(case.verifier, tokens, jwks_server.url), clock=tokens.now_fn)
    token = case.token(tokens)

    with pytest.raises(AuthError) as caught:
        asyncio.run(verifier.verify_async(token))

    _assert_refused(caught, case, tokens, token)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_refused_with_reason_sync(case: Case, tokens: Any, jwks_server: Any) -> None:
    # verify() never fetches, so the working JWKS is loaded first; the broken endpoints
    # never yield keys, so they are refused as key_unavailable either way.
    verifier = TokenVerifier(_config(case.verifier, tokens, jwks_server.url), clock=tokens.now_fn)
    if case.verifier == "jwks":
        verifier.refresh_keys()
    token = case.token(tokens)

    with pytest.raises(AuthError) as caught:
        verifier.verify(token)

    _assert_refused(caught, case, tokens, token)


def test_failures_are_never_cached(tokens: Any) -> None:
    verifier = TokenVerifier(AuthConfig(secret=tokens.secret), clock=tokens.now_fn)
    token = tokens.hs(tokens.claims(exp=int(tokens.now) - 100))

    for _ in range(2):
        with pytest.raises(AuthError, match="expired"):
            verifier.verify(token)
