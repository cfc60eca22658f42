"""The JWK set of one URL, held in memory and refreshed on a thread of its own."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlparse

import jwt

from auth.config import AuthConfig
from auth.errors import AuthError, Reason
from auth.jwks import JwksFetchError, KeySet, fetch_jwks

_log = logging.getLogger(__name__)

# Resolves to True when the fetch brought a usable key set, False when it failed.
Refresh = Future[bool]


def key_unavailable() -> AuthError:
    """The error for a token whose key cannot be looked up right now."""
    return AuthError(Reason.KEY_UNAVAILABLE, "token signing keys are unavailable")


def unknown_kid() -> AuthError:
    """The error for a token whose kid is not among the known keys."""
    return AuthError(Reason.UNKNOWN_KID, "token key id is not recognised")


@dataclass(frozen=True)
class Pending:
    """A key that may arrive with `refresh`; `error` is the answer for callers that won't wait."""

    refresh: Refresh
    error: AuthError


class JwksCache:
    """Signing keys from one JWKS URL: lookups never wait, and one fetch runs at a time."""

    def __init__(self, url: str, config: AuthConfig) -> None:
        self._url = url
        self._timeout = config.jwks_timeout_seconds
        self._max_age = config.jwks_cache_seconds
        self._min_refresh = config.jwks_min_refresh_seconds
        self._failure_window = config.jwks_failure_cache_seconds
        self._clock: Callable[[], float] = time.monotonic  # intervals, not token times
        # Guards the fields below; held for bookkeeping only, never during a fetch, so
        # taking it on an event loop costs microseconds.
        self._lock = threading.Lock()
        self._keys: KeySet | None = None
        self._loaded_at = -math.inf
        self._started_at = -math.inf
        self._failed_at = -math.inf
        self._inflight: Refresh | None = None
        self._inflight_kid: str | None = None  # the unknown kid whose miss started it
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False
        # Bumped when a refresh drops or replaces a kid, so results verified with the
        # old set can be recognised (and no longer trusted) by the token cache.
        self.generation = 0

    def find(self, kid: str, *, fetch: bool) -> jwt.PyJWK | Pending:
        """Return the key for `kid`, or (when `fetch`) the refresh that may bring it; else raise."""
        with self._lock:
            now = self._clock()
            found = self._keys.get(kid) if self._keys is not None else None
            if found is not None:
                self._refresh_in_background(now)
                return found.jwk
            if not fetch:
                raise self._miss_error(now)
            refresh = self._refresh_for_miss(kid, now)
            return Pending(refresh, self._miss_error(now))

    def refresh_if_stale(self) -> None:
        """Start a background refresh when the loaded set is older than the cache period."""
        # Unlocked pre-check: this runs on every token-cache hit and is almost always False.
        if self._keys is None or self._clock() - self._loaded_at < self._max_age:
            return
        with self._lock:
            self._refresh_in_background(self._clock())

    def refresh_now(self) -> Refresh:
        """Start a refresh regardless of the rate limits, or join the one running."""
        with self._lock:
            refresh = self._start(self._clock())
        if refresh is None:
            raise key_unavailable()
        return refresh

    def close(self) -> None:
        """Stop the refresh thread once any running fetch ends; loaded keys stay usable."""
        with self._lock:
            self._closed = True
            executor, self._executor = self._executor, None
        if executor is not None:
            # No cancel_futures: a queued refresh still runs, so its waiters are released.
            executor.shutdown(wait=False)

    def _failing(self, now: float) -> bool:
        return now - self._failed_at < self._failure_window

    def _miss_error(self, now: float) -> AuthError:
        if self._keys is None or self._failing(now):
            return key_unavailable()
        return unknown_kid()

    def _refresh_in_background(self, now: float) -> None:
        stale = self._keys is not None and now - self._loaded_at >= self._max_age
        if stale and not self._failing(now):
            self._start(now)

    def _refresh_for_miss(self, kid: str, now: float) -> Refresh:
        # With nothing loaded every caller needs the fetch; with a set loaded, only callers
        # of the kid that started it wait for it, the other unknown kids are refused below.
        if self._inflight is not None and (self._keys is None or kid == self._inflight_kid):
            return self._inflight
        if self._failing(now):
            raise key_unavailable()
        if self._keys is not None and now - self._started_at < self._min_refresh:
            raise unknown_kid()  # random kids must not turn into a request (or a wait) each
        started = self._inflight is None  # else a fetch outlived the interval: join it
        refresh = self._start(now)
        if refresh is None:
            raise key_unavailable()
        if started:
            self._inflight_kid = kid
        return refresh

    def _start(self, now: float) -> Refresh | None:
        if self._inflight is not None:
            return self._inflight
        if self._closed:
            return None
        if self._executor is None:
            # Our own thread: asyncio's default executor is busy with the server's writes.
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="failcast-jwks")
        try:
            self._inflight = self._executor.submit(self._run)
        except RuntimeError:  # the interpreter is shutting down
            return None
        self._started_at = now
        return self._inflight

    def _run(self) -> bool:
        keys: KeySet | None = None
        try:
            keys = self._fetch()
        finally:
            self._finish(keys)  # before the future resolves, so waiters see the new state
        return keys is not None

    def _fetch(self) -> KeySet | None:
        host = urlparse(self._url).hostname
        try:
            return fetch_jwks(self._url, self._timeout)
        except JwksFetchError as exc:
            _log.warning("JWKS refresh from %s failed: %s", host, exc)
        except Exception:
            # Nobody awaits this thread's exceptions: log it and treat it as a failed fetch.
            _log.exception("JWKS refresh from %s failed unexpectedly", host)
        return None

    def _finish(self, keys: KeySet | None) -> None:
        with self._lock:
            now = self._clock()
            self._inflight, self._inflight_kid = None, None
            if keys is None:
                self._failed_at = now
                return
            if self._keys is not None and _drops_or_changes(self._keys, keys):
                self.generation += 1
            self._keys, self._loaded_at, self._failed_at = keys, now, -math.inf


def _drops_or_changes(old: KeySet, new: KeySet) -> bool:
    return any(
        kid not in new or new[kid].fingerprint != key.fingerprint for kid, key in old.items()
    )
