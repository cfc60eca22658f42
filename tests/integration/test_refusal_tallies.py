"""Refusal tallies: upserts add up (also from two threads at once), reads page, purges delete."""

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from persistence import (
    Conflict,
    RefusalCount,
    RefusalTallyRepository,
    minute_window,
    record_refusal_counts,
    session_scope,
)

WINDOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
FLOOD = "anonymous_rate_limit"


def _count(
    addr: str = "198.51.100.7",
    reason: str = FLOOD,
    minute: int = 0,
    count: int = 1,
    first_s: float = 10.0,
    last_s: float = 20.0,
) -> RefusalCount:
    window = WINDOW + timedelta(minutes=minute)
    first, last = window + timedelta(seconds=first_s), window + timedelta(seconds=last_s)
    return RefusalCount(window, addr, reason, count, first, last)


def _tallies(engine, **filters) -> list:
    with session_scope(engine) as session:
        return RefusalTallyRepository(session).page(10_000, None, **filters)


def _key(tally) -> tuple:
    return (tally.client_addr, tally.reason, tally.window_start)


def test_a_new_tally_is_stored_as_counted(db_engine):
    record_refusal_counts(db_engine, [_count(count=7)])
    [tally] = _tallies(db_engine)
    assert _key(tally) == ("198.51.100.7", FLOOD, WINDOW) and tally.count == 7
    assert (tally.first_seen, tally.last_seen) == (
        WINDOW + timedelta(seconds=10),
        WINDOW + timedelta(seconds=20),
    )


def test_the_same_tally_twice_adds_the_counts_and_widens_the_times(db_engine):
    record_refusal_counts(db_engine, [_count(count=3, first_s=10, last_s=20)])
    record_refusal_counts(db_engine, [_count(count=4, first_s=5.5, last_s=42.25)])
    [tally] = _tallies(db_engine)
    assert tally.count == 7
    assert tally.first_seen == WINDOW + timedelta(seconds=5.5)
    assert tally.last_seen == WINDOW + timedelta(seconds=42.25)


def test_narrower_times_never_narrow_a_tally(db_engine):
    record_refusal_counts(db_engine, [_count(first_s=1, last_s=59)])
    record_refusal_counts(db_engine, [_count(first_s=30, last_s=31)])
    [tally] = _tallies(db_engine)
    assert (tally.count, tally.first_seen, tally.last_seen) == (
        2, WINDOW + timedelta(seconds=1), WINDOW + timedelta(seconds=59),
    )  # fmt: skip


def test_one_call_with_the_same_tally_twice_adds_both(db_engine):
    # PostgreSQL refuses an upsert touching a row twice: the counts are merged before it.
    record_refusal_counts(db_engine, [_count(count=2, first_s=9), _count(count=5, last_s=50)])
    [tally] = _tallies(db_engine)
    assert (tally.count, tally.first_seen, tally.last_seen) == (
        7, WINDOW + timedelta(seconds=9), WINDOW + timedelta(seconds=50),
    )  # fmt: skip


def test_the_same_window_in_another_timezone_is_the_same_tally(db_engine):
    paris = timezone(timedelta(hours=1))
    local = _count()
    local = replace(
        local,
        window_start=local.window_start.astimezone(paris),
        first_seen=local.first_seen.astimezone(paris),
    )
    record_refusal_counts(db_engine, [_count(), local])
    assert [t.count for t in _tallies(db_engine)] == [2]


def test_different_addresses_reasons_and_windows_are_separate_tallies(db_engine):
    counts = [
        _count(),
        _count(addr="2001:db8::1"),
        _count(reason="oversized_request"),
        _count(minute=1),
    ]
    record_refusal_counts(db_engine, counts)
    record_refusal_counts(db_engine, counts[1:])
    stored = {_key(t): t.count for t in _tallies(db_engine)}
    assert stored == {
        ("198.51.100.7", FLOOD, WINDOW): 1,
        ("2001:db8::1", FLOOD, WINDOW): 2,
        ("198.51.100.7", "oversized_request", WINDOW): 2,
        ("198.51.100.7", FLOOD, WINDOW + timedelta(minutes=1)): 2,
    }


def test_a_call_past_one_statement_of_tallies_stores_them_all(db_engine):
    counts = [_count(addr=f"10.0.{i // 250}.{i % 250}") for i in range(2500)]
    record_refusal_counts(db_engine, counts)
    record_refusal_counts(db_engine, counts[:10])
    with session_scope(db_engine) as session:
        assert RefusalTallyRepository(session).count() == 2500
    assert sum(t.count for t in _tallies(db_engine)) == 2510


def test_concurrent_upserts_on_one_tally_lose_no_count(db_engine):
    start, errors = threading.Barrier(2), []

    def add(thread: int) -> None:
        start.wait()
        try:
            for i in range(200):
                moment_s = i / 10 + thread / 20  # 0 to 19.95 s: each upsert may widen the times
                record_refusal_counts(db_engine, [_count(first_s=moment_s, last_s=moment_s)])
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=add, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    [tally] = _tallies(db_engine)
    assert tally.count == 400
    assert (tally.first_seen, tally.last_seen) == (WINDOW, WINDOW + timedelta(seconds=19.95))


def test_purge_deletes_windows_that_started_before_the_moment(db_engine):
    record_refusal_counts(db_engine, [_count(minute=m) for m in range(5)])
    with session_scope(db_engine) as session:
        purged = RefusalTallyRepository(session).purge_before(WINDOW + timedelta(minutes=2))
    assert purged == 2
    assert sorted(t.window_start for t in _tallies(db_engine)) == [
        WINDOW + timedelta(minutes=m) for m in (2, 3, 4)
    ]


def test_purge_with_nothing_old_deletes_nothing(db_engine):
    record_refusal_counts(db_engine, [_count()])
    with session_scope(db_engine) as session:
        assert RefusalTallyRepository(session).purge_before(WINDOW) == 0
        assert RefusalTallyRepository(session).count() == 1


def test_pages_are_newest_first_and_continue_below_an_id(db_engine):
    for minute in range(5):
        record_refusal_counts(db_engine, [_count(minute=minute)])
    with session_scope(db_engine) as session:
        repo = RefusalTallyRepository(session)
        first = repo.page(3, None)
        rest = repo.page(3, first[-1].id)
    ids = [t.id for t in first + rest]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 5
    assert [t.window_start.minute for t in first + rest] == [4, 3, 2, 1, 0]


def test_since_keeps_the_windows_that_end_after_it(db_engine):
    record_refusal_counts(db_engine, [_count(minute=m) for m in range(4)])
    since = WINDOW + timedelta(minutes=1, seconds=30)  # inside minute 1
    assert [t.window_start.minute for t in _tallies(db_engine, since=since)] == [3, 2, 1]


def test_page_narrows_to_one_client_address(db_engine):
    record_refusal_counts(db_engine, [_count(), _count(addr="203.0.113.9", minute=1)])
    found = _tallies(db_engine, client_addr="203.0.113.9")
    assert [_key(t) for t in found] == [("203.0.113.9", FLOOD, WINDOW + timedelta(minutes=1))]


def test_nothing_to_record_writes_nothing(db_engine):
    record_refusal_counts(db_engine, [])
    assert _tallies(db_engine) == []


def test_a_count_the_database_refuses_is_a_conflict_and_nothing_is_stored(db_engine):
    forged = _count()
    object.__setattr__(forged, "count", 0)  # past the dataclass's own check: the table's
    with pytest.raises(Conflict):
        record_refusal_counts(db_engine, [_count(addr="192.0.2.1"), forged])
    assert _tallies(db_engine) == []


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"window_start": WINDOW + timedelta(seconds=1)}, "whole UTC minute"),
        ({"window_start": WINDOW.replace(tzinfo=None)}, "naive"),
        ({"first_seen": WINDOW.replace(tzinfo=None)}, "naive"),
        ({"first_seen": WINDOW + timedelta(seconds=30)}, "after last_seen"),
        ({"count": 0}, "positive"),
        ({"client_addr": "a" * 65}, "client_addr"),
        ({"reason": ""}, "reason"),
        ({"reason": "r" * 33}, "reason"),
    ],
)
def test_an_invalid_count_is_refused_before_any_write(changes, message):
    with pytest.raises(ValueError, match=message):
        replace(_count(), **changes)


def test_minute_window_truncates_to_the_utc_minute():
    moment = datetime(2026, 11, 26, 13, 59, 59, 999999, tzinfo=timezone(timedelta(hours=1)))
    assert minute_window(moment) == datetime(2026, 11, 26, 12, 59, tzinfo=UTC)
    assert minute_window(moment).tzinfo is UTC
