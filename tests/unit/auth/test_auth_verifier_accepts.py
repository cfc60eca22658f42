"""Tokens that must be accepted, scope mapping, leeway, caching and header parsing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from auth import AuthConfig, AuthError, Principal, Scope, TokenVerifier, mint_token


def test_hs256_accepted(tokens: Any, make_verifier: Callable[..., TokenVerifier]) -> None:
    verifier = make_verifier(secret=tokens.secret)

    principal = verifier.verify(tokens.hs(tokens.claims(scope="predict models:read")))

    assert principal == Principal(
        subject="device-fleet-1",
        scopes=frozenset({Scope.PREDICT, Scope.MODELS_READ}),
        expires_at=datetime.fromtimestamp(tokens.now + 600, tz=UTC),
    )
    assert principal.expires_at is not None and principal.expires_at.tzinfo is UTC


def test_rs256_with_pem(tokens: Any, make_verifier: Callable[..., TokenVerifier]) -> None:
    verifier = make_verifier(algorithms=("RS256",), public_key_pem=tokens.keys.rsa.public_pem)

    assert verifier.verify(tokens.rs(tokens.claims())).subject == "device-fleet-1"


def test_es256_with_pem(tokens: Any, make_verifier: Callable[..., TokenVerifier]) -> None:
    verifier = make_verifier(algorithms=("ES256",), public_key_pem=tokens.keys.ec.public_pem)

    assert verifier.verify(tokens.es(tokens.claims())).has(Scope.PREDICT)


def test_mixed_hs_and_rs_each_use_their_own_key(
    tokens: Any, make_verifier: Callable[..., TokenVerifier]
) -> None:
    verifier = make_verifier(
        algorithms=("HS256", "RS256"),
        secret=tokens.secret,
        public_key_pem=tokens.keys.rsa.public_pem,
    )

    assert verifier.verify(tokens.hs(tokens.claims(sub="a"))).subject == "a"
    assert verifier.verify(tokens.rs(tokens.claims(sub="b"))).subject == "b"


@pytest.mark.parametrize("kid", ["rsa-1", "rsa-2"])
def test_rs256_via_jwks_with_key_rotation(
    kid: str, tokens: Any, jwks_server: Any, make_verifier: Callable[..., TokenVerifier]
) -> None:
    verifier = make_verifier(algorithms=("RS256",), jwks_url=jwks_server.url)
    pair = tokens.keys.rsa if kid == "rsa-1" else tokens.keys.rsa2
    token = tokens.rs(tokens.claims(), pair, kid=kid)

    assert asyncio.run(verifier.verify_async(token)).subject == "device-fleet-1"


def test_jwks_fetched_once_for_many_tokens_and_kids(
    tokens: Any, jwks_server: Any, make_verifier: Callable[..., TokenVerifier]
) -> None:
    verifier = make_verifier(algorithms=("RS256", "ES256"), jwks_url=jwks_server.url)
    before = jwks_server.hits

    async def verify_all() -> None:
        for sub in ("a", "b", "c"):
            await verifier.verify_async(
                tokens.rs(tokens.claims(sub=sub), tokens.keys.rsa, kid="rsa-1")
            )
            await verifier.verify_async(
                tokens.rs(tokens.claims(sub=sub), tokens.keys.rsa2, kid="rsa-2")
            )
            await verifier.verify_async(tokens.es(tokens.claims(sub=sub), kid="ec-1"))

    asyncio.run(verify_all())

    assert jwks_server.hits - before == 1


def test_scope_scp_and_roles_are_united(
    tokens: Any, make_verifier: Callable[..., TokenVerifier]
) -> None:
    verifier = make_verifier(
        secret=tokens.secret,
        roles={
            "operator": frozenset({Scope.OUTCOMES_WRITE}),
            "auditor": frozenset({Scope.AUDIT_READ, Scope.PREDICTIONS_READ}),
        },
    )
    claims = tokens.claims(
        scope="predict future:scope",
        scp=["models:read", 7, "models:write"],
        roles=["operator", "auditor", "unknown-role"],
    )

    scopes = verifier.verify(tokens.hs(claims)).scopes

    assert scopes == frozenset(
        {
            Scope.PREDICT,
            Scope.MODELS_READ,
            Scope.MODELS_WRITE,
            Scope.OUTCOMES_WRITE,
            Scope.AUDIT_READ,
            Scope.PREDICTIONS_READ,
        }
    )


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"scp": "models:read predict"}, {Scope.MODELS_READ, Scope.PREDICT}),
        ({"scope": ["audit:read"]}, {Scope.AUDIT_READ}),
        ({"scope": 42, "roles": {"not": "a list"}}, set()),
        ({"scope": None}, set()),
    ],
)
def test_scope_claim_shapes(
    extra: dict[str, Any],
    expected: set[Scope],
    tokens: Any,
    make_verifier: Callable[..., TokenVerifier],
) -> None:
    verifier = make_verifier(secret=tokens.secret, roles={"x": frozenset({Scope.PREDICT})})

    assert verifier.verify(tokens.hs(tokens.claims(**extra))).scopes == expected


def test_leeway_accepts_slightly_expired_and_early_tokens(
    tokens: Any, make_verifier: Callable[..., TokenVerifier]
) -> None:
    verifier = make_verifier(secret=tokens.secret, leeway_seconds=30)
    now = int(tokens.now)

    verifier.verify(tokens.hs(tokens.claims(exp=now - 29)))
    verifier.verify(tokens.hs(tokens.claims(iat=now + 29, nbf=now + 29)))


def test_zero_leeway_is_strict(tokens: Any, make_verifier: Callable[..., TokenVerifier]) -> None:
    verifier = make_verifier(secret=tokens.secret, leeway_seconds=0)

    with pytest.raises(AuthError) as caught:
        verifier.verify(tokens.hs(tokens.claims(exp=int(tokens.now))))
    assert caught.value.reason == "expired"


def test_audience_list_containing_ours_is_accepted(
    tokens: Any, make_verifier: Callable[..., TokenVerifier]
) -> None:
    verifier = make_verifier(secret=tokens.secret)

    verifier.verify(tokens.hs(tokens.claims(aud=["other", "failcast-api"])))


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_cache_hit_still_refuses_once_expired(tokens: Any) -> None:
    clock = FakeClock(tokens.now)
    verifier = TokenVerifier(AuthConfig(secret=tokens.secret, leeway_seconds=30), clock=clock)
    token = tokens.hs(tokens.claims(exp=int(tokens.now) + 60))
    first = verifier.verify(token)

    clock.now = tokens.now + 60 + 29  # expired, but within leeway
    assert verifier.verify(token) is first  # served from the cache

    clock.now = tokens.now + 60 + 31
    with pytest.raises(AuthError) as caught:
        verifier.verify(token)
    assert caught.value.reason == "expired"
    with pytest.raises(AuthError):
        verifier.verify(token)  # and stays refused


def test_cache_is_bounded_and_lru(tokens: Any) -> None:
    verifier = TokenVerifier(AuthConfig(secret=tokens.secret), clock=tokens.now_fn, cache_size=2)
    a, b, c = (tokens.hs(tokens.claims(sub=s)) for s in "abc")
    first_a, first_b = verifier.verify(a), verifier.verify(b)
    assert verifier.verify(a) is first_a  # cache hit; a is now most recently used

    verifier.verify(c)  # evicts b, the least recently used

    assert verifier.verify(a) is first_a
    second_b = verifier.verify(b)
    assert second_b == first_b and second_b is not first_b  # b had to be re-verified


def test_concurrent_verification_with_small_cache(tokens: Any) -> None:
    verifier = TokenVerifier(AuthConfig(secret=tokens.secret), clock=tokens.now_fn, cache_size=8)
    batch = [tokens.hs(tokens.claims(sub=f"dev-{i}")) for i in range(40)]

    def work(offset: int) -> list[str]:
        return [verifier.verify(batch[(offset + i) % 40]).subject for i in range(120)]

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(work, range(6)))

    for offset, subjects in enumerate(results):
        assert subjects == [f"dev-{(offset + i) % 40}" for i in range(120)]
    assert len(verifier._cache) <= 8


def test_cache_disabled(tokens: Any) -> None:
    verifier = TokenVerifier(AuthConfig(secret=tokens.secret), clock=tokens.now_fn, cache_size=0)
    token = tokens.hs(tokens.claims())

    assert verifier.verify(token) == verifier.verify(token)
    assert len(verifier._cache) == 0


def test_authenticate_without_header_is_anonymous(
    tokens: Any, make_verifier: Callable[..., TokenVerifier]
) -> None:
    assert make_verifier(secret=tokens.secret).authenticate(None) is None


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_authenticate_bearer(
    scheme: str, tokens: Any, make_verifier: Callable[..., TokenVerifier]
) -> None:
    verifier = make_verifier(secret=tokens.secret)

    principal = verifier.authenticate(f"{scheme} {tokens.hs(tokens.claims())}")

    assert principal is not None and principal.subject == "device-fleet-1"


@pytest.mark.parametrize(
    "header", ["Basic x", "Bearer", "Bearer ", "", "Bearer a b", "Token abc.def.ghi"]
)
def test_authenticate_other_shapes_are_malformed(
    header: str, tokens: Any, make_verifier: Callable[..., TokenVerifier]
) -> None:
    with pytest.raises(AuthError) as caught:
        make_verifier(secret=tokens.secret).authenticate(header)

    assert caught.value.reason == "malformed"


def test_authenticate_propagates_verification_reason(
    tokens: Any, make_verifier: Callable[..., TokenVerifier]
) -> None:
    header = f"Bearer {tokens.hs(tokens.claims(iss='evil'))}"

    with pytest.raises(AuthError) as caught:
        make_verifier(secret=tokens.secret).authenticate(header)

    assert caught.value.reason == "wrong_issuer"
    assert caught.value.message == "token issuer is not accepted"


def test_authenticate_async_without_header_is_anonymous(
    tokens: Any, make_verifier: Callable[..., TokenVerifier]
) -> None:
    assert asyncio.run(make_verifier(secret=tokens.secret).authenticate_async(None)) is None


def test_authenticate_async_bearer(
    tokens: Any, make_verifier: Callable[..., TokenVerifier]
) -> None:
    verifier = make_verifier(secret=tokens.secret)

    principal = asyncio.run(verifier.authenticate_async(f"bearer {tokens.hs(tokens.claims())}"))

    assert principal is not None and principal.subject == "device-fleet-1"


@pytest.mark.parametrize("header", ["Basic x", "Bearer", "Bearer a b"])
def test_authenticate_async_other_shapes_are_malformed(
    header: str, tokens: Any, make_verifier: Callable[..., TokenVerifier]
) -> None:
    with pytest.raises(AuthError) as caught:
        asyncio.run(make_verifier(secret=tokens.secret).authenticate_async(header))

    assert caught.value.reason == "malformed"


def test_authenticate_async_loads_jwks_keys(
    tokens: Any, jwks_server: Any, make_verifier: Callable[..., TokenVerifier]
) -> None:
    verifier = make_verifier(algorithms=("ES256",), jwks_url=jwks_server.url)
    header = f"Bearer {tokens.es(tokens.claims(), kid='ec-1')}"

    principal = asyncio.run(verifier.authenticate_async(header))

    assert principal is not None and principal.has(Scope.PREDICT)


def test_sync_and_async_share_the_token_cache(
    tokens: Any, make_verifier: Callable[..., TokenVerifier]
) -> None:
    verifier = make_verifier(secret=tokens.secret)
    token = tokens.hs(tokens.claims())

    assert asyncio.run(verifier.verify_async(token)) is verifier.verify(token)


def test_verifier_refuses_invalid_config() -> None:
    with pytest.raises(AuthError) as caught:
        TokenVerifier(AuthConfig(secret=None))

    assert caught.value.code == "AUTH_CONFIG"


def test_default_clock_is_wall_time(tokens: Any) -> None:
    config = AuthConfig(secret=tokens.secret)
    token = mint_token(config, "svc", [Scope.PREDICT], timedelta(minutes=5))

    assert TokenVerifier(config).verify(token).subject == "svc"
