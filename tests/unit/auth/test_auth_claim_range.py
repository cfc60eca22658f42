"""Numeric-date claims outside [0, end of 9999] are refused with claim_out_of_range."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auth import AuthError, TokenVerifier

END_OF_9999 = 253_402_300_799
ABSURD = [10**18, 1e20, -1, 10**400, END_OF_9999 + 1, -1e-9]


@pytest.mark.parametrize(
    "value", ABSURD, ids=["1e18-int", "1e20", "-1", "1e400-int", "9999+1s", "-tiny"]
)
@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
def test_absurd_time_claim_is_out_of_range(
    claim: str, value: float, tokens: Any, make_verifier: Callable[..., TokenVerifier]
) -> None:
    token = tokens.hs(tokens.claims(**{claim: value}))

    with pytest.raises(AuthError) as caught:
        make_verifier(secret=tokens.secret).verify(token)

    assert caught.value.reason == "claim_out_of_range"
    assert caught.value.message == f"token '{claim}' claim is out of range"


ENTRY_POINTS: dict[str, Callable[[TokenVerifier, str], Any]] = {
    "verify": lambda v, token: v.verify(token),
    "verify_async": lambda v, token: asyncio.run(v.verify_async(token)),
    "authenticate": lambda v, token: v.authenticate(f"Bearer {token}"),
    "authenticate_async": lambda v, token: asyncio.run(v.authenticate_async(f"Bearer {token}")),
}


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_out_of_range_is_refused_by_every_entry_point(
    entry: str, tokens: Any, make_verifier: Callable[..., TokenVerifier]
) -> None:
    token = tokens.hs(tokens.claims(exp=1e20))

    with pytest.raises(AuthError) as caught:
        ENTRY_POINTS[entry](make_verifier(secret=tokens.secret), token)

    assert caught.value.reason == "claim_out_of_range"


def test_range_is_checked_before_expiry(
    tokens: Any, make_verifier: Callable[..., TokenVerifier]
) -> None:
    # An expired exp must not hide a nonsense iat: the reason names the broken claim.
    token = tokens.hs(tokens.claims(exp=1, iat=1e20))

    with pytest.raises(AuthError) as caught:
        make_verifier(secret=tokens.secret).verify(token)

    assert caught.value.reason == "claim_out_of_range"


def test_exp_at_end_of_9999_is_accepted(
    tokens: Any, make_verifier: Callable[..., TokenVerifier]
) -> None:
    token = tokens.hs(tokens.claims(exp=END_OF_9999, iat=0, nbf=0))

    principal = make_verifier(secret=tokens.secret).verify(token)

    assert principal.expires_at == datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


def test_fractional_exp_is_accepted(
    tokens: Any, make_verifier: Callable[..., TokenVerifier]
) -> None:
    principal = make_verifier(secret=tokens.secret).verify(
        tokens.hs(tokens.claims(exp=tokens.now + 60.5))
    )

    assert principal.expires_at == datetime.fromtimestamp(tokens.now + 60.5, tz=UTC)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    claim=st.sampled_from(["exp", "iat", "nbf", "sub", "aud", "iss", "scope", "roles"]), value=_JSON
)
def test_any_claim_value_gives_a_principal_or_an_auth_error(
    claim: str, value: Any, tokens: Any, make_verifier: Callable[..., TokenVerifier]
) -> None:
    verifier = make_verifier(secret=tokens.secret, roles={"r": frozenset()})
    # Signed by hand: PyJWT's encoder refuses some of these values before we could test them.
    signer = tokens.hmac_signer(tokens.secret.encode())
    token = tokens.raw({"alg": "HS256"}, tokens.claims(**{claim: value}), signer)

    with contextlib.suppress(AuthError):  # a Principal is fine too; anything else fails
        verifier.verify(token)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(token=st.text(max_size=200) | st.from_regex(r"[A-Za-z0-9_=.-]{0,200}", fullmatch=True))
def test_any_token_string_gives_an_auth_error(
    token: str, tokens: Any, make_verifier: Callable[..., TokenVerifier]
) -> None:
    verifier = make_verifier(secret=tokens.secret)

    with pytest.raises(AuthError):
        verifier.verify(token)
    with pytest.raises(AuthError):
        asyncio.run(verifier.verify_async(token))
