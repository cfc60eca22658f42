"""Device histories at prediction time: the windows of earlier observations history features read.

A model whose features read a device's earlier observations (model.history) is served from
what failcast already stores: each device's stored predictions, one observation per
`observed_at`. `DeviceHistories.windows` gives each row of a request its window, the device's
latest `depth` observations strictly before the row's own time (and before it, rows of the
same request with earlier times), read in one indexed query per request for the devices this
process does not hold, and from a per-process cache for those it does.

The cache holds each device's latest `depth` observations (LRU, `FAILCAST_HISTORY_CACHE_DEVICES`
devices). It stays equal to the database:

- this process's own predictions are added to it when their transaction has committed
  (`RequestAudit` runs the hook after COMMIT, before the answer leaves);
- what other processes store: on SQLite every request first waits for a look at the
  predictions committed since the last one (rowid order is commit order there), which drops
  the devices they touch, this process's own excepted (plain SQL on a connection kept for
  that look: persistence.histories.CommitLog). The look runs once the requests already in the
  event loop's queue have asked for it too, so requests that arrive together share one look
  (each came before it began, so it sees every commit made before any of them came; each
  look on the loop let go of the GIL several times, which cost the loop's thread ~50 us a
  request under load); on PostgreSQL each committed block is announced (persistence.alerts)
  and another process's block is added to the devices held when the notification arrives, a few
  milliseconds after its commit (its observations come with the notification when they fit,
  as a `predict`'s do, else from one query), so devices served by several processes in turn
  stay cached in each;
- a read that raced with a commit of the same device is used by its request but not kept.

A row earlier than what the cache holds for its device (an out-of-order arrival) is read from
the database, as is any device the cache lacks. A row without a device id, or whose device has
no earlier observation stored, is scored as a first observation (as training does for a
device's first row) and gets a warning saying its history was missing.
"""

import asyncio
import bisect
import functools
import struct
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import numpy as np
import numpy.typing as npt
from sqlalchemy.engine import Engine

from model.history import HistoryFeatures
from persistence import histories
from persistence.histories import Observation
from persistence.records import METRIC_COLUMNS, DeviceObservation, PredictionBlock

FloatArray = npt.NDArray[np.float64]
NO_DEVICE = "history missing: no deviceId, so history features are those of a first observation"
SMALL_BLOCK = 16  # rows below which plain Python beats numpy's per-call cost
CATCH_UP_LIMIT = 50_000  # more rows stored by others since the last look: drop the whole cache


def no_history(device: str) -> str:
    """The warning of a row whose device has no earlier observation stored."""
    return (
        f"history missing: no observation of device {device} before this one is stored,"
        " so history features are those of a first observation"
    )


class Announced(Protocol):
    """Another process's committed block (graph.runtime.alerts.Announcement)."""

    @property
    def request_id(self) -> uuid.UUID: ...

    @property
    def first(self) -> uuid.UUID: ...

    @property
    def last(self) -> uuid.UUID: ...

    @property
    def observations(self) -> list[DeviceObservation] | None: ...


def pack(values: Sequence[float]) -> bytes:
    """One observation's counters as the cache keeps them: packed float64, 97 bytes for eight
    counters where a tuple of floats takes 312 (the cache holds up to 100,000 devices)."""
    return _packer(len(values)).pack(*values)


def unpack(packed: bytes) -> tuple[float, ...]:
    """The counters of a packed observation."""
    return _packer(len(packed) // 8).unpack(packed)


@functools.cache
def _packer(width: int) -> struct.Struct:
    return struct.Struct(f"<{width}d")


@dataclass(slots=True)
class Tail:
    """A device's latest observations, oldest first, one per time; `complete`: all it has;
    `count`: how many it has in all (-1 when not counted). Each observation's counters are
    packed (`pack`): about 1.3 KB a device of seven observations, where tuples took 2.8 KB."""

    times: list[datetime]
    values: list[bytes]
    complete: bool
    count: int = -1

    def serves(self, moment: datetime, keep: int) -> bool:
        """Whether the observations before `moment` that a window needs are all here (and so
        every observation from `moment` on, which the count of those before it needs)."""
        return self.complete or bisect.bisect_left(self.times, moment) >= keep

    def earlier(self, moment: datetime, depth: int) -> tuple[list[bytes], int]:
        """The last `depth` observations before `moment` (packed, as kept), and how many there
        are in all."""
        at = bisect.bisect_left(self.times, moment)
        return self.values[max(0, at - depth) : at], self.count - (len(self.times) - at)

    def differs(self, moment: datetime, values: bytes) -> bool:
        """Whether an observation at `moment` is held with other (packed) counters."""
        at = bisect.bisect_left(self.times, moment)
        held = at < len(self.times) and self.times[at] == moment
        return held and self.values[at] != values

    def add(self, moment: datetime, counters: Sequence[float], keep: int) -> None:
        """A newly stored observation (the latest stored for its time wins)."""
        self.add_packed(moment, pack(counters), keep)

    def add_packed(self, moment: datetime, values: bytes, keep: int) -> None:
        """`add` of counters already packed (`pack`)."""
        times = self.times
        if times and moment > times[-1]:  # the common case: the latest observation
            times.append(moment)
            self.values.append(values)
            if self.count >= 0:
                self.count += 1
            if len(times) > keep:
                del times[0], self.values[0]
                self.complete = False
            return
        at = bisect.bisect_left(times, moment)
        if at < len(self.times) and self.times[at] == moment:
            self.values[at] = values
            return
        if self.count >= 0:
            self.count += 1
        if at == 0 and not self.complete and len(self.times) >= keep:
            return  # older than every kept observation: not among the latest
        self.times.insert(at, moment)
        self.values.insert(at, values)
        if len(self.times) > keep:
            del self.times[0], self.values[0]
            self.complete = False


def _tail(history: histories.History, between: Sequence[Observation] = ()) -> Tail:
    ordered = [*reversed(history.observations), *reversed(between)]  # reads give newest first
    times, values = [o.observed_at for o in ordered], [pack(o.values) for o in ordered]
    count = history.count + len(between) if history.count >= 0 else -1
    return Tail(times, values, history.complete and not between, count)


@dataclass
class _Read:
    """What one request needs from the database, and what it got."""

    missing: list[str]  # devices to read the latest observations of
    earlier: dict[str, tuple[datetime, datetime]]  # device: (first, last) time of its rows
    hits: dict[str, Tail]  # devices served from the cache, as it was when the request came
    latest: dict[str, histories.History] = field(default_factory=dict)
    before: dict[str, Tail] = field(default_factory=dict)


def _place(
    windows: FloatArray, depth: int, rows: list[int], taken: list[int], packed: bytes
) -> None:
    """Put each row's earlier observations (packed counters, oldest first, `taken[k]` of them
    for row `rows[k]`, one after another in `packed`) at the end of its window, before the
    row's own counters."""
    counters = windows.shape[2]
    values = np.frombuffer(packed, dtype="<f8").reshape(-1, counters)
    if len(rows) < SMALL_BLOCK:  # a few rows: slices cost less than index arrays
        start = 0
        for row, size in zip(rows, taken, strict=True):
            windows[row, depth - size : depth, :] = values[start : start + size]
            start += size
        return
    sizes = np.asarray(taken)
    starts = np.cumsum(sizes) - sizes
    within = np.arange(len(values)) - np.repeat(starts, sizes)
    windows[np.repeat(rows, sizes), np.repeat(depth - sizes, sizes) + within, :] = values


def _packed(observations: Sequence[DeviceObservation]) -> list[tuple[str, datetime, bytes]]:
    """Observations with their counters packed (`pack`), as the tails keep them."""
    return [(device, moment, pack(counters)) for device, moment, counters in observations]


class DeviceHistories:
    """One per process: device histories for history features (see the module docstring)."""

    def __init__(self, engine: Engine, capacity: int = 100_000) -> None:
        self.engine = engine
        self.capacity = capacity
        self.sqlite = engine.dialect.name == "sqlite"
        self._tails: OrderedDict[str, Tail] = OrderedDict()
        self._shape: tuple[int, bool] = (0, False)  # (observations kept, counted) of the tails
        self._changes = 0  # counts changes of devices the cache did not hold
        self._changed: OrderedDict[str, int] = OrderedDict()  # device: its last such change
        self._changed_floor = 0  # the latest change forgotten from `_changed`
        self._rowid: int | None = None  # SQLite: predictions up to here were looked at
        self._look_ahead: asyncio.Future[None] | None = None  # SQLite: the next look, awaited
        self._own: OrderedDict[uuid.UUID, None] = OrderedDict()  # this process's requests
        self.reads = 0  # database reads made for windows (for tests and metrics)
        self._commits: histories.CommitLog | None = None  # SQLite: the look's own connection

    def close(self) -> None:
        """Give back the connection SQLite's look holds (the process is stopping)."""
        if self._commits is not None:
            self._commits.close()
            self._commits = None

    @property
    def cached_devices(self) -> int:
        """How many devices' histories are held."""
        return len(self._tails)

    async def windows(
        self,
        features: HistoryFeatures,
        matrix: FloatArray,
        device_ids: Sequence[str | None],
        observed_at: Sequence[datetime],
        request_id: uuid.UUID,
    ) -> tuple[FloatArray, FloatArray, list[list[str] | None]]:
        """Each row's window (n, depth + 1, counters), NaN where no earlier observation
        exists; how many earlier observations its device has; and per row the warnings of a
        missing history (None: it had one)."""
        # Tails keep `depth` observations (at least one when counted: a count needs to know
        # which observations are later than a row).
        shape = (max(features.depth, 1 if features.counts else 0), features.counts)
        if shape != self._shape:  # another model: tails of another shape
            self._tails.clear()
            self._shape = shape
        if self.sqlite:
            self._own[request_id] = None  # its rows, once committed, are not another's
            while len(self._own) > 10_000:
                self._own.popitem(last=False)
        rows: dict[str, list[int]] = {}
        for i, device in enumerate(device_ids):
            if device is not None:
                rows.setdefault(device, []).append(i)
        if self.sqlite and rows:  # shielded: a request cancelled leaves the look to the others
            await asyncio.shield(self._next_look())
        read = await self._read(rows, observed_at)
        return self._assemble(features.depth, matrix, device_ids, observed_at, rows, read)

    async def _read(self, rows: dict[str, list[int]], observed_at: Sequence[datetime]) -> _Read:
        keep = self._shape[0]
        read = _Read([], {}, {})
        for device, indexes in rows.items():
            first = min(observed_at[i] for i in indexes)
            tail = self._tails.get(device)
            if tail is None:
                read.missing.append(device)
            elif not tail.serves(first, keep):
                read.earlier[device] = (first, max(observed_at[i] for i in indexes))
            else:
                read.hits[device] = tail
                self._tails.move_to_end(device)
        if not read.missing and not read.earlier:
            return read
        started = self._changes
        await asyncio.to_thread(self._fetch, read, self._shape)
        self.reads += 1
        for device, history in read.latest.items():
            if self._changed_since(device, started):
                continue  # a commit of this device may have followed the read: use, not keep
            self._tails[device] = _tail(history)
            self._tails.move_to_end(device)
        while len(self._tails) > self.capacity:
            self._tails.popitem(last=False)
        return read

    def _fetch(self, read: _Read, shape: tuple[int, bool]) -> None:
        keep, counted = shape
        with self.engine.connect() as connection, connection.begin():
            read.latest = histories.latest_observations(connection, read.missing, keep, counted)
            for device, (first, last) in read.earlier.items():
                before = histories.observations_before(connection, device, first, keep, counted)
                between = (
                    histories.observations_between(connection, device, first, last)
                    if last > first
                    else []
                )
                read.before[device] = _tail(before, between)

    def _next_look(self) -> asyncio.Future[None]:
        """SQLite: a look at what others committed that begins after this call, shared by
        every request that asks before it runs (those already queued in the event loop)."""
        if self._look_ahead is None:
            loop = asyncio.get_running_loop()
            self._look_ahead = loop.create_future()
            loop.call_soon(self._look)
        return self._look_ahead

    def _look(self) -> None:
        """SQLite: what was committed since the last look (one indexed read of a local file,
        on a connection kept for it: cheaper than a thread hop); the devices others changed
        are forgotten (read again when needed)."""
        waiting, self._look_ahead = self._look_ahead, None
        assert waiting is not None
        try:
            if self._commits is None:
                self._commits = histories.CommitLog.held(self.engine)
            self.reads += 1
            if self._rowid is None:  # the first look: nothing cached yet
                self._rowid = self._commits.last_rowid()
            else:
                committed = self._commits.requests_since(self._rowid, CATCH_UP_LIMIT + 1)
                if committed:
                    last = max(c.last_rowid for c in committed)
                    if sum(c.count for c in committed) > CATCH_UP_LIMIT:
                        self._tails.clear()
                    else:
                        others = [c.request_id for c in committed if c.request_id not in self._own]
                        for device in self._commits.devices_between(self._rowid, last, others):
                            self._forget(device)
                    self._rowid = last
        except Exception as error:  # every request waiting fails with it
            waiting.set_exception(error)
            return
        waiting.set_result(None)

    def _assemble(
        self,
        depth: int,
        matrix: FloatArray,
        device_ids: Sequence[str | None],
        observed_at: Sequence[datetime],
        rows: dict[str, list[int]],
        read: _Read,
    ) -> tuple[FloatArray, FloatArray, list[list[str] | None]]:
        n, counters = matrix.shape
        windows = np.full((n, depth + 1, counters), np.nan)
        windows[:, depth, :] = matrix
        counts = np.zeros(n)
        warnings: list[list[str] | None] = [None] * n
        for i, device in enumerate(device_ids):
            if device is None:
                warnings[i] = [NO_DEVICE]
        # Each row's earlier observations keep their packed counters; they are joined and put
        # in place with one assignment.
        packed: list[bytes] = []
        placed: list[int] = []  # each row with earlier observations
        taken: list[int] = []  # how many it has
        for device, indexes in rows.items():
            if device in read.before:
                known = read.before[device]
            elif device in read.latest:
                known = _tail(read.latest[device])
            else:
                known = read.hits[device]
            several = len(indexes) > 1  # its rows see the request's earlier ones too
            order = indexes
            if several:
                known = Tail(list(known.times), list(known.values), known.complete, known.count)
                order = sorted(indexes, key=lambda k: (observed_at[k], k))
            for i in order:
                earlier, count = known.earlier(observed_at[i], depth)
                if earlier:
                    packed += earlier
                    placed.append(i)
                    taken.append(len(earlier))
                counts[i] = max(count, 0)
                if count == 0 or (count < 0 and not earlier):
                    warnings[i] = [no_history(device)]
                if several:  # the later of two rows of one time stands for it
                    known.add(observed_at[i], matrix[i].tolist(), len(known.times) + 1)
        if packed:
            _place(windows, depth, placed, taken, b"".join(packed))
        return windows, counts, warnings

    def stored_windows(
        self,
        features: HistoryFeatures,
        matrix: FloatArray,
        moments: Sequence[tuple[str | None, datetime]],
    ) -> tuple[FloatArray, FloatArray]:
        """Windows and counts of stored predictions (rows of `matrix`, each with its device and
        time) from the history stored now: blocking, for explanations read off the loop."""
        depth = features.depth
        windows = np.full((matrix.shape[0], depth + 1, matrix.shape[1]), np.nan)
        windows[:, depth, :] = matrix
        counts = np.zeros(matrix.shape[0])
        with self.engine.connect() as connection:
            for i, (device, moment) in enumerate(moments):
                if device is None:
                    continue
                found = histories.observations_before(
                    connection, device, moment, depth, features.counts
                )
                earlier = [o.values for o in reversed(found.observations)]
                if earlier:
                    windows[i, depth - len(earlier) : depth, :] = earlier
                counts[i] = max(found.count, 0)
        return windows, counts

    def committed(self, block: PredictionBlock) -> None:
        """A block of this process's predictions was committed: add it to the cached tails
        (its counters packed for the whole block at once)."""
        if not self._tails and not self._shape[0]:
            return
        if len(block) < SMALL_BLOCK:  # numpy's per-call cost exceeds packing a few rows
            self._add(_packed(block.observations()), foreign=False)
            return
        matrix = np.column_stack([block.metrics[name] for name in METRIC_COLUMNS])
        packed = np.ascontiguousarray(matrix, dtype="<f8").tobytes()
        width = 8 * matrix.shape[1]
        observed = block.observed_at
        self._add(
            [
                (device, observed[i], packed[i * width : (i + 1) * width])
                for i, device in enumerate(block.device_ids)
                if device is not None
            ],
            foreign=False,
        )

    async def foreign_block(self, block: Announced) -> None:
        """Another process committed a block of predictions (PostgreSQL's announcement): add
        its observations to the cached tails, from the notification when it carried them (a
        `predict`'s), else read in one query."""
        if self._shape == (0, False):
            return  # no model with history served yet: nothing is cached
        observations = block.observations
        if observations is None:
            observations = await asyncio.to_thread(self._block_observations, block)
        self._add(_packed(observations), foreign=True)

    def _block_observations(self, block: Announced) -> list[DeviceObservation]:
        with self.engine.connect() as connection:
            return histories.block_observations(
                connection, block.request_id, block.first, block.last
            )

    def _add(self, observations: Sequence[tuple[str, datetime, bytes]], foreign: bool) -> None:
        """Committed observations (counters packed) into the tails of the devices held; a device
        not held is noted as changed (a read of it in flight is then used, not kept). Another
        process's observation at a time the tail holds with other counters is a second
        prediction of that time: which one is the latest stored (by id) is the database's to
        say, so the device is forgotten and read again when needed."""
        keep = self._shape[0]
        if not self._tails and not keep:
            return
        tails = self._tails
        for device, moment, packed in observations:
            tail = tails.get(device)
            if tail is None:
                self._note_change(device)
            elif foreign and tail.differs(moment, packed):
                self._forget(device)
            else:
                tail.add_packed(moment, packed, keep)

    def _forget(self, device: str) -> None:
        self._tails.pop(device, None)
        self._note_change(device)

    def _note_change(self, device: str) -> None:
        self._changes += 1
        self._changed[device] = self._changes
        self._changed.move_to_end(device)
        while len(self._changed) > self.capacity:
            _, forgotten = self._changed.popitem(last=False)
            self._changed_floor = max(self._changed_floor, forgotten)

    def _changed_since(self, device: str, started: int) -> bool:
        return max(self._changed.get(device, 0), self._changed_floor) > started
