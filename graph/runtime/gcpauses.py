"""How long each garbage collection paused the process, by generation.

A collection runs on whichever thread allocated the object that crossed a threshold, holding the
GIL until it is done: the event loop and every thread wait. Young collections take microseconds;
a full one (generation 2) walks every tracked object not frozen at start-up, and is the classic
cause of a tail-latency spike in a Python server. `failcast_gc_pause_seconds{generation}` (a
histogram) shows each collection's pause, so a p99 that grows can be told apart from one the
database or the event loop causes (`failcast_event_loop_lag_seconds`), and `bench` reads it after
its tail run.
"""

import gc
import time
from collections.abc import Callable
from typing import Any

Observe = Callable[[int, float], None]


class GcPauses:
    """A `gc.callbacks` entry timing each collection: `observe(generation, seconds)`."""

    def __init__(self, observe: Observe) -> None:
        self._observe = observe
        self._started: float | None = None

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        # A collection cannot start inside another (the collector is not re-entrant): "start"
        # and "stop" alternate, on one thread, under the GIL.
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started is not None:
            paused, self._started = time.perf_counter() - self._started, None
            self._observe(int(info.get("generation", -1)), paused)

    def install(self) -> None:
        """Time every collection from now on."""
        if self not in gc.callbacks:
            gc.callbacks.append(self)

    def remove(self) -> None:
        """Stop timing collections."""
        if self in gc.callbacks:
            gc.callbacks.remove(self)
