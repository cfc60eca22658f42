"""Every operation without a token, with a token lacking its scope, and with the right one."""

import pytest
from support import ORIGINAL_EXAMPLE, gql

from auth import Scope

EXAMPLE = ", ".join(f"{k}: {v}" for k, v in ORIGINAL_EXAMPLE.items())
OPERATIONS = [
    ("predict", Scope.PREDICT, "mutation { predict(input: {%s}) { id } }" % EXAMPLE),
    ("predictBatch", Scope.PREDICT, "mutation { predictBatch(inputs: [{%s}]) { id } }" % EXAMPLE),
    (
        "predictColumns",
        Scope.PREDICT,
        "mutation { predictColumns(input: {%s}) { predictionId } }"
        % ", ".join(f"{k}: [{v}, {v}]" for k, v in ORIGINAL_EXAMPLE.items()),
    ),
    (
        "prediction",
        Scope.PREDICTIONS_READ,
        '{ prediction(id: "01900000-0000-7000-8000-000000000000") { id } }',
    ),
    ("predictions", Scope.PREDICTIONS_READ, "{ predictions { nodes { id } } }"),
    ("modelVersions", Scope.MODELS_READ, "{ modelVersions { version } }"),
    ("modelVersion", Scope.MODELS_READ, '{ modelVersion(version: "test-1") { version } }'),
    ("activeModel", Scope.MODELS_READ, "{ activeModel { version } }"),
    ("auditEvents", Scope.AUDIT_READ, "{ auditEvents { nodes { requestId } } }"),
]
IDS = [name for name, _, _ in OPERATIONS]


@pytest.mark.parametrize(("field", "scope", "query"), OPERATIONS, ids=IDS)
def test_without_token_is_unauthenticated_and_leaks_nothing(client, field, scope, query):
    response = client.post("/graphql", json={"query": query})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="failcast"'
    body = response.json()
    assert body["data"] is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["UNAUTHENTICATED"]


@pytest.mark.parametrize(("field", "scope", "query"), OPERATIONS, ids=IDS)
def test_token_without_the_scope_is_forbidden(client, make_token, field, scope, query):
    others = [s for s in Scope if s is not scope]
    body = gql(client, query, headers={"Authorization": f"Bearer {make_token(*others)}"})
    assert body["data"] is None or body["data"].get(field) is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"]


@pytest.mark.parametrize(("field", "scope", "query"), OPERATIONS, ids=IDS)
def test_token_with_the_scope_is_served(client, make_token, field, scope, query):
    body = gql(client, query, headers={"Authorization": f"Bearer {make_token(scope)}"})
    assert "errors" not in body, body
    assert field in body["data"]


def test_invalid_token_is_unauthenticated_with_its_reason(client):
    headers = {"Authorization": "Bearer not.a.token"}
    response = client.post("/graphql", json={"query": "{ me { subject } }"}, headers=headers)
    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    challenge = response.headers["www-authenticate"]
    assert 'error="invalid_token"' in challenge and "malformed" in challenge


def test_me_returns_subject_and_scopes(client, make_token):
    token = make_token(Scope.PREDICT, Scope.MODELS_READ, subject="pump-7")
    body = gql(client, "{ me { subject scopes } }", headers={"Authorization": f"Bearer {token}"})
    assert body["data"]["me"] == {"subject": "pump-7", "scopes": ["models:read", "predict"]}


@pytest.mark.parametrize(
    ("scopes", "status", "code"),
    [(None, 401, "UNAUTHENTICATED"), ((Scope.PREDICTIONS_READ,), 403, "FORBIDDEN")],
)
def test_rest_predict_needs_the_predict_scope(client, make_token, scopes, status, code):
    headers = {} if scopes is None else {"Authorization": f"Bearer {make_token(*scopes)}"}
    response = client.post("/predict", json=ORIGINAL_EXAMPLE, headers=headers)
    assert response.status_code == status
    assert response.json()["errors"][0]["extensions"]["code"] == code


def test_rest_predict_answers_in_the_original_format(client, auth_headers):
    response = client.post("/predict", json=ORIGINAL_EXAMPLE, headers=auth_headers)
    assert response.status_code == 200
    body = response.json()
    assert body["class"] == "Non-Failure"
    assert body["probability"].endswith("%")
    assert "timestamp" in body


def test_rest_predict_refuses_invalid_metrics(client, auth_headers):
    response = client.post(
        "/predict", json={**ORIGINAL_EXAMPLE, "metric3": -2}, headers=auth_headers
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
