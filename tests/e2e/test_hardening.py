"""The smaller holes an attacker or a careless client found, each closed (issue: hardening)."""

import json
import logging
from datetime import UTC, datetime, timedelta

import jwt
import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient
from support import ORIGINAL_EXAMPLE, count_rows, gql

from auth import Scope, mint_token
from graph.app import create_app
from graph.runtime.logs import TextFormatter
from graph.settings import Settings

PREDICT = "mutation P($i: PredictInput!) { predict(input: $i) { id } }"
HISTORY = "query H($f: PredictionFilter) { predictions(filter: $f) { nodes { id } } }"
STRONG = "Zq3" + "".join(chr(65 + (i * 7) % 26) + str(i % 10) for i in range(24))


def _audit(engine) -> list[dict]:
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT * FROM audit_event ORDER BY id"))
        return [dict(row._mapping) for row in rows]


def _codes(body: dict) -> list[str]:
    return [e["extensions"]["code"] for e in body.get("errors") or []]


@pytest.mark.parametrize("text", ["D-\x00", "D-\x07", "D-\x1b[31m", "D-\x7f", "D-\x85"])
def test_a_control_character_in_a_string_variable_is_refused_before_any_query(
    client, auth_headers, db_engine, text
):
    body = gql(client, HISTORY, {"f": {"deviceId": text}}, auth_headers)
    assert _codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["extensions"]["field"] == "f.deviceId"
    assert _audit(db_engine)[-1]["outcome"] == "invalid"  # not SERVICE_UNAVAILABLE


def test_a_control_character_in_a_string_literal_is_refused(client, auth_headers):
    body = gql(client, '{ predictions(filter: {deviceId: "a\\u0000b"}) { nodes { id } } }',
               headers=auth_headers)  # fmt: skip
    assert _codes(body) == ["BAD_USER_INPUT"]


def test_printable_unicode_strings_are_served(client, auth_headers):
    body = gql(client, HISTORY, {"f": {"deviceId": "设备-🛠️-Ω"}}, auth_headers)
    assert "errors" not in body


@pytest.mark.parametrize("claims", [{"exp": 10**18}, {"exp": 1e20}, {"iat": 10**15}])
def test_a_signed_token_with_an_absurd_time_claim_is_unauthenticated(
    client, settings, db_engine, claims
):
    now = int(datetime.now(UTC).timestamp())
    payload = {"iss": "failcast", "aud": "failcast-api", "sub": "x", "iat": now, "exp": now + 60}
    token = jwt.encode({**payload, "scope": "predict", **claims}, settings.jwt_secret)
    response = client.post(
        "/graphql",
        json={"query": "{ me { subject } }"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 401 and _codes(response.json()) == ["UNAUTHENTICATED"]
    assert _audit(db_engine)[-1]["auth_failure"] == "claim_out_of_range"


def test_head_with_a_mutation_body_is_refused_and_runs_nothing(client, auth_headers, db_engine):
    payload = json.dumps({"query": PREDICT, "variables": {"i": ORIGINAL_EXAMPLE}})
    for method in ("HEAD", "PUT", "DELETE", "PATCH"):
        response = client.request(
            method,
            "/graphql",
            content=payload,
            headers={**auth_headers, "content-type": "application/json"},
        )
        assert response.status_code == 405, method
        assert response.headers["allow"] == "GET, POST"
    assert count_rows(db_engine, "prediction") == 0


def test_router_refusals_answer_json_with_codes(client):
    missing = client.get("/nowhere")
    assert missing.status_code == 404 and _codes(missing.json()) == ["NOT_FOUND"]
    wrong = client.get("/predict")
    assert wrong.status_code == 405 and _codes(wrong.json()) == ["METHOD_NOT_ALLOWED"]
    assert "POST" in wrong.headers["allow"]
    for response in (missing, wrong):
        assert response.headers["x-request-id"]


@pytest.mark.parametrize("path", ["/graphql", "/predict", "/healthz", "/readyz", "/nowhere"])
def test_every_answer_carries_the_security_headers(client, path):
    response = client.get(path)
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-request-id"]


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("0f6b1b3e-6a63-4b0c-9d59-1d7b2c1c9a10", True),
        ("trace-42.a:b_c", True),
        ("x" * 64, True),
        ("x" * 65, False),
        ("bad id with spaces", False),
        ("id\x7f", False),
    ],
)
def test_a_valid_client_request_id_is_kept_and_audited(client, auth_headers, db_engine, sent, kept):
    headers = {**auth_headers, "X-Request-ID": sent}
    response = client.post("/graphql", json={"query": "{ me { subject } }"}, headers=headers)
    row = _audit(db_engine)[-1]
    if kept:
        assert response.headers["x-request-id"] == sent and row["client_request_id"] == sent
    else:
        assert response.headers["x-request-id"].replace("-", "") == str(row["id"]).replace("-", "")
        assert row["client_request_id"] is None


def test_a_crafted_path_cannot_forge_a_text_log_line(client, caplog):
    with caplog.at_level(logging.INFO, logger="failcast.request"):
        client.get("/x%0A2026-01-01 INFO forged: request status=200")
    [record] = [r for r in caplog.records if r.name == "failcast.request"]
    line = TextFormatter("%(message)s").format(record)
    assert "\n" not in line and "\\n" in line


def test_metrics_need_a_metrics_token_in_production(db_url, db_engine, active_model):
    settings = Settings(env="production", database_url=db_url, jwt_secret=STRONG)
    config = settings.auth_config()
    reader = mint_token(config, "prom", [Scope.METRICS_READ], timedelta(minutes=5))
    other = mint_token(config, "app", [Scope.PREDICT], timedelta(minutes=5))
    with TestClient(create_app(settings)) as client:
        assert client.get("/metrics").status_code == 401
        forbidden = client.get("/metrics", headers={"Authorization": f"Bearer {other}"})
        assert forbidden.status_code == 403
        allowed = client.get("/metrics", headers={"Authorization": f"Bearer {reader}"})
        assert allowed.status_code == 200 and "failcast_requests_total" in allowed.text
    open_settings = settings.model_copy(update={"metrics_require_token": False})
    with TestClient(create_app(open_settings)) as client:
        assert client.get("/metrics").status_code == 200


def test_readyz_details_only_in_development(db_url, db_engine, client):
    assert "problems" in client.get("/readyz").json()
    settings = Settings(env="production", database_url=db_url, jwt_secret=STRONG)
    with TestClient(create_app(settings)) as production:
        body = production.get("/readyz").json()
    assert set(body) == {"status"}


def test_comma_separated_settings_lists_parse_as_documented(monkeypatch):
    monkeypatch.setenv("FAILCAST_JWT_ALGORITHMS", "RS256, ES256")
    monkeypatch.setenv("FAILCAST_TRUSTED_PROXIES", "10.0.0.0/8,127.0.0.1")
    settings = Settings()
    assert settings.jwt_algorithms == ["RS256", "ES256"]
    assert settings.trusted_proxies == ["10.0.0.0/8", "127.0.0.1"]
    monkeypatch.setenv("FAILCAST_JWT_ALGORITHMS", "RS256")
    assert Settings().jwt_algorithms == ["RS256"]
    monkeypatch.setenv("FAILCAST_TRUSTED_PROXIES", "not-an-address")
    with pytest.raises(ValueError, match="not-an-address"):
        Settings()


def test_json_fields_cost_what_they_may_weigh(client, auth_headers):
    query = "{ predictions(first: 500) { nodes { modelVersion { lineage metrics params } } } }"
    body = gql(client, query, headers=auth_headers)
    # 500 x (the connection 1 + nodes 1 + modelVersion 1 + three JSON values x 5)
    assert body["extensions"]["cost"]["requested"] == 500 * (1 + 1 + 1 + 15)
    twice = "{ a: " + query[2:-2] + " b: " + query[2:-2] + " }"
    assert _codes(gql(client, twice, headers=auth_headers)) == ["QUERY_TOO_COMPLEX"]


def test_an_answer_over_the_size_limit_is_refused_and_stores_nothing(
    settings, db_engine, active_model, auth_headers
):
    small = settings.model_copy(update={"max_response_bytes": 4096})
    fields = (
        "id createdAt input { metric1 metric2 metric3 metric4 metric5 metric6 metric7 metric9 }"
    )
    batch = "mutation B($r: [PredictInput!]!) { predictBatch(inputs: $r) { %s } }" % fields
    with TestClient(create_app(small)) as client:
        body = gql(client, batch, {"r": [ORIGINAL_EXAMPLE] * 50}, auth_headers)
        assert _codes(body) == ["RESPONSE_TOO_LARGE"] and body["data"] is None
        fits = gql(client, batch, {"r": [ORIGINAL_EXAMPLE]}, auth_headers)
        assert "errors" not in fits
    assert count_rows(db_engine, "prediction") == 1
    assert [r["predictions_created"] for r in _audit(db_engine)] == [0, 1]


def test_refused_requests_are_audited_with_subject_reason_and_query_hash(
    client, auth_headers, db_engine
):
    deep = "{ " + " { ".join(["me"] * 11) + " }" * 11
    assert _codes(gql(client, deep, headers=auth_headers)) == ["QUERY_TOO_DEEP"]
    client.post("/graphql", json={"query": deep}, headers={"Authorization": "Bearer a.b.c"})
    client.post("/graphql", json={"query": deep})
    limit, bad_token, no_token = _audit(db_engine)
    assert limit["subject"] == "tester" and limit["query_sha256"] is not None
    assert (bad_token["auth_failure"], no_token["auth_failure"]) == ("malformed", "missing")
    assert bad_token["http_status"] == no_token["http_status"] == 401


def test_the_audit_trail_is_searchable_by_the_clients_request_id(client, auth_headers):
    sent = client.post("/graphql", json={"query": "{ me { subject } }"},
                       headers={**auth_headers, "X-Request-ID": "trace-9"})  # fmt: skip
    client.post("/graphql", json={"query": "{ me { subject } }"}, headers=auth_headers)
    query = """{ auditEvents(filter: {clientRequestId: "trace-9"}) {
      nodes { requestId clientRequestId authFailure httpStatus } } }"""
    nodes = gql(client, query, headers=auth_headers)["data"]["auditEvents"]["nodes"]
    assert len(nodes) == 1 and nodes[0]["clientRequestId"] == "trace-9"
    assert sent.headers["x-request-id"] == "trace-9" and nodes[0]["authFailure"] is None
