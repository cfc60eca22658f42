"""Where webhooks may point (the allow-list, resolved addresses), signatures and backoff."""

import asyncio
import hashlib
import hmac
import random

import pytest
from pydantic import ValidationError
from support import readme_verify

from graph.runtime.webhooks import Refused, Target, TargetPolicy, backoff, signature
from graph.settings import Settings

POLICY = TargetPolicy(["hooks.example.com", "10.0.0.7", "::1", "*.partner.example"])


@pytest.mark.parametrize(
    ("url", "explicit"),
    [
        ("https://hooks.example.com/failcast", True),
        ("http://hooks.example.com:8080/x?y=1", True),  # http:// for a host listed explicitly
        ("https://HOOKS.example.com./x", True),
        ("http://10.0.0.7/hook", True),
        ("http://[::1]:9000/hook", True),
        ("https://eu.partner.example/hook", False),
        ("https://a.b.partner.example/hook", False),
    ],
)
def test_allowed_targets(url, explicit):
    assert POLICY.check(url).explicit is explicit


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://evil.example.com/", "not on FAILCAST_WEBHOOK_ALLOWED_HOSTS"),
        ("https://partner.example/", "not on FAILCAST_WEBHOOK_ALLOWED_HOSTS"),
        ("https://xpartner.example/", "not on FAILCAST_WEBHOOK_ALLOWED_HOSTS"),
        ("https://hooks.example.com.evil.net/", "not on FAILCAST_WEBHOOK_ALLOWED_HOSTS"),
        ("http://eu.partner.example/", "http:// only for hosts listed explicitly"),
        ("https://10.0.0.8/", "not on FAILCAST_WEBHOOK_ALLOWED_HOSTS"),
        ("https://user@hooks.example.com/", "user name or password"),
        ("https://u:p@hooks.example.com/", "user name or password"),
        ("https://hooks.example.com@10.0.0.8/", "user name or password"),
        ("file:///etc/passwd", "must be https://"),
        ("gopher://hooks.example.com/", "must be https://"),
        ("https:///nohost", "no host"),
        ("https://hooks.example.com:0x50/", "port"),
        ("https://hooks.example.com/a b", "without spaces"),
        ("https://hooks.example.com/" + "a" * 2048, "at most 2048"),
    ],
)
def test_refused_targets_say_why(url, why):
    with pytest.raises(Refused, match=why):
        POLICY.check(url)


def test_a_wildcard_host_must_resolve_to_public_addresses_only():
    policy = TargetPolicy(["localhost"])
    below_a_wildcard = Target("https://localhost/x", "https", "localhost", 443, explicit=False)
    with pytest.raises(Refused, match="not public"):
        asyncio.run(policy.address(below_a_wildcard))
    listed = Target("https://localhost/x", "https", "localhost", 443, explicit=True)
    assert str(asyncio.run(policy.address(listed))) in ("127.0.0.1", "::1")
    nowhere = Target("https://nowhere.invalid/x", "https", "nowhere.invalid", 443, False)
    with pytest.raises(Refused, match="does not resolve"):
        asyncio.run(policy.address(nowhere))


def test_the_signature_is_the_documented_hmac_and_the_readme_verifies_it():
    body = b'{"type":"failureAlert"}'
    header = signature("whsec_k", 1700000000, body)
    expected = hmac.new(b"whsec_k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    verify = readme_verify()
    import time

    now = int(time.time())
    assert verify("whsec_k", signature("whsec_k", now, body), body)
    assert not verify("whsec_k", header, body)  # too old: a replay
    assert not verify("whsec_x", signature("whsec_k", now, body), body)
    assert not verify("whsec_k", "garbage", body)


def test_backoff_starts_within_five_seconds_and_stays_within_ten_minutes():
    rng = random.Random(7)
    for _ in range(1000):
        assert 2.0 <= backoff(1, 4.0, 600.0, rng) <= 4.0
        assert 4.0 <= backoff(2, 4.0, 600.0, rng) <= 8.0
        assert 300.0 <= backoff(30, 4.0, 600.0, rng) <= 600.0
    assert backoff(10_000, 4.0, 600.0, rng) <= 600.0
    delays = [backoff(1, 4.0, 600.0, rng) for _ in range(100)]
    assert len(set(delays)) > 90  # jittered: receivers are not hit in lockstep


def test_the_allowed_hosts_setting_takes_hosts_addresses_and_wildcards_only():
    settings = Settings(webhook_allowed_hosts="Hooks.Example.com, 10.0.0.7,*.partner.example,[::1]")
    assert settings.webhook_allowed_hosts == [
        "hooks.example.com", "10.0.0.7", "*.partner.example", "::1"
    ]  # fmt: skip
    for bad in ("https://hooks.example.com", "hooks.example.com:443", "*", "*.10.0.0.1", "a b"):
        with pytest.raises(ValidationError):
            Settings(webhook_allowed_hosts=bad)
