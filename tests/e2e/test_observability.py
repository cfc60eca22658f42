"""Metrics in Prometheus format, and one structured log line per request without secrets."""

import json
import logging
import time

from support import ORIGINAL_EXAMPLE, gql

from auth import Scope
from graph.runtime.logs import JsonFormatter

PREDICT = "mutation P($i: PredictInput!) { predict(input: $i) { id } }"


def _metric(text: str, prefix: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)
    )


def test_metrics_count_requests_predictions_and_the_serving_model(
    client, auth_headers, active_model
):
    gql(client, PREDICT, {"i": ORIGINAL_EXAMPLE}, auth_headers)
    gql(client, PREDICT, {"i": {**ORIGINAL_EXAMPLE, "metric1": -1}}, auth_headers)
    response = client.get("/metrics")
    assert response.status_code == 200
    text = response.text
    assert _metric(text, 'failcast_requests_total{operation="mutation",outcome="ok"}') == 1
    assert _metric(text, 'failcast_requests_total{operation="mutation",outcome="invalid"}') == 1
    assert _metric(text, 'failcast_predictions_total{label="NON_FAILURE"') == 1
    assert _metric(text, "failcast_failure_probability_count") == 1
    assert _metric(text, f'failcast_active_model_info{{version="{active_model.version}"}}') == 1
    assert 'failcast_db_pool_connections{state="checkedout"}' in text
    assert "failcast_request_duration_seconds_bucket" in text
    # the one prediction's model call (the invalid request never reached the model)
    assert _metric(text, "failcast_model_calls_total") == 1
    assert _metric(text, "failcast_model_call_requests_total") == 1


def test_rate_limit_refusals_are_counted(settings, active_model, db_engine, make_token):
    from starlette.testclient import TestClient

    from graph.app import create_app

    limited = settings.model_copy(update={"rate_limits": {"predict": (0.1, 1.0)}})
    headers = {"Authorization": f"Bearer {make_token(Scope.PREDICT)}"}
    with TestClient(create_app(limited)) as client:
        for _ in range(3):
            client.post(
                "/graphql",
                json={"query": PREDICT, "variables": {"i": ORIGINAL_EXAMPLE}},
                headers=headers,
            )
        text = client.get("/metrics").text
    assert _metric(text, 'failcast_rate_limited_total{scope="predict"}') == 2


def test_one_log_line_per_request_with_its_fields_and_no_token(client, auth_headers, caplog):
    with caplog.at_level(logging.INFO, logger="failcast.request"):
        response = client.post(
            "/graphql",
            json={"query": PREDICT, "variables": {"i": ORIGINAL_EXAMPLE}},
            headers=auth_headers,
        )
    [record] = [r for r in caplog.records if r.name == "failcast.request"]
    line = json.loads(JsonFormatter().format(record))
    assert line["request_id"] == response.headers["x-request-id"]
    assert (line["subject"], line["operation"], line["outcome"], line["status"]) == (
        "tester",
        "mutation",
        "ok",
        200,
    )
    assert line["duration_ms"] >= 0 and line["predictions"] == 1
    token = auth_headers["Authorization"].split()[1]
    assert token not in json.dumps(line)


def test_unexpected_errors_are_logged_with_the_request_id_and_masked(
    client, auth_headers, caplog, monkeypatch
):
    from graph.runtime import usecases

    def broken(*args, **kwargs):
        raise ZeroDivisionError("secret internals /srv/path")

    monkeypatch.setattr(usecases, "predict", broken)  # a bug in the use case, not a mock
    with caplog.at_level(logging.ERROR):
        body = gql(client, PREDICT, {"i": ORIGINAL_EXAMPLE}, auth_headers)
    error = body["errors"][0]
    assert error["message"] == "Internal server error"
    assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert "secret internals" not in json.dumps(body)
    logged = [r for r in caplog.records if error["extensions"]["requestId"] in r.getMessage()]
    assert logged and logged[0].exc_info is not None


def test_predictions_are_counted_under_the_model_that_made_them(
    client, auth_headers, db_engine, demo_artifact, monkeypatch
):
    from support import register_version

    from graph.runtime import usecases
    from model import LoadedModel, load_artifact

    models = client.app.state.runtime.models
    made_by = models.current.version
    newer = register_version(db_engine, demo_artifact, version="test-2", activate=False)
    predictor = load_artifact(demo_artifact, newer.artifact_sha256)
    swapped = LoadedModel(newer.id, newer.version, newer.artifact_sha256, predictor, newer)
    real_predict = usecases.predict

    async def activation_lands_meanwhile(*args, **kwargs):
        predicted = await real_predict(*args, **kwargs)
        models.holder.swap(swapped)  # an activation lands before the request has finished
        return predicted

    monkeypatch.setattr(usecases, "predict", activation_lands_meanwhile)
    body = gql(client, PREDICT, {"i": ORIGINAL_EXAMPLE}, auth_headers)
    assert "errors" not in body
    text = client.get("/metrics").text
    assert (
        _metric(
            text, f'failcast_predictions_total{{label="NON_FAILURE",model_version="{made_by}"}}'
        )
        == 1
    )
    assert f'model_version="{newer.version}"' not in text


def test_the_event_loop_lag_is_a_metric(client, auth_headers):
    time.sleep(0.3)  # a few timer checks of the running app
    text = client.get("/metrics", headers=auth_headers).text
    assert "failcast_event_loop_lag_seconds_count" in text
    count = next(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("failcast_event_loop_lag_seconds_count")
    )
    assert count >= 1
    assert "failcast_event_loop_lag_max_seconds" in text


def test_each_group_commit_is_timed(client, auth_headers, active_model):
    before = _metric(client.get("/metrics").text, "failcast_group_commit_seconds_count")
    for _ in range(3):  # one after the other: a commit each
        gql(client, PREDICT, {"i": ORIGINAL_EXAMPLE}, auth_headers)
    text = client.get("/metrics").text  # (its own audit row commits after it answers)
    assert _metric(text, "failcast_group_commit_seconds_count") >= before + 3
    assert _metric(text, "failcast_group_commit_seconds_sum") > 0
    assert 'failcast_group_commit_seconds_bucket{le="0.05"}' in text


def test_garbage_collection_pauses_are_a_metric(client, auth_headers):
    import gc

    gc.collect(2)  # the app's process is this one: its collector's pauses are timed
    text = client.get("/metrics", headers=auth_headers).text
    full = [
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith('failcast_gc_pause_seconds_count{generation="2"}')
    ]
    assert full and full[0] >= 1


def test_young_collections_are_rarer_while_serving_and_as_before_after(
    settings, db_engine, active_model
):
    import gc

    from starlette.testclient import TestClient

    from graph.app import GC_YOUNG_THRESHOLD, create_app

    before = gc.get_threshold()
    with TestClient(create_app(settings)):
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, *before[1:])
    assert gc.get_threshold() == before
