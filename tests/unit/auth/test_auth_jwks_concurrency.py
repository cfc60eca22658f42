"""JWKS refreshes never block the event loop, and concurrent callers share one fetch."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest

from auth import AuthError, Principal, TokenVerifier

T = TypeVar("T")
FAST = 0.1  # a call that needs no fetch must finish within this many seconds
MAX_LOOP_GAP = 0.05


async def _timed(call: Awaitable[T]) -> tuple[T, float]:
    started = time.perf_counter()
    result = await call
    return result, time.perf_counter() - started


async def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


class Heartbeat:
    """Ticks every 10 ms on the event loop and records the largest gap between ticks."""

    def __init__(self) -> None:
        self.max_gap = 0.0
        self.ticks = 0
        self._task: asyncio.Task[None] | None = None

    async def _beat(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            self.max_gap, last = max(self.max_gap, now - last), now
            self.ticks += 1

    def start(self) -> None:
        self._task = asyncio.create_task(self._beat())

    def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()


def _jwks_verifier(
    make_verifier: Callable[..., TokenVerifier], tokens: Any, url: str, **config: Any
) -> TokenVerifier:
    return make_verifier(
        algorithms=("HS256", "RS256", "ES256"), secret=tokens.secret, jwks_url=url, **config
    )


def test_slow_refresh_delays_neither_other_callers_nor_the_event_loop(
    tokens: Any,
    keys: Any,
    jwks_body: Callable[..., bytes],
    start_jwks_server: Callable[..., Any],
    make_verifier: Callable[..., Any],
) -> None:
    server = start_jwks_server(jwks_body(keys.rsa, keys.ec))
    verifier = _jwks_verifier(make_verifier, tokens, server.url, jwks_min_refresh_seconds=0.05)
    cached = tokens.rs(tokens.claims(sub="cached"), kid="rsa-1")
    verifier.refresh_keys()
    verifier.verify(cached)
    time.sleep(0.06)  # past the unknown-kid interval, so the new kid may fetch
    server.set(body=jwks_body(keys.rsa, keys.rsa2, keys.ec), delay=3.0)
    others = {
        "cached": cached,
        "hs256": tokens.hs(tokens.claims(sub="hs")),
        "known-kid": tokens.rs(tokens.claims(sub="known"), kid="rsa-1"),
    }

    async def scenario() -> tuple[dict[str, float], Heartbeat, bool, Principal]:
        heartbeat = Heartbeat()
        heartbeat.start()
        rotated = asyncio.create_task(
            verifier.verify_async(tokens.rs(tokens.claims(sub="new"), keys.rsa2, kid="rsa-2"))
        )
        await _until(lambda: server.hits == 2)  # the refresh is now waiting on the server
        timings = {}
        for name, token in others.items():
            _, timings[name] = await _timed(verifier.verify_async(token))
        await asyncio.sleep(0.3)  # the loop keeps ticking while the fetch is pending
        still_waiting = not rotated.done()
        server.release()
        principal = await rotated
        heartbeat.stop()
        return timings, heartbeat, still_waiting, principal

    timings, heartbeat, still_waiting, principal = asyncio.run(scenario())

    assert heartbeat.ticks >= 20 and heartbeat.max_gap < MAX_LOOP_GAP, heartbeat.max_gap
    assert all(elapsed < FAST for elapsed in timings.values()), timings
    assert still_waiting  # the measurements above really overlapped the slow fetch
    assert principal.subject == "new"


def test_twenty_concurrent_callers_with_a_new_kid_share_one_fetch(
    tokens: Any, keys: Any, jwks_server: Any, make_verifier: Callable[..., Any]
) -> None:
    verifier = _jwks_verifier(make_verifier, tokens, jwks_server.url)
    jwks_server.set(delay=0.2)  # long enough for all twenty to arrive during the fetch
    batch = [tokens.rs(tokens.claims(sub=f"c{i}"), keys.rsa2, kid="rsa-2") for i in range(20)]

    async def scenario() -> list[Principal]:
        return await asyncio.gather(*(verifier.verify_async(token) for token in batch))

    principals = asyncio.run(scenario())

    assert [p.subject for p in principals] == [f"c{i}" for i in range(20)]
    assert jwks_server.hits == 1


def test_callers_on_two_event_loops_share_one_fetch(
    tokens: Any, keys: Any, jwks_server: Any, make_verifier: Callable[..., Any]
) -> None:
    verifier = _jwks_verifier(make_verifier, tokens, jwks_server.url)
    jwks_server.set(delay=0.3)
    token = tokens.rs(tokens.claims(), kid="rsa-1")

    with ThreadPoolExecutor(2) as pool:  # each thread runs its own asyncio loop
        results = list(pool.map(lambda _: asyncio.run(verifier.verify_async(token)), range(2)))

    assert [p.subject for p in results] == ["device-fleet-1"] * 2
    assert jwks_server.hits == 1


def test_verifier_keeps_working_across_successive_event_loops(
    tokens: Any,
    keys: Any,
    jwks_body: Callable[..., bytes],
    jwks_server: Any,
    make_verifier: Callable[..., Any],
) -> None:
    verifier = _jwks_verifier(make_verifier, tokens, jwks_server.url, jwks_min_refresh_seconds=0.05)
    jwks_server.set(body=jwks_body(keys.rsa))
    assert asyncio.run(verifier.verify_async(tokens.rs(tokens.claims(), kid="rsa-1")))
    jwks_server.set(body=jwks_body(keys.rsa, keys.rsa2))
    time.sleep(0.06)

    principal = asyncio.run(
        verifier.verify_async(tokens.rs(tokens.claims(), keys.rsa2, kid="rsa-2"))
    )

    assert principal.subject == "device-fleet-1"
    assert jwks_server.hits == 2


def test_a_cancelled_caller_does_not_cancel_the_shared_fetch(
    tokens: Any, keys: Any, jwks_server: Any, make_verifier: Callable[..., Any]
) -> None:
    verifier = _jwks_verifier(make_verifier, tokens, jwks_server.url)
    jwks_server.set(delay=0.2)
    token = tokens.rs(tokens.claims(), kid="rsa-1")

    async def scenario() -> Principal:
        impatient = asyncio.create_task(verifier.verify_async(token))
        patient = asyncio.create_task(verifier.verify_async(token))
        await _until(lambda: jwks_server.hits == 1)
        impatient.cancel()
        with pytest.raises(asyncio.CancelledError):
            await impatient
        return await patient

    assert asyncio.run(scenario()).subject == "device-fleet-1"
    assert jwks_server.hits == 1


def test_refresh_does_not_wait_for_a_busy_default_executor(
    tokens: Any, jwks_server: Any, make_verifier: Callable[..., Any]
) -> None:
    # The server's database writes fill asyncio's default executor; auth must not queue there.
    verifier = _jwks_verifier(make_verifier, tokens, jwks_server.url)
    token = tokens.rs(tokens.claims(), kid="rsa-1")
    busy = threading.Event()

    async def scenario() -> tuple[Principal, float]:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(1))
        blocked = loop.run_in_executor(None, busy.wait, 10)
        try:
            return await asyncio.wait_for(_timed(verifier.verify_async(token)), timeout=5)
        finally:
            busy.set()
            await blocked

    principal, elapsed = asyncio.run(scenario())

    assert principal.subject == "device-fleet-1" and elapsed < 2


def test_sync_verify_never_waits_for_a_slow_endpoint(
    tokens: Any, jwks_server: Any, make_verifier: Callable[..., Any]
) -> None:
    verifier = _jwks_verifier(make_verifier, tokens, jwks_server.url)
    jwks_server.set(delay=3.0)
    token = tokens.rs(tokens.claims(), kid="rsa-1")
    started = time.perf_counter()

    with pytest.raises(AuthError) as caught:
        verifier.verify(token)

    assert time.perf_counter() - started < FAST
    assert caught.value.reason == "key_unavailable"  # nothing loaded yet


def test_sync_verify_starts_a_background_load_for_later_calls(
    tokens: Any, jwks_server: Any, make_verifier: Callable[..., Any]
) -> None:
    verifier = _jwks_verifier(make_verifier, tokens, jwks_server.url)
    token = tokens.rs(tokens.claims(), kid="rsa-1")
    with pytest.raises(AuthError):
        verifier.verify(token)

    jwks_server.wait_for_hits(1)
    verifier.refresh_keys()  # joins the background load when it is still running

    assert verifier.verify(token).subject == "device-fleet-1"
    assert jwks_server.hits in (1, 2)  # 2 only when the load had already finished
