"""A request's predictions are stored if and only if its answer returns them.

Root fields of a mutation are non-null, so one failing field makes the whole answer `data: null`
and the client never learns the ids the others made: none of them may be stored.
"""

from starlette.testclient import TestClient
from support import ORIGINAL_EXAMPLE, count_rows

from graph.app import create_app

BATCHES = """mutation B($r: [PredictInput!]!) {
  a: predictBatch(inputs: $r) { id } b: predictBatch(inputs: $r) { id } c: predictBatch(inputs: $r) { id } }"""
GOOD_AND_BAD = """mutation G($good: PredictInput!, $bad: PredictInput!) {
  good: predict(input: $good) { id } bad: predict(input: $bad) { id } }"""


def _stored(engine) -> tuple[int, int]:
    return count_rows(engine, "prediction"), count_rows(engine, "audit_event")


def test_batches_past_the_rate_limit_store_none_of_the_request(
    settings, db_engine, active_model, auth_headers
):
    limited = settings.model_copy(update={"rate_limits": {"predict": (0.001, 2500.0)}})
    with TestClient(create_app(limited)) as client:
        variables = {"r": [ORIGINAL_EXAMPLE] * 1000}
        response = client.post("/graphql", json={"query": BATCHES, "variables": variables},
                               headers=auth_headers)  # fmt: skip
    assert response.status_code == 429 and response.json()["data"] is None
    assert _stored(db_engine) == (0, 1)  # two batches were predicted, none stored


def test_a_good_and_a_bad_predict_store_nothing(client, auth_headers, db_engine):
    variables = {"good": ORIGINAL_EXAMPLE, "bad": {**ORIGINAL_EXAMPLE, "metric3": -1}}
    body = client.post("/graphql", json={"query": GOOD_AND_BAD, "variables": variables},
                       headers=auth_headers).json()  # fmt: skip
    assert body["data"] is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_USER_INPUT"]
    assert _stored(db_engine) == (0, 1)


def test_several_good_root_fields_store_every_prediction_they_return(
    client, auth_headers, db_engine
):
    variables = {"r": [ORIGINAL_EXAMPLE] * 3}
    body = client.post("/graphql", json={"query": BATCHES, "variables": variables},
                       headers=auth_headers).json()  # fmt: skip
    returned = {p["id"] for key in "abc" for p in body["data"][key]}
    assert len(returned) == 9 and _stored(db_engine) == (9, 1)
