"""bench.pauses reads what paused a server from the exposition failcast's metrics really write
(so a renamed metric fails here, not silently as zeros in the bench's table)."""

from pathlib import Path

from bench.pauses import between, parse, total
from graph.runtime.metrics import Metrics
from persistence import create_db_engine


def test_the_pauses_of_a_run_are_read_from_two_expositions(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'metrics.db'}")
    metrics = Metrics(engine)
    metrics.observe_gc_pause(2, 0.004)
    metrics.observe_loop_lag(0.001, 0.001)
    before = parse(metrics.exposition().decode())
    for seconds in (0.010, 0.030):  # two full collections
        metrics.observe_gc_pause(2, seconds)
    metrics.observe_gc_pause(0, 0.0005)
    metrics.observe_gc_pause(1, 0.0015)
    for lag in (0.002, 0.040, 0.120):  # two of them 25 ms and more
        metrics.observe_loop_lag(lag, 0.120)
    pauses = between(before, parse(metrics.exposition().decode()))
    engine.dispose()
    assert pauses.full_collections == 2
    assert abs(pauses.full_collection_ms - 40.0) < 1e-6
    assert abs(pauses.young_collection_ms - 2.0) < 1e-6
    assert pauses.long_lags == 2 and abs(pauses.worst_lag_ms - 120.0) < 1e-6
    assert pauses.show() == "gc2 2 x 20.0 ms, gc0/1 2 ms; lag >= 25 ms: 2, max 120 ms"
    both = total([pauses, pauses])
    assert both is not None and both.full_collections == 4 and both.long_lags == 4
    assert total([]) is None


def test_an_exposition_without_the_pause_metrics_reads_as_none() -> None:
    empty = parse("# HELP x y\nx 1\n")
    assert between(empty, empty).full_collections == 0 == between(empty, empty).long_lags
