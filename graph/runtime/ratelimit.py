"""Per-subject token buckets, configurable per scope, shared by the processes of a deployment.

Each process enforces its share, rate / live processes, of the deployment's limit: processes
report themselves alive every few seconds (persistence.heartbeat), so the sum over processes
stays the configured rate without a database round trip on the request path.
"""

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from persistence import PersistenceError, heartbeat, leave, new_id

log = logging.getLogger("failcast.ratelimit")

MAX_TRACKED = 10_000  # buckets kept; the least recently used are forgotten first


@dataclass(frozen=True)
class Rate:
    """Requests per second, and how many may come at once."""

    per_second: float
    burst: float


class _Bucket:
    __slots__ = ("tokens", "updated")

    def __init__(self, tokens: float, now: float) -> None:
        self.tokens, self.updated = tokens, now


class RateLimiter:
    """Token buckets keyed by (subject, scope)."""

    def __init__(self, rates: Mapping[str, Rate], clock: Callable[[], float] = time.monotonic):
        self.rates = dict(rates)
        self.clock = clock
        self.processes = 1
        self.on_refusal: Callable[[str], None] | None = None
        self._buckets: OrderedDict[tuple[str, str], _Bucket] = OrderedDict()

    def acquire(self, subject: str, scope: str, cost: float = 1.0) -> float | None:
        """Take `cost` tokens; None when allowed, else the seconds to wait before retrying."""
        rate = self.rates.get(scope)
        if rate is None:
            return None
        share = max(self.processes, 1)
        per_second, burst = rate.per_second / share, max(rate.burst / share, cost)
        now = self.clock()
        bucket = self._bucket((subject, scope), burst, now)
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.updated) * per_second)
        bucket.updated = now
        if bucket.tokens >= cost:
            bucket.tokens -= cost
            return None
        if self.on_refusal is not None:
            self.on_refusal(scope)
        return (cost - bucket.tokens) / per_second if per_second > 0 else math.inf

    def _bucket(self, key: tuple[str, str], burst: float, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(burst, now)
            if len(self._buckets) > MAX_TRACKED:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket


async def keep_share(limiters: Sequence[RateLimiter], engine: Engine, interval_s: float) -> None:
    """Heartbeat forever and keep the limiters' count of live processes current."""
    instance: uuid.UUID = new_id()
    try:
        while True:
            try:
                stale = interval_s * 3
                processes = await asyncio.to_thread(heartbeat, engine, instance, stale)
                for limiter in limiters:
                    limiter.processes = processes
            except PersistenceError as error:
                log.warning("heartbeat failed (%s); keeping the last share", error)
            await asyncio.sleep(interval_s)
    finally:
        with contextlib.suppress(PersistenceError):  # otherwise it ages out
            await asyncio.to_thread(leave, engine, instance)
