"""History features: what a device's earlier observations add to its current one.

One definition serves training and serving, so that a model never meets features computed
differently from those it learned (train/serve skew). Every feature of a row is a function of a
*window*, the row itself and at most `depth` earlier observations of the same device, oldest
first, as an (n, depth + 1, len(DEVICE_FEATURES)) array whose missing earlier observations are
NaN (left padding), and of how many earlier observations the device has. Training builds both
from the dataset (`windows_of_sequence`, one device's rows in observation order), serving from
the device's stored predictions plus the incoming row; both call `HistoryFeatures.compute` on
them, so the same window gives the same bits.

Feature names (a model's `feature_names` say which it uses; plain counters are `metric1`...):

- `{metric}_delta`: change since the previous observation (0 for a device's first);
- `{metric}_max{w}`, `{metric}_mean{w}`: max and mean over the last w observations, the current
  one included (w in ROLLING_WINDOWS; fewer when the device has fewer);
- `{metric}_zero_run`: observations since the counter was last non-zero (0 when it is non-zero
  now), at most ZERO_RUN_CAP, which is also its value when it was never non-zero in the window;
- `observations`: how many earlier observations the device has (its age in observations).

The cap keeps every other feature a function of a bounded window: serving reads at most `depth`
earlier rows per device, and a count of them for `observations`.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from model.features import DEVICE_FEATURES

FloatArray = npt.NDArray[np.float64]

ROLLING_WINDOWS: tuple[int, ...] = (3, 7, 14)
ZERO_RUN_CAP = 7  # 7 and 14 cross-validate alike on the real data; 7 reads fewer rows
OBSERVATIONS = "observations"
_NAN = float("nan")
_KINDS = (
    "delta",
    "zero_run",
    *(f"max{w}" for w in ROLLING_WINDOWS),
    *(f"mean{w}" for w in ROLLING_WINDOWS),
)


def history_feature_names(
    kinds: Sequence[str] = _KINDS, observations: bool = True
) -> tuple[str, ...]:
    """Names of the history features of each counter for `kinds` (e.g. "delta", "max7"),
    grouped by kind, then `observations` if asked."""
    unknown = sorted(set(kinds) - set(_KINDS))
    if unknown:
        raise ValueError(f"unknown history feature kinds {unknown}; expected some of {_KINDS}")
    names = [f"{metric}_{kind}" for kind in kinds for metric in DEVICE_FEATURES]
    return (*names, OBSERVATIONS) if observations else tuple(names)


@dataclass(frozen=True)
class _Column:
    kind: str  # "value", "delta", "max", "mean", "zero_run" or "observations"
    metric: int  # column in DEVICE_FEATURES (-1 for observations)
    window: int  # rows the feature reads, the current one included


def _parse(name: str) -> _Column:
    if name == OBSERVATIONS:
        return _Column("observations", -1, 1)
    if name in DEVICE_FEATURES:
        return _Column("value", DEVICE_FEATURES.index(name), 1)
    metric, _, kind = name.partition("_")
    if metric not in DEVICE_FEATURES or kind not in _KINDS:
        raise ValueError(f"{name!r} is neither a telemetry counter nor a history feature")
    index = DEVICE_FEATURES.index(metric)
    if kind == "delta":
        return _Column("delta", index, 2)
    if kind == "zero_run":
        return _Column("zero_run", index, ZERO_RUN_CAP + 1)
    name_of_kind = kind.rstrip("0123456789")
    return _Column(name_of_kind, index, int(kind[len(name_of_kind) :]))


def _block_one(
    column: _Column, window: list[list[float]], depth: int, count: float | None
) -> list[float]:
    """`HistoryFeatures._block` of one window (see `HistoryFeatures._one`)."""
    current = window[depth]
    if column.kind == "value":
        return current
    if column.kind == "observations":
        assert count is not None
        return [count]
    if column.kind == "delta":
        previous = window[depth - 1]
        return [0.0 if p != p else c - p for c, p in zip(current, previous, strict=True)]
    recent = window[depth + 1 - column.window :]
    if column.kind == "max":  # np.fmax: NaN loses; of equal values, the earlier is kept
        columns = zip(*recent, strict=True)
        return [max([v for v in values if v == v], default=_NAN) for values in columns]
    if column.kind == "mean":
        # rows that exist (the first counter is not NaN) as they are, the others as zeros
        rows = [row if row[0] == row[0] else [0.0] * len(row) for row in recent]
        seen = sum(1 for row in recent if row[0] == row[0])
        total = list(rows[0])
        for row in rows[1:]:
            total = [t + v for t, v in zip(total, row, strict=True)]
        return [t / seen for t in total]
    # zero_run: distance back to the latest non-zero value, ZERO_RUN_CAP if none in reach
    runs = []
    for values in zip(*reversed(recent), strict=True):  # newest first; NaN is not > 0
        run = ZERO_RUN_CAP
        for k, value in enumerate(values):
            if value > 0:
                run = k
                break
        runs.append(float(run))
    return runs


class HistoryFeatures:
    """The features a model reads, computed from windows of device telemetry."""

    def __init__(self, feature_names: Sequence[str]) -> None:
        self.feature_names = tuple(feature_names)
        self._columns = [_parse(name) for name in self.feature_names]
        # Earlier observations the features read (0: the current row's counters only).
        self.depth = max((c.window for c in self._columns), default=1) - 1
        # Whether the features count the earlier observations (`observations`).
        self.counts = any(c.kind == "observations" for c in self._columns)
        self._plain = (
            [c.metric for c in self._columns] if self.depth == 0 and not self.counts else None
        )
        # Each kind of feature is computed for every counter at once, in one block; the blocks
        # side by side, then one gather puts the model's columns in its order.
        keys = list(dict.fromkeys((c.kind, c.window) for c in self._columns))
        self._blocks = [next(c for c in self._columns if (c.kind, c.window) == k) for k in keys]
        offsets, at = {}, 0
        for column in self._blocks:
            offsets[(column.kind, column.window)] = at
            at += 1 if column.kind == "observations" else len(DEVICE_FEATURES)
        self._gather = np.array(
            [offsets[(c.kind, c.window)] + max(c.metric, 0) for c in self._columns], dtype=np.intp
        )
        self._gather_list: list[int] = self._gather.tolist()

    @property
    def uses_history(self) -> bool:
        """Whether any feature reads earlier observations (or counts them)."""
        return self._plain is None

    def plain(self, current: FloatArray) -> FloatArray:
        """The features of rows without history: only valid when `uses_history` is False."""
        assert self._plain is not None
        return current[:, self._plain]

    def compute(self, windows: FloatArray, observations: FloatArray | None = None) -> FloatArray:
        """(n, features) from (n, depth + 1, counters) windows: row i's window holds its device's
        earlier observations (NaN where there are none), oldest first, the row itself last;
        `observations[i]`: how many earlier observations row i's device has (all of them, not
        only those in the window), needed when the features count them."""
        depth = self.depth
        if windows.ndim != 3 or windows.shape[1] != depth + 1:
            raise ValueError(f"expected windows of {depth + 1} observations")
        if self.counts and (observations is None or observations.shape != (windows.shape[0],)):
            raise ValueError("these features count earlier observations: give one count per row")
        if windows.shape[0] == 1:  # one row: plain Python costs less than numpy's calls
            count = None if observations is None else float(observations[0])
            return np.array([self._one(windows[0].tolist(), count)], dtype=np.float64)
        present = ~np.isnan(windows[:, :, 0])  # (n, depth + 1): which observations exist
        blocks = [self._block(column, windows, present, observations) for column in self._blocks]
        return np.concatenate(blocks, axis=1)[:, self._gather]

    def _one(self, window: list[list[float]], count: float | None) -> list[float]:
        """The features of one window (rows of counters, oldest first, NaN rows missing), in
        plain Python: each block as `_block` computes it, to the bit (the same operations in
        the same order: a max keeps the earlier of equal values, as np.fmax does, and a mean
        adds oldest first, as numpy's reduction over the window does)."""
        values: list[float] = []
        for column in self._blocks:
            values += _block_one(column, window, self.depth, count)
        return [values[i] for i in self._gather_list]

    def _block(
        self,
        column: _Column,
        windows: FloatArray,
        present: npt.NDArray[np.bool_],
        counts: FloatArray | None,
    ) -> FloatArray:
        depth = self.depth
        current = windows[:, depth, :]
        if column.kind == "value":
            return current
        if column.kind == "observations":
            assert counts is not None
            observations: FloatArray = counts.astype(np.float64).reshape(-1, 1)
            return observations
        if column.kind == "delta":
            previous = windows[:, depth - 1, :]
            delta: FloatArray = np.where(np.isnan(previous), 0.0, current - previous)
            return delta
        recent = windows[:, depth + 1 - column.window :, :]
        if column.kind == "max":
            highest: FloatArray = np.fmax.reduce(recent, axis=1)
            return highest
        if column.kind == "mean":
            seen = present[:, depth + 1 - column.window :]
            total = np.where(seen[:, :, None], recent, 0.0).sum(axis=1)
            mean: FloatArray = total / seen.sum(axis=1)[:, None]
            return mean
        # zero_run: distance back to the latest non-zero value, ZERO_RUN_CAP if none in reach
        nonzero = (recent > 0)[:, ::-1, :]  # newest first; NaN (no observation) is not > 0
        found = nonzero.any(axis=1)
        return np.where(found, nonzero.argmax(axis=1), ZERO_RUN_CAP).astype(np.float64)

    def windows_of_sequence(self, sequence: FloatArray, earlier: int = 0) -> FloatArray:
        """Windows of the rows of one device's observations in order, (rows, counters), where
        the first `earlier` rows are history only: the windows of the rows after them."""
        depth, rows = self.depth, sequence.shape[0]
        padded = np.full((rows + depth, sequence.shape[1]), np.nan)
        padded[depth:] = sequence
        view = np.lib.stride_tricks.sliding_window_view(padded, depth + 1, axis=0)
        # sliding_window_view puts the window last: (rows, counters, depth + 1)
        return np.ascontiguousarray(view.transpose(0, 2, 1)[earlier:])

    def of_sequences(self, sequences: Sequence[FloatArray]) -> list[FloatArray]:
        """The features of every row of each device's observations in order (one per time)."""
        return [
            self.compute(self.windows_of_sequence(s), np.arange(s.shape[0], dtype=np.float64))
            for s in sequences
        ]

    def of_device(self, times: npt.NDArray[Any], values: FloatArray) -> FloatArray:
        """The features of each of one device's rows, given in time order (equal times in the
        order they came), as serving makes them: a device has one observation per time (the
        last row of that time), and each row sees the observations strictly before its own
        time. Without repeated times, the same as `of_sequences`."""
        last = np.ones(times.shape[0], dtype=bool)
        last[:-1] = times[1:] != times[:-1]
        if last.all():
            return self.of_sequences([values])[0]
        distinct = values[last]
        # row i's time is the k-th distinct one: it sees the k observations before it
        k = np.searchsorted(times[last], times, side="left")
        windows = self.windows_of_sequence(distinct)[k]
        windows[:, self.depth, :] = values
        return self.compute(windows, k.astype(np.float64))
