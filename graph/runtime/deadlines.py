"""Time limits for the request path: what `asyncio.timeout` does, at a fraction of its cost.

`asyncio.timeout` makes a TimerHandle for each use, pushes it on the event loop's heap and
cancels it on the way out: about 6 us a use on this machine, more under load, where the heap
holds thousands of cancelled handles. A `predict` used three (its body, its operation, its
commit): about 8% of its event loop's CPU.

Here every limit that ends in the same slot of `RESOLUTION` seconds shares one loop timer, and
entering and leaving a limit is a set insertion and removal. A limit fires at most RESOLUTION
late. When it fires it does what `asyncio.timeout`'s does: the task is cancelled, and the
CancelledError that leaves the block becomes a TimeoutError, unless the task was also cancelled
from elsewhere (then the cancellation goes on). Use it as a plain `with` block in a coroutine:

    with time_limit(3.0):
        await something()
"""

import asyncio
import math
import weakref
from types import TracebackType

RESOLUTION = 0.005  # seconds: limits ending within one slot share its timer


class _Slots:
    """One event loop's limits, by the slot they end in, each slot with one timer."""

    __slots__ = ("slots",)  # not the loop: the loops' map holds it weakly, its slots strongly

    def __init__(self) -> None:
        self.slots: dict[int, set[TimeLimit]] = {}

    def add(
        self, loop: asyncio.AbstractEventLoop, limit: "TimeLimit", when: float
    ) -> set["TimeLimit"]:
        key = math.ceil(when / RESOLUTION)
        slot = self.slots.get(key)
        if slot is None:
            slot = self.slots[key] = set()
            loop.call_at(key * RESOLUTION, self._fire, key)
        slot.add(limit)
        return slot

    def _fire(self, key: int) -> None:
        for limit in self.slots.pop(key, ()):
            limit.expire()


_LOOPS: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Slots]" = weakref.WeakKeyDictionary()


def _slots(loop: asyncio.AbstractEventLoop) -> _Slots:
    found = _LOOPS.get(loop)
    if found is None:
        found = _LOOPS[loop] = _Slots()
    return found


class TimeLimit:
    """A limit on the time a block of a task may take (see the module docstring)."""

    __slots__ = ("_cancelling", "_expired", "_slot", "_task", "when")

    def __init__(self, when: float) -> None:
        self.when = when  # on the loop's clock (loop.time())
        self._expired = False

    def __enter__(self) -> "TimeLimit":
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("a time limit needs to run in a task")
        self._task = task
        self._cancelling = task.cancelling()
        self._slot = _slots(loop).add(loop, self, self.when)
        return self

    @property
    def expired(self) -> bool:
        """Whether the limit fired."""
        return self._expired

    def expire(self) -> None:
        """The time is up: cancel the task (its block sees CancelledError)."""
        self._expired = True
        self._task.cancel()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._slot.discard(self)
        # as asyncio.Timeout: the cancellation was ours unless another one came too
        ours = self._expired and self._task.uncancel() <= self._cancelling
        if ours and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc


def time_limit(seconds: float) -> TimeLimit:
    """A limit of `seconds` from now."""
    return TimeLimit(asyncio.get_running_loop().time() + seconds)
