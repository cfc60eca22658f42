"""How often the JWKS is fetched: unknown kids, failed fetches, stale sets, removed keys."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from auth import AuthError, Principal, TokenVerifier

FAST = 0.1
WINDOW = 0.3  # short failure / refresh windows keep these tests quick


def _jwks_verifier(
    make_verifier: Callable[..., TokenVerifier], tokens: Any, url: str, **config: Any
) -> TokenVerifier:
    return make_verifier(algorithms=("RS256", "ES256"), jwks_url=url, **config)


def _reason_and_time(verifier: TokenVerifier, token: str) -> tuple[str, float]:
    started = time.perf_counter()
    with pytest.raises(AuthError) as caught:
        asyncio.run(verifier.verify_async(token))
    return caught.value.reason, time.perf_counter() - started


def _unknown_kid_tokens(tokens: Any, count: int) -> list[str]:
    return [tokens.rs(tokens.claims(), kid=f"random-{i}") for i in range(count)]


async def _timed_refusals(verifier: TokenVerifier, batch: list[str]) -> list[tuple[str, float]]:
    async def one(token: str) -> tuple[str, float]:
        started = time.perf_counter()
        try:
            await verifier.verify_async(token)
        except AuthError as error:
            return error.reason, time.perf_counter() - started
        return "accepted", time.perf_counter() - started

    return await asyncio.gather(*(one(token) for token in batch))


# --- unknown kids -------------------------------------------------------------------------


def test_unknown_kids_within_the_interval_are_refused_at_once_without_fetching(
    tokens: Any, jwks_server: Any, make_verifier: Callable[..., Any]
) -> None:
    verifier = _jwks_verifier(make_verifier, tokens, jwks_server.url)
    verifier.refresh_keys()

    outcomes = [_reason_and_time(verifier, token) for token in _unknown_kid_tokens(tokens, 20)]

    assert {reason for reason, _ in outcomes} == {"unknown_kid"}
    assert max(elapsed for _, elapsed in outcomes) < FAST
    assert jwks_server.hits == 1  # the initial load only


def test_concurrent_unknown_kids_after_the_interval_cause_one_fetch_and_one_wait(
    tokens: Any, jwks_server: Any, make_verifier: Callable[..., Any]
) -> None:
    verifier = _jwks_verifier(
        make_verifier, tokens, jwks_server.url, jwks_min_refresh_seconds=WINDOW
    )
    verifier.refresh_keys()
    time.sleep(WINDOW + 0.05)
    jwks_server.set(delay=0.2)

    outcomes = asyncio.run(_timed_refusals(verifier, _unknown_kid_tokens(tokens, 20)))

    assert [reason for reason, _ in outcomes] == ["unknown_kid"] * 20
    waited = sorted(elapsed for _, elapsed in outcomes)
    assert waited[-1] >= 0.2 and waited[-2] < FAST  # only the kid that fetched waited
    assert jwks_server.hits == 2


def test_unknown_kids_do_not_wait_for_a_background_refresh(
    tokens: Any, jwks_server: Any, make_verifier: Callable[..., Any]
) -> None:
    verifier = _jwks_verifier(make_verifier, tokens, jwks_server.url, jwks_cache_seconds=WINDOW)
    verifier.refresh_keys()
    time.sleep(WINDOW + 0.05)
    jwks_server.set(delay=0.5)
    asyncio.run(verifier.verify_async(tokens.rs(tokens.claims(), kid="rsa-1")))  # starts it
    jwks_server.wait_for_hits(2)

    outcomes = asyncio.run(_timed_refusals(verifier, _unknown_kid_tokens(tokens, 5)))
    verifier.refresh_keys()  # joins the background refresh, still waiting on the server

    assert [reason for reason, _ in outcomes] == ["unknown_kid"] * 5
    assert max(elapsed for _, elapsed in outcomes) < FAST
    assert jwks_server.hits == 2


def test_a_rotated_key_is_fetched_once_the_interval_has_passed(
    tokens: Any,
    keys: Any,
    jwks_body: Callable[..., bytes],
    jwks_server: Any,
    make_verifier: Callable[..., Any],
) -> None:
    verifier = _jwks_verifier(
        make_verifier, tokens, jwks_server.url, jwks_min_refresh_seconds=WINDOW
    )
    jwks_server.set(body=jwks_body(keys.rsa))
    verifier.refresh_keys()
    jwks_server.set(body=jwks_body(keys.rsa, keys.rsa2))
    rotated = tokens.rs(tokens.claims(), keys.rsa2, kid="rsa-2")
    assert _reason_and_time(verifier, rotated)[0] == "unknown_kid"  # within the interval

    time.sleep(WINDOW + 0.05)
    principal = asyncio.run(verifier.verify_async(rotated))

    assert principal.subject == "device-fleet-1"
    assert jwks_server.hits == 2


# --- failed fetches -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [{"status": 500}, {"body": b"<html>oops</html>"}, {"body": b'{"keys": []}'}],
    ids=["http-500", "not-json", "no-usable-key"],
)
def test_a_failed_fetch_is_remembered_for_the_failure_window(
    failure: dict[str, Any], tokens: Any, jwks_server: Any, make_verifier: Callable[..., Any]
) -> None:
    verifier = _jwks_verifier(
        make_verifier, tokens, jwks_server.url, jwks_failure_cache_seconds=WINDOW
    )
    jwks_server.set(**failure)
    token = tokens.rs(tokens.claims(), kid="rsa-1")
    assert _reason_and_time(verifier, token)[0] == "key_unavailable"
    assert jwks_server.hits == 1

    repeated = [_reason_and_time(verifier, token) for _ in range(5)]

    assert {reason for reason, _ in repeated} == {"key_unavailable"}
    assert max(elapsed for _, elapsed in repeated) < FAST
    assert jwks_server.hits == 1


@pytest.mark.parametrize(
    "failure",
    [{"status": 500}, {"body": b"<html>oops</html>"}, {"body": b'{"keys": []}'}],
    ids=["http-500", "not-json", "no-usable-key"],
)
def test_one_fetch_is_tried_again_after_the_failure_window(
    failure: dict[str, Any], tokens: Any, jwks_server: Any, make_verifier: Callable[..., Any]
) -> None:
    verifier = _jwks_verifier(
        make_verifier, tokens, jwks_server.url, jwks_failure_cache_seconds=WINDOW
    )
    jwks_server.set(**failure)
    token = tokens.rs(tokens.claims(), kid="rsa-1")
    _reason_and_time(verifier, token)
    time.sleep(WINDOW + 0.05)

    reasons = [_reason_and_time(verifier, token)[0] for _ in range(3)]

    assert reasons == ["key_unavailable"] * 3
    assert jwks_server.hits == 2


def test_a_refused_connection_is_remembered_then_retried_once_the_endpoint_is_up(
    tokens: Any,
    closed_port: int,
    jwks_server: Any,
    start_jwks_server: Callable[..., Any],
    make_verifier: Callable[..., Any],
) -> None:
    url = f"http://127.0.0.1:{closed_port}/.well-known/jwks.json"
    verifier = _jwks_verifier(make_verifier, tokens, url, jwks_failure_cache_seconds=WINDOW)
    token = tokens.rs(tokens.claims(), kid="rsa-1")
    assert _reason_and_time(verifier, token)[0] == "key_unavailable"  # connection refused

    server = start_jwks_server(jwks_server.body, port=closed_port)
    within = [_reason_and_time(verifier, token)[0] for _ in range(3)]
    assert within == ["key_unavailable"] * 3 and server.hits == 0  # no request went out
    time.sleep(WINDOW + 0.05)

    assert asyncio.run(verifier.verify_async(token)).subject == "device-fleet-1"
    assert server.hits == 1


def test_known_kids_keep_verifying_while_fetches_fail(
    tokens: Any, keys: Any, jwks_server: Any, make_verifier: Callable[..., Any]
) -> None:
    verifier = _jwks_verifier(
        make_verifier,
        tokens,
        jwks_server.url,
        jwks_cache_seconds=WINDOW,
        jwks_min_refresh_seconds=0.01,
        jwks_failure_cache_seconds=5,
    )
    verifier.refresh_keys()
    jwks_server.set(status=500)
    time.sleep(WINDOW + 0.05)  # the set is stale now, and every refresh fails
    assert _reason_and_time(verifier, tokens.rs(tokens.claims(), kid="new"))[0] == (
        "key_unavailable"
    )

    subjects = [
        asyncio.run(verifier.verify_async(tokens.rs(tokens.claims(sub=f"s{i}"), kid="rsa-1")))
        for i in range(3)
    ]

    assert [p.subject for p in subjects] == ["s0", "s1", "s2"]
    assert _reason_and_time(verifier, tokens.rs(tokens.claims(), kid="other"))[0] == (
        "key_unavailable"
    )
    assert jwks_server.hits == 2  # the load, then one failed refresh for the whole window


# --- stale sets and removed keys ----------------------------------------------------------


def test_a_stale_set_is_refreshed_in_the_background_without_delaying_callers(
    tokens: Any, jwks_server: Any, make_verifier: Callable[..., Any]
) -> None:
    verifier = _jwks_verifier(make_verifier, tokens, jwks_server.url, jwks_cache_seconds=WINDOW)
    verifier.refresh_keys()
    time.sleep(WINDOW + 0.05)
    jwks_server.set(delay=0.5)

    async def verify_twice() -> list[tuple[Principal, float]]:
        first = await _timeit(verifier, tokens.rs(tokens.claims(sub="a"), kid="rsa-1"))
        second = await _timeit(verifier, tokens.es(tokens.claims(sub="b"), kid="ec-1"))
        return [first, second]

    results = asyncio.run(verify_twice())
    jwks_server.wait_for_hits(2)
    verifier.refresh_keys()  # joins the background refresh, still waiting on the server

    assert [p.subject for p, _ in results] == ["a", "b"]
    assert max(elapsed for _, elapsed in results) < FAST
    assert jwks_server.hits == 2


async def _timeit(verifier: TokenVerifier, token: str) -> tuple[Principal, float]:
    started = time.perf_counter()
    principal = await verifier.verify_async(token)
    return principal, time.perf_counter() - started


def test_a_removed_key_stops_verifying_after_the_background_refresh(
    tokens: Any,
    keys: Any,
    jwks_body: Callable[..., bytes],
    jwks_server: Any,
    make_verifier: Callable[..., Any],
) -> None:
    verifier = _jwks_verifier(make_verifier, tokens, jwks_server.url, jwks_cache_seconds=WINDOW)
    verifier.refresh_keys()
    retired = tokens.rs(tokens.claims(sub="retired"), keys.rsa2, kid="rsa-2")
    asyncio.run(verifier.verify_async(retired))  # verified, and now in the token cache
    jwks_server.set(body=jwks_body(keys.rsa, keys.ec), delay=0.3)
    time.sleep(WINDOW + 0.05)

    asyncio.run(verifier.verify_async(tokens.rs(tokens.claims(), kid="rsa-1")))  # starts it
    jwks_server.wait_for_hits(2)
    verifier.refresh_keys()  # joins that refresh

    assert _reason_and_time(verifier, retired)[0] == "unknown_kid"
    fresh = tokens.rs(tokens.claims(sub="fresh"), keys.rsa2, kid="rsa-2")
    assert _reason_and_time(verifier, fresh)[0] == "unknown_kid"
    assert jwks_server.hits == 2


def test_cache_hits_alone_keep_the_key_set_fresh(
    tokens: Any,
    keys: Any,
    jwks_body: Callable[..., bytes],
    jwks_server: Any,
    make_verifier: Callable[..., Any],
) -> None:
    # A client reusing one token never misses the token cache; its key must still be
    # re-checked once the set is stale, or a removed key would be trusted until exp.
    verifier = _jwks_verifier(make_verifier, tokens, jwks_server.url, jwks_cache_seconds=WINDOW)
    verifier.refresh_keys()
    retired = tokens.rs(tokens.claims(sub="retired"), keys.rsa2, kid="rsa-2")
    verifier.verify(retired)
    jwks_server.set(body=jwks_body(keys.rsa), delay=0.3)
    time.sleep(WINDOW + 0.05)

    assert verifier.verify(retired).subject == "retired"  # from the cache; starts a refresh
    jwks_server.wait_for_hits(2)
    verifier.refresh_keys()

    with pytest.raises(AuthError) as caught:
        verifier.verify(retired)
    assert caught.value.reason == "unknown_kid"


def test_an_unchanged_refresh_keeps_cached_verifications(
    tokens: Any, jwks_server: Any, make_verifier: Callable[..., Any]
) -> None:
    verifier = _jwks_verifier(make_verifier, tokens, jwks_server.url)
    verifier.refresh_keys()
    token = tokens.rs(tokens.claims(), kid="rsa-1")
    first = verifier.verify(token)

    verifier.refresh_keys()

    assert verifier.verify(token) is first


# --- refresh_keys and close -----------------------------------------------------------------


def test_refresh_keys_reports_a_failed_fetch(
    tokens: Any, jwks_server: Any, make_verifier: Callable[..., Any]
) -> None:
    verifier = _jwks_verifier(make_verifier, tokens, jwks_server.url)
    jwks_server.set(status=503)

    with pytest.raises(AuthError) as caught:
        verifier.refresh_keys()

    assert caught.value.reason == "key_unavailable"


def test_refresh_keys_without_jwks_does_nothing(
    tokens: Any, make_verifier: Callable[..., Any]
) -> None:
    make_verifier(secret=tokens.secret).refresh_keys()


def test_a_closed_verifier_keeps_its_keys_and_fetches_no_more(
    tokens: Any, jwks_server: Any, make_verifier: Callable[..., Any]
) -> None:
    verifier = _jwks_verifier(make_verifier, tokens, jwks_server.url, jwks_min_refresh_seconds=0.01)
    verifier.refresh_keys()
    verifier.close()
    time.sleep(0.02)

    assert asyncio.run(verifier.verify_async(tokens.es(tokens.claims(), kid="ec-1")))
    assert _reason_and_time(verifier, tokens.rs(tokens.claims(), kid="new"))[0] == (
        "key_unavailable"
    )
    assert jwks_server.hits == 1
