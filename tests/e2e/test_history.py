"""Prediction history and the model registry through GraphQL."""

from support import ORIGINAL_EXAMPLE, gql

PREDICT_BATCH = """
mutation Batch($inputs: [PredictInput!]!) { predictBatch(inputs: $inputs) { id } }
"""
PAGE = """
query Page($first: Int, $after: String) {
  predictions(first: $first, after: $after) {
    edges { cursor node { id createdAt modelVersion { version } } }
    pageInfo { hasNextPage endCursor }
  }
}
"""
ONE = "query One($id: ID!) { prediction(id: $id) { id label input { metric2 } } }"
VERSIONS = """
{ modelVersions { version algorithm isActive createdAt activatedAt threshold metrics
    trainedOnSyntheticData artifactSha256 featureNames trainingData { sha256 rows failures } }
  activeModel { version } }
"""


def _store(client, headers, n: int) -> list[str]:
    rows = [{**ORIGINAL_EXAMPLE, "deviceId": f"D{i}"} for i in range(n)]
    return [
        p["id"]
        for p in gql(client, PREDICT_BATCH, {"inputs": rows}, headers)["data"]["predictBatch"]
    ]


def test_pagination_returns_every_prediction_exactly_once(client, auth_headers):
    stored = _store(client, auth_headers, 23) + _store(client, auth_headers, 4)
    seen, after, pages = [], None, 0
    while True:
        page = gql(client, PAGE, {"first": 5, "after": after}, auth_headers)["data"]["predictions"]
        seen += [edge["node"]["id"] for edge in page["edges"]]
        pages += 1
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert sorted(seen) == sorted(stored)
    assert len(seen) == len(set(seen)) == 27
    assert pages == 6


def test_history_is_newest_first(client, auth_headers):
    stored = _store(client, auth_headers, 3)
    page = gql(client, PAGE, {"first": 10}, auth_headers)["data"]["predictions"]
    assert [e["node"]["id"] for e in page["edges"]] == list(reversed(stored))


def test_prediction_by_id(client, auth_headers):
    [prediction_id] = _store(client, auth_headers, 1)
    found = gql(client, ONE, {"id": prediction_id}, auth_headers)["data"]["prediction"]
    assert found["id"] == prediction_id
    assert found["input"]["metric2"] == ORIGINAL_EXAMPLE["metric2"]


def test_unknown_prediction_is_null_and_malformed_id_is_bad_input(client, auth_headers):
    missing = gql(client, ONE, {"id": "01900000-0000-7000-8000-000000000000"}, auth_headers)
    assert missing["data"]["prediction"] is None
    malformed = gql(client, ONE, {"id": "nope"}, auth_headers)
    assert malformed["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


def test_bad_cursor_and_page_size_are_bad_input(client, auth_headers):
    for variables in ({"first": 5, "after": "!!"}, {"first": 0}, {"first": 501}):
        body = gql(client, PAGE, variables, auth_headers)
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", variables


def test_model_versions_expose_metrics_and_lineage(client, auth_headers, active_model):
    data = gql(client, VERSIONS, headers=auth_headers)["data"]
    [version] = data["modelVersions"]
    assert version["version"] == active_model.version
    assert version["isActive"] is True
    assert version["artifactSha256"] == active_model.artifact_sha256
    assert version["trainedOnSyntheticData"] is True
    assert version["metrics"]["test"]["pr_auc"] == 0.5
    assert version["trainingData"]["rows"] == active_model.data_rows
    assert data["activeModel"]["version"] == active_model.version


def test_model_version_by_name_and_unknown_name(client, auth_headers, active_model):
    query = "query V($v: String!) { modelVersion(version: $v) { version isActive } }"
    found = gql(client, query, {"v": active_model.version}, auth_headers)["data"]["modelVersion"]
    assert found == {"version": active_model.version, "isActive": True}
    assert (
        gql(client, query, {"v": "no-such-version"}, auth_headers)["data"]["modelVersion"] is None
    )
