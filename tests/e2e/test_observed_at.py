"""When the telemetry was taken: given by the client (with an offset), or the request's time."""

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from support import ORIGINAL_EXAMPLE, gql

PREDICT = "mutation P($i: PredictInput!) { predict(input: $i) { id createdAt observedAt } }"
BATCH = "mutation B($r: [PredictInput!]!) { predictBatch(inputs: $r) { id observedAt } }"


def _stored(engine, prediction_id: str) -> datetime:
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT id, observed_at FROM prediction")).all()
    [value] = [
        r.observed_at for r in rows if str(r.id).replace("-", "") == prediction_id.replace("-", "")
    ]
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def test_a_given_observation_time_is_stored_in_utc_and_returned(client, auth_headers, db_engine):
    body = gql(client, PREDICT, {"i": {**ORIGINAL_EXAMPLE, "observedAt": "2026-11-28T09:30:00+02:00"}},
               auth_headers)  # fmt: skip
    prediction = body["data"]["predict"]
    assert prediction["observedAt"] == "2026-11-28T07:30:00+00:00"
    assert _stored(db_engine, prediction["id"]).replace(tzinfo=UTC) == datetime(
        2026, 11, 28, 7, 30, tzinfo=UTC
    )


def test_without_one_the_observation_time_is_the_request_time(client, auth_headers):
    prediction = gql(client, PREDICT, {"i": ORIGINAL_EXAMPLE}, auth_headers)["data"]["predict"]
    assert prediction["observedAt"] == prediction["createdAt"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (lambda: "2026-11-28T09:30:00", "needs a UTC offset"),
        (lambda: "1999-12-31T23:59:59Z", "between 2000-01-01"),
        # made when the test runs: a value made at collection is no longer 10 minutes ahead
        (lambda: (datetime.now(UTC) + timedelta(minutes=10)).isoformat(), "5 minutes from now"),
    ],
    ids=["no-offset", "too-early", "future"],
)
def test_an_observation_time_out_of_bounds_is_refused(
    client, auth_headers, db_engine, value, message
):
    inputs = [ORIGINAL_EXAMPLE, {**ORIGINAL_EXAMPLE, "observedAt": value()}]
    body = gql(client, BATCH, {"r": inputs}, auth_headers)
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["field"] == "inputs.1.observedAt" and message in error["message"]


def test_a_malformed_observation_time_is_a_coercion_error(client, auth_headers):
    body = gql(
        client, PREDICT, {"i": {**ORIGINAL_EXAMPLE, "observedAt": "yesterday"}}, auth_headers
    )
    assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_USER_INPUT"]
    assert "DateTime" in body["errors"][0]["message"]


def test_a_batch_mixes_given_and_default_times(client, auth_headers):
    rows = [{**ORIGINAL_EXAMPLE, "observedAt": "2026-01-01T00:00:00Z"}, ORIGINAL_EXAMPLE]
    first, second = gql(client, BATCH, {"r": rows}, auth_headers)["data"]["predictBatch"]
    assert first["observedAt"] == "2026-01-01T00:00:00+00:00"
    assert second["observedAt"] != first["observedAt"]


def test_the_rest_route_takes_observed_at_too(client, auth_headers, db_engine):
    body = {**ORIGINAL_EXAMPLE, "observedAt": "2026-11-28T07:30:00Z"}
    answer = client.post("/predict", json=body, headers=auth_headers).json()
    assert _stored(db_engine, answer["predictionId"]).replace(tzinfo=UTC) == datetime(
        2026, 11, 28, 7, 30, tzinfo=UTC
    )
    refused = client.post("/predict", json={**body, "observedAt": "soon"}, headers=auth_headers)
    assert refused.status_code == 400
    assert refused.json()["errors"][0]["extensions"]["field"] == "observedAt"
