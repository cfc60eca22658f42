"""How long the event loop was blocked: a timer that should fire every INTERVAL, and how late it
fired (the loop ran something else meanwhile: a long synchronous step, the collector, a GIL held
by another thread). Every request waits behind such a pause, so it shows in the tail latency;
`failcast_event_loop_lag_seconds` (a histogram of every lateness) and
`failcast_event_loop_lag_max_seconds` (the worst of the last WINDOW seconds) make it visible.
"""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

INTERVAL = 0.05  # seconds between timer checks: 20 a second, a few microseconds each
WINDOW = 60.0  # the max gauge covers at least this long (the current window and the last one)


@dataclass
class LoopLag:
    """The longest lateness of the current and of the last window."""

    window: float = WINDOW
    _current: float = 0.0
    _previous: float = 0.0
    _started: float | None = field(default=None)

    def note(self, lag: float, now: float) -> float:
        """Record one lateness at loop time `now`; the worst over the last one or two windows."""
        if self._started is None:
            self._started = now
        elif now - self._started >= self.window:
            self._previous, self._current, self._started = self._current, 0.0, now
        self._current = max(self._current, lag)
        return max(self._current, self._previous)


async def watch(
    observe: Callable[[float, float], None], interval: float = INTERVAL, window: float = WINDOW
) -> None:
    """Measure the loop's lateness for ever: `observe(lateness, worst of the window)`."""
    loop = asyncio.get_running_loop()
    worst = LoopLag(window)
    while True:
        start = loop.time()
        await asyncio.sleep(interval)
        now = loop.time()
        lag = max(0.0, now - start - interval)
        observe(lag, worst.note(lag, now))
