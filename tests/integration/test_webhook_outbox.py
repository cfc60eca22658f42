"""The webhook outbox on both databases: written with the predictions it is for, claimed by one
worker at a time (FOR UPDATE SKIP LOCKED on PostgreSQL), re-claimable once a lease ends, and
recorded only under the claim that sent it."""

import threading
import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from support import ORIGINAL_EXAMPLE, predict_now

from graph.runtime.alerts import Alerts
from graph.runtime.audit import RequestAudit
from graph.runtime.models import ModelService
from graph.runtime.telemetry import decode_telemetry
from graph.runtime.usecases import Layout
from graph.runtime.webhooks import write_outbox
from persistence import new_id, webhooks, write_records
from persistence.webhooks import Attempt

LEASE = timedelta(seconds=60)


def _webhook(engine, prefix: str | None = None, minimum: float | None = 0.0) -> uuid.UUID:
    ident = new_id()
    with engine.begin() as connection:
        webhooks.insert(
            connection,
            {
                "id": ident, "url": "https://hooks.example.com/x", "min_probability": minimum,
                "device_id_prefix": prefix, "secret": "whsec_test",
                "created_at": datetime.now(UTC),
            },
        )  # fmt: skip
    return ident


def _store(engine, devices: list[str], fail_commit: bool = False) -> RequestAudit:
    models = ModelService(engine)
    models.refresh_sync()
    alerts = Alerts(engine, outbox=write_outbox)
    audit = RequestAudit.begin("POST", "/graphql", None, None)
    telemetry = decode_telemetry([{**ORIGINAL_EXAMPLE, "deviceId": d} for d in devices])
    predict_now(models, alerts, audit, telemetry, Layout.ROWS)
    write_records(engine, [audit.record(200)], confirm=(lambda: False) if fail_commit else None)
    return audit


def _uuid(value) -> str:  # SQLite hands UUIDs back as hex to a plain SELECT
    return str(uuid.UUID(str(value)))


def _rows(engine) -> list:
    with engine.connect() as connection:
        return connection.execute(sa.text("SELECT * FROM webhook_delivery")).all()


def test_deliveries_are_written_with_their_predictions_and_only_those(db_engine, active_model):
    pumps = _webhook(db_engine, prefix="pump-")
    everything = _webhook(db_engine)
    _webhook(db_engine, minimum=None)  # FAILURE only: the example is not one
    audit = _store(db_engine, ["pump-1", "fan-1"])
    _store(db_engine, ["pump-2"], fail_commit=True)  # rolled back: no delivery either
    rows = _rows(db_engine)
    ids = [str(i) for i in audit.made[0].block.ids]
    made = sorted((_uuid(r.webhook_id), _uuid(r.prediction_id)) for r in rows)
    assert made == sorted(
        [(str(pumps), ids[0]), (str(everything), ids[0]), (str(everything), ids[1])]
    )
    assert {r.status for r in rows} == {"pending"} and {r.attempts for r in rows} == {0}


def test_two_workers_never_claim_the_same_delivery(db_engine, active_model):
    _webhook(db_engine)
    _store(db_engine, [f"d-{i}" for i in range(40)])
    now = datetime.now(UTC) + timedelta(seconds=1)
    claimed: list[list[webhooks.Claimed]] = []
    start = threading.Barrier(4)

    def worker() -> None:
        start.wait()
        for _ in range(10):
            claimed.append(webhooks.claim_due(db_engine, now, 3, LEASE))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    ids = [c.id for batch in claimed for c in batch]
    assert len(ids) == len(set(ids)) == 40
    assert {c.secret for batch in claimed for c in batch} == {"whsec_test"}


def test_a_lease_that_ended_is_claimed_again_and_the_late_worker_records_nothing(
    db_engine, active_model
):
    _webhook(db_engine)
    _store(db_engine, ["l-1"])
    now = datetime.now(UTC) + timedelta(seconds=1)
    (first,) = webhooks.claim_due(db_engine, now, 10, LEASE)
    assert webhooks.claim_due(db_engine, now, 10, LEASE) == []  # leased
    later = now + LEASE + timedelta(seconds=1)
    (second,) = webhooks.claim_due(db_engine, later, 10, LEASE)  # its worker died, say
    assert second.id == first.id and second.claim != first.claim
    delivered = Attempt(later, True, 200)
    assert webhooks.record_attempt(db_engine, first, delivered, None) is False
    assert webhooks.record_attempt(db_engine, second, delivered, None) is True
    (row,) = _rows(db_engine)
    assert (row.status, row.attempts, row.last_status_code) == ("delivered", 1, 200)
    assert webhooks.claim_due(db_engine, later + LEASE * 2, 10, LEASE) == []


def test_failures_are_retried_when_due_then_dead(db_engine, active_model):
    _webhook(db_engine)
    _store(db_engine, ["f-1"])
    at = datetime.now(UTC) + timedelta(seconds=1)
    (claimed,) = webhooks.claim_due(db_engine, at, 10, LEASE)
    retry = at + timedelta(seconds=30)
    failed = Attempt(at, False, 500, "the receiver answered HTTP 500")
    assert webhooks.record_attempt(db_engine, claimed, failed, retry)
    assert webhooks.claim_due(db_engine, retry - timedelta(seconds=1), 10, LEASE) == []
    (again,) = webhooks.claim_due(db_engine, retry, 10, LEASE)
    assert again.attempts == 1
    assert webhooks.record_attempt(db_engine, again, Attempt(retry, False, None, "timed out"), None)
    (row,) = _rows(db_engine)
    assert (row.status, row.attempts, row.last_error) == ("dead", 2, "timed out")
    assert webhooks.claim_due(db_engine, retry + timedelta(days=1), 10, LEASE) == []


def test_a_transaction_reads_every_webhook_as_stored_once_and_sees_its_own(db_engine):
    """The outbox's targets are read through the driver: the ids come back as UUIDs, the
    thresholds and prefixes as stored (None included), once per transaction, and a webhook
    written earlier in the same transaction is among them."""
    stored = {
        _webhook(db_engine, prefix=None, minimum=None): (None, None),
        _webhook(db_engine, prefix="pump-é", minimum=0.1 + 0.2): (0.1 + 0.2, "pump-é"),
    }
    with db_engine.connect() as connection, connection.begin():
        own = new_id()
        webhooks.insert(
            connection,
            {
                "id": own, "url": "https://hooks.example.com/y", "min_probability": 0.0,
                "device_id_prefix": "x", "secret": "whsec_test", "created_at": datetime.now(UTC),
            },
        )  # fmt: skip
        found = webhooks.targets(connection)
        assert {t.id: (t.min_probability, t.device_id_prefix) for t in found} == {
            **stored,
            own: (0.0, "x"),
        }
        assert all(type(t.id) is uuid.UUID for t in found)
        assert webhooks.targets(connection) is found  # read once per transaction
    with db_engine.connect() as connection, connection.begin():
        assert webhooks.targets(connection) is not found  # a new transaction reads again
