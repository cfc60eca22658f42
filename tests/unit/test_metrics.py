"""The bulk histogram exposes what prometheus_client's Histogram would, for the same values."""

import random

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from graph.runtime.metrics import PROBABILITY_BUCKETS, BulkHistogram


def _samples(registry: CollectorRegistry) -> dict[str, float]:
    lines = generate_latest(registry).decode().splitlines()
    pairs = (line.rsplit(" ", 1) for line in lines if line and not line.startswith("#"))
    return {name: float(value) for name, value in pairs if "_created" not in name}


def test_bulk_histogram_matches_prometheus_histogram():
    rng = random.Random(3)
    values = [0.0, 0.01, 0.05, 0.99, 1.0, 1.5] + [rng.random() for _ in range(3000)]
    reference = CollectorRegistry()
    histogram = Histogram("p", "P", buckets=PROBABILITY_BUCKETS, registry=reference)
    for value in values:
        histogram.observe(value)
    bulk_registry = CollectorRegistry()
    bulk = BulkHistogram("p", "P", PROBABILITY_BUCKETS)
    bulk_registry.register(bulk)
    for start, end in [(0, 1), (1, 6), (6, 22), (22, 1000), (1000, len(values))]:
        bulk.observe_many(values[start:end])  # small calls bisect, large ones use numpy
    expected, got = _samples(reference), _samples(bulk_registry)
    assert got.keys() == expected.keys()
    assert got.pop("p_sum") == pytest.approx(expected.pop("p_sum"))
    assert got == expected
