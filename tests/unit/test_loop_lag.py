"""The event loop's lateness: measured by a timer, the worst kept over a sliding window."""

import asyncio
import time

import pytest

from graph.runtime.looplag import LoopLag, watch


def test_a_blocked_loop_is_seen_late_by_about_the_time_it_was_blocked():
    seen: list[tuple[float, float]] = []

    async def run() -> None:
        watcher = asyncio.create_task(watch(lambda lag, worst: seen.append((lag, worst)), 0.01))
        await asyncio.sleep(0.05)
        time.sleep(0.2)  # a synchronous step on the loop: everything waits behind it
        await asyncio.sleep(0.05)
        watcher.cancel()

    asyncio.run(run())
    lags = [lag for lag, _ in seen]
    assert 0.15 <= max(lags) < 0.5
    assert sum(lag >= 0.15 for lag in lags) == 1  # one pause, seen once
    assert seen[-1][1] == max(lags)  # the worst of the window stays visible afterwards
    assert sorted(lags)[len(lags) // 2] < 0.05  # otherwise the timer is on time


def test_the_worst_lateness_is_kept_for_one_to_two_windows():
    window = LoopLag(window=10.0)
    assert window.note(0.3, now=0.0) == 0.3
    assert window.note(0.01, now=9.0) == 0.3  # same window
    assert window.note(0.02, now=10.5) == 0.3  # next window: the last one's worst still counts
    assert window.note(0.01, now=21.0) == pytest.approx(0.02)  # two windows on: forgotten


def test_each_garbage_collection_is_timed_by_generation_until_removed():
    import gc

    from graph.runtime.gcpauses import GcPauses

    seen: list[tuple[int, float]] = []
    pauses = GcPauses(lambda generation, seconds: seen.append((generation, seconds)))
    garbage = [[i] for i in range(200_000)]  # objects a full collection must walk
    pauses.install()
    pauses.install()  # once only
    try:
        started = time.perf_counter()
        gc.collect(2)
        took = time.perf_counter() - started
    finally:
        pauses.remove()
    del garbage
    full = [seconds for generation, seconds in seen if generation == 2]
    assert len(full) == 1 and 0 < full[0] <= took
    gc.collect(2)
    assert len([g for g, _ in seen if g == 2]) == 1  # removed: no longer timed
    assert pauses not in gc.callbacks
