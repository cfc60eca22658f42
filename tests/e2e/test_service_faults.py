"""The service refuses what it cannot do safely: tampered models, lost audit writes."""

import time

import sqlalchemy as sa
from starlette.testclient import TestClient
from support import ORIGINAL_EXAMPLE, count_rows, gql, register_version

from graph.app import create_app
from persistence import ModelVersionRepository, session_scope

PREDICT = "mutation P($i: PredictInput!) { predict(input: $i) { id label } }"


def test_model_with_altered_artifact_is_refused_at_load(settings, db_engine, demo_artifact):
    register_version(db_engine, demo_artifact, "good")
    with db_engine.begin() as connection:
        altered = bytearray(demo_artifact)
        altered[100] ^= 0x01
        connection.execute(
            sa.text("UPDATE model_version SET artifact = :a WHERE version = 'good'"),
            {"a": bytes(altered)},
        )
    with TestClient(create_app(settings)) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert "refused" in " ".join(ready.json()["problems"])


def test_previous_model_keeps_serving_when_a_tampered_one_is_activated(
    settings, db_engine, demo_artifact, auth_headers
):
    register_version(db_engine, demo_artifact, "good")
    with TestClient(create_app(settings)) as client:
        # Tampered before it is activated: on PostgreSQL an activation is heard at once.
        register_version(db_engine, demo_artifact, "bad", activate=False)
        with db_engine.begin() as connection:
            connection.execute(
                sa.text("UPDATE model_version SET artifact_sha256 = :s WHERE version = 'bad'"),
                {"s": "0" * 64},
            )
        _activate(db_engine, "bad")
        time.sleep(settings.model_refresh_seconds * 3)
        assert _serving(client, auth_headers) == "good"
    with session_scope(db_engine) as session:
        repo = ModelVersionRepository(session)
        refusals = repo.refusals(repo.get("bad").id)
    assert len(refusals) == 1
    assert "sha256" in refusals[0].reason


def test_prediction_is_not_returned_when_its_audit_record_cannot_be_written(
    settings, db_engine, active_model, auth_headers
):
    with TestClient(create_app(settings)) as client:
        # A real write failure: the audit table refuses inserts for this test.
        with db_engine.begin() as connection:
            connection.execute(sa.text("ALTER TABLE audit_event RENAME TO audit_event_away"))
        try:
            response = client.post(
                "/graphql",
                json={"query": PREDICT, "variables": {"i": ORIGINAL_EXAMPLE}},
                headers=auth_headers,
            )
        finally:
            with db_engine.begin() as connection:
                connection.execute(sa.text("ALTER TABLE audit_event_away RENAME TO audit_event"))
    assert response.status_code == 503
    body = response.json()
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"
    assert "predict" not in response.text.replace("predictions", "")
    assert count_rows(db_engine, "prediction") == 0


def test_health_and_readiness(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"


def test_runaway_operation_is_cut_with_timeout_and_stores_nothing(
    settings, db_engine, active_model, auth_headers
):
    quick = settings.model_copy(update={"request_timeout_seconds": 1e-6})
    with TestClient(create_app(quick)) as client:
        body = gql(client, "{ predictions { nodes { id } } }", headers=auth_headers)
    assert body["errors"][0]["extensions"]["code"] == "TIMEOUT"
    assert count_rows(db_engine, "prediction") == 0


def _serving(client, auth_headers) -> str:
    """The model version that answers a predict now."""
    query = "mutation P($i: PredictInput!) { predict(input: $i) { modelVersion { version } } }"
    body = gql(client, query, {"i": ORIGINAL_EXAMPLE}, auth_headers)
    return str(body["data"]["predict"]["modelVersion"]["version"])


def _activate(db_engine, version: str) -> None:
    """Switch as the registry does, without the servability check of the API and CLI."""
    with session_scope(db_engine) as session:
        ModelVersionRepository(session).activate(version)


def _tamper_golden_set(db_engine, version: str, row: int, delta: float) -> None:
    with session_scope(db_engine) as session:
        stored = ModelVersionRepository(session).get(version)
        golden = dict(stored.golden_set)
        probabilities = list(golden["probabilities"])
        probabilities[row] += delta
        stored.golden_set = {**golden, "probabilities": probabilities}
        session.add(stored)


def test_a_version_whose_golden_set_no_longer_scores_is_refused_and_recorded(
    settings, db_engine, demo_artifact, auth_headers
):
    register_version(db_engine, demo_artifact, "good")
    with TestClient(create_app(settings)) as client:
        register_version(db_engine, demo_artifact, "tampered", activate=False)
        _tamper_golden_set(db_engine, "tampered", row=3, delta=1e-6)
        _activate(db_engine, "tampered")
        time.sleep(settings.model_refresh_seconds * 3)
        assert _serving(client, auth_headers) == "good"
    with session_scope(db_engine) as session:
        repo = ModelVersionRepository(session)
        [refusal] = repo.refusals(repo.get("tampered").id)
    assert refusal.reason.startswith("golden set row 3 scores ")
    assert "differs by 1e-06, tolerance 1e-09" in refusal.reason


def test_a_golden_set_within_its_tolerance_loads(settings, db_engine, demo_artifact, auth_headers):
    register_version(db_engine, demo_artifact, "close")
    _tamper_golden_set(db_engine, "close", row=0, delta=5e-10)
    with TestClient(create_app(settings)) as client:
        body = gql(client, PREDICT, {"i": ORIGINAL_EXAMPLE}, auth_headers)
    assert body["data"]["predict"]["label"] in ("FAILURE", "NON_FAILURE")
