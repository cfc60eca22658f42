"""A cached device tail (graph.runtime.histories.Tail): the latest observations, kept in order."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from graph.runtime.histories import Tail, _place, pack, unpack

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _at(day: int) -> datetime:
    return T0 + timedelta(days=day)


def _tail(days: list[int], complete: bool, count: int) -> Tail:
    return Tail([_at(d) for d in days], [pack((float(d),)) for d in days], complete, count)


def test_a_full_tail_serves_rows_after_its_kept_observations_only() -> None:
    tail = _tail([5, 6, 7], complete=False, count=8)  # 8 stored, the latest 3 kept
    assert tail.serves(_at(8), keep=3)
    assert not tail.serves(_at(7), keep=3)  # needs day 4, which is not kept
    earlier, count = tail.earlier(_at(8), depth=3)
    assert [unpack(v) for v in earlier] == [(5.0,), (6.0,), (7.0,)] and count == 8


def test_a_complete_tail_serves_any_time() -> None:
    tail = _tail([1, 3], complete=True, count=2)
    assert tail.serves(_at(0), keep=3) and tail.serves(_at(2), keep=3)
    assert tail.earlier(_at(2), depth=3) == ([pack((1.0,))], 1)
    assert tail.earlier(_at(0), depth=3) == ([], 0)


def test_adding_keeps_the_latest_and_counts_new_times_once() -> None:
    tail = _tail([1, 2, 3], complete=True, count=3)
    tail.add(_at(4), (4.0,), keep=3)
    assert [t.day for t in tail.times] == [3, 4, 5] and not tail.complete and tail.count == 4
    tail.add(_at(4), (40.0,), keep=3)  # the same time again: the later row stands for it
    assert unpack(tail.values[-1]) == (40.0,) and tail.count == 4
    tail.add(_at(0), (0.0,), keep=3)  # older than all kept: counted, not kept
    assert [t.day for t in tail.times] == [3, 4, 5] and tail.count == 5
    tail.add(_at(2) + timedelta(hours=12), (2.5,), keep=3)  # late, among the latest: in place
    assert [unpack(v)[0] for v in tail.values] == [2.5, 3.0, 40.0] and tail.count == 6
    tail.add(_at(3), (3.1,), keep=3)  # a kept time again: replaced, not counted
    assert [unpack(v)[0] for v in tail.values] == [2.5, 3.1, 40.0] and tail.count == 6


@pytest.mark.parametrize("rows", [4, 200])  # slices below SMALL_BLOCK rows, index arrays above
def test_earlier_observations_are_placed_at_the_end_of_each_window(rows: int) -> None:
    # What DeviceHistories puts in a request's windows (`_place`) equals copying each row's
    # earlier observations before its own counters, row by row.
    rng = np.random.default_rng(rows)
    depth, counters, n = 7, 8, rows * 2
    placed = sorted(rng.choice(n, size=rows, replace=False).tolist())  # the others have none
    taken = rng.integers(1, depth + 1, size=rows).tolist()
    earlier = [rng.normal(size=(k, counters)) for k in taken]
    packed = b"".join(pack(observation.tolist()) for block in earlier for observation in block)
    windows = np.full((n, depth + 1, counters), np.nan)
    expected = windows.copy()
    for row, block in zip(placed, earlier, strict=True):
        expected[row, depth - len(block) : depth, :] = block
    _place(windows, depth, placed, taken, packed)
    np.testing.assert_array_equal(windows, expected)
    assert np.isnan(windows[:, depth]).all()


def test_earlier_observations_are_the_kept_ones_before_the_time() -> None:
    tail = _tail([5, 6, 7], complete=False, count=8)
    packed, count = tail.earlier(_at(7), depth=3)
    assert [unpack(v) for v in packed] == [(5.0,), (6.0,)] and count == 7
