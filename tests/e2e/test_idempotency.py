"""Idempotency-Key: a client may retry blindly; repeats get the first answer and store nothing."""

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from starlette.testclient import TestClient
from support import ORIGINAL_EXAMPLE, count_rows

from auth import Scope
from graph.app import create_app
from persistence import AuditRepository, idempotency, session_scope

PREDICT = "mutation P($i: PredictInput!) { predict(input: $i) { id failureProbability } }"
QUERY = "query { me { subject } }"


def _body(query: str = PREDICT, **variables) -> bytes:
    return orjson.dumps({"query": query, "variables": variables or {"i": ORIGINAL_EXAMPLE}})


def _post(client, body: bytes, headers: dict, key: str | None = "key-1", path: str = "/graphql"):
    sent = {**headers, "content-type": "application/json"}
    if key is not None:
        sent["Idempotency-Key"] = key
    return client.post(path, content=body, headers=sent)


def _audit(db_engine, response):
    with session_scope(db_engine) as session:
        return AuditRepository(session).get(uuid.UUID(response.headers["x-request-id"]))


def test_a_repeat_gets_the_first_answer_byte_for_byte_and_stores_nothing(
    client, auth_headers, db_engine
):
    first = _post(client, _body(), auth_headers)
    assert first.status_code == 200 and "Idempotent-Replayed" not in first.headers
    stored = count_rows(db_engine, "prediction")
    again = _post(client, _body(), auth_headers)
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert again.headers["x-request-id"] != first.headers["x-request-id"]
    assert count_rows(db_engine, "prediction") == stored == 1
    original, replay = _audit(db_engine, first), _audit(db_engine, again)
    assert (original.idempotency_key, original.replay_of, original.predictions_created) == (
        "key-1",
        None,
        1,
    )
    assert (replay.idempotency_key, replay.replay_of, replay.predictions_created) == (
        "key-1",
        original.id,
        0,
    )
    assert (replay.operation_type, replay.operation_name, replay.outcome) == ("mutation", "P", "ok")


def test_without_a_key_every_request_runs(client, auth_headers, db_engine):
    for _ in range(2):
        assert _post(client, _body(), auth_headers, key=None).status_code == 200
    assert count_rows(db_engine, "prediction") == 2


def test_the_same_key_with_another_body_is_refused_and_stores_nothing(
    client, auth_headers, db_engine
):
    _post(client, _body(), auth_headers)
    other = _body(i={**ORIGINAL_EXAMPLE, "metric1": 1})
    response = _post(client, other, auth_headers)
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert count_rows(db_engine, "prediction") == 1
    assert _audit(db_engine, response).outcome == "invalid"


def test_keys_belong_to_their_subject(client, make_token, db_engine):
    for subject in ("line-a", "line-b"):
        headers = {"Authorization": f"Bearer {make_token(subject=subject)}"}
        response = _post(client, _body(), headers)
        assert "Idempotent-Replayed" not in response.headers
    assert count_rows(db_engine, "prediction") == 2


@pytest.mark.parametrize(
    "key",
    ["", "k" * 256, "cl\xe9".encode("latin-1"), b"tab\there"],
    ids=["empty", "too-long", "non-ascii", "control"],
)
def test_a_malformed_key_is_a_bad_request(client, auth_headers, db_engine, key):
    headers = [*auth_headers.items(), ("content-type", "application/json")]
    sent = [*headers, ("Idempotency-Key", key)]
    response = client.post("/graphql", content=_body(), headers=sent)
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    assert count_rows(db_engine, "prediction") == 0


def test_two_keys_in_one_request_are_a_bad_request(client, auth_headers):
    headers = [*auth_headers.items(), ("content-type", "application/json")]
    headers += [("Idempotency-Key", "a"), ("Idempotency-Key", "b")]
    response = client.post("/graphql", content=_body(), headers=headers)
    assert response.status_code == 400


def test_an_answer_refusing_the_input_is_kept_and_replayed(client, auth_headers, db_engine):
    bad = _body(i={**ORIGINAL_EXAMPLE, "metric1": -1})
    first = _post(client, bad, auth_headers)
    assert first.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    again = _post(client, bad, auth_headers)
    assert again.headers["Idempotent-Replayed"] == "true" and again.content == first.content
    assert _audit(db_engine, again).error_codes == ["BAD_USER_INPUT"]


def test_a_refusal_that_may_go_away_is_not_kept(client, make_token, db_engine):
    reader = {"Authorization": f"Bearer {make_token(Scope.PREDICTIONS_READ, subject='s')}"}
    refused = _post(client, _body(), reader)
    assert refused.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    writer = {"Authorization": f"Bearer {make_token(Scope.PREDICT, subject='s')}"}
    allowed = _post(client, _body(), writer)
    assert "Idempotent-Replayed" not in allowed.headers
    assert allowed.json()["data"]["predict"]["id"]
    assert count_rows(db_engine, "prediction") == 1


def test_queries_are_not_kept(client, auth_headers, db_engine):
    for _ in range(2):
        response = _post(client, _body(QUERY), auth_headers)
        assert "Idempotent-Replayed" not in response.headers
    assert count_rows(db_engine, "idempotency_key") == 0


def test_the_rest_route_takes_keys_too(client, auth_headers, db_engine):
    body = orjson.dumps({**ORIGINAL_EXAMPLE, "device": "d-1"})
    first = _post(client, body, auth_headers, path="/predict")
    again = _post(client, body, auth_headers, path="/predict")
    assert first.status_code == again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert count_rows(db_engine, "prediction") == 1


def test_the_same_key_on_graphql_and_rest_is_two_requests(client, auth_headers):
    _post(client, _body(), auth_headers)
    response = _post(client, orjson.dumps(ORIGINAL_EXAMPLE), auth_headers, path="/predict")
    assert response.status_code == 422


def test_two_identical_requests_at_once_store_one_prediction(client, auth_headers, db_engine):
    answers: list = []
    start = threading.Barrier(2)

    def send() -> None:
        start.wait()
        answers.append(_post(client, _body(), auth_headers, key="race"))

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(a.status_code for a in answers) == [200, 200]
    assert answers[0].content == answers[1].content
    assert sum(a.headers.get("Idempotent-Replayed") == "true" for a in answers) == 1
    assert count_rows(db_engine, "prediction") == 1


def test_an_expired_key_is_taken_again_and_purged(settings, db_engine, active_model, auth_headers):
    quick = settings.model_copy(update={"idempotency_ttl_hours": 0.3 / 3600})  # 0.3 s
    with TestClient(create_app(quick)) as client:
        _post(client, _body(), auth_headers)
        time.sleep(0.5)
        again = _post(client, _body(), auth_headers)
    assert "Idempotent-Replayed" not in again.headers
    assert count_rows(db_engine, "prediction") == 2
    assert count_rows(db_engine, "idempotency_key") == 1  # the expired one was replaced
    with session_scope(db_engine) as session:
        assert idempotency.purge(session, datetime.now(UTC) + timedelta(seconds=1)) == 1
    assert count_rows(db_engine, "idempotency_key") == 0
