"""What paused a failcast server during a load run, from its own /metrics before and after.

Three of failcast's metrics say where a tail comes from: `failcast_gc_pause_seconds{generation}`
(each garbage collection stops every thread), `failcast_event_loop_lag_seconds` (how late a
timer due every 50 ms ran: whatever blocked the loop, the collector included) and
`failcast_group_commit_seconds` (how long each group commit took: every request of the group
waits on it, while the loop goes on). The bench reads them around each run of a
single-process server and reports the full collections (generation 2) with their mean pause,
the loop's pauses of 25 ms and more, and the group commits of 50 ms and more: a p99 that grows
again shows here with its cause, the server's own work or its storage.
"""

import math
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

LAG = "failcast_event_loop_lag_seconds"
GC = "failcast_gc_pause_seconds"
COMMIT = "failcast_group_commit_seconds"
LONG_LAG = "0.025"  # the bucket bound: pauses of 25 ms and more are counted as long
LONG_COMMIT = "0.05"  # group commits of 50 ms and more are counted as long


@dataclass(frozen=True)
class Snapshot:
    """The counters read from one /metrics exposition."""

    full_collections: float
    full_collection_seconds: float
    young_collections: float
    young_collection_seconds: float
    lags: float
    short_lags: float  # at most LONG_LAG seconds
    # failcast_event_loop_lag_seconds' cumulative buckets: (upper bound in seconds, count)
    lag_buckets: tuple[tuple[float, float], ...] = ()
    commits: float = 0.0
    short_commits: float = 0.0  # at most LONG_COMMIT seconds


@dataclass(frozen=True)
class Pauses:
    """What paused the server between two snapshots."""

    full_collections: int
    full_collection_ms: float  # their total pause
    young_collection_ms: float  # the total pause of generations 0 and 1
    long_lags: int  # loop pauses over LONG_LAG
    worst_lag_ms: float  # the upper bound of its histogram bucket (see _worst_lag_ms)
    long_commits: int = 0  # group commits over LONG_COMMIT

    def _worst_lag(self) -> str:
        if self.worst_lag_ms == 0.0:
            return "0 ms"
        if math.isinf(self.worst_lag_ms):
            return "> 1 s"
        return f"<= {self.worst_lag_ms:.0f} ms"

    def show(self) -> str:
        """A table cell: full collections with their mean, loop pauses >= 25 ms, the worst,
        group commits >= 50 ms."""
        mean = self.full_collection_ms / self.full_collections if self.full_collections else 0.0
        return (
            f"gc2 {self.full_collections} x {mean:.1f} ms, gc0/1 {self.young_collection_ms:.0f}"
            f" ms; lag >= 25 ms: {self.long_lags}, max {self._worst_lag()};"
            f" commits >= 50 ms: {self.long_commits}"
        )


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition, by name and labels (prometheus_client's own parser)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def parse(text: str) -> Snapshot:
    """The pause counters of a Prometheus text exposition (absent ones are 0)."""
    found = _samples(text)

    def get(name: str, **labels: str) -> float:
        return found.get((name, frozenset(labels.items())), 0.0)

    young = ("0", "1")
    return Snapshot(
        full_collections=get(f"{GC}_count", generation="2"),
        full_collection_seconds=get(f"{GC}_sum", generation="2"),
        young_collections=sum(get(f"{GC}_count", generation=g) for g in young),
        young_collection_seconds=sum(get(f"{GC}_sum", generation=g) for g in young),
        lags=get(f"{LAG}_count"),
        short_lags=get(f"{LAG}_bucket", le=LONG_LAG),
        lag_buckets=tuple(
            sorted(
                (float(dict(labels)["le"]), value)
                for (name, labels), value in found.items()
                if name == f"{LAG}_bucket" and dict(labels)["le"] != "+Inf"
            )
        ),
        commits=get(f"{COMMIT}_count"),
        short_commits=get(f"{COMMIT}_bucket", le=LONG_COMMIT),
    )


def scrape(base_url: str, token: str) -> Snapshot:
    """A server's pause counters now."""
    headers = {"Authorization": f"Bearer {token}"}
    response = httpx.get(f"{base_url}/metrics", headers=headers, timeout=10)
    response.raise_for_status()
    return parse(response.text)


def total(runs: "list[Pauses]") -> Pauses | None:
    """The pauses of several runs together (the worst lag: the worst of them)."""
    if not runs:
        return None
    return Pauses(
        full_collections=sum(r.full_collections for r in runs),
        full_collection_ms=sum(r.full_collection_ms for r in runs),
        young_collection_ms=sum(r.young_collection_ms for r in runs),
        long_lags=sum(r.long_lags for r in runs),
        worst_lag_ms=max(r.worst_lag_ms for r in runs),
        long_commits=sum(r.long_commits for r in runs),
    )


def between(before: Snapshot, after: Snapshot) -> Pauses:
    """The pauses of the run between two snapshots."""
    long_before = before.lags - before.short_lags
    return Pauses(
        full_collections=round(after.full_collections - before.full_collections),
        full_collection_ms=(after.full_collection_seconds - before.full_collection_seconds) * 1e3,
        young_collection_ms=(after.young_collection_seconds - before.young_collection_seconds)
        * 1e3,
        long_lags=round((after.lags - after.short_lags) - long_before),
        worst_lag_ms=_worst_lag_ms(before, after),
        long_commits=round(
            (after.commits - after.short_commits) - (before.commits - before.short_commits)
        ),
    )


def _worst_lag_ms(before: Snapshot, after: Snapshot) -> float:
    """The upper bound of the histogram bucket of the run's own worst loop pause (0: no lag
    observed, infinity: beyond the last bucket). Read from the histogram, not from the max
    gauge: the gauge covers the last 60 to 120 s, earlier runs (and a server stopped by the
    bench meanwhile) included."""
    observed = after.lags - before.lags
    if observed <= 0:
        return 0.0
    earlier = dict(before.lag_buckets)
    for bound, count in after.lag_buckets:
        if count - earlier.get(bound, 0.0) >= observed:
            return bound * 1e3
    return math.inf
