"""Every request leaves exactly one audit row, with the right fields, whatever its outcome."""

import hashlib

import pytest
import sqlalchemy as sa
from support import ORIGINAL_EXAMPLE, count_rows, gql

from auth import Scope

PREDICT = "mutation Predict($i: PredictInput!) { predict(input: $i) { id } }"


def _audit_rows(engine) -> list[dict]:
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT * FROM audit_event ORDER BY id"))
        return [dict(row._mapping) for row in rows]


def _only_row(engine) -> dict:
    rows = _audit_rows(engine)
    assert len(rows) == 1, rows
    return rows[0]


def test_ok_request_is_audited_with_every_field(client, auth_headers, db_engine):
    response = client.post(
        "/graphql",
        json={"query": PREDICT, "variables": {"i": ORIGINAL_EXAMPLE}},
        headers={**auth_headers, "User-Agent": "station-7/1.0"},
    )
    row = _only_row(db_engine)
    assert str(row["id"]).replace("-", "") == response.headers["x-request-id"].replace("-", "")
    assert row["outcome"] == "ok" and row["http_status"] == 200
    assert row["subject"] == "tester"
    assert row["operation_type"] == "mutation" and row["operation_name"] == "Predict"
    assert row["query_sha256"] == hashlib.sha256(PREDICT.encode()).hexdigest()
    assert row["user_agent"] == "station-7/1.0"
    assert row["client_addr"]
    assert row["predictions_created"] == 1
    assert row["duration_ms"] >= 0
    with db_engine.connect() as connection:
        linked = connection.execute(sa.text("SELECT audit_event_id FROM prediction")).scalar_one()
    assert str(linked).replace("-", "") == str(row["id"]).replace("-", "")


def test_denied_request_is_audited_as_denied(client, db_engine):
    client.post("/graphql", json={"query": PREDICT, "variables": {"i": ORIGINAL_EXAMPLE}})
    row = _only_row(db_engine)
    assert row["outcome"] == "denied" and row["subject"] is None
    assert "UNAUTHENTICATED" in str(row["error_codes"])
    assert row["predictions_created"] == 0


def test_forbidden_request_is_audited_with_its_subject(client, make_token, db_engine):
    headers = {"Authorization": f"Bearer {make_token(Scope.MODELS_READ, subject='viewer')}"}
    gql(client, PREDICT, {"i": ORIGINAL_EXAMPLE}, headers)
    row = _only_row(db_engine)
    assert (row["outcome"], row["subject"]) == ("denied", "viewer")
    assert "FORBIDDEN" in str(row["error_codes"])


@pytest.mark.parametrize(
    ("body", "content_type", "code"),
    [
        ('{"query": "{ predictions { "}', "application/json", "GRAPHQL_PARSE_FAILED"),
        ('{"query": "{ nope }"}', "application/json", "GRAPHQL_VALIDATION_FAILED"),
        ("{not json", "application/json", "BAD_REQUEST"),
        ('{"query": "{ me { subject } }"}', "text/plain", "UNSUPPORTED_MEDIA_TYPE"),
    ],
)
def test_invalid_request_is_audited_as_invalid(
    client, auth_headers, db_engine, body, content_type, code
):
    response = client.post(
        "/graphql", content=body, headers={**auth_headers, "content-type": content_type}
    )
    assert response.json()["errors"][0]["extensions"]["code"] == code
    row = _only_row(db_engine)
    assert row["outcome"] == "invalid"
    assert code in str(row["error_codes"])


def test_bad_input_is_audited_as_invalid_and_stores_nothing(client, auth_headers, db_engine):
    gql(client, PREDICT, {"i": {**ORIGINAL_EXAMPLE, "metric1": -1}}, auth_headers)
    row = _only_row(db_engine)
    assert row["outcome"] == "invalid" and "BAD_USER_INPUT" in str(row["error_codes"])
    assert count_rows(db_engine, "prediction") == 0


def test_mutation_over_get_is_refused_and_audited(client, auth_headers, db_engine):
    response = client.get(
        "/graphql",
        params={"query": "mutation { predictBatch(inputs: []) { id } }"},
        headers=auth_headers,
    )
    assert response.status_code == 405
    assert response.json()["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED"
    assert _only_row(db_engine)["outcome"] == "invalid"


def test_error_is_audited_as_error(settings, db_engine, auth_headers):
    from starlette.testclient import TestClient

    from graph.app import create_app

    with TestClient(create_app(settings)) as bare:  # no model registered: cannot predict
        body = gql(bare, PREDICT, {"i": ORIGINAL_EXAMPLE}, auth_headers)
    assert body["errors"][0]["extensions"]["code"] == "MODEL_UNAVAILABLE"
    assert _only_row(db_engine)["outcome"] == "error"


def test_error_extensions_carry_the_request_id(client, db_engine):
    response = client.post("/graphql", json={"query": "{ me { subject } }"})
    assert (
        response.json()["errors"][0]["extensions"]["requestId"] == response.headers["x-request-id"]
    )


def test_health_probes_are_not_audited(client, db_engine):
    client.get("/healthz")
    client.get("/readyz")
    assert count_rows(db_engine, "audit_event") == 0


AUDIT_QUERY = """
query Audit($filter: AuditEventFilter) {
  auditEvents(first: 50, filter: $filter) {
    nodes { requestId subject outcome operationName errorCodes predictionsCreated httpStatus }
  }
}
"""


def test_audit_events_query_filters_by_subject_and_outcome(client, make_token, db_engine):
    predictor = {"Authorization": f"Bearer {make_token(Scope.PREDICT, subject='station')}"}
    gql(client, PREDICT, {"i": ORIGINAL_EXAMPLE}, predictor)
    gql(client, PREDICT, {"i": {**ORIGINAL_EXAMPLE, "metric2": -5}}, predictor)
    auditor = {"Authorization": f"Bearer {make_token(Scope.AUDIT_READ, subject='auditor')}"}
    body = gql(
        client, AUDIT_QUERY, {"filter": {"subject": "station", "outcome": "invalid"}}, auditor
    )
    [event] = body["data"]["auditEvents"]["nodes"]
    assert event["errorCodes"] == ["BAD_USER_INPUT"] and event["operationName"] == "Predict"
    everything = gql(client, AUDIT_QUERY, {"filter": {"subject": "station"}}, auditor)
    assert len(everything["data"]["auditEvents"]["nodes"]) == 2
