"""Prometheus metrics of one server process (each app has its own registry)."""

import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from sqlalchemy.engine import Engine

from model.drift import GAUGE_VALUE
from persistence import PredictionBlock

if TYPE_CHECKING:
    from graph.runtime.monitoring import DriftReport

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
SMALL = 16  # observations below which plain bisection beats numpy
PROBABILITY_BUCKETS = (0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)


class _PoolCollector(Collector):
    """Reads the database pool's state when scraped, so the request path pays nothing."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterable[GaugeMetricFamily]:
        pool: Any = self.engine.pool
        family = GaugeMetricFamily(
            "failcast_db_pool_connections", "Database pool connections by state", labels=["state"]
        )
        for state in ("checkedout", "checkedin", "overflow", "size"):
            reader = getattr(pool, state, None)
            if callable(reader):
                family.add_metric([state], float(reader()))
        yield family


class _ModelCalls(Collector):
    """The grouped model calls (graph.runtime.scoring), read when scraped: the request path
    only adds to two ints."""

    def __init__(self, read: Callable[[], tuple[int, int]]) -> None:
        self.read = read

    def collect(self) -> Iterable[CounterMetricFamily]:
        calls, requests = self.read()
        yield CounterMetricFamily(
            "failcast_model_calls",
            "Model calls made for the few-row requests that reached the model in one turn of "
            "the event loop (each call scores a group of them)",
            value=calls,
        )
        yield CounterMetricFamily(
            "failcast_model_call_requests",
            "Requests those calls answered: over failcast_model_calls_total, the mean group",
            value=requests,
        )


class BulkHistogram(Collector):
    """A label-less histogram that takes a whole array of observations in one call.

    prometheus_client's Histogram.observe costs about 1 us per value, a millisecond per
    1,000-row batch on the event loop; here a batch is one numpy bucketing under a lock.
    """

    def __init__(self, name: str, documentation: str, buckets: Sequence[float]) -> None:
        self.name, self.documentation = name, documentation
        self.bounds = np.asarray(sorted(buckets), dtype=float)
        self._bounds = self.bounds.tolist()
        self._counts = np.zeros(len(self.bounds) + 1, dtype=np.int64)  # the last one is +Inf
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe_many(self, values: Sequence[float]) -> None:
        """Count every value in its bucket (le: value <= bound) and add it to the sum."""
        if len(values) <= SMALL:  # numpy's per-call cost exceeds a few bisections
            found = [bisect_left(self._bounds, value) for value in values]
            total = float(sum(values))
            with self._lock:
                for slot in found:
                    self._counts[slot] += 1
                self._sum += total
            return
        array = np.asarray(values, dtype=float)
        slots = np.searchsorted(self.bounds, array, side="left")
        counts = np.bincount(slots, minlength=len(self._counts))
        total = float(array.sum())
        with self._lock:
            self._counts += counts
            self._sum += total

    def collect(self) -> Iterable[HistogramMetricFamily]:
        with self._lock:
            cumulative = np.cumsum(self._counts).tolist()
            total = self._sum
        bounds = [*(floatToGoString(b) for b in self.bounds), "+Inf"]  # type: ignore[no-untyped-call]
        family = HistogramMetricFamily(self.name, self.documentation)
        family.add_metric([], list(zip(bounds, cumulative, strict=True)), total)
        yield family


class DriftGauges(Collector):
    """The active version's input drift, as the background task last measured it.

    `failcast_drift_status` (overall) and `failcast_drift_feature_status` take 0 (OK), 1 (WARN),
    2 (ALERT) or -1 (INSUFFICIENT_DATA); `failcast_drift_psi` and `failcast_drift_ks_statistic`
    are left out for a feature with no prediction in the window. Nothing but the refresh time
    is shown until a report exists (no active version, or one without an input profile).
    """

    def __init__(self) -> None:
        self._report: DriftReport | None = None
        self._refreshed: float | None = None
        self._lock = threading.Lock()

    def show(self, report: "DriftReport | None") -> None:
        """Replace what the gauges say (None: nothing to say)."""
        with self._lock:
            self._report, self._refreshed = report, time.time()

    def collect(self) -> Iterable[GaugeMetricFamily]:
        with self._lock:
            report, refreshed = self._report, self._refreshed
        stamp = GaugeMetricFamily(
            "failcast_drift_refreshed_timestamp_seconds",
            "When the drift gauges were last computed (Unix time)",
        )
        if refreshed is not None:
            stamp.add_metric([], refreshed)
        yield stamp
        if report is None:
            return
        version = [report.model_version]
        labels = ["model_version", "feature"]
        overall = GaugeMetricFamily(
            "failcast_drift_status",
            "Input drift of the active version: 0 OK, 1 WARN, 2 ALERT, -1 INSUFFICIENT_DATA",
            labels=["model_version"],
        )
        overall.add_metric(version, GAUGE_VALUE[report.status])
        size = GaugeMetricFamily(
            "failcast_drift_sample_size",
            "Predictions of the active version in the drift window",
            labels=["model_version"],
        )
        size.add_metric(version, float(report.sample_size))
        status = GaugeMetricFamily(
            "failcast_drift_feature_status", "Drift status per feature (as above)", labels=labels
        )
        psi = GaugeMetricFamily(
            "failcast_drift_psi", "Population stability index per feature", labels=labels
        )
        ks = GaugeMetricFamily(
            "failcast_drift_ks_statistic", "Two-sample Kolmogorov-Smirnov D", labels=labels
        )
        for feature in report.features:
            named = [*version, feature.feature]
            status.add_metric(named, GAUGE_VALUE[feature.status])
            if feature.psi is not None and feature.ks is not None:
                psi.add_metric(named, feature.psi)
                ks.add_metric(named, feature.ks)
        yield from (overall, size, status, psi, ks)


class Metrics:
    """The service's metrics, registered in a registry of their own."""

    def __init__(self, engine: Engine) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "failcast_requests_total", "API requests", ["operation", "outcome"], registry=r
        )
        self.latency = Histogram(
            "failcast_request_duration_seconds",
            "Time to answer, commit included",
            ["operation", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.predictions = Counter(
            "failcast_predictions_total",
            "Stored predictions",
            ["label", "model_version"],
            registry=r,
        )
        self.probability = BulkHistogram(
            "failcast_failure_probability", "Predicted P(failure)", PROBABILITY_BUCKETS
        )
        r.register(self.probability)
        self.active_model = Gauge(
            "failcast_active_model_info",
            "The model version serving (value 1)",
            ["version"],
            registry=r,
        )
        self.rate_limited = Counter(
            "failcast_rate_limited_total",
            "Requests refused by a rate limit",
            ["scope"],
            registry=r,
        )
        self.alert_subscriptions = Gauge(
            "failcast_alert_subscriptions",
            "failureAlerts subscriptions open on this process",
            registry=r,
        )
        self.webhook_attempts = Counter(
            "failcast_webhook_attempts_total",
            "Webhook POSTs by outcome (delivered, retried, dead)",
            ["outcome"],
            registry=r,
        )
        self.loop_lag = Histogram(
            "failcast_event_loop_lag_seconds",
            "How late the event loop ran a timer due every 50 ms (the time it was blocked)",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=r,
        )
        self.gc_pause = Histogram(
            "failcast_gc_pause_seconds",
            "How long each garbage collection paused the process (every thread), by generation",
            ["generation"],
            buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
            registry=r,
        )
        self.group_commit = Histogram(
            "failcast_group_commit_seconds",
            "How long each group commit took, from its records handed to a writer to its "
            "outcome: every request of the group waits this long (a stall of the database or "
            "its file system shows here, not in the event loop's lag)",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=r,
        )
        self.loop_lag_max = Gauge(
            "failcast_event_loop_lag_max_seconds",
            "The longest the event loop was blocked over the last 60 to 120 s",
            registry=r,
        )
        # The request path's labelled children, by metric and labels (none is ever removed):
        # labels() checks and locks on every call.
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}
        r.register(_PoolCollector(engine))
        self.drift = DriftGauges()
        r.register(self.drift)

    def observe_request(self, operation: str, outcome: str, seconds: float) -> None:
        """Count one request and its duration."""
        self._child(self.requests, operation, outcome).inc()
        self._child(self.latency, operation, outcome).observe(seconds)

    def observe_predictions(self, version: str, block: PredictionBlock) -> None:
        """Count stored predictions by label and by the version that made them; probabilities."""
        failures = sum(block.is_failure)
        if failures:
            self._child(self.predictions, "FAILURE", version).inc(failures)
        if len(block) - failures:
            self._child(self.predictions, "NON_FAILURE", version).inc(len(block) - failures)
        self.probability.observe_many(block.failure_probability)

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (metric, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def count_model_calls(self, read: Callable[[], tuple[int, int]]) -> None:
        """Export the grouped model calls and the requests they answered, as `read` gives."""
        self.registry.register(_ModelCalls(read))

    def observe_loop_lag(self, lag: float, worst: float) -> None:
        """One lateness of the event loop's timer, and the worst of the current window."""
        self.loop_lag.observe(lag)
        self.loop_lag_max.set(worst)

    def observe_group_commit(self, seconds: float) -> None:
        """One group commit's duration."""
        self.group_commit.observe(seconds)

    def observe_gc_pause(self, generation: int, seconds: float) -> None:
        """One garbage collection of `generation` that paused the process for `seconds`."""
        self.gc_pause.labels(str(generation)).observe(seconds)

    def serving(self, version: str | None) -> None:
        """Mark the version that serves now (and only it)."""
        self.active_model.clear()
        if version is not None:
            self.active_model.labels(version).set(1)

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(self.registry)
