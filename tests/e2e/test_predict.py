"""predict and predictBatch through the HTTP app: answers, storage and refusals."""

import csv
import gzip
import json
import math

import pytest
import sqlalchemy as sa
from support import ORIGINAL_EXAMPLE, REAL_DATA, count_rows, gql, needs_real_data

PREDICT = """
mutation Predict($input: PredictInput!) {
  predict(input: $input) {
    id createdAt deviceId label failureProbability threshold
    input { metric1 metric2 metric3 metric4 metric5 metric6 metric7 metric9 }
    modelVersion { version algorithm isActive threshold artifactSha256 trainedOnSyntheticData }
  }
}
"""
PREDICT_BATCH = """
mutation Batch($inputs: [PredictInput!]!) {
  predictBatch(inputs: $inputs) { id deviceId label failureProbability }
}
"""


def test_original_example_is_non_failure_and_stored(client, auth_headers, db_engine):
    body = gql(
        client, PREDICT, {"input": {**ORIGINAL_EXAMPLE, "deviceId": "S1F01085"}}, auth_headers
    )
    assert "errors" not in body, body
    prediction = body["data"]["predict"]
    assert prediction["label"] == "NON_FAILURE"
    assert 0 <= prediction["failureProbability"] < prediction["threshold"]
    assert prediction["deviceId"] == "S1F01085"
    assert prediction["input"]["metric1"] == 215630672
    assert prediction["modelVersion"]["isActive"] is True
    assert count_rows(db_engine, "prediction") == 1


def test_predicted_probability_matches_the_estimator(client, auth_headers, demo_estimator):
    import numpy as np

    from model import DEVICE_FEATURES

    body = gql(client, PREDICT, {"input": ORIGINAL_EXAMPLE}, auth_headers)
    row = np.array([[ORIGINAL_EXAMPLE[f] for f in DEVICE_FEATURES]], dtype=float)
    expected = demo_estimator.predict_proba(row)[0, 1]
    assert math.isclose(body["data"]["predict"]["failureProbability"], expected, abs_tol=1e-12)


def _real_rows(n: int) -> list[dict]:
    with gzip.open(REAL_DATA, "rt", encoding="latin-1") as handle:
        reader = csv.DictReader(handle)
        rows = []
        for line in reader:
            metrics = {f"metric{i}": float(line[f"metric{i}"]) for i in (1, 2, 3, 4, 5, 6, 7, 9)}
            rows.append({**metrics, "deviceId": line["device"]})
            if len(rows) == n:
                return rows
    return rows


@needs_real_data
def test_batch_of_100_real_rows_returns_100_stored_predictions(client, auth_headers, db_engine):
    rows = _real_rows(100)
    body = gql(client, PREDICT_BATCH, {"inputs": rows}, auth_headers)
    assert "errors" not in body, body
    predictions = body["data"]["predictBatch"]
    assert len(predictions) == 100
    assert [p["deviceId"] for p in predictions] == [r["deviceId"] for r in rows]
    assert count_rows(db_engine, "prediction") == 100
    with db_engine.connect() as connection:
        stored = connection.execute(
            sa.text("SELECT count(DISTINCT audit_event_id) FROM prediction")
        ).scalar_one()
    assert stored == 1


@pytest.mark.parametrize(
    ("field", "literal"),
    [("metric2", "-1"), ("metric5", "-0.5"), ("metric9", "-1e-9")],
)
def test_invalid_metric_is_refused_naming_the_field_and_nothing_stored(
    client, auth_headers, db_engine, field, literal
):
    metrics = ", ".join(
        f'"{k}": {literal if k == field else v}' for k, v in ORIGINAL_EXAMPLE.items()
    )
    raw = '{"query": %s, "variables": {"input": {%s}}}' % (json.dumps(PREDICT), metrics)
    headers = {**auth_headers, "content-type": "application/json"}
    body = client.post("/graphql", content=raw, headers=headers).json()
    assert body["data"] is None
    error = body["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert field in error["message"]
    assert count_rows(db_engine, "prediction") == 0


def test_missing_metric_is_refused_as_bad_user_input(client, auth_headers, db_engine):
    variables = {"input": {k: v for k, v in ORIGINAL_EXAMPLE.items() if k != "metric4"}}
    body = gql(client, PREDICT, variables, auth_headers)
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "metric4" in body["errors"][0]["message"]
    assert count_rows(db_engine, "prediction") == 0


def test_batch_with_one_invalid_row_stores_nothing(client, auth_headers, db_engine):
    rows = [dict(ORIGINAL_EXAMPLE) for _ in range(5)]
    rows[3]["metric7"] = -3
    body = gql(client, PREDICT_BATCH, {"inputs": rows}, auth_headers)
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "inputs.3.metric7" in body["errors"][0]["message"]
    assert count_rows(db_engine, "prediction") == 0


@pytest.mark.parametrize("size", [0, 1001])
def test_batch_size_outside_1_to_1000_is_refused(client, auth_headers, db_engine, size):
    body = gql(client, PREDICT_BATCH, {"inputs": [ORIGINAL_EXAMPLE] * size}, auth_headers)
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert count_rows(db_engine, "prediction") == 0


def test_batch_of_1000_is_accepted(client, auth_headers, db_engine):
    body = gql(client, PREDICT_BATCH, {"inputs": [ORIGINAL_EXAMPLE] * 1000}, auth_headers)
    assert len(body["data"]["predictBatch"]) == 1000
    assert count_rows(db_engine, "prediction") == 1000


def test_device_id_with_control_characters_is_refused(client, auth_headers, db_engine):
    body = gql(client, PREDICT, {"input": {**ORIGINAL_EXAMPLE, "deviceId": "a\x00b"}}, auth_headers)
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert count_rows(db_engine, "prediction") == 0


def test_unicode_device_id_is_stored_as_sent(client, auth_headers):
    body = gql(
        client, PREDICT, {"input": {**ORIGINAL_EXAMPLE, "deviceId": "Gerät-Ω7"}}, auth_headers
    )
    assert body["data"]["predict"]["deviceId"] == "Gerät-Ω7"


def test_overflowing_inline_literal_is_refused_naming_the_field(client, auth_headers, db_engine):
    # A GraphQL literal (not JSON) of 1e400 parses to infinity.
    fields = ", ".join(
        f"{k}: {'1e400' if k == 'metric6' else v}" for k, v in ORIGINAL_EXAMPLE.items()
    )
    body = gql(client, "mutation { predict(input: {%s}) { id } }" % fields, headers=auth_headers)
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "metric6" in body["errors"][0]["message"]
    assert count_rows(db_engine, "prediction") == 0


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "1e400"])
def test_non_finite_json_numbers_are_refused_as_bad_request(
    client, auth_headers, db_engine, literal
):
    raw = '{"query": %s, "variables": {"input": {"metric1": %s}}}' % (json.dumps(PREDICT), literal)
    headers = {**auth_headers, "content-type": "application/json"}
    response = client.post("/graphql", content=raw, headers=headers)
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    assert count_rows(db_engine, "prediction") == 0
