"""bench.pauses reads what paused a server from the exposition failcast's metrics really write
(so a renamed metric fails here, not silently as zeros in the bench's table)."""

import math
import os
import threading
import time
from pathlib import Path

from bench.load import LoadResult
from bench.measure import TAIL, Run
from bench.pauses import between, parse, total
from bench.procs import loop_thread_cpu_seconds, own_cpu_seconds
from bench.report import Results, tail_table
from graph.runtime.metrics import Metrics
from persistence import create_db_engine


def test_the_pauses_of_a_run_are_read_from_two_expositions(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'metrics.db'}")
    metrics = Metrics(engine)
    metrics.observe_gc_pause(2, 0.004)
    metrics.observe_loop_lag(61.0, 61.0)  # before the run (a server stopped meanwhile)
    metrics.observe_group_commit(0.2)  # before the run: not counted
    before = parse(metrics.exposition().decode())
    for seconds in (0.010, 0.030):  # two full collections
        metrics.observe_gc_pause(2, seconds)
    metrics.observe_gc_pause(0, 0.0005)
    metrics.observe_gc_pause(1, 0.0015)
    for lag in (0.002, 0.040, 0.120):  # two of them 25 ms and more
        metrics.observe_loop_lag(lag, 0.120)
    for seconds in (0.004, 0.049, 0.051, 0.300):  # two of them 50 ms and more
        metrics.observe_group_commit(seconds)
    pauses = between(before, parse(metrics.exposition().decode()))
    engine.dispose()
    assert pauses.full_collections == 2
    assert abs(pauses.full_collection_ms - 40.0) < 1e-6
    assert abs(pauses.young_collection_ms - 2.0) < 1e-6
    # the run's worst, 120 ms, in the (100, 250] ms bucket: not the gauge's 61 s from before
    assert pauses.long_lags == 2 and pauses.worst_lag_ms == 250.0
    assert pauses.long_commits == 2
    assert pauses.show() == (
        "gc2 2 x 20.0 ms, gc0/1 2 ms; lag >= 25 ms: 2, max <= 250 ms; commits >= 50 ms: 2"
    )
    both = total([pauses, pauses])
    assert both is not None and both.full_collections == 4 and both.long_lags == 4
    assert both.long_commits == 4
    assert total([]) is None


def test_the_worst_lag_of_a_run_is_its_own_bucket(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'metrics.db'}")
    metrics = Metrics(engine)
    metrics.observe_loop_lag(0.3, 0.3)
    before = parse(metrics.exposition().decode())
    quiet = between(before, parse(metrics.exposition().decode()))
    metrics.observe_loop_lag(0.004, 0.3)
    small = between(before, parse(metrics.exposition().decode()))
    metrics.observe_loop_lag(2.5, 2.5)
    beyond = between(before, parse(metrics.exposition().decode()))
    engine.dispose()
    assert (quiet.worst_lag_ms, small.worst_lag_ms, beyond.worst_lag_ms) == (0.0, 5.0, math.inf)
    assert "max 0 ms;" in quiet.show() and "max <= 5 ms;" in small.show()
    assert "lag >= 25 ms: 1, max > 1 s;" in beyond.show()


def test_an_exposition_without_the_pause_metrics_reads_as_none() -> None:
    empty = parse("# HELP x y\nx 1\n")
    assert between(empty, empty).full_collections == 0 == between(empty, empty).long_lags
    assert between(empty, empty).long_commits == 0


def test_the_event_loop_threads_cpu_is_its_own_not_the_whole_process() -> None:
    def spin() -> None:  # another thread's CPU: the process's, not the first thread's
        end = time.thread_time() + 0.3
        while time.thread_time() < end:
            pass

    pid = os.getpid()
    loop_before, process_before = loop_thread_cpu_seconds(pid), own_cpu_seconds(pid)
    worker = threading.Thread(target=spin)
    worker.start()
    worker.join()
    assert own_cpu_seconds(pid) - process_before >= 0.25
    assert loop_thread_cpu_seconds(pid) - loop_before < 0.1
    spin()  # this (first) thread's own
    assert loop_thread_cpu_seconds(pid) - loop_before >= 0.25
    assert loop_thread_cpu_seconds(2**22 + 12345) == 0.0  # no such process


def test_the_tail_row_shows_the_event_loops_share_beside_the_servers_cores() -> None:
    load = LoadResult(
        requests=20_000, sent=20_000, duration_s=10.0, non_2xx=0, socket_errors=0, timeouts=0,
        p50_ms=14.0, p99_ms=21.0, client_cpu_s=0.4,
    )  # fmt: skip
    run = Run("sqlite", TAIL, load, cpu_s=10.5, rows_per_request=1, connections=32,
              machine_cpu_s=11.0, loop_cpu_s=8.0)  # fmt: skip
    assert run.loop_busy() == 0.8
    row = tail_table(Results([], [run], [], [], [], "", []))[2]
    assert "| 1.05 (loop 0.80) + 0.00 + 0.04 + 0.01 |" in row
    unmeasured = Run("reference", TAIL, load, cpu_s=10.5, rows_per_request=1, connections=32)
    assert unmeasured.loop_busy() is None
    assert "(loop" not in tail_table(Results([], [unmeasured], [], [], [], "", []))[2]
