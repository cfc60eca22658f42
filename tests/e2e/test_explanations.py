"""Explanations and input warnings through the API: computed with the probabilities, stored
with the predictions, and read back from history as they were (or, for a prediction stored
without an explanation, computed from the version that made it)."""

import math
import re
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient
from support import REPO_ROOT, demo_fleet, gql, register_version

from graph.app import create_app
from graph.runtime.models import OTHER_VERSIONS_KEPT
from graph.settings import Settings
from model import DEVICE_FEATURES, ArtifactMetadata, dump_artifact, load_artifact, sha256_hex
from persistence import Prediction, session_scope

EXPLANATION = """explanation { kind score baseValue
  path { feature threshold value goesLeft } contributions { feature value contribution } }"""
BATCH = """mutation B($rows: [PredictInput!]!) {
  predictBatch(inputs: $rows) { id failureProbability warnings %s } }"""
PREDICT = (
    "mutation P($one: PredictInput!) { predict(input: $one) { id failureProbability warnings %s } }"
)
ONE = "query O($id: ID!) { prediction(id: $id) { id failureProbability warnings %s } }"
PAGE = """{ predictions(first: 50) { nodes { id failureProbability warnings input { %s }
  modelVersion { version } %s } } }""" % (" ".join(DEVICE_FEATURES), EXPLANATION)
TIMELINE = (
    """query T($device: String!) { device(id: $device) { timeline(first: 50) {
  nodes { id %s } } } }"""
    % EXPLANATION
)
# Executor-only shapes: the selection inside a fragment, or skipped by a directive.
IN_FRAGMENT = (
    """mutation F($rows: [PredictInput!]!, $x: Boolean!) {
  predictBatch(inputs: $rows) { id ...E @include(if: $x) } }
fragment E on Prediction { failureProbability %s }"""
    % EXPLANATION
)
INLINE = """mutation I($rows: [PredictInput!]!, $x: Boolean!) {
  predictBatch(inputs: $rows) { id ... on Prediction { ... @include(if: $x) { %s } } } }""" % (
    EXPLANATION
)
SKIPPED = """mutation S($rows: [PredictInput!]!, $x: Boolean!) {
  predictBatch(inputs: $rows) { id explanation @skip(if: $x) { kind } } }"""


def _inside(count: int) -> list[dict[str, Any]]:
    """Rows of the training fleet itself: every value inside the training range."""
    fleet = demo_fleet()
    rows = fleet.X[np.linspace(0, len(fleet.X) - 1, count).astype(int)]
    return [
        {**dict(zip(fleet.feature_names, map(float, row), strict=True)), "deviceId": f"D{i % 2}"}
        for i, row in enumerate(rows)
    ]


def _stored(engine: Engine, ids: list[str]) -> dict[str, Prediction]:
    with session_scope(engine) as session:
        found = [session.get(Prediction, uuid.UUID(i)) for i in ids]
        return {str(row.id): row for row in found if row is not None}


def _predicted(client: TestClient, headers: dict[str, str], rows: list[dict]) -> list[str]:
    body = gql(client, BATCH % "", {"rows": rows}, headers)
    return [p["id"] for p in body["data"]["predictBatch"]]


def _without_nulls(explanation: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in explanation.items() if v is not None}


@pytest.fixture(params=[True, False], ids=["plan", "executor"])
def either(request, settings: Settings, active_model: Any) -> Iterator[TestClient]:
    """A client of the app answering predict through compiled plans, or only the executor."""
    with TestClient(create_app(settings.model_copy(update={"compiled_plans": request.param}))) as c:
        yield c


@pytest.fixture(scope="session")
def linear_artifact() -> bytes:
    """A logistic regression trained on the demo fleet (the tree's data)."""
    from training.estimators import build_estimator

    fleet = demo_fleet()
    estimator = build_estimator("logistic_regression", seed=7).fit(fleet.X, fleet.y)
    metadata = ArtifactMetadata("logistic_regression", DEVICE_FEATURES, 0.5)
    return dump_artifact(estimator, metadata)


def test_a_predict_selecting_explanation_stores_it_and_history_returns_the_stored_one(
    either, auth_headers, db_engine
):
    rows = _inside(6)
    body = gql(either, BATCH % EXPLANATION, {"rows": rows}, auth_headers)
    assert "errors" not in body, body
    answers = body["data"]["predictBatch"]
    stored = _stored(db_engine, [a["id"] for a in answers])
    for answer in answers:
        explanation = answer["explanation"]
        assert explanation["kind"] == "DECISION_PATH" and explanation["contributions"] is None
        assert explanation["score"] == answer["failureProbability"]  # a tree has no link
        assert explanation["path"] and explanation["baseValue"] == pytest.approx(0.5)
        assert stored[answer["id"]].explanation == _without_nulls(explanation)
    # History returns what was stored: change the stored copy, and history says so.
    first = answers[0]["id"]
    with session_scope(db_engine) as session:
        row = session.get(Prediction, uuid.UUID(first))
        row.explanation = {**row.explanation, "score": 0.125}
    found = gql(either, ONE % EXPLANATION, {"id": first}, auth_headers)["data"]["prediction"]
    assert found["explanation"] == {**answers[0]["explanation"], "score": 0.125}


def test_a_predict_not_selecting_explanation_stores_none(either, auth_headers, db_engine):
    answer = gql(either, PREDICT % "", {"one": _inside(1)[0]}, auth_headers)["data"]["predict"]
    assert _stored(db_engine, [answer["id"]])[answer["id"]].explanation is None


@pytest.mark.parametrize(
    ("query", "stores"), [(IN_FRAGMENT, True), (INLINE, True), (SKIPPED, False)]
)
def test_the_executor_sees_explanation_in_fragments_and_under_directives(
    client, auth_headers, db_engine, query, stores
):
    body = gql(client, query, {"rows": _inside(2), "x": True}, auth_headers)
    assert "errors" not in body, body
    ids = [p["id"] for p in body["data"]["predictBatch"]]
    assert all((p.explanation is not None) is stores for p in _stored(db_engine, ids).values())


def test_history_explains_a_prediction_with_its_own_version_after_another_became_active(
    client, auth_headers, db_engine, demo_artifact, linear_artifact
):
    rows = _inside(4)
    tree_ids = _predicted(client, auth_headers, rows)
    register_version(db_engine, linear_artifact, "linear-1", algorithm="logistic_regression")
    runtime = client.app.state.runtime
    runtime.models.refresh_sync()
    assert runtime.models.current.version == "linear-1"
    linear_ids = _predicted(client, auth_headers, rows)

    loads: list[int] = []
    lend = runtime.models.predictor_for

    def counted(version_id: int) -> Any:
        loads.append(version_id)
        return lend(version_id)

    runtime.models.predictor_for = counted
    nodes = gql(client, PAGE, None, auth_headers)["data"]["predictions"]["nodes"]
    assert len(nodes) == 8 and len(loads) == 2  # one pass per version for the whole page
    tree = load_artifact(demo_artifact, sha256_hex(demo_artifact))
    for node in nodes:
        explanation = node["explanation"]
        inputs = np.array([[node["input"][name] for name in DEVICE_FEATURES]])
        if node["id"] in tree_ids:
            assert node["modelVersion"]["version"] == "test-1"
            assert explanation["kind"] == "DECISION_PATH"
            assert explanation["score"] == node["failureProbability"]
            assert _without_nulls(explanation) == tree.explain(inputs)[1][0]
        else:
            assert node["id"] in linear_ids and explanation["kind"] == "CONTRIBUTIONS"
            odds = 1 / (1 + math.exp(-explanation["score"]))
            assert odds == pytest.approx(node["failureProbability"], abs=1e-12)
            total = explanation["baseValue"] + sum(
                c["contribution"] for c in explanation["contributions"]
            )
            assert total == pytest.approx(explanation["score"], abs=1e-9)
    # Read, not written: the predictions still have no stored explanation.
    assert all(p.explanation is None for p in _stored(db_engine, tree_ids + linear_ids).values())
    timeline = gql(client, TIMELINE, {"device": "D0"}, auth_headers)["data"]["device"]["timeline"]
    kinds = {n["id"]: n["explanation"]["kind"] for n in timeline["nodes"]}
    assert kinds == {
        i: "DECISION_PATH" if i in tree_ids else "CONTRIBUTIONS"
        for i, row in zip(tree_ids + linear_ids, rows + rows, strict=True)
        if row["deviceId"] == "D0"
    }


def test_values_outside_the_training_range_are_warned_of_stored_and_read_back(
    either, auth_headers, db_engine
):
    inside = _inside(1)[0]
    above = {**inside, "metric6": 500000.0}  # training max 397478
    below = {**inside, "metric5": 1.0}  # training min 5
    both = {**inside, "metric5": 0.0, "metric6": 1e9}
    body = gql(either, BATCH % "", {"rows": [inside, above, below, both]}, auth_headers)
    assert "errors" not in body, body
    answers = body["data"]["predictBatch"]
    warned = [a["warnings"] for a in answers]
    assert warned[0] == []
    assert warned[1] == ["metric6 = 500000 is above the training range (max 397478)"]
    assert warned[2] == ["metric5 = 1 is below the training range (min 5)"]
    assert [w.split(" ")[0] for w in warned[3]] == ["metric5", "metric6"]
    stored = _stored(db_engine, [a["id"] for a in answers])
    assert [stored[a["id"]].warnings for a in answers] == [None, *warned[1:]]
    for answer in answers:  # history gives what was stored
        found = gql(either, ONE % "", {"id": answer["id"]}, auth_headers)["data"]["prediction"]
        assert found["warnings"] == answer["warnings"]


def test_rest_predict_answers_its_warnings(client, auth_headers):
    inside = {k: v for k, v in _inside(1)[0].items() if k != "deviceId"}
    for body, expected in [(inside, []), ({**inside, "metric5": 2}, ["metric5"])]:
        answer = client.post("/predict", json=body, headers=auth_headers).json()
        assert [w.split(" ")[0] for w in answer["warnings"]] == expected


def test_a_version_without_a_profile_warns_of_nothing(
    settings, db_engine, demo_artifact, auth_headers
):
    register_version(db_engine, demo_artifact, "old-1", lifecycle=False)
    with TestClient(create_app(settings)) as client:
        out = {**_inside(1)[0], "metric6": 1e9}
        answer = gql(client, PREDICT % "", {"one": out}, auth_headers)["data"]["predict"]
        assert answer["warnings"] == []
        query = '{ modelVersion(version: "old-1") { inputProfile { rows } } }'
        profile = gql(client, query, None, auth_headers)
        assert profile["data"]["modelVersion"]["inputProfile"] is None


def test_a_versions_input_profile_is_its_stored_profile_without_the_sample(
    client, auth_headers, active_model
):
    query = """{ modelVersion(version: "test-1") { inputProfile { rows
      features { feature min max mean zeroShare quantiles { q value } } } } }"""
    profile = gql(client, query, None, auth_headers)["data"]["modelVersion"]["inputProfile"]
    stored = active_model.input_profile
    assert profile["rows"] == stored["rows"] == len(demo_fleet().X)
    assert [f["feature"] for f in profile["features"]] == list(DEVICE_FEATURES)
    for feature in profile["features"]:
        facts = stored["features"][feature["feature"]]
        assert (feature["min"], feature["max"], feature["mean"], feature["zeroShare"]) == (
            facts["min"], facts["max"], facts["mean"], facts["zero_share"]
        )  # fmt: skip
        assert [[q["q"], q["value"]] for q in feature["quantiles"]] == facts["quantiles"]
    fields = client.app.state.executor.graphql_schema.type_map["FeatureProfile"].fields
    assert not {"sample", "bins"} & set(fields)


def test_an_explanation_from_an_altered_artifact_is_refused_and_the_rest_answered(
    client, auth_headers, db_engine, demo_artifact
):
    [made] = _predicted(client, auth_headers, _inside(1))
    register_version(db_engine, demo_artifact, "test-2")  # the first version stops serving
    client.app.state.runtime.models.refresh_sync()
    altered = bytearray(demo_artifact)
    altered[len(altered) // 2] ^= 0xFF
    with db_engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE model_version SET artifact = :bytes WHERE version = 'test-1'"),
            {"bytes": bytes(altered)},
        )
    body = gql(client, ONE % "explanation { kind }", {"id": made}, auth_headers)
    assert body["data"]["prediction"]["id"] == made
    assert body["data"]["prediction"]["explanation"] is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["MODEL_UNAVAILABLE"]
    assert body["errors"][0]["path"] == ["prediction", "explanation"]


def test_the_readmes_explanation_query_runs_and_its_figures_hold(client, auth_headers):
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Explanations", 1)[1].split("\n### ", 1)[0]
    [query] = re.findall(r"```graphql\n(.*?)```", section, re.S)
    body = gql(client, query, {"one": _inside(1)[0]}, auth_headers)
    assert "errors" not in body, body
    assert body["data"]["predict"]["explanation"]["kind"] == "DECISION_PATH"
    assert f"the last {OTHER_VERSIONS_KEPT} versions" in " ".join(section.split())
