"""SQLite's commit log: what a server reads of the predictions other processes committed.

One row per request, not one per prediction, and the devices only of the requests named.
"""

from datetime import UTC, datetime

import pytest
from support import register_version, request_record

from persistence import (
    RequestRecord,
    write_records,
)
from persistence.histories import CommitLog


@pytest.fixture
def log(db_engine):
    if db_engine.dialect.name != "sqlite":
        pytest.skip("SQLite's commit log: PostgreSQL's servers hear announcements instead")
    commits = CommitLog.held(db_engine)
    yield commits
    commits.close()


def _request(version_id: int, devices: list[str | None]) -> RequestRecord:
    now = datetime.now(UTC)
    return request_record(version_id, [(device, now, 0.1) for device in devices])


def test_each_request_is_one_entry_with_its_count_and_last_rowid(db_engine, demo_artifact, log):
    version = register_version(db_engine, demo_artifact)
    start = log.last_rowid()
    big = _request(version.id, [f"dev-{i}" for i in range(1000)])
    small = _request(version.id, ["dev-a", None])
    write_records(db_engine, [big])
    write_records(db_engine, [small])

    found = {c.request_id: c for c in log.requests_since(start, 5000)}
    assert found.keys() == {big.audit["id"], small.audit["id"]}
    assert found[big.audit["id"]].count == 1000
    assert found[small.audit["id"]].count == 2
    assert found[big.audit["id"]].last_rowid == start + 1000
    assert found[small.audit["id"]].last_rowid == start + 1002 == log.last_rowid()
    # the limit counts predictions: the first 10 after `start` are the big request's
    [first] = log.requests_since(start, 10)
    assert (first.request_id, first.count, first.last_rowid) == (big.audit["id"], 10, start + 10)
    assert log.requests_since(log.last_rowid(), 5000) == []


def test_the_devices_are_those_of_the_named_requests_within_the_rowids(
    db_engine, demo_artifact, log
):
    version = register_version(db_engine, demo_artifact)
    start = log.last_rowid()
    # more requests than one statement names (500), each its own device; one without a device
    requests = [_request(version.id, [f"dev-{i:04d}", f"dev-{i:04d}"]) for i in range(1203)]
    requests.append(_request(version.id, [None]))
    write_records(db_engine, requests)
    end = log.last_rowid()
    named = [r.audit["id"] for r in requests]

    assert log.devices_between(start, end, named) == {f"dev-{i:04d}" for i in range(1203)}
    assert log.devices_between(start, end, named[::2]) == {
        f"dev-{i:04d}" for i in range(0, 1203, 2)
    }
    # rows after `upto` are not read: the first request's two rows end at start + 2
    assert log.devices_between(start, start + 2, named) == {"dev-0000"}
    assert log.devices_between(start + 2, end, named[:1]) == set()
    assert log.devices_between(start, end, []) == set()
