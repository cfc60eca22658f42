"""Prediction and request ids (UUIDv7): their random bits come from os.urandom a page at a time,
never from a pool shared with a forked parent; packed into bytes for a writer process."""

import os
import pickle
from datetime import UTC, datetime

import pytest

from persistence import METRIC_COLUMNS, PredictionBlock, ids
from persistence.ids import new_id, new_ids, packed, unpacked

RANDOM_62 = (1 << 62) - 1


def _random_bits(made: list) -> list[int]:
    return [value.int & RANDOM_62 for value in made]


def test_ids_draw_randomness_a_page_at_a_time(monkeypatch):
    # Each os.urandom call lets go of the GIL; taken back behind a busy thread, it cost a
    # one-row request 215 us. 200 ids of one request each must not make 200 such calls.
    calls = []
    urandom = os.urandom

    def counted(count: int) -> bytes:
        calls.append(count)
        return urandom(count)

    monkeypatch.setattr(ids.os, "urandom", counted)
    ids._forget_pool()
    made = [new_id() for _ in range(200)]
    assert len(calls) <= 1
    assert len(set(_random_bits(made))) == 200


def test_a_run_larger_than_the_pool_gets_fresh_bytes_of_its_own():
    made = new_ids(2 * ids._POOL_BYTES // 8)
    bits = _random_bits(made)
    assert len(set(bits)) == len(bits)
    assert made == sorted(made)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_a_forked_child_does_not_reuse_its_parents_random_bytes():
    new_id()  # the pool holds bytes not handed out yet
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child reports through the pipe)
        try:
            os.write(write, b",".join(str(b).encode() for b in _random_bits(new_ids(4))))
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    with os.fdopen(read, "rb") as pipe:
        theirs = [int(b) for b in pipe.read().split(b",")]
    assert not set(theirs) & set(_random_bits(new_ids(4)))


@pytest.mark.parametrize("count", [0, 1, 31, 32, 1000])
def test_packed_ids_unpack_to_the_same_ids(count):
    ids = new_ids(count)
    data = packed(ids)
    assert len(data) == 16 * count
    assert unpacked(data) == ids
    assert [value.version for value in unpacked(data)] == [7] * count


def test_a_prediction_block_pickles_with_its_ids_packed():
    block = PredictionBlock(
        audit_event_id=new_id(),
        model_version_id=3,
        threshold=0.25,
        created_at=datetime(2026, 12, 1, tzinfo=UTC),
        ids=new_ids(3),
        device_ids=["a", None, "c"],
        observed_at=[datetime(2026, 11, 30, tzinfo=UTC)] * 3,
        metrics={m: [1.0, 2.5, -0.0] for m in METRIC_COLUMNS},
        failure_probability=[0.1, 0.2, 0.3],
        is_failure=[False, False, True],
        explanations=[None, {"base": 0.1}, None],
        warnings=[["metric1 out of range"], None, None],
    )
    data = pickle.dumps(block, protocol=pickle.HIGHEST_PROTOCOL)
    assert pickle.loads(data) == block
    assert b"".join(value.bytes for value in block.ids) in data  # one run, not three UUIDs
