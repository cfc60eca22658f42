"""Committed predictions reach the alert hubs: this process's after COMMIT, other processes'
through PostgreSQL NOTIFY sent by the writing transaction (never for a rolled-back write)."""

import asyncio

import pytest
from support import ORIGINAL_EXAMPLE, count_statements, predict_now

from graph.runtime.alerts import AlertFilter, Alerts
from graph.runtime.audit import RequestAudit
from graph.runtime.models import ModelService
from graph.runtime.telemetry import decode_telemetry
from graph.runtime.usecases import Layout
from persistence import Conflict, alerts, is_sqlite, notifications, write_records

EVERYTHING = AlertFilter(0.0)


def _predicted(models: ModelService, service: Alerts, devices: list[str]) -> RequestAudit:
    audit = RequestAudit.begin("POST", "/graphql", "127.0.0.1", "tests")
    telemetry = decode_telemetry([{**ORIGINAL_EXAMPLE, "deviceId": d} for d in devices])
    predict_now(models, service, audit, telemetry, Layout.ROWS if len(devices) > 1 else None)
    return audit


@pytest.fixture
def models(db_engine, active_model) -> ModelService:
    service = ModelService(db_engine)
    assert service.refresh_sync() is not None
    return service


def test_the_own_process_hears_a_prediction_after_commit_and_not_before(db_engine, models):
    async def run():
        service = Alerts(db_engine)
        stream = service.hub.subscribe(EVERYTHING)
        audit = _predicted(models, service, ["a-1", "a-2"])
        await asyncio.to_thread(write_records, db_engine, [audit.record(200)])
        await asyncio.sleep(0)
        assert stream._queue.empty(), "published before the edge said it was committed"
        audit.committed()
        got = [await asyncio.wait_for(stream.__anext__(), 1) for _ in range(2)]
        assert [p.device_id for p in got] == ["a-1", "a-2"]
        assert [p.id for p in got] == list(audit.made[0].block.ids)

    asyncio.run(run())


def test_an_answer_with_an_error_publishes_nothing(db_engine, models):
    async def run():
        service = Alerts(db_engine)
        stream = service.hub.subscribe(EVERYTHING)
        audit = _predicted(models, service, ["b-1"])
        audit.answered_with(["BAD_USER_INPUT"])  # e.g. another root field of it failed
        record = audit.record(200)
        assert record.predictions == [] and record.effects == []
        audit.committed()
        await asyncio.sleep(0.05)
        assert stream._queue.empty()

    asyncio.run(run())


def test_another_process_reads_an_announced_block_back(db_engine, models):
    async def run():
        origin, other = Alerts(db_engine), Alerts(db_engine)
        stream = other.hub.subscribe(AlertFilter(0.0, "c-2"))
        audit = _predicted(models, origin, ["c-1", "c-2", "c-3"])
        await asyncio.to_thread(write_records, db_engine, [audit.record(200)])
        (effect,) = audit.record(200).effects
        await origin.heard(effect.payload)  # its own notification: published already, skipped
        await other.heard(effect.payload)
        got = await asyncio.wait_for(stream.__anext__(), 1)
        assert got.device_id == "c-2" and got.id == audit.made[0].block.ids[1]
        assert stream._queue.empty()

    asyncio.run(run())


def test_a_process_without_a_subscriber_that_could_want_it_reads_nothing(db_engine, models):
    origin, other = Alerts(db_engine), Alerts(db_engine)
    picky = other.hub.subscribe(AlertFilter(1.0))  # the example's probability is below 1
    audit = _predicted(models, origin, ["d-1"])
    write_records(db_engine, [audit.record(200)])
    (effect,) = audit.record(200).effects
    assert count_statements(db_engine, lambda: asyncio.run(other.heard(effect.payload))) == 0
    anything = other.hub.subscribe(AlertFilter(0.0))  # (the hub holds streams weakly)
    assert count_statements(db_engine, lambda: asyncio.run(other.heard(effect.payload))) == 1
    assert picky is not anything


async def _heard_within(engine, seconds: float, write) -> list[str]:
    """Notifications on the alert channel while `write` runs and for `seconds` after."""
    heard: list[str] = []
    listening = asyncio.Event()

    async def listen():
        notices = notifications.heard(engine, alerts.CHANNEL, "test")
        try:
            first = asyncio.ensure_future(notices.__anext__())
            await asyncio.sleep(0.3)  # the LISTEN is in place well before the write
            listening.set()
            heard.append(await first)
            while True:
                heard.append(await notices.__anext__())
        finally:
            await notifications.close_quietly(notices)

    task = asyncio.create_task(listen())
    await listening.wait()
    await asyncio.to_thread(write)
    await asyncio.sleep(seconds)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return heard


def test_postgres_notifies_on_commit_and_never_for_a_rolled_back_write(db_url, db_engine, models):
    if is_sqlite(db_url):
        pytest.skip("SQLite has no notifications: alerts stay within the process")
    service = Alerts(db_engine)
    committed = _predicted(models, service, ["e-1"])
    failed = _predicted(models, service, ["e-2"])

    def write_both():
        write_records(db_engine, [committed.record(200)])
        record = failed.record(200)
        record.audit = {**record.audit, "id": committed.id}  # a duplicate key: rolled back
        with pytest.raises(Conflict):
            write_records(db_engine, [record])

    heard = asyncio.run(_heard_within(db_engine, 0.5, write_both))
    (effect,) = committed.record(200).effects
    assert heard == [effect.payload]


def test_a_batch_of_a_thousand_is_one_small_notification(db_url, db_engine, models):
    if is_sqlite(db_url):
        pytest.skip("SQLite has no notifications")
    service = Alerts(db_engine)
    audit = _predicted(models, service, [f"f-{i}" for i in range(1000)])
    heard = asyncio.run(
        _heard_within(db_engine, 0.5, lambda: write_records(db_engine, [audit.record(200)]))
    )
    assert len(heard) == 1 and len(heard[0]) < 200
