"""Fetching and parsing JWK sets: only usable public signing keys, bounded size and time."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from auth.jwks import MAX_JWKS_BYTES, JwksFetchError, fetch_jwks, parse_jwks


def _document(*entries: Any) -> bytes:
    return json.dumps({"keys": list(entries)}).encode()


def test_parse_indexes_signing_keys_by_kid(keys: Any) -> None:
    parsed = parse_jwks(_document(keys.rsa.jwk, keys.rsa2.jwk, keys.ec.jwk))

    assert sorted(parsed) == ["ec-1", "rsa-1", "rsa-2"]
    assert parsed["ec-1"].jwk.algorithm_name == "ES256"


def test_parse_skips_a_private_key_published_by_mistake(keys: Any) -> None:
    private = RSAAlgorithm.to_jwk(rsa.generate_private_key(65537, 2048), as_dict=True)
    private.update(kid="leaked", alg="RS256")

    assert sorted(parse_jwks(_document(private, keys.rsa.jwk))) == ["rsa-1"]


@pytest.mark.parametrize(
    "entry",
    [
        {"kty": "oct", "kid": "shared", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"},
        {"kty": "RSA", "kid": "odd-alg", "alg": ["RS256"], "n": "AQAB", "e": "AQAB"},
        {"kty": "EC", "kid": "no-coordinates", "crv": "P-256"},
        {"kty": "RSA", "kid": "bad-number", "n": 7, "e": "AQAB"},
        "not-an-object",
        None,
    ],
    ids=["oct-secret", "list-as-alg", "ec-without-x-y", "int-modulus", "string", "null"],
)
def test_parse_skips_unusable_entries(entry: Any, keys: Any) -> None:
    assert sorted(parse_jwks(_document(entry, keys.rsa.jwk))) == ["rsa-1"]


@pytest.mark.parametrize(
    "change",
    [{"use": "enc"}, {"kid": ""}, {"kid": 7}, {"kid": None}],
    ids=["encryption-key", "empty-kid", "int-kid", "no-kid"],
)
def test_parse_skips_keys_that_cannot_be_selected_for_signatures(
    change: dict[str, Any], keys: Any
) -> None:
    entry = {k: v for k, v in {**keys.rsa2.jwk, **change}.items() if v is not None}

    assert sorted(parse_jwks(_document(entry, keys.rsa.jwk))) == ["rsa-1"]


def test_parse_keeps_the_first_key_of_a_repeated_kid(keys: Any) -> None:
    impostor = {**keys.rsa2.jwk, "kid": "rsa-1"}

    parsed = parse_jwks(_document(keys.rsa.jwk, impostor))

    assert parsed["rsa-1"].fingerprint == json.dumps(keys.rsa.jwk, sort_keys=True)


@pytest.mark.parametrize(
    "body",
    [
        b"<html>oops</html>",
        b"\xff\xfe",
        b"[]",
        b'{"keys": {}}',
        b'{"keys": []}',
        b'{"no": "keys"}',
        b"[" * 100_000,
        _document({"kty": "oct", "kid": "only-a-secret", "k": "c2VjcmV0"}),
    ],
    ids=["html", "not-utf8", "list", "keys-object", "no-keys", "keys-missing", "deep", "no-usable"],
)
def test_parse_refuses_documents_without_usable_keys(body: bytes) -> None:
    with pytest.raises(JwksFetchError):
        parse_jwks(body)


def test_fetch_returns_the_served_keys(jwks_server: Any) -> None:
    assert sorted(fetch_jwks(jwks_server.url, timeout=2)) == ["ec-1", "rsa-1", "rsa-2"]


@pytest.mark.parametrize("status", [404, 500, 503])
def test_fetch_refuses_error_status(status: int, jwks_server: Any) -> None:
    jwks_server.set(status=status)

    with pytest.raises(JwksFetchError, match=f"HTTP {status}"):
        fetch_jwks(jwks_server.url, timeout=2)


def test_fetch_does_not_follow_redirects(
    keys: Any, jwks_server: Any, start_jwks_server: Callable[..., Any]
) -> None:
    elsewhere = start_jwks_server(_document(keys.rsa.jwk))
    jwks_server.set(status=302, headers={"Location": elsewhere.url})

    with pytest.raises(JwksFetchError):
        fetch_jwks(jwks_server.url, timeout=2)
    assert elsewhere.hits == 0


def test_fetch_refuses_connection_refused(closed_port: int) -> None:
    with pytest.raises(JwksFetchError, match="unreachable"):
        fetch_jwks(f"http://127.0.0.1:{closed_port}/jwks.json", timeout=2)


@pytest.mark.parametrize("send_length", [True, False], ids=["declared", "streamed"])
def test_fetch_refuses_an_oversized_body(send_length: bool, keys: Any, jwks_server: Any) -> None:
    padding = "x" * MAX_JWKS_BYTES
    body = json.dumps({"keys": [keys.rsa.jwk], "pad": padding}).encode()
    jwks_server.set(body=body, send_length=send_length)

    with pytest.raises(JwksFetchError, match="too large"):
        fetch_jwks(jwks_server.url, timeout=2)


def test_fetch_reads_a_body_without_content_length(jwks_server: Any) -> None:
    jwks_server.set(send_length=False)

    assert sorted(fetch_jwks(jwks_server.url, timeout=2)) == ["ec-1", "rsa-1", "rsa-2"]


def test_fetch_gives_up_after_its_timeout(jwks_server: Any) -> None:
    jwks_server.set(delay=3.0)
    started = time.monotonic()

    with pytest.raises(JwksFetchError):
        fetch_jwks(jwks_server.url, timeout=0.2)

    assert time.monotonic() - started < 1.0
